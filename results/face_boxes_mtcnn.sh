#!/usr/bin/env bash
# Face boxes in Jaccard distance with MTCNN (the paper's detector) beside the Haar cascade, on the
# offline face images (astronaut, lfw:5, gan:2), sigma 0.05 and 0.1 (12.75 and 25.5 in 0-255
# units), eps_in = 0.5, 1, 1.5 sigma, with the current defaults; one torch thread per step. Every
# step continues its files where they stop (a step whose files are complete costs nothing).
#
#   bash results/face_boxes_mtcnn.sh [STEP ...]      (default: every step, in this order)
#     mtcnn-paper     MTCNN at the paper's counts (5,000 / 5,000 / 10,000: the task's defaults)
#                     -> results/face-boxes/mtcnn-default-<set>-sigma<S>.jsonl
#     haar-paper      the Haar rows at the same counts (the files of results/face-boxes.md; run
#                     again only where they are missing)
#     mtcnn-library   MTCNN at the library's default counts (SmoothingSettings: 10^4 / 10^4 /
#                     10^4) -> results/face-boxes/library-counts/
#     haar-library    the Haar cascade at the library's counts, for the side by side
#     figure          results/face-boxes/figure-mtcnn.png: sigma 0.05, eps_in = sigma, paper counts
#     summary         the markdown tables of results/face-boxes.md from all these files
# On a 2-core machine run two shells side by side (INPUTS="lfw:5" in one, INPUTS="astronaut gan:2"
# in the other: each input set has its own files), then `... summary`: about 2.3 hours of CPU for
# every step, a little over an hour on two cores (results/face-boxes.md, "MTCNN beside the
# cascade").
#
# Environment (for a check at toy size): OUT (default results/face-boxes), INPUTS (default
# "astronaut lfw:5 gan:2"), SIGMAS (default "0.05 0.1"), EXTRA (more driver flags, e.g.
# "--n-center 100 --n-certify 150 --delta 0.25", which go over both count settings).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-results/face-boxes}
read -r -a inputs <<< "${INPUTS:-astronaut lfw:5 gan:2}"
read -r -a sigmas <<< "${SIGMAS:-0.05 0.1}"
read -r -a extra <<< "${EXTRA:-}"
driver=("$PY" -m centersmooth.tasks.face_boxes --inputs "${inputs[@]}" --sigmas "${sigmas[@]}")
run=(--threads 1 --quiet "${extra[@]}")

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(mtcnn-paper haar-paper mtcnn-library haar-library figure summary)
for step in "${steps[@]}"; do
  case "$step" in
    mtcnn-paper) "${driver[@]}" --out "$OUT" --detector mtcnn "${run[@]}" > /dev/null ;;
    haar-paper) "${driver[@]}" --out "$OUT" --detector haar "${run[@]}" > /dev/null ;;
    mtcnn-library)
      "${driver[@]}" --out "$OUT/library-counts" --detector mtcnn --library-counts "${run[@]}" \
        > /dev/null ;;
    haar-library)
      "${driver[@]}" --out "$OUT/library-counts" --detector haar --library-counts "${run[@]}" \
        > /dev/null ;;
    figure)
      "$PY" -m centersmooth.tasks.face_boxes --out "$OUT" --inputs "${inputs[@]}" \
        --sigmas "${sigmas[0]}" --detector mtcnn --figure "$OUT/figure-mtcnn.png" "${extra[@]}" ;;
    summary) "$PY" results/face_boxes_summary.py "$OUT" ;;
    *) echo "unknown step $step; steps: mtcnn-paper haar-paper mtcnn-library haar-library" \
         "figure summary" >&2; exit 2 ;;
  esac
done
