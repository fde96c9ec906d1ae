#!/usr/bin/env bash
# Every GPU figure in one command, on a machine without network:
#   bash benchmarks/device_check.sh OUT_DIR [--dry-run]
# Writes OUT_DIR/device_check.md (report), OUT_DIR/device_check.json (raw figures) and
# OUT_DIR/device_setup.log (how the environment was made); nothing else goes to OUT_DIR.
#
# Uses a Python that already has torch (a CUDA build for the real run): DEVICE_CHECK_PYTHON, else
# python3. Over it, benchmarks/device_setup.py makes a virtual environment that sees its packages
# (torch is never installed), installs the wheels of the prepared folder that Python lacks (pip
# --no-index: nothing is fetched) and this checkout without its dependencies. The folder
# (DEVICE_CHECK_BUNDLE, default .device-bundle/ here) comes from
#   .venv/bin/python benchmarks/prepare_device_bundle.py
# run where there is network; its data and trained weights become the project's cache for the
# run. Without it the check says so and measures what it can (random weights where none are
# found). What cannot be done without is printed in one line, and the exit status is 2.
#
# On one CUDA GPU the parts take at most about 8 minutes together (each has its own budget;
# a part that would overrun is stopped and the report says so); the set-up takes seconds.
# --dry-run runs every part at toy sizes on the CPU to check that the script works. Without a
# CUDA device (and without --dry-run) it stops with a message and exit status 2.
# Exit status 1: a part failed or a CUDA test failed (or none could be collected).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: bash benchmarks/device_check.sh OUT_DIR [--dry-run]" >&2
  exit 64
fi
OUT_DIR=$1
shift
PYTHON=${DEVICE_CHECK_PYTHON:-python3}
BUNDLE=${DEVICE_CHECK_BUNDLE:-$PWD/.device-bundle}
VENV=${DEVICE_CHECK_VENV:-${TMPDIR:-/tmp}/centersmooth-device-check-venv}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "device_check: missing, cannot run: $PYTHON (set DEVICE_CHECK_PYTHON to a Python with torch)" >&2
  exit 2
fi
mkdir -p "$OUT_DIR"
status=0
"$PYTHON" benchmarks/device_setup.py --venv "$VENV" --bundle "$BUNDLE" \
  --log "$OUT_DIR/device_setup.log" || status=$?
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
if [ -d "$BUNDLE/cache" ]; then
  export CENTERSMOOTH_CACHE="$BUNDLE/cache"
fi
export DEVICE_CHECK_BUNDLE="$BUNDLE"
export DEVICE_CHECK_INVOCATION="bash benchmarks/device_check.sh $OUT_DIR${*:+ $*}"
export PIP_NO_INDEX=1
# a hard stop a little above the parts' total budget (480 s), so a stuck device cannot hold the
# machine; the report written so far stays in OUT_DIR
exec timeout --signal=TERM --kill-after=10 510 \
  "$VENV/bin/python" benchmarks/device_check.py "$OUT_DIR" "$@"
