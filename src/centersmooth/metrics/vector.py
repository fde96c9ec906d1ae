"""Distances between vectors and images treated as vectors: l2, l1, linf and angular."""

from __future__ import annotations

import math

import torch

from .base import Metric, flat, float_pair


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

    def __init__(self, p: float, name: str) -> None:
        self.p = p
        self.name = name

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(a), flat(b))
        return torch.linalg.vector_norm(fa - fb, ord=self.p, dim=1)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(a), flat(b))
        if self.p == 2:
            return euclidean_pairwise(fa, fb)
        return torch.cdist(fa, fb, p=self.p)

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return vector_centers(samples)

    def euclidean_embedding(self, outputs: torch.Tensor) -> torch.Tensor | None:
        return float_pair(flat(outputs), flat(outputs))[0] if self.p == 2 else None

    def euclidean_radius(self, distance: float) -> float:
        return distance


class AngularDistance(Metric):
    """``arccos(cos_sim(a, b)) / pi`` in [0, 1], a metric on directions.

    Computed as ``2 asin(||u - v|| / 2) / pi`` on unit vectors ``u, v``, which is accurate for
    small angles (arccos of a rounded cosine is not). The zero vector is a point of its own:
    at distance 0 from itself and 1/2 from every direction (the triangle inequality still holds,
    since 1/2 + 1/2 bounds every distance).
    """

    name = "angular"
    upper = 1.0

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(a), flat(b))
        ua, za = _unit(fa)
        ub, zb = _unit(fb)
        ang = 2.0 * torch.asin(torch.clamp((ua - ub).norm(dim=1) / 2.0, 0.0, 1.0)) / math.pi
        return _with_zero_vectors(ang, za, zb)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = float_pair(flat(a), flat(b))
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
        pts, _ = _unit(float_pair(flat(samples), flat(samples))[0])
        mean_dir = pts.mean(dim=0)
        med_dir = pts.median(dim=0).values
        centers = torch.stack([mean_dir, med_dir])
        return centers.to(samples.dtype).reshape(2, *samples.shape[1:])


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
