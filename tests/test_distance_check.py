"""The check of distances that are not built in: it refutes wrong constants, passes true ones."""

import math
import random

import pytest
import torch
from rapidfuzz.distance import Levenshtein

from centersmooth.metrics import (
    DistanceCheckError,
    FunctionMetric,
    Metric,
    available_metrics,
    check_distance,
    get_metric,
    needs_check,
)
from centersmooth.metrics.vector import LpDistance


def cloud(n, *shape, seed=0, dtype=torch.float32):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def squared_l2(a, b):
    return (a - b).flatten(1).square().sum(dim=1)


def l2(a, b):
    return (a - b).flatten(1).norm(dim=1)


def one_minus_cos(a, b):
    cos = torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)
    return (1 - cos).clamp(min=0)


class Counting:
    """A distance function that counts its calls and the pairs it was asked for."""

    def __init__(self, fn):
        self.fn, self.calls, self.pairs = fn, 0, 0

    def __call__(self, a, b):
        self.calls += 1
        self.pairs += len(a)
        return self.fn(a, b)


# ----------------------------------------------------------------------------- which distances
@pytest.mark.parametrize("name", sorted(set(available_metrics())))
def test_built_in_distances_are_trusted(name):
    assert not needs_check(get_metric(name))


def test_distances_that_are_not_built_in_are_checked():
    assert needs_check(get_metric(l2))
    assert needs_check(FunctionMetric(l2, gamma=2.0))

    class Mine(Metric):
        def distance(self, a, b):
            return l2(a, b)

    class MyL2(LpDistance):  # a subclass of a built-in class, defined outside the package
        pass

    assert needs_check(Mine())
    assert needs_check(MyL2(2, "my_l2"))


# ----------------------------------------------------------------------------- refutations
def test_squared_l2_declared_as_a_metric_is_refuted_with_a_useful_message():
    samples = cloud(1000, 2)
    metric = FunctionMetric(squared_l2, name="sq")
    with pytest.raises(DistanceCheckError) as e:
        check_distance(metric, samples, [samples.mean(dim=0)])
    message = str(e.value)
    assert "the distance 'sq'" in message
    assert "declared gamma = 1 " in message
    need = float(message.split("d(b, c)) is ")[1].split(",")[0])
    assert 1.9 < need <= 2.0 + 1e-6  # a 2-D cloud has triples with b near the midpoint
    assert "FunctionMetric(fn, gamma=2.0)" in message
    assert '"squared_l2"' in message and '"cosine"' in message
    assert "check_metric=False" in message and "--no-check-metric" in message
    assert "never prove" in message
    assert isinstance(e.value, ValueError)


def test_the_refuted_gamma_is_the_largest_ratio_over_the_tested_triples():
    """Recompute max d(a, c) / (d(a, b) + d(b, c)) over the outputs the check draws."""
    samples = cloud(200, 3, seed=4)
    point = samples.mean(dim=0)
    with pytest.raises(DistanceCheckError) as e:
        check_distance(FunctionMetric(squared_l2), samples, [point], n_triples=100, seed=3)
    idx = torch.randperm(200, generator=torch.Generator().manual_seed(3))[:10]
    pts = torch.cat([point[None], samples[idx]]).double()
    d = torch.cdist(pts, pts).square()
    sums = d[:, :, None] + d[None, :, :]  # sums[i, j, k] = d(i, j) + d(j, k)
    ratio = torch.where(sums > 0, d[:, None, :] / sums.clamp(min=1e-300), 0.0)
    assert f"d(b, c)) is {float(ratio.max()):.6g}," in str(e.value)


@pytest.mark.parametrize("gamma", [2.0, 2.5])
def test_squared_l2_with_gamma_two_passes(gamma):
    samples = cloud(1000, 2)
    check_distance(FunctionMetric(squared_l2, gamma=gamma), samples, [samples.mean(dim=0)])


def test_squared_l2_in_high_dimension_is_refuted_through_the_center():
    """In 784 dimensions the samples are all about equally far apart, so triples of samples
    alone satisfy gamma = 1; the center sits between them and refutes it."""
    samples = torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with pytest.raises(DistanceCheckError, match="declared gamma = 1 "):
        check_distance(FunctionMetric(squared_l2), samples, [samples.mean(dim=0)])


def test_one_minus_cosine_is_refuted_with_gamma_one_and_passes_with_two():
    samples = torch.rand(2000, 50, generator=torch.Generator().manual_seed(2))
    center = get_metric("cosine").central_candidates(samples)
    with pytest.raises(DistanceCheckError, match="the smallest gamma these triples allow"):
        check_distance(FunctionMetric(one_minus_cos), samples, center)
    check_distance(FunctionMetric(one_minus_cos, gamma=2.0), samples, center)


def test_a_constant_above_two_is_asked_for_as_such():
    cubed = FunctionMetric(lambda a, b: (a - b).flatten(1).norm(dim=1) ** 3, gamma=2.0)
    with pytest.raises(DistanceCheckError) as e:
        check_distance(cubed, torch.linspace(0, 1, 101)[:, None], n_triples=3000)
    assert "FunctionMetric(fn, gamma=G (a constant you can prove, at least " in str(e.value)


def test_a_metric_subclass_is_told_to_set_its_gamma():
    class Squared(Metric):
        name = "mine"

        def distance(self, a, b):
            return squared_l2(a, b)

    with pytest.raises(DistanceCheckError, match="set gamma = 2.0 on your Metric subclass"):
        check_distance(Squared(), cloud(500, 2), [torch.zeros(2)])


def test_asymmetry_has_its_own_message():
    skew = FunctionMetric(lambda a, b: l2(a, b) + (a - b).flatten(1)[:, 0].clamp(min=0))
    with pytest.raises(
        DistanceCheckError, match=r"is not symmetric .*d\(a, b\) = .* but d\(b, a\)"
    ):
        check_distance(skew, cloud(300, 3))


def test_a_nonzero_self_distance_has_its_own_message():
    shifted = FunctionMetric(lambda a, b: l2(a, b) + 0.5)
    with pytest.raises(DistanceCheckError, match=r"not 0 between equal outputs: d\(a, a\) = 0.5"):
        check_distance(shifted, cloud(300, 3))


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda a, b: l2(a, b) - 0.1, "negative distance"),
        (lambda a, b: l2(a, b) * float("nan"), "nan"),
        (lambda a, b: l2(a, b) * float("inf"), "finite"),
    ],
)
def test_bad_values_are_refused(fn, match):
    with pytest.raises(DistanceCheckError, match=match):
        check_distance(FunctionMetric(fn), cloud(50, 3))


def test_one_distance_per_pair_is_required():
    with pytest.raises(ValueError, match="one distance per pair"):
        check_distance(FunctionMetric(lambda a, b: (a - b).abs()), cloud(50, 3))


# ----------------------------------------------------------------------------- no false alarms
def wrap(name):
    m = get_metric(name)
    return FunctionMetric(m.distance, gamma=m.gamma, name=f"user {name}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    "name", ["l2", "l1", "linf", "angular", "tv1", "tv2", "cosine", "squared_l2", "hamming"]
)
def test_true_constants_are_never_refuted(name, seed, dtype):
    metric = wrap(name)
    gen = torch.Generator().manual_seed(seed)
    clouds = [
        torch.randn(500, 2, 6, 6, generator=gen, dtype=dtype),
        1000.0 + 1e-3 * torch.randn(500, 2, 6, 6, generator=gen, dtype=dtype),  # far, tight
        torch.randn(5, 2, 6, 6, generator=gen, dtype=dtype).repeat(60, 1, 1, 1),  # duplicates
        torch.randn(500, 2, 6, 6, generator=gen, dtype=dtype).clamp(min=0),  # zero vectors too
    ]
    if name == "hamming":
        clouds = [c.round() for c in clouds]
    for samples in clouds:
        extra = get_metric(name).central_candidates(samples)
        check_distance(metric, samples, [samples[0], extra], seed=seed)


def test_probability_distances_pass_on_distributions():
    samples = torch.softmax(cloud(800, 10), dim=1)
    for name in ("total_variation", "hellinger"):
        check_distance(wrap(name), samples, get_metric(name).central_candidates(samples))


def random_strings(n, seed=0):
    rng = random.Random(seed)
    return ["".join(rng.choice("ab") for _ in range(rng.randint(0, 8))) for _ in range(n)]


def levenshtein(a, b):
    pairs = zip(a, b, strict=True)
    return torch.tensor([Levenshtein.distance(x, y) for x, y in pairs], dtype=torch.float64)


def test_strings_are_checked_with_fewer_evaluations():
    fn = Counting(levenshtein)
    check_distance(FunctionMetric(fn), random_strings(1000), ["abab"])
    assert fn.pairs == (math.ceil(math.ceil(math.sqrt(2000)) / 2) + 1) ** 2  # 24^2 = 576
    assert fn.calls == 1
    squared = FunctionMetric(lambda a, b: levenshtein(a, b) ** 2, name="squared edits")
    with pytest.raises(DistanceCheckError, match="'squared edits'.*declared gamma = 1 "):
        check_distance(squared, random_strings(1000), ["abab"])


# ----------------------------------------------------------------------------- cost and shape
def test_cost_is_a_few_batched_calls_of_about_n_triples_evaluations():
    fn = Counting(l2)
    samples = cloud(10_000, 1, 28, 28)
    check_distance(FunctionMetric(fn), samples, [samples.mean(dim=0), samples[:3]])
    assert fn.pairs == (45 + 4) ** 2  # ceil(sqrt(2000)) samples and the four points
    assert fn.calls <= 4
    fn = Counting(l2)
    check_distance(FunctionMetric(fn), samples, n_triples=100)
    assert fn.pairs == 10**2


def test_the_check_is_deterministic():
    samples = cloud(3000, 3)
    metric = FunctionMetric(squared_l2)
    messages = []
    for _ in range(2):
        with pytest.raises(DistanceCheckError) as e:
            check_distance(metric, samples, [samples.mean(dim=0)], seed=7)
        messages.append(str(e.value))
    assert messages[0] == messages[1]


def test_points_may_be_a_batch_and_none_is_skipped():
    samples = cloud(100, 4)
    fn = Counting(l2)
    check_distance(FunctionMetric(fn), samples, [None, samples[:2], samples[5]], n_triples=25)
    assert fn.pairs == (5 + 3) ** 2
    with pytest.raises(ValueError, match="is not an output of shape"):
        check_distance(FunctionMetric(l2), samples, [torch.zeros(3)])


def test_float64_points_with_float32_samples():
    samples = cloud(100, 4)
    check_distance(FunctionMetric(l2), samples, [samples.double().mean(dim=0)])


def test_a_single_sample_and_no_samples():
    check_distance(FunctionMetric(l2), cloud(1, 3))
    check_distance(FunctionMetric(l2), cloud(0, 3))
    check_distance(FunctionMetric(levenshtein), [])
