"""Exact integer noise for inputs on a grid (``CenterSmoothing(..., input_grid=...)``).

An input on the grid is ``x = k * grid`` with integer ``k``. Its noisy copies are
``(k + m) * grid`` with integer noise ``m``, computed from the integers in one fixed way
(:func:`lattice_to_float`), so the base function is a fixed function of the lattice point
``k + m``. Each coordinate of ``m`` is drawn from a table distribution ``T`` whose probabilities
are exactly ``c_j / 2**64`` for integers ``c_j``: one uniform 64-bit word per coordinate picks
the atom, so the draw is exact. ``T`` is within a rigorously bounded total variation ``tau``
(:attr:`NoiseTable.tv`) of the rounded Gaussian ``round(s * g)``, ``g ~ N(0, 1)``,
``s = sigma / grid``. The certificate's shift bound then follows from the real Gaussian's by
data processing (docs/algorithm.md, "Inputs on a grid: exact noise (`input_grid`)").
"""

from __future__ import annotations

import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch

GRID_TOLERANCE = 1e-6  # |x / grid - k| an input may deviate from an integer k
MAX_SCALE = 4096.0  # largest sigma / grid: the table holds about 24 * sigma / grid atoms
TAIL_SDS = 12  # the table covers |m| <= 12 s + 1; beyond, the rounded Gaussian has < 1e-32
WORD = 2**64
GUIDE_BITS = 16  # the top bits of a word index a guide table of the atoms
GUIDE = 2**GUIDE_BITS
MAX_DIM = 2**31  # coordinates assumed when the input's size is not known yet (a report)


@dataclass(frozen=True)
class NoiseTable:
    """The integer noise of one coordinate: atom ``lowest + j`` has probability
    ``c_j / 2**64`` exactly; ``bounds`` holds the cumulative sums ``c_0 + ... + c_j`` but the
    last (which is ``2**64``), and ``tv`` an upper bound on the total variation distance between
    this distribution and the rounded Gaussian ``round(scale * g)``."""

    scale: float
    lowest: int
    bounds: np.ndarray  # uint64, non-decreasing
    tv: float
    _guide: np.ndarray = field(init=False, repr=False, compare=False)
    _exact: np.ndarray = field(init=False, repr=False, compare=False)
    _lookup: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # guide[i]: the atom of the word i * 2**48, where a word with top 16 bits i starts the
        # search; padded: bounds with a sentinel above every word, so that a word not below
        # padded[guide[i]] needs the exact search (few do: a bucket of 2**48 words holds a
        # boundary for at most len(bounds) of the 2**16 buckets)
        starts = np.arange(GUIDE, dtype=np.uint64) << np.uint64(64 - GUIDE_BITS)
        object.__setattr__(self, "_guide", np.searchsorted(self.bounds, starts, side="right"))
        upper = self.bounds[self._guide.clip(max=len(self.bounds) - 1)]
        ends = np.where(self._guide < len(self.bounds), upper, np.uint64(WORD - 1))
        # a bucket whose words all lie below the boundary after its starting atom is exact
        bucket_last = starts + np.uint64(2 ** (64 - GUIDE_BITS) - 1)
        object.__setattr__(self, "_exact", (self._guide == len(self.bounds)) | (bucket_last < ends))
        # one gather per word: the bucket's atom where the bucket is exact, else -1 (search)
        lookup = np.where(self._exact, self._guide, -1).astype(np.int32)
        object.__setattr__(self, "_lookup", lookup)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Integer noise of ``shape`` (int64), one uniform 64-bit word per coordinate: the atom
        ``j`` with ``bounds[j - 1] <= u < bounds[j]``, exactly ``c_j / 2**64`` likely."""
        words = rng.bit_generator.random_raw(math.prod(shape))
        bucket = (words >> np.uint64(64 - GUIDE_BITS)).astype(np.int32)
        atoms = np.take(self._lookup, bucket)
        rest = np.flatnonzero(atoms < 0)  # buckets holding a boundary: the exact search
        atoms[rest] = np.searchsorted(self.bounds, words[rest], side="right")
        return (atoms.astype(np.int64) + self.lowest).reshape(shape)

    def probabilities(self) -> list[int]:
        """The integers ``c_j`` (summing to ``2**64``)."""
        cuts = [0, *(int(b) for b in self.bounds), WORD]
        return [b - a for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


@lru_cache(maxsize=8)
def noise_table(scale: float) -> NoiseTable:
    """The table for ``s = sigma / grid`` (cached). Probabilities of the rounded Gaussian,
    ``Phi((j + 1/2) / s) - Phi((j - 1/2) / s)``, are evaluated with 50 significant digits
    (``mpmath``) and rounded to multiples of ``2**-64``; the remainder of the sum goes to the
    atom 0. ``tv`` adds the rounding of every atom, the mass outside the table and a margin of
    ``1e-40`` per atom for the 50-digit evaluation, and is rounded up to a float."""
    import mpmath

    if not (math.isfinite(scale) and 0.0 < scale <= MAX_SCALE):
        raise ValueError(f"sigma / input_grid must lie in (0, {MAX_SCALE:g}], got {scale!r}")
    reach = math.ceil(TAIL_SDS * scale) + 1
    with mpmath.workdps(50):
        s = mpmath.mpf(scale)
        cdf = [
            mpmath.ncdf((mpmath.mpf(j) + mpmath.mpf(1) / 2) / s)
            for j in range(-reach - 1, reach + 1)
        ]
        probs = [b - a for a, b in zip(cdf[:-1], cdf[1:], strict=True)]
        counts = [int(mpmath.nint(p * WORD)) for p in probs]
        counts[reach] += WORD - sum(counts)
        if min(counts) < 0:
            raise ValueError(f"sigma / input_grid={scale!r} is too small for the noise table")
        tail = 2 * cdf[0]  # mass beyond the table, both sides (the Gaussian is symmetric)
        err = sum(abs(mpmath.mpf(c) / WORD - p) for c, p in zip(counts, probs, strict=True))
        tv = (err + tail) / 2 + mpmath.mpf(10) ** -40 * len(counts)
        tv_float = float(tv)
        while tv_float < tv:
            tv_float = math.nextafter(tv_float, math.inf)
    lowest = -reach
    while counts[0] == 0:  # atoms of probability 0 at the ends: left out of the table
        counts.pop(0)
        lowest += 1
    while counts[-1] == 0:
        counts.pop()
    cuts, total = [], 0
    for c in counts[:-1]:
        total += c
        cuts.append(total)
    return NoiseTable(float(scale), lowest, np.array(cuts, dtype=np.uint64), tv_float)


def grid_slack(scale: float, dim: int | None) -> float:
    """``dim * tau``: how far the noise of an input with ``dim`` coordinates can move the mass
    of any set from the rounded Gaussian's (total variation of a product is at most the sum of
    the coordinates'); ``MAX_DIM`` coordinates when ``dim`` is unknown."""
    tv = noise_table(scale).tv
    return tv * (MAX_DIM if dim is None else int(dim))


def snap_to_grid(x: torch.Tensor, grid: float) -> torch.Tensor:
    """The integers ``k`` (int64) of an input on the grid: ``round(x / grid)``. Refuses an input
    with a coordinate farther from ``k * grid`` than ``GRID_TOLERANCE`` grid steps plus four
    rounding units of its float type at ``|k|`` steps (``float32(200 / 255)`` is 1.2e-5 steps
    from 200: the rounding of the type, not an input off the grid). The refusal shows the grid
    as a user writes it (``1/255``) and, when most coordinates are off the grid or some are
    negative, suggests the usual cause: inputs normalised as ``(x - mean) / std``."""
    ratio = x.detach().to(torch.float64) / grid
    k = torch.round(ratio)
    eps = torch.finfo(x.dtype).eps if x.is_floating_point() else 0.0
    allowed = GRID_TOLERANCE + 4.0 * eps * k.abs()
    excess = (ratio - k).abs() - allowed
    if excess.numel() and float(excess.max()) > 0.0:
        at = int(torch.argmax(excess))
        off = float((ratio - k).abs().reshape(-1)[at])
        message = (
            f"x is not on the grid input_grid={grid_text(grid)}: a coordinate lies {off:.3g} grid "
            f"steps from the nearest multiple (at most {GRID_TOLERANCE:g} plus the rounding of "
            f"{x.dtype} allowed)"
        )
        share = float((excess > 0).double().mean())
        if share > 0.5 or float(ratio.min()) < 0:
            message += (
                f"; {share:.0%} of its coordinates are off the grid"
                + (" and some are negative" if float(ratio.min()) < 0 else "")
                + ": if the inputs are normalised ((x - mean) / std), pass the raw values on the "
                "grid (k * input_grid) and move the normalisation into the model"
            )
        raise ValueError(message)
    if k.numel() and float(k.abs().max()) > 2.0**52:
        raise ValueError("x is too large for input_grid: the grid index exceeds 2**52")
    return k.to(torch.int64)


def grid_text(grid: float) -> str:
    """A grid step as a user writes it: ``1/255`` for ``0.00392156862745098`` (a fraction of
    small denominator that is exactly this float), else the shortest ``repr``."""
    if float(grid).is_integer() and abs(grid) < 2**53:
        return str(int(grid))
    text = repr(float(grid))
    if len(text) <= 8:
        return text
    fraction = Fraction(grid).limit_denominator(2**16)
    if float(fraction) == grid and fraction.denominator > 1:
        return f"{fraction.numerator}/{fraction.denominator}"
    return text


def lattice_to_float(n: torch.Tensor, grid: float, dtype: torch.dtype) -> torch.Tensor:
    """The input the model sees at lattice point ``n``: ``n * grid`` in float64 (correctly
    rounded, the same on every device), then rounded to ``dtype``."""
    return (n.to(torch.float64) * grid).to(dtype)


class GridNoiseStream:
    """Noisy copies ``(k + m) * grid`` of one input on the grid, in blocks of ``block`` samples
    drawn from a NumPy generator on the CPU: the integers are the same on every device and for
    every block size (the generator's words are used in order).

    The integers ``m`` travel in the narrowest integer type holding the table's atoms (int16
    when they lie within 32,767 of 0, as for ``sigma / grid`` up to about 3,800, else int32: a
    quarter or half of int64's bytes). With
    ``ahead`` (the default on a CUDA device) the next block is drawn on a thread of the CPU
    while the device works on this one, into page-locked memory where CUDA is available, so
    that its copy to the device runs asynchronously. One draw per stream is in flight at a time,
    so each stream's generator is used in order whichever thread runs it.
    """

    def __init__(
        self,
        k: torch.Tensor,
        grid: float,
        sigma: float,
        dtype: torch.dtype,
        seed: int | None,
        block: int = 256,
        ahead: bool | None = None,
    ) -> None:
        self.k, self.grid, self.dtype, self.block = k, grid, dtype, block
        self.table = noise_table(sigma / grid)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.buffer = lattice_to_float(k, grid, dtype).new_empty((0, *k.shape))
        highest = self.table.lowest + len(self.table.bounds)
        narrow = -(2**15) <= self.table.lowest and highest < 2**15
        self.atom_dtype = torch.int16 if narrow else torch.int32
        self.pinned = k.device.type == "cuda" and torch.cuda.is_available()
        self.ahead = k.device.type == "cuda" if ahead is None else ahead
        self._next: Future[torch.Tensor] | None = None

    def _host_block(self) -> torch.Tensor:
        """The integers of the next block on the host, narrow, page-locked for a CUDA device."""
        words = self.table.sample(self.rng, (self.block, *self.k.shape))
        out = torch.empty(words.shape, dtype=self.atom_dtype, pin_memory=self.pinned)
        np.copyto(out.numpy(), words, casting="unsafe")  # atoms fit: see atom_dtype
        return out

    def _draw(self) -> torch.Tensor:
        if self.ahead:
            pending = self._next or _drawing_pool().submit(self._host_block)
            host = pending.result()
            self._next = _drawing_pool().submit(self._host_block)  # while the device works
        else:
            host = self._host_block()
        m = host.to(self.k.device, non_blocking=self.pinned)
        return lattice_to_float(self.k + m, self.grid, self.dtype)

    def take(self, size: int) -> torch.Tensor:
        parts = []
        while size > 0:
            if self.buffer.shape[0] == 0:
                self.buffer = self._draw()
            parts.append(self.buffer[:size])
            rest = self.buffer[size:]  # an empty view would hold the block's memory
            self.buffer = rest if rest.shape[0] else rest.new_empty((0, *self.k.shape))
            size -= parts[-1].shape[0]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


_POOL: tuple[int, ThreadPoolExecutor] | None = None
DRAWING_THREADS = 4  # streams of several inputs draw side by side


def _drawing_pool() -> ThreadPoolExecutor:
    """The threads that draw blocks ahead (made again in a forked process)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(DRAWING_THREADS, "centersmooth-grid-noise"))
    return _POOL[1]
