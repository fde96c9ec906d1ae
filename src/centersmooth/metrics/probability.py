"""Distances between probability vectors (the last dimension sums to one)."""

from __future__ import annotations

import torch

from .base import Metric, flat


def probability_centers(samples: torch.Tensor) -> torch.Tensor:
    """The mean vector and the normalised squared mean of square roots (the Hellinger mean)."""
    mean = samples.mean(dim=0)
    root = samples.clamp(min=0).sqrt().mean(dim=0) ** 2
    root = root / root.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(root.dtype).tiny)
    return torch.stack([mean, root])


class TotalVariationProbability(Metric):
    """``0.5 * ||p - q||_1``, the total variation distance between distributions (in [0, 1])."""

    name = "total_variation"
    upper = 1.0

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 0.5 * flat(a - b).abs().sum(dim=1)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.cdist(flat(a), flat(b), p=1)

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return probability_centers(samples)


class HellingerDistance(Metric):
    """``||sqrt(p) - sqrt(q)||_2 / sqrt(2)``, the Hellinger distance (a metric, in [0, 1])."""

    name = "hellinger"
    upper = 1.0

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (flat(a).clamp(min=0).sqrt() - flat(b).clamp(min=0).sqrt()).norm(dim=1) / 2**0.5

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ra, rb = flat(a).clamp(min=0).sqrt(), flat(b).clamp(min=0).sqrt()
        return torch.cdist(ra, rb, compute_mode="use_mm_for_euclid_dist") / 2**0.5

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return probability_centers(samples)
