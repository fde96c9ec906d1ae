"""Confidence bounds of center smoothing, each with the guarantee it gives.

Two families: ``"binomial"`` (exact binomial / Clopper-Pearson terms, our default) and
``"hoeffding"`` (the paper's). Every function here is pure arithmetic on counts and levels;
nothing of the rest of the package is imported (the dependency arrows point inward).

Floating point is rounded on the side of the guarantee (docs/algorithm.md, "Rounding on the side
of the guarantee"): a level that enters a mass or a quantile rank is raised by ``LEVEL_MARGIN``
relative, a lower confidence bound is lowered until the tail it rests on is at most
``alpha (1 - TAIL_MARGIN)`` as computed, and a rank is the smallest whose computed tail is at
most ``alpha (1 - TAIL_MARGIN)``. Both margins are orders of magnitude above the stated error of
the special functions involved, so the exact quantities are on the right side.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Literal, NamedTuple

import numpy as np
from scipy import stats

Bound = Literal["binomial", "hoeffding"]
BOUNDS: tuple[str, ...] = ("binomial", "hoeffding")

# Relative margin of a level computed through Phi and Phi^-1 (SciPy's ndtr and ndtri) or a square
# root and a logarithm: their combined error is below 3e-12 relative wherever a level can lie
# (docs/algorithm.md), so raising the computed value by 1e-10 puts it above the exact one.
LEVEL_MARGIN = 1e-10
# Relative margin of a binomial tail (SciPy's binomial and beta distributions, Boost's
# incomplete beta, stated accurate to about 1e3 units in the last place, 2e-13 relative): a
# tail computed at most alpha (1 - 1e-9) is below alpha exactly.
TAIL_MARGIN = 1e-9
_TINY = 1e-300  # absolute part of the level margin, for results in the subnormal range


def check_bound(bound: str) -> Bound:
    """Return ``bound`` if it names a bound family, else raise ``ValueError``."""
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")
    return bound  # type: ignore[return-value]


def ball_rank(n: int, mass: float = 0.5) -> int:
    """The rank ``ceil(mass * n)`` (1-indexed) of the order statistic used as ``med(z)``: the
    ball around ``z`` with that radius holds a ``mass`` share of the ``n`` samples
    (``ceil(n / 2)`` for the paper's ``mass = 1/2``). Computed on the exact value of ``mass``,
    so rounding cannot move it (``0.3 * 10`` is not above 3)."""
    return max(1, math.ceil(Fraction(mass) * n))


def search_mass(n_all: int, n_kept: int, mass: float = 0.5) -> float | None:
    """The share of ``n_kept`` samples whose rank (``ball_rank``) is ``ball_rank(n_all, mass)``:
    the center search on the ``n_kept`` finite outputs of ``n_all`` samples, the others lying
    outside every ball, then measures ``med(z)`` at the rank it has among all of them. ``None``
    when fewer than that rank are kept (no ball holds the share). ``(rank - 1/2) / n_kept`` is
    within a rounding error of a fraction whose ceiling at ``n_kept`` is exactly ``rank``."""
    rank = ball_rank(n_all, mass)
    if n_kept < rank:
        return None
    if n_kept == n_all:
        return mass
    return (rank - 0.5) / n_kept


def delta1(
    n_center: int,
    alpha: float,
    bound: Bound = "binomial",
    mass: float = 0.5,
    counted: int | None = None,
) -> float:
    """Margin ``Delta1`` such that a ball of mass ``mass + Delta1`` holds ``m`` of ``Z1``.

    Guarantee: for any fixed ball of true mass at least ``mass + Delta1``, the probability that
    it holds fewer than ``m = ball_rank(n_center, mass)`` of the ``n_center`` i.i.d. samples is at
    most ``alpha``. ``counted`` (binomial only): the ball is counted over that many of the samples
    instead (the pairwise bound counts a candidate's ball over the ``n_center - 1`` others);
    where they cannot hold ``m``, ``1 - mass`` (no mass below 1 will do).

    * binomial: ``P(Bin(n, q) < m) <= alpha`` iff ``I_q(m, n - m + 1) >= 1 - alpha`` (the
      binomial-beta identity), so the smallest such ``q`` is the ``1 - alpha`` quantile of
      ``Beta(m, n - m + 1)`` and ``Delta1 = q - mass``; ``q`` is raised until the computed tail
      is at most ``alpha (1 - TAIL_MARGIN)``, so the exact one is at most ``alpha``.
    * hoeffding: ``sqrt(ln(1 / alpha) / (2 n))`` (the paper's term with ``alpha = alpha_center/2``;
      fewer than ``m`` hits means a hit rate below ``mass``, ``Delta1`` under the true rate),
      raised by ``LEVEL_MARGIN``.
    """
    _check_count("n_center", n_center)
    _check_level("alpha", alpha)
    _check_level("mass", mass)
    if check_bound(bound) == "hoeffding":
        return hoeffding_term(n_center, alpha)
    m = ball_rank(n_center, mass)
    n = n_center if counted is None else counted
    if m > n:
        return 1.0 - mass
    q = float(stats.beta.isf(alpha, m, n - m + 1))
    limit = alpha * (1.0 - TAIL_MARGIN)
    q = _raise_until(lambda t: stats.binom.cdf(m - 1, n, t) <= limit, q)
    margin = q - mass
    while mass + margin < q:  # rounded so that the level ``mass + Delta1`` is not below ``q``
        margin = math.nextafter(margin, math.inf)
    return margin


def mass_lower_bound(count: int, n: int, alpha: float, bound: Bound = "binomial") -> float:
    """Lower confidence bound ``p_low`` on a ball's true mass from ``count`` hits in ``n`` draws.

    Guarantee: ``P(p_low > true mass) <= alpha`` for a ball fixed before the ``n`` samples are
    drawn (the check set ``Z2`` is fresh, so the ball from ``Z1`` is fixed).

    * binomial: one-sided Clopper-Pearson, the ``alpha`` quantile of ``Beta(c, n - c + 1)``
      (0 when ``c = 0``), lowered until the computed ``P(Bin(n, p_low) >= c)`` is at most
      ``alpha (1 - TAIL_MARGIN)``: the exact tail is then below ``alpha``, so ``p_low`` is below
      the exact Clopper-Pearson bound (the tail grows with ``p``).
    * hoeffding: ``c / n - sqrt(ln(1 / alpha) / (2 n))``, each term rounded on its side.
    """
    _check_count("n", n)
    _check_level("alpha", alpha)
    if not 0 <= count <= n:
        raise ValueError(f"count must lie in [0, n={n}], got {count}")
    if check_bound(bound) == "hoeffding":
        rate = count / n
        low = rate - abs(rate) * LEVEL_MARGIN - hoeffding_term(n, alpha)
        return math.nextafter(low, -math.inf)  # the subtraction's rounding
    if count == 0:
        return 0.0
    limit = alpha * (1.0 - TAIL_MARGIN)
    p = float(stats.beta.ppf(alpha, count, n - count + 1))
    return _lower_until(lambda t: stats.binom.sf(count - 1, n, t) <= limit, p)


def hoeffding_term(n: int, alpha: float) -> float:
    """``sqrt(ln(1 / alpha) / (2 n))``, raised by ``LEVEL_MARGIN`` (``-log(alpha)``, not
    ``log(1 / alpha)``: the rounding of ``1 / alpha`` would dominate for ``alpha`` near 1)."""
    return round_up(math.sqrt(-math.log(alpha) / (2.0 * n)))


def round_up(value: float) -> float:
    """``value`` raised by ``LEVEL_MARGIN`` relative (and 1e-300 absolute): above the exact
    quantity that ``value`` computes up to a relative error below the margin."""
    return value + abs(value) * LEVEL_MARGIN + _TINY


def certified_mass(
    eps_in: float | np.ndarray,
    sigma: float,
    delta: float,
    mass: float = 0.5,
    slack: float = 0.0,
) -> np.ndarray:
    """Mass ``p(eps) = Phi(Phi^-1(1 - mass + Delta) + eps_in / sigma)`` a ball must hold at ``x``
    (``Phi(Phi^-1(1/2 + Delta) + eps_in / sigma)`` for the paper's ``mass = 1/2``).

    Guarantee (Gaussian shift lemma): a set of mass ``p(eps)`` under ``N(x, sigma^2 I)`` has mass
    at least ``1 - mass + Delta`` under ``N(x', sigma^2 I)`` for every ``||x' - x||_2 <= eps_in``,
    so it meets every ball of mass at least ``mass - Delta`` there (the checked ball of a
    non-abstaining prediction at ``x'``). ``slack``: see ``shifted_mass``.
    """
    return shifted_mass(outer_level(mass, delta), eps_in, sigma, slack)


def check_level(mass: float, delta: float) -> float:
    """The mass ``mass - delta`` that a prediction's ball must exceed for it to be accepted
    (``p_low`` strictly above it: with ``>=`` the two balls of the proof could have masses
    summing to exactly 1 and not meet)."""
    return mass - delta


def outer_level(mass: float, delta: float) -> float:
    """``1 - mass + delta``, the mass ``B(center, R_outer)`` keeps at ``x'``: rounded up where
    needed so that it and ``check_level`` add up to at least 1 exactly."""
    level = 1.0 - mass + delta
    while Fraction(level) + Fraction(check_level(mass, delta)) < 1:
        level = math.nextafter(level, math.inf)
    return level


def shifted_mass(
    level: float, eps_in: float | np.ndarray, sigma: float, slack: float = 0.0
) -> np.ndarray:
    """``Phi(Phi^-1(level) + eps_in / sigma)``: the mass a set must have under
    ``N(x, sigma^2 I)`` to keep at least ``level`` under ``N(x', sigma^2 I)`` for every
    ``||x' - x||_2 <= eps_in`` (the Gaussian shift lemma).

    ``slack > 0`` (inputs on a grid, docs/algorithm.md): the noise is within total variation
    ``slack`` of a distribution for which the lemma holds, at ``x`` and at ``x'``, so the mass
    needed is ``Phi(Phi^-1(level + slack) + eps_in / sigma) + slack`` (capped at 1).

    Rounded up: ``level + slack`` is rounded up exactly before ``Phi^-1`` (which is increasing)
    and the result raised by ``LEVEL_MARGIN``, which exceeds the error of ``Phi(Phi^-1(.) + h)``
    in floating point (below 3e-12 relative, docs/algorithm.md), so the value returned is never
    below the exact mass."""
    eps = np.asarray(eps_in, dtype=float)
    start = level if slack == 0.0 else min(_sum_up(level, slack), 1.0)
    mass = stats.norm.cdf(stats.norm.ppf(start) + eps / sigma) + slack
    return np.asarray(np.minimum(mass + mass * LEVEL_MARGIN + _TINY, 1.0))


def _sum_up(a: float, b: float) -> float:
    """``a + b`` rounded up: the smallest float not below the exact sum."""
    total = a + b
    while Fraction(total) < Fraction(a) + Fraction(b):
        total = math.nextafter(total, math.inf)
    return total


def quantile_rank(p: float, n_certify: int, alpha: float, bound: Bound = "binomial") -> int:
    """1-indexed rank ``k`` with ``r_(k)`` an upper confidence bound on the ``p``-quantile.

    Guarantee: for i.i.d. ``r_1..r_n`` with true ``p``-quantile ``q_p``,
    ``P(r_(k) < q_p) <= alpha``. Returns ``n_certify + 1`` when no order statistic qualifies
    (the quantile cannot be bounded with this many samples).

    * binomial: ``r_(k) < q_p`` needs at least ``k`` samples below ``q_p``, a count that is at most
      ``Bin(n, p)``; we take the smallest ``k`` whose computed tail ``P(Bin(n, p) >= k)`` (the
      survival function, accurate in relative terms even for a tiny ``alpha``, where
      ``1 - alpha`` would round) is at most ``alpha (1 - TAIL_MARGIN)``: its exact tail is then at
      most ``alpha``, and it is the exact smallest such rank unless the exact tail at ``k - 1``
      lies within the margin of ``alpha`` (exact and distribution free).
    * hoeffding: ``k = ceil((p + sqrt(ln(1 / alpha) / (2 n))) * n)`` (the paper's quantile, taken
      as an order statistic rather than an interpolated quantile), the sum raised by
      ``LEVEL_MARGIN`` so that the rounding cannot lower ``k``.
    """
    _check_count("n_certify", n_certify)
    _check_level("alpha", alpha)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    n = n_certify
    if check_bound(bound) == "hoeffding":
        q = round_up(p + hoeffding_term(n, alpha))
        return min(max(math.ceil(q * n), 1), n + 1)
    limit = alpha * (1.0 - TAIL_MARGIN)

    def small(j: int) -> bool:  # P(Bin(n, p) > j) = P(Bin(n, p) >= j + 1) at most the limit
        return bool(stats.binom.sf(j, n, p) <= limit)

    # start from the normal approximation, gallop to bracket the answer, then bisect: the
    # smallest j in [0, n] whose computed tail qualifies (small(n) holds: P(Bin > n) = 0)
    guess = n * p + float(stats.norm.isf(limit)) * math.sqrt(n * p * (1.0 - p))
    j = min(max(int(guess), 0), n) if math.isfinite(guess) else n
    step = 1
    if small(j):  # the answer is at most j: find a probe below it that fails
        lo, hi = 0, j
        while hi > 0:
            probe = max(hi - step, 0)
            if not small(probe):
                lo = probe + 1
                break
            hi, step = probe, 2 * step
    else:  # the answer is above j: find a probe at or above it that qualifies
        lo = hi = j + 1
        while not small(hi):
            lo, hi, step = hi + 1, min(hi + step, n), 2 * step
    while lo < hi:  # every j below lo fails, hi qualifies
        mid = (lo + hi) // 2
        if small(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi + 1


def max_certifiable_eps(
    sigma: float,
    n_certify: int,
    alpha: float,
    delta: float,
    bound: Bound = "binomial",
    mass: float = 0.5,
    slack: float = 0.0,
) -> float:
    """Largest ``eps_in`` whose quantile rank (of ``certified_mass``) stays within ``n_certify``
    samples. ``R_outer``'s level is the highest of the certificate's: ``R_inner``'s
    ``mass + Delta1`` is below it as ``Delta1 <= delta``, and ``R_near``'s is below
    ``R_inner``'s up to ``nearest_mass``'s rounding margin (see ``split_center_alpha``). Only a
    report: a certificate checks every rank against ``n_certify`` itself.

    * binomial: rank ``<= n`` iff ``1 - p^n >= 1 - alpha`` iff ``p <= alpha^(1/n)``, so
      ``eps_max = sigma * (Phi^-1(alpha^(1/n)) - Phi^-1(1 - mass + Delta))``.
    * hoeffding: rank ``<= n`` iff ``p <= 1 - sqrt(ln(1 / alpha) / (2 n))``.

    A negative value means that not even ``eps_in = 0`` can be certified. ``slack`` (see
    ``shifted_mass``) lowers ``p_max`` and raises the level by that much.
    """
    if check_bound(bound) == "binomial":
        p_max = alpha ** (1.0 / n_certify)
    else:
        p_max = 1.0 - math.sqrt(math.log(1.0 / alpha) / (2.0 * n_certify))
    if slack:
        p_max -= slack
        level = outer_level(mass, delta) + slack
        if p_max <= 0.0 or level >= 1.0:
            return -math.inf
        return float(sigma * (stats.norm.ppf(p_max) - stats.norm.ppf(level)))
    if p_max <= 0.0:
        return -math.inf
    return float(sigma * (stats.norm.ppf(p_max) - stats.norm.ppf(outer_level(mass, delta))))


def candidate_miss_probability(delta1_value: float, k: int, mass: float = 0.5) -> float:
    """Chance ``(1 - mass - Delta1)^k`` that none of ``k`` candidates falls in the optimal ball.

    Each candidate is an independent sample, inside a ball of mass ``>= mass + Delta1`` with
    probability at least ``mass + Delta1``. The base is exact (rational arithmetic, rounded up)
    and the power, correctly rounded to within one unit, is raised by ``LEVEL_MARGIN``.
    """
    base = Fraction(1) - Fraction(mass) - Fraction(delta1_value)
    if base <= 0:
        return 0.0
    b = float(base)
    if b < base:
        b = math.nextafter(b, math.inf)
    return min(round_up(b**k), 1.0)


def nearest_mass(alpha: float, k: int) -> float:
    """Mass ``q_near`` a fixed ball must hold for one of ``k`` independent samples to fall in it
    except with probability ``alpha``.

    Guarantee: the chance that none of ``k`` i.i.d. samples lands in a set of mass at least
    ``q_near`` is at most ``(1 - q_near)^k <= alpha``. ``q_near = 1 - alpha^(1/k)``, raised until
    that inequality holds with a margin of 1e-12 relative (far above the rounding of the
    logarithms, which could otherwise leave ``(1 - q_near)^k`` a hair above ``alpha``).
    """
    _check_count("k", k)
    _check_level("alpha", alpha)
    limit = math.log(alpha) * (1.0 + 1e-12)
    q = -math.expm1(limit / k)
    return _raise_until(lambda t: t >= 1.0 or k * math.log1p(-t) <= limit, q)


class CenterAlphas(NamedTuple):
    """How ``alpha_center`` is shared: ``Delta1`` (with the candidate miss), the nearest sample
    candidate (0 without that bound) and the check's ``p_low``."""

    delta1: float
    nearest: float
    check: float


def split_center_alpha(
    n_center: int,
    alpha_center: float,
    candidates: int | None,
    bound: Bound = "binomial",
    mass: float = 0.5,
    nearest: bool = False,
) -> CenterAlphas:
    """Split ``alpha_center`` into the levels of ``Delta1``, of the nearest sample candidate and of
    ``p_low``.

    The check gets ``alpha_center / 2`` (docs/algorithm.md, "Predict (Algorithm 1)", step 4).
    ``Delta1`` gets the other half, or, with the nearest-candidate bound (docs/algorithm.md), a
    quarter, and the nearest candidate the last quarter. With ``k`` candidates the ``Delta1`` share
    also pays for the candidate miss: we take the largest ``a1`` with ``a1 + (1 - mass -
    Delta1(a1))^k <= share`` (the left side grows with ``a1``), so the failure terms add up to at
    most ``alpha_center``. Raises ``ValueError`` when no ``a1 > 0`` fits (too few candidates). A
    count that passes has ``(1 - mass - Delta1)^k <= alpha_near``, so the nearest candidate's mass
    ``1 - alpha_near^(1/k)`` stays below ``mass + Delta1`` (up to ``nearest_mass``'s margin of 1e-12
    against rounding).
    """
    half = alpha_center / 2.0
    share = half / 2.0 if nearest else half
    near = share if nearest else 0.0
    if candidates is None:
        return CenterAlphas(share, near, half)

    def excess(a1: float) -> Fraction:  # exact: the terms must add up to at most the share
        d1 = delta1(n_center, a1, bound, mass)
        miss = candidate_miss_probability(d1, candidates, mass)
        return Fraction(a1) + Fraction(miss) - Fraction(share)

    lo = share * 1e-12
    if excess(lo) > 0:
        need = math.ceil(math.log(share / 2.0) / math.log(1.0 - mass))
        raise ValueError(
            f"candidates={candidates} is too few: the chance that no candidate lands in the "
            f"central ball already exceeds the {share:g} of alpha_center it may use; use at "
            f"least about {need}"
        )
    if excess(share) <= 0:
        return CenterAlphas(share, near, half)
    # bisection on log(a1), keeping the feasible end: the root can sit many decades below
    # alpha_center (a small ball_mass with few candidates), where an absolute tolerance fails
    feasible, infeasible = lo, share
    for _ in range(_BISECTIONS):
        mid = math.sqrt(feasible * infeasible)
        if not feasible < mid < infeasible:
            break
        if excess(mid) <= 0:
            feasible = mid
        else:
            infeasible = mid
    return CenterAlphas(feasible, near, half)


_BISECTIONS = 80  # log(half / lo) = log(1e12) halved 80 times: below one float step


def min_center_samples(
    alpha: float, delta: float, bound: Bound = "binomial", mass: float = 0.5
) -> int:
    """Smallest ``N`` such that every ``n_center >= N`` has ``Delta1(n_center, alpha) <= delta``.

    Hoeffding's ``Delta1`` is monotone in ``n`` and solved directly. The binomial ``Delta1`` is
    not monotone: for the median, an even ``2j`` needs ``j`` of ``2j`` samples, easier than both
    neighbours ``2j - 1`` and ``2j + 1``. Along odd ``n`` it is monotone, so we search the
    smallest qualifying odd ``n`` and step back to the even number before it, which also
    qualifies. For another ``mass`` the binomial term never exceeds Hoeffding's (at Hoeffding's
    margin the binomial tail is below ``alpha``), so Hoeffding's ``N`` suffices, and we step down
    from it while the counts below still qualify: at most ``_STEPS_DOWN`` of them, so for a small
    ``delta`` the answer is a sufficient count rather than the smallest.
    """
    n_hoeffding = max(1, math.ceil(math.log(1.0 / alpha) / (2.0 * delta**2)))
    if check_bound(bound) == "hoeffding" or mass != 0.5:
        n = n_hoeffding
        while delta1(n, alpha, "hoeffding") > delta:
            n += 1
        floor = 1 if bound == "hoeffding" else max(1, n - _STEPS_DOWN)
        while n > floor and delta1(n - 1, alpha, bound, mass) <= delta:
            n -= 1
        return n

    def fails(j: int) -> bool:  # the odd sample count 2j - 1
        return delta1(2 * j - 1, alpha, bound) > delta

    if not fails(1):
        return 1
    lo, hi = 1, 2
    while fails(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails(mid):
            lo = mid
        else:
            hi = mid
    return 2 * hi - 2


_STEPS_DOWN = 4_000


def min_check_samples(
    alpha: float, delta: float, bound: Bound = "binomial", mass: float = 0.5
) -> int:
    """Smallest ``n_check`` at which a perfect check (``c = n``) gives
    ``p_low > mass - delta``."""
    need = check_samples_for(1.0, alpha, check_level(mass, delta), bound)
    assert need is not None  # a perfect check's p_low tends to 1
    return need


def check_samples_for(
    share: float, alpha: float, level: float, bound: Bound = "binomial"
) -> int | None:
    """Smallest ``n`` at which ``floor(share n)`` hits in ``n`` check samples give
    ``p_low > level``: how many check samples bound a ball's mass above ``level`` if its mass
    is ``share`` (``None`` when ``share <= level``: no count does; and when no count up to
    ``2**53`` does, a share within rounding of the level)."""
    if not share > level:
        return None

    def passes(n: int) -> bool:
        return mass_lower_bound(math.floor(share * n), n, alpha, bound) > level

    return smallest_count(passes, _LARGEST_COUNT)


def smallest_count(holds: Callable[[int], bool], limit: int) -> int | None:
    """The smallest positive integer where ``holds`` (assumed to hold from some point on):
    doubling, then bisection; ``None`` when it fails at every power of two up to ``limit``."""
    hi = 1
    while not holds(hi):
        if hi >= limit:
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


_LARGEST_COUNT = 2**53  # counts up to here are exact in floating point


def min_certify_samples(
    alpha: float,
    delta: float,
    bound: Bound = "binomial",
    mass: float = 0.5,
) -> int:
    """Smallest ``n_certify`` that can certify ``eps_in = 0`` (``max_certifiable_eps >= 0``).

    With ``level = 1 - mass + delta``: binomial ``level^n <= alpha``; hoeffding
    ``sqrt(ln(1/alpha) / (2n)) <= 1 - level``.
    """
    level = outer_level(mass, delta)
    if check_bound(bound) == "binomial":
        n = math.ceil(math.log(alpha) / math.log(level))
    else:
        n = math.ceil(math.log(1.0 / alpha) / (2.0 * (1.0 - level) ** 2))
    while max_certifiable_eps(1.0, n, alpha, delta, bound, mass) < 0:
        n += 1
    return n


def _raise_until(holds: object, q: float) -> float:
    """Nudge a numerically computed ``q`` upwards until ``holds(q)``: a quantile routine's last
    digits must never make a bound optimistic."""
    step = 1e-13
    while not holds(q):  # type: ignore[operator]
        if q >= 1.0:
            return 1.0
        q = min(q + step, 1.0)
        step *= 2.0
    return q


def _lower_until(holds: object, q: float) -> float:
    """Nudge a numerically computed ``q`` downwards until ``holds(q)``, in steps relative to
    ``q`` (a lower confidence bound can be 1e-9 or less), starting near the move that
    ``TAIL_MARGIN`` asks for."""
    step = max(q, 0.0) * 1e-11
    while not holds(q):  # type: ignore[operator]
        if q <= 0.0 or step == 0.0:
            return 0.0
        q = max(q - step, 0.0)
        step *= 2.0
    return q


def _check_count(name: str, n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")


def _check_level(name: str, alpha: float) -> None:
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise ValueError(f"{name} must lie in (0, 1), got {alpha!r}")


# ----------------------------------------------------------------- the certificate's statistics
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


def quantile_levels(
    eps_in: np.ndarray,
    sigma: float,
    delta: float,
    mass: float,
    delta1_value: float,
    near_mass: float | None,
    slack: float = 0.0,
) -> QuantileLevels:
    """The levels whose quantiles of ``d(center, f(x + noise))`` bound the certificate.

    ``R_outer`` at ``certified_mass`` (the center's ball keeps ``1 - mass + delta`` at ``x'``),
    ``R_inner`` at ``shifted_mass(mass + Delta1)`` (a ball of mass ``mass + Delta1`` at ``x'``
    lies inside it) and, with the nearest-candidate bound (``near_mass`` given: see
    ``nearest_mass``), ``R_near`` at ``shifted_mass(near_mass)``. In the paper's bound at
    ``mass = 1/2`` one order statistic serves ``R_outer`` and ``R_inner`` (docs/algorithm.md).
    """
    outer = certified_mass(eps_in, sigma, delta, mass, slack)
    if near_mass is None and mass == 0.5:
        return QuantileLevels(outer, outer, None)
    inner = shifted_mass(mass + delta1_value, eps_in, sigma, slack)
    if near_mass is None:
        return QuantileLevels(outer, inner, None)
    return QuantileLevels(outer, inner, shifted_mass(near_mass, eps_in, sigma, slack))


def quantile_ranks(
    levels: QuantileLevels, n_certify: int, alpha: float, bound: Bound = "binomial"
) -> QuantileRanks:
    """``quantile_rank`` of every level (``n_certify + 1``: that level cannot be bounded with
    these samples); ``alpha`` is each order statistic's share of ``alpha_certify``."""

    def ranks(ps: np.ndarray) -> list[int]:
        return [quantile_rank(float(p), n_certify, alpha, bound) for p in ps]

    outer = ranks(levels.outer)
    inner = outer if levels.inner is levels.outer else ranks(levels.inner)
    return QuantileRanks(outer, inner, None if levels.near is None else ranks(levels.near))


def reachable(ranks: QuantileRanks, n: int) -> np.ndarray:
    """Per ``eps_in``, whether every order statistic's rank lies within ``n`` samples."""
    columns = [at for at in ranks if at is not None]
    return np.array([max(ks) <= n for ks in zip(*columns, strict=True)], dtype=bool)


def order_statistics(nearest_candidate: bool, mass: float) -> int:
    """How many order statistics share ``alpha_certify``: ``R_outer``, ``R_inner`` and
    ``R_near`` with the nearest-candidate bound; else one (``mass = 1/2``, the paper's) or two."""
    return 3 if nearest_candidate else 1 if mass == 0.5 else 2


def eps_out_from_radii(
    gamma: float,
    outer: float,
    inner: float,
    near: float,
    upper: float | None = None,
    pair: float | None = None,
) -> float:
    """The certified bound from the order statistics, capped at ``upper``, the largest value the
    distance can take (no two outputs exceed it anyway: a Jaccard certificate never says more
    than 1).

    * pairwise bound (``pair`` given): ``gamma (R_outer + R_pair)``;
    * nearest-candidate bound (``near`` finite): ``gamma (R_outer + gamma (R_near + R_inner))``;
    * the paper's (``near = inf``): ``gamma (R_outer + beta R_inner)`` with ``beta = 2 gamma``,
      written ``gamma (1 + beta) R-hat`` when both are one order statistic (3 R-hat for metrics,
      10 R-hat for ``gamma = 2``).
    """
    g = gamma
    if pair is not None:
        bound = g * (outer + pair)
    elif math.isfinite(near):
        bound = g * (outer + g * (near + inner))
    elif outer == inner:  # one order statistic: the paper's expression
        bound = g * (1.0 + 2.0 * g) * outer
    else:
        bound = g * (outer + 2.0 * g * inner)
    return bound if upper is None else min(bound, upper)
