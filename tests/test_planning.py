"""The planner: what given counts certify, the counts an eps_in needs, the chance that a
well-behaved input abstains, and the warning for settings whose check is likely to abstain."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import integrate, stats

from centersmooth import CenterSmoothing, bounds, planning
from centersmooth.cli import commands as cli
from centersmooth.metrics import get_metric
from centersmooth.settings import SmoothingSettings


def brute_abstain_chance(n_center: int, n_check: int, alpha: float, level: float) -> float:
    """The model computed another way: the smallest accepting count by scanning every count,
    and the mass of the center's ball integrated against its Beta density."""
    c_min = next(
        c for c in range(n_check + 1) if bounds.mass_lower_bound(c, n_check, alpha) > level
    )
    m = math.ceil(n_center / 2)
    a, b = m, n_center - m + 1

    def integrand(q: float) -> float:
        return float(stats.binom.cdf(c_min - 1, n_check, q) * stats.beta.pdf(q, a, b))

    lo, hi = stats.beta.ppf([1e-12, 1 - 1e-12], a, b)
    value, _ = integrate.quad(integrand, lo, hi, limit=200, epsabs=1e-12)
    return value


@pytest.mark.parametrize(
    "n_center,n_check,expected",
    [(10_000, 10_000, 1.879e-7), (10_000, 2_000, 0.06862), (1_000, 2_000, 0.1796)],
)
def test_the_abstain_chance_under_the_model(n_center: int, n_check: int, expected: float) -> None:
    """Today's defaults almost never abstain under the model; 2,000 check samples do on about
    one input in fifteen, and with 1,000 center samples on about one in five."""
    s = SmoothingSettings(n_center=n_center, n_check=n_check)
    chance = planning.abstain_chance(s)
    assert chance == pytest.approx(expected, rel=1e-3)
    brute = brute_abstain_chance(n_center, n_check, s.alpha_check, 0.45)
    assert chance == pytest.approx(brute, rel=1e-6, abs=1e-12)


def test_the_check_count_that_keeps_abstentions_below_two_percent() -> None:
    s = SmoothingSettings(n_center=1_000, n_check=2_000)
    need = planning.check_samples_needed(s)
    assert need == 8_509
    assert planning.abstain_chance(s, need) <= 0.02 < planning.abstain_chance(s, need - 1)
    assert planning.check_samples_needed(SmoothingSettings()) == 2_624
    assert planning.min_accepting_count(2_000, 0.0025, 0.45, "binomial") == 964
    assert (
        bounds.mass_lower_bound(964, 2_000, 0.0025)
        > 0.45
        >= bounds.mass_lower_bound(963, 2_000, 0.0025)
    )
    assert planning.min_accepting_count(5, 0.0025, 0.45, "binomial") == 6  # none accepts


def test_the_samples_an_eps_in_needs() -> None:
    """sigma 0.25, the default confidence: eps_in = 0.5 (2 sigma) needs N = 379 certification
    samples, 1 (4 sigma) 346,087; n_certify="auto" needs a cap of 608,167 for the latter (its
    last round spends less of alpha_certify), and at least n_check where the rounds start. The
    counts are the certificate's own: at them every rank is within the samples, one fewer and
    ``R_outer``'s is not (the closed form of ``max_eps_in``, without the rounding margins, said
    346,085 and 608,164, where the certificate's eps_out is inf)."""
    s = SmoothingSettings()
    alpha = 0.005 / 3
    assert planning.certify_samples_needed(s, 0.5) == 379
    assert s.max_eps_in_for(379, alpha) >= 0.5 > s.max_eps_in_for(378, alpha)
    assert planning.certify_samples_needed(s, 1.0) == 346_087
    assert planning.cap_needed(s, 1.0) == 608_167
    l2 = get_metric("l2")
    for fixed, auto in ((346_087, 608_167), (346_086, 608_166)):
        for counts in (dict(n_certify=fixed), dict(n_certify="auto", n_certify_cap=auto)):
            n = SmoothingSettings(**counts).certification_samples
            ranks = SmoothingSettings(**counts).quantile_ranks(np.array([1.0]), l2)
            assert planning.reachable(ranks, n)[0] == (fixed == 346_087), counts
    assert planning.auto_certifies(s, 1.0, 608_167) and not planning.auto_certifies(s, 1.0, 608_166)
    assert planning.auto_max_eps_in(s, 608_164) >= 1.0  # the closed form, a hair optimistic
    assert planning.cap_needed(s, 0.5) == 10_000
    assert planning.certify_samples_needed(s, 100.0) is None  # more than 2^50


def test_the_plan_puts_it_together() -> None:
    s = SmoothingSettings(n_center=1_000, n_check=2_000, n_certify=20_000)
    result = planning.plan(s, [0.5, 1.0])
    assert (result.forward_passes, result.abstained_passes) == (21_001, 3_001)
    assert result.max_eps_in == s.max_eps_in and 0.5 < s.max_eps_in < 1.0
    assert [r.certifiable for r in result.radii] == [True, False]
    assert [r.samples_needed for r in result.radii] == [379, 346_087]
    assert result.check_samples_for_target == 8_509
    text = planning.format_plan(result)
    assert "forward passes per certificate: 21,001" in text
    assert "chance that a well-behaved input abstains: 0.18 (n_check >= 8,509" in text
    assert "a center chosen by minimising over its own samples does worse" in text
    assert json.loads(json.dumps(result.to_dict()))["radii"][1]["samples_needed"] == 346_087


def test_settings_likely_to_abstain_warn_with_the_count_that_fixes_it() -> None:
    import centersmooth

    # the smoother's own warnings are public names, to filter or to catch
    assert centersmooth.AbstentionRiskWarning is planning.AbstentionRiskWarning
    with pytest.warns(planning.AbstentionRiskWarning, match=r"about 18\.0% .* n_check >= 8,509"):
        CenterSmoothing(lambda b: b, n_center=1_000, n_check=2_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CenterSmoothing(lambda b: b)  # today's defaults: 2e-7


def test_plan_from_the_shell(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--sigma", "0.25", "--eps-in", "2", "4", "--eps-in-relative"]) == 0
    out = capsys.readouterr().out
    assert "largest certifiable eps_in: 0.7737 (3.09 sigma)" in out  # 10^4 samples
    assert "346,087" in out and "608,167" in out
    assert cli.main(["plan", "--sigma", "0.25", "--eps-in", "0.5", "--preset", "paper",
                     "--json"]) == 0  # fmt: skip
    record = json.loads(capsys.readouterr().out)
    assert record["n_certify"] == 1_000_000 and record["share_check_samples"] is False
    assert record["forward_passes"] == 10_000 + 10_000 + 1_000_000 + 1
    assert record["radii"][0]["samples_needed"] == 9_425  # Hoeffding's
