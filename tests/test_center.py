"""The min-median center: half the points in its ball, radius within beta of the optimum."""

import numpy as np
import pytest
import torch

from centersmooth.bounds import ball_rank
from centersmooth.center import find_center, median_distance
from centersmooth.metrics import get_metric


def optimal_half_ball_radius_1d(points: np.ndarray, mass: float = 0.5) -> float:
    """Smallest radius of an interval holding ceil(mass n) of the points (brute force)."""
    xs = np.sort(points)
    m = ball_rank(len(xs), mass)
    return min((xs[i + m - 1] - xs[i]) / 2 for i in range(len(xs) - m + 1))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("mass", [0.5, 0.2])
def test_center_ball_holds_half_and_is_within_beta_of_optimum_1d(seed, mass):
    """With a ``mass`` below 1/2 the ball holds that share, within beta of that optimum."""
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(0, 1, 31), rng.normal(6, 0.2, 20), rng.uniform(-9, 9, 10)])
    samples = torch.tensor(points)[:, None]
    metric = get_metric("l2")
    center = find_center(samples, metric, mass=mass)
    d = metric(center.point.expand_as(samples), samples)
    assert int((d <= center.radius).sum()) >= ball_rank(len(points), mass)
    assert center.radius == float(torch.kthvalue(d, ball_rank(len(points), mass)).values)
    assert center.radius <= 2 * optimal_half_ball_radius_1d(points, mass) + 1e-12


@pytest.mark.parametrize("name", ["l2", "l1", "angular", "tv2", "hamming", "levenshtein"])
def test_center_radius_is_the_smallest_median_among_samples(name):
    metric = get_metric(name)
    rng = np.random.default_rng(1)
    if name == "levenshtein":
        samples = ["".join(rng.choice(list("ab"), size=rng.integers(0, 5))) for _ in range(41)]
    elif name == "hamming":
        samples = torch.tensor(rng.integers(0, 3, (41, 8)))
    else:
        samples = torch.tensor(rng.normal(size=(41, 2, 3, 3)))
    center = find_center(samples, metric, extra=None)
    brute = min(median_distance(metric, samples[i], samples) for i in range(41))
    assert center.radius == pytest.approx(brute, abs=1e-9)
    assert center.n_candidates == 41


def test_central_points_can_only_lower_the_radius():
    samples = torch.randn(301, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    metric = get_metric("l2")
    plain = find_center(samples, metric)
    central = find_center(samples, metric, extra=metric.central_candidates(samples))
    assert central.radius <= plain.radius
    # in 200 dimensions a sample is about sqrt(2) times farther from the others than the mean is
    assert central.radius < 0.8 * plain.radius
    assert central.index >= 301


def test_candidate_mode_scores_only_the_first_k():
    samples = torch.tensor([[10.0], [0.0], [0.1], [0.2], [-0.1]])
    center = find_center(samples, get_metric("l2"), n_candidates=1)
    assert center.point.item() == 10.0 and center.n_candidates == 1


def test_bad_metric_values_are_refused():
    samples = torch.randn(9, 2)
    with pytest.raises(ValueError, match="negative"):
        find_center(samples, get_metric(lambda a, b: -(a - b).norm(dim=1)))
    with pytest.raises(ValueError, match="NaN"):
        find_center(samples, get_metric(lambda a, b: (a - b).norm(dim=1) * float("nan")))


def _brute_force_radius(metric, samples, extra=None):
    pool = list(samples) + ([] if extra is None else list(extra))
    return min(median_distance(metric, p, samples) for p in pool)


def _clouds():
    gen = torch.Generator().manual_seed(7)
    yield "low-dim", torch.randn(400, 3, generator=gen)  # samples beat the central points
    yield "high-dim", torch.randn(400, 300, generator=gen)  # a central point wins
    low_rank = torch.randn(400, 5, generator=gen) @ torch.randn(5, 200, generator=gen)
    yield "low-rank", low_rank + 0.01 * torch.randn(400, 200, generator=gen)
    cluster = 1e-4 * torch.randn(300, 64, generator=gen) + 5.0  # tight half, far outliers
    yield "cluster+outliers", torch.cat([cluster, 50 * torch.randn(100, 64, generator=gen)])
    yield "duplicates", torch.ones(300, 20).index_put_((torch.arange(30),), torch.zeros(20))
    images = torch.rand(1, 4, 6, 6, generator=gen) + 0.3 * torch.randn(350, 4, 6, 6, generator=gen)
    yield "float64 images", images.double()
    # Rounding traps of the product form (an audit found both picking a worse center): a tight
    # core measured from an outlier (the first sample), and a float64 cloud far from the origin.
    core = 1e-3 * torch.randn(700, 50, generator=gen)
    far = 100 * torch.nn.functional.normalize(torch.randn(500, 50, generator=gen), dim=1)
    yield "outlier first", torch.cat([far[:1], core, far[1:]])
    yield (
        "float64 far out",
        777.77 + 1e-5 * torch.randn(4000, 20, generator=gen, dtype=torch.float64),
    )


@pytest.mark.parametrize("name", ["l2", "angular"])
@pytest.mark.parametrize("central", [True, False])
@pytest.mark.parametrize("cloud", list(_clouds()), ids=lambda c: c[0])
def test_pruned_search_finds_the_all_pairs_minimum(name, central, cloud):
    """Pruning with the low-rank lower bound skips samples but never changes the minimum."""
    samples = cloud[1]
    metric = get_metric(name)
    extra = metric.central_candidates(samples) if central else None
    center = find_center(samples, metric, extra=extra)
    assert center.radius == pytest.approx(_brute_force_radius(metric, samples, extra), abs=1e-9)
    assert center.n_candidates == len(samples) + (0 if extra is None else len(extra))


def test_pruning_without_embedding_counts_exact_distances():
    """tv1 has no Euclidean embedding: the exact block is counted instead, same minimum."""
    samples = torch.rand(300, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    metric = get_metric("tv1")
    extra = metric.central_candidates(samples)
    center = find_center(samples, metric, extra=extra)
    assert center.radius == pytest.approx(_brute_force_radius(metric, samples, extra), abs=1e-9)


def test_low_rank_coordinates_never_lengthen_a_distance():
    from centersmooth.center import _low_rank_coordinates

    gen = torch.Generator().manual_seed(1)
    points = torch.randn(500, 8, generator=gen) @ torch.randn(8, 90, generator=gen)
    points += 0.1 * torch.randn(500, 90, generator=gen)
    coords, omega = _low_rank_coordinates(points, rank=4, budget=64 * 90)
    assert coords.shape == (500, 5) and coords.dtype == torch.float64 and omega < 1e-12
    ratio = torch.pdist(coords.double()) / torch.pdist(points.double())
    assert float(ratio.max()) <= 1 + 1e-5
    assert float(ratio.median()) > 0.7  # four directions hold most of the spread


def _plain_search(metric, samples, extra=None):
    """The all-pairs search with the exact elementwise distance: the smallest median, ties to
    the smaller index (samples first, then ``extra``)."""
    pool = list(samples) + ([] if extra is None else list(extra))
    return min((median_distance(metric, p, samples), i) for i, p in enumerate(pool))


@pytest.mark.parametrize("name", ["l2", "squared_l2"])
@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_where_the_low_rank_margin_cannot_be_shown_the_search_counts_exact_distances(name, scale):
    """Float64 clouds beyond float32's range: norms of 1e30 (squares overflow float32) and of
    1e-30 (squares underflow it). The low-rank bound's rounding cannot be bounded by its margin
    there, so no row is ruled out by it, and the search returns exactly the plain search's
    center and radius (with float32 products throughout, the first picked a worse center)."""
    from centersmooth.center import _SamplePruner

    samples = scale * torch.randn(300, 10, generator=torch.Generator().manual_seed(0)).double()
    metric = get_metric(name)
    bound = _SamplePruner(metric, samples, samples, ball_rank(300)).bound
    if bound is not None:  # the margin is checked per block: every row is kept
        everything = torch.arange(300)
        assert bool(bound.may_reach(everything, 1e-3 * bound.scale, 150, 1e-4).all())
    for extra in (None, metric.central_candidates(samples)):
        center = find_center(samples, metric, extra=extra)
        assert (center.radius, center.index) == _plain_search(metric, samples, extra)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_low_rank_distances_stay_within_their_proved_rounding(dtype):
    """On a cloud that lies in a 5-dimensional subspace (the low-rank distances are then the
    distances, up to rounding), every squared low-rank distance as ``may_reach`` computes it is
    within ``(d + 2 zeta)^2 + product_error`` of the true distance ``d``, and the bound is not
    vacuous (the rounding it allows is a small part of the margin)."""
    from centersmooth.center import _LowRankBound

    gen = torch.Generator().manual_seed(4)
    a = torch.randn(300, 5, generator=gen, dtype=torch.float64)
    points = (3.0 + a @ torch.randn(5, 700, generator=gen, dtype=torch.float64)).to(dtype)
    bound = _LowRankBound.of(points, 32)
    assert bound is not None
    c = bound.coords
    sq = torch.addmm(bound.sq_norms[None, :], c, c.T, alpha=-2.0).add_(bound.sq_norms[:, None])
    true = torch.cdist(points.double(), points.double())
    allowed = (true + 2 * bound.zeta) ** 2 + bound.product_error
    assert bool((sq.double() <= allowed).all())
    assert 4 * bound.zeta * float(true.max()) + bound.product_error < 1e-4 * bound.scale**2 / 5


def test_the_ordinary_case_keeps_its_margin_and_its_pruning():
    """On a cloud of outputs near a low-dimensional subspace (like an autoencoder's) the low-rank
    bound's proven rounding fits in its margin many times over, and the pruned search computes
    the exact distances of the central points and one first block of samples only."""
    from centersmooth.center import _LowRankBound

    gen = torch.Generator().manual_seed(2)
    samples = torch.randn(300, 8, generator=gen) @ torch.randn(8, 60, generator=gen)
    samples += 0.05 * torch.randn(300, 60, generator=gen)
    metric = get_metric("l2")
    bound = _LowRankBound.of(samples, 32)
    assert bound is not None and bound.coords.dtype == torch.float32
    assert bound.product_error < 1e-5 * bound.scale**2 and bound.zeta < 1e-6 * bound.scale

    rows = []

    class Counting(type(metric)):
        def pairwise(self, a, b):
            rows.append(len(a))
            return super().pairwise(a, b)

    counting = Counting(2, "l2")
    extra = counting.central_candidates(samples)
    center = find_center(samples, counting, extra=extra)
    assert (center.radius, center.index) == _plain_search(metric, samples, extra)
    assert sum(rows) <= 3 + 16  # out of 303 candidates


def test_a_pairwise_form_off_by_more_than_the_assumed_agreement_makes_the_search_exact(
    monkeypatch,
):
    """A pairwise form 1% off its elementwise distance breaks what the margins assume; the
    rechecked candidates show it, and the search scores every candidate exactly."""
    import centersmooth.center as center_module

    plain_calls = []
    original = center_module._plain_minimum

    def spy(*args):
        plain_calls.append(args[0])
        return original(*args)

    monkeypatch.setattr(center_module, "_plain_minimum", spy)
    base = get_metric("l2")

    class Sloppy(type(base)):
        def pairwise(self, a, b):  # every distance 1% too long, the nearest ones 2%
            d = super().pairwise(a, b)
            return d * (1.01 + 0.01 * (d < d.median()))

    metric = Sloppy(2, "l2")
    samples = torch.randn(300, 4, generator=torch.Generator().manual_seed(5))
    center = find_center(samples, metric)
    assert plain_calls == [300]
    assert (center.radius, center.index) == _plain_search(base, samples)
