"""Empirical coverage: repeated certificates on a problem whose truth is known exactly.

Base function: the identity in 2 dimensions, x = 0, sigma = 1. For a center z the distance
``||x + delta - z||`` is sigma times a noncentral chi with 2 degrees of freedom and noncentrality
``||z||^2``, so every true mass and quantile is available from ``scipy.stats.ncx2``. Large alphas
make failures frequent enough to count.

Two failure events, one per algorithm step:
* certify: ``R-hat < q_p``, the true ``p(eps_in)``-quantile (each of the certificate's order
  statistics at its own level). Given the center, the exact chance is
  ``P(Bin(n_certify, p) >= k)`` (the number of samples below ``q_p`` is binomial), so the count over
  independent repetitions is ``Bin(N, pi)``: checked two-sided, which also makes the test fail if
  the bound were loose (a vacuous certificate would never fail).
* predict: an accepted ball whose true mass is below ``1/2 - delta`` (``ball_mass - delta``); at
  most ``alpha_center / 2``.
"""

import numpy as np
import pytest
import torch
from scipy import stats

from centersmooth import CenterSmoothing, bounds

REPEATS = 300
LEVEL = 1e-4  # chance of a false alarm per check


def identity(b):
    return b


STATISTICS = {"quantile_radius": "outer", "inner_radius": "inner", "near_radius": "near"}


@pytest.mark.parametrize("bound", ["binomial", "hoeffding"])
@pytest.mark.parametrize("mass,nearest", [(0.5, True), (0.3, True), (0.5, False)])
def test_violation_frequency_is_consistent_with_alpha(bound, mass, nearest):
    """Every order statistic of the certificate (``R_outer``, ``R_inner`` and ``R_near`` with the
    nearest-candidate bound, each at ``alpha / 3``; the paper's single ``R-hat`` at ``alpha``) is
    checked against its own exact failure chance."""
    sigma, delta, alpha = 1.0, 0.1, 0.2
    eps = np.array([0.5, 1.0])
    smoother = CenterSmoothing(
        identity,
        sigma=sigma,
        n_center=300,
        n_check=400,
        n_certify=300,
        alpha_center=alpha,
        alpha_certify=alpha,
        delta=delta,
        bound=bound,
        batch_size=400,
        ball_mass=mass,
        nearest_candidate=nearest,
        share_check_samples=False,  # the exact chance given acceptance needs separate samples
    )
    level = smoother.alpha_quantile
    assert level == (alpha / 3 if nearest else alpha)
    levels = smoother.quantile_levels(eps)._asdict()
    ranks = smoother.quantile_ranks(eps)._asdict()
    masses = {name: levels[key] for name, key in STATISTICS.items() if levels[key] is not None}
    assert len(masses) == (3 if nearest else 2)
    exact_fail = {}
    for name, p in masses.items():
        k = ranks[STATISTICS[name]]
        assert k == [bounds.quantile_rank(float(q), 300, level, bound) for q in p]
        exact_fail[name] = [stats.binom.sf(r - 1, 300, q) for r, q in zip(k, p, strict=True)]
    certify_fails = {name: np.zeros(len(eps), dtype=int) for name in masses}
    predict_fails = accepted = 0
    x = torch.zeros(2, dtype=torch.float64)
    for seed in range(REPEATS):
        cert = smoother.certify(x, eps, seed=seed)
        if cert.abstained:
            continue
        accepted += 1
        lam = float((cert.center.double() ** 2).sum()) / sigma**2
        true_mass = stats.ncx2.cdf((cert.radius / sigma) ** 2, 2, lam)
        predict_fails += int(true_mass < mass - delta)
        for name, p in masses.items():
            true_q = sigma * np.sqrt(stats.ncx2.ppf(p, 2, lam))
            certify_fails[name] += getattr(cert, name) < true_q
    assert accepted >= REPEATS // 2  # enough accepted runs for the counts to mean something
    assert predict_fails <= stats.binom.ppf(1 - LEVEL, accepted, alpha / 2)
    for name in masses:
        for fails, pi in zip(certify_fails[name], exact_fail[name], strict=True):
            assert pi <= level
            lo, hi = stats.binom.ppf([LEVEL / 2, 1 - LEVEL / 2], accepted, pi)
            assert lo <= fails <= hi, (name, fails, pi, accepted)


def test_shared_check_samples_fail_no_more_often_than_alpha(bound="binomial"):
    """With shared check samples (the default) the N = max(n_check, n_certify) = 400 distances
    of the certification include the check's. Given the center samples, each order statistic
    still falls below its true quantile with exact chance ``pi = P(Bin(N, p) >= k)`` (the same
    for every center: the distances have no atoms), so the number of seeds where it does is
    ``Bin(REPEATS, pi)``; the certificate fails where that happens and ``x`` is accepted. So the
    failures counted over every seed are at most that count, and at least it minus the
    abstentions: both ends are checked."""
    sigma, delta, alpha, n = 1.0, 0.1, 0.2, 400
    eps = np.array([0.5, 1.0])
    smoother = CenterSmoothing(identity, sigma=sigma, n_center=300, n_check=n, n_certify=300,
                               alpha_center=alpha, alpha_certify=alpha, delta=delta, bound=bound,
                               batch_size=400)  # fmt: skip
    assert smoother.share_check_samples and smoother.certification_samples == n
    level = smoother.alpha_quantile
    levels = smoother.quantile_levels(eps)._asdict()
    ranks = smoother.quantile_ranks(eps)._asdict()
    exact_fail = {}
    for name, key in STATISTICS.items():
        k = ranks[key]
        assert k == [bounds.quantile_rank(float(q), n, level, bound) for q in levels[key]]
        exact_fail[name] = [
            stats.binom.sf(r - 1, n, q) for r, q in zip(k, levels[key], strict=True)
        ]
    fails = {name: np.zeros(len(eps), dtype=int) for name in STATISTICS}
    abstained = 0
    x = torch.zeros(2, dtype=torch.float64)
    for seed in range(REPEATS):
        cert = smoother.certify(x, eps, seed=seed)
        if cert.abstained:
            abstained += 1
            continue
        lam = float((cert.center.double() ** 2).sum()) / sigma**2
        for name, key in STATISTICS.items():
            true_q = sigma * np.sqrt(stats.ncx2.ppf(levels[key], 2, lam))
            fails[name] += getattr(cert, name) < true_q
    assert abstained <= REPEATS // 2
    for name in STATISTICS:
        for count, pi in zip(fails[name], exact_fail[name], strict=True):
            assert pi <= level
            lo, hi = stats.binom.ppf([LEVEL / 2, 1 - LEVEL / 2], REPEATS, pi)
            assert lo <= count + abstained and count <= hi, (name, count, abstained, pi)
