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

EXACT_RECHECK = 8  # best candidates whose median is always recomputed with the exact distance
RECHECK_SLACK = 1e-3  # and any other within this relative margin of the best exact median
MAX_RECHECK = 256  # at most this many (a cloud of near-duplicates would otherwise recheck all)
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
    radius is exact.
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
    """The smallest exact median among the candidates the pairwise medians leave in the race.

    Candidates are recomputed with the exact elementwise distance in increasing order of their
    pairwise median: at least ``EXACT_RECHECK``, and then every one whose pairwise median is
    within ``RECHECK_SLACK`` of the best exact median so far (rounding in a product form can
    reorder close medians; it cannot move one by that much), up to ``MAX_RECHECK``.
    """
    order = torch.argsort(medians).tolist()
    finite = [i for i in order if math.isfinite(float(medians[i]))] or order[:1]
    best = (math.inf, finite[0])
    for rank, i in enumerate(finite[:MAX_RECHECK]):
        beyond = float(medians[i]) > best[0] * (1 + RECHECK_SLACK)
        if rank >= EXACT_RECHECK and (beyond or best[0] == 0.0):
            break
        best = min(best, (exact_median(i), i))
    return best


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
    by the function that calls this one: the warning then names the user's line."""
    package = os.path.dirname(os.path.abspath(__file__))  # the centersmooth/ directory
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        package + os.sep
    ):
        frame, level = frame.f_back, level + 1
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
    """

    LOW_RANK = 32
    MIN_POOL = 256  # below this, pruning costs more than it saves
    # margin (relative to ``best``, and a tenth of it squared relative to the cloud's extent) far
    # above the float32 rounding of the bound and of ``pairwise``: it can only keep more rows
    SLACK = 1e-3

    def __init__(self, metric: Metric, pool: Outputs, samples: Outputs, m: int) -> None:
        self.metric, self.pool, self.samples, self.m = metric, pool, samples, m
        self.coords: torch.Tensor | None = None
        self.sq_norms: torch.Tensor | None = None
        self.scale = 0.0
        if batch_len(pool) >= self.MIN_POOL and pool is samples:
            embedding = metric.euclidean_embedding(samples)
            if embedding is not None:
                # centred in the embedding's own type, then float32 (a float64 cloud far from
                # the origin would lose its spread if cast first)
                points = embedding if embedding.is_floating_point() else embedding.float()
                self.coords = _low_rank_coordinates(points, self.LOW_RANK).float()
                self.sq_norms = self.coords.square().sum(dim=1)
                self.scale = float(self.sq_norms.max().sqrt())

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
        if self.coords is not None and math.isfinite(best):
            idx = idx[self._may_beat(idx, best)]
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
        if self.coords is None:
            return torch.arange(batch_len(self.pool))
        assert self.sq_norms is not None
        return torch.argsort(self.sq_norms).cpu()

    def _rows(self, idx: torch.Tensor) -> Outputs:
        if isinstance(self.pool, torch.Tensor):
            return self.pool[idx.to(self.pool.device)]
        return [self.pool[i] for i in idx.tolist()]

    def _may_beat(self, idx: torch.Tensor, best: float) -> torch.Tensor:
        """Rows with at least ``m`` lower bounds within the Euclidean image of ``best``."""
        assert self.coords is not None and self.sq_norms is not None
        limit = self.metric.euclidean_radius(best) * (1 + self.SLACK)
        limit2 = limit * limit + self.SLACK / 10 * self.scale**2
        rows = idx.to(self.coords.device)
        sq = torch.addmm(self.sq_norms[None, :], self.coords[rows], self.coords.T, alpha=-2.0)
        sq.add_(self.sq_norms[rows, None]).le_(limit2)
        return (sq.sum(dim=1) >= self.m).cpu()


def _low_rank_coordinates(points: torch.Tensor, rank: int, rows: int = 1024) -> torch.Tensor:
    """Coordinates whose pairwise l2 distances never exceed those of ``points``.

    The centred points projected on an orthonormal basis of their top ``rank`` principal
    directions (subspace iteration started from the first rows: deterministic, no random state),
    plus one coordinate holding the norm of what the projection leaves out. Works through the
    points in row blocks, so no copy of the size of ``points`` is made.
    """
    mean = points.mean(dim=0)
    n, dim = points.shape
    if dim <= rank + 1:
        return points - mean
    blocks = [(start, min(start + rows, n)) for start in range(0, n, rows)]
    basis = torch.linalg.qr((points[: min(rank, n)] - mean).T).Q
    for _ in range(2):
        spread = torch.zeros(dim, basis.shape[1], dtype=points.dtype, device=points.device)
        for lo, hi in blocks:
            centred = points[lo:hi] - mean
            spread += centred.T @ (centred @ basis)
        basis = torch.linalg.qr(spread).Q
    coords = []
    for lo, hi in blocks:
        centred = points[lo:hi] - mean
        projected = centred @ basis
        rest = (centred - projected @ basis.T).norm(dim=1, keepdim=True)
        coords.append(torch.cat([projected, rest], dim=1))
    return torch.cat(coords)
