#!/usr/bin/env bash
# Issue 4's results on a CPU without a GPU, one torch thread, in this order (each step resumes
# where it stopped; the drivers print their tables at the end):
#   1. gan-faces at the paper's GAN counts (2,000 / 2,000 / 10,000, 30 candidates): the paper's
#      constants (Hoeffding, delta 0.08, samples-only centers) and ours (binomial, delta 0.05,
#      central candidates), 5 latent inputs, sigma 0.25 and 0.5
#   2. gan-faces with our defaults at the library's counts (10^4 / 10^4 / 10^5), 3 latent inputs
#   3. face boxes (Haar cascade, Jaccard) and face embeddings (dlib, angular)
#   4. the figures
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
COMMON=(--threads 1 --quiet)

$PY -m centersmooth.tasks.gan_faces --out results/gan-faces/paper-counts --inputs 5 \
  --sigmas 0.25 0.5 --presets paper default --n-center 2000 --n-certify 10000 "${COMMON[@]}"
$PY -m centersmooth.tasks.gan_faces --out results/gan-faces/library-counts --inputs 3 \
  --sigmas 0.25 0.5 --presets default "${COMMON[@]}"
$PY -m centersmooth.tasks.face_boxes --out results/face-boxes --inputs astronaut lfw:3 gan:1 \
  --sigmas 0.05 --n-center 1000 --n-certify 1000 "${COMMON[@]}"
$PY -m centersmooth.tasks.face_boxes --out results/face-boxes --inputs astronaut lfw:1 gan:1 \
  --sigmas 0.1 --n-center 1000 --n-certify 1000 "${COMMON[@]}"
$PY -m centersmooth.tasks.face_embeddings --out results/face-embeddings --inputs lfw:4 \
  --sigmas 0.05 "${COMMON[@]}"
$PY -m centersmooth.tasks.gan_faces --out results/gan-faces/paper-counts --sigmas 0.5 \
  --presets paper --n-center 2000 --n-certify 10000 --figure results/gan-faces.png
$PY -m centersmooth.tasks.face_boxes --out results/face-boxes --inputs astronaut lfw:1 gan:1 \
  --sigmas 0.05 --n-center 1000 --n-certify 1000 --figure results/face-boxes.png
