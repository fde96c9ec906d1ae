"""Floating point on the side of the guarantee: on many random inputs, every level that enters a
mass or a quantile rank is at least the exact one, every lower confidence bound at most the
exact one, and every rank at least the exact smallest valid rank (docs/algorithm.md, "Rounding
on the side of the guarantee"). "Exact" is computed with mpmath at 30 digits on the exact values
of the float inputs; the margins sit at 1e-10 and 1e-9 relative, far above that precision and far
below what a seeded certificate could notice, so each comparison is decided, not lucky."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from scipy import stats

from centersmooth import bounds, planning, rounds
from centersmooth.metrics import get_metric
from centersmooth.settings import SmoothingSettings

DIGITS = 30


@pytest.fixture(autouse=True)
def _precision():
    with mpmath.workdps(DIGITS):
        yield


def mp(x: float) -> mpmath.mpf:
    """The exact value of a float (a float has at most 53 significant bits)."""
    return mpmath.mpf(Fraction(x).numerator) / Fraction(x).denominator


def inverse_phi(level: mpmath.mpf) -> mpmath.mpf:
    """Phi^-1 at 30 digits: two Newton steps from SciPy's value, which is within 1e-15 relative
    (each step squares the error)."""
    t = mpmath.mpf(float(stats.norm.ppf(float(level))))
    for _ in range(2):
        t -= (mpmath.ncdf(t) - level) / mpmath.npdf(t)
    return t


def upper_tail(n: int, p: float, k: int) -> mpmath.mpf:
    """P(Bin(n, p) >= k) at 30 digits, summing the probabilities from ``k`` away from the mean
    (or its complement from ``k - 1`` down) until they no longer matter."""
    if k <= 0:
        return mpmath.mpf(1)
    if k > n:
        return mpmath.mpf(0)
    q = mp(p)
    if q == 0 or q == 1:
        return mpmath.mpf(0 if q == 0 else 1)
    up = k > n * q
    i = k if up else k - 1
    log_pmf = (
        mpmath.loggamma(n + 1)
        - mpmath.loggamma(i + 1)
        - mpmath.loggamma(n - i + 1)
        + i * mpmath.log(q)
        + (n - i) * mpmath.log1p(-q)
    )
    term, total = mpmath.exp(log_pmf), mpmath.mpf(0)
    odds, negligible, mean = q / (1 - q), mpmath.mpf(10) ** -(DIGITS + 2), n * q
    while 0 <= i <= n:
        total += term
        if term < total * negligible and (i > mean + 1 or i < mean - 1):
            break
        if up:
            term *= (n - i) * odds / (i + 1)
            i += 1
        else:
            term *= i / ((n - i + 1) * odds)
            i -= 1
    return total if up else 1 - total


def random_levels(rng: np.random.Generator, size: int) -> np.ndarray:
    """Levels spread over (0, 1): uniform, and log-uniform towards either end."""
    kind = rng.integers(0, 3, size)
    tiny = 10.0 ** rng.uniform(-12, 0, size)
    return np.where(kind == 0, rng.uniform(0, 1, size), np.where(kind == 1, tiny, 1 - tiny))


def test_shifted_mass_is_never_below_the_exact_mass():
    """``Phi(Phi^-1(level + slack) + eps / sigma) + slack`` at 1,000 random levels, radii, noise
    levels and slacks. The plain SciPy expression falls below the exact value in a good share of
    them (so the comparison can fail); the library's never does, and stays within 1e-9."""
    rng = np.random.default_rng(0)
    size = 1_000
    levels = random_levels(rng, size)
    sigmas = 10.0 ** rng.uniform(-3, 1, size)
    eps = rng.uniform(0, 5, size) * sigmas
    slacks = np.where(rng.uniform(size=size) < 0.5, 0.0, 10.0 ** rng.uniform(-20, -3, size))
    plain_below = 0
    for level, e, sigma, slack in zip(levels, eps, sigmas, slacks, strict=True):
        level, e, sigma, slack = float(level), float(e), float(sigma), float(slack)
        if not 0.0 < level < 1.0:
            continue
        got = float(bounds.shifted_mass(level, e, sigma, slack))
        inner = mp(level) + mp(slack)
        if inner >= 1:
            exact = mpmath.mpf(1)
        else:
            exact = min(mpmath.ncdf(inverse_phi(inner) + mp(e) / mp(sigma)) + mp(slack), 1)
        assert mp(got) >= exact, (level, e, sigma, slack)
        assert mp(got) <= exact * (1 + mpmath.mpf(1e-9)) + mpmath.mpf(1e-299)
        if slack == 0.0:
            plain = float(stats.norm.cdf(stats.norm.ppf(level) + e / sigma))
            plain_below += mp(plain) < exact
    assert plain_below > 20  # the margin is needed: unrounded, the level is often too low


def test_the_lower_confidence_bound_is_never_above_clopper_pearson():
    """``p_low`` at 250 random counts, sample sizes up to 20,000 and levels: the exact chance of
    ``count`` or more hits at ``p_low`` is at most alpha (``p_low`` lies below the exact bound),
    and 1e-7 higher it exceeds alpha (it lies within that of it)."""
    rng = np.random.default_rng(1)
    for _ in range(250):
        n = int(10 ** rng.uniform(0, np.log10(20_000)))
        count = int(rng.integers(1, n + 1))
        alpha = float(10 ** rng.uniform(-12, np.log10(0.5)))
        p_low = bounds.mass_lower_bound(count, n, alpha)
        assert upper_tail(n, p_low, count) <= alpha, (count, n, alpha)
        assert upper_tail(n, p_low * (1 + 1e-7), count) > alpha, (count, n, alpha)


def test_quantile_ranks_are_never_below_the_exact_smallest_valid_rank():
    """At 400 random quantile levels, sample sizes up to 20,000 and levels (alpha down to 1e-15,
    where ``1 - alpha`` rounds), the rank ``k`` has exact ``P(Bin(n, p) >= k) <= alpha`` and is
    the exact smallest such rank."""
    rng = np.random.default_rng(2)
    levels = random_levels(rng, 400)
    for p in levels:
        n = int(10 ** rng.uniform(0, np.log10(20_000)))
        alpha = float(10 ** rng.uniform(-15, np.log10(0.3)))
        k = bounds.quantile_rank(float(p), n, alpha)
        if k <= n:
            assert upper_tail(n, float(p), k) <= alpha, (p, n, alpha)
        else:
            assert upper_tail(n, float(p), n) > alpha, (p, n, alpha)
        assert k == 1 or upper_tail(n, float(p), k - 1) > alpha, (p, n, alpha)


def test_delta1_holds_its_level_exactly():
    """At 200 random sample counts, masses and levels, a ball of mass ``fl(mass + Delta1)`` holds
    fewer than ``ceil(mass n)`` samples with exact probability at most alpha."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(10 ** rng.uniform(0, np.log10(20_000)))
        mass = float(rng.choice([0.5, rng.uniform(0.05, 0.5)]))
        alpha = float(10 ** rng.uniform(-10, np.log10(0.3)))
        d1 = bounds.delta1(n, alpha, mass=mass)
        m = bounds.ball_rank(n, mass)
        level = mass + d1
        assert 1 - upper_tail(n, min(level, 1.0), m) <= alpha, (n, mass, alpha)


def test_the_hoeffding_terms_are_rounded_on_their_side():
    rng = np.random.default_rng(4)
    for _ in range(1_000):
        n = int(10 ** rng.uniform(0, 7))
        alpha = float(10 ** rng.uniform(-15, -1e-9))
        term = mpmath.sqrt(-mpmath.log(mp(alpha)) / (2 * n))
        assert mp(bounds.delta1(n, alpha, "hoeffding")) >= term
        count = int(rng.integers(0, n + 1))
        low = bounds.mass_lower_bound(count, n, alpha, "hoeffding")
        assert mp(low) <= mpmath.mpf(count) / n - term
        p = float(rng.uniform(0, 1))
        rank = bounds.quantile_rank(p, n, alpha, "hoeffding")
        assert rank >= min(max(int(mpmath.ceil((mp(p) + term) * n)), 1), n + 1)


def test_the_candidate_miss_probability_is_never_below_the_exact_one():
    rng = np.random.default_rng(5)
    for _ in range(1_000):
        mass, d1 = float(rng.uniform(0.05, 0.5)), float(rng.uniform(0, 0.05))
        k = int(10 ** rng.uniform(0, 4))
        exact = (1 - mp(mass) - mp(d1)) ** k
        got = bounds.candidate_miss_probability(d1, k, mass)
        assert exact <= mp(got) <= exact * (1 + mpmath.mpf(1e-9)) + mpmath.mpf(1e-299)


def test_each_round_of_auto_keeps_its_tails_within_alpha_certify():
    """``n_certify="auto"``: at 60 random confidences, round counts and levels, every round's
    rank ``k`` (at ``alpha_r / s``, the share divided in floating point) has an exact tail
    ``P(Bin(n_r, p) >= k)`` of at most the exact ``alpha_r / s``, and the shares add up to at
    most ``alpha_certify`` exactly: the union over rounds and statistics stays within it."""
    rng = np.random.default_rng(6)
    for _ in range(60):
        alpha = float(10 ** rng.uniform(-9, np.log10(0.3)))
        statistics = int(rng.choice([1, 2, 3]))
        first = int(10 ** rng.uniform(1, 3))
        counts = rounds.schedule(first, int(first * 2 ** rng.uniform(0, 4)))
        shares = rounds.spend(alpha, len(counts))
        assert sum(Fraction(a) for a in shares) <= Fraction(alpha)
        p = float(random_levels(rng, 1)[0])
        for n, share in zip(counts, shares, strict=True):
            k = bounds.quantile_rank(p, n, share / statistics)
            exact = mpmath.mpf(Fraction(share).numerator) / Fraction(share).denominator
            assert upper_tail(n, p, k) <= exact / statistics, (alpha, n, p, statistics)


def _random_settings(rng: np.random.Generator) -> SmoothingSettings:
    bound = str(rng.choice(["binomial", "hoeffding"]))
    delta = float(rng.uniform(0.05, 0.2))
    return SmoothingSettings(
        sigma=float(10 ** rng.uniform(-2, 0)),
        delta=delta,
        alpha_certify=float(10 ** rng.uniform(-4, -1)),
        bound=bound,  # type: ignore[arg-type]
        ball_mass=float(rng.choice([0.5, rng.uniform(delta + 0.05, 0.5)])),
        nearest_candidate=bool(rng.uniform() < 0.7),
        n_center=100_000 if bound == "hoeffding" else 10_000,
        n_check=100_000 if bound == "hoeffding" else 10_000,
        n_certify=10**6,
        share_check_samples=False,
        input_grid=1 / 255 if rng.uniform() < 0.2 else None,
    )


def test_the_planners_counts_are_the_certificates_own():
    """At 25 random settings and radii, the planner's ``N`` for an ``eps_in``
    (``planning.certify_samples_needed``) is a count at which the certificate's own ranks, on
    its rounded levels, all lie within the samples, and below which ``R_outer``'s does not: the
    planner rounds as the certificate does (the closed form behind ``max_eps_in`` does not, and
    fell a few samples short, 346,085 for 346,087 at the defaults' 4 sigma)."""
    rng = np.random.default_rng(7)
    metric = get_metric("l2")
    for _ in range(25):
        s = _random_settings(rng)
        eps = float(rng.uniform(0, 0.9) * s.max_eps_in_for(10**7))
        n = planning.certify_samples_needed(s, eps)
        assert n is not None
        for count, holds in ((n, True), (n - 1, False)):
            try:
                at = dataclasses.replace(s, n_certify=count)
            except ValueError:  # too few for any eps_in: certifies nothing
                assert not holds
                continue
            ranks = at.quantile_ranks(np.array([eps]), metric, dim=2**31)
            assert planning.reachable(ranks, count)[0] == holds, (s, eps, count)
