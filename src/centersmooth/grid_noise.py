"""Exact integer noise for inputs on a grid (``CenterSmoothing(..., input_grid=...)``).

An input on the grid is ``x = k * grid`` with integer ``k``. Its noisy copies are
``(k + m) * grid`` with integer noise ``m``, computed from the integers in one fixed way
(:func:`lattice_to_float`), so the base function is a fixed function of the lattice point
``k + m``. Each coordinate of ``m`` is drawn from a table distribution ``T`` whose probabilities
are exactly ``c_j / 2**64`` for integers ``c_j``: one uniform 64-bit word per coordinate picks
the atom, so the draw is exact. ``T`` is within a total variation ``tau``
(:attr:`NoiseTable.tv`) of the rounded Gaussian ``round(s * g)``, ``g ~ N(0, 1)``,
``s = sigma / grid`` rounded up (:func:`noise_scale`); ``tau`` is an upper bound proved by interval
and exact integer arithmetic (:func:`noise_table`). The certificate's shift bound then follows
from the real Gaussian's by data processing (docs/algorithm.md, "Inputs on a grid: exact noise
(`input_grid`)").
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
FIXED_BITS = 256  # the table's probabilities are enclosed in multiples of 2**-256


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


def noise_scale(sigma: float, grid: float) -> float:
    """The lattice noise scale ``s``: ``sigma / grid`` rounded up, so that ``s * grid >= sigma``
    exactly. The shift bound measures a grid step ``v`` as ``||v||_2 / s``, which must not exceed
    ``eps_in / sigma`` for ``grid ||v||_2 <= eps_in``: a scale rounded down would understate it."""
    scale = sigma / grid
    while Fraction(scale) * Fraction(grid) < Fraction(sigma):
        scale = math.nextafter(scale, math.inf)
    return scale


@lru_cache(maxsize=8)
def noise_table(scale: float) -> NoiseTable:
    """The table for the noise scale ``s`` (cached; :func:`noise_scale` gives ``s`` from
    ``sigma`` and the grid).

    Atom ``j`` of the rounded Gaussian has probability ``R(j) = Phi((j + 1/2) / s) -
    Phi((j - 1/2) / s)``. Each ``Phi(x) - 1/2`` is enclosed between two multiples of
    ``2**-FIXED_BITS``: ``phi(x)`` by mpmath's interval arithmetic, times the series
    ``x + x^3/3 + x^5/(3 5) + ...`` summed in exact integers rounded down and up, with the rest
    of the series bounded by its last term once the ratio of terms is below 1/2 (``x`` is the
    rational ``(2j + 1) / (2 s)``, exactly). ``c_j`` is the nearest integer to ``2**64`` times the
    middle of ``R(j)``'s enclosure; the remainder of the sum goes to the atom 0. ``tv`` adds, for
    every atom, the largest distance from ``c_j / 2**64`` to the enclosure of ``R(j)``, and the
    enclosed mass outside the table, halves the sum and rounds it up to a float: an upper bound
    on the total variation, not an estimate."""
    if not (math.isfinite(scale) and 0.0 < scale <= MAX_SCALE):
        raise ValueError(f"sigma / input_grid must lie in (0, {MAX_SCALE:g}], got {scale!r}")
    reach = math.ceil(TAIL_SDS * scale) + 1
    one = 1 << FIXED_BITS
    # Phi((k / 2) / s) - 1/2 for odd k = 1, 3, ..., 2 reach + 1: boundaries j + 1/2, j >= 0
    half = [_phi_minus_half(k, scale) for k in range(1, 2 * reach + 2, 2)]
    enclosures = [(2 * half[0][0], 2 * half[0][1])]  # the atom 0, then j = 1 .. reach
    enclosures += [(b[0] - a[1], b[1] - a[0]) for a, b in zip(half[:-1], half[1:], strict=True)]
    probs = enclosures[:0:-1] + enclosures  # atoms -reach .. reach (the law is symmetric)
    shift = FIXED_BITS - 64
    counts = [(lo + hi + (1 << shift)) >> (shift + 1) for lo, hi in probs]
    counts[reach] += WORD - sum(counts)
    if min(counts) < 0:
        raise ValueError(f"sigma / input_grid={scale!r} is too small for the noise table")
    err = sum(
        max(abs((c << shift) - lo), abs(hi - (c << shift)))
        for c, (lo, hi) in zip(counts, probs, strict=True)
    )
    tail = 2 * (one // 2 - half[-1][0])  # mass beyond the table, both sides, enclosed above
    tv = Fraction(err + tail, 2 * one)
    tv_float = float(tv)
    while tv_float < tv:
        tv_float = math.nextafter(tv_float, math.inf)
    lowest = -reach
    while counts[0] == 0:  # atoms of probability 0 at the ends: left out of the table
        counts.pop(0)
        lowest += 1
    while counts[-1] == 0:
        counts.pop()
    if len(counts) == 1:
        raise ValueError(
            f"sigma / input_grid={scale!r} is too small for the noise table: every atom but 0 "
            "rounds to probability 0"
        )
    cuts, total = [], 0
    for c in counts[:-1]:
        total += c
        cuts.append(total)
    return NoiseTable(float(scale), lowest, np.array(cuts, dtype=np.uint64), tv_float)


def _phi_minus_half(k: int, scale: float) -> tuple[int, int]:
    """Integers ``lo <= hi`` with ``lo <= (Phi(x) - 1/2) 2**FIXED_BITS <= hi``, ``x = k / (2 s)``.

    ``Phi(x) - 1/2 = phi(x) S(x)`` with ``S(x) = sum_n x^(2n+1) / (1 3 5 ... (2n+1))`` (all terms
    positive for ``x > 0``). ``S`` is summed in integers ``2**FIXED_BITS`` times the terms,
    each term from the last by one multiplication and one division rounded down (a lower sum) or
    up (an upper sum). Once the ratio ``x^2 / (2n + 3)`` of the next term is at most 1/2 and the
    upper term is at most one unit, the rest of the series is at most that term, which the upper
    sum adds. ``phi(x)`` comes from mpmath's interval arithmetic (``iv``), whose every operation
    rounds outwards."""
    from mpmath import iv

    bits = FIXED_BITS
    ratio = Fraction(scale)
    num, den = k * ratio.denominator, 2 * ratio.numerator  # x = num / den exactly
    a, b = num * num, den * den  # x^2 = a / b
    lo, hi = (num << bits) // den, -((-num << bits) // den)
    low_sum, high_sum, n = lo, hi, 0
    while True:
        n += 1
        d = b * (2 * n + 1)
        lo, hi = lo * a // d, -((-hi * a) // d)
        low_sum, high_sum = low_sum + lo, high_sum + hi
        if 2 * a <= b * (2 * n + 3) and hi <= 1:
            high_sum += hi  # the rest of the series: at most hi (ratios at most 1/2)
            break
    saved = iv.prec
    try:
        iv.prec = bits + 64
        x2 = iv.mpf(a) / iv.mpf(b)  # outward rounded where a or b has too many bits
        density = iv.exp(-x2 / 2) / iv.sqrt(2 * iv.pi)
        low, high = density._mpi_  # the enclosure's ends, exact binary numbers
    finally:
        iv.prec = saved
    return _scaled(low, low_sum, floor=True), _scaled(high, high_sum, floor=False)


def _scaled(value: tuple[int, int, int, int], factor: int, floor: bool) -> int:
    """``floor`` (or ceil) of ``value * factor`` for mpmath's raw number ``value`` (sign, mantissa,
    exponent, bits), exactly."""
    sign, man, exp, _ = value
    m = (-man if sign else man) * factor
    if exp >= 0:
        return m << exp
    return m >> -exp if floor else -((-m) >> -exp)


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
        self.table = noise_table(noise_scale(sigma, grid))
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
