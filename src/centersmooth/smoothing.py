"""Center smoothing: ``predict`` is Algorithm 1 ("Smooth"), ``certify`` is Algorithm 2 ("Certify").

Kumar and Goldstein, "Center Smoothing: Certified Robustness for Networks with Structured Outputs",
NeurIPS 2021, with the tighter binomial bounds, central candidates and nearest-candidate bound of
docs/algorithm.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from . import bounds, grid_noise
from .center import Center, batch_len, distances_to, find_center
from .metrics import Metric, available_metrics, get_metric
from .metrics.base import Outputs, is_real
from .metrics.checks import check_distance, needs_check
from .sampling import (
    DEFAULT_BATCH_SIZE,
    NOISE_BLOCK,
    BaseFunction,
    NoiseStream,
    OutputMonitor,
    derive_seed,
    draw_noisy,
    find_batch_size,
    resolve_device,
)

EpsIn = float | Sequence[float] | np.ndarray


class QuantileLevels(NamedTuple):
    """Quantile levels per ``eps_in`` of the certificate's order statistics (``near`` is
    ``None`` in the paper's bound)."""

    outer: np.ndarray
    inner: np.ndarray
    near: np.ndarray | None


class QuantileRanks(NamedTuple):
    """1-indexed ranks per ``eps_in`` of the same order statistics."""

    outer: list[int]
    inner: list[int]
    near: list[int] | None


# The paper's constants (its Section 6 experiments), for CenterSmoothing.paper and --preset paper.
PAPER_SETTINGS: dict[str, Any] = {
    "n_center": 10_000,
    "n_check": 10_000,
    "n_certify": 1_000_000,
    "alpha_center": 0.005,
    "alpha_certify": 0.005,
    "delta": 0.05,
    "bound": "hoeffding",
    "central_candidates": False,
    "nearest_candidate": False,
}


@dataclass(frozen=True)
class Prediction:
    """Output of the smoothed function at one input.

    ``center`` is ``None`` and ``radius`` is ``inf`` when the procedure abstains. Otherwise, with
    probability at least ``1 - alpha_center``, the ball ``B(center, radius)`` holds at least
    ``1/2 - delta`` (``ball_mass - delta``) of the base function's output mass under the
    smoothing noise.
    """

    center: Any
    radius: float
    abstained: bool
    delta1: float  # margin of the optimal ball (mass ball_mass + delta1) from the center samples
    p_low: float  # lower confidence bound on the mass of B(center, radius) from the check samples
    n_center: int
    n_check: int
    check_level: float  # p_low must exceed it strictly: ball_mass - delta
    delta: float  # delta1 must not exceed it

    @property
    def abstain_reason(self) -> str | None:
        """Why the procedure abstained, with the numbers of the test that failed (``None`` when
        it did not)."""
        if not self.abstained:
            return None
        if self.delta1 > self.delta:
            return (
                f"Delta1={self.delta1:.4g} exceeds delta={self.delta:.4g}: more center samples "
                "(n_center) or a larger delta"
            )
        return (
            f"the check bounded the mass of the center's ball below by p_low={self.p_low:.4g}, "
            f"which must exceed ball_mass - delta={self.check_level:.4g}: the outputs under this "
            "noise are too spread out; a smaller sigma, more check samples (n_check) or a larger "
            "delta"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types (lists for arrays and tensors), ``abstain_reason`` included."""
        record = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        record["abstain_reason"] = self.abstain_reason
        return record

    def to_json(self) -> str:
        """Strict JSON (non-finite numbers as ``null``)."""
        return _json(self.to_dict())


@dataclass(frozen=True)
class Certificate:
    """A robustness certificate for one input.

    For each ``eps_in`` and each ``x'`` with ``||x' - x||_2 <= eps_in`` on its own: with
    probability at least ``1 - alpha_center - alpha_certify`` (over this certification and the
    smoothed function's run at ``x'``), either that run abstains or
    ``d(center(x), center(x')) <= eps_out``. This holds for either bound whether that run draws
    fresh noise, uses another seed or reuses this certification's seed, as long as ``x'`` is not
    chosen from the noise of that run; it assumes real-valued Gaussian noise (docs/algorithm.md,
    "What the guarantee assumes").
    ``eps_out`` is ``inf`` where the procedure abstained or where ``eps_in`` exceeds
    ``max_eps_in``. Scalar fields when ``eps_in`` was a number, arrays aligned with it when it was
    a sequence.
    """

    eps_in: float | np.ndarray
    eps_out: float | np.ndarray
    abstained: bool
    center: Any
    radius: float  # radius of the center's ball (from predict): median distance at ball_mass 1/2
    # R_outer (the paper's R-hat): upper bound on the p(eps_in)-quantile distance
    quantile_radius: float | np.ndarray
    # R_inner: the ball of mass ball_mass + delta1 at x' (equal to quantile_radius in the
    # paper's bound at ball_mass 1/2)
    inner_radius: float | np.ndarray
    # R_near: the ball in which a sample candidate lands at x' (inf without nearest_candidate)
    near_radius: float | np.ndarray
    smoothing_error: float | None  # d(center, f(x)); None when abstained
    max_eps_in: float  # largest eps_in these sample counts can certify
    prediction: Prediction
    # True where eps_out is finite but at or above output_diameter: the certificate says nothing
    vacuous: bool | np.ndarray = False
    # the largest distance two outputs can have, where the distance knows it or the outputs show
    # it (None: unbounded or unknown)
    output_diameter: float | None = None

    @property
    def abstain_reason(self) -> str | None:
        """Why the procedure abstained (see :attr:`Prediction.abstain_reason`)."""
        return self.prediction.abstain_reason

    @property
    def certified(self) -> bool | np.ndarray:
        """Where the certificate says something: a finite ``eps_out`` that is not vacuous."""
        finite = np.isfinite(np.asarray(self.eps_out, dtype=float)) & ~np.asarray(self.vacuous)
        return bool(finite) if finite.ndim == 0 else finite

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types (lists for arrays and tensors), the prediction as a nested dict."""
        record = {
            f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "prediction"
        }
        record["abstain_reason"] = self.abstain_reason
        record["prediction"] = self.prediction.to_dict()
        return record

    def to_json(self) -> str:
        """Strict JSON (non-finite numbers as ``null``)."""
        return _json(self.to_dict())


class CenterSmoothing:
    """Wrap a base function ``f`` with center smoothing under a distance on its outputs.

    ``f`` maps a batch of inputs to a batch of outputs (tensor, NumPy array or list of objects).
    Noise ``N(0, sigma^2 I)`` is added to the input as given. docs/algorithm.md gives the
    meaning of every argument. Beyond it: ``batch_size=None`` picks the batch size (the largest
    that fits on a CUDA device, found once; 1,000 on the CPU); ``progress`` shows progress bars
    over the forward passes (with their distances) and the center search; ``autocast`` ("bf16" /
    "fp16") and ``compile`` speed up a torch model (the certificate then holds for the
    low-precision / compiled model actually evaluated).
    ``nearest_candidate`` (on by default, off in the paper preset) certifies through the sample
    candidate nearest to the center: ``eps_out = gamma (R_outer + gamma (R_near + R_inner))``
    instead of the paper's ``gamma (1 + 2 gamma) R-hat``, with the same confidence and under the
    same assumptions, whatever seeds the runs at ``x`` and ``x'`` use, the same seed included
    (docs/algorithm.md, "The nearest-candidate bound"). ``ball_mass`` (1/2, the paper's)
    is the share of the output mass the smoothed output's ball holds; a smaller one (down to just
    above ``delta``) moves ``R_outer`` and ``R_inner`` to other levels.
    ``candidates`` may also map distance names to counts (``{"tv2": 30}``): candidate mode for
    the distances without a fast pairwise form, all pairs for the others, in one
    ``certify_metrics`` call that shares the forward passes.
    ``check_metric`` (on by default) tests a distance that is not built in (a callable, a
    ``FunctionMetric`` or a ``Metric`` subclass of yours) on every call: its declared ``gamma``
    against the relaxed triangle inequality on triples of center samples, the center and the
    central candidates, its symmetry and ``d(a, a) = 0``. A refutation raises
    ``DistanceCheckError`` before any certificate is returned. The test can refute a constant,
    never prove one; turn it off only for a distance whose constant you have proven.
    ``input_grid`` (off by default; e.g. ``1/255`` for 8-bit images) certifies inputs on the grid
    ``input_grid * Z^d`` against perturbations on the same grid, in floating point: inputs must
    lie on the grid (within 1e-6 grid steps, or the rounding of their float type), and every
    noisy input is ``(k + m) * input_grid`` for integers ``k`` (the input) and ``m`` (noise drawn
    exactly from a rounded Gaussian of standard deviation ``sigma / input_grid`` steps), so the
    certificate holds for the function actually evaluated, whatever it does with the low-order
    bits of its input (docs/algorithm.md, "Inputs on a grid: exact noise (`input_grid`)").
    """

    def __init__(
        self,
        base_function: Callable[..., Any],
        metric: str | Metric | Callable[..., Any] = "l2",
        sigma: float = 0.25,
        n_center: int = 10_000,
        n_check: int = 10_000,
        n_certify: int = 100_000,
        alpha_center: float = 0.005,
        alpha_certify: float = 0.005,
        delta: float = 0.05,
        bound: str = "binomial",
        candidates: int | Mapping[str, int] | None = None,
        central_candidates: bool = True,
        batch_size: int | None = 1_000,
        device: str | torch.device | None = None,
        seed: int | None = None,
        progress: bool = False,
        autocast: str | None = None,
        compile: bool | str = False,
        ball_mass: float = 0.5,
        nearest_candidate: bool = True,
        check_metric: bool = True,
        input_grid: float | None = None,
    ) -> None:
        _check_positive_real("sigma", sigma)
        if input_grid is not None:
            _check_positive_real("input_grid", input_grid)
            grid_noise.noise_table(float(sigma) / float(input_grid))  # refuses a bad ratio
        for name, value in (
            ("n_center", n_center),
            ("n_check", n_check),
            ("n_certify", n_certify),
            ("batch_size", 1 if batch_size is None else batch_size),
        ):
            _check_positive_int(name, value)
        for level_name, level in (("alpha_center", alpha_center), ("alpha_certify", alpha_certify)):
            if not (is_real(level) and 0.0 < level < 1.0):
                raise ValueError(f"{level_name} must lie in (0, 1), got {level!r}")
        if alpha_center + alpha_certify >= 1.0:
            raise ValueError(
                f"alpha_center + alpha_certify must be below 1, got {alpha_center + alpha_certify}"
            )
        if not (is_real(delta) and 0.0 < delta < 0.5):
            raise ValueError(f"delta must lie in (0, 0.5), got {delta!r}")
        if not (is_real(ball_mass) and delta < ball_mass <= 0.5):
            raise ValueError(
                f"ball_mass must lie in (delta, 1/2] = ({delta}, 0.5], got {ball_mass!r}: the "
                "checked ball must keep a positive mass ball_mass - delta"
            )
        self.bound = bounds.check_bound(bound)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
            raise TypeError(f"seed must be an integer or None, got {seed!r}")

        self.metric = get_metric(metric)
        self.sigma = float(sigma)
        self.n_center, self.n_check, self.n_certify = int(n_center), int(n_check), int(n_certify)
        self.alpha_center, self.alpha_certify = float(alpha_center), float(alpha_certify)
        self.delta = float(delta)
        self.ball_mass = float(ball_mass)
        self.candidates = _check_candidates(candidates, int(n_center))
        self.central_candidates = bool(central_candidates)
        self.batch_size = None if batch_size is None else int(batch_size)
        self._auto_batch_size: int | None = None
        self.seed = None if seed is None else int(seed)
        self.progress = progress
        self.device = resolve_device(device, base_function)
        self.base_function = BaseFunction(base_function, self.device, autocast, compile)
        self.nearest_candidate = bool(nearest_candidate)
        self.check_metric = bool(check_metric)
        self.input_grid = None if input_grid is None else float(input_grid)

        self.alpha_delta1, self.alpha_nearest, self.alpha_check = bounds.split_center_alpha(
            self.n_center,
            self.alpha_center,
            self._fewest_candidates(),
            self.bound,
            self.ball_mass,
            self.nearest_candidate,
        )
        self.delta1 = bounds.delta1(self.n_center, self.alpha_delta1, self.bound, self.ball_mass)
        # the order statistics share alpha_certify: R_outer, R_inner and R_near with the
        # nearest-candidate bound; else one (ball_mass 1/2, the paper's) or two
        statistics = 3 if self.nearest_candidate else 1 if self.ball_mass == 0.5 else 2
        self.alpha_quantile = self.alpha_certify / statistics
        self._check_sample_counts()
        self.max_eps_in = self.max_eps_in_for(self.n_certify)

    @classmethod
    def paper(
        cls,
        base_function: Callable[..., Any],
        metric: str | Metric | Callable[..., Any] = "l2",
        sigma: float = 0.25,
        **overrides: Any,
    ) -> CenterSmoothing:
        """The paper's constants (its experiments): 10^4 / 10^4 / 10^6 samples,
        alphas 0.005, delta 0.05, Hoeffding bounds, centers among the samples only."""
        settings = dict(PAPER_SETTINGS)
        settings.update(overrides)
        return cls(base_function, metric=metric, sigma=sigma, **settings)

    def candidates_for(self, metric: Metric) -> int | None:
        """How many samples the center search scores for ``metric`` (``None``: all of them)."""
        if isinstance(self.candidates, dict):
            return self.candidates.get(metric.name)
        return self.candidates

    def _check_candidate_names(self, metrics: list[Metric]) -> None:
        """Refuse per-distance candidate counts for names that are neither in use nor registered
        (a misspelt name would silently mean an all-pairs search)."""
        if isinstance(self.candidates, dict):
            in_use = [m.name for m in metrics]
            unknown = sorted(set(self.candidates) - set(in_use) - set(available_metrics()))
            if unknown:
                raise ValueError(
                    f"candidates names unknown distances {unknown}; in use: {in_use}, "
                    f"registered: {', '.join(available_metrics())}"
                )

    def _fewest_candidates(self) -> int | None:
        """The candidate count whose miss probability ``alpha_center`` pays for: the smallest in
        use, which covers every distance (all-pairs ones then pay a negligible extra)."""
        if isinstance(self.candidates, dict):
            return min(self.candidates.values())
        return self.candidates

    # ----------------------------------------------------------------------------- Algorithm 1
    def predict(self, x: Any, seed: int | None = None) -> Prediction:
        """Smoothed output at ``x`` (one input, no batch dimension): Algorithm 1.

        With probability at least ``1 - alpha_center`` a non-abstaining prediction's ball
        ``B(center, radius)`` holds at least ``1/2 - delta`` of the output mass, and ``radius`` is
        within ``2 gamma`` of the smallest radius of a ball holding ``1/2 + delta1`` of it (with
        ``ball_mass``: ``ball_mass - delta`` and ``ball_mass + delta1``).
        ``seed`` overrides the constructor's seed for this call.
        """
        inputs = _Inputs.build(self, [x], None if seed is None else [seed])
        with self.base_function.evaluating():  # a module's train/eval flags come back after
            pred = self._predict(inputs, [self.metric])[0][0][0]
        return replace(pred, center=inputs.returned(pred.center))

    def _predict(
        self, inputs: _Inputs, metrics: list[Metric]
    ) -> tuple[list[list[Prediction]], list[dict[str, float | None]]]:
        """Algorithm 1 for every input and metric, on one shared pair of sample sets per input
        (center, then check), indexed ``[input][metric]``, and the output diameter per input and
        distance name (see ``Metric.diameter``).

        A distance that is not built in is first checked on the center samples, its center and
        central candidates (``check_distance``): a refuted ``gamma`` stops here, before any
        certificate exists."""
        self._check_candidate_names(metrics)
        collected = [_Collector(self.n_center) for _ in inputs.xs]
        for outputs in self._stream(inputs, self.n_center, "center", OutputMonitor(self.device)):
            for collector, out in zip(collected, outputs, strict=True):
                collector.add(out)
        centers, diameters = [], []
        for collector in collected:
            samples = collector.take()
            row, central, diameter = [], {}, {}
            for metric in metrics:
                extra = None
                if self.central_candidates:
                    key = metric.central_key or id(metric)
                    if key not in central:
                        central[key] = metric.central_candidates(samples)
                    extra = central[key]
                k = self.candidates_for(metric)
                center = find_center(samples, metric, k, extra, self.ball_mass, self.progress)
                if self.check_metric and needs_check(metric):
                    points = [center.point]
                    if extra is not None:
                        points += [extra[e] for e in range(batch_len(extra))]
                    check_distance(metric, samples, points)
                row.append(center)
                diameter[metric.name] = metric.diameter(samples)
            del central
            centers.append(row)
            diameters.append(diameter)
            del samples
        hits = torch.zeros(len(inputs.xs), len(metrics), dtype=torch.int64, device=self.device)
        monitor = OutputMonitor(self.device)
        for outputs in self._stream(inputs, self.n_check, "check", monitor):
            for i, out in enumerate(outputs):
                for j, (metric, center) in enumerate(zip(metrics, centers[i], strict=True)):
                    d = monitor.distances(distances_to(metric, center.point, out, check=False))
                    hits[i, j] += (d <= center.radius).sum().to(self.device)
        predictions = []
        for row, counts in zip(centers, hits.tolist(), strict=True):
            predictions.append(
                [self._decide(c, count) for c, count in zip(row, counts, strict=True)]
            )
        return predictions, diameters

    def _decide(self, center: Center, count: int) -> Prediction:
        """Accept iff ``Delta1 <= delta`` and ``p_low > ball_mass - delta`` (else abstain; the
        paper's ``>=`` could leave the proof's two balls with masses summing to exactly 1)."""
        p_low = bounds.mass_lower_bound(count, self.n_check, self.alpha_check, self.bound)
        level = bounds.check_level(self.ball_mass, self.delta)
        accepted = self.delta1 <= self.delta and p_low > level
        return Prediction(
            center=center.point if accepted else None,
            radius=center.radius if accepted else math.inf,
            abstained=not accepted,
            delta1=self.delta1,
            p_low=p_low,
            n_center=self.n_center,
            n_check=self.n_check,
            check_level=level,
            delta=self.delta,
        )

    # ----------------------------------------------------------------------------- Algorithm 2
    def certify(self, x: Any, eps_in: EpsIn, seed: int | None = None) -> Certificate:
        """Certificate at ``x`` for one radius ``eps_in`` or several: Algorithm 2.

        Draws the center and check samples (``predict``), then ``n_certify`` fresh samples whose
        distances to the center give upper confidence bounds on quantiles, ``h = eps_in / sigma``
        (docs/algorithm.md):

        * nearest-candidate bound (default): ``R_outer`` at
          ``Phi(Phi^-1(1 - ball_mass + delta) + h)``, ``R_inner`` at
          ``Phi(Phi^-1(ball_mass + delta1) + h)`` and ``R_near`` at
          ``Phi(Phi^-1(nearest_mass) + h)``, each at ``alpha_certify / 3``, and
          ``eps_out = gamma (R_outer + gamma (R_near + R_inner))``;
        * the paper's: ``R-hat`` at ``Phi(Phi^-1(1/2 + delta) + h)`` (level ``alpha_certify``) and
          ``eps_out = gamma (1 + 2 gamma) R-hat``; with ``ball_mass < 1/2`` ``R_outer`` and
          ``R_inner`` at ``alpha_certify / 2`` each and ``gamma (R_outer + 2 gamma R_inner)``.

        Several ``eps_in`` share one sample set; each certificate holds at its own confidence.
        """
        return self.certify_metrics(x, eps_in, [self.metric], seed)[self.metric.name]

    def certify_metrics(
        self,
        x: Any,
        eps_in: EpsIn,
        metrics: Sequence[str | Metric | Callable[..., Any]],
        seed: int | None = None,
    ) -> dict[str, Certificate]:
        """Certificates for several distances from one set of forward passes, keyed by name.

        Each distance gets its own center and its own certificate; all share the three sample
        sets, which stay independent of each other, so each certificate keeps its guarantee.
        """
        seeds = None if seed is None else [seed]
        return self.certify_metrics_batch([x], eps_in, metrics, seeds)[0]

    def certify_batch(
        self, xs: Sequence[Any], eps_in: EpsIn, seeds: Sequence[int] | None = None
    ) -> list[Certificate]:
        """``certify`` for several inputs of one shape, their samples sharing forward passes.

        Each input has its own noise generator (``seeds[i]``, or one derived from the
        constructor's seed and ``i``) and its own three sample sets, so each certificate carries
        exactly the guarantee of ``certify``; batching only packs the samples of several inputs
        into each call of the base function, which pays off for small models.
        """
        certs = self.certify_metrics_batch(xs, eps_in, [self.metric], seeds)
        return [c[self.metric.name] for c in certs]

    def certify_metrics_batch(
        self,
        xs: Sequence[Any],
        eps_in: EpsIn,
        metrics: Sequence[str | Metric | Callable[..., Any]],
        seeds: Sequence[int] | None = None,
    ) -> list[dict[str, Certificate]]:
        """``certify_metrics`` for several inputs at once (see ``certify_batch``)."""
        resolved = [get_metric(m) for m in metrics]
        names = [m.name for m in resolved]
        if not resolved or len(set(names)) != len(names):
            raise ValueError(f"metrics must be a non-empty list of distinct distances, got {names}")
        eps = _check_eps_in(eps_in)
        scalar = np.ndim(eps_in) == 0
        inputs = _Inputs.build(self, xs, seeds)
        with self.base_function.evaluating():  # a module's train/eval flags come back after
            preds, diameters = self._predict(inputs, resolved)
            radii = self._certify_distances(inputs, resolved, preds)
            # one clean pass per input: f(x) must not depend on which inputs share a batch
            clean = [self.base_function(x.unsqueeze(0), inputs.np_dtype) for x in inputs.xs]
        dim = inputs.xs[0].numel()
        ranks = {metric.name: self.quantile_ranks(eps, metric, dim) for metric in resolved}

        def shaped(values: np.ndarray) -> float | np.ndarray:
            return float(values[0]) if scalar else values

        results = []
        for i, row in enumerate(preds):
            certs = {}
            for j, (metric, pred) in enumerate(zip(resolved, row, strict=True)):
                eps_out = np.full(eps.shape, math.inf)
                # R_outer, R_inner, R_near per eps_in
                found = {name: np.full(eps.shape, math.inf) for name in QuantileRanks._fields}
                smoothing_error = None
                if not pred.abstained:
                    for e in range(eps.shape[0]):
                        picked = {
                            name: int(at[e])
                            for name, at in ranks[metric.name]._asdict().items()
                            if at is not None
                        }
                        if max(picked.values()) <= self.n_certify:
                            for name, k in picked.items():
                                found[name][e] = float(radii[i][j][k - 1])
                            at_e = {name: radius[e] for name, radius in found.items()}
                            eps_out[e] = _eps_out(metric, **at_e)
                    smoothing_error = float(distances_to(metric, pred.center, clean[i])[0])
                diameter = diameters[i][metric.name]
                vacuous = np.isfinite(eps_out) & (
                    eps_out >= (math.inf if diameter is None else diameter)
                )
                center = inputs.returned(pred.center)
                certs[metric.name] = Certificate(
                    eps_in=shaped(eps),
                    eps_out=shaped(eps_out),
                    abstained=pred.abstained,
                    center=center,
                    radius=pred.radius,
                    quantile_radius=shaped(found["outer"]),
                    inner_radius=shaped(found["inner"]),
                    near_radius=shaped(found["near"]),
                    smoothing_error=smoothing_error,
                    max_eps_in=self.max_eps_in,
                    prediction=replace(pred, center=center),
                    vacuous=bool(vacuous[0]) if scalar else vacuous,
                    output_diameter=diameter,
                )
            results.append(certs)
        return results

    def grid_slack(self, dim: int | None = None) -> float:
        """With ``input_grid``, the total variation between the noise of an input of ``dim``
        coordinates and the rounded Gaussian the shift bound is proved for (0 without it; a
        bound for 2**31 coordinates when ``dim`` is ``None``)."""
        if self.input_grid is None:
            return 0.0
        return grid_noise.grid_slack(self.sigma / self.input_grid, dim)

    def quantile_levels(
        self, eps: np.ndarray, metric: Metric | None = None, dim: int | None = None
    ) -> QuantileLevels:
        """Quantile levels of ``R_outer``, ``R_inner`` and ``R_near`` per ``eps_in`` for
        ``metric`` (the smoother's by default; its candidate count sets ``R_near``'s level).

        In the paper's bound (``nearest_candidate=False``) there is no ``R_near``, and at
        ``ball_mass = 1/2`` one order statistic serves ``R_outer`` and ``R_inner``. With
        ``input_grid``, ``dim`` (the input's number of coordinates) sets ``grid_slack``.
        """
        slack = self.grid_slack(dim)
        outer = bounds.certified_mass(eps, self.sigma, self.delta, self.ball_mass, slack)
        if not self.nearest_candidate and self.ball_mass == 0.5:
            return QuantileLevels(outer, outer, None)
        inner = bounds.shifted_mass(self.ball_mass + self.delta1, eps, self.sigma, slack)
        if not self.nearest_candidate:
            return QuantileLevels(outer, inner, None)
        q_near = self.nearest_mass(metric or self.metric)
        near = bounds.shifted_mass(q_near, eps, self.sigma, slack)
        return QuantileLevels(outer, inner, near)

    def nearest_mass(self, metric: Metric) -> float:
        """Mass at ``x'`` of a ball around the center that one of ``metric``'s sample candidates
        (all ``n_center`` samples, or the first ``candidates``) enters except with probability
        ``alpha_nearest``."""
        k = self.candidates_for(metric) or self.n_center
        return bounds.nearest_mass(self.alpha_nearest, k)

    def quantile_ranks(
        self, eps: np.ndarray, metric: Metric | None = None, dim: int | None = None
    ) -> QuantileRanks:
        """1-indexed ranks of ``R_outer``, ``R_inner`` and ``R_near`` among the ``n_certify``
        distances (``n_certify + 1``: that level cannot be bounded with these samples)."""

        def ranks(levels: np.ndarray) -> list[int]:
            return [
                bounds.quantile_rank(float(p), self.n_certify, self.alpha_quantile, self.bound)
                for p in levels
            ]

        levels = self.quantile_levels(eps, metric, dim)
        outer = ranks(levels.outer)
        inner = outer if levels.inner is levels.outer else ranks(levels.inner)
        return QuantileRanks(outer, inner, None if levels.near is None else ranks(levels.near))

    def _certify_distances(
        self, inputs: _Inputs, metrics: list[Metric], preds: list[list[Prediction]]
    ) -> list[list[np.ndarray]]:
        """Sorted distances from each accepted center to ``n_certify`` fresh outputs, indexed
        ``[input][metric]``; only the distances are kept (one float per sample), never the
        outputs. Nothing is drawn when every prediction abstained."""
        if all(p.abstained for row in preds for p in row):
            return [[np.empty(0) for _ in metrics] for _ in preds]
        shape = (len(preds), len(metrics), self.n_certify)
        radii = torch.zeros(shape, dtype=torch.float64, device=self.device)
        done = 0
        monitor = OutputMonitor(self.device)
        for outputs in self._stream(inputs, self.n_certify, "certify", monitor):
            size = batch_len(outputs[0])
            for i, out in enumerate(outputs):
                for j, metric in enumerate(metrics):
                    if not preds[i][j].abstained:
                        point = preds[i][j].center
                        d = monitor.distances(distances_to(metric, point, out, check=False))
                        radii[i, j, done : done + size] = d.to(self.device, torch.float64)
            done += size
        ordered = torch.sort(radii, dim=2).values.cpu().numpy()
        return [list(per_input) for per_input in ordered]

    # ----------------------------------------------------------------------------- helpers
    def _stream(
        self, inputs: _Inputs, n: int, stage: str, monitor: OutputMonitor
    ) -> Iterator[list[Outputs]]:
        """``n`` noisy outputs per input, yielded as per-input slices of shared forward passes.

        Outputs and distances are validated once per stage from flags kept on the device, so the
        loop does not wait on the host after each batch.
        """
        batch_size = self._batch_size(inputs)
        per_input = max(1, batch_size // len(inputs.xs))
        steps = math.ceil(n / per_input)
        bar = tqdm(total=steps, desc=stage, disable=not self.progress, leave=False)
        done = 0
        while done < n:
            size = min(per_input, n - done)
            noisy = draw_noisy(inputs.streams, size)
            out = self.base_function(noisy, inputs.np_dtype, check_finite=False)
            monitor.outputs(out)
            yield [_slice(out, i * size, (i + 1) * size) for i in range(len(inputs.xs))]
            done += size
            bar.update()
        bar.close()
        monitor.raise_if_bad()

    def _batch_size(self, inputs: _Inputs) -> int:
        if self.batch_size is None:
            if self.device.type != "cuda":
                return DEFAULT_BATCH_SIZE
            if self._auto_batch_size is None:
                self._auto_batch_size = find_batch_size(
                    self.base_function, inputs.xs[0], self.sigma, inputs.np_dtype
                )
            return self._auto_batch_size
        return self.batch_size

    def _prepare_input(self, x: Any) -> tuple[torch.Tensor, Any]:
        """The input as a float tensor on the device, and the NumPy dtype for NumPy models."""
        np_dtype = None
        if isinstance(x, np.ndarray):
            np_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
            xt = torch.from_numpy(np.asarray(x, dtype=np_dtype))
        elif isinstance(x, torch.Tensor):
            xt = x.detach()
        else:
            raise TypeError(
                f"x must be a torch.Tensor or a NumPy array (one input, no batch dimension), "
                f"got {type(x).__name__}"
            )
        if self.base_function.noise_dtype is not None and np_dtype is None:
            xt = xt.to(self.base_function.noise_dtype)
        elif not xt.is_floating_point():
            xt = xt.to(torch.get_default_dtype())
        if xt.dim() == 0:
            raise ValueError("x must have at least one dimension (one input, no batch dimension)")
        if not bool(torch.isfinite(xt).all()):
            raise ValueError("x contains NaN or infinite values")
        if self.input_grid is not None:  # snapped to k * input_grid, as the noisy inputs are
            k = grid_noise.snap_to_grid(xt, self.input_grid)
            xt = grid_noise.lattice_to_float(k, self.input_grid, xt.dtype)
        return xt.to(self.device), np_dtype

    def _check_sample_counts(self) -> None:
        """Refuse sample counts with which the procedure could never accept or certify."""
        mass = self.ball_mass
        if self.delta1 > self.delta:
            need = bounds.min_center_samples(self.alpha_delta1, self.delta, self.bound, mass)
            raise ValueError(
                f"n_center={self.n_center} is too small: Delta1={self.delta1:.4f} exceeds "
                f"delta={self.delta}, so every prediction would abstain; use n_center >= {need}"
            )
        best_p_low = bounds.mass_lower_bound(
            self.n_check, self.n_check, self.alpha_check, self.bound
        )
        if best_p_low <= bounds.check_level(mass, self.delta):
            need = bounds.min_check_samples(self.alpha_check, self.delta, self.bound, mass)
            raise ValueError(
                f"n_check={self.n_check} is too small: even a perfect check cannot reach "
                f"ball_mass - delta={mass - self.delta}; use n_check >= {need}"
            )
        if self.max_eps_in_for(self.n_certify) < 0:
            need = bounds.min_certify_samples(self.alpha_quantile, self.delta, self.bound, mass)
            raise ValueError(
                f"n_certify={self.n_certify} is too small to certify even eps_in=0 at "
                f"alpha_certify={self.alpha_certify}; use n_certify >= {need}"
            )

    def max_eps_in_for(self, n_certify: int) -> float:
        """Largest certifiable ``eps_in`` with ``n_certify`` certification samples."""
        return bounds.max_certifiable_eps(
            self.sigma,
            n_certify,
            self.alpha_quantile,
            self.delta,
            self.bound,
            self.ball_mass,
            self.grid_slack(),
        )

    def __repr__(self) -> str:
        return (
            f"CenterSmoothing(metric={self.metric.name!r}, sigma={self.sigma}, "
            f"n=({self.n_center}, {self.n_check}, {self.n_certify}), bound={self.bound!r}, "
            + ("" if self.ball_mass == 0.5 else f"ball_mass={self.ball_mass}, ")
            + ("" if self.nearest_candidate else "nearest_candidate=False, ")
            + ("" if self.input_grid is None else f"input_grid={self.input_grid:g}, ")
            + f"device={str(self.device)!r})"
        )


@dataclass
class _Inputs:
    """Inputs of one call, prepared for the device, each with its own noise generator."""

    xs: list[torch.Tensor]
    np_dtype: Any
    streams: list[Any]  # NoiseStream, or GridNoiseStream with input_grid

    def returned(self, point: Any) -> Any:
        """A center in the type the model returned: a NumPy model's tensor outputs (converted
        for the distances) go back as a NumPy array."""
        if self.np_dtype is not None and isinstance(point, torch.Tensor):
            return point.cpu().numpy()
        return point

    @classmethod
    def build(
        cls, smoother: CenterSmoothing, xs: Sequence[Any], seeds: Sequence[int] | None
    ) -> _Inputs:
        """Seeds: ``seeds[i]`` if given, else one derived from the smoother's seed and the
        input's position (so ``certify(x)`` equals ``certify_batch([x])``), else fresh noise."""
        if len(xs) == 0:
            raise ValueError("xs must hold at least one input")
        prepared = [smoother._prepare_input(x) for x in xs]
        tensors = [t for t, _ in prepared]
        if len({t.shape for t in tensors}) > 1 or len({str(d) for _, d in prepared}) > 1:
            raise ValueError("inputs certified together must share one shape and one type")
        if seeds is not None and len(seeds) != len(xs):
            raise ValueError(f"got {len(seeds)} seeds for {len(xs)} inputs")
        if seeds is None and smoother.seed is not None:
            seeds = [derive_seed(smoother.seed, i) for i in range(len(xs))]
        streams: list[Any] = []
        for x, seed in zip(tensors, _optional(seeds, len(tensors)), strict=True):
            if smoother.input_grid is None:
                streams.append(NoiseStream(x, smoother.sigma, seed))
            else:
                k = grid_noise.snap_to_grid(x, smoother.input_grid)
                streams.append(
                    grid_noise.GridNoiseStream(
                        k, smoother.input_grid, smoother.sigma, x.dtype, seed, NOISE_BLOCK
                    )
                )
        return cls(tensors, prepared[0][1], streams)


class _Collector:
    """The center samples of one input, gathered batch by batch into one preallocated tensor (or
    a list for Python-object outputs), so they are never held twice."""

    def __init__(self, n: int) -> None:
        self.n, self.filled = n, 0
        self.store: Any = None

    def add(self, out: Outputs) -> None:
        if not isinstance(out, torch.Tensor):
            self.store = self.store if self.store is not None else []
            self.store.extend(out)
            return
        if self.store is None:
            self.store = out.new_empty((self.n, *out.shape[1:]))
        self.store[self.filled : self.filled + out.shape[0]] = out
        self.filled += out.shape[0]

    def take(self) -> Outputs:
        store, self.store = self.store, None
        return store


def _optional(seeds: Sequence[int] | None, n: int) -> list[int | None]:
    return [None] * n if seeds is None else list(seeds)


def _slice(outputs: Outputs, start: int, stop: int) -> Outputs:
    return outputs[start:stop]


def _eps_out(metric: Metric, outer: float, inner: float, near: float) -> float:
    """The certified bound, capped at the largest value the distance can take, which no two
    outputs can exceed anyway (a Jaccard certificate never says more than 1).

    * nearest-candidate bound (``near`` finite): ``gamma (R_outer + gamma (R_near + R_inner))``;
    * the paper's (``near = inf``): ``gamma (R_outer + beta R_inner)`` with ``beta = 2 gamma``,
      written ``gamma (1 + beta) R-hat`` when both are one order statistic (3 R-hat for metrics,
      10 R-hat for ``gamma = 2``).
    """
    g = metric.gamma
    if math.isfinite(near):
        bound = g * (outer + g * (near + inner))
    elif outer == inner:  # one order statistic: the paper's expression
        bound = g * (1.0 + 2.0 * g) * outer
    else:
        bound = g * (outer + 2.0 * g * inner)
    return bound if metric.upper is None else min(bound, metric.upper)


def _check_eps_in(eps_in: EpsIn) -> np.ndarray:
    if np.asarray(eps_in).dtype.kind not in "iuf":  # no strings, booleans or objects
        raise TypeError(f"eps_in must be a number or a sequence of numbers, got {eps_in!r}")
    eps = np.atleast_1d(np.asarray(eps_in, dtype=float))
    if eps.ndim != 1 or eps.size == 0:
        raise ValueError(f"eps_in must be a number or a 1-d sequence of numbers, got {eps_in!r}")
    if not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError(f"eps_in must be finite and non-negative, got {eps_in!r}")
    return eps


def _check_positive_real(name: str, value: Any) -> None:
    if not (is_real(value) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _check_candidates(
    candidates: int | Mapping[str, int] | None, n_center: int
) -> int | dict[str, int] | None:
    """``None``, one count for every distance, or counts per distance name (an empty mapping is
    ``None``); each a positive integer no larger than ``n_center``."""
    if candidates is None:
        return None
    if not isinstance(candidates, Mapping):
        return _check_candidate_count("candidates", candidates, n_center)
    per_metric = {}
    for name, k in candidates.items():
        if not isinstance(name, str):
            raise TypeError(f"candidates must map distance names to counts, got key {name!r}")
        per_metric[name] = _check_candidate_count(f"candidates[{name!r}]", k, n_center)
    return per_metric or None


def _check_candidate_count(label: str, k: Any, n_center: int) -> int:
    _check_positive_int(label, k)
    if k > n_center:
        raise ValueError(
            f"{label}={k} exceeds n_center={n_center}: candidates are drawn from the center samples"
        )
    return int(k)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _plain(value: Any) -> Any:
    """``value`` in plain Python types: lists for tensors and arrays, sorted lists for sets."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _json(record: dict[str, Any]) -> str:
    def finite(value: Any) -> Any:
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, list):
            return [finite(v) for v in value]
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        return value

    return json.dumps(finite(record), allow_nan=False)
