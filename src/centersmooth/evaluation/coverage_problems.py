"""Problems for the coverage harness: base functions whose output distribution under the
smoothing noise is known, in closed form (a linear map, a step function, a saturating clip) or
from a precise brute-force Monte Carlo reference (a small random network), and one built for
runs at ``x'`` that reuse the noise of the certification at ``x`` (a high-frequency sine), and one
built against drawing certification samples in rounds (a rare far mode).

Each of the first four gives the true mass of any ball around any point, so the harness
(``coverage.py``) can tell when a certificate's statistical step failed; the sine problem gives
none (``knows_mass = False``) and is only used for the events at ``x'``, which need no truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from .. import grid_noise
from ..metrics import get_metric

DTYPE = torch.float64  # inputs and outputs in double precision: the truth is computed in float64


class Problem:
    """A base function at a fixed input ``x`` whose output distribution under noise is known.

    ``mass(z, r)`` is ``P(d(z, f(x + shift + delta)) <= r)`` (``< r`` with ``strict``), computed
    exactly or from a precise reference. Optional knowledge: the radius of the smallest ball of a
    given mass, the worst mass over the ``eps_in`` ball, an adversarial point for ``eps_in``.
    """

    name: str = "problem"
    description: str = ""
    knows_mass: bool = True  # False: ``mass`` is not available, only the events at x' are run
    metric: str = "l2"
    sigma: float = 0.5
    x: torch.Tensor

    def base_function(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mass(self, z: np.ndarray, r: float, strict: bool = False) -> float:
        raise NotImplementedError

    def optimal_radius(self, q: float) -> float | None:
        """Radius of the smallest ball of mass ``q`` at ``x``; ``None`` where not known."""
        return None

    def worst_mass(self, z: np.ndarray, r: float, eps_in: float) -> float | None:
        """Smallest mass of ``B(z, r)`` over ``||x' - x|| <= eps_in``; ``None`` where not known."""
        return None

    def adversarial_input(self, z: np.ndarray, eps_in: float) -> torch.Tensor | None:
        """A point ``x'`` with ``||x' - x|| = eps_in`` that pushes the outputs away from ``z``."""
        return None

    def atoms(self, z: np.ndarray) -> list[float]:
        """Values that ``d(z, f(x + delta))`` takes with positive probability (none: continuous)."""
        return []

    def quantile_left_mass(self, z: np.ndarray, p: float) -> float:
        """``F(q_p-)``: the mass strictly below the true ``p``-quantile ``q_p`` of
        ``d(z, f(x + delta))``.

        If ``q_p`` is an atom ``v`` then ``F(v-) < p <= F(v)`` and the answer is ``F(v-)``;
        otherwise ``F`` is continuous at ``q_p`` and the answer is ``p``.
        """
        for v in self.atoms(z):
            below = self.mass(z, v, strict=True)
            if below < p <= self.mass(z, v):
                return below
        return p

    def f_at_x(self) -> np.ndarray:
        """The base function's output at the clean input."""
        return np.asarray(self.base_function(self.x.unsqueeze(0))[0], dtype=np.float64)


class LinearProblem(Problem):
    """``f(x) = c Q x + b`` with ``Q`` orthogonal, under the l2 distance.

    ``f(x + delta) ~ N(f(x), (c sigma)^2 I)``, so ``||f(x + delta) - z||^2 / (c sigma)^2`` is
    non-central chi-square with ``dim`` degrees of freedom and non-centrality
    ``||f(x) - z||^2 / (c sigma)^2``. The smallest ball of a given mass is centred at ``f(x)``
    (Anderson's theorem); the worst ``x'`` moves ``f`` by ``c eps_in`` straight away from ``z``.
    """

    name = "linear"
    metric = "l2"

    def __init__(self, dim: int = 6, scale: float = 1.5, sigma: float = 0.5, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=DTYPE))
        self.q, self.scale, self.sigma, self.dim = q, scale, sigma, dim
        self.b = torch.randn(dim, generator=gen, dtype=DTYPE)
        self.x = torch.randn(dim, generator=gen, dtype=DTYPE)
        self.fx = self.base_function(self.x.unsqueeze(0))[0].numpy()
        self.description = f"f(x) = {scale} Q x + b, Q orthogonal {dim}x{dim}, l2"

    def base_function(self, batch: torch.Tensor) -> torch.Tensor:
        return self.scale * batch @ self.q.T + self.b

    def _mass_at(self, offset: float, r: float) -> float:
        s = self.scale * self.sigma
        nc = (offset / s) ** 2
        t = (r / s) ** 2
        return float(stats.chi2.cdf(t, self.dim) if nc == 0 else stats.ncx2.cdf(t, self.dim, nc))

    def mass(self, z: np.ndarray, r: float, strict: bool = False) -> float:
        return self._mass_at(float(np.linalg.norm(self.fx - z)), r)  # no atoms: strict is equal

    def optimal_radius(self, q: float) -> float | None:
        return float(self.scale * self.sigma * math.sqrt(stats.chi2.ppf(q, self.dim)))

    def worst_mass(self, z: np.ndarray, r: float, eps_in: float) -> float | None:
        return self._mass_at(float(np.linalg.norm(self.fx - z)) + self.scale * eps_in, r)

    def adversarial_input(self, z: np.ndarray, eps_in: float) -> torch.Tensor | None:
        away = torch.as_tensor(self.fx - z, dtype=DTYPE)
        if float(away.norm()) == 0.0:
            away = torch.ones(self.dim, dtype=DTYPE)
        direction = self.q.T @ (away / away.norm())  # f moves by c eps_in along `away`
        return self.x + eps_in * direction


class NanProblem(Problem):
    """The linear map of :class:`LinearProblem` on the first ``dim`` input coordinates, and NaN
    in every output coordinate where the last input coordinate exceeds ``t``: a model that fails
    on a known share ``p_nan`` of the noise, certified with ``nan_outputs="outside"`` (a NaN
    output lies in no ball). Under the noise the last coordinate is independent of the others,
    so a ball around a finite ``z`` has ``(1 - p_nan)`` times the linear map's mass, and the
    smallest ball of mass ``q`` is the linear map's of mass ``q / (1 - p_nan)`` (none when
    ``q > 1 - p_nan``). The adversarial ``x'`` spends half of ``eps_in^2`` on raising the NaN
    share and half on moving the outputs away from ``z``; the worst mass is not computed.
    """

    name = "nan-linear"
    metric = "l2"

    def __init__(
        self, dim: int = 6, scale: float = 1.5, sigma: float = 0.5, p_nan: float = 0.05
    ) -> None:
        self.linear = LinearProblem(dim, scale, sigma)
        self.sigma, self.dim, self.p_nan, self.t = sigma, dim, p_nan, 0.0
        last = self.t - sigma * float(stats.norm.ppf(1.0 - p_nan))  # P(last + noise > t) = p_nan
        self.x = torch.cat([self.linear.x, torch.tensor([last], dtype=DTYPE)])
        self.description = (
            f"{self.linear.description.removesuffix(', l2')}, NaN outputs where a 7th input "
            f"coordinate exceeds a threshold (share {p_nan:g} at x), l2, nan_outputs='outside'"
        )

    def base_function(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.linear.base_function(batch[:, : self.dim])
        return torch.where((batch[:, self.dim] > self.t)[:, None], math.nan, out)

    def mass(self, z: np.ndarray, r: float, strict: bool = False) -> float:
        return (1.0 - self.p_nan) * self.linear.mass(z, r, strict)

    def quantile_left_mass(self, z: np.ndarray, p: float) -> float:
        """``p``, or ``1 - p_nan`` where the ``p``-quantile is infinite (the NaN outputs)."""
        return min(p, 1.0 - self.p_nan)

    def optimal_radius(self, q: float) -> float | None:
        if q >= 1.0 - self.p_nan:
            return None
        return self.linear.optimal_radius(q / (1.0 - self.p_nan))

    def adversarial_input(self, z: np.ndarray, eps_in: float) -> torch.Tensor | None:
        half = eps_in / math.sqrt(2.0)
        away = self.linear.adversarial_input(z, half)
        assert away is not None
        return torch.cat([away, self.x[self.dim :] + half])


class StepProblem(Problem):
    """``f(x) = 1[w . x > t]`` (a 1-vector), under the l2 distance: a two-point output distribution.

    ``P(f = 1) = Phi((w . x - t) / (sigma ||w||))``; ``x`` is placed so that it is ``p_one``.
    A shift of ``x`` moves the pre-activation by at most ``||w|| eps_in`` and the mass of any set of
    outputs is linear in ``P(f = 1)``, so the worst shift is one of the two ends.
    """

    name = "step"
    metric = "l2"

    def __init__(self, dim: int = 4, p_one: float = 0.2, sigma: float = 0.5, seed: int = 1) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.w = torch.randn(dim, generator=gen, dtype=DTYPE)
        self.t = 0.3
        self.sigma, self.dim = sigma, dim
        self.wnorm = float(self.w.norm())
        # place x so that (w.x - t) / (sigma ||w||) = Phi^-1(p_one)
        margin = float(stats.norm.ppf(p_one)) * sigma * self.wnorm
        self.x = self.w * (self.t + margin) / self.wnorm**2
        self.p_one = p_one
        self.l2 = get_metric("l2")
        self.description = f"f(x) = 1[w.x > t] in R^{dim}, P(f = 1) = {p_one}, l2"

    def base_function(self, batch: torch.Tensor) -> torch.Tensor:
        return (batch @ self.w > self.t).to(DTYPE).unsqueeze(1)

    def _p_one(self, shift: float) -> float:
        return float(stats.norm.cdf(stats.norm.ppf(self.p_one) + shift / (self.sigma * self.wnorm)))

    def _mass_q(self, z: np.ndarray, r: float, q: float, strict: bool) -> float:
        zt = torch.as_tensor(z, dtype=DTYPE).reshape(1, 1)
        d0 = float(self.l2(zt, torch.zeros(1, 1, dtype=DTYPE))[0])  # the metric's own rounding
        d1 = float(self.l2(zt, torch.ones(1, 1, dtype=DTYPE))[0])
        inside = (lambda d: d < r) if strict else (lambda d: d <= r)
        return (1.0 - q) * inside(d0) + q * inside(d1)

    def mass(self, z: np.ndarray, r: float, strict: bool = False) -> float:
        return self._mass_q(z, r, self.p_one, strict)

    def atoms(self, z: np.ndarray) -> list[float]:
        zt = torch.as_tensor(z, dtype=DTYPE).reshape(1, 1)
        return [float(self.l2(zt, torch.full((1, 1), v, dtype=DTYPE))[0]) for v in (0.0, 1.0)]

    def optimal_radius(self, q: float) -> float | None:
        # a ball of mass q >= 1/2 must hold the majority atom (0); it holds it at radius 0, and
        # also needs the other atom once q > 1 - p_one (radius 1/2 centred between the two).
        return 0.0 if q <= 1.0 - self.p_one else 0.5

    def worst_mass(self, z: np.ndarray, r: float, eps_in: float) -> float | None:
        reach = self.wnorm * eps_in
        return min(self._mass_q(z, r, self._p_one(s), False) for s in (-reach, reach))

    def adversarial_input(self, z: np.ndarray, eps_in: float) -> torch.Tensor | None:
        sign = 1.0 if float(np.ravel(z)[0]) <= 0.5 else -1.0  # towards the other atom
        return self.x + sign * eps_in * self.w / self.wnorm


class ClipProblem(Problem):
    """``f(x) = clip(c x, -1, 1)`` coordinatewise under the l-infinity distance (saturation).

    Coordinates are independent, so a l-infinity ball (a box) has the product of the
    one-dimensional masses; each coordinate has atoms at -1 and +1 and a Gaussian density between.
    """

    name = "clip"
    metric = "linf"

    def __init__(self, scale: float = 2.0, sigma: float = 0.25) -> None:
        self.x = torch.tensor([0.4, -0.45, 0.1], dtype=DTYPE)
        self.scale, self.sigma = scale, sigma
        self.mu = (scale * self.x).numpy()
        self.s = scale * sigma
        self.description = "f(x) = clip(2 x, -1, 1) in R^3, two coordinates near saturation, linf"

    def base_function(self, batch: torch.Tensor) -> torch.Tensor:
        return (self.scale * batch).clamp(-1.0, 1.0)

    def mass(self, z: np.ndarray, r: float, strict: bool = False) -> float:
        z = np.ravel(z).astype(np.float64)
        total = 1.0
        for zi, mi in zip(z, self.mu, strict=True):
            inside = (lambda d: d < r) if strict else (lambda d: d <= r)
            p_top = float(stats.norm.sf((1.0 - mi) / self.s))
            p_bottom = float(stats.norm.cdf((-1.0 - mi) / self.s))
            atoms = p_top * inside(abs(float(np.float64(zi) - 1.0))) + p_bottom * inside(
                abs(float(np.float64(zi) + 1.0))
            )
            lo, hi = max(zi - r, -1.0), min(zi + r, 1.0)
            interior = 0.0
            if hi > lo:
                interior = float(
                    stats.norm.cdf((hi - mi) / self.s) - stats.norm.cdf((lo - mi) / self.s)
                )
            total *= atoms + interior
        return total

    def atoms(self, z: np.ndarray) -> list[float]:
        return [abs(float(np.float64(zi) - v)) for zi in np.ravel(z) for v in (1.0, -1.0)]


class NetworkProblem(Problem):
    """A small random tanh network ``R^4 -> R`` under the l1 (= absolute) distance.

    The truth is a brute-force Monte Carlo reference: ``n_reference`` sorted outputs at ``x``;
    ``mass`` counts them in ``[z - r, z + r]`` (standard error at most ``0.5 / sqrt(n_reference)``).
    """

    name = "network"
    metric = "l1"

    def __init__(
        self, sigma: float = 0.5, n_reference: int = 4_000_000, seed: int = 3, hidden: int = 16
    ) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.layers = [
            (
                torch.randn(hidden, 4, generator=gen, dtype=DTYPE),
                torch.randn(hidden, generator=gen, dtype=DTYPE),
            ),
            (
                torch.randn(hidden, hidden, generator=gen, dtype=DTYPE) / math.sqrt(hidden),
                torch.zeros(hidden, dtype=DTYPE),
            ),
            (torch.randn(1, hidden, generator=gen, dtype=DTYPE), torch.zeros(1, dtype=DTYPE)),
        ]
        self.sigma = sigma
        self.x = torch.randn(4, generator=gen, dtype=DTYPE)
        self.n_reference = n_reference
        ref_gen = torch.Generator().manual_seed(seed + 1000)
        chunks = [
            self.base_function(
                self.x
                + sigma
                * torch.randn(min(500_000, n_reference - i), 4, generator=ref_gen, dtype=DTYPE)
            )[:, 0]
            for i in range(0, n_reference, 500_000)
        ]
        self.reference = np.sort(torch.cat(chunks).numpy())
        self.description = (
            f"random tanh MLP 4-{hidden}-{hidden}-1, l1; truth from {n_reference:,} reference draws"
        )

    def base_function(self, batch: torch.Tensor) -> torch.Tensor:
        h = batch
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i < len(self.layers) - 1:
                h = torch.tanh(h)
        return h

    def mass(self, z: np.ndarray, r: float, strict: bool = False) -> float:
        zf = float(np.ravel(z)[0])
        ref = self.reference
        if strict:
            count = np.searchsorted(ref, zf + r, "left") - np.searchsorted(ref, zf - r, "right")
        else:
            count = np.searchsorted(ref, zf + r, "right") - np.searchsorted(ref, zf - r, "left")
        return max(int(count), 0) / len(ref)


class RareModeProblem(Problem):
    """``f(x) = (c q1 . x, A 1[q2 . x > t])`` in R^2 with ``q1``, ``q2`` orthonormal, under the
    l2 distance: a Gaussian line near 0 and, with the small chance ``p_far``, a far copy of it
    at height ``A``. Built against ``n_certify="auto"``: the first rounds often draw no far
    output at all, so the distances look concentrated, while the certificate's highest level
    (``R_outer`` at ``eps_in = 2 sigma``, ``delta = 0.1``: 0.9879) lies just inside the far
    mode (``p_far = 0.0125``).

    The two coordinates are independent (orthogonal projections of the Gaussian noise):
    ``Y1 ~ N(c q1 . x, (c sigma)^2)`` and ``Y2 = A`` with probability ``p_far``, else 0, so the
    ball ``B(z, r)`` has mass ``(1 - p_far) P(|Y1 - z1|^2 <= r^2 - z2^2) +
    p_far P(|Y1 - z1|^2 <= r^2 - (A - z2)^2)``; ``Y1`` has no atoms, nor have the distances.
    """

    name = "rare-mode"
    metric = "l2"

    def __init__(
        self,
        dim: int = 4,
        scale: float = 1.0,
        height: float = 20.0,
        p_far: float = 0.0125,
        sigma: float = 0.5,
        seed: int = 5,
    ) -> None:
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, 2, generator=gen, dtype=DTYPE))
        self.q1, self.q2 = q[:, 0], q[:, 1]
        self.scale, self.height, self.p_far, self.sigma = scale, height, p_far, sigma
        self.t = 0.2
        # x: q1 . x = 0.3 and q2 . x - t = sigma Phi^-1(p_far), so P(Y2 = A) = p_far
        self.x = 0.3 * self.q1 + (self.t + sigma * float(stats.norm.ppf(p_far))) * self.q2
        self.mean = scale * 0.3
        self.description = (
            f"f(x) = ({scale} q1.x, {height} 1[q2.x > t]) in R^2, P(far) = {p_far}, l2: a rare "
            "far mode"
        )

    def base_function(self, batch: torch.Tensor) -> torch.Tensor:
        line = self.scale * batch @ self.q1
        far = self.height * (batch @ self.q2 > self.t).to(DTYPE)
        return torch.stack([line, far], dim=1)

    def _line_mass(self, z1: float, squared: float) -> float:
        """``P(|Y1 - z1|^2 <= squared)``."""
        if squared < 0:
            return 0.0
        w, s = math.sqrt(squared), self.scale * self.sigma
        return float(
            stats.norm.cdf((z1 + w - self.mean) / s) - stats.norm.cdf((z1 - w - self.mean) / s)
        )

    def mass(self, z: np.ndarray, r: float, strict: bool = False) -> float:
        z1, z2 = (float(v) for v in np.ravel(z))
        near = self._line_mass(z1, r * r - z2 * z2)
        far = self._line_mass(z1, r * r - (self.height - z2) ** 2)
        return (1.0 - self.p_far) * near + self.p_far * far


class SineProblem(Problem):
    """``f(u) = sin(pi u / w)`` coordinatewise in ``R^dim``, l2: outputs that a shift of the input
    by ``w`` in every coordinate negates.

    ``x' = x + w (1, ..., 1)``, at distance ``w sqrt(dim) = h sigma`` from ``x``, is half a period
    away in every coordinate, so a run at ``x'`` that reuses the noise of the run at ``x`` sees
    ``f(x' + sigma n) = -f(x + sigma n)``: its center samples are the reflection of ours. With
    ``sigma`` hundreds of periods wide, both output laws are close to independent arcsine
    coordinates. The center of a high-dimensional cloud (its mean) is nearer to its own samples
    than to fresh ones, and so farther from their reflections: balls around our center, measured
    on fresh samples, hold far fewer of the reflected ones than their mass promises. The true
    masses are not computed (``knows_mass = False``).
    """

    name = "sine"
    metric = "l2"
    knows_mass = False

    def __init__(self, dim: int = 2000, sigma: float = 0.5, h: float = 0.1, seed: int = 4) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.dim, self.sigma, self.h = dim, sigma, h
        self.w = h * sigma / math.sqrt(dim)
        self.x = sigma * torch.randn(dim, generator=gen, dtype=DTYPE)
        self.description = (
            f"f(u) = sin(pi u / w) in R^{dim}, w sqrt({dim}) = {h:g} sigma; x' = x + w (1, ..., 1) "
            "negates every output drawn with the same noise, l2"
        )

    def base_function(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.sin(batch * (math.pi / self.w))

    def adversarial_input(self, z: np.ndarray, eps_in: float) -> torch.Tensor | None:
        """``x + w (1, ..., 1)``, fixed in advance (it ignores ``z``); ``None`` when ``eps_in`` is
        smaller than its distance ``w sqrt(dim)`` from ``x``."""
        if eps_in < self.w * math.sqrt(self.dim) * (1.0 - 1e-9):
            return None
        return self.x + self.w


def snap_toward(x: torch.Tensor, target: torch.Tensor, grid: float, eps_in: float) -> torch.Tensor:
    """A grid point ``x'`` near ``target`` with ``||x' - x||_2 <= eps_in``, for ``x`` on the grid.

    In grid steps, ``v = (target - x) / grid`` is rounded coordinatewise to the nearest integer;
    while the result is longer than ``eps_in / grid``, the coordinate rounded farthest away from
    zero (beyond ``|v_i|``) is moved one step back towards zero. Rounding towards zero in every
    coordinate fits, so this ends; every coordinate keeps the sign of ``v`` (or is 0). The point
    is ``(k + v) grid`` computed in float64 as the smoothed function computes its inputs.
    """
    k = grid_noise.snap_to_grid(x, grid)
    real = ((target - x).to(torch.float64) / grid).reshape(-1)
    steps = torch.round(real)
    budget = (eps_in / grid) ** 2 * (1.0 + 1e-12)
    while float((steps**2).sum()) > budget:
        excess = steps.abs() - real.abs()  # > 0 where rounded away from zero
        i = int(torch.argmax(excess))
        if float(excess[i]) <= 0.0:
            steps = torch.trunc(real)  # cannot happen (rounding to nearest); a safe fallback
            break
        steps[i] -= torch.sign(steps[i])
    moved = k + steps.reshape(k.shape).to(torch.int64)
    return grid_noise.lattice_to_float(moved, grid, x.dtype)


class GridProblem(Problem):
    """A problem's base function with its input on the grid ``grid * Z^d`` and the exact lattice
    noise of ``CenterSmoothing(..., input_grid=grid)``: the noisy inputs are
    ``(k + m) grid``, ``m`` drawn from the library's noise table (:mod:`centersmooth.grid_noise`).

    The closed forms of the wrapped problem are for real Gaussian noise, so none is used: the
    truth is a brute-force reference of ``n_reference`` outputs at ``x`` under the same lattice
    noise (drawn from the table with a seed of its own), and ``mass(z, r)`` is the share of them
    within ``r`` of ``z`` (standard error at most ``0.5 / sqrt(n_reference)``). Ties are kept:
    ``quantile_left_mass`` reads ``F(q_p-)`` off the reference, atoms included (lattice outputs
    repeat). The worst mass over the ``eps_in`` ball and the smallest ball are not known.

    The adversarial ``x'`` is a step of length ``eps_in`` along the gradient of
    ``||f(x) - z||_2`` at ``x`` (for the linear map, the wrapped problem's direction), or the
    wrapped problem's where the base function has no gradient (the step function), put on the
    grid by :func:`snap_toward`.
    """

    def __init__(
        self, base: Problem, grid: float, n_reference: int = 1_000_000, seed: int = 0
    ) -> None:
        self.base, self.grid = base, float(grid)
        self.name, self.metric, self.sigma = base.name, base.metric, base.sigma
        self.knows_mass = True
        self.k = torch.round(base.x / self.grid).to(torch.int64)  # x moved to the nearest point
        self.x = grid_noise.lattice_to_float(self.k, self.grid, DTYPE)
        self.n_reference = n_reference
        table = grid_noise.noise_table(grid_noise.noise_scale(self.sigma, self.grid))
        rng = np.random.Generator(np.random.PCG64(10_007 + seed))
        chunks, chunk = [], 250_000
        for i in range(0, n_reference, chunk):
            m = torch.from_numpy(table.sample(rng, (min(chunk, n_reference - i), *self.k.shape)))
            noisy = grid_noise.lattice_to_float(self.k + m, self.grid, DTYPE)
            chunks.append(base.base_function(noisy))
        self.reference = torch.cat(chunks)
        self._metric = get_metric(self.metric)
        self._cached: tuple[bytes, np.ndarray] | None = None
        self.description = (
            f"{base.description.split(';')[0]}; x on the grid {self.grid:g} Z^d, lattice noise "
            f"(sigma / grid = {self.sigma / self.grid:g}), truth from {n_reference:,} "
            "reference draws"
        )

    def base_function(self, batch: torch.Tensor) -> torch.Tensor:
        return self.base.base_function(batch)

    def _distances(self, z: np.ndarray) -> np.ndarray:
        """Sorted distances from ``z`` to the reference outputs (the last ``z``'s are kept)."""
        key = np.asarray(z, dtype=np.float64).tobytes()
        if self._cached is None or self._cached[0] != key:
            zt = torch.as_tensor(np.asarray(z, dtype=np.float64)).reshape(
                1, *self.reference.shape[1:]
            )
            d = self._metric(zt.expand_as(self.reference), self.reference).numpy()
            self._cached = (key, np.sort(d))
        return self._cached[1]

    def mass(self, z: np.ndarray, r: float, strict: bool = False) -> float:
        d = self._distances(z)
        return int(np.searchsorted(d, r, "left" if strict else "right")) / len(d)

    def quantile_left_mass(self, z: np.ndarray, p: float) -> float:
        d = self._distances(z)
        n = len(d)
        index = min(max(math.ceil(p * n) - 1, 0), n - 1)  # the p-quantile is d[index]
        return int(np.searchsorted(d, d[index], "left")) / n

    def adversarial_input(self, z: np.ndarray, eps_in: float) -> torch.Tensor | None:
        x = self.x.clone().requires_grad_(True)
        out = self.base.base_function(x.unsqueeze(0))[0]
        target = None
        if out.requires_grad:  # a step along the gradient of ||f(x) - z||_2
            away = out.detach() - torch.as_tensor(np.asarray(z), dtype=DTYPE).reshape(out.shape)
            if float(away.norm()) == 0.0:
                away = torch.ones_like(away)
            (grad,) = torch.autograd.grad((out * away).sum(), x)
            if float(grad.norm()) > 0.0:
                target = self.x + eps_in * grad / grad.norm()
        if target is None:  # no gradient (a step function): the wrapped problem's direction
            base_target = self.base.adversarial_input(z, eps_in)
            if base_target is None:
                return None
            target = base_target - self.base.x + self.x
        return snap_toward(self.x, target.detach(), self.grid, eps_in)


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "linear": LinearProblem,
    "step": StepProblem,
    "clip": ClipProblem,
    "network": NetworkProblem,
    "sine": SineProblem,
    "nan-linear": NanProblem,
    "rare-mode": RareModeProblem,
}
