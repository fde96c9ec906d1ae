#!/usr/bin/env bash
# The main job: set up (scripts/setup.sh), then `centersmooth demo` on the bundled digits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/centersmooth demo "$@"
