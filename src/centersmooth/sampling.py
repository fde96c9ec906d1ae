"""Noisy copies of one input pushed through the base function, in seeded batches on the device.

The base function may be an ``nn.Module`` (evaluated in eval mode under ``torch.no_grad()``), a
callable on torch batches, or a callable on NumPy batches (chosen by passing a NumPy input).
Outputs are tensor batches, NumPy arrays (converted to tensors) or lists of Python objects.
Every batch is checked: right length, no NaN or infinity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from .metrics.base import Outputs


def resolve_device(device: str | torch.device | None, base_function: Any) -> torch.device:
    """``device`` if given, else the device of a module's first parameter, else the CPU."""
    if device is not None:
        return torch.device(device)
    if isinstance(base_function, nn.Module):
        for param in base_function.parameters():
            return param.device
        for buffer in base_function.buffers():
            return buffer.device
    return torch.device("cpu")


def make_generator(device: torch.device, seed: int | None) -> torch.Generator:
    """A generator on ``device``: seeded for bit-for-bit reproducibility, else freshly seeded."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


class BaseFunction:
    """The user's model as a function from a noisy torch batch to a checked output batch."""

    def __init__(self, fn: Callable[..., Any], device: torch.device) -> None:
        if not callable(fn):
            raise TypeError(
                f"base_function must be an nn.Module or a callable, got {type(fn).__name__}"
            )
        if isinstance(fn, nn.Module):
            fn.eval()
            fn.to(device)
        self.fn = fn
        self.device = device

    def __call__(self, batch: torch.Tensor, numpy_dtype: np.dtype | None = None) -> Outputs:
        """Apply the model to ``batch`` (as a NumPy array of ``numpy_dtype`` for NumPy models)."""
        with torch.no_grad():
            if numpy_dtype is not None:
                raw = self.fn(batch.detach().cpu().numpy().astype(numpy_dtype, copy=False))
            else:
                raw = self.fn(batch)
        return self._check(raw, batch.shape[0])

    def _check(self, raw: Any, expected: int) -> Outputs:
        if isinstance(raw, np.ndarray) and raw.dtype != object:
            raw = torch.from_numpy(np.ascontiguousarray(raw))
        if isinstance(raw, torch.Tensor):
            if raw.dim() == 0 or raw.shape[0] != expected:
                got = "a scalar" if raw.dim() == 0 else f"a batch of {raw.shape[0]}"
                raise ValueError(
                    f"base function returned {got} for a batch of {expected} inputs; it must "
                    f"return one output per input (first dimension = batch)"
                )
            out = raw.detach().to(self.device)
            if (out.is_floating_point() or out.is_complex()) and not bool(
                torch.isfinite(out).all()
            ):
                raise ValueError("base function returned NaN or infinite outputs")
            return out
        if isinstance(raw, list | tuple | np.ndarray):
            items = list(raw)
            if len(items) != expected:
                raise ValueError(
                    f"base function returned {len(items)} outputs for a batch of {expected} inputs"
                )
            return items
        raise TypeError(
            "base function must return a tensor, a NumPy array or a list with one output per "
            f"input, got {type(raw).__name__}"
        )


def noisy_batches(
    x: torch.Tensor, sigma: float, n: int, batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """``n`` draws of ``x + N(0, sigma^2 I)`` in batches of at most ``batch_size`` (no clipping)."""
    done = 0
    while done < n:
        size = min(batch_size, n - done)
        noise = torch.randn((size, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
        yield x.unsqueeze(0) + sigma * noise
        done += size


def concat_outputs(parts: list[Outputs]) -> Outputs:
    """Join output batches: ``torch.cat`` for tensors, list concatenation otherwise."""
    if parts and isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return [item for part in parts for item in part]
