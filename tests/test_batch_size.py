"""The automatic batch size (``batch_size=None``, the default): from the memory one sample needs,
on the CPU as on a CUDA device, with the out-of-memory errors of every CUDA library caught."""

import numpy as np
import pytest
import torch
from seeded_settings import CONV, DEVICE_COUNTS, SIX_TO_FOUR_WIDE, conv_autoencoder, six_to_four
from torch import nn

import centersmooth.batch_size as batch_size
from centersmooth import CenterSmoothing
from centersmooth.batch_size import find_batch_size, is_out_of_memory
from centersmooth.metrics import get_metric
from centersmooth.sampling import BaseFunction

CPU = torch.device("cpu")
MIB = 2**20


def holds_per_sample(mib: int):
    """A model that holds ``mib`` MiB per sample at its peak (mapped pages, so the kernel's
    count of resident memory sees them) and returns one number per sample."""

    def fn(batch: torch.Tensor) -> torch.Tensor:
        big = torch.ones(batch.shape[0], mib * MIB // 4)
        return big.sum(dim=1, keepdim=True) + batch[:, :1]

    return fn


def resident_peak_is_readable() -> bool:
    return batch_size._reset_resident_peak() is not None


def test_errors_of_every_cuda_library_count_as_out_of_memory():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling"))
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not raised by a library


@pytest.mark.skipif(not resident_peak_is_readable(), reason="needs Linux's /proc/self")
def test_cpu_batch_follows_the_memory_one_sample_needs():
    """3 MiB per sample: at most 1 GiB per batch gives 341, so 256 (a power of two); a quarter
    of the machine (four workers) gives 85, so 64 (each within 20% of the measured memory). A
    small model gets the CPU limit of 1,000."""
    fn = BaseFunction(holds_per_sample(3), CPU)
    assert find_batch_size(fn, torch.zeros(3), 0.1) == 256
    assert find_batch_size(fn, torch.zeros(3), 0.1, share=0.25) == 64
    small = BaseFunction(nn.Linear(3, 2), CPU)
    assert find_batch_size(small, torch.zeros(3), 0.1) == batch_size.CPU_LIMIT


@pytest.mark.skipif(not resident_peak_is_readable(), reason="needs Linux's /proc/self")
def test_the_center_samples_and_the_memory_left_bound_the_batch(monkeypatch):
    """With 700 MiB available, 80% of it holds 186 samples of 3 MiB, so 128; 20,000 held outputs
    of 16 KiB (312 MiB) leave 388 MiB, 80% of it 310 MiB: 103 samples, so 64 (each within 20%
    of the measured memory). Held samples beyond the memory warn up front."""
    monkeypatch.setattr(batch_size, "available_memory", lambda device, share=1.0: 700 * MIB)

    def fn(batch: torch.Tensor) -> torch.Tensor:
        return holds_per_sample(3)(batch).expand(-1, 4096).contiguous()  # 16 KiB outputs

    base = BaseFunction(fn, CPU)
    assert find_batch_size(base, torch.zeros(3), 0.1) == 128
    assert find_batch_size(base, torch.zeros(3), 0.1, held_samples=20_000) == 64
    with pytest.warns(RuntimeWarning, match="certification distances alone"):
        assert find_batch_size(base, torch.zeros(3), 0.1, held_samples=50_000) == 1


@pytest.mark.skipif(not resident_peak_is_readable(), reason="needs Linux's /proc/self")
def test_held_certification_distances_bound_the_batch(monkeypatch):
    """312 MiB held as distances bound the batch as 20,000 held outputs of 16 KiB do: 64."""
    monkeypatch.setattr(batch_size, "available_memory", lambda device, share=1.0: 700 * MIB)
    base = BaseFunction(lambda b: holds_per_sample(3)(b).expand(-1, 4096).contiguous(), CPU)
    assert find_batch_size(base, torch.zeros(3), 0.1, held_bytes=312 * MIB) == 64


def test_the_smoother_counts_its_certification_distances(monkeypatch):
    """What the automatic batch size is told is held: the center outputs of every input, and
    float64 distances twice over per certification sample (the cap with auto), distance and
    input."""
    told = []

    def record(*args, **kwargs):
        told.append((kwargs["held_samples"], kwargs["held_bytes"]))
        return 64

    monkeypatch.setattr("centersmooth.smoothing.find_batch_size", record)
    net = nn.Linear(3, 2)
    xs = [torch.zeros(3), torch.ones(3)]
    counts = dict(n_center=1_000, n_check=2_000, delta=0.25)
    fixed = CenterSmoothing(net, n_certify=3_000, **counts)
    auto = CenterSmoothing(net, n_certify="auto", n_certify_cap=32_000, **counts)
    for smoother in (fixed, auto):
        smoother._batch_size(smoother._inputs(xs, None), [get_metric("l2"), get_metric("l1")])
    assert told == [(2_000, 2 * 8 * 3_000 * 2 * 2), (2_000, 2 * 8 * 32_000 * 2 * 2)]


def test_probes_shrink_until_the_model_runs():
    """A model out of memory beyond 8 samples (as cuBLAS says it) is probed with 4 and 8."""
    seen = []

    def fn(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.shape[0])
        if batch.shape[0] > 8:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate")
        return batch

    size = find_batch_size(BaseFunction(fn, CPU), torch.zeros(3), 0.1)
    assert seen[-2:] == [4, 8] and 1 <= size <= batch_size.CPU_LIMIT
    with pytest.raises(IndexError):  # another error goes through
        find_batch_size(BaseFunction(lambda b: b[:, 5], CPU), torch.zeros(3), 0.1)


def test_a_batch_that_does_not_run_is_halved():
    """What a CUDA device does after the estimate: run the batch, halve while it fails."""

    def fn(batch: torch.Tensor) -> torch.Tensor:
        if batch.shape[0] > 4096:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return batch

    base = BaseFunction(fn, CPU)
    assert batch_size._largest_that_runs(base, torch.zeros(3), 0.1, 2**16, None) == 4096
    never = BaseFunction(lambda b: fn(b.repeat(5000, 1)), CPU)
    with pytest.raises(RuntimeError, match="batch of 1"):
        batch_size._largest_that_runs(never, torch.zeros(3), 0.1, 4, None)


def test_automatic_batch_is_found_once_per_shape_and_distances(monkeypatch):
    calls = []
    real = batch_size.find_batch_size

    def counted(*args, **kwargs):
        calls.append((tuple(args[1].shape), tuple(m.name for m in kwargs["metrics"])))
        return real(*args, **kwargs)

    monkeypatch.setattr("centersmooth.smoothing.find_batch_size", counted)
    smoother = CenterSmoothing(lambda b: b * 2, seed=0, n_center=1000, n_check=400, n_certify=400)
    smoother.certify(torch.zeros(3), 0.1)
    smoother.certify(torch.ones(3), 0.1)
    smoother.certify(torch.zeros(5), 0.1)
    smoother.certify_metrics(torch.zeros(5), 0.1, ["l2", "linf"])
    assert calls == [((3,), ("l2",)), ((5,), ("l2",)), ((5,), ("l2", "linf"))]


def test_the_batch_size_changes_no_certificate():
    x = torch.linspace(-1, 1, 6)
    net = six_to_four()
    # both runs certify (seeded_settings.SIX_TO_FOUR_WIDE), so their numbers can be compared
    counts = dict(DEVICE_COUNTS, seed=SIX_TO_FOUR_WIDE.seed)
    auto = CenterSmoothing(net, **counts).certify(x, [0.1, 0.2])
    fixed = CenterSmoothing(net, batch_size=77, **counts).certify(x, [0.1, 0.2])
    assert not auto.abstained and not fixed.abstained
    np.testing.assert_array_equal(auto.eps_out, fixed.eps_out)


@pytest.mark.cuda
def test_cuda_batch_fits_with_headroom_and_shares_the_device():
    device = torch.device("cuda")
    net, x = conv_autoencoder()
    net, x = net.to(device), x.to(device)
    base = BaseFunction(net, device)
    whole = find_batch_size(base, x, 0.25, held_samples=10_000)
    half = find_batch_size(base, x, 0.25, held_samples=10_000, share=0.5)
    assert 256 <= whole <= batch_size.CUDA_LIMIT and whole & (whole - 1) == 0
    assert half <= whole
    # the setting of seeded_settings.CONV (on another noise stream): it accepts
    smoother = CenterSmoothing(net, device="cuda", seed=CONV.seed, **DEVICE_COUNTS)
    assert smoother.batch_size is None
    assert not smoother.certify(x, 0.1).abstained
