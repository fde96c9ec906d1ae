"""Property tests (hypothesis, derandomized): metric axioms, monotone bounds, monotone eps_out.

* Every registered metric against what the certificate relies on: ``d >= 0``, finite, at most its
  declared ``upper``, ``d(a, a) = 0``, symmetry, the relaxed triangle inequality with its declared
  ``gamma``, and a pairwise form that agrees with the elementwise one. Inputs include the edge
  cases: zero vectors (angular), empty and degenerate boxes (jaccard), empty and full masks and
  empty sets, one-hot probability vectors, empty strings, equal and collinear points.
* Every bound is monotone in its arguments and meets the guarantee its docstring states.
* ``eps_out`` is non-decreasing in ``eps_in`` for every metric (one shared sample set).

``derandomize=True`` makes every run draw the same examples, so CI is stable.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from seeded_settings import MONOTONE_X, monotone_smoother

from centersmooth import bounds
from centersmooth.metrics import EMPTY_BOX, available_metrics, get_metric

PROFILE = dict(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
FAST = settings(max_examples=60, **PROFILE)
SLOW = settings(max_examples=12, **PROFILE)

# ----------------------------------------------------------------------------- output strategies
small = st.floats(-100.0, 100.0, allow_nan=False, width=64)


@st.composite
def vector_items(draw, shape=(5,)):
    kind = draw(st.sampled_from(["random", "zero", "tiny", "integer"]))
    size = int(np.prod(shape))
    if kind == "zero":
        values = [0.0] * size
    elif kind == "tiny":
        values = draw(st.lists(st.floats(-1e-6, 1e-6), min_size=size, max_size=size))
    elif kind == "integer":
        values = draw(st.lists(st.integers(-3, 3), min_size=size, max_size=size))
    else:
        values = draw(st.lists(small, min_size=size, max_size=size))
    return torch.tensor(values, dtype=torch.float64).reshape(shape)


@st.composite
def box_items(draw):
    kind = draw(st.sampled_from(["random", "empty", "inverted", "line", "same_corner"]))
    coord = st.floats(0.0, 10.0, width=64)
    if kind == "empty":
        return torch.tensor(EMPTY_BOX, dtype=torch.float64)
    x1, y1, w, h = draw(coord), draw(coord), draw(coord), draw(coord)
    if kind == "inverted":  # x2 < x1: an empty set of the plane
        return torch.tensor([x1 + w, y1, x1, y1 + h], dtype=torch.float64)
    if kind == "line":  # zero area
        return torch.tensor([x1, y1, x1, y1 + h], dtype=torch.float64)
    if kind == "same_corner":
        return torch.tensor([0.0, 0.0, w, h], dtype=torch.float64)
    return torch.tensor([x1, y1, x1 + w, y1 + h], dtype=torch.float64)


@st.composite
def mask_items(draw):
    kind = draw(st.sampled_from(["random", "empty", "full", "single"]))
    if kind == "empty":
        return torch.zeros(3, 3)
    if kind == "full":
        return torch.ones(3, 3)
    if kind == "single":
        m = torch.zeros(3, 3)
        m.view(-1)[draw(st.integers(0, 8))] = 1.0
        return m
    bits = draw(st.lists(st.booleans(), min_size=9, max_size=9))
    return torch.tensor(bits, dtype=torch.float32).reshape(3, 3)


@st.composite
def probability_items(draw):
    kind = draw(st.sampled_from(["random", "one_hot", "uniform", "sparse"]))
    if kind == "one_hot":
        p = torch.zeros(4, dtype=torch.float64)
        p[draw(st.integers(0, 3))] = 1.0
        return p
    if kind == "uniform":
        return torch.full((4,), 0.25, dtype=torch.float64)
    weights = draw(st.lists(st.floats(0.0, 1.0, width=64), min_size=4, max_size=4))
    if kind == "sparse":
        weights[draw(st.integers(0, 3))] = 0.0
    w = torch.tensor(weights, dtype=torch.float64)
    assume(float(w.sum()) > 1e-9)
    return w / w.sum()


def label_items():
    return st.lists(st.integers(0, 2), min_size=6, max_size=6).map(
        lambda v: torch.tensor(v, dtype=torch.int64)
    )


def string_items():
    return st.text(alphabet="abc", max_size=6)


def set_items():
    return st.frozensets(st.integers(0, 5), max_size=5)


@st.composite
def lpips_items(draw):
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([0.0, 0.05, 1.0]))
    gen = torch.Generator().manual_seed(seed)
    return (scale * (2 * torch.rand(3, 32, 32, generator=gen) - 1)).clamp(-1, 1)


ITEMS = {
    "l1": vector_items(),
    "l2": vector_items(),
    "linf": vector_items(),
    "angular": vector_items(),
    "cosine": vector_items(),
    "squared_l2": vector_items(),
    "tv1": vector_items((2, 3, 3)),
    "tv2": vector_items((3, 4)),
    "jaccard": box_items(),
    "mask_jaccard": mask_items(),
    "total_variation": probability_items(),
    "hellinger": probability_items(),
    "hamming": label_items(),
    "levenshtein": string_items(),
    "levenshtein_normalized": string_items(),
    "lpips": lpips_items(),
    "lpips_vgg": lpips_items(),
}
# list outputs (Python sets) as well as tensors
SET_METRICS = {"mask_jaccard": set_items(), "jaccard": set_items()}
EXPENSIVE = {"lpips", "lpips_vgg"}
# outputs stay valid when scaled
SCALABLE = {"l1", "l2", "linf", "angular", "cosine", "squared_l2", "tv1", "tv2"}


@st.composite
def triples(draw, item, scalable=False):
    """Three outputs, sometimes with two of them equal or (for vectors) collinear."""
    a, b, c = draw(item), draw(item), draw(item)
    tie = draw(st.sampled_from(["none", "ab", "bc", "ac", "scaled"]))
    if tie == "ab":
        b = a
    elif tie == "bc":
        c = b
    elif tie == "ac":
        c = a
    elif tie == "scaled" and scalable:
        b = a * draw(st.sampled_from([0.5, 2.0, 1e3]))
    return a, b, c


def batch(items):
    if isinstance(items[0], torch.Tensor):
        return torch.stack(items)
    return list(items)


def as_float(d) -> np.ndarray:
    return torch.as_tensor(d).detach().double().cpu().numpy()


def tolerance(metric, *items) -> float:
    """Rounding slack: float64 inputs give ~1e-12 relative error; LPIPS runs in float32."""
    scale = 1.0
    for it in items:
        if isinstance(it, torch.Tensor) and it.is_floating_point():
            scale = max(scale, float(it.abs().max()) if it.numel() else 1.0)
    if metric.name in EXPENSIVE:
        return 1e-4
    return 1e-9 * scale * 100


def test_every_registered_metric_has_a_generator():
    missing = sorted(set(available_metrics()) - set(ITEMS))
    assert not missing, f"add an output strategy to ITEMS for {missing}"


def check_axioms(metric, a, b, c) -> None:
    # one batched call for the five pairs: (a,b) (b,a) (a,a) (b,c) (a,c)
    left, right = batch([a, b, a, b, a]), batch([b, a, a, c, c])
    ab, ba, aa, bc, ac = as_float(metric(left, right))
    tol = tolerance(metric, a, b, c)
    for d in (ab, ba, aa, bc, ac):
        assert math.isfinite(d) and d >= 0.0
        if metric.upper is not None:
            assert d <= metric.upper + tol
    assert aa <= tol, f"d(a, a) = {aa}"
    assert abs(ab - ba) <= tol, f"asymmetric: {ab} vs {ba}"
    assert ac <= metric.gamma * (ab + bc) + tol, (
        f"relaxed triangle with gamma={metric.gamma} fails: d(a,c)={ac} > {metric.gamma} * "
        f"({ab} + {bc})"
    )
    # the pairwise form agrees with the elementwise one (it may use a matrix-product shortcut)
    pts = [a, b, c]
    pair = as_float(metric.pairwise(batch(pts), batch(pts)))
    expected = as_float(
        metric(batch([p for p in pts for _ in pts]), batch([q for _ in pts for q in pts]))
    ).reshape(3, 3)
    assert pair.shape == (3, 3)
    atol = max(tol, 1e-5 * (1 + np.abs(expected).max()))
    assert np.allclose(pair, expected, rtol=1e-5, atol=atol)


CHEAP = sorted(set(ITEMS) - EXPENSIVE)


@pytest.mark.parametrize("name", CHEAP)
def test_metric_axioms(name):
    metric = get_metric(name)

    @FAST
    @given(triples(ITEMS[name], scalable=name in SCALABLE))
    def run(abc):
        check_axioms(metric, *abc)

    run()


@pytest.mark.parametrize("name", sorted(SET_METRICS))
def test_metric_axioms_on_python_sets(name):
    metric = get_metric(name)

    @FAST
    @given(triples(SET_METRICS[name]))
    def run(abc):
        a, b, c = abc
        ab, ba = float(metric([a], [b])[0]), float(metric([b], [a])[0])
        assert float(metric([a], [a])[0]) == 0.0
        assert ab == ba
        assert (
            float(metric([a], [c])[0]) <= metric.gamma * (ab + float(metric([b], [c])[0])) + 1e-12
        )

    run()


@pytest.mark.parametrize("name", sorted(EXPENSIVE))
@pytest.mark.needs("lpips")
def test_lpips_axioms_with_gamma_two(name):
    metric = get_metric(name)
    assert metric.gamma == 2.0

    @settings(max_examples=4 if name == "lpips" else 2, **PROFILE)
    @given(triples(ITEMS[name]))
    def run(abc):
        check_axioms(metric, *abc)

    run()


def test_angular_distance_of_zero_vectors_is_declared_behaviour():
    metric = get_metric("angular")
    zero, v = torch.zeros(1, 5, dtype=torch.float64), torch.ones(1, 5, dtype=torch.float64)
    assert float(metric(zero, zero)[0]) == 0.0
    assert float(metric(zero, v)[0]) == 0.5
    assert float(metric(v, 3 * v)[0]) == 0.0


# ----------------------------------------------------------------------------- bounds
families = st.sampled_from(["binomial", "hoeffding"])
levels = st.floats(1e-4, 0.3)


@FAST
@given(st.integers(1, 4000).map(lambda j: 2 * j - 1), levels, levels, families)
def test_delta1_decreasing_in_alpha_and_along_odd_n(n, a1, a2, bound):
    lo, hi = sorted((a1, a2))
    assert bounds.delta1(n, hi, bound) <= bounds.delta1(n, lo, bound) + 1e-12
    assert bounds.delta1(n + 2, lo, bound) <= bounds.delta1(n, lo, bound) + 1e-12


@FAST
@given(st.integers(1, 3000), levels, families)
def test_delta1_guarantee(n, alpha, bound):
    d1 = bounds.delta1(n, alpha, bound)
    q = min(0.5 + d1, 1.0)
    m = bounds.ball_rank(n)
    # a ball of mass 1/2 + Delta1 holds fewer than half of Z1 with probability at most alpha
    assert stats.binom.cdf(m - 1, n, q) <= alpha * (1 + 1e-9)


@FAST
@given(st.integers(1, 2000), st.data(), levels, levels, families)
def test_mass_lower_bound_monotone(n, data, a1, a2, bound):
    c1 = data.draw(st.integers(0, n))
    c2 = data.draw(st.integers(c1, n))
    lo, hi = sorted((a1, a2))
    assert bounds.mass_lower_bound(c1, n, lo, bound) <= bounds.mass_lower_bound(c2, n, lo, bound)
    assert bounds.mass_lower_bound(c1, n, lo, bound) <= bounds.mass_lower_bound(c1, n, hi, bound)
    assert bounds.mass_lower_bound(c1, n, lo, bound) <= c1 / n + 1e-12


@FAST
@given(st.integers(1, 200), st.floats(0.01, 0.99), st.floats(0.01, 0.5))
def test_clopper_pearson_lower_bound_guarantee(n, p, alpha):
    """P(p_low(Bin(n, p)) > p) <= alpha, computed exactly over all counts."""
    counts = np.arange(n + 1)
    above = [c for c in counts if bounds.mass_lower_bound(int(c), n, alpha) > p]
    assert float(stats.binom.pmf(above, n, p).sum()) <= alpha * (1 + 1e-9)


@FAST
@given(
    st.lists(st.floats(0.0, 5.0), min_size=2, max_size=6),
    st.floats(0.05, 2.0),
    st.floats(0.01, 0.45),
)
def test_certified_mass_monotone(eps, sigma, delta):
    eps = np.sort(np.asarray(eps))
    p = bounds.certified_mass(eps, sigma, delta)
    assert np.all(np.diff(p) >= 0)
    assert np.all(p >= 0.5 + delta - 1e-12)
    assert np.all(bounds.certified_mass(eps, 2 * sigma, delta) <= p + 1e-15)
    assert np.all(bounds.certified_mass(eps, sigma, delta / 2) <= p + 1e-15)


@FAST
@given(st.integers(1, 5000), st.floats(0.0, 1.0), st.floats(0.0, 1.0), levels, levels, families)
def test_quantile_rank_monotone(n, p1, p2, a1, a2, bound):
    plo, phi = sorted((p1, p2))
    lo, hi = sorted((a1, a2))
    assert bounds.quantile_rank(plo, n, lo, bound) <= bounds.quantile_rank(phi, n, lo, bound)
    assert bounds.quantile_rank(plo, n, hi, bound) <= bounds.quantile_rank(plo, n, lo, bound)
    assert 1 <= bounds.quantile_rank(plo, n, lo, bound) <= n + 1


@FAST
@given(st.integers(1, 5000), st.floats(0.0, 1.0), levels)
def test_binomial_quantile_rank_is_exact_and_smallest(n, p, alpha):
    k = bounds.quantile_rank(p, n, alpha, "binomial")
    if k <= n:  # guarantee: P(at least k samples below the quantile) <= alpha
        assert stats.binom.sf(k - 1, n, p) <= alpha * (1 + 1e-9)
    if k >= 2:  # and no smaller rank qualifies
        assert stats.binom.sf(k - 2, n, p) > alpha * (1 - 1e-9)


@FAST
@given(st.integers(1, 10**6), st.integers(1, 10**6), levels, st.floats(0.01, 0.45), families)
def test_max_certifiable_eps_monotone_and_consistent(n1, n2, alpha, delta, bound):
    lo, hi = sorted((n1, n2))
    sigma = 0.5
    e_lo = bounds.max_certifiable_eps(sigma, lo, alpha, delta, bound)
    e_hi = bounds.max_certifiable_eps(sigma, hi, alpha, delta, bound)
    assert e_lo <= e_hi + 1e-12
    assert bounds.max_certifiable_eps(sigma, lo, alpha, min(delta * 1.5, 0.49), bound) <= e_lo
    if math.isfinite(e_hi) and e_hi > 1e-3:
        inside = float(bounds.certified_mass(e_hi * (1 - 1e-3), sigma, delta))
        outside = float(bounds.certified_mass(e_hi * (1 + 1e-3) + 1e-6, sigma, delta))
        assert bounds.quantile_rank(inside, hi, alpha, bound) <= hi
        assert bounds.quantile_rank(min(outside, 1.0), hi, alpha, bound) == hi + 1


@FAST
@given(st.integers(50, 20000), st.floats(0.005, 0.3), st.integers(1, 200), families, st.booleans())
def test_split_center_alpha_pays_for_candidates(n, alpha, k, bound, nearest):
    try:
        a1, near, a2 = bounds.split_center_alpha(n, alpha, k, bound, nearest=nearest)
    except ValueError as err:
        assert "too few" in str(err)
        return
    assert a2 == pytest.approx(alpha / 2)
    miss = bounds.candidate_miss_probability(bounds.delta1(n, a1, bound), k)
    assert a1 + miss + near <= alpha / 2 * (1 + 1e-9)
    assert 0 < a1 <= alpha / 2


@pytest.mark.parametrize(
    "bound",
    [
        "binomial",
        "hoeffding",
    ],
)
def test_minimum_sample_counts_are_minimal(bound):
    @SLOW
    @given(st.floats(0.001, 0.2), st.floats(0.02, 0.45))
    def run(alpha, delta):
        check_minimum_sample_counts(alpha, delta, bound)

    run()


def check_minimum_sample_counts(alpha, delta, bound):
    n_check = bounds.min_check_samples(alpha, delta, bound)
    assert bounds.mass_lower_bound(n_check, n_check, alpha, bound) > 0.5 - delta
    if n_check > 1:
        assert bounds.mass_lower_bound(n_check - 1, n_check - 1, alpha, bound) <= 0.5 - delta
    n_cert = bounds.min_certify_samples(alpha, delta, bound)
    assert bounds.max_certifiable_eps(1.0, n_cert, alpha, delta, bound) >= 0
    if n_cert > 1:
        assert bounds.max_certifiable_eps(1.0, n_cert - 1, alpha, delta, bound) < 0
    n_center = bounds.min_center_samples(alpha, delta, bound)
    for n in range(n_center, n_center + 6):  # every count from the minimum on qualifies
        assert bounds.delta1(n, alpha, bound) <= delta


# ----------------------------------------------------------------------------- eps_out(eps_in)
@pytest.mark.parametrize(
    "name",
    [  # lpips_vgg: the same code as lpips
        pytest.param(n, marks=pytest.mark.needs("lpips")) if n in EXPENSIVE else n
        for n in sorted(set(ITEMS) - {"lpips_vgg"})
    ],
)
def test_eps_out_non_decreasing_in_eps_in(name):
    smoother = monotone_smoother(name)  # seeded_settings: accepts at every seed swept

    @settings(max_examples=2 if name in EXPENSIVE else 5, **PROFILE)
    @given(st.lists(st.floats(0.0, 1.5), min_size=2, max_size=8), st.integers(0, 1000))
    def run(eps, seed):
        eps = sorted(eps)
        cert = smoother.certify(MONOTONE_X, eps, seed=seed)
        out = np.asarray(cert.eps_out)
        assert not cert.abstained
        assert np.all(out >= 0)
        finite = np.isfinite(out)
        assert np.all(np.diff(out[finite]) >= 0), f"eps_out {out} not monotone in {eps}"
        # infinite exactly beyond the largest certifiable radius, and only there
        assert np.array_equal(~finite, np.asarray(eps) > smoother.max_eps_in)
        assert np.all(np.diff(np.asarray(cert.quantile_radius)[finite]) >= 0)

    run()
