"""Distances between probability vectors (the last dimension sums to one)."""

from __future__ import annotations

import torch

from .base import Metric, flat, float_pair


def probability_centers(samples: torch.Tensor) -> torch.Tensor:
    """The mean vector and the normalised squared mean of square roots (the Hellinger mean)."""
    mean = samples.mean(dim=0)
    root = samples.clamp(min=0).sqrt().mean(dim=0) ** 2
    root = root / root.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(root.dtype).tiny)
    return torch.stack([mean, root])


class TotalVariationProbability(Metric):
    """``0.5 * ||p - q||_1`` over all coordinates: the total variation distance between two
    distributions (in [0, 1] for one distribution per output). No ``upper`` cap: an output may
    hold several distributions, and outputs are not checked to be normalised."""

    name = "total_variation"

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(a), flat(b))
        return 0.5 * (fa - fb).abs().sum(dim=1)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(a), flat(b))
        return 0.5 * torch.cdist(fa, fb, p=1)

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return probability_centers(samples)


class HellingerDistance(Metric):
    """``||sqrt(p) - sqrt(q)||_2 / sqrt(2)``, the Hellinger distance (a metric; in [0, 1] for one
    distribution per output, uncapped for the reason given for total variation)."""

    name = "hellinger"

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (flat(a).clamp(min=0).sqrt() - flat(b).clamp(min=0).sqrt()).norm(dim=1) / 2**0.5

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ra, rb = flat(a).clamp(min=0).sqrt(), flat(b).clamp(min=0).sqrt()
        return torch.cdist(ra, rb, compute_mode="use_mm_for_euclid_dist") / 2**0.5

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return probability_centers(samples)
