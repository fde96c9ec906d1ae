"""Center smoothing: ``predict`` is Algorithm 1 ("Smooth"), ``certify`` is Algorithm 2 ("Certify").

Kumar and Goldstein, "Center Smoothing: Certified Robustness for Networks with Structured Outputs",
NeurIPS 2021, with the tighter binomial bounds, central candidates and nearest-candidate bound of
docs/algorithm.md. The steps are here; the validated settings and the levels they imply are in
``settings``, every confidence bound in ``bounds``, the center search in ``center``, the noisy
forward passes in ``sampling`` and what is returned in ``certificate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from . import bounds
from .batch_size import find_batch_size
from .center import Center, batch_len, distances_to, find_center
from .certificate import Certificate, Prediction
from .determinism import fix_cublas_workspace, seeded_kernels
from .metrics import Metric, get_metric
from .metrics.base import Outputs
from .metrics.checks import check_distance, needs_check
from .sampling import (
    BaseFunction,
    OutputMonitor,
    PreparedInputs,
    SampleCollector,
    noisy_outputs,
    resolve_device,
)
from .settings import PAPER_SETTINGS, EpsIn, SmoothingSettings, check_eps_in

__all__ = ["PAPER_SETTINGS", "CenterSmoothing", "Certificate", "Prediction"]


class CenterSmoothing:
    """Wrap a base function ``f`` with center smoothing under a distance on its outputs.

    ``f`` maps a batch of inputs to a batch of outputs (tensor, NumPy array or list of objects).
    Noise ``N(0, sigma^2 I)`` is added to the input as given. docs/algorithm.md gives the
    meaning of every argument. Beyond it: ``batch_size=None`` (the default) picks the batch size
    from the memory one sample needs (``batch_size.find_batch_size``: the largest that fits on a
    CUDA device, at most 1,000 and 1 GiB on the CPU), once per shape of input; ``progress`` shows
    progress bars
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
        batch_size: int | None = None,
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
        self.settings = SmoothingSettings(
            sigma=sigma,
            n_center=n_center,
            n_check=n_check,
            n_certify=n_certify,
            alpha_center=alpha_center,
            alpha_certify=alpha_certify,
            delta=delta,
            bound=bounds.check_bound(bound),
            candidates=candidates,
            central_candidates=central_candidates,
            batch_size=batch_size,
            seed=seed,
            ball_mass=ball_mass,
            nearest_candidate=nearest_candidate,
            check_metric=check_metric,
            input_grid=input_grid,
        )
        self.metric = get_metric(metric)
        self.progress = progress
        self.device = resolve_device(device, base_function)
        fix_cublas_workspace(self.device)  # before the model below starts CUDA
        self.base_function = BaseFunction(base_function, self.device, autocast, compile)
        # the part of the device's memory the automatic batch size plans for (a runner with
        # several workers on one device gives each its share)
        self.memory_share = 1.0
        self._auto_batch_sizes: dict[tuple[Any, ...], int] = {}

    def __getattr__(self, name: str) -> Any:
        """The settings read as attributes (``smoother.sigma``, ``smoother.delta1``, ...)."""
        if name == "settings" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.settings, name)

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

    # ----------------------------------------------------------------------------- Algorithm 1
    def predict(self, x: Any, seed: int | None = None) -> Prediction:
        """Smoothed output at ``x`` (one input, no batch dimension): Algorithm 1.

        With probability at least ``1 - alpha_center`` a non-abstaining prediction's ball
        ``B(center, radius)`` holds at least ``1/2 - delta`` of the output mass, and ``radius`` is
        within ``2 gamma`` of the smallest radius of a ball holding ``1/2 + delta1`` of it (with
        ``ball_mass``: ``ball_mass - delta`` and ``ball_mass + delta1``).
        ``seed`` overrides the constructor's seed for this call.
        """
        inputs = self._inputs([x], None if seed is None else [seed])
        seeded = seed is not None or self.settings.seed is not None
        # a module's train/eval flags come back after; a seeded call asks for deterministic
        # kernels on a CUDA device (``determinism``)
        with self.base_function.evaluating(), seeded_kernels(self.device, seeded):
            pred = self._predict(inputs, [self.metric])[0][0][0]
        return replace(pred, center=inputs.returned(pred.center))

    def _predict(
        self, inputs: PreparedInputs, metrics: list[Metric]
    ) -> tuple[list[list[Prediction]], list[dict[str, float | None]]]:
        """Algorithm 1 for every input and metric, on one shared pair of sample sets per input
        (center, then check), indexed ``[input][metric]``, and the output diameter per input and
        distance name (see ``Metric.diameter``)."""
        self.settings.check_candidate_names(metrics)
        centers, diameters = [], []
        for collector in self._center_samples(inputs, metrics):
            row, diameter = self._find_centers(collector.take(), metrics)
            centers.append(row)
            diameters.append(diameter)
        hits = self._count_in_balls(inputs, metrics, centers)
        predictions = [
            [self._decide(center, count) for center, count in zip(row, counts, strict=True)]
            for row, counts in zip(centers, hits, strict=True)
        ]
        return predictions, diameters

    def _center_samples(
        self, inputs: PreparedInputs, metrics: list[Metric]
    ) -> list[SampleCollector]:
        """Step 1: ``n_center`` outputs of the base function under noise, per input."""
        n_center = self.settings.n_center
        collected = [SampleCollector(n_center) for _ in inputs.xs]
        monitor = OutputMonitor(self.device)
        for outputs in self._stream(inputs, n_center, "center", monitor, metrics):
            for collector, out in zip(collected, outputs, strict=True):
                collector.add(out)
        return collected

    def _find_centers(
        self, samples: Outputs, metrics: list[Metric]
    ) -> tuple[list[Center], dict[str, float | None]]:
        """Step 2: per distance, the point of least median distance to the samples among the
        candidates (``center.find_center``: within ``2 gamma`` of the best ball), and the output
        diameter. A distance that is not built in is checked here on the samples, its center and
        the central candidates (``check_distance``): a refuted ``gamma`` stops before any
        certificate exists."""
        s = self.settings
        row, central, diameter = [], {}, {}
        for metric in metrics:
            extra = None
            if s.central_candidates:
                key = metric.central_key or id(metric)
                if key not in central:
                    central[key] = metric.central_candidates(samples)
                extra = central[key]
            k = s.candidates_for(metric)
            center = find_center(samples, metric, k, extra, s.ball_mass, self.progress)
            if s.check_metric and needs_check(metric):
                points = [center.point]
                if extra is not None:
                    points += [extra[e] for e in range(batch_len(extra))]
                check_distance(metric, samples, points)
            row.append(center)
            diameter[metric.name] = metric.diameter(samples)
        return row, diameter

    def _count_in_balls(
        self, inputs: PreparedInputs, metrics: list[Metric], centers: list[list[Center]]
    ) -> list[list[int]]:
        """Step 3: how many of ``n_check`` fresh outputs fall in each center's ball, per input
        and distance (the counts ``_decide`` bounds from below)."""
        hits = torch.zeros(len(inputs.xs), len(metrics), dtype=torch.int64, device=self.device)
        monitor = OutputMonitor(self.device)
        for outputs in self._stream(inputs, self.settings.n_check, "check", monitor, metrics):
            for i, out in enumerate(outputs):
                for j, (metric, center) in enumerate(zip(metrics, centers[i], strict=True)):
                    d = monitor.distances(distances_to(metric, center.point, out, check=False))
                    hits[i, j] += (d <= center.radius).sum().to(self.device)
        counts: list[list[int]] = hits.tolist()
        return counts

    def _decide(self, center: Center, count: int) -> Prediction:
        """Step 4: accept iff ``Delta1 <= delta`` and ``p_low > ball_mass - delta`` (else
        abstain; the paper's ``>=`` could leave the proof's two balls with masses summing to
        exactly 1)."""
        s = self.settings
        p_low = bounds.mass_lower_bound(count, s.n_check, s.alpha_check, s.bound)
        level = bounds.check_level(s.ball_mass, s.delta)
        accepted = s.delta1 <= s.delta and p_low > level
        return Prediction(
            center=center.point if accepted else None,
            radius=center.radius if accepted else math.inf,
            abstained=not accepted,
            delta1=s.delta1,
            p_low=p_low,
            n_center=s.n_center,
            n_check=s.n_check,
            check_level=level,
            delta=s.delta,
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
        """``certify_metrics`` for several inputs at once (see ``certify_batch``): Algorithm 1
        (``_predict``), the certification distances (``_certify_distances``), then the radii
        and ``eps_out`` at each ``eps_in`` (``_radii_and_eps_out``)."""
        resolved = [get_metric(m) for m in metrics]
        names = [m.name for m in resolved]
        if not resolved or len(set(names)) != len(names):
            raise ValueError(f"metrics must be a non-empty list of distinct distances, got {names}")
        eps = check_eps_in(eps_in)
        scalar = np.ndim(eps_in) == 0
        inputs = self._inputs(xs, seeds)
        seeded = seeds is not None or self.settings.seed is not None
        # a module's train/eval flags come back after; a seeded call asks for deterministic
        # kernels on a CUDA device (``determinism``)
        with self.base_function.evaluating(), seeded_kernels(self.device, seeded):
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
                found, eps_out = self._radii_and_eps_out(
                    metric, ranks[metric.name], None if pred.abstained else radii[i][j], eps.size
                )
                smoothing_error = None
                if not pred.abstained:
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
                    max_eps_in=self.settings.max_eps_in,
                    prediction=replace(pred, center=center),
                    vacuous=bool(vacuous[0]) if scalar else vacuous,
                    output_diameter=diameter,
                )
            results.append(certs)
        return results

    def _certify_distances(
        self, inputs: PreparedInputs, metrics: list[Metric], preds: list[list[Prediction]]
    ) -> list[list[np.ndarray]]:
        """Step 2 (step 1 is Algorithm 1): sorted distances from each accepted center to
        ``n_certify`` fresh outputs, indexed ``[input][metric]``; only the distances are kept
        (one float per sample), never the outputs. Nothing is drawn when every prediction
        abstained."""
        if all(p.abstained for row in preds for p in row):
            return [[np.empty(0) for _ in metrics] for _ in preds]
        n_certify = self.settings.n_certify
        shape = (len(preds), len(metrics), n_certify)
        radii = torch.zeros(shape, dtype=torch.float64, device=self.device)
        done = 0
        monitor = OutputMonitor(self.device)
        for outputs in self._stream(inputs, n_certify, "certify", monitor, metrics):
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

    def _radii_and_eps_out(
        self,
        metric: Metric,
        ranks: bounds.QuantileRanks,
        radii: np.ndarray | None,
        n_eps: int,
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Step 3: per ``eps_in``, ``R_outer``, ``R_inner`` and ``R_near`` as the sorted
        certification distances at their ranks (upper confidence bounds on the quantiles,
        ``bounds.quantile_rank``) and ``eps_out`` from them (``bounds.eps_out_from_radii``);
        ``inf`` where a rank exceeds ``n_certify`` or the prediction abstained (``radii=None``)."""
        eps_out = np.full(n_eps, math.inf)
        found = {name: np.full(n_eps, math.inf) for name in bounds.QuantileRanks._fields}
        if radii is None:
            return found, eps_out
        for e in range(n_eps):
            picked = {name: int(at[e]) for name, at in ranks._asdict().items() if at is not None}
            if max(picked.values()) <= self.settings.n_certify:
                for name, k in picked.items():
                    found[name][e] = float(radii[k - 1])
                at_e = {name: radius[e] for name, radius in found.items()}
                eps_out[e] = bounds.eps_out_from_radii(metric.gamma, **at_e, upper=metric.upper)
        return found, eps_out

    # ----------------------------------------------------------------------------- levels
    def quantile_levels(
        self, eps: np.ndarray, metric: Metric | None = None, dim: int | None = None
    ) -> bounds.QuantileLevels:
        """Quantile levels of ``R_outer``, ``R_inner`` and ``R_near`` per ``eps_in`` for
        ``metric`` (the smoother's by default; see ``SmoothingSettings.quantile_levels``)."""
        return self.settings.quantile_levels(eps, metric or self.metric, dim)

    def quantile_ranks(
        self, eps: np.ndarray, metric: Metric | None = None, dim: int | None = None
    ) -> bounds.QuantileRanks:
        """1-indexed ranks of ``R_outer``, ``R_inner`` and ``R_near`` among the ``n_certify``
        distances (``n_certify + 1``: that level cannot be bounded with these samples)."""
        return self.settings.quantile_ranks(eps, metric or self.metric, dim)

    # ----------------------------------------------------------------------------- sampling
    def _inputs(self, xs: Sequence[Any], seeds: Sequence[int] | None) -> PreparedInputs:
        s = self.settings
        return PreparedInputs.build(
            xs, seeds, s.seed, s.sigma, self.base_function, self.device, s.input_grid
        )

    def _stream(
        self,
        inputs: PreparedInputs,
        n: int,
        stage: str,
        monitor: OutputMonitor,
        metrics: Sequence[Metric] = (),
    ) -> Iterator[list[Outputs]]:
        """``n`` noisy outputs per input of ``stage`` (see ``sampling.noisy_outputs``), in
        batches that leave room for ``metrics``."""
        batch_size = self._batch_size(inputs, metrics)
        return noisy_outputs(
            self.base_function, inputs, n, batch_size, monitor, stage, self.progress
        )

    def _batch_size(self, inputs: PreparedInputs, metrics: Sequence[Metric] = ()) -> int:
        """``batch_size``, or the automatic one, found once per shape and type of input, number
        of inputs and distances (``batch_size.find_batch_size``)."""
        if self.settings.batch_size is not None:
            return self.settings.batch_size
        metrics = list(metrics) or [self.metric]
        x = inputs.xs[0]
        key: tuple[Any, ...] = (tuple(x.shape), x.dtype, str(inputs.np_dtype), len(inputs.xs))
        key = (*key, *(m.name for m in metrics))
        if key not in self._auto_batch_sizes:
            self._auto_batch_sizes[key] = find_batch_size(
                self.base_function,
                x,
                self.settings.sigma,
                inputs.np_dtype,
                metrics=metrics,
                held_samples=self.settings.n_center * len(inputs.xs),
                streams=len(inputs.xs),
                share=self.memory_share,
            )
        return self._auto_batch_sizes[key]

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"CenterSmoothing(metric={self.metric.name!r}, sigma={s.sigma}, "
            f"n=({s.n_center}, {s.n_check}, {s.n_certify}), bound={s.bound!r}, "
            + ("" if s.ball_mass == 0.5 else f"ball_mass={s.ball_mass}, ")
            + ("" if s.nearest_candidate else "nearest_candidate=False, ")
            + ("" if s.input_grid is None else f"input_grid={s.input_grid:g}, ")
            + f"device={str(self.device)!r})"
        )
