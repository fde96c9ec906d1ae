"""CenterSmoothing end to end on base functions whose behaviour is known, plus its errors."""

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import stats
from seeded_settings import (
    BATCHNORM,
    BOX,
    CANDIDATES,
    CLOUD,
    CLOUD_SAMPLES,
    COIN,
    COIN_COUNTS,
    DOUBLED,
    GRID_IMAGE,
    LABELS,
    LINEAR_MAP,
    LINEAR_MAP_PAPER,
    LINEAR_MAP_X,
    MIXED_CANDIDATES,
    PCA,
    SINE,
    SMALL,
    SMALL_BATCHED,
    STEP,
    TANH,
    CheckShare,
    batchnorm_model,
    box_or_nothing,
    coin,
    doubled,
    grid_image,
    identity,
    image_6x6,
    labels,
    linear_map,
    pca_round_trip,
    sine,
    small,
    step,
    tanh,
)

from centersmooth import (
    CenterSmoothing,
    Certificate,
    Prediction,
    UncertifiableRadiusWarning,
    bounds,
)
from centersmooth.bounds import certified_mass, quantile_rank
from centersmooth.metrics import get_metric
from centersmooth.settings import SmoothingSettings


def test_constant_function_certifies_zero():
    # every output is the same: the check counts all of its samples, whatever the seed
    smoother = small(lambda b: torch.ones(b.shape[0], 3), seed=0, sigma=0.5)
    cert = smoother.certify(torch.zeros(4), [0.1, 0.5, 1.0])
    full = bounds.mass_lower_bound(SMALL["n_check"], SMALL["n_check"], smoother.alpha_check)
    assert not cert.abstained and cert.prediction.p_low == full
    np.testing.assert_array_equal(cert.eps_out, 0.0)
    assert cert.smoothing_error == 0.0


@pytest.mark.parametrize("nearest", [True, False])
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_linear_map_certificate_covers_the_shift_and_is_close_to_its_true_quantiles(scale, nearest):
    """eps_out sits just above the same expression in the true quantiles: R_outer + R_near +
    R_inner (the nearest-candidate bound) or 3 R-hat (the paper's)."""
    dim, sigma = 6, 0.25
    matrix = scale * torch.eye(dim, dtype=torch.float64)
    x = LINEAR_MAP_X
    setting = LINEAR_MAP if nearest else LINEAR_MAP_PAPER  # the scale moves no decision
    smoother = linear_map(scale, nearest, setting.seed)
    eps = np.array([0.125, 0.25, 0.375])
    cert = smoother.certify(x, eps)
    assert not cert.abstained
    # The smoothed output of a linear map follows the input: a shift of eps_in in the direction
    # of the top singular vector moves it by ||A||_2 eps_in, which the certificate must cover.
    assert np.all(cert.eps_out >= scale * eps)
    # True p-quantile of d(center, A(x + delta)): ||A delta + (Ax - center)|| / (scale sigma) is
    # a noncentral chi with 6 degrees of freedom.
    offset = float((matrix @ x - cert.center).norm())
    lam = (offset / (scale * sigma)) ** 2

    def true_q(p: np.ndarray) -> np.ndarray:
        return scale * sigma * np.sqrt(stats.ncx2.ppf(p, dim, lam))

    levels = smoother.quantile_levels(eps)
    if nearest:
        truth = true_q(levels.outer) + true_q(levels.near) + true_q(levels.inner)
    else:
        truth = 3 * true_q(certified_mass(eps, sigma, 0.05))
    ratio = cert.eps_out / truth
    assert np.all(ratio >= 1.0)
    assert np.all(ratio <= 1.03)


def test_step_function_beside_its_jump_is_covered():
    smoother = small(step, STEP.seed, sigma=0.5)
    cert = smoother.certify(torch.tensor([-0.01, 0.0], dtype=torch.float64), [0.05, 0.25])
    # Crossing the jump at x_0 = 0 can flip the smoothed output from 0 to 1.
    assert not cert.abstained and np.all(cert.eps_out >= 1.0)


def test_eps_out_is_non_decreasing_and_inf_beyond_the_range():
    smoother = small(tanh, TANH.seed, sigma=0.3)
    eps = np.linspace(0, 1.2, 13)
    with pytest.warns(UncertifiableRadiusWarning, match="exceed max_eps_in"):
        cert = smoother.certify(torch.zeros(5), eps)
    assert not cert.abstained
    finite = eps <= cert.max_eps_in
    assert np.all(np.diff(cert.eps_out[finite]) >= 0)
    assert np.all(np.isinf(cert.eps_out[~finite])) and (~finite).any()
    assert cert.max_eps_in == pytest.approx(smoother.max_eps_in_for(10_000))


def test_scalar_and_list_eps_in_agree():
    smoother = small(doubled, DOUBLED.seed)
    one = smoother.certify(torch.zeros(3), 0.25)
    many = smoother.certify(torch.zeros(3), [0.25, 0.5])
    assert not one.abstained and not many.abstained
    assert isinstance(one.eps_out, float) and isinstance(one, Certificate)
    assert one.eps_out == many.eps_out[0] and math.isfinite(one.eps_out)


def test_seed_reproduces_bit_for_bit_and_none_draws_fresh_noise():
    a = small(sine, SINE.seed).certify(torch.zeros(4), 0.25)
    b = small(sine, SINE.seed).certify(torch.zeros(4), 0.25)
    assert not a.abstained and not b.abstained
    assert a.eps_out == b.eps_out and torch.equal(a.center, b.center)
    fresh = CenterSmoothing(sine, sigma=0.25, seed=None, **SMALL_BATCHED)
    first, second = fresh.certify(torch.zeros(4), 0.25), fresh.certify(torch.zeros(4), 0.25)
    # fresh noise: the same setting at unseeded generators (it abstains on no seed swept)
    assert not first.abstained and not second.abstained
    assert first.eps_out != second.eps_out


def test_central_candidates_tighten_a_high_dimensional_cloud():
    x = torch.zeros(300)
    central = small(identity, CLOUD.seed).certify(x, 0.25)
    samples_only = small(identity, CLOUD_SAMPLES.seed, central_candidates=False).certify(x, 0.25)
    assert not central.abstained and not samples_only.abstained
    assert central.radius <= samples_only.radius
    assert central.eps_out < 0.8 * samples_only.eps_out


def test_candidate_mode_certifies():
    smoother = small(doubled, CANDIDATES.seed, candidates=30)
    cert = smoother.certify(torch.zeros(3), 0.25)
    assert not cert.abstained and math.isfinite(cert.eps_out)
    assert smoother.alpha_delta1 < smoother.alpha_center / 2


def test_paper_preset_uses_the_papers_constants():
    paper = CenterSmoothing.paper(lambda b: b, sigma=0.5)
    assert (paper.n_center, paper.n_check, paper.n_certify) == (10_000, 10_000, 1_000_000)
    assert paper.bound == "hoeffding" and not paper.central_candidates
    assert paper.alpha_center == paper.alpha_certify == 0.005 and paper.delta == 0.05


def test_several_metrics_share_one_set_of_forward_passes():
    calls = []

    def f(b):
        calls.append(b.shape[0])
        return grid_image(b)

    smoother = small(f, GRID_IMAGE.seed)
    certs = smoother.certify_metrics(torch.zeros(4), [0.25], ["l2", "angular", "tv1", "tv2"])
    assert set(certs) == {"l2", "angular", "tv1", "tv2"}
    assert not any(c.abstained for c in certs.values())
    # the center samples, the certification's (the check's first), the clean pass
    assert sum(calls) == SMALL["n_center"] + max(SMALL["n_check"], SMALL["n_certify"]) + 1
    single = small(grid_image, GRID_IMAGE.seed).certify(torch.zeros(4), [0.25])
    assert not single.abstained and math.isfinite(single.eps_out[0])
    assert single.eps_out[0] == certs["l2"].eps_out[0]


def test_module_runs_in_eval_mode_without_gradients():
    model = batchnorm_model()
    pred = small(model, BATCHNORM.seed).predict(torch.zeros(4))
    assert model.training  # evaluated in eval mode, handed back in the mode it had
    assert isinstance(pred, Prediction) and not pred.abstained
    assert not pred.center.requires_grad
    again = small(model, BATCHNORM.seed).predict(torch.zeros(4))
    assert not again.abstained
    assert torch.equal(pred.center, again.center)  # dropout off: deterministic


def test_numpy_models_get_numpy_batches():
    round_trip, x = pca_round_trip()
    seen = []

    def spy(batch):
        seen.append(type(batch))
        return round_trip(batch)

    cert = small(spy, PCA.seed, sigma=0.1).certify(x, 0.1)
    assert not cert.abstained and math.isfinite(cert.eps_out)
    assert set(seen) == {np.ndarray}


def test_list_outputs_with_an_edit_distance():
    smoother = small(labels, LABELS.seed, metric="levenshtein", sigma=0.5)
    cert = smoother.certify(torch.tensor([2.0]), 0.5)
    assert not cert.abstained
    assert cert.center == "pos" and cert.smoothing_error == 0.0
    assert cert.eps_out in (0.0, 9.0)


def test_abstention_is_explicit():
    # A fair coin between two far-apart outputs: the ball of the center holds exactly half of
    # the mass, and 30 check samples show a mass above 0.48 on 0.07% of seeds (seeded_settings).
    smoother = CenterSmoothing(coin, sigma=1.0, seed=COIN.seed, **COIN_COUNTS)
    cert = smoother.certify(torch.zeros(1), [0.1, 0.2])
    assert cert.abstained and cert.center is None and cert.smoothing_error is None
    assert np.all(np.isinf(cert.eps_out)) and math.isinf(cert.radius)
    assert cert.prediction.p_low <= cert.prediction.check_level == pytest.approx(0.48)


def f_identity(b):
    return b


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(sigma=0.0), "sigma"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(sigma=-1), "sigma"),
        (dict(alpha_center=0.0), "alpha_center"),
        (dict(alpha_certify=1.0), "alpha_certify"),
        (dict(delta=0.5), "delta"),
        (dict(delta=0.0), "delta"),
        (dict(n_center=100), "n_center >= 908"),
        (dict(n_check=5), "n_check >= "),
        (dict(n_certify=5, share_check_samples=False), "n_certify >= 11"),
        (dict(n_center=0), "n_center"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(bound="chernoff"), "bound"),
        (dict(metric="l3"), "known metrics"),
        (dict(candidates=3), "too few"),
        (dict(candidates=20_000), "exceeds n_center"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CenterSmoothing(f_identity, **kwargs)


def test_bad_types():
    with pytest.raises(TypeError, match="base_function"):
        CenterSmoothing(42)
    with pytest.raises(TypeError, match="seed"):
        CenterSmoothing(f_identity, seed="abc")
    with pytest.raises(TypeError, match="x must be"):
        CenterSmoothing(f_identity, **SMALL).certify([0.0, 1.0], 0.1)


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf"), [], [[0.1]]])
def test_bad_eps_in(eps):
    with pytest.raises(ValueError, match="eps_in"):
        CenterSmoothing(f_identity, **SMALL).certify(torch.zeros(2), eps)


@pytest.mark.parametrize(
    "fn,match",
    [
        (lambda b: b[:-1], "batch of"),
        (lambda b: b * float("nan"), "NaN or infinite outputs"),
        (lambda b: b.sum(), "scalar"),
        (lambda b: {"a": 1}, "returns a dict of outputs"),
    ],
)
def test_bad_base_function_outputs(fn, match):
    with pytest.raises((ValueError, TypeError), match=match):
        CenterSmoothing(fn, **SMALL).predict(torch.zeros(2))


def test_bad_distances_and_inputs():
    negative = CenterSmoothing(f_identity, metric=lambda a, b: -(a - b).norm(dim=1), **SMALL)
    with pytest.raises(ValueError, match="negative"):
        negative.predict(torch.zeros(2))
    with pytest.raises(ValueError, match="NaN or infinite values"):
        CenterSmoothing(f_identity, **SMALL).predict(torch.tensor([0.0, float("inf")]))


def test_eps_out_never_exceeds_the_range_of_a_bounded_distance():
    smoother = small(box_or_nothing, BOX.seed, metric="jaccard", sigma=1.0)
    cert = smoother.certify(torch.zeros(1), [0.5, 1.0])
    assert not cert.abstained
    np.testing.assert_array_equal(cert.eps_out, [1.0, 1.0])  # 3 x R-hat = 3, capped at 1
    assert np.all(cert.quantile_radius == 1.0)


def test_candidates_per_distance_share_forward_passes():
    """A mapping sets candidate mode per distance: tv1 scores 30 samples, l2 all of them."""
    model, x = image_6x6()
    mixed = small(model, MIXED_CANDIDATES.seed, candidates={"tv1": 30})
    assert mixed.candidates_for(get_metric("tv1")) == 30
    assert mixed.candidates_for(get_metric("l2")) is None
    certs = mixed.certify_metrics(x, [0.25], ["l2", "tv1"])
    assert not certs["l2"].abstained and not certs["tv1"].abstained
    # the same seed and the same fewest count give the same alpha split, hence the same samples
    # and bounds: each distance matches a smoother that uses its mode for everything (l2: all
    # pairs, with the split that 30 candidates of another distance impose)
    for name, k in (("l2", {"tv1": 30}), ("tv1", 30)):
        alone = small(model, MIXED_CANDIDATES.seed, metric=name, candidates=k)
        assert (alone.alpha_delta1, alone.alpha_check, alone.delta1) == (
            mixed.alpha_delta1,
            mixed.alpha_check,
            mixed.delta1,
        )
        single = alone.certify(x, [0.25])
        assert not single.abstained and math.isfinite(single.eps_out[0])
        assert certs[name].radius == pytest.approx(single.radius, rel=1e-9)
        np.testing.assert_allclose(certs[name].eps_out, single.eps_out, rtol=1e-9)


@pytest.mark.parametrize(
    "candidates, error, message",
    [
        ({"tv1": 0}, ValueError, r"candidates\['tv1'\] must be a positive integer"),
        ({"tv1": 5000}, ValueError, r"candidates\['tv1'\]=5000 exceeds n_center=2000"),
        ({3: 30}, TypeError, "candidates must map distance names to counts"),
        ({"tv1": 1}, ValueError, "candidates=1 is too few"),
    ],
)
def test_bad_candidate_mappings_are_refused(candidates, error, message):
    with pytest.raises(error, match=message):
        CenterSmoothing(lambda x: x, sigma=0.25, n_center=2000, candidates=candidates)


def test_empty_candidate_mapping_means_all_pairs():
    smoother = CenterSmoothing(lambda x: x, sigma=0.25, candidates={})
    assert smoother.candidates is None and smoother.alpha_delta1 == smoother.alpha_center / 4


def scripted_certification(
    n_center: int, n_check: int, n_certify: int, shared: bool = False
) -> Callable:
    """A base function that ignores its input: every center and check output is 0, and the
    certification outputs are 1, ..., n in a shuffled order, so r_(j) = j. ``shared``: the
    certification's ``N = max(n_check, n_certify)`` outputs, the check's first, are ``0.6 N``
    zeros and 1, ..., 0.4 N in a shuffled order, so r_(j) = max(0, j - 0.6 N)."""
    if shared:
        n = max(n_check, n_certify)
        zeros = torch.zeros(n * 3 // 5, dtype=torch.float64)
        ramp = torch.arange(1, n - zeros.numel() + 1, dtype=torch.float64)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        first, values = n_center, torch.cat([zeros, ramp])[order]
    else:
        first = n_center + n_check
        values = torch.randperm(n_certify, generator=torch.Generator().manual_seed(0)) + 1.0
    drawn = 0

    def scripted(b):
        nonlocal drawn
        out = torch.zeros(b.shape[0], 1, dtype=torch.float64)
        for row in range(b.shape[0]):
            j = drawn - first
            if 0 <= j < values.numel():
                out[row, 0] = values[j]
            drawn += 1
        return out

    return scripted


@pytest.mark.parametrize("bound", ["binomial", "hoeffding"])
def test_quantile_radius_is_the_kth_smallest_certification_distance(bound):
    """R-hat must be exactly r_(k), the k-th smallest of the fresh distances (1-indexed): an
    off-by-one would break the certificate's confidence yet move the coverage rates by only
    about two points."""
    n_center, n_check, n_certify = 400, 400, 1_000
    scripted = scripted_certification(n_center, n_check, n_certify)
    smoother = CenterSmoothing(scripted, sigma=1.0, delta=0.15, bound=bound, seed=0, batch_size=64,
                               n_center=n_center, n_check=n_check, n_certify=n_certify,
                               nearest_candidate=False, share_check_samples=False)  # fmt: skip
    eps = np.array([0.25, 0.5, 1.0])
    cert = smoother.certify(torch.zeros(1), eps)
    ranks = [
        quantile_rank(float(p), n_certify, 0.005, bound) for p in certified_mass(eps, 1.0, 0.15)
    ]
    assert not cert.abstained and cert.radius == 0.0
    np.testing.assert_array_equal(cert.quantile_radius, np.array(ranks, dtype=float))
    np.testing.assert_array_equal(cert.inner_radius, cert.quantile_radius)
    np.testing.assert_array_equal(cert.eps_out, 3.0 * np.array(ranks, dtype=float))


@pytest.mark.parametrize("bound", ["binomial", "hoeffding"])
def test_a_smaller_ball_mass_certifies_with_two_order_statistics(bound):
    """ball_mass 0.3 in the paper's bound: R_outer = r_(k1) at Phi(Phi^-1(1 - 0.3 + delta) + h)
    and R_inner = r_(k2) at Phi(Phi^-1(0.3 + Delta1) + h), each at alpha_certify / 2, and
    eps_out = R_outer + 2 R_inner (gamma = 1); the largest certifiable eps_in follows the outer
    level."""
    n_center, n_check, n_certify = 400, 400, 1_000
    scripted = scripted_certification(n_center, n_check, n_certify)
    smoother = CenterSmoothing(scripted, sigma=1.0, delta=0.15, bound=bound, seed=0, batch_size=64,
                               n_center=n_center, n_check=n_check, n_certify=n_certify,
                               ball_mass=0.3, nearest_candidate=False,
                               share_check_samples=False)  # fmt: skip
    eps = np.array([0.1, 0.25, 0.5])
    cert = smoother.certify(torch.zeros(1), eps)
    outer = [
        quantile_rank(float(p), n_certify, 0.0025, bound)
        for p in stats.norm.cdf(stats.norm.ppf(0.85) + eps)
    ]
    inner = [
        quantile_rank(float(p), n_certify, 0.0025, bound)
        for p in stats.norm.cdf(stats.norm.ppf(0.3 + smoother.delta1) + eps)
    ]
    assert not cert.abstained and cert.radius == 0.0
    assert all(k2 < k1 for k1, k2 in zip(outer, inner, strict=True))
    np.testing.assert_array_equal(cert.quantile_radius, np.array(outer, dtype=float))
    np.testing.assert_array_equal(cert.inner_radius, np.array(inner, dtype=float))
    np.testing.assert_array_equal(cert.eps_out, np.array(outer) + 2.0 * np.array(inner))
    assert smoother.delta1 == bounds.delta1(n_center, 0.0025, bound, 0.3)
    assert cert.max_eps_in == bounds.max_certifiable_eps(1.0, n_certify, 0.0025, 0.15, bound, 0.3)


@pytest.mark.parametrize("bound", ["binomial", "hoeffding"])
@pytest.mark.parametrize("mass,candidates", [(0.5, None), (0.3, None), (0.5, 40)])
def test_the_nearest_candidate_bound_uses_three_order_statistics(bound, mass, candidates):
    """The default bound: R_outer at Phi(Phi^-1(1 - q + delta) + h), R_inner at
    Phi(Phi^-1(q + Delta1) + h) and R_near at Phi(Phi^-1(1 - alpha_near^(1/k)) + h), k the sample
    candidates, each r_(k) at alpha_certify / 3, and eps_out = R_outer + R_near + R_inner
    (gamma = 1). alpha_center: a quarter to Delta1, a quarter to the nearest candidate."""
    n_center, n_check, n_certify = 400, 400, 1_000
    scripted = scripted_certification(n_center, n_check, n_certify)
    smoother = CenterSmoothing(scripted, sigma=1.0, delta=0.15, bound=bound, seed=0, batch_size=64,
                               n_center=n_center, n_check=n_check, n_certify=n_certify,
                               ball_mass=mass, candidates=candidates,
                               share_check_samples=False)  # fmt: skip
    eps = np.array([0.1, 0.25, 0.5])
    cert = smoother.certify(torch.zeros(1), eps)
    k = candidates or n_center
    assert smoother.alpha_nearest == 0.00125 and smoother.alpha_check == 0.0025
    if candidates is None:
        assert smoother.alpha_delta1 == 0.00125
    q_near = 1.0 - 0.00125 ** (1.0 / k)

    def ranks(level: float) -> np.ndarray:
        shifted = stats.norm.cdf(stats.norm.ppf(level) + eps)
        return np.array([quantile_rank(float(p), n_certify, 0.005 / 3, bound) for p in shifted])

    outer, inner, near = ranks(1 - mass + 0.15), ranks(mass + smoother.delta1), ranks(q_near)
    assert not cert.abstained and cert.radius == 0.0
    assert np.all(near < inner) and np.all(inner < outer)
    np.testing.assert_array_equal(cert.quantile_radius, outer.astype(float))
    np.testing.assert_array_equal(cert.inner_radius, inner.astype(float))
    np.testing.assert_array_equal(cert.near_radius, near.astype(float))
    np.testing.assert_array_equal(cert.eps_out, (outer + near + inner).astype(float))
    assert smoother.delta1 == bounds.delta1(n_center, smoother.alpha_delta1, bound, mass)
    expected_max = bounds.max_certifiable_eps(1.0, n_certify, 0.005 / 3, 0.15, bound, mass)
    assert cert.max_eps_in == expected_max


# the ranks of R_outer, R_inner and R_near at eps_in = 0.1, 0.25, 0.5 (sigma 1, delta 0.15,
# alpha_certify / 3 each) among N = 1,000 shared samples, and the largest certifiable eps_in
SHARED_RANKS = {
    "binomial": ([730, 779, 848], [659, 713, 794], [37, 48, 74], 2.1053),
    "hoeffding": ([743, 794, 869], [687, 742, 825], [78, 87, 109], 1.1990),
}


@pytest.mark.parametrize("bound", ["binomial", "hoeffding"])
@pytest.mark.parametrize("n_check,n_certify", [(400, 1_000), (1_000, 400), (1_000, 1_000)])
def test_shared_check_samples_certify_with_the_order_statistics_of_all_n(bound, n_check, n_certify):
    """Shared check samples (the default): after the center samples, N = max(n_check, n_certify)
    certification samples, the check's n_check first; the order statistics are r_(k) of all N
    distances at ranks for N, the largest certifiable eps_in is N's, and the prediction is the
    one ``predict`` makes."""
    n_center = 400
    script = scripted_certification(n_center, n_check, n_certify, shared=True)
    smoother = CenterSmoothing(script, sigma=1.0, delta=0.15, bound=bound, seed=0, batch_size=64,
                               n_center=n_center, n_check=n_check, n_certify=n_certify)  # fmt: skip
    assert smoother.share_check_samples and smoother.certification_samples == 1_000
    eps = np.array([0.1, 0.25, 0.5])
    cert = smoother.certify(torch.zeros(1), eps)
    outer, inner, near, largest = SHARED_RANKS[bound]
    ranks = smoother.quantile_ranks(eps)
    assert (ranks.outer, ranks.inner, ranks.near) == (outer, inner, near)
    assert not cert.abstained and cert.radius == 0.0
    zeros = 600  # r_(k) = max(0, k - 600)
    np.testing.assert_array_equal(cert.quantile_radius, np.array(outer, dtype=float) - zeros)
    np.testing.assert_array_equal(cert.inner_radius, np.array(inner, dtype=float) - zeros)
    np.testing.assert_array_equal(cert.near_radius, np.zeros(3))
    np.testing.assert_array_equal(cert.eps_out, np.array(outer) + np.array(inner) - 2 * zeros)
    assert cert.max_eps_in == pytest.approx(largest, abs=1e-4)
    assert cert.max_eps_in == bounds.max_certifiable_eps(1.0, 1_000, 0.005 / 3, 0.15, bound)
    script = scripted_certification(n_center, n_check, n_certify, shared=True)
    again = CenterSmoothing(script, sigma=1.0, delta=0.15, bound=bound, seed=0, batch_size=64,
                            n_center=n_center, n_check=n_check, n_certify=n_certify)  # fmt: skip
    pred = again.predict(torch.zeros(1))
    assert pred == dataclasses.replace(cert.prediction, center=pred.center)
    assert pred.center == cert.center


def test_shared_samples_leave_predict_and_the_check_bit_for_bit():
    """On a real model the certificate's prediction (center, radius, p_low) is the one predict
    returns with the same seed, with shared samples and without; the separate mode draws the
    n_certify certification samples after the check, the shared one N - n_check after it."""
    gen = torch.Generator().manual_seed(5)
    weights = torch.randn(12, 6, generator=gen, dtype=torch.float64)
    x = torch.rand(12, generator=gen, dtype=torch.float64)
    calls = []

    def model(b):
        calls.append(b.shape[0])
        return torch.tanh(b @ weights)

    counts = dict(n_center=1_000, n_check=1_500, n_certify=3_000, batch_size=500, delta=0.1)
    for shared, certification in ((True, 3_000), (False, 1_500 + 3_000)):
        smoother = CenterSmoothing(model, sigma=0.25, seed=7, share_check_samples=shared, **counts)
        calls.clear()
        cert = smoother.certify(x, [0.1, 0.2])
        assert sum(calls) == 1_000 + certification + 1 == cert.forward_passes
        assert cert.certification_samples == 3_000 and cert.to_dict()["forward_passes"] == sum(
            calls
        )
        pred = smoother.predict(x)
        assert pred.forward_passes == 1_000 + 1_500 == pred.to_dict()["forward_passes"]
        assert not cert.abstained and not pred.abstained
        assert (pred.radius, pred.p_low) == (cert.radius, cert.prediction.p_low)
        assert torch.equal(pred.center, cert.center)


def test_nothing_more_is_drawn_when_every_input_abstains_after_the_check():
    """An input whose check fails draws no certification samples beyond the check, alone or in
    a batch; in a batch the inputs that were accepted draw theirs."""
    n_center, n_check, n_certify = 400, 400, 2_000
    seen = {"low": 0, "high": 0}  # noisy copies of each input seen so far

    def moves_after_the_center(b):  # the "high" input's outputs move once its center is drawn
        out = torch.zeros(b.shape[0], 1, dtype=torch.float64)
        for row in range(b.shape[0]):
            kind = "high" if float(b[row].mean()) > 50 else "low"
            if kind == "high" and seen[kind] >= n_center:
                out[row, 0] = 1.0
            seen[kind] += 1
        return out

    smoother = CenterSmoothing(moves_after_the_center, sigma=1.0, seed=0, delta=0.15,
                               n_center=n_center, n_check=n_check, n_certify=n_certify,
                               batch_size=200)  # fmt: skip
    high = torch.full((4,), 100.0, dtype=torch.float64)
    alone = smoother.certify(high, [0.1])
    assert alone.abstained and seen == {"low": 0, "high": n_center + n_check + 1}
    assert (alone.forward_passes, alone.certification_samples) == (n_center + n_check + 1, 0)
    seen.update(low=0, high=0)
    low, high_again = smoother.certify_batch([torch.zeros(4, dtype=torch.float64), high], [0.1])
    assert not low.abstained and high_again.abstained
    assert seen == {"low": n_certify + n_center + 1, "high": n_center + n_check + 1}
    assert (low.forward_passes, high_again.forward_passes) == (seen["low"], seen["high"])


@pytest.mark.parametrize("alpha_center,k", [(0.005, 11), (0.005, 30), (0.2, 5), (0.2, 400)])
def test_the_nearest_level_stays_below_the_inner_one(alpha_center, k):
    """Any candidate count the miss check accepts puts R_near's mass below R_inner's, so R_outer's
    level alone sets the certifiable range."""
    smoother = CenterSmoothing(f_identity, sigma=1.0, n_center=400, n_check=400, n_certify=1_000,
                               delta=0.15, alpha_center=alpha_center, candidates=k)  # fmt: skip
    levels = smoother.quantile_levels(np.array([0.0]))
    assert levels.near is not None
    assert levels.near[0] < levels.inner[0] < levels.outer[0]


def test_the_check_level_is_ball_mass_minus_delta():
    """Check samples of which 40% sit at the center: p_low (about 0.34 from 400) passes
    ball_mass - delta = 0.25 but not the paper's 1/2 - delta = 0.45."""
    n_center, n_check = 1_000, 400
    forty_percent_at_zero = CheckShare(n_center, n_check, 0.4)
    for mass, abstains in ((0.3, False), (0.5, True)):
        smoother = CenterSmoothing(forty_percent_at_zero.reset(), sigma=1.0, delta=0.05, seed=0,
                                   n_center=n_center, n_check=n_check, n_certify=1_000,
                                   batch_size=100, ball_mass=mass)  # fmt: skip
        pred = smoother.predict(torch.zeros(1))
        assert 0.3 < pred.p_low < 0.4
        assert pred.abstained is abstains


@pytest.mark.parametrize("mass", [0.05, 0.04, 0.51, 1.0, True, "0.3", float("nan")])
def test_bad_ball_mass_is_refused(mass):
    with pytest.raises(ValueError, match="ball_mass must lie in"):
        CenterSmoothing(lambda x: x, sigma=0.25, delta=0.05, ball_mass=mass)


def test_settings_are_validated_once_frozen_and_read_through_the_smoother():
    """``SmoothingSettings`` holds the checked arguments and what follows from them; the smoother
    reads them as attributes, and nobody can change one after the levels were derived."""
    settings = SmoothingSettings(n_center=2_000, n_check=2_000, n_certify=5_000, seed=np.int64(3))
    assert settings.seed == 3 and type(settings.seed) is int
    assert settings.alpha_delta1 + settings.alpha_nearest + settings.alpha_check == pytest.approx(
        settings.alpha_center
    )
    assert settings.alpha_quantile == settings.alpha_certify / 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.sigma = 1.0  # type: ignore[misc]
    smoother = CenterSmoothing(lambda b: b, n_center=2_000, n_check=2_000, n_certify=5_000)
    assert smoother.delta1 == settings.delta1 and smoother.max_eps_in == settings.max_eps_in
    with pytest.raises(ValueError, match="n_center=20 is too small"):
        SmoothingSettings(n_center=20)
