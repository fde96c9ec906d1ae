"""An empirical attack on the smoothed function: how close does a real adversary get to ``eps_out``?

The certificate says ``d(fhat(x), fhat(x')) <= eps_out`` for every ``||x' - x||_2 <= eps_in``
(with probability ``1 - alpha_center - alpha_certify``). The attack searches for the ``x'`` that
moves the smoothed output farthest:

1. Certify ``x`` (Algorithm 2): the center ``zhat = fhat(x)`` and ``eps_out``.
2. Projected gradient ascent, from ``x`` and from random points of the ball, on the Monte Carlo
   surrogate ``L(x') = mean_j d(f(x' + delta_j), zhat)`` with fresh noise ``delta_j`` at every step;
   normalised gradient steps, projection back onto the l2 ball of radius ``eps_in`` around ``x``.
3. The end point of each restart is scored on one shared set of noise draws (common random
   numbers, so restarts are compared fairly); the best is kept.
4. The smoothed function is evaluated at the best ``x'`` with the full procedure on fresh samples
   (``predict``, Algorithm 1), and the attacked distance ``d(zhat, fhat(x'))`` is reported with the
   ratio to ``eps_out``. Two baselines come with it: the distance between two independent smoothed
   outputs at ``x`` itself (the procedure's own noise) and the distance at a random point of the
   sphere ``||x' - x|| = eps_in``.

The gradient needs a differentiable torch base function and a distance that torch can
differentiate on tensor outputs (l2, l1, angular, TV, total variation, ...). A NumPy model, a model
returning Python objects (strings, sets) or a distance computed outside torch (edit distances)
cannot be attacked this way: :class:`AttackUnsupported` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..metrics import Metric
from ..sampling import HALF_DTYPES, make_generator
from ..smoothing import CenterSmoothing, Certificate


class AttackUnsupported(TypeError):
    """The base function or the distance cannot be differentiated with torch."""


@dataclass(frozen=True)
class AttackResult:
    """Outcome of one attack on the smoothed function at ``x``.

    ``attacked_distance`` is ``d(center, attacked_center)``, ``nan`` where the smoothed function
    abstained at ``x`` or at ``x_adv``; ``ratio`` is ``attacked_distance / eps_out``. The
    certificate is violated (an event of probability at most ``alpha_center + alpha_certify``) iff
    ``attacked_distance > eps_out``.
    """

    eps_in: float
    eps_out: float
    attacked_distance: float
    ratio: float
    abstained: bool  # the certificate at x abstained (nothing to attack)
    attacked_abstained: bool  # the smoothed function abstained at x_adv
    x_adv: torch.Tensor | None
    perturbation_norm: float  # ||x_adv - x||_2 <= eps_in
    surrogate_clean: float  # mean distance of f(x + delta) to the center, shared noise
    surrogate_attacked: float  # the same at x_adv
    noise_floor: float  # d(center, fhat(x)) with fresh samples at x itself
    random_distance: float  # d(center, fhat(x')) at a random x' with ||x' - x|| = eps_in
    center: Any
    attacked_center: Any
    steps: int
    restarts: int

    @property
    def violated(self) -> bool:
        return bool(self.attacked_distance > self.eps_out)


def attack(
    smoother: CenterSmoothing,
    x: Any,
    eps_in: float,
    *,
    certificate: Certificate | None = None,
    steps: int = 40,
    restarts: int = 3,
    n_noise: int = 64,
    n_score: int = 512,
    step_size: float | None = None,
    noise_floor: bool = True,
    random_baseline: bool = True,
    seed: int | None = None,
) -> AttackResult:
    """Attack the smoothed function ``smoother`` at ``x`` within the l2 ball of radius ``eps_in``.

    ``certificate`` is a certificate of ``x`` at ``eps_in`` (one is computed with ``seed`` if not
    given). ``steps`` gradient steps of length ``step_size`` (default ``2.5 eps_in / steps``) per
    restart, each on ``n_noise`` fresh noise draws; the first restart starts at ``x``, the others at
    random points of the ball; end points are compared on ``n_score`` shared draws. The smoothed
    outputs at ``x_adv`` and for the baselines use fresh samples (seeds derived from ``seed``);
    ``noise_floor`` and ``random_baseline`` switch the two baselines (one ``predict`` each).
    Raises :class:`AttackUnsupported` if the base function or distance is not differentiable.
    """
    eps_in = _check_args(eps_in, steps, restarts, n_noise, n_score, step_size)
    with smoother.base_function.evaluating():  # the model's train/eval flags come back after
        return _attack(
            smoother,
            x,
            eps_in,
            certificate,
            steps,
            restarts,
            n_noise,
            n_score,
            step_size,
            noise_floor,
            random_baseline,
            seed,
        )


def _attack(
    smoother: CenterSmoothing,
    x: Any,
    eps_in: float,
    certificate: Certificate | None,
    steps: int,
    restarts: int,
    n_noise: int,
    n_score: int,
    step_size: float | None,
    noise_floor: bool,
    random_baseline: bool,
    seed: int | None,
) -> AttackResult:
    """``attack``'s body, run with the model in eval mode."""
    base = smoother.base_function
    xt = _as_tensor(x, smoother.device, base.noise_dtype)
    metric = smoother.metric
    gen = make_generator(smoother.device, None if seed is None else seed + 1)
    # the function certified: a half-precision module's cast and the autocast included
    _Objective.check(base.forward, metric, xt, smoother.sigma, gen)
    if certificate is None:
        certificate = smoother.certify(x, eps_in, seed=seed)
    eps_out = _eps_out_for(certificate, eps_in)
    if certificate.abstained:
        return _abstained_result(eps_in, eps_out, steps, restarts)
    center = _as_tensor_output(certificate.center)
    objective = _Objective(base.forward, metric, center, smoother.sigma)

    score_noise = torch.randn((n_score, *xt.shape), generator=gen, device=xt.device, dtype=xt.dtype)
    clean_score = objective.score(xt, score_noise)
    size = 2.5 * eps_in / steps if step_size is None else float(step_size)
    best, best_score = xt.clone(), clean_score
    for restart in range(restarts):
        start = xt.clone() if restart == 0 else xt + _random_in_ball(xt, eps_in, gen)
        end = _ascend(objective, xt, start, eps_in, size, steps, n_noise, gen)
        score = objective.score(end, score_noise)
        if score > best_score:
            best, best_score = end, score

    eval_seed = None if seed is None else seed + 2
    attacked = smoother.predict(best, seed=eval_seed)
    distance = math.nan
    if not attacked.abstained:
        distance = _distance(metric, center, _as_tensor_output(attacked.center))
    floor = random_distance = math.nan
    if noise_floor:
        again = smoother.predict(xt, seed=None if seed is None else seed + 3)
        if not again.abstained:
            floor = _distance(metric, center, _as_tensor_output(again.center))
    if random_baseline:
        x_rand = xt + eps_in * _unit(
            torch.randn(xt.shape, generator=gen, device=xt.device, dtype=xt.dtype)
        )
        rand = smoother.predict(x_rand, seed=None if seed is None else seed + 4)
        if not rand.abstained:
            random_distance = _distance(metric, center, _as_tensor_output(rand.center))
    ratio = distance / eps_out if math.isfinite(eps_out) and eps_out > 0 else math.nan
    if eps_out == 0.0 and distance == 0.0:
        ratio = 0.0
    return AttackResult(
        eps_in=eps_in,
        eps_out=eps_out,
        attacked_distance=distance,
        ratio=ratio,
        abstained=False,
        attacked_abstained=attacked.abstained,
        x_adv=best,
        perturbation_norm=float((best - xt).norm()),
        surrogate_clean=clean_score,
        surrogate_attacked=best_score,
        noise_floor=floor,
        random_distance=random_distance,
        center=certificate.center,
        attacked_center=attacked.center,
        steps=steps,
        restarts=restarts,
    )


class _Objective:
    """``mean_j d(f(x' + sigma n_j), center)`` as a differentiable function of ``x'``."""

    def __init__(self, fn: Any, metric: Metric, center: torch.Tensor, sigma: float) -> None:
        self.fn, self.metric, self.center, self.sigma = fn, metric, center, sigma

    def value(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.fn(x.unsqueeze(0) + self.sigma * noise)
        if not isinstance(out, torch.Tensor):
            raise AttackUnsupported(
                "the attack needs a base function that maps a torch batch to a torch tensor; got "
                f"{type(out).__name__} (NumPy models and models returning Python objects cannot be "
                "differentiated)"
            )
        if out.dtype in HALF_DTYPES:  # as the certified function's outputs: compared in float32
            out = out.float()
        ref = self.center.to(out.device).unsqueeze(0).expand(out.shape[0], *self.center.shape)
        d = self.metric(out, ref.to(out.dtype))
        if not isinstance(d, torch.Tensor):
            raise AttackUnsupported(
                f"the attack needs a distance computed in torch; {self.metric.name!r} returned "
                f"{type(d).__name__}"
            )
        return d.mean()

    @staticmethod
    def check(fn: Any, metric: Metric, x: torch.Tensor, sigma: float, gen: torch.Generator) -> None:
        """Fail early, with a clear message, if no gradient reaches ``x`` (before any sampling).

        The probe measures distances to the noiseless output ``f(x)``, a valid output.
        """
        probe = x.clone().requires_grad_(True)
        noise = torch.randn((2, *x.shape), generator=gen, device=x.device, dtype=x.dtype)
        try:
            with torch.no_grad():
                reference = fn(x.unsqueeze(0))
            if not isinstance(reference, torch.Tensor):
                raise AttackUnsupported(
                    "the attack needs a base function that maps a torch batch to a torch tensor; "
                    f"got {type(reference).__name__} (NumPy models and models returning Python "
                    "objects cannot be differentiated)"
                )
            with torch.enable_grad():
                loss = _Objective(fn, metric, reference[0], sigma).value(probe, noise)
        except AttackUnsupported:
            raise
        except Exception as err:  # a NumPy-only model fails on tensors, a string metric too
            raise AttackUnsupported(
                "the attack needs a base function and distance that accept torch tensors and can "
                f"be differentiated; evaluating them on a torch batch failed: {err}"
            ) from err
        if not loss.requires_grad:
            raise AttackUnsupported(
                f"no gradient flows from the distance {metric.name!r} back to the input: the "
                "attack needs a differentiable torch base function and distance (a step function, "
                "a detached model or a distance on discrete outputs cannot be attacked)"
            )

    def gradient(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        probe = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            loss = self.value(probe, noise)
            if not loss.requires_grad:
                return torch.zeros_like(x)
            (grad,) = torch.autograd.grad(loss, probe)
        return grad

    def score(self, x: torch.Tensor, noise: torch.Tensor, chunk: int = 256) -> float:
        with torch.no_grad():
            total = 0.0
            for start in range(0, noise.shape[0], chunk):
                part = noise[start : start + chunk]
                total += float(self.value(x, part)) * part.shape[0]
        return total / noise.shape[0]


def _ascend(
    objective: _Objective,
    x: torch.Tensor,
    start: torch.Tensor,
    eps_in: float,
    size: float,
    steps: int,
    n_noise: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """Normalised projected gradient ascent from ``start`` inside ``B(x, eps_in)``."""
    current = _project(x, start, eps_in)
    for _ in range(steps):
        noise = torch.randn((n_noise, *x.shape), generator=gen, device=x.device, dtype=x.dtype)
        grad = objective.gradient(current, noise)
        norm = float(grad.norm())
        if not math.isfinite(norm) or norm == 0.0:
            break
        current = _project(x, current + size * grad / norm, eps_in)
    return current.detach()


def _project(x: torch.Tensor, point: torch.Tensor, eps_in: float) -> torch.Tensor:
    """The closest point to ``point`` in the l2 ball ``B(x, eps_in)``."""
    diff = point - x
    norm = float(diff.norm())
    if norm > eps_in:
        diff = diff * (eps_in / norm)
    return x + diff


def _unit(v: torch.Tensor) -> torch.Tensor:
    norm = float(v.norm())
    return v / norm if norm > 0 else v


def _random_in_ball(x: torch.Tensor, eps_in: float, gen: torch.Generator) -> torch.Tensor:
    """A uniform point of the l2 ball of radius ``eps_in`` (offset from the center)."""
    direction = _unit(torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype))
    u = float(torch.rand((), generator=gen, device=x.device, dtype=torch.float64))
    return direction * eps_in * u ** (1.0 / max(x.numel(), 1))


def _distance(metric: Metric, a: torch.Tensor, b: torch.Tensor) -> float:
    b = b.to(a.device)
    return float(metric(a.unsqueeze(0), b.unsqueeze(0).to(a.dtype))[0])


def _eps_out_for(certificate: Certificate, eps_in: float) -> float:
    """The certificate's ``eps_out`` at ``eps_in`` (it may hold several radii)."""
    radii = np.atleast_1d(np.asarray(certificate.eps_in, dtype=float))
    match = np.flatnonzero(np.isclose(radii, eps_in, rtol=1e-12, atol=0.0))
    if match.size == 0:
        raise ValueError(
            f"the certificate was computed for eps_in={radii.tolist()}, not for eps_in={eps_in}"
        )
    return float(np.atleast_1d(np.asarray(certificate.eps_out, dtype=float))[match[0]])


def _as_tensor(x: Any, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` on ``device`` in ``dtype`` (a module's noise type, as ``certify`` prepares it)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.asarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor or a NumPy array, got {type(x).__name__}")
    if dtype is not None:
        x = x.to(dtype)
    elif not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")
    return x.detach().to(device)


def _as_tensor_output(center: Any) -> torch.Tensor:
    if isinstance(center, torch.Tensor):
        return center.detach()
    if isinstance(center, np.ndarray) and center.dtype != object:
        return torch.from_numpy(center)
    raise AttackUnsupported(
        f"the attack needs tensor outputs; the smoothed output is a {type(center).__name__}"
    )


def _check_args(
    eps_in: float, steps: int, restarts: int, n_noise: int, n_score: int, step_size: float | None
) -> float:
    if isinstance(eps_in, bool) or not isinstance(eps_in, int | float | np.floating | np.integer):
        raise TypeError(f"eps_in must be one number, got {eps_in!r}")
    if not (math.isfinite(eps_in) and eps_in >= 0):
        raise ValueError(f"eps_in must be finite and non-negative, got {eps_in!r}")
    for name, value in (
        ("steps", steps),
        ("restarts", restarts),
        ("n_noise", n_noise),
        ("n_score", n_score),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if step_size is not None and not (math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}")
    return float(eps_in)


def _abstained_result(eps_in: float, eps_out: float, steps: int, restarts: int) -> AttackResult:
    nan = math.nan
    return AttackResult(
        eps_in=eps_in,
        eps_out=eps_out,
        attacked_distance=nan,
        ratio=nan,
        abstained=True,
        attacked_abstained=False,
        x_adv=None,
        perturbation_norm=nan,
        surrogate_clean=nan,
        surrogate_attacked=nan,
        noise_floor=nan,
        random_distance=nan,
        center=None,
        attacked_center=None,
        steps=steps,
        restarts=restarts,
    )
