#!/usr/bin/env bash
# What `--n-certify auto` draws as eps_in / sigma grows, against the fixed defaults: the trained
# MNIST autoencoder (results/train_cpu.sh), sigma 0.25, l2, the first 5 of the grid's seeded
# test inputs, one eps_in per run (auto's rounds stop on the eps_in it is asked for), h = 1, 2,
# 3, 3.5 and 4; the fixed defaults (10^4 / 10^4 / 10^4, shared) once for all five.
#   results/auto-by-h/auto-h<H>.jsonl   n_certify auto (rounds from 10^4 up to 10^6, tolerance 1%)
#   results/auto-by-h/defaults.jsonl    the fixed defaults
#   results/auto-by-h/report.md         centersmooth report over them
# Two one-thread streams (h = 4 draws the most); each file resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
CS=".venv/bin/centersmooth"
MODELS="${CENTERSMOOTH_CACHE:-$HOME/.cache/centersmooth}/models"
OUT=results/auto-by-h
mkdir -p "$OUT"
certify() {  # certify NAME ARGS...
  local name=$1
  shift
  $CS certify autoencoder --checkpoint "$MODELS/autoencoder-mnist-sigma0.25-seed0.pt" \
    --sigma 0.25 --metric l2 --eps-in-relative --n-inputs 5 --seed 0 --threads 1 --examples 0 \
    --quiet --resume "$@" --out "$OUT/$name.jsonl"
}
certify auto-h4 --eps-in 4 --n-certify auto &
for h in 1 2 3 3.5; do certify "auto-h$h" --eps-in "$h" --n-certify auto; done
certify defaults --eps-in 1 2 3 3.5 4
wait
$CS report "$OUT"/defaults.jsonl "$OUT"/auto-h{1,2,3,3.5,4}.jsonl --out "$OUT" \
  --label defaults "auto, h = 1" "auto, h = 2" "auto, h = 3" "auto, h = 3.5" "auto, h = 4"
