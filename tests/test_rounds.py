"""Certification samples in rounds (``n_certify="auto"``): the schedule, the alpha spending, the
stopping rule, and certificates that read each round's order statistics at that round's ranks."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from centersmooth import CenterSmoothing, UncertifiableRadiusWarning, bounds, rounds
from centersmooth.bounds import QuantileRanks
from centersmooth.settings import SmoothingSettings


def test_the_schedule_doubles_up_to_the_cap() -> None:
    assert rounds.schedule(10_000, 1_000_000) == (
        10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000, 1_000_000,
    )  # fmt: skip
    assert rounds.schedule(5_000, 20_000) == (5_000, 10_000, 20_000)
    assert rounds.schedule(20_000, 20_000) == rounds.schedule(30_000, 20_000) == (20_000,)


@pytest.mark.parametrize("alpha", [0.005, 0.1, 1e-9])
@pytest.mark.parametrize("count", [1, 2, 3, 8, 40])
def test_the_spending_halves_and_never_exceeds_alpha(alpha: float, count: int) -> None:
    shares = rounds.spend(alpha, count)
    assert len(shares) == count
    assert sum(Fraction(a) for a in shares) <= Fraction(alpha)
    assert float(sum(Fraction(a) for a in shares)) == pytest.approx(alpha, rel=1e-12)
    for first, second in zip(shares, shares[1:], strict=False):
        assert second == pytest.approx(first / 2, rel=1e-12)
    assert rounds.spend(alpha, 1) == (alpha,)  # a fixed n_certify spends all of it at once


def test_the_default_schedule_spends_these_levels() -> None:
    """n_check = 10^4 with shared check samples: eight rounds from 10^4 to the cap of 10^6,
    round r at 0.005 2^(8 - r) / 255."""
    s = SmoothingSettings(n_certify="auto")
    assert s.rounds == rounds.schedule(10_000, 1_000_000) and s.certification_samples == 10**6
    assert s.round_alphas == pytest.approx([0.005 * 2 ** (8 - r) / 255 for r in range(1, 9)])
    assert s.round_alphas[0] == pytest.approx(0.0025098, rel=1e-4)
    # the largest certifiable eps_in is the cap's last round's, at 1.96e-5 / 3: 4.10 sigma
    last = bounds.max_certifiable_eps(0.25, 10**6, s.round_alphas[-1] / 3, 0.05)
    assert s.max_eps_in == last == pytest.approx(1.02488, abs=1e-5)
    separate = SmoothingSettings(n_certify="auto", share_check_samples=False)
    assert separate.rounds[0] == rounds.FIRST_ROUND == 5_000
    fixed = SmoothingSettings()
    assert (fixed.rounds, fixed.round_alphas) == ((10_000,), (0.005,))


def test_scaled_ranks_and_the_stopping_rule() -> None:
    ranks = QuantileRanks([9_261, 10_001], [8_929, 9_996], [1_405, 7_469])
    ahead = rounds.scaled_ranks(ranks, 10_000, 5_000)
    assert ahead == QuantileRanks([4_631, 5_001], [4_465, 4_998], [703, 3_735])
    paper = QuantileRanks([100, 200], [100, 200], None)
    scaled = rounds.scaled_ranks(paper, 400, 200)
    assert scaled.outer == scaled.inner == [50, 100] and scaled.near is None
    pays = rounds.another_round_pays
    wanted = np.array([True, True])
    assert not pays(np.array([3.0, 15.0]), np.array([2.98, 15.0]), wanted, 0.01)
    assert pays(np.array([3.0, 15.0]), np.array([2.96, 15.0]), wanted, 0.01)
    assert pays(np.array([3.0, math.inf]), np.array([3.0, math.inf]), wanted, 0.01)
    assert not pays(np.array([3.0, math.inf]), np.array([3.0, 9.0]), np.array([True, False]), 0.01)
    assert not pays(np.array([0.0]), np.array([0.0]), np.array([True]), 0.0)


# the ranks of R_outer, R_inner and R_near at eps_in = sigma / 2 and 1.9 sigma (delta 0.15, each
# statistic at its round's alpha / 3) in the three rounds of 400 (the check's), 800 and 1,600
ROUND_RANKS = [
    QuantileRanks([349, 401], [328, 400], [37, 195]),
    QuantileRanks([686, 800], [643, 797], [64, 374]),
    QuantileRanks([1_354, 1_596], [1_266, 1_588], [116, 724]),
]


def stepped(n_center: int) -> tuple[list[int], object]:
    """A base function that ignores its input: the center samples are 0, then of the
    certification outputs (the check's 400 first) 240 are 0, 160 are 1 and the rest 5.
    Returns a list counting the outputs drawn, and the function."""
    drawn = [0]

    def f(b: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(b.shape[0], 1, dtype=torch.float64)
        for row in range(b.shape[0]):
            j = drawn[0] - n_center
            out[row, 0] = 0.0 if j < 240 else 1.0 if j < 400 else 5.0
            drawn[0] += 1
        return out

    return drawn, f


def auto_smoother(f: object) -> CenterSmoothing:
    return CenterSmoothing(f, sigma=1.0, delta=0.15, seed=0, batch_size=200, n_center=400,
                           n_check=400, n_certify="auto", n_certify_cap=1_600)  # fmt: skip


def test_auto_reads_each_round_at_its_ranks_and_keeps_the_smallest_radii() -> None:
    """eps_in = sigma / 2 is certified in the first round, the check's 400 samples
    (R = 1, 1, 0: eps_out 2); 1.9 sigma needs the second (ranks within 800: R = 5, 5, 1), where
    the first's radii stay the smaller ones for sigma / 2; no third round is expected to gain
    1%, so drawing stops at 800."""
    drawn, f = stepped(400)
    smoother = auto_smoother(f)
    assert smoother.rounds == (400, 800, 1_600)
    eps = np.array([0.5, 1.9])
    for r, expected in enumerate(ROUND_RANKS):
        assert smoother.quantile_ranks(eps, round_index=r) == expected
        alpha = smoother.round_alphas[r] / 3
        levels = smoother.quantile_levels(eps)
        assert expected.outer == [
            bounds.quantile_rank(float(p), smoother.rounds[r], alpha) for p in levels.outer
        ]
    cert = smoother.certify(torch.zeros(1), eps)
    assert not cert.abstained and cert.radius == 0.0
    np.testing.assert_array_equal(cert.quantile_radius, [1.0, 5.0])
    np.testing.assert_array_equal(cert.inner_radius, [1.0, 5.0])
    np.testing.assert_array_equal(cert.near_radius, [0.0, 1.0])
    np.testing.assert_array_equal(cert.eps_out, [2.0, 11.0])
    assert cert.certification_samples == 800
    assert cert.forward_passes == drawn[0] == 400 + 800 + 1


def test_auto_stops_after_the_first_round_when_another_would_not_pay() -> None:
    drawn, f = stepped(400)
    cert = auto_smoother(f).certify(torch.zeros(1), 0.5)
    assert (cert.eps_out, cert.certification_samples) == (2.0, 400)
    assert cert.forward_passes == drawn[0] == 400 + 400 + 1


def test_an_uncertifiable_radius_is_said_at_once_with_the_count_it_needs() -> None:
    drawn, f = stepped(400)
    smoother = auto_smoother(f)
    with pytest.warns(UncertifiableRadiusWarning) as caught:
        cert = smoother.certify(torch.zeros(1), [0.5, 2.5])
    message = str(caught[0].message)
    assert "eps_in 2.5 exceeds max_eps_in: eps_out is inf there. max_eps_in=2.177" in message
    assert "eps_in 2.5 needs n_certify_cap >= " in message and "a fixed n_certify >= " in message
    assert caught[0].filename == __file__  # the warning names the caller's line
    assert cert.eps_out[1] == math.inf and cert.certification_samples == 400
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smoother.certify(torch.zeros(1), [0.5])  # nothing to say


def test_auto_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="n_certify_cap=100 is below n_check=400"):
        SmoothingSettings(n_center=400, n_check=400, delta=0.15, n_certify="auto",
                          n_certify_cap=100)  # fmt: skip
    with pytest.raises(ValueError, match="n_certify must be a positive integer"):
        SmoothingSettings(n_certify="many")
    with pytest.raises(ValueError, match=r"n_certify_tolerance must lie in \[0, 1\)"):
        SmoothingSettings(n_certify="auto", n_certify_tolerance=1.5)
    small = SmoothingSettings(n_certify="auto", n_certify_cap=30, share_check_samples=False)
    assert small.rounds == (30,)
    with pytest.raises(ValueError, match="n_certify_cap=5 is too small .* n_certify_cap >= 11"):
        SmoothingSettings(n_certify="auto", n_certify_cap=5, share_check_samples=False)
