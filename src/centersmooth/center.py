"""The approximate center of a cloud of outputs: the candidate with the smallest median distance.

For each candidate ``z``, ``med(z)`` is the ``ceil(n/2)``-th smallest distance from ``z`` to the
samples, so ``B(z, med(z))`` holds at least half of them (with a ``mass`` other than 1/2,
the ``ceil(mass n)``-th and that share). The candidate minimising it gives a
``2 gamma``-approximation of the smallest ball holding that share of the mass as long as the
candidates include the samples (ALGORITHM.md sections 2 and 2b), or, in candidate mode, a
sample inside the optimal ball (whose miss probability ``bounds.split_center_alpha`` charges to
``alpha_center``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .bounds import ball_rank
from .metrics.base import PAIRWISE_BUDGET, Metric, Outputs

EXACT_RECHECK = 8  # best candidates whose median is always recomputed with the exact distance
RECHECK_SLACK = 1e-3  # and any other within this relative margin of the best exact median
MAX_RECHECK = 256  # at most this many (a cloud of near-duplicates would otherwise recheck all)
_F64 = torch.float64


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
    """
    n = batch_len(samples)
    pool = samples if n_candidates is None else samples[: min(n_candidates, n)]
    has_extra = extra is not None and batch_len(extra) > 0
    m = ball_rank(n, mass)
    extra_medians = (
        _pairwise_medians(metric, extra, samples, m) if has_extra else torch.empty(0, dtype=_F64)
    )
    best = float(extra_medians.min()) if has_extra else math.inf
    pool_medians = _SamplePruner(metric, pool, samples, m).medians(best)
    medians = torch.cat([pool_medians, extra_medians])

    def candidate(index: int) -> Any:
        first = batch_len(pool)
        return take(pool, index) if index < first else take(extra, index - first)

    radius, index = _exact_minimum(
        medians, lambda i: median_distance(metric, candidate(i), samples, mass)
    )
    return Center(candidate(index), radius, index, medians.shape[0])


def _exact_minimum(medians: torch.Tensor, exact_median: Any) -> tuple[float, int]:
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


def _output_size(outputs: Outputs) -> int:
    """Elements per output (1 for Python objects)."""
    return outputs[0].numel() if isinstance(outputs, torch.Tensor) and len(outputs) else 1


def _row_block(n: int) -> int:
    return max(1, PAIRWISE_BUDGET // max(n, 1) // 4)


def _checked_pairwise(metric: Metric, block: Outputs, samples: Outputs) -> torch.Tensor:
    n = batch_len(samples)
    d = checked(torch.as_tensor(metric.pairwise(block, samples)), "pairwise distances")
    if d.shape != (batch_len(block), n):
        raise ValueError(
            f"the metric's pairwise form returned shape {tuple(d.shape)}, "
            f"expected {(batch_len(block), n)}"
        )
    return d


def _pairwise_medians(metric: Metric, pool: Outputs, samples: Outputs, m: int) -> torch.Tensor:
    rows = _row_block(batch_len(samples))
    medians = []
    for start in range(0, batch_len(pool), rows):
        d = _checked_pairwise(metric, pool[start : start + rows], samples)
        medians.append(torch.kthvalue(d, m, dim=1).values.to(_F64).cpu())
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

    def medians(self, best: float) -> torch.Tensor:
        n_pool = batch_len(self.pool)
        if n_pool < self.MIN_POOL:
            return _pairwise_medians(self.metric, self.pool, self.samples, self.m)
        medians = torch.full((n_pool,), math.inf, dtype=_F64)
        order = self._middle_out()
        rows = _row_block(batch_len(self.samples))
        for start in range(0, n_pool, rows):
            if best <= 0.0:  # no median is below 0
                break
            idx = order[start : start + rows]
            if self.coords is not None and math.isfinite(best):
                idx = idx[self._may_beat(idx, best)]
                if idx.numel() == 0:
                    continue
            d = _checked_pairwise(self.metric, self._rows(idx), self.samples)
            if math.isfinite(best):  # the exact count, before the dearer order statistic
                keep = (d <= best * (1 + self.SLACK)).sum(dim=1) >= self.m
                idx, d = idx[keep.cpu()], d[keep]
                if idx.numel() == 0:
                    continue
            block = torch.kthvalue(d, self.m, dim=1).values.to(_F64).cpu()
            medians[idx] = block
            best = min(best, float(block.min()))
        return medians

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
