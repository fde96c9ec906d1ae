"""The approximate center of a cloud of outputs: the candidate with the smallest median distance.

For each candidate ``z``, ``med(z)`` is the ``ceil(n/2)``-th smallest distance from ``z`` to the
samples, so ``B(z, med(z))`` holds at least half of them. The candidate minimising it gives a
``2 gamma``-approximation of the smallest ball holding half the mass as long as the candidates
include the samples (ALGORITHM.md sections 2 and 2b), or, in candidate mode, a sample inside the
optimal ball (whose miss probability ``bounds.split_center_alpha`` charges to ``alpha_center``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .bounds import median_rank
from .metrics.base import PAIRWISE_BUDGET, Metric, Outputs

EXACT_RECHECK = 8  # best candidates whose median is recomputed with the exact distance


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


def median_distance(metric: Metric, point: Any, samples: Outputs) -> float:
    """``med(point)``: the ``ceil(n/2)``-th smallest distance from ``point`` to the samples.

    Distances are computed in blocks of samples, so no temporary as large as the samples is made.
    """
    n = batch_len(samples)
    rows = max(1, PAIRWISE_BUDGET // max(_output_size(samples), 1))
    d = torch.cat([distances_to(metric, point, samples[i : i + rows]) for i in range(0, n, rows)])
    return float(torch.kthvalue(d.double().cpu(), median_rank(n)).values)


def find_center(
    samples: Outputs,
    metric: Metric,
    n_candidates: int | None = None,
    extra: Outputs | None = None,
) -> Center:
    """Min-median center among the samples (or the first ``n_candidates``) plus ``extra`` points.

    Medians are computed in row blocks of the metric's pairwise form, so no ``n x n`` matrix is
    held at once and the work stays on the samples' device. The best few are then recomputed with
    the exact elementwise distance, so the returned radius is exact. Candidates are indexed
    samples first, then ``extra``; neither is copied.
    """
    n = batch_len(samples)
    pools = [samples if n_candidates is None else samples[: min(n_candidates, n)]]
    if extra is not None and batch_len(extra) > 0:
        pools.append(extra)
    m = median_rank(n)
    medians = torch.cat([_pairwise_medians(metric, pool, samples, m) for pool in pools])

    def candidate(index: int) -> Any:
        first = batch_len(pools[0])
        return take(pools[0], index) if index < first else take(pools[1], index - first)

    best = torch.argsort(medians)[:EXACT_RECHECK].tolist()
    exact = [(median_distance(metric, candidate(i), samples), i) for i in best]
    radius, index = min(exact)
    return Center(candidate(index), radius, index, medians.shape[0])


def _output_size(outputs: Outputs) -> int:
    """Elements per output (1 for Python objects)."""
    return outputs[0].numel() if isinstance(outputs, torch.Tensor) and len(outputs) else 1


def _pairwise_medians(metric: Metric, pool: Outputs, samples: Outputs, m: int) -> torch.Tensor:
    n = batch_len(samples)
    rows = max(1, PAIRWISE_BUDGET // max(n, 1) // 4)
    medians = []
    for start in range(0, batch_len(pool), rows):
        block = pool[start : start + rows]
        d = checked(torch.as_tensor(metric.pairwise(block, samples)), "pairwise distances")
        if d.shape != (batch_len(block), n):
            raise ValueError(
                f"the metric's pairwise form returned shape {tuple(d.shape)}, "
                f"expected {(batch_len(block), n)}"
            )
        medians.append(torch.kthvalue(d, m, dim=1).values.double().cpu())
    return torch.cat(medians)
