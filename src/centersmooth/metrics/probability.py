"""Distances between probability vectors (the last dimension sums to one)."""

from __future__ import annotations

import math

import torch

from .base import TENSORS, Metric, Outputs, flat, float_pair

ROW_SUM_TOLERANCE = 0.01  # rows summing to 1 within this count as probability vectors


def distribution_rows(samples: Outputs) -> tuple[int, float] | None:
    """``(k, s)`` if every output in ``samples`` is ``k`` probability vectors: non-negative
    entries whose sums over the last dimension are all within ``ROW_SUM_TOLERANCE`` of 1, the
    largest of them ``s``. ``None`` for anything else (no samples, other outputs)."""
    if not isinstance(samples, torch.Tensor) or samples.dim() < 2 or samples.numel() == 0:
        return None
    if not samples.is_floating_point():
        return None
    if bool(samples.min() < 0):
        return None
    sums = samples.sum(dim=-1, dtype=torch.float64)
    if not bool(((sums - 1.0).abs() <= ROW_SUM_TOLERANCE).all()):
        return None
    return int(samples[0].numel() // samples.shape[-1]), float(sums.max())


def not_probability_vectors(batch: Outputs, rounding_eps: float) -> torch.Tensor | None:
    """Per output of a tensor batch, whether it is not probability vectors along its last
    dimension: an entry below ``-tol`` or a row whose sum is farther than ``tol`` from 1, with
    ``tol = (k + 2) eps`` for rows of ``k`` entries and ``eps`` the coarser of the outputs' and
    the model's float rounding units (a softmax's rows sum to 1 within about ``k + 2`` rounding
    errors). NaN is not flagged here (see ``sampling.OutputMonitor``). ``None`` for other
    batches."""
    if not isinstance(batch, torch.Tensor) or batch.numel() == 0:
        return None
    k = batch.shape[-1] if batch.dim() > 1 else 1
    eps = torch.finfo(batch.dtype).eps if batch.is_floating_point() else 0.0
    tol = (k + 2) * max(eps, rounding_eps)
    rows = batch.reshape(batch.shape[0], -1, k)
    sums = rows.sum(dim=-1, dtype=torch.float64)
    bad = (rows.amin(dim=-1) < -tol) | ((sums - 1.0).abs() > tol)
    return bad.any(dim=1)


PROBABILITY_ADVICE = (
    "is a distance between probability vectors (entries >= 0, each row along the last "
    "dimension summing to 1 up to the rounding of the float type), and some outputs of the "
    "model are not (negative entries or rows summing to something else, such as logits or "
    "scores): end the model with a softmax over the last dimension (torch.softmax(out, dim=-1)) "
    "or use a distance for vectors (l1, l2)"
)


def probability_centers(samples: torch.Tensor) -> torch.Tensor:
    """The mean vector and the normalised squared mean of square roots (the Hellinger mean)."""
    mean = samples.mean(dim=0)
    root = samples.clamp(min=0).sqrt().mean(dim=0) ** 2
    root = root / root.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(root.dtype).tiny)
    return torch.stack([mean, root])


class TotalVariationProbability(Metric):
    """``0.5 * ||p - q||_1`` over all coordinates: the total variation distance between two
    distributions (in [0, 1] for one distribution per output). Every sampled output must be
    probability vectors along its last dimension (:func:`not_probability_vectors`; logits are
    refused with the advice to add a softmax). No ``upper`` cap: an output may hold several
    distributions (``k`` rows: up to ``k``)."""

    name = "total_variation"
    takes = (TENSORS,)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(self.accept(a)), flat(self.accept(b)))
        return 0.5 * (fa - fb).abs().sum(dim=1)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(self.accept(a)), flat(self.accept(b)))
        return 0.5 * torch.cdist(fa, fb, p=1)

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return probability_centers(self.accept(samples))

    def invalid_outputs(self, batch: Outputs, rounding_eps: float) -> torch.Tensor | None:
        return not_probability_vectors(batch, rounding_eps)

    def invalid_message(self) -> str:
        return f"the distance {self.name!r} {PROBABILITY_ADVICE}"

    def diameter(self, samples: Outputs) -> float | None:
        """``k s`` when the samples are ``k`` probability vectors each (rows summing to at most
        ``s``, about 1): ``0.5 ||p - q||_1 <= 0.5 (|p|_1 + |q|_1)``, reached by disjoint
        supports. ``None`` for other outputs (the distance is then unbounded)."""
        rows = distribution_rows(self.accept(samples))
        return None if rows is None else rows[0] * rows[1]


class HellingerDistance(Metric):
    """``||sqrt(p) - sqrt(q)||_2 / sqrt(2)``, the Hellinger distance (a metric; in [0, 1] for one
    distribution per output, uncapped and checked on every output as total variation is)."""

    name = "hellinger"
    takes = (TENSORS,)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ra, rb = flat(self.accept(a)).clamp(min=0).sqrt(), flat(self.accept(b)).clamp(min=0).sqrt()
        return (ra - rb).norm(dim=1) / 2**0.5

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The product form measured from a central point (``euclidean_pairwise``): from the
        origin, near-identical distributions lose their small distances to rounding."""
        from .vector import euclidean_pairwise  # vector imports this module

        ra, rb = flat(self.accept(a)).clamp(min=0).sqrt(), flat(self.accept(b)).clamp(min=0).sqrt()
        return euclidean_pairwise(ra, rb) / 2**0.5

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return probability_centers(self.accept(samples))

    def invalid_outputs(self, batch: Outputs, rounding_eps: float) -> torch.Tensor | None:
        return not_probability_vectors(batch, rounding_eps)

    def invalid_message(self) -> str:
        return f"the distance {self.name!r} {PROBABILITY_ADVICE}"

    def diameter(self, samples: Outputs) -> float | None:
        """``sqrt(k s)`` when the samples are ``k`` probability vectors each (rows summing to at
        most ``s``, about 1): ``||sqrt(p) - sqrt(q)||^2 / 2 <= (|p|_1 + |q|_1) / 2``, reached by
        disjoint supports. ``None`` for other outputs."""
        rows = distribution_rows(self.accept(samples))
        return None if rows is None else math.sqrt(rows[0] * rows[1])
