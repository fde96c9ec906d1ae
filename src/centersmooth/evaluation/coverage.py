"""Coverage harness: how often do the certificates' statistical steps fail where the truth is known?

Each problem is a base function whose output distribution under the smoothing noise is known in
closed form (a linear map, a step function, a saturating clip) or estimated to high precision by
brute-force Monte Carlo (a small random network). For thousands of independent certifications we
count the events the guarantee rules out (docs/algorithm.md, "Certify (Algorithm 2)" and "The
nearest-candidate bound") and compare their frequency,
with a two-sided 95% Clopper-Pearson interval, against the level the procedure promises and, where
it can be computed, against the exact probability of the event.

Events, per certification at the clean input ``x`` (``zhat``, ``rho`` from Algorithm 1, ``R-hat``
from Algorithm 2, ``F_x(z, r) = P(d(z, f(x + delta)) <= r)`` the true ball mass):

* ``certify`` (per ``eps_in``): ``R-hat`` below the true ``p(eps_in)``-quantile of
  ``d(zhat, f(x + delta))``, i.e. ``F_x(zhat, R-hat) < p(eps_in)``. Promised level
  ``alpha_certify``; exact probability ``P(Bin(n_certify, F(q_p-)) >= k)``, which is the same
  for every center when the distances have no atoms.
* ``worst_mass`` (per ``eps_in``, where the worst shift is known): some ``x'`` with
  ``||x' - x|| <= eps_in`` gives ``B(zhat, R-hat)`` a mass below ``1/2 + delta``, the fact the proof
  derives from ``certify`` with the Gaussian shift lemma. Implied by ``certify``.
* ``predict``: the prediction is accepted but ``F_x(zhat, rho) <= 1/2 - delta``. Promised level
  ``alpha_center / 2`` (the check's share); its exact probability is estimated without counting
  noise by averaging, over independent center sets ``Z1``, the exact chance that the check accepts
  a ball of that mass (a Rao-Blackwellised estimate).
* ``radius`` (where the optimal radius is known): accepted with ``rho > 2 gamma r*``, ``r*`` the
  smallest radius of a ball of mass ``1/2 + Delta1``. Promised level: the ``Delta1`` share of
  ``alpha_center``.
* ``end_to_end`` (per ``eps_in``, where a worst direction is known): the smoothed function at an
  adversarial ``x'`` on the sphere ``||x' - x|| = eps_in`` does not abstain and its center is
  farther than ``eps_out`` from ``zhat``. Promised level ``alpha_center + alpha_certify``.

With the nearest-candidate bound (the default, docs/algorithm.md) the certificate has three order
statistics, each promising ``alpha_certify / 3``: ``certify`` (and ``worst_mass``) concern
``R_outer``, ``certify_inner`` does the same for ``R_inner`` (level ``ball_mass + Delta1``) and
``certify_near`` for ``R_near``; ``nearest`` (where ``end_to_end`` runs) counts an accepted
prediction at the adversarial ``x'`` whose radius exceeds ``gamma (R_near + R_inner)``, promised
at most ``alpha_center - alpha_check + 2 alpha_certify / 3``. With ``ball_mass = q`` below 1/2 the
levels move: ``predict`` counts a mass at most ``q - delta``, ``radius`` uses the ball of mass
``q + Delta1``, ``R_outer``'s level at ``x'`` is ``1 - q + delta``. In the paper's bound
(``nearest_candidate=False``) there is one statistic at ``alpha_certify`` (two at
``alpha_certify / 2`` below ``q = 1/2``).

Beside ``nearest``, two events concern balls around our own (random) center at ``x'``:
``zhat_inner_ball`` (``B(zhat, R_inner)`` holds fewer than ``ceil(q n_center)`` of the center
samples there) and ``zhat_near_ball`` (no sample candidate there lies in ``B(zhat, R_near)``).
With noise at ``x'`` independent of the certification they fail with at most the ``Delta1`` or
nearest share of ``alpha_center`` plus ``alpha_certify / 3``; the proof does not rely on them
(it goes through fixed balls), and with ``reuse_seed`` (the prediction at ``x'`` draws the
certification's noise, its events tagged ``same-seed``) nothing bounds them: their level is
``nan`` ("no promise"), while ``nearest`` and ``end_to_end`` keep theirs. With a reused seed
``x'`` is fixed in advance (from ``f(x)``, not from the certificate). The ``sine`` problem
(``coverage_problems.SineProblem``) is built to make ``zhat_inner_ball`` fail; it has no known
masses, so only the events at ``x'`` are counted for it.

With ``input_grid`` (the ``input-grid`` group) the input is put on the grid, the smoother draws
its exact lattice noise, and the problem is wrapped in ``coverage_problems.GridProblem``: the
closed forms hold for real Gaussian noise only, so its masses come from a reference of lattice
noise draws, and ``worst_mass`` and ``radius`` (which need the worst shift or the smallest ball
under that noise) are not counted. The certificate's levels include the grid slack of the input's
coordinates, as the certificate's do. The adversarial ``x'`` is a grid point within ``eps_in``
(``coverage_problems.snap_toward``), and the prediction there uses the same ``input_grid``.

The problems, with their exact masses, are in ``coverage_problems.py``. Run
``python -m centersmooth.evaluation.coverage --help``; ``results/coverage.md`` holds a full run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from .. import bounds, grid_noise
from ..center import find_center
from ..metrics import Metric
from ..planning import AbstentionRiskWarning, min_accepting_count
from ..sampling import finite_outputs
from ..settings import PAIRED_STATISTICS
from ..smoothing import CenterSmoothing
from .coverage_problems import DTYPE, PROBLEMS, GridProblem, NetworkProblem, Problem


# --------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Setting:
    """One configuration of the procedure, applied to one problem."""

    problem: str
    bound: str = "binomial"
    candidates: int | None = None  # None: all samples plus central candidates
    n_center: int = 200
    n_check: int = 400
    n_certify: int | str = 400  # or "auto": rounds from the check's 400 up to n_certify_cap
    alpha_center: float = 0.1
    alpha_certify: float = 0.1
    delta: float = 0.1
    eps_over_sigma: tuple[float, ...] = (0.25, 0.5, 1.0)
    ball_mass: float = 0.5
    nearest_candidate: bool = True
    # the prediction at the adversarial x' reuses the certification's seed (its noise) instead
    # of drawing its own; x' is then fixed in advance, not chosen from the certificate
    reuse_seed: bool = False
    # exact lattice noise: x on the grid input_grid * Z^d, CenterSmoothing(input_grid=...), the
    # problem wrapped in coverage_problems.GridProblem (truth from lattice-noise reference draws)
    input_grid: float | None = None
    # outputs holding a NaN: "outside" puts them outside every ball (the nan-linear problem)
    nan_outputs: str = "error"
    # the check's samples are the first n_check of the certification's (records from before the
    # switch existed ran with separate samples)
    share_check_samples: bool = False
    n_certify_cap: int = 3_200
    n_certify_tolerance: float = 0.01
    # the pairwise bound: R_pair from the first pair_rows center samples against the next
    # pair_columns (docs/algorithm.md, "The pairwise bound")
    pairwise_bound: bool = False
    pair_rows: int = 60
    pair_columns: int = 140

    @property
    def centers(self) -> str:
        centers = "all+central" if self.candidates is None else f"{self.candidates} candidates"
        if self.ball_mass != 0.5:
            centers += f", ball_mass {self.ball_mass:g}"
        if self.input_grid is not None:
            centers += f", input_grid {self.input_grid:g}"
        if self.nan_outputs != "error":
            centers += f", NaN {self.nan_outputs}"
        if self.share_check_samples:
            centers += ", shared check samples"
            if (self.n_center, self.delta) != (200, 0.1):  # the one that abstains half the time
                centers += f", n_center {self.n_center}, delta {self.delta:g}"
        if self.pairwise_bound:
            centers += f", pairwise bound ({self.pair_rows} x {self.pair_columns})"
        if self.n_certify == "auto":
            centers += (
                f", n_certify auto up to {self.n_certify_cap}, tolerance "
                f"{self.n_certify_tolerance:g}"
            )
        return centers if self.nearest_candidate else f"{centers}, paper's 3 R-hat"


@dataclass
class EventCount:
    """How often one event happened: ``count`` of ``trials``, against ``level`` and ``exact``."""

    event: str
    count: int = 0
    trials: int = 0
    level: float = math.nan  # the probability the procedure promises not to exceed
    exact: float | None = None  # the exact probability where computable (mean over trials)
    exact_note: str = ""

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        return clopper_pearson(self.count, self.trials, confidence)


@dataclass
class SettingResult:
    setting: Setting
    description: str
    trials: int
    abstained: int
    seconds: float
    events: list[EventCount] = field(default_factory=list)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> SettingResult:
        """A result as written by :meth:`to_json` (to rebuild a table from a JSONL file)."""
        setting = dict(record["setting"])
        setting["eps_over_sigma"] = tuple(setting["eps_over_sigma"])
        setting.setdefault("nearest_candidate", False)  # records from before that bound
        setting.setdefault("reuse_seed", False)
        setting.setdefault("input_grid", None)
        setting.setdefault("nan_outputs", "error")
        setting.setdefault("pairwise_bound", False)
        events = [
            EventCount(
                e["event"],
                e["count"],
                e["trials"],
                math.nan if e["level"] is None else e["level"],  # None: no promised level
                e["exact"],
                e["exact_note"],
            )
            for e in record["events"]
        ]
        return cls(
            Setting(**setting),
            record["description"],
            record["trials"],
            record["abstained"],
            record["seconds"],
            events,
        )

    def to_json(self) -> dict[str, Any]:
        rows = []
        for e in self.events:
            lo, hi = e.interval()
            row = {**asdict(e), "rate": e.count / max(e.trials, 1), "ci95": [lo, hi]}
            if math.isnan(e.level):
                row["level"] = None  # strict JSON: no promised level
            rows.append(row)
        return {
            "setting": asdict(self.setting),
            "description": self.description,
            "trials": self.trials,
            "abstained": self.abstained,
            "seconds": round(self.seconds, 1),
            "events": rows,
        }


def clopper_pearson(count: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    a = (1.0 - confidence) / 2.0
    lo = 0.0 if count == 0 else float(stats.beta.ppf(a, count, n - count + 1))
    hi = 1.0 if count == n else float(stats.beta.ppf(1.0 - a, count + 1, n - count))
    return lo, hi


def _center_set_draw(
    problem: Problem, smoother: CenterSmoothing, metric: Metric, gen: torch.Generator
) -> tuple[np.ndarray | None, float]:
    """Algorithm 1's center step on an independent ``Z1``: the center and its median radius.
    With ``input_grid`` the noise is the smoother's lattice noise (its table, a seed from
    ``gen``); with ``nan_outputs="outside"`` the search runs on the finite samples at the rank
    of all of them, as the smoother's (no center, radius ``inf``, when too few are finite)."""
    if smoother.input_grid is None:
        noise = torch.randn((smoother.n_center, *problem.x.shape), generator=gen, dtype=DTYPE)
        samples = problem.base_function(problem.x.unsqueeze(0) + smoother.sigma * noise)
    else:
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        lattice = grid_noise.snap_to_grid(problem.x, smoother.input_grid)
        stream = grid_noise.GridNoiseStream(
            lattice, smoother.input_grid, smoother.sigma, DTYPE, seed, smoother.n_center
        )
        samples = problem.base_function(stream.take(smoother.n_center))
    mass: float | None = smoother.ball_mass
    if smoother.nan_outputs == "outside":
        n_all = samples.shape[0]
        samples = finite_outputs(samples)
        mass = bounds.search_mass(n_all, samples.shape[0], smoother.ball_mass)
    if mass is None:
        return None, math.inf
    extra = metric.central_candidates(samples) if smoother.central_candidates else None
    k = smoother.candidates_for(metric)
    center = find_center(samples, metric, k, extra, mass)
    return np.asarray(center.point, dtype=np.float64), center.radius


class _Recorder:
    """The problem's base function, keeping the outputs of the calls made while ``on``."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.on = False
        self.outputs: list[torch.Tensor] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.fn(batch)
        if self.on:
            self.outputs.append(out)
        return out

    def start(self) -> None:
        self.on, self.outputs = True, []

    def stop(self) -> torch.Tensor:
        self.on = False
        return torch.cat(self.outputs)


def _smoother(setting: Setting, base_function: Any, problem: Problem) -> CenterSmoothing:
    """The procedure a setting runs, on ``base_function`` (the problem's, recorded)."""
    return CenterSmoothing(
        base_function,
        metric=problem.metric,
        sigma=problem.sigma,
        n_center=setting.n_center,
        n_check=setting.n_check,
        n_certify=setting.n_certify,
        alpha_center=setting.alpha_center,
        alpha_certify=setting.alpha_certify,
        delta=setting.delta,
        bound=setting.bound,
        candidates=setting.candidates,
        central_candidates=setting.candidates is None,
        batch_size=max(
            setting.n_center,
            setting.n_check,
            setting.n_certify_cap if setting.n_certify == "auto" else int(setting.n_certify),
        ),
        ball_mass=setting.ball_mass,
        nearest_candidate=setting.nearest_candidate,
        input_grid=setting.input_grid,
        nan_outputs=setting.nan_outputs,
        share_check_samples=setting.share_check_samples,
        n_certify_cap=setting.n_certify_cap,
        n_certify_tolerance=setting.n_certify_tolerance,
        pairwise_bound=setting.pairwise_bound,
        pair_rows=setting.pair_rows,
        pair_columns=setting.pair_columns,
    )


def run_setting(
    setting: Setting,
    problem: Problem,
    trials: int,
    seed: int = 0,
    end_to_end: bool = True,
) -> SettingResult:
    """``trials`` independent certifications of ``problem.x`` under ``setting``; count events.

    With ``setting.input_grid`` the problem must be a :class:`GridProblem` on that grid."""
    if setting.input_grid is not None and getattr(problem, "grid", None) != setting.input_grid:
        raise ValueError(
            f"input_grid={setting.input_grid!r} needs a GridProblem on that grid, got "
            f"{type(problem).__name__}"
        )
    recorder = _Recorder(problem.base_function)
    with warnings.catch_warnings():  # small counts that abstain often are the point here
        warnings.simplefilter("ignore", AbstentionRiskWarning)
        smoother = _smoother(setting, recorder, problem)
    metric = smoother.metric
    n_samples = smoother.certification_samples  # N: the order statistics' sample count
    mass = smoother.ball_mass
    eps = np.asarray(setting.eps_over_sigma) * problem.sigma
    dim = problem.x.numel()  # the grid slack of this input's coordinates (0 without a grid)
    levels = smoother.quantile_levels(eps, dim=dim)
    ranks = smoother.quantile_ranks(eps, dim=dim)
    # the eps_in the pairwise bound serves (R_outer at alpha_certify / 2, no R_inner or R_near);
    # the nearest-candidate bound serves the others (docs/algorithm.md, "Which bound serves")
    paired = smoother.settings.paired(eps, smoother.metric, dim)
    check_level = bounds.check_level(smoother.ball_mass, smoother.delta)
    c_min = min_accepting_count(smoother.n_check, smoother.alpha_check, check_level, smoother.bound)
    knows_mass = problem.knows_mass
    r_star = problem.optimal_radius(mass + smoother.delta1) if knows_mass else None
    knows_worst = knows_mass and problem.worst_mass(problem.f_at_x(), 1.0, 0.0) is not None
    e2e_index = len(eps) - 1  # one extra prediction per trial, at the largest eps_in
    anchor = problem.f_at_x()  # with a reused seed, x' must not depend on the noise: fixed here
    knows_adversary = (
        end_to_end and problem.adversarial_input(anchor, float(eps[e2e_index])) is not None
    )
    m = bounds.ball_rank(setting.n_center, mass)  # center samples a ball of mass + Delta1 holds
    k_near = smoother.candidates_for(metric) or setting.n_center  # sample candidates

    def level_tag(e: float) -> str:
        return f"eps_in={e / problem.sigma:g}sigma"

    def at_x_prime(name: str, level: float) -> EventCount:
        tag = level_tag(eps[e2e_index]) + (" same-seed" if setting.reuse_seed else "")
        return EventCount(f"{name} {tag}", level=level)

    # each eps_in's R_outer level: alpha_certify / 2 where the pairwise bound serves
    level = [smoother.alpha_certify / PAIRED_STATISTICS if p else smoother.alpha_quantile
             for p in paired]  # fmt: skip
    # the certificate's order statistics: (event name, Certificate field, levels, ranks, the
    # eps_in it is read at: R_inner and R_near not where the pairwise bound serves)
    everywhere, nearest_only = [True] * len(eps), [not p for p in paired]
    statistics = [("certify", "quantile_radius", levels.outer, ranks.outer, everywhere)]
    if levels.inner is not levels.outer:
        statistics.append(
            ("certify_inner", "inner_radius", levels.inner, ranks.inner, nearest_only)
        )
    if levels.near is not None and ranks.near is not None:
        statistics.append(("certify_near", "near_radius", levels.near, ranks.near, nearest_only))
    quantile_events = [
        [EventCount(f"{name} {level_tag(e)}", level=at) for e, at in zip(eps, level, strict=True)]
        for name, *_ in statistics
    ]
    exact_quantile = [[0.0] * len(eps) for _ in statistics]
    worst = [
        EventCount(f"worst_mass {level_tag(e)}", level=at) for e, at in zip(eps, level, strict=True)
    ]
    e2e = at_x_prime("end_to_end", setting.alpha_center + setting.alpha_certify)
    predict = EventCount("predict", level=smoother.alpha_check)
    with_near = smoother.nearest_candidate and not paired[e2e_index] and knows_adversary
    # rho(x') <= gamma (R_near + R_inner): Delta1 and the nearest candidate at x', the two
    # statistics at x; holds whether or not the run at x' reuses the noise of the run at x
    nearest = (
        at_x_prime(
            "nearest",
            smoother.alpha_center - smoother.alpha_check + 2 * smoother.alpha_quantile,
        )
        if with_near
        else None
    )

    # The two statements about balls around our (random) center that a proof through them
    # would need at x': B(zhat, R_inner) holds m of the center samples there, and a sample
    # candidate there lies in B(zhat, R_near). With the noise of x' independent of the run at x
    # they fail with at most these probabilities; with the same noise nothing bounds them
    # (level nan: no promise).
    def zhat_event(name: str, level: float) -> Any:
        if not with_near:
            return None
        return at_x_prime(name, math.nan if setting.reuse_seed else level)

    # rho(x') <= R_pair: a good sample candidate at x' whose ball holds m samples, and R_pair at
    # x (docs/algorithm.md, "The pairwise bound"); whatever noise the run at x' draws
    pair = (
        at_x_prime(
            "pair", smoother.alpha_center - smoother.alpha_check + smoother.alpha_certify / 2
        )
        if paired[e2e_index] and knows_adversary
        else None
    )
    zhat_inner = zhat_event("zhat_inner_ball", smoother.alpha_delta1 + smoother.alpha_quantile)
    zhat_near = zhat_event("zhat_near_ball", smoother.alpha_nearest + smoother.alpha_quantile)
    radius = EventCount(
        "radius", level=smoother.alpha_center - smoother.alpha_check - smoother.alpha_nearest
    )
    abstained = 0
    start = time.monotonic()
    for i in range(trials):
        trial_seed = seed * 1_000_003 + i
        cert = smoother.certify(problem.x, list(eps), seed=trial_seed)
        pred = cert.prediction
        if pred.abstained:
            abstained += 1
            continue
        z = np.asarray(cert.center, dtype=np.float64)
        q_hat = np.asarray(cert.quantile_radius, dtype=np.float64)
        eps_out = np.asarray(cert.eps_out, dtype=np.float64)
        if knows_mass:
            predict.count += int(problem.mass(z, pred.radius) <= mass - setting.delta)
            if r_star is not None:
                radius.count += int(pred.radius > 2.0 * metric.gamma * r_star + 1e-12)
        for j, e in enumerate(eps):
            if not math.isfinite(float(eps_out[j])):
                continue  # beyond what these samples certify
            for (_, field_name, ps, ks, read), evs, exact in zip(
                statistics, quantile_events, exact_quantile, strict=True
            ):
                if not knows_mass:
                    break
                if not read[j]:
                    continue
                r_hat = float(np.asarray(getattr(cert, field_name), dtype=np.float64)[j])
                evs[j].count += int(problem.mass(z, r_hat) < float(ps[j]))
                evs[j].trials += 1
                left = problem.quantile_left_mass(z, float(ps[j]))
                exact[j] += float(stats.binom.sf(ks[j] - 1, n_samples, left))
            if knows_worst:
                wm = problem.worst_mass(z, float(q_hat[j]), float(e))
                worst[j].count += int(wm is not None and wm < 1.0 - mass + setting.delta)
                worst[j].trials += 1
            if knows_adversary and j == e2e_index:
                x_adv = problem.adversarial_input(anchor if setting.reuse_seed else z, float(e))
                assert x_adv is not None
                adv_seed = trial_seed if setting.reuse_seed else trial_seed + 7_919_000_003
                recorder.start()
                adv = smoother.predict(x_adv, seed=adv_seed)
                outputs = recorder.stop()
                assert outputs.shape[0] == setting.n_center + setting.n_check
                zt = torch.as_tensor(z).reshape(1, *np.shape(z))
                e2e.trials += 1
                if nearest is not None and zhat_inner is not None and zhat_near is not None:
                    inner = float(np.asarray(cert.inner_radius)[j])
                    near = float(np.asarray(cert.near_radius)[j])
                    center_samples = outputs[: setting.n_center]
                    to_zhat = metric(zt.expand_as(center_samples), center_samples).numpy()
                    zhat_inner.trials += 1
                    zhat_inner.count += int(int((to_zhat <= inner).sum()) < m)
                    zhat_near.trials += 1
                    zhat_near.count += int(not bool((to_zhat[:k_near] <= near).any()))
                    if not adv.abstained:
                        nearest.trials += 1
                        nearest.count += int(adv.radius > metric.gamma * (near + inner) + 1e-12)
                if pair is not None and not adv.abstained:
                    pair.trials += 1
                    r_pair = float(np.asarray(cert.pair_radius)[j])
                    pair.count += int(adv.radius > r_pair + 1e-12)
                if not adv.abstained:
                    d = float(metric(zt, adv.center.reshape(1, *adv.center.shape))[0])
                    e2e.count += int(d > float(eps_out[j]))
    seconds = time.monotonic() - start
    accepted = trials - abstained
    events = []
    if knows_mass:
        # Rao-Blackwellised exact probability of the predict event, on independent center sets
        rb_gen = torch.Generator().manual_seed(seed * 1_000_003 + 999_999_937)
        rb = 0.0
        rb_trials = min(trials, 500)
        for _ in range(rb_trials):
            zc, rho = _center_set_draw(problem, smoother, metric, rb_gen)
            if zc is None:
                continue  # no ball holds the share: the prediction abstains
            mz = problem.mass(zc, rho)
            if mz <= mass - setting.delta and c_min <= setting.n_check:
                rb += float(stats.binom.sf(c_min - 1, setting.n_check, mz))
        seconds = time.monotonic() - start
        predict.trials = radius.trials = accepted
        predict.exact = rb / rb_trials
        predict.exact_note = f"Rao-Blackwellised over {rb_trials} independent Z1"
        for evs, exact in zip(quantile_events, exact_quantile, strict=True):
            for j, ev in enumerate(evs):
                ev.exact = exact[j] / max(ev.trials, 1)
                ev.exact_note = "P(Bin(N, F(q_p-)) >= k), mean over centers"
        events.append(predict)
        if r_star is not None:
            events.append(radius)
        for evs, (*_, ks, read) in zip(quantile_events, statistics, strict=True):
            evs, ks = (
                [ev for ev, r in zip(evs, read, strict=True) if r],
                [k for k, r in zip(ks, read, strict=True) if r],
            )
            if setting.share_check_samples:
                events += _shared_sample_events(evs, ks, n_samples, abstained, trials)
            else:
                events += evs
    if knows_worst:
        if setting.share_check_samples:  # unconditional, as the certify rows
            for ev, k in zip(worst, ranks.outer, strict=True):
                ev.trials += abstained if k <= n_samples else 0
        events += worst
    if knows_adversary:
        for extra in (zhat_inner, zhat_near, nearest, pair):
            if extra is not None:
                events.append(extra)
        if setting.share_check_samples:  # the guarantee is unconditional: abstaining is no failure
            e2e.trials += abstained
        events.append(e2e)
    return SettingResult(setting, problem.description, trials, abstained, seconds, events)


def _shared_sample_events(
    events: list[EventCount], ranks: list[int], n: int, abstained: int, trials: int
) -> list[EventCount]:
    """An order statistic's events with shared check samples, twice: over every trial (an
    abstention at ``x`` certifies nothing, so it is no violation: the unconditional guarantee,
    at the promised level) and over the accepted trials only, where acceptance, decided on the
    first ``n_check`` of the same samples, tilts the order statistics (``, given acceptance``:
    bounded by ``level / P(accept)``, ``P(accept)`` estimated by the acceptance rate). The exact
    binomial chance holds for neither (it ignores the tilt), so none is given."""
    accept_rate = (trials - abstained) / trials if trials else math.nan
    out = []
    for ev, k in zip(events, ranks, strict=True):
        certifiable = k <= n
        out.append(
            EventCount(
                ev.event,
                ev.count,
                ev.trials + (abstained if certifiable else 0),
                ev.level,
                None,
                "over all trials: an abstention at x is no violation",
            )
        )
        given = ev.level / accept_rate if accept_rate > 0 else math.nan
        out.append(
            EventCount(
                f"{ev.event}, given acceptance",
                ev.count,
                ev.trials,
                given,
                None,
                f"accepted trials only; level alpha / P(accept), P(accept) ~ {accept_rate:.3f}",
            )
        )
    return out


STANDARD_PROBLEMS = ("linear", "step", "clip", "network")  # problems with known masses
# radii on both sides of the pairwise bound's reach in the pairwise group (1.37 sigma with 140
# columns; the nearest-candidate bound serves 1.75 sigma)
BEYOND_PAIR_REACH = (0.5, 1.0, 1.75)


def default_settings(problems: Sequence[str], group: str = "all") -> list[Setting]:
    """The settings of a full run, in a fixed order (a setting's seed is its place in it).

    ``standard``: every problem with known masses under both bound families, with all samples +
    central candidates and in candidate mode (10 candidates, samples only). Hoeffding needs
    ``n_center >= 150`` for ``Delta1 <= 0.1`` at ``alpha = 0.05``, so both families use
    200 / 400 / 400 samples. Then each of these problems with ``ball_mass = 0.25`` (binomial,
    all + central). ``seed-reuse``, last (so the settings before keep their seeds): the sine
    problem at ``eps_in = sigma / 10`` (``delta = 0.35``) with the prediction at ``x'`` drawing
    its own noise and reusing the certification's seed, and the linear map with a reused seed.
    ``input-grid``, after them: each problem with known masses in the exact-noise mode,
    ``input_grid = GRID_STEP`` (binomial, all + central; the largest ``eps_in`` is 10 grid steps
    at sigma 0.5, 5 for the clip's sigma 0.25), then the linear map on the 8-bit image grid
    ``1/255``; each problem wrapped in
    :class:`~centersmooth.evaluation.coverage_problems.GridProblem`.
    ``nan-outputs``, last: the linear map with NaN outputs on 5% of the noise
    (``coverage_problems.NanProblem``), ``nan_outputs="outside"``, binomial with all + central
    and with 10 candidates, and Hoeffding with all + central.
    ``all``: every group.
    """
    if group not in SETTING_GROUPS:
        raise ValueError(f"group must be one of {SETTING_GROUPS}, got {group!r}")
    standard = [p for p in problems if p in STANDARD_PROBLEMS]
    half = [
        Setting(problem=p, bound=b, candidates=k)
        for p in standard
        for b in ("binomial", "hoeffding")
        for k in (None, 10)
    ]
    # the sine problem's x' is at eps_in = sigma / 10; delta = 0.35 keeps its check from
    # abstaining (its center is much nearer to its own samples than to fresh ones)
    reuse = [
        Setting(problem="sine", eps_over_sigma=(0.1,), delta=0.35, reuse_seed=False),
        Setting(problem="sine", eps_over_sigma=(0.1,), delta=0.35, reuse_seed=True),
        Setting(problem="linear", reuse_seed=True),
    ]
    settings = []
    if group in ("all", "standard"):
        settings += half + [Setting(problem=p, ball_mass=0.25) for p in standard]
    if group in ("all", "seed-reuse"):
        settings += [s for s in reuse if s.problem in problems]
    if group in ("all", "input-grid"):
        settings += [Setting(problem=p, input_grid=GRID_STEP) for p in standard]
        if "linear" in problems:  # the 8-bit image grid: eps_in = sigma / 4 is 32 grid steps
            settings.append(Setting(problem="linear", input_grid=1 / 255))
    if group in ("all", "nan-outputs") and "nan-linear" in problems:
        settings += [
            Setting(problem="nan-linear", bound=b, candidates=k, nan_outputs="outside")
            for b, k in (("binomial", None), ("binomial", 10), ("hoeffding", None))
        ]
    if group in ("all", "shared-samples"):
        settings += shared_sample_settings(standard)
    if group in ("all", "auto-samples"):
        settings += auto_sample_settings(problems)
    if group in ("all", "pairwise"):
        settings += pairwise_settings(problems)
    return settings


def pairwise_settings(problems: Sequence[str]) -> list[Setting]:
    """The ``pairwise`` group: the pairwise bound (60 rows against 140 columns of the 200 center
    samples) on every problem with known masses, all + central and 10 candidates, with shared
    check samples (the defaults' mode), at the standard radii (all within its reach, about 1.37
    sigma here) and at 0.5, 1 and 1.75 sigma, where the nearest-candidate bound serves the last
    (``end_to_end`` and ``nearest`` are then measured at 1.75 sigma; these come last, so that
    the settings before keep their seeds); the linear map with a prediction at ``x'`` that
    reuses the certification's seed; the sine problem, whose reused seed defeats statements
    about balls around our center, both ways."""
    standard = [p for p in problems if p in STANDARD_PROBLEMS]
    pairwise = [
        Setting(problem=p, candidates=k, pairwise_bound=True, share_check_samples=True)
        for p in standard
        for k in (None, 10)
    ]
    if "linear" in problems:
        pairwise.append(
            Setting(problem="linear", pairwise_bound=True, share_check_samples=True,
                    reuse_seed=True)
        )  # fmt: skip
    if "sine" in problems:
        pairwise += [
            Setting(problem="sine", eps_over_sigma=(0.1,), delta=0.35, reuse_seed=reuse,
                    pairwise_bound=True, share_check_samples=True)
            for reuse in (False, True)
        ]  # fmt: skip
    pairwise += [
        Setting(problem=p, candidates=k, pairwise_bound=True, share_check_samples=True,
                eps_over_sigma=BEYOND_PAIR_REACH)
        for p in standard
        for k in (None, 10)
    ]  # fmt: skip
    return pairwise


def auto_sample_settings(problems: Sequence[str]) -> list[Setting]:
    """The ``auto-samples`` group: ``n_certify="auto"`` with shared check samples, rounds of
    400 (the check's), 800, 1,600 and 3,200. The rare far mode (``coverage_problems.
    RareModeProblem``) at ``eps_in = sigma`` and ``2 sigma``, where ``R_outer``'s level lies just
    inside a mode the first rounds often do not see; the linear map at the standard radii.
    Each with the default tolerance (1%) and with 0, which draws another round wherever one is
    expected to lower an ``eps_out`` at all: the reported statistic is the smallest over the
    rounds drawn, so it fails where any of them does, the most a stopping rule could get out
    of these rounds."""
    auto = []
    for problem, radii in (("rare-mode", (1.0, 2.0)), ("linear", (0.25, 0.5, 1.0))):
        if problem in problems:
            auto += [
                Setting(problem=problem, n_certify="auto", share_check_samples=True,
                        eps_over_sigma=radii, n_certify_tolerance=tolerance)
                for tolerance in (0.01, 0.0)
            ]  # fmt: skip
    return auto


def shared_sample_settings(problems: Sequence[str]) -> list[Setting]:
    """The ``shared-samples`` group: the check's samples are the first ``n_check`` of the
    certification's. With 400 / 400 the check's samples are all of them (``N = n_check``), the
    strongest tilt acceptance can give the order statistics. Per problem: binomial all +
    central, 10 candidates, Hoeffding, ``ball_mass = 0.25``; then the linear map with the
    paper's bound, on the grid, and where its check accepts about half the time
    (``n_center = 1,000``, ``delta = 0.04``: 47 of 100 seeds accepted), which measures the
    failure rate given acceptance."""
    shared = [
        Setting(problem=p, bound=b, candidates=k, ball_mass=m, share_check_samples=True)
        for p in problems
        for b, k, m in (("binomial", None, 0.5), ("binomial", 10, 0.5), ("hoeffding", None, 0.5),
                        ("binomial", None, 0.25))
    ]  # fmt: skip
    if "linear" in problems:
        shared += [
            Setting(problem="linear", nearest_candidate=False, share_check_samples=True),
            Setting(problem="linear", input_grid=GRID_STEP, share_check_samples=True),
            Setting(problem="linear", n_center=1_000, delta=0.04, share_check_samples=True),
        ]
    return shared


SETTING_GROUPS = (
    "all",
    "standard",
    "seed-reuse",
    "input-grid",
    "nan-outputs",
    "shared-samples",
    "auto-samples",
    "pairwise",
)
GRID_STEP = 0.05  # the input-grid group's grid: sigma / grid = 10 (5 for the clip problem)


def build_problem(setting: Setting) -> Problem:
    """The problem a setting runs on: wrapped in ``GridProblem`` with ``input_grid``."""
    if setting.input_grid is None:
        return PROBLEMS[setting.problem]()
    if setting.problem == "network":  # the wrapper draws its own reference: keep this one small
        return GridProblem(NetworkProblem(n_reference=10_000), setting.input_grid)
    return GridProblem(PROBLEMS[setting.problem](), setting.input_grid)


def markdown_table(results: Sequence[SettingResult]) -> str:
    lines = [
        "| problem | bound | centers | trials | abstained | event | violations | rate | 95% CP "
        "interval | promised level | exact probability | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        s = res.setting
        for e in res.events:
            lo, hi = e.interval()
            exact = "" if e.exact is None else f"{e.exact:.4g}"
            if math.isnan(e.level):
                verdict = "no promise"
            else:
                verdict = "within level" if lo <= e.level else "**exceeds level**"
            if e.exact is not None and e.trials > 0 and not lo <= e.exact <= hi:
                verdict += "; **off exact**"
            rate = e.count / e.trials if e.trials else math.nan
            promised = "-" if math.isnan(e.level) else f"{e.level:.4g}"
            lines.append(
                f"| {s.problem} | {s.bound} | {s.centers} | {e.trials} | {res.abstained} | "
                f"{e.event} | {e.count} | {rate:.4f} | [{lo:.4f}, {hi:.4f}] | {promised} | "
                f"{exact} | {verdict} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m centersmooth.evaluation.coverage",
        description="Coverage of center smoothing's certificates on problems with known truth.",
    )
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--trials", type=int, default=2000, help="certifications per setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bounds", nargs="+", default=["binomial", "hoeffding"])
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the x' predictions")
    parser.add_argument(
        "--group",
        choices=SETTING_GROUPS,
        default="all",
        help="standard: the problems with known masses; seed-reuse: predictions at x' that reuse "
        "the certification's seed (and their control); input-grid: the problems with known "
        "masses with inputs on a grid and exact lattice noise (input_grid); nan-outputs: a "
        "linear map with NaN outputs, put outside every ball (nan_outputs='outside'); "
        "shared-samples: the check's samples the first of the certification's, one setting "
        "accepting about half the time; auto-samples: n_certify='auto' on a rare far mode and "
        "the linear map, with a stopping rule as greedy as it gets; pairwise: the pairwise "
        "bound; all: every group",
    )
    parser.add_argument("--jsonl", type=Path, help="write one JSON line per setting here")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the settings already in --jsonl, run the others and append them",
    )
    parser.add_argument("--markdown", type=Path, help="write the results table here")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error(f"--trials must be a positive integer, got {args.trials}")
    torch.set_num_threads(1)  # tiny tensors: thread start-up dominates otherwise
    settings = [s for s in default_settings(args.problems, args.group) if s.bound in args.bounds]
    results: list[SettingResult] = []
    if args.resume:
        if args.jsonl is None or not args.jsonl.is_file():
            parser.error("--resume needs an existing --jsonl file")
        lines = args.jsonl.read_text().splitlines()
        results = [SettingResult.from_json(json.loads(line)) for line in lines if line.strip()]
        done = {res.setting for res in results}
        settings = [s for s in settings if s not in done]
    built: dict[tuple[str, float | None], Problem] = {}
    every_setting = default_settings(list(PROBLEMS))
    for k, setting in enumerate(settings):
        key = (setting.problem, setting.input_grid)
        if key not in built:
            built[key] = build_problem(setting)
        # a setting's seed follows from its place in the full list, so a subset (--problems,
        # --bounds) or a --resume run draws what the full run draws, and no two settings share
        seed = args.seed + every_setting.index(setting)
        res = run_setting(setting, built[key], args.trials, seed, not args.no_end_to_end)
        results.append(res)
        print(
            f"{setting.problem:8s} {setting.bound:9s} {setting.centers:14s} "
            f"{res.trials} trials, {res.abstained} abstained, {res.seconds:.0f}s",
            file=sys.stderr,
            flush=True,
        )
        if args.jsonl:
            with args.jsonl.open("a" if k or args.resume else "w") as fh:
                fh.write(json.dumps(res.to_json()) + "\n")
    table = markdown_table(results)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
