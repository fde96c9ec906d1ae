"""The pairwise bound (docs/algorithm.md, "The pairwise bound" and "Which bound serves each
eps_in"): its margins and ranks meet their defining inequalities exactly and are pinned at the
defaults; ``R_pair`` is the order statistic of the rows' radii, never below the one over every
row; a certificate adds ``R_outer`` and ``R_pair`` where it serves and is the nearest-candidate
bound's, bit for bit, beyond its reach; which distances and settings it serves by default; the
settings it cannot be proved for are refused; the command line reaches it."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats
from seeded_settings import DOUBLED, doubled, small

from centersmooth import UncertifiableRadiusWarning, pair_bound
from centersmooth.bounds import ball_rank, quantile_rank, shifted_mass
from centersmooth.cli import commands as cli
from centersmooth.metrics import FunctionMetric, get_metric
from centersmooth.metrics.lpips import LPIPSDistance
from centersmooth.planning import format_plan, plan
from centersmooth.settings import PAPER_SETTINGS, SmoothingSettings

EPS = np.array([0.125, 0.25, 0.375, 0.5])  # h = 0.5 to 2 at sigma 0.25


def exact_binom_cdf(k: int, n: int, p: Fraction) -> Fraction:
    return sum((math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k + 1)), Fraction(0))


@pytest.mark.parametrize(
    ("n", "alpha", "mass"), [(11, 0.05, 0.5), (40, 0.01, 0.5), (41, 0.02, 0.3)]
)
def test_delta1_prime_is_the_smallest_margin_over_the_other_samples(n, alpha, mass):
    m = ball_rank(n, mass)
    margin = pair_bound.pair_delta1(n, alpha, mass)
    q = Fraction(mass) + Fraction(margin)
    assert exact_binom_cdf(m - 1, n - 1, q) <= Fraction(alpha)  # fewer than m of n - 1
    lower = q - Fraction(1, 10**6)
    assert exact_binom_cdf(m - 1, n - 1, lower) > Fraction(alpha)  # no slack to speak of


def test_the_levels_spend_the_nearest_candidate_shares_exactly():
    for k in (30, 10_000):
        levels = pair_bound.pair_levels(10_000, k, 0.00125, 0.00125, 1_000, 2_000)
        q = levels.near_mass
        assert (1 - Fraction(q)) ** k <= Fraction(0.00125)
        alpha_d = 0.00125 / (k * q)
        assert levels.delta1 == pair_bound.pair_delta1(10_000, alpha_d, 0.5) or (
            levels.delta1 >= pair_bound.pair_delta1(10_000, alpha_d, 0.5)
        )
        assert levels.columns == 2_000
        assert levels.rows == min(1_000, pair_bound.ROWS_PER_CANDIDATE * k)


def test_ranks_meet_their_tails_and_are_pinned_at_the_defaults():
    s = SmoothingSettings(pairwise_bound=True)
    metric = get_metric("l2")
    levels = s.pair_levels(metric)
    ranks = s.pair_ranks(EPS, metric)
    assert ranks.inner == [1516, 1778, 1924, 1984]
    assert ranks.near == [11, 28, 68, 152]
    half = s.alpha_certify / 4  # alpha_T / 2, alpha_T = alpha_certify / 2
    p_near = shifted_mass(levels.near_mass, EPS, s.sigma)
    p_in = shifted_mass(0.5 + levels.delta1, EPS, s.sigma)
    for e in range(EPS.size):
        g = pair_bound.MARKOV_SHARE * p_near[e]
        level, beta = p_near[e] + g, half * g
        tail_near = stats.binom.sf(np.array(ranks.near[e]) - [1, 2], levels.rows, level)
        assert tail_near[0] <= half < tail_near[1]
        tail_in = stats.binom.sf(np.array(ranks.inner[e]) - [1, 2], levels.columns, p_in[e])
        assert tail_in[0] <= beta < tail_in[1]


def brute_force(samples, rows, columns, inner, near):
    d = torch.cdist(samples[:rows].double(), samples[rows : rows + columns].double())
    radii = torch.sort(d, dim=1).values[:, inner - 1]
    return float(torch.sort(radii).values[near - 1])


def test_r_pair_is_the_rows_order_statistic_and_never_below_the_one_over_every_row():
    gen = torch.Generator().manual_seed(0)
    samples = torch.randn(300, 5, generator=gen)
    levels = pair_bound.PairLevels(near_mass=0.01, delta1=0.05, rows=100, columns=200)
    ranks = pair_bound.PairRanks(inner=[150, 180, 201], near=[5, 20, 5])
    center = torch.zeros(5)
    got = pair_bound.pair_radii(get_metric("l2"), samples, center, ranks, levels)
    for e in range(2):
        full = brute_force(samples, 100, 200, ranks.inner[e], ranks.near[e])
        # float32 distances against the float64 brute force: equal to rounding, as the nearest
        # rows hold the smallest radii here
        assert got[e] == pytest.approx(full, rel=1e-6)
    assert got[2] == math.inf  # a rank beyond the columns certifies nothing
    # rows chosen from a point far away: other rows, a valid bound, never a smaller one
    far = torch.full((5,), 10.0)
    assert pair_bound.pair_radii(get_metric("l2"), samples, far, ranks, levels)[1] >= got[1]
    assert got[1] >= brute_force(samples, 100, 200, 180, 20) * (1 - 1e-6)


def pairwise_smoother(**overrides):
    """The registered ``DOUBLED`` setting (its check accepts at its seed whatever the bound: the
    pairwise bound leaves ``predict`` as it is), certified with the pairwise bound."""
    settings = dict(pairwise_bound=True, pair_rows=500, pair_columns=1_500, **overrides)
    return small(doubled, DOUBLED.seed, **settings)


@pytest.mark.parametrize(("metric", "gamma"), [("l2", 1.0), ("squared_l2", 2.0)])
def test_a_certificate_adds_r_outer_and_r_pair(metric, gamma):
    x = torch.zeros(3)
    with pytest.warns(UncertifiableRadiusWarning):
        cert = pairwise_smoother().certify_metrics(x, [0.05, 0.1, 2.0], [metric])[metric]
    assert not cert.abstained
    outer, pair = np.asarray(cert.quantile_radius), np.asarray(cert.pair_radius)
    finite = np.isfinite(cert.eps_out)
    assert list(finite) == [True, True, False]  # 8 sigma is beyond max_eps_in
    assert np.array_equal(cert.eps_out[finite], gamma * (outer[finite] + pair[finite]))
    assert np.all(np.isinf(cert.inner_radius)) and np.all(np.isinf(cert.near_radius))
    nearest = small(doubled, DOUBLED.seed, pairwise_bound=False)
    plain = nearest.certify_metrics(x, [0.05, 0.1], [metric])[metric]
    assert np.all(cert.eps_out[finite] < plain.eps_out)


def test_a_record_round_trips_with_its_pair_radius():
    cert = pairwise_smoother().certify(torch.zeros(3), [0.05, 0.1])
    back = type(cert).from_dict(cert.to_dict())
    assert back.to_json() == cert.to_json()
    assert np.array_equal(back.pair_radius, cert.pair_radius)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"nearest_candidate": False}, "needs nearest_candidate=True"),
        ({"nan_outputs": "outside"}, "finite outputs only"),
        ({"pair_rows": 9_000}, "exceeds n_center=10000"),
        ({"pair_columns": 0}, "pair_columns must be a positive integer"),
    ],
)
def test_settings_the_proof_does_not_cover_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        SmoothingSettings(pairwise_bound=True, **settings)


def test_its_reach_is_where_its_ranks_stop_fitting_and_max_eps_in_stays_the_other_bounds():
    s = SmoothingSettings()
    metric = get_metric("l2")
    reach = s.pair_max_eps_in()
    assert reach / s.sigma == pytest.approx(2.4954, abs=2e-4)  # pinned: 2,000 columns
    assert list(s.paired(np.array([0.0, reach, reach + 1e-3 * s.sigma]), metric)) == [
        True,
        True,
        False,
    ]
    assert s.max_eps_in == SmoothingSettings(pairwise_bound=False).max_eps_in
    # few certification samples: the pairwise ranks still fit where the nearest-candidate
    # ones do not, and the rule leaves such an eps_in uncertified, as without the bound
    few = SmoothingSettings(n_check=1_000, n_certify=1_000)
    assert few.max_eps_in < reach
    beyond = np.array([few.max_eps_in * 0.99, few.max_eps_in * 1.01])
    assert pair_bound.pair_fits(few.pair_ranks(beyond, metric), few.pair_levels(metric)) == [
        True,
        True,
    ]
    assert list(few.paired(beyond, metric)) == [True, False]


def test_it_serves_the_cheap_built_in_distances_where_the_settings_allow_it():
    s = SmoothingSettings()
    assert s.pairwise and s.pairwise_bound is None
    assert all(s.pairwise_for(get_metric(name)) for name in ("l2", "angular", "tv1", "cosine"))
    # outputs that repeat exactly (a far atom a higher quantile level can reach): off
    discrete = ("jaccard", "mask_jaccard", "hamming", "levenshtein", "total_variation")
    assert not any(s.pairwise_for(get_metric(name)) for name in discrete)
    assert LPIPSDistance.pair_default is False  # a network per distance: off unless asked
    user = FunctionMetric(lambda a, b: (a - b).abs().sum(dim=1))
    assert not s.pairwise_for(user)
    assert SmoothingSettings(pairwise_bound=True).pairwise_for(user)
    assert not SmoothingSettings(pairwise_bound=False).pairwise_for(get_metric("l2"))
    for off in ({"n_center": 2_999}, {"nan_outputs": "outside"}, {"nearest_candidate": False}):
        assert not SmoothingSettings(**off).pairwise  # the default leaves it off, no error
    assert not SmoothingSettings(**{k: v for k, v in PAPER_SETTINGS.items()}).pairwise
    with pytest.raises(ValueError, match="pairwise_bound must be True, False or None"):
        SmoothingSettings(pairwise_bound="yes")


def test_beyond_its_reach_the_certificate_is_the_nearest_candidate_bounds_bit_for_bit():
    """One call certifies on both sides of the pairwise reach: inside, ``R_outer`` at
    ``alpha_certify / 2`` plus ``R_pair``; beyond, the very certificate of
    ``pairwise_bound=False`` at the same seed (the same samples and ranks)."""
    x, metric = torch.zeros(3), get_metric("l2")
    smoother = pairwise_smoother()
    s = smoother.settings
    reach = s.pair_max_eps_in()
    eps = np.array([0.5 * reach, reach, 1.05 * reach, 0.99 * s.max_eps_in])
    assert list(s.paired(eps, metric)) == [True, True, False, False]
    cert = smoother.certify(x, eps)
    plain = small(doubled, DOUBLED.seed, pairwise_bound=False).certify(x, eps)
    inside, beyond = slice(0, 2), slice(2, 4)
    assert np.array_equal(
        cert.eps_out[inside], cert.quantile_radius[inside] + cert.pair_radius[inside]
    )
    assert np.all(np.isinf(cert.inner_radius[inside])) and np.all(
        np.isinf(cert.near_radius[inside])
    )
    # tighter well inside its reach (at the reach itself, on these 3-d outputs, 5% looser)
    assert cert.eps_out[0] < plain.eps_out[0]
    for field in ("eps_out", "quantile_radius", "inner_radius", "near_radius"):
        assert np.array_equal(getattr(cert, field)[beyond], getattr(plain, field)[beyond]), field
    assert np.all(np.isinf(cert.pair_radius[beyond]))
    ranks, levels = s.quantile_ranks(eps, metric), s.quantile_levels(eps, metric)
    n = s.certification_samples
    for e, share in zip(range(eps.size), (2, 2, 3, 3), strict=True):
        expected = quantile_rank(float(levels.outer[e]), n, s.alpha_certify / share, s.bound)
        assert ranks.outer[e] == expected


def test_the_command_line_turns_it_on_with_its_counts():
    args = cli.build_parser().parse_args(
        ["certify", "autoencoder", "--sigma", "0.25", "--eps-in", "0.25", "--out", "o",
         "--pairwise-bound", "--pair-rows", "500", "--pair-columns", "3000"]
    )  # fmt: skip
    settings = cli.smoothing_settings(args)
    assert settings["pairwise_bound"] is True
    assert (settings["pair_rows"], settings["pair_columns"]) == (500, 3_000)
    plain = cli.build_parser().parse_args(
        ["certify", "autoencoder", "--sigma", "0.25", "--eps-in", "0.25", "--out", "o"]
    )
    assert "pairwise_bound" not in cli.smoothing_settings(plain)  # the default: None
    off = cli.build_parser().parse_args(
        ["certify", "autoencoder", "--sigma", "0.25", "--eps-in", "0.25", "--out", "o",
         "--no-pairwise-bound"]
    )  # fmt: skip
    assert cli.smoothing_settings(off)["pairwise_bound"] is False


def test_r_pair_falls_below_its_true_quantile_no_more_often_than_its_alpha():
    """Event D of the proof on outputs with a known law: ``N(0, I_6)``, where the radius of the
    ball around ``s`` holding ``p_in`` is ``r(s) = sqrt(ncx2.ppf(p_in, 6, |s|^2))``, increasing
    in ``|s|``, so ``T* = r`` at the ``p_near``-quantile of ``|S|``. Over 2,000 seeded trials of
    60 rows and 140 columns, ``R_pair < T*`` may happen at most ``alpha`` of the time: the count
    must stay within the 99.9% quantile of ``Bin(2000, alpha)``. The bound is conservative
    (Markov's inequality pays for the rows' own ranks), so the control that shows the count can
    exceed the limit reads each row at its median instead of its ``p_in`` rank."""
    dim, alpha, trials = 6, 0.1, 2_000
    levels = pair_bound.PairLevels(near_mass=0.1, delta1=0.1, rows=60, columns=140)
    ranks = pair_bound.pair_ranks(np.array([0.0]), 1.0, levels, alpha)
    p_near = float(shifted_mass(0.1, 0.0, 1.0)[()])
    p_in = float(shifted_mass(0.6, 0.0, 1.0)[()])
    t_star = math.sqrt(stats.ncx2.ppf(p_in, dim, stats.chi2.ppf(p_near, dim)))
    lower = pair_bound.PairRanks([levels.columns // 2], ranks.near)
    gen = torch.Generator().manual_seed(0)
    metric, center = get_metric("l2"), torch.zeros(dim)
    below = below_control = 0
    for _ in range(trials):
        samples = torch.randn(200, dim, generator=gen, dtype=torch.float64)
        below += int(pair_bound.pair_radii(metric, samples, center, ranks, levels)[0] < t_star)
        control = pair_bound.pair_radii(metric, samples, center, lower, levels)[0]
        below_control += int(control < t_star)
    limit = stats.binom.ppf(0.999, trials, alpha)
    assert below <= limit
    assert below_control > limit


def test_a_radius_beyond_every_reach_is_said_with_the_certification_samples_it_needs(capsys):
    """Beyond the pairwise reach the nearest-candidate bound serves, whose reach grows with the
    certification samples: the advice names them, from Python and from the shell."""
    s = SmoothingSettings()
    cli.check_eps_in([0.1, s.max_eps_in * 1.1], s)
    assert "raise --n-certify" in capsys.readouterr().err
    with pytest.warns(UncertifiableRadiusWarning, match="needs n_certify >= "):
        pairwise_smoother().certify(torch.zeros(3), [2.0])


def test_the_plan_says_which_bound_serves_up_to_where(capsys):
    """``centersmooth plan`` (and ``planning.plan``) name the pairwise bound's reach, or the
    bound that serves alone."""
    s = SmoothingSettings()
    result = plan(s, [0.5])
    assert result.pair_reach == min(s.pair_max_eps_in(), s.max_eps_in)
    assert result.to_dict()["pair_reach"] == result.pair_reach
    assert "bound: the pairwise bound up to eps_in 0.6239 (2.5 sigma) for the distances" in (
        format_plan(result)
    )
    off = plan(SmoothingSettings(pairwise_bound=False), [0.5])
    assert off.pair_reach is None and "bound: the nearest-candidate bound" in format_plan(off)
    assert cli.main(["plan", "--sigma", "0.25", "--eps-in", "0.5", "--no-pairwise-bound"]) == 0
    assert "bound: the nearest-candidate bound\n" in capsys.readouterr().out
    cli.main(["plan", "--sigma", "0.25", "--eps-in", "0.5", "--pairwise-bound"])
    assert "for every distance; the nearest-candidate bound beyond it" in capsys.readouterr().out
