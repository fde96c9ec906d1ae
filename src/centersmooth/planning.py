"""Planning a run before drawing a sample: what given counts can certify, the counts a requested
``eps_in`` needs, and how likely a well-behaved input is to abstain at the chosen ``n_check``.

Pure arithmetic on the settings and the bounds (``centersmooth plan`` prints it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from . import bounds, rounds
from .bounds import reachable
from .center import outside_caller
from .settings import SmoothingSettings


def certifies(settings: SmoothingSettings, eps_in: float, n: int, alpha: float) -> bool:
    """Whether ``n`` certification samples, each order statistic at ``alpha``, certify
    ``eps_in``: the certificate's own test, every rank within ``n`` (``bounds.quantile_ranks``
    on the levels rounded up by ``bounds.quantile_levels``), for the distance with the fewest
    sample candidates (the highest ``R_near`` level) and the grid slack of the largest input
    (``SmoothingSettings.grid_slack``). ``max_eps_in`` solves the same test in closed form
    without the rounding margins, so near its edge only this says what a certificate will do."""
    near = None
    if settings.nearest_candidate:
        k = settings.fewest_candidates() or settings.n_center
        near = bounds.nearest_mass(settings.alpha_nearest, k)
    levels = bounds.quantile_levels(
        np.array([float(eps_in)]),
        settings.sigma,
        settings.delta,
        settings.ball_mass,
        settings.delta1,
        near,
        settings.grid_slack(),
    )
    return bool(reachable(bounds.quantile_ranks(levels, n, alpha, settings.bound), n)[0])


def certify_samples_needed(settings: SmoothingSettings, eps_in: float) -> int | None:
    """The fewest certification samples ``N`` with which one round (each order statistic at
    ``alpha_certify`` shared as in these settings) certifies ``eps_in`` (``certifies``: the
    certificate's ranks, rounded as it rounds them). ``None`` beyond 2^50."""
    alpha = settings.alpha_certify / settings.statistics
    return _smallest(lambda n: certifies(settings, eps_in, n, alpha))


def cap_needed(settings: SmoothingSettings, eps_in: float) -> int | None:
    """The smallest ``n_certify_cap`` with which ``n_certify="auto"`` can certify ``eps_in``:
    its last round, at the share of ``alpha_certify`` the schedule leaves it, must reach the
    level (a few percent above ``certify_samples_needed``; ``certifies``); with shared check
    samples at least ``n_check``, where the rounds start. ``None`` beyond 2^50."""
    floor = settings.n_check if settings.share_check_samples else 1
    found = _smallest(lambda cap: auto_certifies(settings, eps_in, cap))
    return None if found is None else max(found, floor)


def auto_certifies(settings: SmoothingSettings, eps_in: float, cap: int) -> bool:
    """Whether ``n_certify="auto"`` with the cap ``cap`` can certify ``eps_in``: its last round
    (the most samples; the earlier ones have at most half as many for at most all of
    ``alpha_certify``) passes ``certifies`` at its share of ``alpha_certify``."""
    counts = settings.auto_rounds(cap)
    alpha = rounds.spend(settings.alpha_certify, len(counts))[-1] / settings.statistics
    return certifies(settings, eps_in, counts[-1], alpha)


def auto_max_eps_in(settings: SmoothingSettings, cap: int) -> float:
    """The largest ``eps_in`` ``n_certify="auto"`` certifies with the cap ``cap`` (in closed
    form, a report like ``max_eps_in``; ``auto_certifies`` decides)."""
    counts = settings.auto_rounds(cap)
    alpha = rounds.spend(settings.alpha_certify, len(counts))[-1] / settings.statistics
    return settings.max_eps_in_for(counts[-1], alpha)


def _smallest(holds: Callable[[int], bool], limit: int = 2**50) -> int | None:
    """The smallest count where ``holds`` (``bounds.smallest_count``), ``None`` past ``limit``."""
    return bounds.smallest_count(holds, limit)


def samples_needed_text(settings: SmoothingSettings, over: Sequence[float]) -> str:
    """What each ``eps_in`` beyond ``max_eps_in`` would need: a fixed ``n_certify`` (the ``N``
    of ``certify_samples_needed``), and with ``n_certify="auto"`` the cap (``cap_needed``)."""
    parts = []
    for e in over:
        if settings.auto:
            parts.append(
                f"eps_in {e:g} needs n_certify_cap >= {_count(cap_needed(settings, e))} (a fixed "
                f"n_certify >= {_count(certify_samples_needed(settings, e))})"
            )
        else:
            parts.append(
                f"eps_in {e:g} needs n_certify >= {_count(certify_samples_needed(settings, e))}"
            )
    return "; ".join(parts)


def uncertifiable_message(settings: SmoothingSettings, eps: np.ndarray) -> str | None:
    """What to say before a run about the ``eps_in`` beyond ``max_eps_in`` (``None`` when there
    are none), with the counts each would need."""
    over = [float(e) for e in eps if e > settings.max_eps_in]
    if not over:
        return None
    largest = settings.max_eps_in
    if settings.auto:
        counts = f"up to n_certify_cap={settings.n_certify_cap:,} certification samples"
    else:
        counts = f"N={settings.certification_samples:,} certification samples"
    return (
        f"eps_in {', '.join(f'{e:g}' for e in over)} exceeds the largest certifiable radius "
        f"max_eps_in={largest:.4g} ({largest / settings.sigma:.3g} sigma) with {counts}: "
        f"{samples_needed_text(settings, over)}, or a larger sigma (max_eps_in grows in "
        "proportion). Its eps_out is inf"
    )


def _count(n: int | None) -> str:
    return "more than 10^15" if n is None else f"{n:,}"


# ----------------------------------------------------------------------------- abstentions
ABSTAIN_WARNING = 0.02  # settings whose check abstains more often under the model are warned


class AbstentionRiskWarning(UserWarning):
    """The check abstains on more than ``ABSTAIN_WARNING`` of well-behaved inputs at these
    counts (``abstain_chance``); the message gives the ``n_check`` that brings it below."""


def min_accepting_count(n_check: int, alpha: float, level: float, bound: bounds.Bound) -> int:
    """The fewest of ``n_check`` check samples inside the center's ball with which the check
    accepts (``p_low > level``); ``n_check + 1`` when none does."""
    if bounds.mass_lower_bound(n_check, n_check, alpha, bound) <= level:
        return n_check + 1
    lo, hi = -1, n_check  # p_low(lo) <= level < p_low(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bounds.mass_lower_bound(mid, n_check, alpha, bound) > level:
            hi = mid
        else:
            lo = mid
    return hi


def abstain_chance(settings: SmoothingSettings, n_check: int | None = None) -> float:
    """The chance that the check abstains on a well-behaved input, under this model: the
    center is fixed before its samples are drawn and the distances to it have no atoms, so the
    true mass of its ball (radius the ``m``-th smallest of ``n_center`` distances,
    ``m = ceil(ball_mass n_center)``) is the ``m``-th order statistic of ``n_center`` uniforms,
    ``Beta(m, n_center - m + 1)``; the check counts the ``n_check`` samples in the ball,
    ``Bin(n_check, mass)``, and accepts from ``min_accepting_count`` on. The count is then
    beta-binomial. A center chosen by minimising the median over its own samples fits them,
    and its ball holds less of fresh samples than of its own: real inputs abstain more often
    than this. ``Delta1 > delta`` (which the settings refuse) would abstain always."""
    n = settings.n_check if n_check is None else n_check
    m = bounds.ball_rank(settings.n_center, settings.ball_mass)
    level = bounds.check_level(settings.ball_mass, settings.delta)
    c_min = min_accepting_count(n, settings.alpha_check, level, settings.bound)
    if c_min > n:
        return 1.0
    return float(stats.betabinom.cdf(c_min - 1, n, m, settings.n_center - m + 1))


def check_samples_needed(
    settings: SmoothingSettings, target: float = ABSTAIN_WARNING
) -> int | None:
    """The fewest check samples with which ``abstain_chance`` is at most ``target`` (doubling,
    then bisection); ``None`` when no count up to 2^30 reaches it (the center samples'
    ``Beta`` spread alone exceeds it: more ``n_center`` then)."""
    return _smallest(lambda n: abstain_chance(settings, n) <= target, limit=2**30)


def warn_abstention_risk(settings: SmoothingSettings) -> None:
    """Warn (``AbstentionRiskWarning``) when the check is likely to abstain at these counts."""
    chance = abstain_chance(settings)
    if chance <= ABSTAIN_WARNING:
        return
    need = check_samples_needed(settings)
    fix = (
        f"n_check >= {need:,} brings it to {ABSTAIN_WARNING:.0%}"
        if need is not None
        else "more n_center (the spread of the center's ball) or a larger delta"
    )
    warnings.warn(
        f"with n_center={settings.n_center:,} and n_check={settings.n_check:,} the check "
        f"abstains on about {chance:.1%} of well-behaved inputs (more on most real ones, "
        f"see planning.abstain_chance): {fix}",
        AbstentionRiskWarning,
        stacklevel=outside_caller(),
    )


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class RadiusPlan:
    """What one requested ``eps_in`` needs."""

    eps_in: float
    certifiable: bool  # with these counts (the certificate's ranks: ``certifies``)
    samples_needed: int | None  # a fixed N (certification samples) that certifies it
    cap_needed: int | None  # the n_certify_cap with which n_certify="auto" certifies it


@dataclass(frozen=True)
class Plan:
    """``plan``'s answers for one set of settings."""

    settings: SmoothingSettings
    forward_passes: int  # per accepted certificate (auto: its first round)
    abstained_passes: int  # per input that abstains after the check
    max_eps_in: float
    radii: list[RadiusPlan]
    abstain_chance: float
    check_samples_for_target: int | None  # n_check with abstain_chance <= ABSTAIN_WARNING
    # the largest eps_in the pairwise bound serves (None where it is off), for the distances it
    # serves; the nearest-candidate bound serves the rest, up to max_eps_in
    pair_reach: float | None = None

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "sigma": s.sigma,
            "n_center": s.n_center,
            "n_check": s.n_check,
            "n_certify": s.n_certify,
            "certification_samples": s.certification_samples,
            "share_check_samples": s.share_check_samples,
            "forward_passes": self.forward_passes,
            "abstained_passes": self.abstained_passes,
            "max_eps_in": self.max_eps_in,
            "pair_reach": self.pair_reach,
            "abstain_chance": self.abstain_chance,
            "check_samples_for_target": self.check_samples_for_target,
            "radii": [vars(r) for r in self.radii],
        }


def plan(settings: SmoothingSettings, eps_in: Sequence[float]) -> Plan:
    """Everything ``centersmooth plan`` says, before any sample is drawn: the forward passes
    per certificate, the largest certifiable ``eps_in``, per requested ``eps_in`` whether these
    counts certify it and the counts that would (a fixed ``N``; the cap of
    ``n_certify="auto"``), and the chance that a well-behaved input abstains
    (``abstain_chance``) with the ``n_check`` that keeps it below ``ABSTAIN_WARNING``."""
    radii = [
        RadiusPlan(
            float(e),
            certifies(
                settings,
                float(e),
                settings.rounds[-1],
                settings.round_alphas[-1] / settings.statistics,
            ),
            certify_samples_needed(settings, float(e)),
            cap_needed(settings, float(e)),
        )
        for e in eps_in
    ]
    return Plan(
        settings,
        settings.forward_passes,
        settings.n_center + settings.n_check + 1,
        settings.max_eps_in,
        radii,
        abstain_chance(settings),
        check_samples_needed(settings),
        min(settings.pair_max_eps_in(), settings.max_eps_in) if settings.pairwise else None,
    )


def _pair_reach_line(result: Plan) -> list[str]:
    """Which bound serves which ``eps_in`` (docs/algorithm.md, "Which bound serves each
    eps_in")."""
    s, reach = result.settings, result.pair_reach
    if reach is None:
        return [
            "bound: the nearest-candidate bound" if s.nearest_candidate else "bound: the paper's"
        ]
    which = (
        "every distance; the nearest-candidate bound beyond it"
        if s.pairwise_bound
        else "the distances between vectors and images; the nearest-candidate bound beyond it "
        "and for the others"
    )
    at = f"eps_in {reach:.4g} ({reach / s.sigma:.3g} sigma)"
    return [f"bound: the pairwise bound up to {at} for {which}"]


def format_plan(result: Plan) -> str:
    """The plan as text for the shell."""
    s = result.settings
    if s.auto:
        counts = (
            f"n_certify auto (rounds of {', '.join(f'{n:,}' for n in s.rounds[:3])}, ... up to "
            f"{s.n_certify_cap:,})"
        )
    else:
        counts = f"n_certify {int(s.n_certify):,}"
    samples = (
        "the check's samples are the first of the certification's"
        if s.share_check_samples
        else "separate check and certification samples"
    )
    lines = [
        f"sigma {s.sigma:g}, n_center {s.n_center:,}, n_check {s.n_check:,}, {counts}; "
        f"{samples}; {s.bound} bounds, alpha_center {s.alpha_center:g}, alpha_certify "
        f"{s.alpha_certify:g}, delta {s.delta:g}",
        f"forward passes per certificate: {result.forward_passes:,}"
        + (" (the first round; more where an input needs them)" if s.auto else "")
        + f"; {result.abstained_passes:,} for an input that abstains after the check",
        f"largest certifiable eps_in: {result.max_eps_in:.4g} "
        f"({result.max_eps_in / s.sigma:.3g} sigma)",
        *_pair_reach_line(result),
        "",
        "  eps_in  eps_in/sigma  certified with these counts  certification samples N it needs  "
        "n_certify_cap for auto",
    ]
    for r in result.radii:
        lines.append(
            f"{r.eps_in:8.4g}  {r.eps_in / s.sigma:12.3g}  {'yes' if r.certifiable else 'no':>27}"
            f"  {_count(r.samples_needed):>35}  {_count(r.cap_needed):>22}"
        )
    fix = result.check_samples_for_target
    lines += [
        "",
        f"chance that a well-behaved input abstains: {result.abstain_chance:.2g}"
        + (
            f" (n_check >= {fix:,} keeps it at {ABSTAIN_WARNING:.0%} or less)"
            if fix is not None
            else " (no n_check brings it to 2%: more n_center or a larger delta)"
        ),
        "  model: the center's ball has the true mass of the ball_mass order statistic of "
        "n_center uniforms (a center fixed before its samples), the check's count is binomial; "
        "a center chosen by minimising over its own samples does worse",
    ]
    if s.share_check_samples:
        lines.append(
            f"  with shared check samples N = max(n_check, n_certify): the check's "
            f"{s.n_check:,} alone certify what needs at most that many"
        )
    return "\n".join(lines)
