"""The automatic batch size (``batch_size=None``): as many noisy samples per forward pass as the
memory that one sample needs allows, on a CUDA device and on the CPU alike.

Two small probe batches (``PROBE`` and twice as many samples: noisy inputs, the model's outputs
and the distances of those outputs) are measured; a straight line through their peaks gives the
memory one more sample costs and what a batch costs whatever its size (workspaces), and the
outputs of the batch before, which the caller still holds, are added per sample. The batch is
what then fits in the memory left after the center samples (``n_center`` outputs per input, held
through the first stage), the certification distances (one float per sample, distance and input,
up to ``n_certify_cap`` with ``n_certify="auto"``, kept sorted beside each round's fresh ones)
and a block of noise per input (``sampling.noise_block``), with
``HEADROOM`` to spare, within the share of the device this worker may use:

- on a CUDA device, peaks come from torch's allocator; the memory is what the device has free
  plus what torch holds unused, and the batch found (at most ``CUDA_LIMIT``, a power of two) is
  run once and halved while the device runs out of memory (cuBLAS and cuDNN report that as a
  ``RuntimeError``, not as ``torch.cuda.OutOfMemoryError``);
- on the CPU (Linux), peaks come from the kernel's record of the process's resident memory;
  a batch uses at most ``CPU_BATCH_BYTES`` (larger batches gain nothing there) and at most
  ``CPU_LIMIT`` samples. Where the peak cannot be read, the batch is ``CPU_LIMIT``.

The batch size never changes a certificate: the noise comes in fixed blocks
(``sampling.NoiseStream``), whichever batch draws it.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from .sampling import BaseFunction, noise_block, noisy_batch

T = TypeVar("T")
PROBE = 16  # samples in the first probe batch (the second holds twice as many)
HEADROOM = 0.8  # share of the memory left that batches may fill
CUDA_LIMIT = 2**16
CPU_LIMIT = 1_000
CPU_BATCH_BYTES = 2**30
_OUT_OF_MEMORY = re.compile(
    r"out of memory|ALLOC_FAILED|cudaErrorMemoryAllocation|can't allocate memory", re.IGNORECASE
)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says the device ran out of memory: ``torch.cuda.OutOfMemoryError``, or a
    ``RuntimeError`` of cuBLAS / cuDNN / the CPU allocator saying so in its message."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and bool(_OUT_OF_MEMORY.search(str(err)))


def find_batch_size(
    base_function: BaseFunction,
    x: torch.Tensor,
    sigma: float,
    numpy_dtype: np.dtype | None = None,
    *,
    metrics: Sequence[Any] = (),
    held_samples: int = 0,
    held_bytes: int = 0,
    streams: int = 1,
    share: float = 1.0,
    limit: int | None = None,
) -> int:
    """The batch size for inputs like ``x`` (see the module docstring).

    ``metrics``: the distances computed on each batch (their memory counts per sample);
    ``held_samples``: outputs kept while batches run (the center samples of every input of the
    call); ``held_bytes``: other memory kept on the device while batches run (the certification
    distances); ``streams``: inputs whose noise streams each hold a block of noisy samples
    beside the batch (``sampling.noise_block``); ``share``: the part of the device's memory this
    worker may plan for (several workers on one device); ``limit``: the largest batch (default
    ``CUDA_LIMIT`` on a CUDA device, ``CPU_LIMIT`` elsewhere).
    """
    cuda = x.device.type == "cuda"
    limit = int(limit or (CUDA_LIMIT if cuda else CPU_LIMIT))
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share!r}")

    def probes(size: int) -> tuple[_Probe, _Probe]:
        first = _probe(base_function, x, sigma, size, numpy_dtype, metrics)
        return first, _probe(base_function, x, sigma, 2 * size, numpy_dtype, metrics)

    small, (first, second) = _halving(probes, max(1, min(PROBE, limit // 2)), "probe batches")
    if first.peak is None or second.peak is None:
        return limit  # the peak cannot be read here (not Linux): the largest batch
    per_sample = (second.peak - first.peak) / small
    if per_sample <= 0:  # the two peaks lie within the allocator's rounding
        per_sample = second.peak / (2 * small)
    fixed = max(0.0, first.peak - small * per_sample)
    # the caller still holds the outputs of the batch before while a batch runs
    per_sample += second.output_bytes
    held = held_samples * second.output_bytes + held_bytes
    blocks = streams * noise_block(x) * x.numel() * x.element_size()
    available = available_memory(x.device, share)
    if held > available:
        warnings.warn(
            f"the center samples ({held_samples} outputs) and the certification distances alone "
            f"({held / 2**30:.1f} GiB) need more memory than this {x.device.type.upper()} has "
            f"available ({available / 2**30:.1f} GiB): lower n_center or n_certify (the cap "
            "with n_certify='auto'), or certify fewer inputs together",
            RuntimeWarning,
            stacklevel=3,
        )
    budget = (available - held - blocks - fixed) * HEADROOM
    if not cuda:
        budget = min(budget, CPU_BATCH_BYTES * share)
    size = _power_of_two_within(budget / max(per_sample, 1.0), limit)
    return _largest_that_runs(base_function, x, sigma, size, numpy_dtype) if cuda else size


def _power_of_two_within(size: float, limit: int) -> int:
    """``limit`` if ``size`` reaches it, else the largest power of two at most ``size`` (>= 1)."""
    if size >= limit:
        return limit
    return 1 << max(0, int(math.floor(math.log2(max(size, 1.0)))))


def _largest_that_runs(
    base_function: BaseFunction, x: torch.Tensor, sigma: float, size: int, numpy_dtype: Any
) -> int:
    """``size``, halved while a batch of it runs out of device memory."""

    def run(n: int) -> None:
        _probe(base_function, x, sigma, n, numpy_dtype, ())

    return _halving(run, size, "a batch")[0]


def _halving(attempt: Callable[[int], T], size: int, what: str) -> tuple[int, T]:
    """``attempt(size)``, with ``size`` halved while the device runs out of memory; the size
    that ran and what it returned."""
    while True:
        try:
            return size, attempt(size)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            if size == 1:
                raise RuntimeError(
                    f"the base function runs out of device memory on {what} of 1 ({err})"
                ) from None
            size //= 2


class _Probe:
    """One probe batch: its peak memory above what was held before (bytes, ``None`` where it
    cannot be read) and the bytes of one output."""

    def __init__(self, peak: float | None, output_bytes: int) -> None:
        self.peak, self.output_bytes = peak, output_bytes


def _probe(
    base_function: BaseFunction,
    x: torch.Tensor,
    sigma: float,
    size: int,
    numpy_dtype: Any,
    metrics: Sequence[Any],
) -> _Probe:
    """Noisy inputs, the model's outputs and their distances for one batch of ``size``, with
    its peak memory. The noise comes from a generator of its own (the run's streams are not
    touched)."""
    gen = torch.Generator(device=x.device)
    gen.manual_seed(0)
    with _peak_memory(x.device) as peak:
        out = base_function(noisy_batch(x, sigma, size, gen), numpy_dtype, check_finite=False)
        for metric in metrics:
            with contextlib.suppress(Exception):  # a failing distance is reported by the run
                metric(_repeat_first(out), out)
        output_bytes = _bytes_per_output(out, size)
        del out
    return _Probe(peak[0], output_bytes)


def _repeat_first(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out[:1].expand_as(out)
    return [out[0]] * len(out)


def _bytes_per_output(out: Any, size: int) -> int:
    if isinstance(out, torch.Tensor):
        return out[0].numel() * out.element_size() if size else 0
    return 0  # Python objects: small against a tensor batch, not counted


@contextlib.contextmanager
def _peak_memory(device: torch.device) -> Iterator[list[float | None]]:
    """The block's peak memory above the memory held when it starts, in bytes, in ``[0]`` on
    leaving it (``None`` where it cannot be read)."""
    result: list[float | None] = [None]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        allocated = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        torch.cuda.synchronize(device)
        result[0] = float(torch.cuda.max_memory_allocated(device) - allocated)
        return
    resident = _reset_resident_peak() if device.type == "cpu" else None
    yield result
    if resident is not None:
        peak = _resident_bytes("VmHWM")
        result[0] = None if peak is None else float(max(0, peak - resident))


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _resident_bytes(field: str) -> int | None:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, from Linux's
    ``/proc/self/status``; ``None`` elsewhere."""
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return None if found is None else int(found.group(1)) * 1024


def _reset_resident_peak() -> int | None:
    """Reset the kernel's resident peak to the memory resident now (Linux: ``5`` written to
    ``/proc/self/clear_refs``) and return that; ``None`` where it cannot be done."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return None
    return _resident_bytes("VmRSS")


def available_memory(device: torch.device, share: float = 1.0) -> float:
    """Bytes a batch may still use on ``device``: on a CUDA device what is free plus what torch
    holds unused, at most ``share`` of the whole device less what torch holds in use; on the
    CPU ``share`` of the memory the kernel reports available (``inf`` where it reports none)."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        allocated = torch.cuda.memory_allocated(device)
        unused = torch.cuda.memory_reserved(device) - allocated
        return float(min(free + unused, share * total - allocated))
    try:
        found = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    except OSError:
        found = None
    return math.inf if found is None else share * int(found.group(1)) * 1024
