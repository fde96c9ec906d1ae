#!/usr/bin/env bash
# The GAN and face results on a CPU without a GPU, one torch thread per stream; every step resumes where
# it stopped and the drivers print their tables at the end.
#   stream gan: gan-faces at the paper's GAN counts (2,000 / 2,000 / 10,000, 30 candidates): the
#     paper's constants (Hoeffding, delta 0.08, samples-only centers) and ours (binomial, delta
#     0.05, central candidates), 5 latent inputs, sigma 0.25 and 0.5; then the figure
#   stream gan-defaults [SIGMA ...]: gan-faces with our defaults at the library's counts (10^4 /
#     10^4 / 10^4, the check's samples the first of the certification's), 3 latent inputs, sigma 0.25 and 0.5 (or the SIGMAs given: one stream per
#     sigma runs them side by side, each writing its own file)
#   stream faces:
#     1. face boxes (Haar cascade, Jaccard) at the task's defaults, the paper's face counts
#        (5,000 / 5,000 / 10,000), 8 photographs, sigma 0.05 and 0.1, and the figure (MTCNN, the
#        task's default detector, and Haar at the library's counts: face_boxes_mtcnn.sh)
#     2. face embeddings (dlib, angular), 200 / 200 / 1,000 samples, delta 0.12 (the binomial
#        margin of 200 centre samples is 0.096)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
COMMON=(--threads 1 --quiet)

case "${1:-}" in
  gan)
    $PY -m centersmooth.tasks.gan_faces --out results/gan-faces/paper-counts --inputs 5 \
      --sigmas 0.25 0.5 --presets paper default --n-center 2000 --n-certify 10000 "${COMMON[@]}"
    $PY -m centersmooth.tasks.gan_faces --out results/gan-faces/paper-counts --inputs 5 \
      --sigmas 0.5 --presets paper --n-center 2000 --n-certify 10000 \
      --figure results/gan-faces/figure.png
    ;;
  gan-defaults)
    shift
    sigmas=("$@")
    [ ${#sigmas[@]} -gt 0 ] || sigmas=(0.25 0.5)
    $PY -m centersmooth.tasks.gan_faces --out results/gan-faces/library-counts --inputs 3 \
      --sigmas "${sigmas[@]}" --presets default "${COMMON[@]}"
    ;;
  faces)
    $PY -m centersmooth.tasks.face_boxes --out results/face-boxes --inputs astronaut lfw:5 gan:2 \
      --sigmas 0.05 0.1 --detector haar "${COMMON[@]}"
    $PY -m centersmooth.tasks.face_boxes --out results/face-boxes --inputs astronaut lfw:5 gan:2 \
      --sigmas 0.05 --detector haar --figure results/face-boxes/figure.png
    $PY -m centersmooth.tasks.face_embeddings --out results/face-embeddings --inputs lfw:4 \
      --sigmas 0.05 --n-center 200 --n-certify 1000 --delta 0.12 "${COMMON[@]}"
    ;;
  *) echo "usage: $0 gan|gan-defaults|faces" >&2; exit 2 ;;
esac
