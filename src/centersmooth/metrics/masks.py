"""Distances between masks, sets and label maps: Jaccard on masks / sets, and Hamming."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from .base import Metric, flat


class MaskJaccardDistance(Metric):
    """``1 - |A & B| / |A | B|`` for binary masks (any shape; nonzero = member) or Python sets.

    Two empty masks are at distance 0. The Jaccard distance is a metric on sets.
    Tensor outputs give masks; list outputs give sets (or any iterables of hashable items).
    """

    name = "mask_jaccard"
    upper = 1.0

    def distance(self, a: Any, b: Any) -> torch.Tensor:
        if isinstance(a, torch.Tensor):
            ma, mb = _masks(a), _masks(b)
            inter = (ma * mb).sum(dim=1)
            return _from_counts(inter, ma.sum(dim=1), mb.sum(dim=1))
        out = []
        for x, y in zip(a, b, strict=True):
            sx, sy = set(x), set(y)
            union = len(sx | sy)
            out.append(0.0 if union == 0 else 1.0 - len(sx & sy) / union)
        return torch.tensor(out, dtype=torch.float64)

    def pairwise(self, a: Any, b: Any) -> torch.Tensor:
        if not isinstance(a, torch.Tensor):
            return super().pairwise(a, b)
        ma, mb = _masks(a), _masks(b)
        inter = ma @ mb.T
        return _from_counts(inter, ma.sum(dim=1)[:, None], mb.sum(dim=1)[None, :])

    def central_candidates(self, samples: Any) -> Any:
        if isinstance(samples, torch.Tensor):
            majority = (_masks(samples).mean(dim=0) > 0.5).to(samples.dtype)
            return majority.reshape(1, *samples.shape[1:])
        counts: Counter[Any] = Counter()
        for s in samples:
            counts.update(set(s))
        return [frozenset(item for item, c in counts.items() if 2 * c > len(samples))]


class HammingDistance(Metric):
    """Fraction of positions at which two label maps differ (a metric, values in [0, 1])."""

    name = "hamming"
    upper = 1.0

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (flat(a) != flat(b)).to(torch.float32).mean(dim=1)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = flat(a), flat(b)
        rows = [(fa[i : i + 1] != fb).to(torch.float32).mean(dim=1) for i in range(fa.shape[0])]
        return torch.stack(rows) if rows else torch.empty(0, fb.shape[0])

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return torch.mode(samples, dim=0).values.unsqueeze(0)


def _masks(batch: torch.Tensor) -> torch.Tensor:
    return (flat(batch) != 0).to(torch.float32)


def _from_counts(inter: torch.Tensor, size_a: torch.Tensor, size_b: torch.Tensor) -> torch.Tensor:
    union = size_a + size_b - inter
    empty = union <= 0
    jac = 1.0 - inter / torch.where(empty, torch.ones_like(union), union)
    return torch.where(empty, torch.zeros_like(jac), jac).clamp(0.0, 1.0)
