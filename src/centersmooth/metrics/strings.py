"""Edit distances between strings (outputs are lists of ``str``), computed by rapidfuzz."""

from __future__ import annotations

from typing import Any

import torch
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

from .base import Metric


def _strings(batch: Any) -> list[str]:
    items = list(batch)
    for s in items:
        if not isinstance(s, str):
            raise TypeError(f"edit distances take strings, got {type(s).__name__}")
    return items


class LevenshteinDistance(Metric):
    """Number of insertions, deletions and substitutions turning one string into the other."""

    name = "levenshtein"

    def distance(self, a: Any, b: Any) -> torch.Tensor:
        d = [Levenshtein.distance(x, y) for x, y in zip(_strings(a), _strings(b), strict=True)]
        return torch.tensor(d, dtype=torch.float64)

    def pairwise(self, a: Any, b: Any) -> torch.Tensor:
        return torch.from_numpy(cdist(_strings(a), _strings(b), scorer=Levenshtein.distance)).to(
            torch.float64
        )


class NormalizedLevenshteinDistance(Metric):
    """``2 d / (|a| + |b| + d)`` with ``d`` the Levenshtein distance, in [0, 1].

    Yujian and Bo (IEEE TPAMI 2007) prove this normalisation a metric; dividing by the longer
    length, the common alternative, is not one in general.
    """

    name = "levenshtein_normalized"
    upper = 1.0

    def distance(self, a: Any, b: Any) -> torch.Tensor:
        xs, ys = _strings(a), _strings(b)
        d = LevenshteinDistance().distance(xs, ys)
        lengths = torch.tensor([len(x) + len(y) for x, y in zip(xs, ys, strict=True)])
        return _normalise(d, lengths.to(torch.float64))

    def pairwise(self, a: Any, b: Any) -> torch.Tensor:
        xs, ys = _strings(a), _strings(b)
        d = LevenshteinDistance().pairwise(xs, ys)
        la = torch.tensor([len(x) for x in xs], dtype=torch.float64)
        lb = torch.tensor([len(y) for y in ys], dtype=torch.float64)
        return _normalise(d, la[:, None] + lb[None, :])


def _normalise(d: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    denom = lengths + d
    return torch.where(denom > 0, 2.0 * d / torch.where(denom > 0, denom, 1.0), 0.0)
