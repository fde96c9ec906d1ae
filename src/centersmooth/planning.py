"""Planning a run before drawing a sample: what given counts can certify, the counts a requested
``eps_in`` needs, and how likely a well-behaved input is to abstain at the chosen ``n_check``.

Pure arithmetic on the settings and the bounds (``centersmooth plan`` prints it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import bounds, rounds
from .settings import SmoothingSettings


def reachable(ranks: bounds.QuantileRanks, n: int) -> np.ndarray:
    """Per ``eps_in``, whether every order statistic's rank lies within ``n`` samples."""
    columns = [at for at in ranks if at is not None]
    return np.array([max(ks) <= n for ks in zip(*columns, strict=True)], dtype=bool)


def certify_samples_needed(settings: SmoothingSettings, eps_in: float) -> int | None:
    """The fewest certification samples ``N`` with which one round (each order statistic at
    ``alpha_certify`` shared as in these settings) certifies ``eps_in``: ``R_outer``'s level is
    the highest, so it decides (``bounds.max_certifiable_eps``). ``None`` beyond 2^50."""
    alpha = settings.alpha_certify / settings.statistics
    return _smallest(lambda n: settings.max_eps_in_for(n, alpha) >= eps_in)


def cap_needed(settings: SmoothingSettings, eps_in: float) -> int | None:
    """The smallest ``n_certify_cap`` with which ``n_certify="auto"`` can certify ``eps_in``:
    its last round, at the share of ``alpha_certify`` the schedule leaves it, must reach the
    level (a few percent above ``certify_samples_needed``). ``None`` beyond 2^50."""
    return _smallest(lambda cap: auto_max_eps_in(settings, cap) >= eps_in)


def auto_max_eps_in(settings: SmoothingSettings, cap: int) -> float:
    """The largest ``eps_in`` ``n_certify="auto"`` certifies with the cap ``cap``."""
    counts = settings.auto_rounds(cap)
    alpha = rounds.spend(settings.alpha_certify, len(counts))[-1] / settings.statistics
    return settings.max_eps_in_for(counts[-1], alpha)


def _smallest(holds: Callable[[int], bool], limit: int = 2**50) -> int | None:
    """The smallest positive integer where ``holds`` (assumed to hold from some point on):
    doubling, then bisection; a count that holds is always returned, ``None`` beyond
    ``limit``."""
    hi = 1
    while not holds(hi):
        if hi > limit:
            return None
        hi *= 2
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid
    return hi


def samples_needed_text(settings: SmoothingSettings, over: Sequence[float]) -> str:
    """What each ``eps_in`` beyond ``max_eps_in`` would need: a fixed ``n_certify`` (the ``N``
    of ``certify_samples_needed``), and with ``n_certify="auto"`` the cap (``cap_needed``)."""
    if settings.auto:
        return "; ".join(
            f"eps_in {e:g} needs n_certify_cap >= {_count(cap_needed(settings, e))} (a fixed "
            f"n_certify >= {_count(certify_samples_needed(settings, e))})"
            for e in over
        )
    return "; ".join(
        f"eps_in {e:g} needs n_certify >= {_count(certify_samples_needed(settings, e))}"
        for e in over
    )


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
