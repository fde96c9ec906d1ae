#!/usr/bin/env bash
# The committed results again at the library's current defaults: shared check samples (the
# check's samples are the first of the certification's) and 10^4 / 10^4 / 10^4 samples, i.e.
# 20,001 forward passes per certificate instead of 120,001. The files made with the earlier
# defaults (10^4 / 10^4 / 10^5, separate check and certification samples) stay beside the new
# ones under a name that says so. Run the steps in order, on a quiet machine; every run step
# resumes where it stopped (the same command again).
#   step rename : move the files of the earlier defaults aside (git mv), keeping their example
#                 arrays (the header's examples_dir follows the rename):
#                   results/grid/<dataset>-<task>/sigma<S>.jsonl -> sigma<S>-separate-1e5.jsonl
#                   results/gan-faces/library-counts/default-sigma<S>.jsonl
#                                                         -> default-sigma<S>-separate-1e5.jsonl
#                   results/gan-faces/paper-counts/default-sigma<S>.jsonl
#                                                         -> default-sigma<S>-separate.jsonl
#                   results/face-boxes/haar-default-<src>-sigma<S>.jsonl -> ...-separate.jsonl
#                   results/face-embeddings/default-lfw-sigma0.05.jsonl -> ...-separate.jsonl
#   step grid mnist | grid fashion-mnist : the 12-cell image grid at the new defaults, one
#                 stream per data set (results/certify_grid_cpu.sh mnist|fashion-mnist: 20
#                 inputs per cell, four distances, tv1 / tv2 among 30 candidates)
#   step gan    : the GAN at the library's counts, both sigmas, and ours at the paper's GAN
#                 counts (2,000 / 2,000 / 10,000, now shared: 12,001 passes), with the figure
#                 (results/perceptual_cpu.sh gan-defaults, then gan; the paper preset's files
#                 are complete and are not redrawn)
#   step faces  : face boxes and face embeddings at their tasks' counts, now shared
#                 (results/perceptual_cpu.sh faces)
#   step tables : the grid's tables and figures (results/summarize.py), the GAN's and the
#                 faces' summaries; then update the numbers quoted from them in README.md,
#                 results/README.md, results/gan-faces.md, results/face-boxes.md,
#                 results/face-embeddings.md and benchmarks/RESULTS.md
# Estimated on the project's 2-core CPU, quiet, one torch thread per stream: grid about
# 20 min per data set (two streams side by side: about 20 min), gan about 35 min, faces about
# 35 min; about 1.5 hours in all run one after the other (benchmarks/RESULTS.md, "Forward
# passes per certificate", has the measured cost per certificate). Measured on 6 Dec 2026, gan
# and faces side by side beside other jobs: gan 43 min, faces 41 min.
# Done on 6 Dec 2026: rename (the GAN and face files only), the result runs of gan and faces
# (their driver commands; the figures were not redrawn) and the GAN's and faces' tables. The
# grid was not redrawn: the checkpoints it was drawn with were not in that machine's cache, and
# retraining gives other weights, so its files stay at the earlier defaults. With those
# checkpoints in place, `rename` now moves the grid's files and then stops at the GAN's
# (refusing: their -separate names exist), which is harmless; run `grid` after it.
set -euo pipefail
SELF_DIR="$(cd "$(dirname "$0")" && pwd)"
cd "$SELF_DIR/.."
PY=.venv/bin/python

rename() {  # rename OLD NEW: a results file and its example arrays, the header following
  local old=$1 new=$2
  [ -f "$old" ] || { echo "skip $old (not there)"; return 0; }
  [ -e "$new" ] && { echo "skip $old ($new is there: renamed before)"; return 0; }
  git mv "$old" "$new"
  local old_examples="${old%.jsonl}.examples" new_examples="${new%.jsonl}.examples"
  if [ -d "$old_examples" ]; then
    git mv "$old_examples" "$new_examples"
    $PY - "$new" "$(basename "$new_examples")" <<'EOF'
import json
import sys
from pathlib import Path

path, examples = Path(sys.argv[1]), sys.argv[2]
lines = path.read_text().splitlines(keepends=True)
header = json.loads(lines[0])
header["examples_dir"] = examples
path.write_text(json.dumps(header, separators=(", ", ": ")) + "\n" + "".join(lines[1:]))
EOF
  fi
  echo "$old -> $new"
}

case "${1:-}" in
  rename)
    for cell in results/grid/{mnist,fashion-mnist}-{autoencoder,reconstruction}; do
      for sigma in 0.1 0.25 0.5; do
        rename "$cell/sigma$sigma.jsonl" "$cell/sigma$sigma-separate-1e5.jsonl"
      done
    done
    for sigma in 0.25 0.5; do
      rename "results/gan-faces/library-counts/default-sigma$sigma.jsonl" \
        "results/gan-faces/library-counts/default-sigma$sigma-separate-1e5.jsonl"
      rename "results/gan-faces/paper-counts/default-sigma$sigma.jsonl" \
        "results/gan-faces/paper-counts/default-sigma$sigma-separate.jsonl"
    done
    for file in results/face-boxes/haar-default-*-sigma*.jsonl; do
      case "$file" in *-3rhat.jsonl | *-separate.jsonl) continue ;; esac
      rename "$file" "${file%.jsonl}-separate.jsonl"
    done
    rename results/face-embeddings/default-lfw-sigma0.05.jsonl \
      results/face-embeddings/default-lfw-sigma0.05-separate.jsonl
    ;;
  grid)
    bash results/certify_grid_cpu.sh "${2:?grid needs mnist or fashion-mnist}"
    ;;
  gan)
    bash results/perceptual_cpu.sh gan-defaults 0.25 0.5
    bash results/perceptual_cpu.sh gan
    ;;
  faces)
    bash results/perceptual_cpu.sh faces
    ;;
  tables)
    $PY results/summarize.py
    $PY -m centersmooth.tasks.gan_faces --out results/gan-faces/paper-counts --summary
    $PY -m centersmooth.tasks.gan_faces --out results/gan-faces/library-counts --summary
    $PY -m centersmooth.tasks.face_boxes --out results/face-boxes --summary
    $PY -m centersmooth.tasks.face_embeddings --out results/face-embeddings --summary
    ;;
  *) echo "usage: $0 rename|grid mnist|grid fashion-mnist|gan|faces|tables" >&2; exit 2 ;;
esac
