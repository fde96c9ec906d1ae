"""Edit distances between strings or between sequences of tokens (outputs are lists of ``str``,
or lists of token lists / tuples, such as the words of a transcript), computed by rapidfuzz.

rapidfuzz is imported when a string distance is first computed, not with the package: a model
with tensor outputs runs where rapidfuzz is not installed.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import STRINGS, TOKENS, Metric, Outputs


def _rapidfuzz() -> tuple[Any, Any]:
    """rapidfuzz's Levenshtein scorer and its all-pairs ``cdist``, imported on first use."""
    try:
        from rapidfuzz.distance import Levenshtein
        from rapidfuzz.process import cdist
    except ImportError:
        raise ImportError(
            "the Levenshtein distances need rapidfuzz: pip install rapidfuzz "
            "(a dependency of centersmooth; it was left out of this environment)"
        ) from None
    return Levenshtein, cdist


class LevenshteinDistance(Metric):
    """Number of insertions, deletions and substitutions turning one string into the other
    (characters), or one sequence of tokens into the other (tokens compared by equality)."""

    name = "levenshtein"
    takes = (STRINGS, TOKENS)

    def distance(self, a: Any, b: Any) -> torch.Tensor:
        xs, ys = self.accept(a), self.accept(b)
        levenshtein, _ = _rapidfuzz()
        d = [levenshtein.distance(x, y) for x, y in zip(xs, ys, strict=True)]
        return torch.tensor(d, dtype=torch.float64)

    def pairwise(self, a: Any, b: Any) -> torch.Tensor:
        xs, ys = self.accept(a), self.accept(b)
        levenshtein, cdist = _rapidfuzz()
        return torch.from_numpy(cdist(xs, ys, scorer=levenshtein.distance)).to(torch.float64)

    def diameter(self, samples: Outputs) -> float | None:
        """The length ``L`` of the longest sample (characters or tokens): two outputs of at
        most ``L`` are at most ``L`` edits apart (substitute, then insert or delete). It is
        read off the samples, not known to the distance: a bound only for outputs no longer
        than the longest seen, so ``vacuous`` is a description of the outputs seen (a longer
        output, if the model can give one, would be farther). ``None`` when every sample is
        empty."""
        longest = max((len(s) for s in self.accept(samples)), default=0)
        return float(longest) if longest > 0 else None


class NormalizedLevenshteinDistance(Metric):
    """``2 d / (|a| + |b| + d)`` with ``d`` the Levenshtein distance and ``|a|``, ``|b|`` the
    lengths (characters or tokens), in [0, 1]; 0 for two empty outputs.

    Yujian and Bo (IEEE TPAMI 2007) prove this normalisation a metric; dividing by the longer
    length (rapidfuzz's ``normalized_distance``), the common alternative, is not one in general.
    """

    name = "levenshtein_normalized"
    upper = 1.0
    takes = (STRINGS, TOKENS)

    def distance(self, a: Any, b: Any) -> torch.Tensor:
        xs, ys = self.accept(a), self.accept(b)
        d = LevenshteinDistance().distance(xs, ys)
        lengths = torch.tensor([len(x) + len(y) for x, y in zip(xs, ys, strict=True)])
        return _normalise(d, lengths.to(torch.float64))

    def pairwise(self, a: Any, b: Any) -> torch.Tensor:
        xs, ys = self.accept(a), self.accept(b)
        d = LevenshteinDistance().pairwise(xs, ys)
        la = torch.tensor([len(x) for x in xs], dtype=torch.float64)
        lb = torch.tensor([len(y) for y in ys], dtype=torch.float64)
        return _normalise(d, la[:, None] + lb[None, :])


def _normalise(d: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    denom = lengths + d
    return torch.where(denom > 0, 2.0 * d / torch.where(denom > 0, denom, 1.0), 0.0)
