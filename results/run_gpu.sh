#!/usr/bin/env bash
# The issue's full grid, for a machine with a GPU (NOT run in this session: no GPU was lent).
# MNIST and Fashion-MNIST, autoencoder and reconstruction, sigma in {0.1, 0.25, 0.5} with models
# trained at sigma_train = sigma, eps_in = h * sigma for h in {0.5, 1, 1.5, 2}, 50 seeded test
# inputs, distances l2 angular tv1 tv2 sharing forward passes, our defaults (10^4 / 10^4 / 10^5,
# binomial, central candidates); and l2 with --preset paper (10^4 / 10^4 / 10^6, Hoeffding,
# samples-only centers) on the same inputs. Plus the MNIST classifier row (total variation).
# Results go to results/gpu/ so the CPU run stays as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
CS=".venv/bin/centersmooth"
DEV=${DEVICE:-cuda}
OUT=results/gpu
for sigma in 0.1 0.25 0.5; do
  for dataset in mnist fashion-mnist; do
    for task in autoencoder reconstruction; do
      ckpt="$OUT/models/$task-$dataset-sigma$sigma.pt"
      [ -f "$ckpt" ] || $CS train "$task" --dataset "$dataset" --sigma-train "$sigma" \
        --epochs 20 --seed 0 --device "$DEV" --out "$ckpt" --quiet
      common=(--checkpoint "$ckpt" --sigma "$sigma" --eps-in 0.5 1 1.5 2 --eps-in-relative
              --n-inputs 50 --seed 0 --device "$DEV" --resume --quiet)
      $CS certify "$task" "${common[@]}" --metric l2 angular tv1 tv2 \
        --out "$OUT/$dataset-$task/sigma$sigma.jsonl"
      $CS certify "$task" "${common[@]}" --metric l2 --preset paper \
        --out "$OUT/$dataset-$task/sigma$sigma-paper.jsonl"
    done
  done
done
ckpt="$OUT/models/classifier-mnist-sigma0.25.pt"
[ -f "$ckpt" ] || $CS train classifier --dataset mnist --sigma-train 0.25 --epochs 20 --seed 0 \
  --device "$DEV" --out "$ckpt" --quiet
$CS certify classifier --checkpoint "$ckpt" --sigma 0.25 --eps-in 0.5 1 1.5 2 --eps-in-relative \
  --n-inputs 50 --metric total_variation --seed 0 --device "$DEV" --resume --quiet \
  --out "$OUT/mnist-classifier/sigma0.25.jsonl"
