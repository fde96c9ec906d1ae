#!/usr/bin/env bash
# Ray, for the distributed backend (certify --backend ray) and its tests (tests/test_ray_backend.py).
# Optional for users (pip install 'centersmooth[ray]'); CI installs it. Idempotent and quiet.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -x .venv/bin/python ] && ! .venv/bin/python -c "import ray" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "ray[default]>=2.9" \
    || echo "setup: pip install ray failed; the Ray backend and its tests will be skipped" >&2
fi
