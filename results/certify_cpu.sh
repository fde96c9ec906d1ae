#!/usr/bin/env bash
# The CPU run of results/README.md (2 CPU cores shared with other jobs, no GPU): 10 seeded test
# inputs per cell, our binomial bounds with REDUCED sample counts n_center=2,000, n_check=5,000,
# n_certify=10,000 (the defaults are 10^4 / 10^4 / 10^5), distances l2 and angular, one thread.
#   stream a: sigma 0.25 (MNIST and Fashion-MNIST, both tasks), then the classifier row
#             (total variation, default counts 10^4 / 10^4 / 10^5)
#   stream b: sigma 0.5 and 0.1 (MNIST, both tasks)
#   stream c: MNIST autoencoder, sigma 0.25, l2, the paper's bounds (--preset paper: Hoeffding,
#             samples-only centers) at the SAME reduced counts as stream a, on the same inputs.
#             This is not the paper preset (10^4 / 10^4 / 10^6 samples), which did not fit.
#   stream d: MNIST autoencoder, sigma 0.25, l2 and angular, our DEFAULT counts (10^4 / 10^4 /
#             10^5) on the first 3 of the same inputs.
# Usage: results/certify_cpu.sh a|b|c|d   (each waits for the checkpoints of results/train_cpu.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
CS=".venv/bin/centersmooth"
MODELS="${CENTERSMOOTH_CACHE:-$HOME/.cache/centersmooth}/models"
COUNTS=(--n-center 2000 --n-check 5000 --n-certify 10000)
N_INPUTS=10

run() {  # run DATASET TASK SIGMA
  local dataset=$1 task=$2 sigma=$3
  local ckpt="$MODELS/$task-$dataset-sigma$sigma-seed0.pt"
  while [ ! -f "$ckpt" ]; do sleep 10; done
  mkdir -p "results/$dataset-$task"
  $CS certify "$task" --checkpoint "$ckpt" --sigma "$sigma" --eps-in 0.5 1 1.5 2 \
    --eps-in-relative --n-inputs "$N_INPUTS" --metric l2 angular "${COUNTS[@]}" --seed 0 \
    --threads 1 --examples 4 --quiet --resume --out "results/$dataset-$task/sigma$sigma.jsonl"
}

case "${1:-}" in
  a)
    for dataset in mnist fashion-mnist; do
      for task in autoencoder reconstruction; do
        run "$dataset" "$task" 0.25
      done
    done
    ckpt="$MODELS/classifier-mnist-sigma0.25-seed0.pt"
    while [ ! -f "$ckpt" ]; do sleep 10; done
    mkdir -p results/mnist-classifier
    $CS certify classifier --checkpoint "$ckpt" --sigma 0.25 --eps-in 0.5 1 1.5 2 \
      --eps-in-relative --n-inputs "$N_INPUTS" --metric total_variation --seed 0 --threads 1 \
      --examples 0 --quiet --resume --out results/mnist-classifier/sigma0.25.jsonl
    ;;
  b)
    for sigma in 0.5 0.1; do
      for task in autoencoder reconstruction; do
        run mnist "$task" "$sigma"
      done
    done
    ;;
  c)
    $CS certify autoencoder --checkpoint "$MODELS/autoencoder-mnist-sigma0.25-seed0.pt" \
      --sigma 0.25 --eps-in 0.5 1 1.5 2 --eps-in-relative --n-inputs "$N_INPUTS" --metric l2 \
      --preset paper "${COUNTS[@]}" --seed 0 --threads 1 --examples 0 --quiet --resume \
      --out results/mnist-autoencoder/sigma0.25-paper-bounds-reduced-counts.jsonl
    ;;
  d)
    $CS certify autoencoder --checkpoint "$MODELS/autoencoder-mnist-sigma0.25-seed0.pt" \
      --sigma 0.25 --eps-in 0.5 1 1.5 2 --eps-in-relative --n-inputs 3 --metric l2 angular \
      --seed 0 --threads 1 --examples 0 --quiet --resume \
      --out results/mnist-autoencoder/sigma0.25-default-counts.jsonl
    ;;
  *) echo "usage: $0 a|b|c|d" >&2; exit 2 ;;
esac
