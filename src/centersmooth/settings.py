"""The settings of center smoothing, validated once, and what follows from them before any sample
is drawn: how ``alpha_center`` is split, ``Delta1``, each order statistic's share of
``alpha_certify``, the quantile levels and ranks per ``eps_in`` and the largest certifiable
``eps_in``. Sample counts with which the procedure could never accept or certify are refused
here, with the count that would work."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from . import bounds, grid_noise, pair_bound, rounds
from .metrics import Metric, available_metrics
from .metrics.base import is_real

EpsIn = float | Sequence[float] | np.ndarray
NAN_OUTPUTS = ("error", "outside")  # what an output holding a NaN or an infinity does
AUTO = "auto"  # n_certify="auto": certification samples in rounds, as each input needs them
PAIRED_STATISTICS = 2  # R_outer and R_pair share alpha_certify where the pairwise bound serves

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
    "share_check_samples": False,
    "pairwise_bound": False,
}


@dataclass(frozen=True)
class SmoothingSettings:
    """Every argument of ``CenterSmoothing`` that is a number or a switch (docs/algorithm.md
    gives their meaning), checked on construction, plus the derived levels (``init=False``)."""

    sigma: float = 0.25
    n_center: int = 10_000
    n_check: int = 10_000
    n_certify: int | str = 10_000  # or "auto"
    alpha_center: float = 0.005
    alpha_certify: float = 0.005
    delta: float = 0.05
    bound: bounds.Bound = "binomial"
    candidates: int | Mapping[str, int] | None = None
    central_candidates: bool = True
    batch_size: int | None = None
    seed: int | None = None
    ball_mass: float = 0.5
    nearest_candidate: bool = True
    check_metric: bool = True
    input_grid: float | None = None
    nan_outputs: str = "error"
    # the check's samples are the first n_check of the certification's (docs/algorithm.md,
    # "Shared check samples"); off: the certification draws n_certify samples after the check
    share_check_samples: bool = True
    # n_certify="auto": the most certification samples, and the share by which another round
    # must be expected to lower some eps_out for it to be drawn (docs/algorithm.md, "Samples
    # where an input needs them")
    n_certify_cap: int = rounds.DEFAULT_CAP
    n_certify_tolerance: float = rounds.DEFAULT_TOLERANCE
    # the radius at x' bounded between samples (docs/algorithm.md, "The pairwise bound"):
    # eps_out = gamma (R_outer + R_pair), R_pair from the first pair_rows center samples (the
    # rows) and the next pair_columns, at each eps_in within its reach. None: where the settings
    # allow it, for the distances that offer it (Metric.pair_default); True: every distance,
    # the settings must allow it; False: never
    pairwise_bound: bool | None = None
    pair_rows: int = pair_bound.PAIR_ROWS
    pair_columns: int = pair_bound.PAIR_COLUMNS
    # alpha_center's three parts: Delta1, the nearest candidate, the check
    alpha_delta1: float = field(init=False)
    alpha_nearest: float = field(init=False)
    alpha_check: float = field(init=False)
    delta1: float = field(init=False)  # margin of the optimal ball from the center samples
    alpha_quantile: float = field(init=False)  # each order statistic's share of alpha_certify
    # N, the certification samples whose distances give the order statistics: n_certify, or
    # max(n_check, n_certify) with share_check_samples (the check's samples are the first n_check);
    # with n_certify="auto" the most that may be drawn, n_certify_cap
    certification_samples: int = field(init=False)
    # the samples each round ends with, and the share of alpha_certify it spends: one round of
    # N at alpha_certify for a fixed n_certify (rounds.schedule, rounds.spend)
    rounds: tuple[int, ...] = field(init=False)
    round_alphas: tuple[float, ...] = field(init=False)
    max_eps_in: float = field(init=False)  # the largest eps_in N certification samples can certify
    # whether the pairwise bound serves any distance (pairwise_bound resolved)
    pairwise: bool = field(init=False)

    def __post_init__(self) -> None:
        _check_positive_real("sigma", self.sigma)
        if self.input_grid is not None:
            _check_positive_real("input_grid", self.input_grid)
            _check_grid_scale(float(self.sigma), float(self.input_grid))
            scale = grid_noise.noise_scale(float(self.sigma), float(self.input_grid))
            grid_noise.noise_table(scale)  # refuses a bad ratio
        auto = self.n_certify == AUTO
        for name in ("n_center", "n_check", "n_certify_cap"):
            _check_positive_int(name, getattr(self, name))
        if not auto:
            _check_positive_int("n_certify", self.n_certify, f" or {AUTO!r}")
        tolerance = self.n_certify_tolerance
        if not (is_real(tolerance) and 0.0 <= tolerance < 1.0):
            raise ValueError(f"n_certify_tolerance must lie in [0, 1), got {tolerance!r}")
        if auto and self.share_check_samples and self.n_certify_cap < self.n_check:
            raise ValueError(
                f"n_certify_cap={self.n_certify_cap} is below n_check={self.n_check}: with shared "
                "check samples the check's are the first of the certification's; raise the cap"
            )
        _check_positive_int("batch_size", 1 if self.batch_size is None else self.batch_size)
        for name in ("alpha_center", "alpha_certify"):
            level = getattr(self, name)
            if not (is_real(level) and 0.0 < level < 1.0):
                raise ValueError(f"{name} must lie in (0, 1), got {level!r}")
        if self.alpha_center + self.alpha_certify >= 1.0:
            raise ValueError(
                "alpha_center + alpha_certify must be below 1, got "
                f"{self.alpha_center + self.alpha_certify}"
            )
        if not (is_real(self.delta) and 0.0 < self.delta < 0.5):
            raise ValueError(f"delta must lie in (0, 0.5), got {self.delta!r}")
        if not (is_real(self.ball_mass) and self.delta < self.ball_mass <= 0.5):
            raise ValueError(
                f"ball_mass must lie in (delta, 1/2] = ({self.delta}, 0.5], got "
                f"{self.ball_mass!r}: the checked ball must keep a positive mass ball_mass - delta"
            )
        seed = None if self.seed is None else check_seed(self.seed)
        pairwise = _check_pairwise(self)
        if self.nan_outputs not in NAN_OUTPUTS:
            raise ValueError(
                f"nan_outputs must be one of {NAN_OUTPUTS}, got {self.nan_outputs!r}: 'error' "
                "stops on an output holding a NaN or an infinity, 'outside' counts it as an "
                "output outside every ball"
            )
        normal = {
            "sigma": float(self.sigma),
            "n_center": int(self.n_center),
            "n_check": int(self.n_check),
            "n_certify": AUTO if auto else int(self.n_certify),
            "alpha_center": float(self.alpha_center),
            "alpha_certify": float(self.alpha_certify),
            "delta": float(self.delta),
            "bound": bounds.check_bound(self.bound),
            "candidates": _check_candidates(self.candidates, int(self.n_center)),
            "central_candidates": bool(self.central_candidates),
            "batch_size": None if self.batch_size is None else int(self.batch_size),
            "seed": seed,
            "ball_mass": float(self.ball_mass),
            "nearest_candidate": bool(self.nearest_candidate),
            "check_metric": bool(self.check_metric),
            "input_grid": None if self.input_grid is None else float(self.input_grid),
            "nan_outputs": str(self.nan_outputs),
            "share_check_samples": bool(self.share_check_samples),
            "n_certify_cap": int(self.n_certify_cap),
            "n_certify_tolerance": float(tolerance),
            "pairwise_bound": None if self.pairwise_bound is None else bool(self.pairwise_bound),
            "pair_rows": int(self.pair_rows),
            "pair_columns": int(self.pair_columns),
        }
        for name, value in normal.items():
            object.__setattr__(self, name, value)
        alphas = bounds.split_center_alpha(
            self.n_center,
            self.alpha_center,
            self.fewest_candidates(),
            self.bound,
            self.ball_mass,
            self.nearest_candidate,
        )
        statistics = self.statistics
        derived = {
            "alpha_delta1": alphas.delta1,
            "alpha_nearest": alphas.nearest,
            "alpha_check": alphas.check,
            "delta1": bounds.delta1(self.n_center, alphas.delta1, self.bound, self.ball_mass),
            "alpha_quantile": self.alpha_certify / statistics,
            "pairwise": pairwise,
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)
        counts = self.round_counts(self.n_certify_cap)
        spent = rounds.spend(self.alpha_certify, len(counts))
        object.__setattr__(self, "rounds", counts)
        object.__setattr__(self, "round_alphas", spent)
        object.__setattr__(self, "certification_samples", counts[-1])
        largest = self.max_eps_in_for(counts[-1], spent[-1] / statistics)
        object.__setattr__(self, "max_eps_in", largest)
        self._check_sample_counts()

    # ----------------------------------------------------------------------------- candidates
    def candidates_for(self, metric: Metric) -> int | None:
        """How many samples the center search scores for ``metric`` (``None``: all of them)."""
        if isinstance(self.candidates, Mapping):
            return self.candidates.get(metric.name)
        return self.candidates

    def fewest_candidates(self) -> int | None:
        """The candidate count whose miss probability ``alpha_center`` pays for: the smallest in
        use, which covers every distance (all-pairs ones then pay a negligible extra)."""
        if isinstance(self.candidates, Mapping):
            return min(self.candidates.values())
        return self.candidates

    def check_candidate_names(self, metrics: list[Metric]) -> None:
        """Refuse per-distance candidate counts for names that are neither in use nor registered
        (a misspelt name would silently mean an all-pairs search)."""
        if isinstance(self.candidates, Mapping):
            in_use = [m.name for m in metrics]
            unknown = sorted(set(self.candidates) - set(in_use) - set(available_metrics()))
            if unknown:
                raise ValueError(
                    f"candidates names unknown distances {unknown}; in use: {in_use}, "
                    f"registered: {', '.join(available_metrics())}"
                )

    @property
    def auto(self) -> bool:
        """Whether the certification samples are drawn in rounds (``n_certify="auto"``)."""
        return self.n_certify == AUTO

    def round_counts(self, cap: int) -> tuple[int, ...]:
        """The samples each round ends with: ``auto_rounds(cap)`` for ``n_certify="auto"``, else
        the one round of ``N``."""
        if not self.auto:
            n = int(self.n_certify)
            return (max(self.n_check, n) if self.share_check_samples else n,)
        return self.auto_rounds(cap)

    def auto_rounds(self, cap: int) -> tuple[int, ...]:
        """The rounds of ``n_certify="auto"`` with the cap ``cap``, doubling up to it from the
        check's ``n_check`` samples with shared check samples (the check is the first round's
        start), else from ``rounds.FIRST_ROUND``."""
        first = self.n_check if self.share_check_samples else rounds.FIRST_ROUND
        return rounds.schedule(min(first, cap), cap)

    @property
    def forward_passes(self) -> int:
        """Forward passes of the base function an accepted input costs: the center samples, the
        check's and certification's samples (``N`` with shared check samples, else
        ``n_check + n_certify``) and the clean ``f(x)``; with ``n_certify="auto"``, those of
        its first round (the fewest)."""
        samples = self.rounds[0]
        if not self.share_check_samples:
            samples += self.n_check
        return self.n_center + samples + 1

    # ----------------------------------------------------------------------------- levels
    def grid_slack(self, dim: int | None = None) -> float:
        """With ``input_grid``, the total variation between the noise of an input of ``dim``
        coordinates and the rounded Gaussian the shift bound is proved for (0 without it; a
        bound for 2**31 coordinates when ``dim`` is ``None``)."""
        if self.input_grid is None:
            return 0.0
        return grid_noise.grid_slack(grid_noise.noise_scale(self.sigma, self.input_grid), dim)

    def nearest_mass(self, metric: Metric) -> float:
        """Mass at ``x'`` of a ball around the center that one of ``metric``'s sample candidates
        (all ``n_center`` samples, or the first ``candidates``) enters except with probability
        ``alpha_nearest``."""
        k = self.candidates_for(metric) or self.n_center
        return bounds.nearest_mass(self.alpha_nearest, k)

    def quantile_levels(
        self, eps: np.ndarray, metric: Metric, dim: int | None = None
    ) -> bounds.QuantileLevels:
        """``bounds.quantile_levels`` for these settings and ``metric`` (its candidate count
        sets ``R_near``'s level); with ``input_grid``, ``dim`` (the input's number of
        coordinates) sets ``grid_slack``. Where the pairwise bound serves an ``eps_in``, only
        ``R_outer``'s is read (``R_pair`` comes from the center samples)."""
        near = self.nearest_mass(metric) if self.nearest_candidate else None
        return bounds.quantile_levels(
            eps, self.sigma, self.delta, self.ball_mass, self.delta1, near, self.grid_slack(dim)
        )

    def quantile_ranks(
        self,
        eps: np.ndarray,
        metric: Metric,
        dim: int | None = None,
        round_index: int = -1,
        paired: np.ndarray | None = None,
    ) -> bounds.QuantileRanks:
        """1-indexed ranks of ``R_outer``, ``R_inner`` and ``R_near`` among the distances of a
        round (the last, or only, by default: ``N`` samples), each statistic at its share of
        the round's ``alpha`` (``n + 1``: that level cannot be bounded with these samples).
        Where the pairwise bound serves an ``eps_in`` (``paired``, as ``paired`` gives it),
        ``R_outer``'s rank is at half the round's ``alpha`` and the other two are not read."""
        levels = self.quantile_levels(eps, metric, dim)
        n = self.rounds[round_index]
        alpha = self.round_alphas[round_index]
        ranks = bounds.quantile_ranks(levels, n, alpha / self.statistics, self.bound)
        paired = self.paired(eps, metric, dim) if paired is None else paired
        if not np.any(paired):
            return ranks
        at_half = bounds.quantile_ranks(levels, n, alpha / PAIRED_STATISTICS, self.bound).outer
        outer = [h if p else k for k, h, p in zip(ranks.outer, at_half, paired, strict=True)]
        return ranks._replace(outer=outer)

    @property
    def statistics(self) -> int:
        """How many order statistics share each round's alpha where the pairwise bound does not
        serve (see ``bounds.order_statistics``); where it does, ``R_outer`` and ``R_pair`` share
        it (``PAIRED_STATISTICS``)."""
        return bounds.order_statistics(self.nearest_candidate, self.ball_mass)

    # ----------------------------------------------------------------------------- pairwise
    def pairwise_for(self, metric: Metric) -> bool:
        """Whether the pairwise bound serves ``metric``: with ``pairwise_bound=True`` every
        distance, by default those that offer it (``Metric.pair_default``), where the settings
        allow it."""
        return self.pairwise and (self.pairwise_bound is True or metric.pair_default)

    def paired(self, eps: np.ndarray, metric: Metric, dim: int | None = None) -> np.ndarray:
        """Per ``eps_in``, whether the pairwise bound serves it for ``metric``: where its ranks
        fit (``pair_bound.pair_fits``) and the nearest-candidate bound's fit the last round's
        samples, so that the pairwise bound never certifies an ``eps_in`` the other could not
        (``max_eps_in`` is the same for both). Elsewhere the nearest-candidate bound serves.
        The choice rests on the settings and ``eps_in`` only, fixed before any sample is drawn,
        so each certificate keeps the confidence of the bound that serves it
        (docs/algorithm.md, "Which bound serves each eps_in")."""
        eps = np.atleast_1d(np.asarray(eps, dtype=float))
        if not self.pairwise_for(metric):
            return np.zeros(eps.size, dtype=bool)
        levels = self.pair_levels(metric)
        fits = pair_bound.pair_fits(self.pair_ranks(eps, dim=dim, levels=levels), levels)
        nearest = self.quantile_ranks(eps, metric, dim, paired=np.zeros(eps.size, dtype=bool))
        return np.array(fits, dtype=bool) & bounds.reachable(nearest, self.rounds[-1])

    def pair_levels(self, metric: Metric | None = None) -> pair_bound.PairLevels:
        """The pairwise bound's levels for ``metric``'s sample candidates (all ``n_center``
        samples, or its ``candidates``; the fewest in use without ``metric``)."""
        k = self.fewest_candidates() if metric is None else self.candidates_for(metric)
        return self._pair_levels(k or self.n_center)

    def _pair_levels(self, k: int) -> pair_bound.PairLevels:
        return pair_bound.pair_levels(
            self.n_center,
            k,
            self.alpha_nearest,
            self.alpha_delta1,
            self.pair_rows,
            self.pair_columns,
            self.ball_mass,
        )

    def pair_ranks(
        self,
        eps: np.ndarray,
        metric: Metric | None = None,
        dim: int | None = None,
        levels: pair_bound.PairLevels | None = None,
    ) -> pair_bound.PairRanks:
        """Ranks of ``R_pair`` per ``eps_in`` (see ``pair_bound.pair_ranks``), at half of
        ``alpha_certify``, for ``levels`` (``metric``'s by default)."""
        return pair_bound.pair_ranks(
            eps,
            self.sigma,
            self.pair_levels(metric) if levels is None else levels,
            self.alpha_certify / 2.0,
            self.ball_mass,
            self.grid_slack(dim),
            self.bound,
        )

    def pair_max_eps_in(self) -> float:
        """Largest ``eps_in`` whose pairwise ranks fit, for every candidate count in use: beyond
        it (a report, like ``max_eps_in``) the nearest-candidate bound serves."""
        counts = {self.fewest_candidates() or self.n_center, self.n_center}
        return min(
            pair_bound.pair_max_eps(self.sigma, levels, partial(self.pair_ranks, levels=levels))
            for levels in map(self._pair_levels, counts)
        )

    def max_eps_in_for(self, n_certify: int, alpha_quantile: float | None = None) -> float:
        """Largest certifiable ``eps_in`` with ``n_certify`` certification samples (the
        ``certification_samples`` N of these settings; each order statistic at
        ``alpha_quantile``, these settings' by default)."""
        return bounds.max_certifiable_eps(
            self.sigma,
            n_certify,
            self.alpha_quantile if alpha_quantile is None else alpha_quantile,
            self.delta,
            self.bound,
            self.ball_mass,
            self.grid_slack(),
        )

    def abstain_reason(self, count: int, p_low: float) -> str | None:
        """Why a prediction whose check ball held ``count`` of the ``n_check`` samples (giving
        ``p_low``) abstains, with the cause its numbers show, or ``None`` when it accepts.

        A point estimate ``count / n_check`` above the level means the mass may well be above it
        and ``p_low`` fell within its sampling error: more check samples, with the count that
        bounds that share above the level (``bounds.check_samples_for``). A point estimate at or
        below the level means the center's ball holds too little: the outputs are spread."""
        level = bounds.check_level(self.ball_mass, self.delta)
        if self.delta1 > self.delta:
            return (
                f"Delta1={self.delta1:.4g} exceeds delta={self.delta:.4g}: more center samples "
                "(n_center) or a larger delta"
            )
        if p_low > level:
            return None
        share = count / self.n_check
        test = (
            f"the check bounded the mass of the center's ball below by p_low={p_low:.4g}, "
            f"which must exceed ball_mass - delta={level:.4g}; the ball held {count} of the "
            f"n_check={self.n_check} check samples ({share:.4g})"
        )
        need = bounds.check_samples_for(share, self.alpha_check, level, self.bound)
        if need is not None:
            return (
                f"{test}, above that level: p_low is within its sampling error of it. The cause "
                f"is the count: about n_check={need:,} check samples bound a share of "
                f"{share:.4g} above the level (or a larger delta)"
            )
        return (
            f"{test}, not above that level: the outputs under this noise are too spread out for "
            "a ball of the center's radius to hold that mass; a smaller sigma, a larger delta "
            "or more center samples (n_center)"
        )

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
        if self.max_eps_in < 0:
            need = bounds.min_certify_samples(self.alpha_quantile, self.delta, self.bound, mass)
            counts = f"n_certify={self.n_certify}"
            if self.auto:
                counts = f"n_certify_cap={self.n_certify_cap}"
            elif self.certification_samples != self.n_certify:
                counts = f"max(n_check, n_certify)={self.certification_samples}"
            raise ValueError(
                f"{counts} is too small to certify even eps_in=0 at "
                f"alpha_certify={self.alpha_certify}; use "
                f"{'n_certify_cap' if self.auto else 'n_certify'} >= {need}"
            )


def check_eps_in(eps_in: EpsIn) -> np.ndarray:
    """``eps_in`` as a 1-d float array of finite, non-negative radii (a clear error otherwise)."""
    if np.asarray(eps_in).dtype.kind not in "iuf":  # no strings, booleans or objects
        raise TypeError(f"eps_in must be a number or a sequence of numbers, got {eps_in!r}")
    eps = np.atleast_1d(np.asarray(eps_in, dtype=float))
    if eps.ndim != 1 or eps.size == 0:
        raise ValueError(f"eps_in must be a number or a 1-d sequence of numbers, got {eps_in!r}")
    if not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError(f"eps_in must be finite and non-negative, got {eps_in!r}")
    return eps


SEED_LIMIT = 2**64  # seeds are 64-bit words (NumPy's SeedSequence, torch's generators)


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an int in ``[0, 2**64)``, else a one-line error naming the argument
    (``TypeError`` for a value that is no integer, ``ValueError`` for one out of range)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{name} must be an integer in [0, 2**64) or None, got {seed!r}")
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"{name} must be an integer in [0, 2**64) or None, got {seed!r}")
    return int(seed)


# The smallest sigma / input_grid: below it the noise leaves nearly every coordinate where it is
# (a coordinate moves with probability 2 (1 - Phi(2)) = 4.6% at 1/4, 1e-23 at 1/20), and one grid
# step, the smallest perturbation on the grid, is beyond max_eps_in for any sample count in use
# (about 3.7 sigma at 10^5 certification samples, 5.6 sigma at 10^9).
MIN_GRID_SCALE = 0.25


def _check_grid_scale(sigma: float, grid: float) -> None:
    """Refuse a grid much coarser than the noise, naming the ratio and the likely slip (the
    number of levels, 255, written where the step 1/255 was meant)."""
    scale = sigma / grid
    if scale >= MIN_GRID_SCALE:
        return
    if grid >= 2 and abs(grid - round(grid)) < 1e-9:
        advice = f"did you mean input_grid=1/{round(grid)} (the step between levels)?"
    else:
        advice = "use a finer grid (the step between two input levels) or a larger sigma"
    shown = grid_noise.grid_text(grid)
    raise ValueError(
        f"sigma / input_grid = {scale:.2g} (sigma={sigma:g}, input_grid={shown}): the "
        f"grid is far coarser than the noise, which would almost never move an input by one "
        f"step, and no perturbation on the grid could be certified (that needs sigma / "
        f"input_grid >= {MIN_GRID_SCALE:g}); {advice}"
    )


def _check_pairwise(settings: SmoothingSettings) -> bool:
    """Whether the pairwise bound may serve (``pairwise_bound`` resolved): it spends the nearest
    candidate's shares of ``alpha_center``, splits the center samples into rows and the rest,
    and is proved for outputs that are all finite. ``pairwise_bound=True`` refuses settings
    without those; the default (``None``) then leaves it off."""
    value = settings.pairwise_bound
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"pairwise_bound must be True, False or None, got {value!r}")
    _check_positive_int("pair_rows", settings.pair_rows)
    _check_positive_int("pair_columns", settings.pair_columns)
    fits = settings.pair_rows + settings.pair_columns <= settings.n_center
    if value is None:
        return settings.nearest_candidate and settings.nan_outputs == "error" and fits
    if not value:
        return False
    if not settings.nearest_candidate:
        raise ValueError(
            "pairwise_bound=True needs nearest_candidate=True: it takes the nearest candidate's "
            "shares of alpha_center"
        )
    if settings.nan_outputs != "error":
        raise ValueError(
            "pairwise_bound=True is proved for finite outputs only: use nan_outputs='error' with it"
        )
    if not fits:
        raise ValueError(
            f"pair_rows + pair_columns = {settings.pair_rows + settings.pair_columns} exceeds "
            f"n_center={settings.n_center}: both are parts of the center samples"
        )
    return True


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


def _check_positive_int(name: str, value: Any, alternative: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer{alternative}, got {value!r}")
