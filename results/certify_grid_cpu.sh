#!/usr/bin/env bash
# The paper's image-experiment grid on a CPU without a GPU: 20 seeded test inputs per cell,
# the four distances sharing one set of forward passes per input. tv1 and tv2 search their
# center among 30 candidates plus the central points (`--candidates tv1=30 tv2=30`): all pairs
# would cost about 8 min per input on a CPU thread for the two (no matrix-product form).
#   stream mnist | fashion-mnist : both tasks, sigma 0.25, 0.1, 0.5, at the library's defaults
#                  (10^4 / 10^4 / 10^4, the check's samples the first of the certification's;
#                  binomial bounds, central candidates, all-pairs center search; the pairwise
#                  bound, R_pair from 1,000 of the center samples against 2,000 others):
#                  sigma<S>.jsonl, with the arrays of 4 example inputs
#   stream nearest DATASET : the same with the nearest-candidate bound alone
#                  (--no-pairwise-bound, the defaults before the pairwise bound):
#                  sigma<S>-nearest.jsonl (its example inputs, samples and centers are those of
#                  sigma<S>.jsonl, whose example arrays its header names)
#   stream separate-1e5 DATASET : the defaults before shared check samples (10^4 / 10^4 /
#                  10^5, separate samples, the nearest-candidate bound): sigma<S>-separate-1e5.jsonl
#   stream auto DATASET : the nearest stream with --n-certify auto: sigma<S>-auto.jsonl
# Every stream but the first runs with --no-pairwise-bound: their files were drawn before the
# pairwise bound was the default, and a file resumes only with the settings it was made with.
#   stream paper DATASET TASK SIGMA : one cell in l2 with --preset paper (10^4 / 10^4 / 10^6,
#                  Hoeffding, samples-only centers) on the same inputs (the runner goes through
#                  them in order, so a stopped run holds the first k of the 20)
#   stream paper-rounds MINUTES [reverse] : every cell's paper preset in turn, each for at most
#                  MINUTES (a cell's input cut off by the limit is redone on the next round);
#                  repeat it to give every cell more of its inputs. A second stream with
#                  `reverse` goes through the cells from the other end; a cell that one stream is
#                  running is skipped by the other (the runner locks its results file)
#   stream ball-mass MASS DATASET : both tasks of DATASET at every sigma in l2 with
#                  --ball-mass MASS (10^4 / 10^4 / 10^5 separate samples, the counts of the
#                  time, as in the classifier stream) on the same inputs, beside the others as
#                  sigma<S>-mass<MASS>.jsonl (the sample-efficiency comparison)
#   stream ncertify1e4 : the same with our bounds and 10^4 / 10^4 / 10^4 separate samples (the
#                  sample-efficiency comparison at 10^4 certification samples)
#   stream classifier : the MNIST classifier's probability vector in total variation, 10 inputs
#                  (run earlier with this command; its file moved here)
# sigma<S>-nearest.jsonl (then named sigma<S>.jsonl), -separate-1e5 and -auto were drawn on 6 Dec
# 2026 on the models of results/train_cpu.sh as trained that day, sigma<S>.jsonl the same evening; sigma<S>-torch-mt-v1.jsonl is the run of 26 Nov
# with the earlier noise stream and the models as first trained, and sigma<S>-3rhat.jsonl that
# run's samples certified before the bound changed, with the paper's 3 R-hat.
# One torch thread per stream; each file resumes where it stopped.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."
CS=".venv/bin/centersmooth"
MODELS="${CENTERSMOOTH_CACHE:-$HOME/.cache/centersmooth}/models"
N_INPUTS=20
COMMON=(--eps-in 0.5 1 1.5 2 --eps-in-relative --n-inputs "$N_INPUTS" --seed 0 --threads 1
  --quiet --resume)

run() {  # run DATASET TASK SIGMA NAME [ARGS...]: the four distances, into sigma<S><NAME>.jsonl
  local dataset=$1 task=$2 sigma=$3 name=$4
  shift 4
  mkdir -p "results/grid/$dataset-$task"
  $CS certify "$task" --checkpoint "$MODELS/$task-$dataset-sigma$sigma-seed0.pt" --sigma "$sigma" \
    --metric l2 angular tv1 tv2 --candidates tv1=30 tv2=30 "${COMMON[@]}" "$@" \
    --out "results/grid/$dataset-$task/sigma$sigma$name.jsonl"
}

cells() {  # cells DATASET NAME [ARGS...]: run both tasks of DATASET at every sigma
  local dataset=$1
  shift
  for sigma in 0.25 0.1 0.5; do
    for task in autoencoder reconstruction; do
      run "$dataset" "$task" "$sigma" "$@"
    done
  done
}

paper() {  # paper DATASET TASK SIGMA
  local dataset=$1 task=$2 sigma=$3
  local out="results/grid/$dataset-$task/sigma$sigma-paper.jsonl"
  mkdir -p "results/grid/$dataset-$task"
  $CS certify "$task" --checkpoint "$MODELS/$task-$dataset-sigma$sigma-seed0.pt" \
    --sigma "$sigma" --metric l2 --preset paper --examples 0 "${COMMON[@]}" --out "$out"
}

case "${1:-}" in
  mnist | fashion-mnist) cells "$1" "" --examples 4 ;;
  nearest) cells "${2:?nearest needs mnist or fashion-mnist}" -nearest --no-pairwise-bound \
    --examples 0 ;;
  separate-1e5) cells "${2:?separate-1e5 needs mnist or fashion-mnist}" -separate-1e5 \
    --n-certify 100000 --no-share-check-samples --no-pairwise-bound --examples 0 ;;
  auto) cells "${2:?auto needs mnist or fashion-mnist}" -auto --n-certify auto \
    --no-pairwise-bound --examples 0 ;;
  paper) paper "$2" "$3" "$4" ;;
  ball-mass)
    for sigma in 0.25 0.1 0.5; do
      for task in autoencoder reconstruction; do
        mkdir -p "results/grid/$3-$task"
        $CS certify "$task" --checkpoint "$MODELS/$task-$3-sigma$sigma-seed0.pt" \
          --sigma "$sigma" --metric l2 --ball-mass "$2" --n-certify 100000 \
          --no-share-check-samples --no-pairwise-bound --examples 0 "${COMMON[@]}" \
          --out "results/grid/$3-$task/sigma$sigma-mass$2.jsonl"
      done
    done
    ;;
  paper-rounds)
    cells=()
    for sigma in 0.25 0.1 0.5; do
      for cell in mnist:autoencoder mnist:reconstruction fashion-mnist:autoencoder \
        fashion-mnist:reconstruction; do
        cells+=("$cell:$sigma")
      done
    done
    if [[ "${3:-}" == reverse ]]; then  # a second stream, from the other end
      for ((i = ${#cells[@]} - 1; i >= 0; i--)); do order+=("${cells[i]}"); done
    else
      order=("${cells[@]}")
    fi
    for cell in "${order[@]}"; do
      IFS=: read -r dataset task sigma <<<"$cell"
      timeout "${2}m" bash "$SELF" paper "$dataset" "$task" "$sigma" || true
    done
    ;;
  ncertify1e4)
    mkdir -p results/grid/mnist-autoencoder
    $CS certify autoencoder --checkpoint "$MODELS/autoencoder-mnist-sigma0.25-seed0.pt" \
      --sigma 0.25 --metric l2 --n-certify 10000 --no-share-check-samples --no-pairwise-bound \
      --examples 0 \
      "${COMMON[@]}" \
      --out results/grid/mnist-autoencoder/sigma0.25-ncertify1e4.jsonl
    ;;
  classifier)
    mkdir -p results/grid/mnist-classifier
    $CS certify classifier --checkpoint "$MODELS/classifier-mnist-sigma0.25-seed0.pt" \
      --sigma 0.25 --metric total_variation --eps-in 0.5 1 1.5 2 --eps-in-relative \
      --n-certify 100000 --no-share-check-samples --no-pairwise-bound --n-inputs 10 --seed 0 \
      --threads 1 \
      --examples 0 --quiet --resume \
      --out results/grid/mnist-classifier/sigma0.25.jsonl
    ;;
  *) echo "usage: $0 mnist|fashion-mnist|nearest DATASET|separate-1e5 DATASET|auto DATASET|paper DATASET TASK SIGMA|paper-rounds MINUTES [reverse]|ball-mass MASS DATASET|ncertify1e4|classifier" >&2; exit 2 ;;
esac
