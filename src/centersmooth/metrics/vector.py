"""Distances between vectors and images treated as vectors: l2, l1, linf and angular, and the
two usual non-metrics with a proven constant, squared l2 and cosine (``gamma = 2``)."""

from __future__ import annotations

import math

import torch

from .base import TENSORS, Metric, Outputs, flat, float_pair
from .probability import distribution_rows


def geometric_median(points: torch.Tensor, iterations: int = 64, tol: float = 1e-5) -> torch.Tensor:
    """Weiszfeld's iteration for the point minimising the sum of l2 distances to ``points``.

    ``points`` is ``(n, features)``; starts from the mean and stops when a step moves less than
    ``tol`` times the cloud's scale (finer steps change no median distance in float32: the
    result is only a candidate, scored exactly by the center search). Points that coincide
    with the iterate get weight 0 (theirs would be infinite), which keeps the iteration
    defined. Distances come from norms and one matrix-vector product, so no temporary of the
    size of ``points`` is made.
    """
    z = points.mean(dim=0)
    sq_norms = torch.cat([(block * block).sum(dim=1) for block in points.split(1024)])
    scale = 0.0
    for step in range(iterations):
        dist = (sq_norms - 2 * (points @ z) + z @ z).clamp(min=0).sqrt()
        if step == 0:
            scale = float(dist.mean()) or 1.0
        keep = dist > 1e-6 * scale
        if not bool(keep.any()):
            break
        w = torch.where(keep, 1.0 / torch.where(keep, dist, 1.0), 0.0)
        new = (w @ points) / w.sum()
        moved = float((new - z).norm())
        z = new
        if moved <= tol * scale:
            break
    return z


def coordinate_median(points: torch.Tensor, columns: int = 1024) -> torch.Tensor:
    """Coordinate-wise (lower) median of ``(n, features)``, a block of columns at a time."""
    return torch.cat(
        [
            points[:, i : i + columns].median(dim=0).values
            for i in range(0, points.shape[1], columns)
        ]
    )


def vector_centers(samples: torch.Tensor) -> torch.Tensor:
    """Mean, coordinate-wise median and geometric median of a batch, in the batch's shape."""
    pts = flat(samples)
    work = pts if pts.is_floating_point() else pts.double()
    centers = torch.stack([work.mean(dim=0), coordinate_median(work), geometric_median(work)])
    out_dtype = samples.dtype if samples.is_floating_point() else work.dtype
    return centers.to(out_dtype).reshape(3, *samples.shape[1:])


class LpDistance(Metric):
    """``||a - b||_p`` over all coordinates of each output (p = 1, 2 or inf)."""

    central_key = "vector"  # vector_centers
    takes = (TENSORS,)
    pair_default = True

    def __init__(self, p: float, name: str) -> None:
        self.p = p
        self.name = name

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(self.accept(a)), flat(self.accept(b)))
        return torch.linalg.vector_norm(fa - fb, ord=self.p, dim=1)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(self.accept(a)), flat(self.accept(b)))
        if self.p == 2:
            return euclidean_pairwise(fa, fb)
        return torch.cdist(fa, fb, p=self.p)

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return vector_centers(self.accept(samples))

    def euclidean_embedding(self, outputs: torch.Tensor) -> torch.Tensor | None:
        return float_pair(flat(outputs), flat(outputs))[0] if self.p == 2 else None

    def euclidean_radius(self, distance: float) -> float:
        return distance

    def diameter(self, samples: Outputs) -> float | None:
        """On outputs that are ``k`` probability vectors each (non-negative rows summing to at
        most ``s``, about 1, over the last dimension): ``2 k s`` for l1, ``sqrt(2 k) s`` for l2
        and ``s`` for linf, the largest distance two such outputs can have (disjoint supports).
        ``None`` for any other outputs: the distance is unbounded."""
        rows = distribution_rows(self.accept(samples))
        if rows is None:
            return None
        k, s = rows
        if self.p == 1:
            return 2.0 * k * s
        if self.p == 2:
            return math.sqrt(2.0 * k) * s
        return s


class SquaredL2Distance(Metric):
    """``||a - b||_2^2`` over all coordinates of each output: not a metric, but
    ``||a - c||^2 <= (||a - b|| + ||b - c||)^2 <= 2 (||a - b||^2 + ||b - c||^2)``, so the
    relaxed triangle inequality holds with ``gamma = 2`` (tight: ``b`` the midpoint of ``a``
    and ``c``)."""

    name = "squared_l2"
    gamma = 2.0
    central_key = "vector"  # the same center as l2 (a monotone function of it): vector_centers
    takes = (TENSORS,)
    pair_default = True

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(self.accept(a)), flat(self.accept(b)))
        return (fa - fb).square().sum(dim=1)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(self.accept(a)), flat(self.accept(b)))
        return euclidean_pairwise(fa, fb).square_()

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return vector_centers(self.accept(samples))

    def euclidean_embedding(self, outputs: torch.Tensor) -> torch.Tensor | None:
        return float_pair(flat(outputs), flat(outputs))[0]

    def euclidean_radius(self, distance: float) -> float:
        return math.sqrt(max(distance, 0.0))

    def diameter(self, samples: Outputs) -> float | None:
        """``2 k s^2`` on outputs that are ``k`` probability vectors each (rows summing to at
        most ``s``, about 1): the square of l2's. ``None`` for any other outputs."""
        rows = distribution_rows(self.accept(samples))
        return None if rows is None else 2.0 * rows[0] * rows[1] ** 2


class AngularDistance(Metric):
    """``arccos(cos_sim(a, b)) / pi`` in [0, 1], a metric on directions.

    Computed as ``2 asin(||u - v|| / 2) / pi`` on unit vectors ``u, v``, which is accurate for
    small angles (arccos of a rounded cosine is not). The zero vector is a point of its own:
    at distance 0 from itself and 1/2 from every direction (the triangle inequality still holds,
    since 1/2 + 1/2 bounds every distance).
    """

    name = "angular"
    upper = 1.0
    central_key = "direction"  # direction_centers
    takes = (TENSORS,)
    pair_default = True

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(self.accept(a)), flat(self.accept(b)))
        ua, za = _unit(fa)
        ub, zb = _unit(fb)
        ang = 2.0 * torch.asin(torch.clamp((ua - ub).norm(dim=1) / 2.0, 0.0, 1.0)) / math.pi
        return _with_zero_vectors(ang, za, zb)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(self.accept(a)), flat(self.accept(b)))
        ua, za = _unit(fa)
        ub, zb = _unit(fb)
        chord = euclidean_pairwise(ua, ub)
        ang = 2.0 * torch.asin(torch.clamp(chord / 2.0, 0.0, 1.0)) / math.pi
        return _with_zero_vectors(ang, za[:, None], zb[None, :])

    def euclidean_embedding(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """Unit vectors (the chord length is monotone in the angle); ``None`` when a zero
        vector, which sits at 1/2 from every direction, breaks that."""
        units, zero = _unit(float_pair(flat(outputs), flat(outputs))[0])
        return None if bool(zero.any()) else units

    def euclidean_radius(self, distance: float) -> float:
        return 2.0 * math.sin(math.pi * min(max(distance, 0.0), 1.0) / 2.0)

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return direction_centers(self.accept(samples))

    def diameter(self, samples: Outputs) -> float | None:
        """1 (opposite directions); 1/2 when no sample has a negative coordinate (two
        non-negative vectors are at most a right angle apart, and a zero vector is at 1/2 from
        every direction), a bound for outputs that stay non-negative."""
        return 0.5 if _non_negative(self.accept(samples)) else 1.0


class CosineDistance(Metric):
    """``1 - cos(a, b)`` over all coordinates of each output, in ``[0, 2]``.

    Equal to ``||u - v||^2 / 2`` for the unit vectors ``u, v`` of ``a, b`` (computed so, which
    is accurate for small angles where ``1 - cos`` of a rounded cosine is not): half a squared
    Euclidean distance, so the relaxed triangle inequality holds with ``gamma = 2`` (and fails
    with 1: ``b`` halfway between ``a`` and ``c`` on the circle). A zero vector is mapped to the
    origin: it is at distance 1/2 from every nonzero output and 0 from another zero vector,
    which keeps the distance exactly half a squared Euclidean one, so ``gamma = 2`` still holds.
    """

    name = "cosine"
    gamma = 2.0
    upper = 2.0
    central_key = "direction"  # direction_centers
    takes = (TENSORS,)
    pair_default = True

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(self.accept(a)), flat(self.accept(b)))
        ua, ub = _unit(fa)[0], _unit(fb)[0]
        return 0.5 * (ua - ub).square().sum(dim=1)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(self.accept(a)), flat(self.accept(b)))
        return 0.5 * euclidean_pairwise(_unit(fa)[0], _unit(fb)[0]).square_()

    def euclidean_embedding(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """Unit vectors, zero vectors at the origin: the distance is half the square of theirs."""
        return _unit(float_pair(flat(outputs), flat(outputs))[0])[0]

    def euclidean_radius(self, distance: float) -> float:
        return math.sqrt(2.0 * max(distance, 0.0))

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return direction_centers(self.accept(samples))

    def diameter(self, samples: Outputs) -> float | None:
        """2 (opposite directions); 1 when no sample has a negative coordinate (the cosine of
        two non-negative vectors is at least 0), a bound for outputs that stay non-negative."""
        return 1.0 if _non_negative(self.accept(samples)) else 2.0


def direction_centers(samples: torch.Tensor) -> torch.Tensor:
    """The mean and the coordinate median of the samples' unit vectors, in the batch's shape
    (central points for the distances between directions)."""
    pts, _ = _unit(float_pair(flat(samples), flat(samples))[0])
    centers = torch.stack([pts.mean(dim=0), pts.median(dim=0).values])
    out_dtype = samples.dtype if samples.is_floating_point() else pts.dtype
    return centers.to(out_dtype).reshape(2, *samples.shape[1:])


def _non_negative(samples: torch.Tensor) -> bool:
    return samples.numel() > 0 and bool(samples.min() >= 0)


REFERENCE_ROWS = 256  # rows of ``b`` whose coordinate median the product form is measured from


def euclidean_pairwise(a: torch.Tensor, b: torch.Tensor, columns: int = 2048) -> torch.Tensor:
    """``||a_i - b_j||`` in matrix-product form, measured from a central point of ``b``.

    The product form cancels ``|a|^2 + |b|^2 - 2 a.b``, so its rounding error grows with the
    norms. Translating both sides to the coordinate median of ``b``'s first rows keeps them of
    the size of the cloud's spread rather than of its distance from the origin (or from an
    outlier, which a single row of ``b`` may be, or a mean pulled by outliers), so a tight core
    keeps its small distances. ``b`` goes in column blocks, so the translated copy stays small.
    """
    if a.shape[0] == 0 or b.shape[0] == 0:
        return torch.cdist(a, b)
    ref = b[:REFERENCE_ROWS].median(dim=0).values
    shifted = a - ref
    return torch.cat(
        [
            torch.cdist(shifted, block - ref, compute_mode="use_mm_for_euclid_dist")
            for block in b.split(columns)
        ],
        dim=1,
    )


def _unit(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    norm = v.norm(dim=1, keepdim=True)
    zero = norm.squeeze(1) == 0
    return v / torch.where(norm == 0, torch.ones_like(norm), norm), zero


def _with_zero_vectors(ang: torch.Tensor, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    half = torch.full_like(ang, 0.5)
    out = torch.where(za | zb, half, ang)
    return torch.where(za & zb, torch.zeros_like(ang), out)
