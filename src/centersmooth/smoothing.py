"""Center smoothing: ``predict`` is Algorithm 1 ("Smooth"), ``certify`` is Algorithm 2 ("Certify").

Kumar and Goldstein, "Center Smoothing: Certified Robustness for Networks with Structured Outputs",
NeurIPS 2021, with the tighter binomial bounds, central candidates and nearest-candidate bound of
docs/algorithm.md. The steps are here; the validated settings and the levels they imply are in
``settings``, every confidence bound in ``bounds``, the center search in ``center``, the noisy
forward passes in ``sampling`` and what is returned in ``certificate``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from . import bounds, rounds
from .batch_size import find_batch_size
from .center import Center, batch_len, distances_to, find_center, outside_caller
from .certificate import Certificate, Prediction, UncertifiableRadiusWarning, radius_advice
from .determinism import fix_cublas_workspace, seeded_kernels
from .metrics import Metric, get_metric
from .metrics.base import Outputs
from .metrics.checks import check_distance, needs_check
from .pair_bound import PAIR_COLUMNS, PAIR_ROWS, PairLevels, PairRanks, pair_radii
from .planning import samples_needed_text, warn_abstention_risk
from .sampling import (
    BaseFunction,
    OutputMonitor,
    OutputSelector,
    PreparedInputs,
    SampleCollector,
    finite_outputs,
    in_fixed_chunks,
    noisy_outputs,
    outside_distances,
    resolve_device,
)
from .settings import (
    PAPER_SETTINGS,
    EpsIn,
    SmoothingSettings,
    check_eps_in,
    check_seed,
)

__all__ = ["PAPER_SETTINGS", "CenterSmoothing", "Certificate", "Prediction"]

# the pairwise bound's plan for one distance: its levels, its ranks and the eps_in it serves
PairPlan = tuple[PairLevels, PairRanks, np.ndarray]

# the radii a certificate reads: the three order statistics and, with the pairwise bound, R_pair
RADII = (*bounds.QuantileRanks._fields, "pair")


class CenterSmoothing:
    """Wrap a base function ``f`` with center smoothing under a distance on its outputs.

    ``predict(x)`` returns the smoothed output at ``x``: the center of the outputs of ``f`` on
    noisy copies ``x + N(0, sigma^2 I)`` (Algorithm 1). ``certify(x, eps_in)`` adds the
    certificate: for every ``x'`` within ``eps_in`` of ``x`` (l2), the smoothed output at ``x'``
    is within ``eps_out`` of the one at ``x`` under the distance, or the smoothed function
    abstains there, with probability at least ``1 - alpha_center - alpha_certify`` (Algorithm 2).
    The smoothed function at ``x'`` is this same procedure with these same settings. The
    project's algorithm notes ("How centersmooth certifies") prove every step; their sections
    are named below in quotes.

    The common arguments (the signature gives the defaults):

    * ``base_function``: the model, a batch of inputs to a batch of outputs: an ``nn.Module``
      (run in eval mode, without gradients, on ``device``), a callable on torch batches, a
      callable on NumPy batches (pass ``x`` as a NumPy array), or a fitted scikit-learn
      estimator (its ``transform``, else its ``predict``, on NumPy batches). Outputs: a tensor
      or array with one row per input, or a list of Python objects (strings, token sequences,
      sets); a model with several outputs needs ``output``.
    * ``metric``: the distance on outputs, a registered name (``"l2"``, ``"angular"``,
      ``"jaccard"``, ``"levenshtein"``, ...; ``available_metrics()`` lists them, in any case),
      a ``Metric``, or a callable ``d(a_batch, b_batch)`` (checked before it is trusted, see
      ``check_metric``).
    * ``sigma``: the standard deviation of the Gaussian noise, in the input's units; the
      largest certifiable radius ``max_eps_in`` grows in proportion to it.
    * ``n_center``: noisy outputs among which the center is sought (step 1 of predict); more of
      them shrink ``Delta1``, the margin the procedure must leave below ``delta``.
    * ``n_check``: fresh outputs that check the center's ball holds enough mass (step 3); too
      few make a sound center abstain (the abstention then says how many would do).
    * ``n_certify``: fresh outputs whose distances to the center bound the radii of the
      certificate; more of them lower ``eps_out`` slowly and raise ``max_eps_in``.
    * ``alpha_center`` and ``alpha_certify``: the chances the prediction's and the certificate's
      statistical steps may fail; the certificate holds with probability at least
      ``1 - alpha_center - alpha_certify``. ``alpha_center`` is split between the check,
      ``Delta1`` and the nearest candidate ("The nearest-candidate bound").
    * ``delta``: the slack between the ball the center must hold (``ball_mass - delta`` of the
      output mass, checked) and the ball the certificate measures (``ball_mass + Delta1``);
      larger, fewer abstentions and a larger ``eps_out``. It must exceed ``Delta1``.
    * ``bound``: ``"binomial"`` (exact binomial order statistics and Clopper-Pearson bounds,
      ours) or ``"hoeffding"`` (the paper's, which needs about ten times more samples).
    * ``candidates``: ``None`` scores every center sample as a candidate center (all pairs,
      pruned by exact lower bounds); ``k`` scores only the first ``k`` (fast for slow
      distances; ``alpha_center`` pays for the chance none lands in the central ball); a mapping
      ``{"tv2": 30}`` sets it per distance name in ``certify_metrics``.
    * ``central_candidates``: also score central points of the samples (mean, medians, majority
      set, ...): a better center, the same guarantee ("Predict (Algorithm 1)").
    * ``batch_size``: noisy inputs per forward pass (``None``, the default: chosen from the
      memory one sample needs, the largest that fits on a CUDA device, at most 1,000 and 1 GiB
      on the CPU, once per shape of input). Every step of the library gives the same bits
      whatever it is; a model whose kernels round by batch size may move ``eps_out`` in its
      last digits ("Reproducibility").
    * ``device``: where the noise is drawn and the model runs (``"cpu"``, ``"cuda"``,
      ``"cuda:1"``; ``None``: where a module's parameters are, else the CPU). A device this
      machine lacks is refused here.
    * ``seed``: an integer in ``[0, 2**64)`` making results bit-for-bit reproducible on the same
      device, or ``None`` for fresh noise. It is the default seed of every call:
      ``CenterSmoothing(seed=s).certify(x)`` is ``CenterSmoothing().certify(x, seed=s)``, and
      input ``i`` of a batch gets ``s + i`` ("Reproducibility").
    * ``progress``: progress bars over the forward passes and the center search.

    Further options:

    * ``nearest_candidate`` (on): certify through the sample candidate nearest to the center,
      ``eps_out = gamma (R_outer + gamma (R_near + R_inner))`` instead of the paper's
      ``gamma (1 + 2 gamma) R-hat``, at the same confidence, whatever seeds the runs at ``x``
      and ``x'`` use ("The nearest-candidate bound").
    * ``ball_mass`` (1/2, the paper's): the share of the output mass the smoothed output's ball
      holds; a smaller one (down to just above ``delta``) moves ``R_outer`` and ``R_inner`` to
      other levels ("A smaller ball: ``ball_mass``").
    * ``check_metric`` (on): test a distance that is not built in on every call, on the run's own
      outputs (its declared ``gamma`` on triples, symmetry, ``d(a, a) = 0``); a refutation
      raises ``DistanceCheckError`` before any certificate. It can refute a constant, never
      prove one: turn it off only for a distance whose constant you have proven.
    * ``input_grid`` (off): for inputs on the grid ``input_grid * Z^d`` (``1/255`` for 8-bit
      images), draw the noise exactly on the grid, so that the certificate holds for the
      function evaluated in floating point, against perturbations on the same grid; inputs must
      lie on the grid as the model gets them, and ``sigma / input_grid`` must be at least 1/4
      ("Inputs on a grid: exact noise").
    * ``output`` (none): for a model that returns several outputs (a dict, a tuple or a named
      tuple of batches, such as a detector's boxes and scores, or a list of per-input dicts),
      the one to certify: a key (``"boxes"``), a position (``0``) or a function of what the
      model returns. Such a model is refused without it; certify another output in a smoother
      of its own.
    * ``nan_outputs`` (``"error"``): ``"outside"`` counts an output holding a NaN or an infinity
      as one outside every ball instead of stopping ("Outputs with a NaN").
    * ``share_check_samples`` (on; off in the paper preset): the certification's samples start
      with the check's, so ``certify`` draws ``max(n_check, n_certify)`` samples after the
      center samples instead of ``n_check + n_certify``; ``predict`` is unchanged. The
      certificate keeps ``1 - alpha_center - alpha_certify``; given that ``x`` is accepted, its
      failure chance is at most ``alpha / P(accept)`` ("Shared check samples").
    * ``n_certify="auto"``: draw the certification samples in rounds (from the check's
      ``n_check`` with shared check samples, else 5,000, doubling up to ``n_certify_cap``, 10^6
      by default) and stop when another round is expected to lower no requested ``eps_out`` by
      ``n_certify_tolerance`` (1%); the rounds share ``alpha_certify``, so the certificate keeps
      its confidence whatever the samples show ("Samples where an input needs them").
    * ``pairwise_bound`` (``None``: the built-in distances between vectors and images,
      ``Metric.pair_default``, where the settings allow it): bound the radius the smoothed
      function finds at ``x'`` by ``R_pair``, measured between center samples (the first
      ``pair_rows``, 1,000, against the next ``pair_columns``, 2,000) instead of through the
      triangle inequality:
      ``eps_out = gamma (R_outer + R_pair)``, at the same confidence ("The pairwise bound"), at
      each ``eps_in`` within its reach (about 2.5 sigma); the nearest-candidate bound serves
      the others ("Which bound serves each eps_in"). It needs ``nearest_candidate``, finite
      outputs and ``n_center >= pair_rows + pair_columns``, and costs up to
      ``pair_rows x pair_columns`` more distances per input and distance. ``True``: every
      distance (refusing settings without those); ``False``: never.
    * ``autocast`` (``"bf16"`` / ``"fp16"``) and ``compile``: run a torch model in lower
      precision or compiled; the certificate then holds for that model, as evaluated.

    ``CenterSmoothing.paper(...)`` gives the paper's constants. The settings read as attributes
    (``smoother.sigma``, ``smoother.delta1``, ``smoother.max_eps_in``, ...).
    """

    def __init__(
        self,
        base_function: Callable[..., Any],
        metric: str | Metric | Callable[..., Any] = "l2",
        sigma: float = 0.25,
        n_center: int = 10_000,
        n_check: int = 10_000,
        n_certify: int | str = 10_000,
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
        nan_outputs: str = "error",
        share_check_samples: bool = True,
        n_certify_cap: int = rounds.DEFAULT_CAP,
        n_certify_tolerance: float = rounds.DEFAULT_TOLERANCE,
        output: OutputSelector = None,
        pairwise_bound: bool | None = None,
        pair_rows: int = PAIR_ROWS,
        pair_columns: int = PAIR_COLUMNS,
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
            nan_outputs=nan_outputs,
            share_check_samples=share_check_samples,
            n_certify_cap=n_certify_cap,
            n_certify_tolerance=n_certify_tolerance,
            pairwise_bound=pairwise_bound,
            pair_rows=pair_rows,
            pair_columns=pair_columns,
        )
        warn_abstention_risk(self.settings)
        self.metric = get_metric(metric)
        self.progress = progress
        self.device = resolve_device(device, base_function)
        fix_cublas_workspace(self.device)  # before the model below starts CUDA
        self.base_function = BaseFunction(base_function, self.device, autocast, compile, output)
        # the part of the device's memory the automatic batch size plans for (a runner with
        # several workers on one device gives each its share)
        self.memory_share = 1.0
        self._auto_batch_sizes: dict[tuple[Any, ...], int] = {}
        # called with the number of forward passes after each one (a progress bar's hook)
        self.pass_counter: Callable[[int], None] | None = None

    def __getattr__(self, name: str) -> Any:
        """The settings read as attributes (``smoother.sigma``, ``smoother.delta1``, ...)."""
        if name in ("settings", "pass_counter") or name.startswith("__"):
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
        self,
        inputs: PreparedInputs,
        metrics: list[Metric],
        keep_check: bool = False,
        pair_plans: list[PairPlan | None] | None = None,
    ) -> tuple[
        list[list[Prediction]],
        list[dict[str, float | None]],
        torch.Tensor | None,
        list[list[np.ndarray]],
    ]:
        """Algorithm 1 for every input and metric, on one shared pair of sample sets per input
        (center, then check), indexed ``[input][metric]``, the output diameter per input and
        distance name (see ``Metric.diameter``), with ``keep_check`` the check's distances to
        each center (``(inputs, metrics, n_check)``, float64; ``None`` without it), and with
        ``pair_plans`` (``_pair_plans``) ``R_pair`` from the center samples where the pairwise
        bound serves, ``inf`` elsewhere (``[input][metric]``; empty where it serves nothing)."""
        self.settings.check_candidate_names(metrics)
        plans = pair_plans if pair_plans and any(p is not None for p in pair_plans) else None
        centers, diameters, pairs = [], [], []
        for collector in self._center_samples(inputs, metrics):
            samples = collector.take()
            row, diameter = self._find_centers(samples, metrics)
            centers.append(row)
            diameters.append(diameter)
            if plans is not None:
                pairs.append(self._pair_radii(samples, metrics, row, plans))
        hits, kept = self._count_in_balls(inputs, metrics, centers, keep_check)
        predictions = [
            [self._decide(center, count) for center, count in zip(row, counts, strict=True)]
            for row, counts in zip(centers, hits, strict=True)
        ]
        return predictions, diameters, kept, pairs

    def _pair_plans(
        self, eps: np.ndarray, metrics: list[Metric], dim: int, paired: dict[str, np.ndarray]
    ) -> list[PairPlan | None]:
        """Per distance, the pairwise bound's levels and ranks at ``eps`` and the ``eps_in`` it
        serves (``paired[metric name]``), the same for every input; ``None`` where it serves
        none."""
        s = self.settings
        plans: list[PairPlan | None] = []
        for metric in metrics:
            serves = paired[metric.name]
            if not np.any(serves):
                plans.append(None)
                continue
            levels = s.pair_levels(metric)
            plans.append((levels, s.pair_ranks(eps, dim=dim, levels=levels), serves))
        return plans

    @staticmethod
    def _pair_radii(
        samples: Outputs,
        metrics: list[Metric],
        centers: list[Center],
        plans: list[PairPlan | None],
    ) -> list[np.ndarray]:
        """``R_pair`` per distance at each ``eps_in`` (``pair_bound.pair_radii``) from its
        levels and ranks where the pairwise bound serves it; ``inf`` elsewhere and for a center
        without a ball (it abstains)."""
        radii = []
        for metric, center, plan in zip(metrics, centers, plans, strict=True):
            if plan is None or not math.isfinite(center.radius):
                radii.append(np.full(0 if plan is None else plan[2].size, math.inf))
                continue
            levels, ranks, serves = plan
            found = pair_radii(metric, samples, center.point, ranks, levels)
            radii.append(np.where(serves, found, math.inf))
        return radii

    def _center_samples(
        self, inputs: PreparedInputs, metrics: list[Metric]
    ) -> list[SampleCollector]:
        """Step 1: ``n_center`` outputs of the base function under noise, per input."""
        n_center = self.settings.n_center
        collected = [SampleCollector(n_center) for _ in inputs.xs]
        for outputs in self._stream(inputs, n_center, "center", self._monitor(metrics), metrics):
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
        certificate exists. With ``nan_outputs="outside"`` the search runs on the finite samples
        at the rank ``ceil(ball_mass n_center)`` of all of them (the others lie outside every
        ball); with fewer finite samples than that rank no ball holds the share and the center's
        radius is ``inf`` (the prediction abstains)."""
        s = self.settings
        row: list[Center] = []
        central: dict[Any, Outputs] = {}
        diameter: dict[str, float | None] = {}
        mass: float | None = s.ball_mass
        if s.nan_outputs == "outside":
            n_all = batch_len(samples)
            samples = finite_outputs(samples)
            mass = bounds.search_mass(n_all, batch_len(samples), s.ball_mass)
        if mass is None:
            none = Center(point=None, radius=math.inf, index=-1, n_candidates=0)
            return [none for _ in metrics], {metric.name: None for metric in metrics}
        for metric in metrics:
            extra = None
            if s.central_candidates:
                key = metric.central_key or id(metric)
                if key not in central:
                    central[key] = metric.central_candidates(samples)
                extra = central[key]
            k = s.candidates_for(metric)
            center = find_center(samples, metric, k, extra, mass, self.progress)
            if s.check_metric and needs_check(metric):
                points = [center.point]
                if extra is not None:
                    points += [extra[e] for e in range(batch_len(extra))]
                check_distance(metric, samples, points)
            row.append(center)
            diameter[metric.name] = metric.diameter(samples)
        return row, diameter

    def _count_in_balls(
        self,
        inputs: PreparedInputs,
        metrics: list[Metric],
        centers: list[list[Center]],
        keep: bool = False,
    ) -> tuple[list[list[int]], torch.Tensor | None]:
        """Step 3: how many of ``n_check`` fresh outputs fall in each center's ball, per input
        and distance (the counts ``_decide`` bounds from below); with ``keep`` also their
        distances to the centers, which the certification then reuses (shared check samples)."""
        n_check = self.settings.n_check
        hits = torch.zeros(len(inputs.xs), len(metrics), dtype=torch.int64, device=self.device)
        shape = (len(inputs.xs), len(metrics), n_check)
        kept = torch.zeros(shape, dtype=torch.float64, device=self.device) if keep else None
        monitor = self._monitor(metrics)
        done = 0
        stream = self._stream(inputs, n_check, "check", monitor, metrics)
        for outputs in in_fixed_chunks(stream):  # the same distances whatever the batches
            size = batch_len(outputs[0])
            for i, out in enumerate(outputs):
                for j, (metric, center) in enumerate(zip(metrics, centers[i], strict=True)):
                    if not math.isfinite(center.radius):
                        continue  # no ball of that share (nan_outputs="outside"): abstains
                    d = distances_to(metric, center.point, out, check=False)
                    d = monitor.distances(d, out)
                    hits[i, j] += (d <= center.radius).sum().to(self.device)
                    if kept is not None:
                        kept[i, j, done : done + size] = d.to(self.device, torch.float64)
            done += size
        monitor.raise_if_bad()  # the last chunk comes after the stream's own check
        counts: list[list[int]] = hits.tolist()
        return counts, kept

    def _decide(self, center: Center, count: int) -> Prediction:
        """Step 4: accept iff ``Delta1 <= delta`` and ``p_low > ball_mass - delta`` (else
        abstain; the paper's ``>=`` could leave the proof's two balls with masses summing to
        exactly 1), and the center's radius is finite (with ``nan_outputs="outside"`` it is
        not when too few outputs are finite). The reason of an abstention names the cause."""
        s = self.settings
        p_low = bounds.mass_lower_bound(count, s.n_check, s.alpha_check, s.bound)
        level = bounds.check_level(s.ball_mass, s.delta)
        accepted = s.delta1 <= s.delta and p_low > level and math.isfinite(center.radius)
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
            check_count=count,
            abstain_reason=None if accepted else self._abstain_reason(center, count, p_low),
        )

    def _abstain_reason(self, center: Center, count: int, p_low: float) -> str:
        if math.isfinite(center.radius):
            return self.settings.abstain_reason(count, p_low) or ""
        m = bounds.ball_rank(self.settings.n_center, self.settings.ball_mass)
        return (
            f"fewer than {m} of the n_center={self.settings.n_center} center samples are finite "
            "outputs, and nan_outputs='outside' puts the others outside every ball: no ball "
            "holds the share ball_mass of them"
        )

    # ----------------------------------------------------------------------------- Algorithm 2
    def certify(self, x: Any, eps_in: EpsIn, seed: int | None = None) -> Certificate:
        """Certificate at ``x`` for one radius ``eps_in`` or several: Algorithm 2.

        Draws the center and check samples (``predict``), then the certification samples whose
        distances to the center give upper confidence bounds on quantiles, ``h = eps_in / sigma``
        ("Certify (Algorithm 2)", "The nearest-candidate bound" and "Shared check samples" in the
        algorithm notes): ``N = max(n_check, n_certify)`` of them, the check's first, with
        ``share_check_samples`` (the default); ``n_certify`` fresh ones after the check without.

        * nearest-candidate bound (beyond the pairwise bound's reach, and for the distances it
          does not serve): ``R_outer`` at
          ``Phi(Phi^-1(1 - ball_mass + delta) + h)``, ``R_inner`` at
          ``Phi(Phi^-1(ball_mass + delta1) + h)`` and ``R_near`` at
          ``Phi(Phi^-1(nearest_mass) + h)``, each at ``alpha_certify / 3``, and
          ``eps_out = gamma (R_outer + gamma (R_near + R_inner))``;
        * pairwise bound (by default, at each ``eps_in`` within its reach): ``R_outer`` at
          ``alpha_certify / 2`` and ``R_pair`` from the center samples at the other half,
          ``eps_out = gamma (R_outer + R_pair)`` ("The pairwise bound");
        * the paper's: ``R-hat`` at ``Phi(Phi^-1(1/2 + delta) + h)`` (level ``alpha_certify``) and
          ``eps_out = gamma (1 + 2 gamma) R-hat``; with ``ball_mass < 1/2`` ``R_outer`` and
          ``R_inner`` at ``alpha_certify / 2`` each and ``gamma (R_outer + 2 gamma R_inner)``.

        Several ``eps_in`` share one sample set; each certificate holds at its own confidence.
        An ``eps_in`` above ``max_eps_in`` gets ``eps_out = inf`` (``eps_out_reason`` says so)
        and one ``UncertifiableRadiusWarning`` per call. ``seed`` overrides the constructor's.
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

        Each input has its own noise generator (``seeds[i]``, or the constructor's seed plus
        ``i``) and its own three sample sets, so each certificate carries
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
        self._warn_beyond_max_eps_in(eps)
        inputs = self._inputs(xs, seeds)
        shared = self.settings.share_check_samples
        seeded = seeds is not None or self.settings.seed is not None
        # a module's train/eval flags come back after; a seeded call asks for deterministic
        # kernels on a CUDA device (``determinism``)
        with self.base_function.evaluating(), seeded_kernels(self.device, seeded):
            dim = inputs.xs[0].numel()
            paired = {m.name: self.settings.paired(eps, m, dim) for m in resolved}
            plans = self._pair_plans(eps, resolved, dim, paired)
            preds, diameters, check_distances, pairs = self._predict(
                inputs, resolved, keep_check=shared, pair_plans=plans
            )
            found, drawn = self._certify_rounds(
                inputs, resolved, preds, check_distances, eps, pairs, paired
            )
            # one clean pass per input: f(x) must not depend on which inputs share a batch
            outside = self.settings.nan_outputs == "outside"
            clean = [
                self.base_function(x.unsqueeze(0), inputs.np_dtype, check_finite=not outside)
                for x in inputs.xs
            ]
            self._count_passes(len(inputs.xs))

        def shaped(values: np.ndarray) -> float | np.ndarray:
            return float(values[0]) if scalar else values

        results = []
        for i, row in enumerate(preds):
            certs = {}
            # center samples, the check's, the certification's drawn after them, f(x)
            passes = self.settings.n_center + self.settings.n_check + drawn[i] + 1
            for j, (metric, pred) in enumerate(zip(resolved, row, strict=True)):
                radii, eps_out, samples = found[i][j]
                smoothing_error = None
                if not pred.abstained:
                    to_clean = distances_to(metric, pred.center, clean[i], check=not outside)
                    if outside:  # a non-finite f(x) is at infinite distance
                        to_clean = outside_distances(to_clean, clean[i])
                    smoothing_error = float(to_clean[0])
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
                    quantile_radius=shaped(radii["outer"]),
                    inner_radius=shaped(radii["inner"]),
                    near_radius=shaped(radii["near"]),
                    pair_radius=shaped(radii["pair"]),
                    smoothing_error=smoothing_error,
                    max_eps_in=self.settings.max_eps_in,
                    prediction=replace(pred, center=center),
                    vacuous=bool(vacuous[0]) if scalar else vacuous,
                    output_diameter=diameter,
                    forward_passes=passes,
                    certification_samples=samples,
                )
            results.append(certs)
        return results

    def _warn_beyond_max_eps_in(self, eps: np.ndarray) -> None:
        """One ``UncertifiableRadiusWarning`` per call for the radii beyond ``max_eps_in``, with
        the certification samples each would need (``planning.samples_needed_text``)."""
        s = self.settings
        over = eps[eps > s.max_eps_in]
        if over.size:
            warnings.warn(
                f"eps_in {', '.join(f'{e:g}' for e in over)} "
                + ("exceeds" if over.size == 1 else "exceed")
                + " max_eps_in: eps_out is inf there. "
                + radius_advice(s.max_eps_in)
                + f"; {samples_needed_text(s, [float(e) for e in over])}",
                UncertifiableRadiusWarning,
                stacklevel=outside_caller(),
            )

    def _certify_rounds(
        self,
        inputs: PreparedInputs,
        metrics: list[Metric],
        preds: list[list[Prediction]],
        check_distances: torch.Tensor | None,
        eps: np.ndarray,
        pairs: list[list[np.ndarray]],
        paired: dict[str, np.ndarray],
    ) -> tuple[list[list[tuple[dict[str, np.ndarray], np.ndarray, int]]], list[int]]:
        """Steps 2 and 3 (step 1 is Algorithm 1), round by round (a fixed ``n_certify`` is one
        round of ``N`` samples): each round draws certification outputs up to its count
        (``_certify_distances``), sorts all the distances so far to each accepted center and
        reads ``R_outer``, ``R_inner`` and ``R_near`` at the round's ranks (``_radii``); each
        radius is the smallest any round gave, and ``eps_out`` comes from those
        (``_eps_out``). With ``n_certify="auto"`` an input stops after a round when another
        would lower none of the ``eps_out`` it can reach by ``n_certify_tolerance``
        (``rounds.another_round_pays``), or at the cap. Returns, per ``[input][metric]``, the
        radii, ``eps_out`` and the certification samples read, and the samples each input drew
        here (``N - n_check`` with shared check samples: the check's come first). Where the
        pairwise bound serves an ``eps_in`` (``paired[metric name]``), ``pairs`` holds
        ``R_pair`` (from the center samples, the same in every round) and ``R_inner`` /
        ``R_near`` are not read (``inf``)."""
        s = self.settings
        n_eps, last = eps.size, len(s.rounds) - 1
        dim = inputs.xs[0].numel()
        ranks = {
            m.name: [s.quantile_ranks(eps, m, dim, r, paired[m.name]) for r in range(last + 1)]
            for m in metrics
        }
        pursued = {name: bounds.reachable(at[-1], s.rounds[-1]) for name, at in ranks.items()}
        nothing = {name: np.full(n_eps, math.inf) for name in RADII}
        found = [[(nothing, np.full(n_eps, math.inf), 0) for _ in metrics] for _ in preds]
        ordered: list[list[torch.Tensor | None]] = [[None] * len(metrics) for _ in preds]
        if check_distances is not None:
            ordered = [
                [check_distances[i, j] for j in range(len(metrics))] for i in range(len(preds))
            ]
        drawn = [0] * len(preds)
        live = [i for i, row in enumerate(preds) if not all(p.abstained for p in row)]
        before = 0 if check_distances is None else check_distances.shape[2]
        for r, n in enumerate(s.rounds):
            if not live:
                break
            fresh = self._certify_distances(inputs, metrics, preds, live, n - before)
            going_on = []
            for row, i in enumerate(live):
                drawn[i] += n - before
                more = False
                for j, metric in enumerate(metrics):
                    if preds[i][j].abstained:
                        continue
                    kept = ordered[i][j]
                    so_far = fresh[row, j] if kept is None else torch.cat([kept, fresh[row, j]])
                    ordered[i][j] = sorted_so_far = torch.sort(so_far).values
                    radii = sorted_so_far.cpu().numpy()
                    serves = paired[metric.name]
                    pair = pairs[i][j] if pairs and serves.any() else None
                    at = self._radii(ranks[metric.name][r], radii, serves, pair)
                    best = {k: np.minimum(found[i][j][0][k], at[k]) for k in at}
                    found[i][j] = (best, self._eps_out(metric, best, serves), n)
                    if r < last:
                        ahead = rounds.scaled_ranks(ranks[metric.name][r + 1], s.rounds[r + 1], n)
                        expected = self._eps_out(
                            metric, self._radii(ahead, radii, serves, pair), serves
                        )
                        more |= rounds.another_round_pays(
                            found[i][j][1], expected, pursued[metric.name], s.n_certify_tolerance
                        )
                if more:
                    going_on.append(i)
            live, before = going_on, n
        return found, drawn

    def _certify_distances(
        self,
        inputs: PreparedInputs,
        metrics: list[Metric],
        preds: list[list[Prediction]],
        live: list[int],
        count: int,
    ) -> torch.Tensor:
        """Step 2: the distances from each accepted center to ``count`` fresh certification
        outputs of each input in ``live``, ``(len(live), metrics, count)`` (0 where the
        prediction abstained); only the distances are kept (one float per sample), never the
        outputs. The inputs' noise streams go on where they stand: after the check's samples,
        which with shared check samples are the first of the certification's."""
        shape = (len(live), len(metrics), count)
        distances = torch.zeros(shape, dtype=torch.float64, device=self.device)
        done = 0
        monitor = self._monitor(metrics)
        stream = self._stream(inputs.subset(live), count, "certify", monitor, metrics)
        for outputs in in_fixed_chunks(stream):  # the same distances whatever the batches
            size = batch_len(outputs[0])
            for row, (i, out) in enumerate(zip(live, outputs, strict=True)):
                for j, metric in enumerate(metrics):
                    if not preds[i][j].abstained:
                        point = preds[i][j].center
                        d = monitor.distances(distances_to(metric, point, out, check=False), out)
                        distances[row, j, done : done + size] = d.to(self.device, torch.float64)
            done += size
        monitor.raise_if_bad()  # the last chunk comes after the stream's own check
        return distances

    @staticmethod
    def _radii(
        ranks: bounds.QuantileRanks,
        radii: np.ndarray,
        paired: np.ndarray,
        pair: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Step 3: per ``eps_in``, ``R_outer``, ``R_inner`` and ``R_near`` as the sorted
        certification distances at their ranks (upper confidence bounds on the quantiles,
        ``bounds.quantile_rank``); ``inf`` where a rank exceeds the distances at hand. Where the
        pairwise bound serves (``paired``), ``R_outer`` and ``pair`` (``R_pair``) only."""
        n_eps = paired.size
        found = {name: np.full(n_eps, math.inf) for name in RADII}
        for e in range(n_eps):
            picked = {name: int(at[e]) for name, at in ranks._asdict().items() if at is not None}
            if paired[e]:
                picked = {"outer": picked["outer"]}
            if max(picked.values()) <= len(radii):
                for name, k in picked.items():
                    found[name][e] = float(radii[k - 1])
        if pair is not None:  # inf already where the pairwise bound does not serve
            found["pair"] = pair.copy()
        return found

    def _eps_out(
        self, metric: Metric, radii: dict[str, np.ndarray], paired: np.ndarray
    ) -> np.ndarray:
        """Step 4: ``eps_out`` per ``eps_in`` from the radii (``bounds.eps_out_from_radii``),
        with the pairwise bound where it serves (``paired``); ``inf`` where one it needs is
        infinite."""
        s = self.settings
        nearest = ("outer", "inner", "near") if s.nearest_candidate else ("outer", "inner")
        eps_out = np.full(radii["outer"].size, math.inf)
        for e in range(eps_out.size):
            needed = ("outer", "pair") if paired[e] else nearest
            if all(math.isfinite(radii[name][e]) for name in needed):
                at_e = {name: float(radii[name][e]) for name in bounds.QuantileRanks._fields}
                pair = float(radii["pair"][e]) if paired[e] else None
                eps_out[e] = bounds.eps_out_from_radii(
                    metric.gamma, **at_e, upper=metric.upper, pair=pair
                )
        return eps_out

    # ----------------------------------------------------------------------------- levels
    def quantile_levels(
        self, eps: np.ndarray, metric: Metric | None = None, dim: int | None = None
    ) -> bounds.QuantileLevels:
        """Quantile levels of ``R_outer``, ``R_inner`` and ``R_near`` per ``eps_in`` for
        ``metric`` (the smoother's by default; see ``SmoothingSettings.quantile_levels``)."""
        return self.settings.quantile_levels(eps, metric or self.metric, dim)

    def quantile_ranks(
        self,
        eps: np.ndarray,
        metric: Metric | None = None,
        dim: int | None = None,
        round_index: int = -1,
    ) -> bounds.QuantileRanks:
        """1-indexed ranks of ``R_outer``, ``R_inner`` and ``R_near`` among the ``N``
        certification distances (``N + 1``: that level cannot be bounded with these samples);
        with ``n_certify="auto"`` among a round's (the last by default)."""
        return self.settings.quantile_ranks(eps, metric or self.metric, dim, round_index)

    # ----------------------------------------------------------------------------- sampling
    def _inputs(self, xs: Sequence[Any], seeds: Sequence[int] | None) -> PreparedInputs:
        s = self.settings
        if seeds is not None:
            name = "seed" if len(seeds) == 1 else "seeds[{}]"
            seeds = [check_seed(seed, name.format(i)) for i, seed in enumerate(seeds)]
        return PreparedInputs.build(
            xs, seeds, s.seed, s.sigma, self.base_function, self.device, s.input_grid
        )

    def _monitor(self, metrics: list[Metric]) -> OutputMonitor:
        """The checks of one stage's outputs and distances (``sampling.OutputMonitor``)."""
        rounding = self.base_function.rounding_eps
        return OutputMonitor(self.device, metrics, rounding, self.settings.nan_outputs)

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
            self.base_function,
            inputs,
            n,
            batch_size,
            monitor,
            stage,
            self.progress,
            self._count_passes,
        )

    def _count_passes(self, n: int) -> None:
        """Report ``n`` forward passes to ``pass_counter`` (the runner's progress), if set."""
        if self.pass_counter is not None:
            self.pass_counter(n)

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
                held_bytes=self._distance_bytes(len(inputs.xs), len(metrics)),
                streams=len(inputs.xs),
                share=self.memory_share,
            )
        return self._auto_batch_sizes[key]

    def _distance_bytes(self, n_inputs: int, n_metrics: int) -> int:
        """The device memory the certification distances can take: float64 per sample (up to
        the last round's count), distance and input, twice (the sorted ones kept and the next
        round's fresh ones with their concatenation; ``_certify_rounds``)."""
        return 2 * 8 * self.settings.rounds[-1] * n_metrics * n_inputs

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"CenterSmoothing(metric={self.metric.name!r}, sigma={s.sigma}, "
            f"n=({s.n_center}, {s.n_check}, {s.n_certify!r}), bound={s.bound!r}, "
            + ("" if s.ball_mass == 0.5 else f"ball_mass={s.ball_mass}, ")
            + ("" if s.nearest_candidate else "nearest_candidate=False, ")
            + ("" if s.input_grid is None else f"input_grid={s.input_grid:g}, ")
            + ("" if s.share_check_samples else "share_check_samples=False, ")
            + ("" if s.pairwise_bound is None else f"pairwise_bound={s.pairwise_bound}, ")
            + f"device={str(self.device)!r})"
        )
