"""Deterministic kernels for seeded runs on a CUDA device.

The noise of a seeded run is the same on every run (``sampling.NoiseStream``). What the model
computes from it on a GPU is the same only if its kernels are: cuDNN may pick its convolution
algorithm by timing (``benchmark``) and some of its algorithms, like several torch kernels, add
in an order that changes from run to run; cuBLAS needs a fixed workspace
(``CUBLAS_WORKSPACE_CONFIG``) set before CUDA starts. A seeded call on a CUDA device therefore
runs with deterministic kernels asked for (torch's, warning where one has no deterministic
form), and says once if cuBLAS's workspace could not be fixed. The settings come back after
the call.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch

CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_FIXED = ":4096:8"  # one of the two settings cuBLAS documents as deterministic
_WARNED: set[str] = set()
_FILL = "fill_uninitialized_memory"  # torch.utils.deterministic's (a property of the module)


class DeterminismWarning(UserWarning):
    """A seeded run on a CUDA device cannot be made to repeat bit for bit."""


def fix_cublas_workspace(device: torch.device) -> None:
    """Before CUDA starts, fix cuBLAS's workspace for a run on a CUDA device (unless the user
    set it): its matrix products then repeat bit for bit. Once CUDA runs it is too late; a
    seeded call then warns (:func:`seeded_kernels`)."""
    if device.type == "cuda" and not torch.cuda.is_initialized():
        os.environ.setdefault(CUBLAS_WORKSPACE, CUBLAS_FIXED)


@contextlib.contextmanager
def seeded_kernels(device: torch.device, seeded: bool) -> Iterator[None]:
    """For a seeded call on a CUDA device: deterministic cuDNN algorithms, no timing-based
    choice, and torch's deterministic kernels (a kernel without one warns instead of failing);
    the previous settings after the block. Nothing changes elsewhere."""
    if not seeded or device.type != "cuda":
        yield
        return
    if os.environ.get(CUBLAS_WORKSPACE) not in (":4096:8", ":16:8"):
        _warn_once(
            "cublas",
            f"a seeded run on {device} repeats bit for bit only with {CUBLAS_WORKSPACE}="
            f"{CUBLAS_FIXED} set before CUDA starts (cuBLAS's matrix products otherwise add in "
            "an order that may change between runs); CUDA was started without it, so the last "
            f"bits of certificates may differ between runs: export {CUBLAS_WORKSPACE}="
            f"{CUBLAS_FIXED}, or build the smoother before anything else uses CUDA",
        )
    cudnn, utils = torch.backends.cudnn, torch.utils.deterministic
    before = (
        cudnn.deterministic,
        cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        getattr(utils, _FILL),
    )
    cudnn.deterministic, cudnn.benchmark = True, False
    # keep a user's strict setting strict; otherwise warn where a kernel has no deterministic form
    torch.use_deterministic_algorithms(True, warn_only=not before[2] or before[3])
    # the library writes every buffer it allocates before reading it: no need to fill them
    setattr(utils, _FILL, before[4] if before[2] else False)
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = before[0], before[1]
        torch.use_deterministic_algorithms(before[2], warn_only=before[3])
        setattr(utils, _FILL, before[4])


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, DeterminismWarning, stacklevel=4)
