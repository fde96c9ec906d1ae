"""Bounds against SciPy, exact enumeration of small binomials, and the paper's formulas."""

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from centersmooth import bounds


def binom_tail_below(n: int, p: float, m: int) -> float:
    """P(Bin(n, p) < m) by enumerating the pmf in exact rational arithmetic."""
    q = Fraction(p)
    return float(sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(m)))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 25, 40])
@pytest.mark.parametrize("alpha", [0.0025, 0.05, 0.2])
def test_delta1_binomial_is_the_smallest_valid_margin(n, alpha):
    d1 = bounds.delta1(n, alpha)
    m = bounds.ball_rank(n)
    assert binom_tail_below(n, 0.5 + d1, m) <= alpha
    if d1 > 1e-9:
        assert binom_tail_below(n, 0.5 + d1 - 1e-6, m) > alpha


def test_ball_rank_uses_the_exact_mass():
    assert [bounds.ball_rank(n) for n in (1, 2, 3, 10_000, 10_001)] == [1, 1, 2, 5_000, 5_001]
    assert bounds.ball_rank(10, 0.3) == 3  # 0.3 * 10 is 3.0000000000000004 in floats
    assert bounds.ball_rank(10, 0.31) == 4 and bounds.ball_rank(7, 0.01) == 1


@pytest.mark.parametrize("n", [1, 7, 10, 25, 40])
@pytest.mark.parametrize("mass", [0.1, 0.25, 0.3])
def test_delta1_at_another_mass_is_the_smallest_valid_margin(n, mass):
    alpha = 0.05
    d1 = bounds.delta1(n, alpha, mass=mass)
    m = bounds.ball_rank(n, mass)
    # exact up to SciPy's binomial cdf, which can be 1e-16 off
    assert binom_tail_below(n, mass + d1, m) <= alpha * (1 + 1e-12)
    if d1 > 1e-9:
        assert binom_tail_below(n, mass + d1 - 1e-6, m) > alpha
    assert d1 <= bounds.delta1(n, alpha, "hoeffding", mass)  # Hoeffding's holds at any mass


def test_sample_minimums_at_another_mass():
    alpha, delta, mass = 0.0025, 0.05, 0.3
    n = bounds.min_center_samples(alpha, delta, mass=mass)
    assert all(bounds.delta1(k, alpha, mass=mass) <= delta for k in range(n, n + 400))
    assert bounds.delta1(n - 1, alpha, mass=mass) > delta
    c = bounds.min_check_samples(alpha, delta, mass=mass)
    assert bounds.mass_lower_bound(c, c, alpha) > mass - delta
    assert bounds.mass_lower_bound(c - 1, c - 1, alpha) <= mass - delta
    r = bounds.min_certify_samples(alpha, delta, mass=mass)
    assert bounds.max_certifiable_eps(1.0, r, alpha, delta, mass=mass) >= 0
    assert bounds.max_certifiable_eps(1.0, r - 1, alpha, delta, mass=mass) < 0


def test_certified_mass_at_another_mass_meets_the_checked_ball():
    """At x' the set keeps 1 - mass + delta, so it meets a ball of mass - delta there."""
    eps, sigma, mass, delta = np.array([0.0, 0.5]), 0.25, 0.3, 0.05
    p = bounds.certified_mass(eps, sigma, delta, mass)
    np.testing.assert_allclose(stats.norm.cdf(stats.norm.ppf(p) - eps / sigma), 0.75)
    np.testing.assert_array_equal(p, bounds.shifted_mass(0.75, eps, sigma))
    assert bounds.candidate_miss_probability(0.01, 3, mass) == pytest.approx(0.69**3)


def test_the_outer_level_and_the_check_level_add_up_to_one_exactly():
    """The proof's two balls must meet: with p_low strictly above the check level, the outer
    level rounded up makes the two masses sum to more than 1 (0.3 and 0.1 would miss by 1e-16)."""
    for mass, delta in [(0.3, 0.1), (0.5, 0.05), (0.25, 0.05), (0.5, 0.07), (0.2, 0.15)]:
        outer, check = bounds.outer_level(mass, delta), bounds.check_level(mass, delta)
        assert Fraction(outer) + Fraction(check) >= 1
        assert outer - (1 - mass + delta) <= 2e-16  # at most a rounding step above
    assert Fraction(0.3 - 0.1) + Fraction(1 - 0.3 + 0.1) < 1  # why the nudge is needed


def test_candidate_split_finds_a_root_many_decades_down():
    """A small ball with few candidates puts the Delta1 share near 1e-12 of alpha_center: the
    split must still be found at once and be feasible (an absolute tolerance stalled there)."""
    a1, near, a2 = bounds.split_center_alpha(1_000, 0.005, 30, mass=0.1)
    miss = bounds.candidate_miss_probability(bounds.delta1(1_000, a1, mass=0.1), 30, 0.1)
    assert a1 + miss <= 0.0025 and a1 + miss == pytest.approx(0.0025, rel=1e-9)
    assert a1 < 1e-9 and a2 == 0.0025 and near == 0.0


def test_delta1_hoeffding_is_the_papers_term():
    assert bounds.delta1(10_000, 0.0025, "hoeffding") == pytest.approx(
        math.sqrt(math.log(2 / 0.005) / (2 * 10_000))
    )


def test_binomial_delta1_is_tighter_than_hoeffding():
    for n in [100, 1_000, 10_000]:
        assert bounds.delta1(n, 0.0025) < bounds.delta1(n, 0.0025, "hoeffding")


@pytest.mark.parametrize("count,n", [(0, 10), (1, 10), (5, 10), (10, 10), (480, 1000)])
def test_mass_lower_bound_is_one_sided_clopper_pearson(count, n):
    alpha = 0.0025
    expected = stats.binomtest(count, n).proportion_ci(1 - 2 * alpha, "exact").low
    got = bounds.mass_lower_bound(count, n, alpha)
    # rounded down, by far less than any count could notice
    assert got == pytest.approx(expected, rel=1e-9) and got <= expected


def test_mass_lower_bound_hoeffding():
    got = bounds.mass_lower_bound(6000, 10_000, 0.0025, "hoeffding")
    assert got == pytest.approx(0.6 - math.sqrt(math.log(2 / 0.005) / 20_000))


@pytest.mark.parametrize("n", [5, 12, 30])
@pytest.mark.parametrize("p", [0.55, 0.8, 0.95])
@pytest.mark.parametrize("alpha", [0.005, 0.1])
def test_quantile_rank_is_the_smallest_valid_order_statistic(n, p, alpha):
    k = bounds.quantile_rank(p, n, alpha)

    def fail_prob(rank: int) -> float:  # P(r_(rank) < q_p) = P(Bin(n, p) >= rank)
        return 1.0 - binom_tail_below(n, p, rank)

    if k <= n:
        assert fail_prob(k) <= alpha + 1e-12
    else:
        assert fail_prob(n) > alpha
    assert k == 1 or fail_prob(k - 1) > alpha


def test_quantile_rank_hoeffding_is_the_papers_order_statistic():
    p, n, alpha = 0.87, 1_000_000, 0.005
    q = p + math.sqrt(math.log(1 / alpha) / (2 * n))
    assert bounds.quantile_rank(p, n, alpha, "hoeffding") == math.ceil(q * n)


# ALGORITHM.md section 3: quantile levels k / n at alpha = 0.005, Delta = 0.05.
TABLE = [
    (1.0, 0.8715, 0.8726, 0.8785),
    (1.5, 0.9496, 0.9498, 0.9537),
    (2.0, 0.9849, 0.9843, 0.9865),
    (2.5, 0.9973, 0.9962, 0.9974),
]


@pytest.mark.parametrize("h,hoeffding_1e6,binomial_1e5,binomial_1e4", TABLE)
def test_quantile_levels_match_the_algorithm_table(h, hoeffding_1e6, binomial_1e5, binomial_1e4):
    p = float(bounds.certified_mass(h, 1.0, 0.05))
    assert bounds.quantile_rank(p, 10**6, 0.005, "hoeffding") / 1e6 == pytest.approx(
        hoeffding_1e6, abs=1e-4
    )
    assert bounds.quantile_rank(p, 10**5, 0.005) / 1e5 == pytest.approx(binomial_1e5, abs=1e-4)
    assert bounds.quantile_rank(p, 10**4, 0.005) / 1e4 == pytest.approx(binomial_1e4, abs=1e-4)


@pytest.mark.parametrize(
    "n,bound,expected",
    [(10**6, "hoeffding", 2.82), (10**5, "binomial", 3.75), (10**4, "binomial", 3.15)],
)
def test_max_certifiable_eps_matches_the_table_and_the_rank(n, bound, expected):
    sigma = 0.5
    eps_max = bounds.max_certifiable_eps(sigma, n, 0.005, 0.05, bound)
    assert eps_max / sigma == pytest.approx(expected, abs=0.005)
    below = float(bounds.certified_mass(eps_max - 1e-6, sigma, 0.05))
    above = float(bounds.certified_mass(eps_max + 1e-6, sigma, 0.05))
    assert bounds.quantile_rank(below, n, 0.005, bound) <= n
    assert bounds.quantile_rank(above, n, 0.005, bound) == n + 1


def test_certified_mass_is_the_gaussian_shift():
    p = bounds.certified_mass(np.array([0.0, 0.25]), 0.25, 0.05)
    assert p[0] == pytest.approx(0.55)
    assert p[1] == pytest.approx(stats.norm.cdf(stats.norm.ppf(0.55) + 1.0))


@pytest.mark.parametrize("nearest", [False, True])
def test_candidate_split_pays_for_the_miss_inside_alpha_center(nearest):
    a1, near, a2 = bounds.split_center_alpha(2_000, 0.005, 8, nearest=nearest)
    d1 = bounds.delta1(2_000, a1)
    share = 0.00125 if nearest else 0.0025
    assert a2 == 0.0025 and near == (0.00125 if nearest else 0.0)
    assert a1 + bounds.candidate_miss_probability(d1, 8) <= share
    assert a1 + bounds.candidate_miss_probability(d1, 8) == pytest.approx(share, rel=1e-6)
    assert a1 + near + a2 <= 0.005
    assert bounds.split_center_alpha(2_000, 0.005, None) == (0.0025, 0.0, 0.0025)
    assert bounds.split_center_alpha(2_000, 0.005, None, nearest=True) == (
        0.00125,
        0.00125,
        0.0025,
    )


@pytest.mark.parametrize("alpha,k", [(0.00125, 10_000), (0.00125, 30), (0.1, 1), (1e-9, 7)])
def test_nearest_mass_is_the_smallest_mass_k_samples_miss_with_chance_alpha(alpha, k):
    """(1 - q)^k <= alpha exactly (rational arithmetic) at q_near, which is 1 - alpha^(1/k)
    up to the margin against rounding."""
    q = bounds.nearest_mass(alpha, k)
    assert (1 - Fraction(q)) ** k <= Fraction(alpha)
    assert q == pytest.approx(1 - alpha ** (1 / k), rel=1e-9)


def test_too_few_candidates_are_refused():
    with pytest.raises(ValueError, match="candidates=3 is too few"):
        bounds.split_center_alpha(2_000, 0.005, 3)


def test_minimum_sample_counts_are_tight():
    alpha, delta = 0.0025, 0.05
    n = bounds.min_center_samples(alpha, delta)
    assert all(bounds.delta1(m, alpha) <= delta for m in range(n, n + 40))
    assert bounds.delta1(n - 1, alpha) > delta
    c = bounds.min_check_samples(alpha, delta)
    assert bounds.mass_lower_bound(c, c, alpha) > 0.5 - delta
    assert bounds.mass_lower_bound(c - 1, c - 1, alpha) <= 0.5 - delta
    r = bounds.min_certify_samples(0.005, delta)
    assert bounds.max_certifiable_eps(1.0, r, 0.005, delta) >= 0
    assert bounds.max_certifiable_eps(1.0, r - 1, 0.005, delta) < 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: bounds.delta1(0, 0.1),
        lambda: bounds.delta1(10, 1.5),
        lambda: bounds.mass_lower_bound(11, 10, 0.1),
        lambda: bounds.quantile_rank(1.5, 10, 0.1),
        lambda: bounds.check_bound("chernoff"),
    ],
)
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()


def test_eps_out_from_radii_is_each_bound_exactly():
    """The three forms of ``eps_out`` (docs/algorithm.md) on exact binary fractions, and the cap
    at the distance's largest value."""
    eps_out = bounds.eps_out_from_radii
    assert eps_out(1.0, 0.5, 0.25, 0.125) == 0.5 + (0.125 + 0.25)  # nearest candidate, gamma 1
    assert eps_out(2.0, 0.5, 0.25, 0.125) == 2.0 * (0.5 + 2.0 * (0.125 + 0.25))
    assert eps_out(1.0, 0.5, 0.5, math.inf) == 3 * 0.5  # the paper's 3 R-hat
    assert eps_out(2.0, 0.5, 0.5, math.inf) == 10 * 0.5  # gamma (1 + 2 gamma) R-hat
    assert eps_out(2.0, 0.5, 0.25, math.inf) == 2.0 * (0.5 + 4.0 * 0.25)  # ball_mass < 1/2
    assert eps_out(1.0, 0.5, 0.25, 0.125, upper=0.75) == 0.75


def test_quantile_levels_and_ranks_share_one_statistic_only_in_the_papers_bound():
    eps = np.array([0.0, 0.25])
    paper = bounds.quantile_levels(eps, 0.25, 0.05, 0.5, 0.01, near_mass=None)
    assert paper.inner is paper.outer and paper.near is None
    ours = bounds.quantile_levels(eps, 0.25, 0.05, 0.5, 0.01, near_mass=0.001)
    np.testing.assert_array_equal(ours.outer, paper.outer)
    np.testing.assert_array_equal(ours.inner, bounds.shifted_mass(0.51, eps, 0.25))
    np.testing.assert_array_equal(ours.near, bounds.shifted_mass(0.001, eps, 0.25))
    ranks = bounds.quantile_ranks(ours, 10_000, 0.005 / 3)
    assert ranks.near is not None and ranks.near[0] < ranks.inner[0] < ranks.outer[0]
    assert ranks.outer == [bounds.quantile_rank(float(p), 10_000, 0.005 / 3) for p in ours.outer]
    assert bounds.order_statistics(True, 0.5) == 3
    assert bounds.order_statistics(False, 0.5) == 1
    assert bounds.order_statistics(False, 0.25) == 2


def test_no_check_count_is_suggested_for_a_share_within_rounding_of_the_level():
    """0.2 hits out of every 5 samples against the level fl(0.3 - 0.1), 3e-17 below 0.2: no
    count bounds that share above the level, and the search stops (at 2**53 samples) instead
    of doubling past what floats can count."""
    assert bounds.check_samples_for(0.2, 0.05, 0.3 - 0.1) is None
    assert bounds.check_samples_for(0.25, 0.05, 0.2) == 200
