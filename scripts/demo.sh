#!/usr/bin/env bash
# The main job: set up (scripts/setup.sh), then the demo on the embedded digits data set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if .venv/bin/centersmooth --help >/dev/null 2>&1; then
  .venv/bin/centersmooth demo "$@"
else
  .venv/bin/python examples/quickstart.py
fi
