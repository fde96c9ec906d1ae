"""The approximate center of a cloud of outputs: the candidate with the smallest median distance.

For each candidate ``z``, ``med(z)`` is the ``ceil(n/2)``-th smallest distance from ``z`` to the
samples, so ``B(z, med(z))`` holds at least half of them (with a ``mass`` other than 1/2,
the ``ceil(mass n)``-th and that share). The candidate minimising it gives a
``2 gamma``-approximation of the smallest ball holding that share of the mass as long as the
candidates include the samples (docs/algorithm.md, "Predict (Algorithm 1)", step 2), or, in
candidate mode, a sample inside the optimal ball (whose miss probability
``bounds.split_center_alpha`` charges to ``alpha_center``).
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from .bounds import ball_rank
from .metrics.base import PAIRWISE_BUDGET, Metric, Outputs

# best candidates whose median is always recomputed with the exact distance: the proof needs
# the first; the second tests the forms' agreement once more (each recheck costs a distance
# to every sample, as much as scoring a candidate)
EXACT_RECHECK = 2
RECHECK_SLACK = 1e-3  # and any other within this relative margin of the best exact median
# What the search assumes of a metric (docs/algorithm.md, "The all-pairs search without the
# all-pairs cost"): its pairwise form, its elementwise form and (where it has one) its Euclidean
# embedding agree within this relative error. Ten times below the margins above; a rechecked
# candidate that shows a larger disagreement makes the search score every candidate exactly.
FORM_AGREEMENT = 1e-4
SLOW_SEARCH_SECONDS = 60.0  # a search estimated to take longer raises SlowCenterSearchWarning
PROBE_ROWS = 16  # candidates in the first block; the next ones grow fourfold (_SearchPace)
BLOCK_SECONDS = 1.0  # until one takes this long and its time grew with its size
SUGGESTED_CANDIDATES = 30  # the candidate count the slow-search warning suggests
_F64 = torch.float64


class SlowCenterSearchWarning(UserWarning):
    """A center search is estimated to take more than ``SLOW_SEARCH_SECONDS`` per input (a slow
    distance, scored on all pairs of samples); the message says how to shorten it. Issued once
    per distance name in a process; ``warnings.simplefilter("ignore", SlowCenterSearchWarning)``
    silences it."""


_warned_slow: set[str] = set()  # distance names whose slow search was already reported


@dataclass(frozen=True)
class Center:
    """The chosen center, its median radius ``med(center)`` and where it came from."""

    point: Any
    radius: float
    index: int  # position in the candidate list (samples first, then central points)
    n_candidates: int


def take(outputs: Outputs, index: int) -> Any:
    """One output of a batch."""
    return outputs[index]


def repeat(point: Any, n: int) -> Outputs:
    """A batch of ``n`` copies of one output, to compare it with a batch elementwise."""
    if isinstance(point, torch.Tensor):
        return point.unsqueeze(0).expand(n, *point.shape)
    return [point] * n


def batch_len(outputs: Outputs) -> int:
    return outputs.shape[0] if isinstance(outputs, torch.Tensor) else len(outputs)


def checked(distances: torch.Tensor, what: str) -> torch.Tensor:
    """Refuse NaN, infinite or negative distances: they would make a certificate meaningless."""
    if distances.dim() == 0:
        raise ValueError(f"the metric returned a scalar for {what}; it must return one per pair")
    if not bool(torch.isfinite(distances).all()):
        raise ValueError(f"the metric returned NaN or infinite distances ({what})")
    if bool((distances < 0).any()):
        raise ValueError(f"the metric returned negative distances ({what})")
    return distances


def distances_to(metric: Metric, point: Any, outputs: Outputs, check: bool = True) -> torch.Tensor:
    """``d(point, outputs[i])`` for every output; ``check=False`` leaves the value checks to the
    caller (the sampling loops defer them, see ``OutputMonitor``)."""
    n = batch_len(outputs)
    d = torch.as_tensor(metric(repeat(point, n), outputs))
    if d.shape != (n,):
        raise ValueError(
            f"the metric returned distances of shape {tuple(d.shape)} for a batch of {n} pairs"
        )
    return checked(d, "distances to the center") if check else d


def median_distance(metric: Metric, point: Any, samples: Outputs, mass: float = 0.5) -> float:
    """``med(point)``: the ``ceil(mass n)``-th smallest distance from ``point`` to the samples.

    Distances are computed in blocks of samples, so no temporary as large as the samples is made.
    """
    n = batch_len(samples)
    rows = max(1, PAIRWISE_BUDGET // max(_output_size(samples), 1))
    d = torch.cat([distances_to(metric, point, samples[i : i + rows]) for i in range(0, n, rows)])
    return float(torch.kthvalue(d.double().cpu(), ball_rank(n, mass)).values)


def find_center(
    samples: Outputs,
    metric: Metric,
    n_candidates: int | None = None,
    extra: Outputs | None = None,
    mass: float = 0.5,
    progress: bool = False,
) -> Center:
    """Min-median center among the samples (or the first ``n_candidates``) plus ``extra`` points.

    Medians are computed in row blocks of the metric's pairwise form, so no ``n x n`` matrix is
    held at once and the work stays on the samples' device. ``extra`` (central points) is scored
    first; a sample whose median provably exceeds the best so far is skipped (``_SamplePruner``),
    which leaves the result unchanged and in high dimension skips nearly all of them. The best few
    are then recomputed with the exact elementwise distance (``_exact_minimum``), so the returned
    radius is exact, and it is the smallest exact median of all candidates: proved from
    ``FORM_AGREEMENT`` and the low-rank bound's own rounding error (docs/algorithm.md, "The
    all-pairs search without the all-pairs cost"); where a margin cannot be shown the search
    falls back to exact distances.
    Candidates are indexed samples first, then ``extra``; neither is copied. ``mass`` (1/2 by
    default) is the share of the samples the center's ball must hold.

    ``progress`` shows a bar over the candidates scored (and then rechecked). Whatever it is, a
    search estimated from its first blocks to take more than ``SLOW_SEARCH_SECONDS`` raises a
    ``SlowCenterSearchWarning`` (once per distance name), which says how to shorten it.
    """
    n = batch_len(samples)
    pool = samples if n_candidates is None else samples[: min(n_candidates, n)]
    has_extra = extra is not None and batch_len(extra) > 0
    n_extra = batch_len(extra) if has_extra else 0
    m = ball_rank(n, mass)
    pace = _SearchPace(metric, batch_len(pool), n_extra, n, batch_len(pool) < n, progress)
    try:
        extra_medians = (
            _pairwise_medians(metric, extra, samples, m, pace)
            if has_extra
            else torch.empty(0, dtype=_F64)
        )
        best = float(extra_medians.min()) if has_extra else math.inf
        pool_medians = _SamplePruner(metric, pool, samples, m).medians(best, pace)
        medians = torch.cat([pool_medians, extra_medians])
        pace.scoring_done()

        def candidate(index: int) -> Any:
            first = batch_len(pool)
            return take(pool, index) if index < first else take(extra, index - first)

        def exact_median(index: int) -> float:
            value = median_distance(metric, candidate(index), samples, mass)
            pace.rechecked()
            return value

        radius, index = _exact_minimum(medians, exact_median)
    finally:
        pace.close()
    return Center(candidate(index), radius, index, medians.shape[0])


def _exact_minimum(
    medians: torch.Tensor, exact_median: Callable[[int], float]
) -> tuple[float, int]:
    """The smallest exact median among all candidates, from their pairwise medians.

    Candidates are recomputed with the exact elementwise distance in increasing order of their
    pairwise median: at least ``EXACT_RECHECK``, and then every one whose pairwise median is
    within ``RECHECK_SLACK`` of the best exact median so far. One beyond it has an exact median
    above the best as long as the forms agree within ``FORM_AGREEMENT``; pruned candidates
    (``inf``) were ruled out with the same margins. A rechecked candidate whose two medians
    disagree by more than that shows the assumption failing: every candidate is then scored
    exactly (the plain search). Ties go to the smaller index.
    """
    order = torch.argsort(medians).tolist()
    finite = [i for i in order if math.isfinite(float(medians[i]))] or order[:1]
    best = (math.inf, finite[0])
    exact: dict[int, float] = {}
    for rank, i in enumerate(finite):
        beyond = float(medians[i]) > best[0] * (1 + RECHECK_SLACK)
        if rank >= EXACT_RECHECK and (beyond or best[0] == 0.0):
            break
        exact[i] = exact_median(i)
        if abs(float(medians[i]) - exact[i]) > FORM_AGREEMENT * exact[i]:
            return _plain_minimum(medians.shape[0], exact_median, exact)
        best = min(best, (exact[i], i))
    return best


def _plain_minimum(
    n_candidates: int, exact_median: Callable[[int], float], known: dict[int, float]
) -> tuple[float, int]:
    """The smallest exact median of every candidate (ties to the smaller index): the fallback
    where the pairwise form cannot be trusted to the search's margins."""
    return min((known[i] if i in known else exact_median(i), i) for i in range(n_candidates))


class _SearchPace:
    """The progress bar of one center search, its block sizes, and how long it will take.

    Blocks report how many candidates they examined, how many of them had their distances
    computed (the pruned search rules most out from lower bounds) and how long they took. Once
    the block size has settled (``scored``), the fastest settled block's time per candidate
    examined (so what pruning skips costs what it really costs), extrapolated to the candidates
    left, plus the exact recheck, gives the estimate; it is checked after each settled block and
    once more when the scoring ends.
    """

    def __init__(
        self,
        metric: Metric,
        n_pool: int,
        n_extra: int,
        n_samples: int,
        candidate_mode: bool,
        progress: bool,
    ) -> None:
        self.name, self.progress = metric.name, progress
        self.n_pool, self.n_extra, self.n_samples = n_pool, n_extra, n_samples
        self.candidate_mode = candidate_mode
        self.total = n_pool + n_extra
        self.recheck = min(EXACT_RECHECK, self.total)
        self.start = time.perf_counter()
        self.examined = 0
        self.size = self.requested = PROBE_ROWS  # rows of the next block; asked of the last
        self.limit = 0  # the memory budget's rows
        self.last_rate = math.inf  # seconds per candidate in the last full block
        self.per_examined = math.inf  # fastest settled block's seconds per candidate examined
        self.per_computed = math.inf  # fastest block's seconds per candidate computed
        self.bar = tqdm(
            total=self.total + self.recheck,
            desc="center search",
            unit="candidate",
            disable=not progress,
            leave=False,
        )

    def block_rows(self, limit: int) -> int:
        """Candidates in the next block, at most ``limit`` (the memory budget's)."""
        self.limit = limit
        self.requested = max(1, min(self.size, limit))
        return self.requested

    def scored(self, examined: int, computed: int, seconds: float) -> None:
        """A block of ``examined`` candidates, ``computed`` of which had their distances
        computed (the others were ruled out by lower bounds), in ``seconds``.

        Blocks grow fourfold from ``PROBE_ROWS`` until one reaches the memory budget, or takes
        ``BLOCK_SECONDS`` with a time per candidate not well below the previous block's (so not
        mostly the fixed cost of a call): the size then stays, the bar moving about every
        ``BLOCK_SECONDS``, and such a settled block times the search: the blocks left will be
        like it.
        """
        self.examined += examined
        if computed:
            self.per_computed = min(self.per_computed, seconds / computed)
        self.bar.update(examined)
        if examined != self.requested:  # cut short by the end of the rows: not comparable
            return
        rate, previous, self.last_rate = seconds / examined, self.last_rate, seconds / examined
        linear = seconds >= BLOCK_SECONDS and rate >= 0.6 * previous
        if linear or self.requested >= self.limit:
            self.per_examined = min(self.per_examined, rate)
            self._check()
        else:
            self.size = 4 * self.requested

    def skipped(self, count: int) -> None:
        self.examined += count
        self.bar.update(count)

    def scoring_done(self) -> None:
        self.per_examined = 0.0  # no candidate is left: the estimate is the time spent
        self._check()
        self.bar.set_postfix_str("exact recheck")

    def rechecked(self) -> None:
        if self.bar.total is not None and self.bar.n >= self.bar.total:
            self.bar.total += 1  # a close race: more than EXACT_RECHECK candidates rechecked
        self.bar.update()

    def close(self) -> None:
        self.bar.close()

    def estimate(self) -> float:
        """Seconds the whole search is expected to take: the time spent, the candidates left at
        the fastest settled block's pace and the exact recheck at the fastest computed one."""
        per_recheck = self.per_computed if math.isfinite(self.per_computed) else 0.0
        left = (self.total - self.examined) * self.per_examined
        return time.perf_counter() - self.start + left + self.recheck * per_recheck

    def _check(self) -> None:
        if self.name in _warned_slow:
            return
        seconds = self.estimate()
        if seconds > SLOW_SEARCH_SECONDS:
            _warned_slow.add(self.name)
            warnings.warn(
                self._message(seconds), SlowCenterSearchWarning, stacklevel=outside_caller()
            )

    def _message(self, seconds: float) -> str:
        name, k = self.name, SUGGESTED_CANDIDATES
        text = (
            f"the center search for distance {name!r} will take about {_duration(seconds)} per "
            f"input: {self.total:,} candidates, each compared with {self.n_samples:,} samples "
            f"(estimated after {self.examined:,} of them). "
        )
        if not self.candidate_mode and self.n_pool > 2 * k:
            quick = (k + self.n_extra + EXACT_RECHECK) * self.per_computed
            about = f", about {_duration(quick)} here" if math.isfinite(quick) else ""
            central = " plus the central points" if self.n_extra else ""
            text += (
                f"Candidate mode scores far fewer: CenterSmoothing(..., candidates={k}) (or "
                f"candidates={{{name!r}: {k}}} for this distance alone; on the command line "
                f"--candidates {k} or --candidates {name}={k}) scores only the first {k} samples"
                f"{central}{about}. The certificate keeps its confidence "
                f"(alpha_center pays for the chance that none of the {k} lands in the central "
                "ball); eps_out is usually a little larger."
            )
        else:
            text += (
                "Score fewer candidates (a smaller candidates=, which must stay large enough for "
                "alpha_center) or draw fewer center samples (n_center=)."
            )
        if not self.progress:
            text += " progress=True shows how far the search has got."
        return text


def outside_caller() -> int:
    """The ``stacklevel`` of the first caller outside this package, for ``warnings.warn`` called
    by the function that calls this one: the warning then names the user's line (the
    package's own command line for ``python -m``, whose caller is the interpreter's runpy)."""
    package = os.path.dirname(os.path.abspath(__file__))  # the centersmooth/ directory
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        package + os.sep
    ):
        frame, level = frame.f_back, level + 1
    if frame.f_code.co_filename.startswith("<frozen"):  # python -m centersmooth...: its line
        level -= 1
    return level


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _output_size(outputs: Outputs) -> int:
    """Elements per output (1 for Python objects)."""
    return outputs[0].numel() if isinstance(outputs, torch.Tensor) and len(outputs) else 1


def _row_block(n: int) -> int:
    return max(1, PAIRWISE_BUDGET // max(n, 1) // 4)


def _blocks(n_rows: int, n_samples: int, pace: _SearchPace) -> Iterator[tuple[int, int]]:
    """Row ranges covering ``0 .. n_rows``, sized by ``pace`` within the memory budget.

    Sizes follow timings, so which losing rows a pruned search computes may vary between runs;
    the center does not (rows are ruled out only when they provably lose, with a margin).
    """
    start, limit = 0, _row_block(n_samples)
    while start < n_rows:
        stop = min(n_rows, start + pace.block_rows(limit))
        yield start, stop
        start = stop


def _checked_pairwise(metric: Metric, block: Outputs, samples: Outputs) -> torch.Tensor:
    n = batch_len(samples)
    d = checked(torch.as_tensor(metric.pairwise(block, samples)), "pairwise distances")
    if d.shape != (batch_len(block), n):
        raise ValueError(
            f"the metric's pairwise form returned shape {tuple(d.shape)}, "
            f"expected {(batch_len(block), n)}"
        )
    return d


def _pairwise_medians(
    metric: Metric, pool: Outputs, samples: Outputs, m: int, pace: _SearchPace
) -> torch.Tensor:
    medians = []
    for start, stop in _blocks(batch_len(pool), batch_len(samples), pace):
        began = time.perf_counter()
        d = _checked_pairwise(metric, pool[start:stop], samples)
        medians.append(torch.kthvalue(d, m, dim=1).values.to(_F64).cpu())
        pace.scored(stop - start, stop - start, time.perf_counter() - began)
    return torch.cat(medians) if medians else torch.empty(0, dtype=_F64)


class _SamplePruner:
    """Medians of the pool's samples, skipping those that provably cannot beat ``best``.

    ``med(z) <= t`` needs at least ``m`` samples within ``t`` of ``z``. A cheap lower bound on
    the distances that already counts fewer than ``m`` below ``t`` proves ``med(z) > t``; such a
    sample gets ``inf`` instead of its median, which cannot change the minimum. The cheap bound
    comes from the metric's Euclidean embedding (``Metric.euclidean_embedding``): projected on the
    top ``LOW_RANK`` principal directions of the cloud plus the norm of the rest, distances can
    only shrink (a projection is a contraction; the reverse triangle inequality for the rest).
    The rows it keeps (all rows, for metrics without an embedding) have their exact pairwise block
    counted the same way, which still saves the order statistic of those that cannot win. Rows
    are visited from the cloud's middle out, so ``best`` drops early when no central point was
    given.

    The low-rank bound is computed in float64 and compared in float32; ``_LowRankBound`` proves
    an upper bound on its rounding, and where that bound does not fit in the additive margin
    ``SLACK / 10 * scale^2`` (norms beyond float32's range, a cloud so small that its squares
    underflow) the rows are counted from the exact pairwise block instead.
    """

    LOW_RANK = 32
    MIN_POOL = 256  # below this, pruning costs more than it saves
    # relative margin on the threshold, ten times FORM_AGREEMENT (the metric's rounding), and a
    # tenth of it times the cloud's squared extent for the low-rank bound's own rounding
    SLACK = 1e-3

    def __init__(self, metric: Metric, pool: Outputs, samples: Outputs, m: int) -> None:
        self.metric, self.pool, self.samples, self.m = metric, pool, samples, m
        self.bound: _LowRankBound | None = None
        if batch_len(pool) >= self.MIN_POOL and pool is samples:
            embedding = metric.euclidean_embedding(samples)
            if embedding is not None:
                self.bound = _LowRankBound.of(embedding, self.LOW_RANK)

    def medians(self, best: float, pace: _SearchPace) -> torch.Tensor:
        n_pool = batch_len(self.pool)
        if n_pool < self.MIN_POOL:
            return _pairwise_medians(self.metric, self.pool, self.samples, self.m, pace)
        medians = torch.full((n_pool,), math.inf, dtype=_F64)
        order = self._middle_out()
        for start, stop in _blocks(n_pool, batch_len(self.samples), pace):
            if best <= 0.0:  # no median is below 0
                pace.skipped(n_pool - start)
                break
            began = time.perf_counter()
            best, computed = self._score(order[start:stop], best, medians)
            pace.scored(stop - start, computed, time.perf_counter() - began)
        return medians

    def _score(self, idx: torch.Tensor, best: float, medians: torch.Tensor) -> tuple[float, int]:
        """Medians of the rows ``idx`` that may beat ``best`` into ``medians``; the new best, and
        how many rows had their exact distances computed."""
        if self.bound is not None and math.isfinite(best):
            radius = self.metric.euclidean_radius(best) * (1 + self.SLACK)
            idx = idx[self.bound.may_reach(idx, radius, self.m, self.SLACK / 10)]
            if idx.numel() == 0:
                return best, 0
        computed = idx.numel()
        d = _checked_pairwise(self.metric, self._rows(idx), self.samples)
        if math.isfinite(best):  # the exact count, before the dearer order statistic
            keep = (d <= best * (1 + self.SLACK)).sum(dim=1) >= self.m
            idx, d = idx[keep.cpu()], d[keep]
            if idx.numel() == 0:
                return best, computed
        block = torch.kthvalue(d, self.m, dim=1).values.to(_F64).cpu()
        medians[idx] = block
        return min(best, float(block.min())), computed

    def _middle_out(self) -> torch.Tensor:
        if self.bound is None:
            return torch.arange(batch_len(self.pool))
        return torch.argsort(self.bound.sq_norms).cpu()

    def _rows(self, idx: torch.Tensor) -> Outputs:
        if isinstance(self.pool, torch.Tensor):
            return self.pool[idx.to(self.pool.device)]
        return [self.pool[i] for i in idx.tolist()]


_U64 = 2.0**-53  # unit roundoff of float64


def _gamma(k: int, unit: float) -> float:
    """``k u / (1 - k u)``: the relative error of a sum or dot product of ``k`` terms, in any
    order of summation (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1)."""
    return k * unit / (1.0 - k * unit)


def _product_dtype() -> torch.dtype:
    """float32 for the low-rank products, unless float32 matrix products may run at reduced
    precision (``torch.set_float32_matmul_precision`` other than ``"highest"``, TF32 on CUDA):
    then float64, whose rounding the bound can state."""
    reduced = torch.get_float32_matmul_precision() != "highest"
    return _F64 if reduced or torch.backends.cuda.matmul.allow_tf32 else torch.float32


@dataclass(frozen=True)
class _LowRankBound:
    """Low-rank coordinates of an embedding, and what their rounding can cost.

    ``coords`` holds, per point ``e_i``, its centred coordinates on ``r`` orthonormal directions
    and the norm of the rest, computed in float64 and rounded to float32 (``_product_dtype``).
    Each lies within ``zeta`` of the exact image of ``e_i`` under a map that never lengthens a
    distance (docs/algorithm.md), and the squared distances computed from them (``may_reach``)
    within ``product_error`` of the squared distances of ``coords``. ``of`` returns ``None``
    where these bounds cannot be had: a basis far from orthonormal, norms beyond the range of
    the products or not finite, or a cloud of a single point.
    """

    coords: torch.Tensor  # (n, r + 1)
    sq_norms: torch.Tensor
    scale: float  # the largest norm of the coordinates (the centred points' up to 5%)
    zeta: float
    product_error: float

    @classmethod
    def of(cls, embedding: torch.Tensor, rank: int) -> _LowRankBound | None:
        coords64, omega = _low_rank_coordinates(embedding, rank)
        dim, k = embedding.shape[1], coords64.shape[1]
        dtype = _product_dtype()
        info = torch.finfo(dtype)
        unit, subnormal = info.eps / 2, info.smallest_normal * info.eps
        if coords64.shape[0] == 0:
            return None
        largest = float(coords64.norm(dim=1).max())
        # the centred points' norms are the coordinates' up to O(omega + gamma) <= 3%
        bound = 1.05 * largest
        if not (math.isfinite(bound) and 0.0 < bound <= math.sqrt(info.max) / 4 and omega <= 0.01):
            return None
        # float64: centring, projection and the remainder's norm (docs/algorithm.md)
        zeta = bound * (4 * omega + 8 * math.sqrt(k) * _gamma(dim + k + 1, _U64) + 8 * _U64)
        # rounding the coordinates to the products' type (relative, or absolute on underflow)
        zeta += unit * bound + math.sqrt(k) * subnormal
        # |a|^2 + |b|^2 - 2 a.b: k + 3 terms, at most (|a| + |b|)^2 <= 4 bound^2, and every
        # product or square that underflows
        product_error = 4.04 * _gamma(k + 3, unit) * bound**2 + (3 * k + 4) * subnormal
        coords = coords64.to(dtype)
        return cls(coords, coords.square().sum(dim=1), largest, zeta, product_error)

    def may_reach(self, idx: torch.Tensor, radius: float, m: int, margin: float) -> torch.Tensor:
        """Rows of ``idx`` that may have at least ``m`` points within ``radius`` (Euclidean, in the
        embedding): at least ``m`` squared low-rank distances within ``radius^2 + margin *
        scale^2``. All rows when that allowance cannot be shown to cover the rounding: then
        ``radius`` plus the coordinates' error ``2 zeta`` squared, the products, and the rounding
        of the threshold to the products' type must fit in ``margin * scale^2``."""
        info = torch.finfo(self.coords.dtype)
        allowance = margin * self.scale**2
        limit2 = radius * radius + allowance
        needed = 4 * self.zeta * radius + 4 * self.zeta**2 + self.product_error
        needed += info.eps / 2 * limit2 + info.smallest_normal * info.eps
        if not (needed <= allowance and limit2 <= info.max / 4):
            return torch.ones(idx.shape[0], dtype=torch.bool)
        rows = idx.to(self.coords.device)
        sq = torch.addmm(self.sq_norms[None, :], self.coords[rows], self.coords.T, alpha=-2.0)
        sq.add_(self.sq_norms[rows, None]).le_(limit2)
        return (sq.sum(dim=1) >= m).cpu()


def _low_rank_coordinates(
    points: torch.Tensor, rank: int, budget: int = 2**22
) -> tuple[torch.Tensor, float]:
    """Float64 coordinates whose pairwise l2 distances never exceed those of ``points`` (up to
    the rounding ``_LowRankBound`` bounds), and ``omega``, a bound on ``||Q^T Q - I||`` for the
    basis ``Q`` used.

    The points minus their mean, projected on a basis of their top ``rank`` principal
    directions (subspace iteration started from the first rows: deterministic, no random state),
    plus one coordinate holding the norm of what the projection leaves out. The mean and the
    directions are found in the points' own type (at least float32; any reference point and any
    basis will do, so their rounding costs nothing), the basis is orthonormalised again in float64
    and the coordinates are computed in float64. Works in row blocks of at most ``budget``
    numbers, so no copy of the size of ``points`` is made.
    """
    n, dim = points.shape
    rows = max(1, min(1024, budget // max(dim, 1)))
    blocks = [(start, min(start + rows, n)) for start in range(0, n, rows)]
    work = torch.promote_types(points.dtype, torch.float32)
    mean = torch.zeros(dim, dtype=work, device=points.device)
    for lo, hi in blocks:
        mean += points[lo:hi].to(work).sum(dim=0)
    mean /= max(n, 1)
    mean64 = mean.to(_F64)

    def coordinates(basis: torch.Tensor | None) -> torch.Tensor:
        parts = []
        for lo, hi in blocks:
            part = points[lo:hi].to(_F64) - mean64
            if basis is None:
                parts.append(part)
                continue
            projected = part @ basis
            rest = (part - projected @ basis.T).norm(dim=1, keepdim=True)
            parts.append(torch.cat([projected, rest], dim=1))
        return torch.cat(parts)

    if dim <= rank + 1:
        return coordinates(None), 0.0
    basis = torch.linalg.qr((points[: min(rank, n)].to(work) - mean).T).Q
    for _ in range(2):
        spread = torch.zeros(dim, basis.shape[1], dtype=work, device=points.device)
        for lo, hi in blocks:
            part = points[lo:hi].to(work) - mean
            spread += part.T @ (part @ basis)
        basis = torch.linalg.qr(spread).Q
    basis = torch.linalg.qr(basis.to(_F64)).Q
    gram = basis.T @ basis
    eye = torch.eye(basis.shape[1], dtype=_F64, device=basis.device)
    # the computed Gram matrix is within gamma_dim (1 + omega) of the exact one, entrywise
    omega = float(torch.linalg.matrix_norm(gram - eye)) + 2 * basis.shape[1] * _gamma(dim, _U64)
    return coordinates(basis), omega
