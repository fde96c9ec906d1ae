#!/usr/bin/env bash
# The paper's full grid, for a machine with a GPU (never run at full size: no GPU was available
# for these results; tests/test_run_gpu_script.py runs it on a CPU at toy size).
# MNIST and Fashion-MNIST, autoencoder and reconstruction, sigma in {0.1, 0.25, 0.5} with models
# trained at sigma_train = sigma, eps_in = h * sigma for h in {0.5, 1, 1.5, 2}, 50 seeded test
# inputs, distances l2 angular tv1 tv2 sharing forward passes, our defaults (10^4 / 10^4 / 10^5,
# binomial, central candidates); and l2 with --preset paper (10^4 / 10^4 / 10^6, Hoeffding,
# samples-only centers) on the same inputs. Plus the MNIST classifier row (total variation).
# Results go to results/gpu/ so the CPU run stays as it is.
# Environment (defaults in brackets): DEVICE [cuda], OUT [results/gpu], N_INPUTS [50],
# EPOCHS [20], SIGMAS ["0.1 0.25 0.5"], DATASETS ["mnist fashion-mnist"],
# TASKS ["autoencoder reconstruction"]; TRAIN_ARGS and CERTIFY_ARGS are extra flags for every
# train / certify command (a toy run: TRAIN_ARGS="--n-train 64" CERTIFY_ARGS="--n-center 50 ...").
set -euo pipefail
cd "$(dirname "$0")/.."
CS="${CS:-.venv/bin/centersmooth}"
DEV=${DEVICE:-cuda}
OUT=${OUT:-results/gpu}
N_INPUTS=${N_INPUTS:-50}
EPOCHS=${EPOCHS:-20}
read -r -a TRAIN_EXTRA <<<"${TRAIN_ARGS:-}"
read -r -a CERTIFY_EXTRA <<<"${CERTIFY_ARGS:-}"

train() {  # train TASK DATASET SIGMA CHECKPOINT
  [ -f "$4" ] || $CS train "$1" --dataset "$2" --sigma-train "$3" --epochs "$EPOCHS" --seed 0 \
    --device "$DEV" --out "$4" --quiet "${TRAIN_EXTRA[@]}"
}

for sigma in ${SIGMAS:-0.1 0.25 0.5}; do
  for dataset in ${DATASETS:-mnist fashion-mnist}; do
    for task in ${TASKS:-autoencoder reconstruction}; do
      ckpt="$OUT/models/$task-$dataset-sigma$sigma.pt"
      train "$task" "$dataset" "$sigma" "$ckpt"
      common=(--checkpoint "$ckpt" --sigma "$sigma" --eps-in 0.5 1 1.5 2 --eps-in-relative
        --n-inputs "$N_INPUTS" --seed 0 --device "$DEV" --resume --quiet)
      $CS certify "$task" "${common[@]}" --metric l2 angular tv1 tv2 "${CERTIFY_EXTRA[@]}" \
        --out "$OUT/$dataset-$task/sigma$sigma.jsonl"
      $CS certify "$task" "${common[@]}" --metric l2 --preset paper "${CERTIFY_EXTRA[@]}" \
        --out "$OUT/$dataset-$task/sigma$sigma-paper.jsonl"
    done
  done
done
ckpt="$OUT/models/classifier-mnist-sigma0.25.pt"
train classifier mnist 0.25 "$ckpt"
$CS certify classifier --checkpoint "$ckpt" --sigma 0.25 --eps-in 0.5 1 1.5 2 --eps-in-relative \
  --n-inputs "$N_INPUTS" --metric total_variation --seed 0 --device "$DEV" --resume --quiet \
  "${CERTIFY_EXTRA[@]}" --out "$OUT/mnist-classifier/sigma0.25.jsonl"
