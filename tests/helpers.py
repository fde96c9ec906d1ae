"""Cheap base functions for the runner, Ray and report tests (picklable factories).

Ray workers cannot import this module by name; the runner ships its module by value
(``workers._ship_by_value``), so these factories work with local Ray and with a cluster.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's CPU threads set to ``n`` for the block, then back to what they were."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SlowLinear(nn.Module):
    """A seeded linear map followed by tanh; ``delay`` seconds of sleep per forward batch."""

    def __init__(self, dim_in: int, dim_out: int, seed: int, delay: float = 0.0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(dim_out, dim_in, generator=gen) / dim_in**0.5)
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        return torch.tanh(x.flatten(1) @ self.weight.T)


@dataclass(frozen=True)
class LinearFactory:
    """Zero-argument factory of :class:`SlowLinear` (picklable)."""

    dim_in: int = 16
    dim_out: int = 16
    seed: int = 0
    delay: float = 0.0

    def __call__(self) -> nn.Module:
        return SlowLinear(self.dim_in, self.dim_out, self.seed, self.delay)


class KillWorker(nn.Module):
    """Wraps a model; SIGKILLs its own process at forward call ``after`` while fewer than
    ``kills`` processes have died (counted in the file ``counter``, written before the kill).
    The process ``spare`` (the one running the test, where the run tries its settings on the
    model before it starts) is never killed."""

    def __init__(self, inner: nn.Module, counter: str, after: int, kills: int, spare: int) -> None:
        super().__init__()
        self.inner, self.counter, self.after, self.kills = inner, counter, after, kills
        self.spare = spare
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        path = Path(self.counter)
        if self.calls >= self.after and os.getpid() != self.spare:
            with open(f"{self.counter}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # two workers must not both read the same count
                died = int(path.read_text()) if path.exists() else 0
                if died < self.kills:
                    # written aside, then renamed: a worker the broken pool terminates halfway
                    # must not leave an empty count behind
                    Path(f"{self.counter}.new").write_text(str(died + 1))
                    os.replace(f"{self.counter}.new", path)
                    os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(x)


@dataclass(frozen=True)
class KillWorkerFactory:
    counter: str
    after: int = 10
    kills: int = 1
    dim: int = 16
    spare: int = field(default_factory=os.getpid)  # the test's own process

    def __call__(self) -> nn.Module:
        inner = SlowLinear(self.dim, self.dim, 0)
        return KillWorker(inner, self.counter, self.after, self.kills, self.spare)


class FailOutside(nn.Module):
    """Wraps a model; raises in every process but ``spare`` (the test's own, where the run tries
    its settings on the model before it starts): an error of the model inside the workers."""

    def __init__(self, inner: nn.Module, spare: int) -> None:
        super().__init__()
        self.inner, self.spare = inner, spare

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if os.getpid() != self.spare:
            raise RuntimeError("the model failed in a worker")
        return self.inner(x)


@dataclass(frozen=True)
class FailOutsideFactory:
    dim: int = 16
    spare: int = field(default_factory=os.getpid)

    def __call__(self) -> nn.Module:
        return FailOutside(SlowLinear(self.dim, self.dim, 0), self.spare)


def tiny_data(n: int = 6, dim: int = 16, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(n, dim)`` and clean targets ``f(x)`` of the seed-0 linear map plus a shift."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    with torch.no_grad():
        clean = LinearFactory(dim, dim, 0)()(torch.from_numpy(x)).numpy()
    return x, (clean + 0.01).astype(np.float32)
