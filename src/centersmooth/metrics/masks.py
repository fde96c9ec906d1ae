"""Distances between masks, sets and label maps: Jaccard on masks / sets, and Hamming."""

from __future__ import annotations

from typing import Any

import torch

from .base import SETS, TENSORS, Metric, flat
from .sets import majority_set, set_jaccard, set_jaccard_pairwise


class MaskJaccardDistance(Metric):
    """``1 - |A & B| / |A | B|`` for binary masks (any shape; nonzero = member) or Python sets.

    Two empty masks are at distance 0. The Jaccard distance is a metric on sets.
    Tensor outputs give masks; list outputs must hold sets or frozensets.
    """

    name = "mask_jaccard"
    upper = 1.0
    takes = (TENSORS, SETS)

    def distance(self, a: Any, b: Any) -> torch.Tensor:
        a, b = self.accept_pair(a, b)
        if isinstance(a, list):
            return set_jaccard(a, b)
        ma, mb = _masks(a), _masks(b)
        inter = (ma * mb).sum(dim=1)
        return _from_counts(inter, ma.sum(dim=1), mb.sum(dim=1))

    def pairwise(self, a: Any, b: Any) -> torch.Tensor:
        a, b = self.accept_pair(a, b)
        if isinstance(a, list):
            return set_jaccard_pairwise(a, b)
        ma, mb = _masks(a), _masks(b)
        inter = ma @ mb.T
        return _from_counts(inter, ma.sum(dim=1)[:, None], mb.sum(dim=1)[None, :])

    def central_candidates(self, samples: Any) -> Any:
        samples = self.accept(samples)
        if isinstance(samples, list):
            return majority_set(samples)
        majority = (_masks(samples).mean(dim=0) > 0.5).to(samples.dtype)
        return majority.reshape(1, *samples.shape[1:])


class HammingDistance(Metric):
    """Fraction of positions at which two label maps differ (a metric, values in [0, 1])."""

    name = "hamming"
    upper = 1.0
    takes = (TENSORS,)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (flat(self.accept(a)) != flat(self.accept(b))).to(torch.float32).mean(dim=1)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = flat(self.accept(a)), flat(self.accept(b))
        rows = [(fa[i : i + 1] != fb).to(torch.float32).mean(dim=1) for i in range(fa.shape[0])]
        return torch.stack(rows) if rows else torch.empty(0, fb.shape[0])

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return torch.mode(self.accept(samples), dim=0).values.unsqueeze(0)


def _masks(batch: torch.Tensor) -> torch.Tensor:
    return (flat(batch) != 0).to(torch.float32)


def _from_counts(inter: torch.Tensor, size_a: torch.Tensor, size_b: torch.Tensor) -> torch.Tensor:
    union = size_a + size_b - inter
    empty = union <= 0
    jac = 1.0 - inter / torch.where(empty, torch.ones_like(union), union)
    return torch.where(empty, torch.zeros_like(jac), jac).clamp(0.0, 1.0)
