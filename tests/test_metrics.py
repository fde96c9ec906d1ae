"""Each distance against an independent reference, its pairwise form, and the metric axioms."""

import math
import random

import numpy as np
import pytest
import torch
from scipy.spatial import distance as sp
from seeded_settings import (
    PROBABILITY_STEP,
    SOFTMAX_LOGITS,
    TWO_DISTRIBUTIONS,
    WORDS,
    WORDS_X,
    softmax_logits_smoother,
    two_distributions,
    words_smoother,
)

from centersmooth import CenterSmoothing
from centersmooth.metrics import (
    EMPTY_BOX,
    FunctionMetric,
    Metric,
    available_metrics,
    get_metric,
)

gen = torch.Generator().manual_seed(0)


def rand(*shape):
    return torch.rand(*shape, generator=gen, dtype=torch.float64)


def random_boxes(n):
    lo = rand(n, 2) * 10
    size = rand(n, 2) * 6
    boxes = torch.cat([lo, lo + size], dim=1)
    boxes[::5] = torch.tensor(EMPTY_BOX, dtype=torch.float64)  # some "no box" outputs
    return boxes


def random_strings(n):
    rng = random.Random(0)
    return ["".join(rng.choice("abc") for _ in range(rng.randint(0, 6))) for _ in range(n)]


def probabilities(n, k=6):
    p = rand(n, k) ** 3
    return p / p.sum(dim=1, keepdim=True)


# name -> batch maker (n) for random outputs of the right kind
OUTPUTS = {
    "l2": lambda n: rand(n, 3, 4),
    "l1": lambda n: rand(n, 3, 4),
    "linf": lambda n: rand(n, 3, 4),
    "angular": lambda n: rand(n, 7) - 0.5,
    "cosine": lambda n: rand(n, 7) - 0.5,
    "squared_l2": lambda n: rand(n, 3, 4),
    "tv1": lambda n: rand(n, 2, 5, 6),
    "tv2": lambda n: rand(n, 2, 5, 6),
    "jaccard": random_boxes,
    "mask_jaccard": lambda n: (rand(n, 4, 4) > 0.6).double(),
    "total_variation": probabilities,
    "hellinger": probabilities,
    "hamming": lambda n: torch.randint(0, 3, (n, 12), generator=gen),
    "levenshtein": random_strings,
    "levenshtein_normalized": random_strings,
}


def test_every_registered_metric_has_random_outputs_here():
    assert set(available_metrics()) <= set(OUTPUTS) | {"lpips", "lpips_vgg"}


def tv_reference(e, p):
    e = e if e.ndim == 3 else e[None]
    c, h, w = e.shape
    total = 0.0
    for i in range(h):
        for j in range(w):
            dx = e[:, i, j + 1] - e[:, i, j] if j + 1 < w else np.zeros(c)
            dy = e[:, i + 1, j] - e[:, i, j] if i + 1 < h else np.zeros(c)
            total += np.linalg.norm(np.concatenate([dx, dy]), ord=p)
    return total


def box_jaccard_reference(a, b, grid=0.05):
    """1 - IoU by counting the cells of a fine grid covered by each box."""
    xs = np.arange(0, 16, grid) + grid / 2
    gx, gy = np.meshgrid(xs, xs)

    def cover(box):
        return (gx > box[0]) & (gx < box[2]) & (gy > box[1]) & (gy < box[3])

    ca, cb = cover(a), cover(b)
    union = (ca | cb).sum()
    return 0.0 if union == 0 else 1.0 - (ca & cb).sum() / union


def levenshtein_reference(s, t):
    row = list(range(len(t) + 1))
    for i, cs in enumerate(s, 1):
        prev, row[0] = row[0], i
        for j, ct in enumerate(t, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (cs != ct))
    return row[-1]


def reference(name, a, b):
    """Independent per-pair implementations (SciPy, NumPy loops, grids, a plain DP)."""
    if name in ("levenshtein", "levenshtein_normalized"):
        d = levenshtein_reference(a, b)
        if name == "levenshtein":
            return d
        return 0.0 if d == 0 else 2 * d / (len(a) + len(b) + d)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    fa, fb = a.ravel(), b.ravel()
    if name == "l2":
        return sp.euclidean(fa, fb)
    if name == "l1":
        return sp.cityblock(fa, fb)
    if name == "linf":
        return sp.chebyshev(fa, fb)
    if name == "angular":
        return math.acos(np.clip(1 - sp.cosine(fa, fb), -1, 1)) / math.pi
    if name == "cosine":
        return sp.cosine(fa, fb)
    if name == "squared_l2":
        return sp.sqeuclidean(fa, fb)
    if name in ("tv1", "tv2"):
        return tv_reference(a - b, 1 if name == "tv1" else 2)
    if name == "jaccard":
        return box_jaccard_reference(a, b)
    if name == "mask_jaccard":
        return 0.0 if not (fa.any() or fb.any()) else sp.jaccard(fa > 0, fb > 0)
    if name == "total_variation":
        return 0.5 * np.abs(fa - fb).sum()
    if name == "hellinger":
        return math.sqrt(max(0.0, 1 - np.sqrt(fa * fb).sum()))
    if name == "hamming":
        return sp.hamming(fa, fb)
    raise KeyError(name)


def items(batch):
    return list(batch) if isinstance(batch, list) else [t.numpy() for t in batch]


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_distance_matches_reference(name):
    metric = get_metric(name)
    a, b = OUTPUTS[name](20), OUTPUTS[name](20)
    got = metric(a, b).double().numpy()
    want = [reference(name, x, y) for x, y in zip(items(a), items(b), strict=True)]
    tol = 0.02 if name == "jaccard" else 1e-6  # the grid reference resolves 0.05 units
    np.testing.assert_allclose(got, want, atol=tol)


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_pairwise_matches_elementwise(name):
    metric = get_metric(name)
    a, b = OUTPUTS[name](7), OUTPUTS[name](9)
    matrix = metric.pairwise(a, b).double()
    assert matrix.shape == (7, 9)
    for i in range(7):
        row = metric([a[i]] * 9 if isinstance(a, list) else a[i : i + 1].expand_as(b), b)
        np.testing.assert_allclose(matrix[i].numpy(), row.double().numpy(), atol=1e-5)


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_axioms_on_random_triples(name):
    metric = get_metric(name)
    a, b, c = (OUTPUTS[name](200) for _ in range(3))
    dab, dba = metric(a, b).double(), metric(b, a).double()
    dbc, dac = metric(b, c).double(), metric(a, c).double()
    torch.testing.assert_close(dab, dba, atol=1e-6, rtol=0)
    assert bool((dab >= 0).all())
    assert bool((metric(a, a).double().abs() <= 1e-6).all())
    assert bool((dac <= metric.gamma * (dab + dbc) + 1e-6).all())
    if metric.upper is not None:
        assert bool((dab <= metric.upper + 1e-9).all())


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_central_candidates_are_outputs_of_the_same_kind(name):
    metric = get_metric(name)
    samples = OUTPUTS[name](30)
    extra = metric.central_candidates(samples)
    if extra is None:
        assert name.startswith("levenshtein")
        return
    if isinstance(samples, torch.Tensor):
        assert extra.shape[1:] == samples.shape[1:]
    d = metric.pairwise(extra, samples)
    assert bool(torch.isfinite(d).all())


def test_empty_boxes_are_defined():
    m = get_metric("jaccard")
    empty = torch.tensor([EMPTY_BOX, EMPTY_BOX])
    box = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
    assert m(empty, empty).tolist() == [0.0, 0.0]
    assert m(empty, box).tolist() == [1.0, 1.0]
    assert m(box[:1], box[1:]).item() == pytest.approx(1 - 1 / 7)


def test_zero_vectors_under_the_angular_distance():
    m = get_metric("angular")
    zero, v = torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]])
    assert m(zero, zero).item() == 0.0
    assert m(zero, v).item() == 0.5
    assert m(v, -v).item() == pytest.approx(1.0)


def test_angular_is_accurate_for_tiny_angles():
    m = get_metric("angular")
    a = torch.tensor([[1.0, 0.0]], dtype=torch.float32)
    b = torch.tensor([[1.0, 1e-4]], dtype=torch.float32)
    assert m(a, b).item() == pytest.approx(1e-4 / math.pi, rel=1e-3)
    assert m(a, a).item() == 0.0


def test_mask_jaccard_on_python_sets():
    m = get_metric("mask_jaccard")
    got = m([{1, 2}, set(), {1}], [{2, 3}, set(), set()]).tolist()
    assert got == pytest.approx([1 - 1 / 3, 0.0, 1.0])
    assert m.central_candidates([{1, 2}, {1, 3}, {1}]) == [frozenset({1})]


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(ValueError, match="known metrics: .*l2"):
        get_metric("l3")
    with pytest.raises(TypeError):
        get_metric(3)


def test_callables_become_metrics_with_their_gamma():
    m = get_metric(lambda a, b: (a - b).abs().sum(dim=1))
    assert isinstance(m, Metric) and m.gamma == 1.0
    squared = FunctionMetric(lambda a, b: ((a - b) ** 2).sum(dim=1), gamma=2.0, name="sq")
    assert get_metric(squared) is squared
    with pytest.raises(ValueError, match="gamma"):
        FunctionMetric(lambda a, b: a, gamma=0.5)


def test_total_variation_distance_needs_images():
    with pytest.raises(ValueError, match="images"):
        get_metric("tv1")(torch.zeros(2, 5), torch.zeros(2, 5))


@pytest.mark.parametrize("name", ["tv1", "tv2", "l1", "l2", "total_variation"])
def test_integer_outputs_are_differenced_without_wrapping_around(name):
    """uint8 images: a difference taken in uint8 would wrap (0 - 1 = 255)."""
    metric = get_metric(name)
    a = torch.tensor([[[0, 0, 200, 10]], [[5, 250, 0, 3]]], dtype=torch.uint8)  # (2, 1, 4)
    b = torch.tensor([[[0, 1, 72, 137]], [[255, 0, 9, 3]]], dtype=torch.uint8)
    exact = metric(a.double(), b.double())
    torch.testing.assert_close(metric(a, b).double(), exact)
    torch.testing.assert_close(metric(b, a).double(), exact)
    torch.testing.assert_close(metric.pairwise(a, b).double().diagonal(), exact)


@pytest.mark.parametrize("name", ["tv1", "tv2"])
def test_total_variation_pairwise_takes_mixed_float_types(name):
    """The central points of float32 images may come back in float64 (and of integer images
    always do): the pairwise form promotes both sides."""
    metric = get_metric(name)
    a, b = rand(3, 1, 4, 4), rand(2, 1, 4, 4)
    torch.testing.assert_close(
        metric.pairwise(a, b.float()), metric.pairwise(a, b), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("name", ["total_variation", "hellinger"])
def test_probability_distances_are_not_capped_at_one(name):
    """An output may hold several distributions (one per row), so the distance can exceed 1 and
    ``eps_out`` must not be capped there (a capped certificate was wrong: the smoothed outputs
    at x and at a point 2 sigma away are at distance 2 in total variation)."""
    first, second = TWO_DISTRIBUTIONS
    metric = get_metric(name)
    assert metric.upper is None
    apart = float(metric(first[None], second[None])[0])
    assert apart > 1.0
    smoother = two_distributions(name, PROBABILITY_STEP[name].seed)
    cert = smoother.certify(torch.tensor([-1.0]), eps_in=2.0)
    moved = smoother.predict(torch.tensor([1.0]))
    assert not cert.abstained and not moved.abstained
    assert float(metric(cert.center[None], moved.center[None])[0]) == pytest.approx(apart)
    assert cert.eps_out >= apart


# ----------------------------------------------------------------------------- cosine, squared l2
def test_cosine_distance_exact_values():
    m = get_metric("cosine")
    assert (m.gamma, m.upper) == (2.0, 2.0)
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [-3.0, 0.0], [1.0, 1.0], [5.0, 5.0], [0.0, 4.0], [0.0, 0.0]])
    want = [1.0, 2.0, 1 - 1 / math.sqrt(2), 0.0, 0.5, 0.0]
    np.testing.assert_allclose(m(a, b).numpy(), want, atol=1e-7)
    np.testing.assert_allclose(m.pairwise(a, b).diagonal().numpy(), want, atol=1e-6)


def test_cosine_distance_is_accurate_for_tiny_angles():
    """Computed as half a squared chord: 1 - cos of a rounded cosine would give 0 here."""
    m = get_metric("cosine")
    a = torch.tensor([[1.0, 0.0]], dtype=torch.float32)
    b = torch.tensor([[1.0, 1e-4]], dtype=torch.float32)
    assert m(a, b).item() == pytest.approx(0.5e-8, rel=1e-3)


def test_squared_l2_exact_values():
    m = get_metric("squared_l2")
    assert (m.gamma, m.upper) == (2.0, None)
    a = torch.tensor([[[0.0, 0.0]], [[1.0, 2.0]]])
    b = torch.tensor([[[3.0, 4.0]], [[1.0, 2.0]]])
    assert m(a, b).tolist() == [25.0, 0.0]
    want = [[25.0, 5.0], [8.0, 0.0]]
    np.testing.assert_allclose(m.pairwise(a, b).numpy(), want, atol=1e-5)


@pytest.mark.parametrize(
    "name, a, b, c",
    [
        ("squared_l2", [0.0], [1.0], [2.0]),  # b the midpoint: d(a, c) = 2 (d(a, b) + d(b, c))
        ("cosine", [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]),  # b halfway round the circle
        ("cosine", [1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]),  # through the zero vector: ratio 2
    ],
)
def test_gamma_two_holds_and_gamma_one_fails_on_a_triple(name, a, b, c):
    m = get_metric(name)
    t = torch.tensor([a, b, c], dtype=torch.float64)
    dab, dbc, dac = (float(m(t[i : i + 1], t[j : j + 1])[0]) for i, j in [(0, 1), (1, 2), (0, 2)])
    assert dac > 1.0 * (dab + dbc) * 1.5  # gamma = 1 fails by far
    assert dac <= 2.0 * (dab + dbc) + 1e-12  # gamma = 2 holds


@pytest.mark.parametrize("name", ["cosine", "squared_l2"])
def test_euclidean_embedding_of_the_squared_distances(name):
    m = get_metric(name)
    x = rand(40, 6) - 0.5
    x[3] = 0.0  # a zero vector is the origin of cosine's embedding
    e = m.euclidean_embedding(x)
    full = m.pairwise(x, x)
    chord = torch.cdist(e, e)
    radii = torch.tensor(
        [[m.euclidean_radius(float(v)) for v in row] for row in full], dtype=torch.float64
    )
    torch.testing.assert_close(radii, chord, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name, plain", [("squared_l2", "l2"), ("cosine", "angular")])
def test_pruned_center_search_agrees_with_the_metric_it_squares(name, plain):
    """squared_l2 is a monotone function of l2 and cosine of angular (on nonzero vectors), so
    the min-median center is the same candidate; 600 samples engage the pruned search."""
    from centersmooth.center import find_center

    samples = (rand(600, 12) - 0.3) * torch.linspace(0.2, 2.0, 12)
    for metric_name in (name, plain):
        metric = get_metric(metric_name)
        extra = metric.central_candidates(samples)
        if metric_name == name:
            ours = find_center(samples, metric, None, extra)
        else:
            theirs = find_center(samples, metric, None, extra)
    assert ours.index == theirs.index


# ----------------------------------------------------------------------------- output types
NOT_TENSORS = ["ab", "c"]


@pytest.mark.parametrize(
    "name, wrong, takes",
    [
        *[
            (name, NOT_TENSORS, "tensor/array outputs")
            for name in ["l2", "l1", "linf", "angular", "cosine", "squared_l2", "tv1", "tv2"]
        ],
        *[(name, NOT_TENSORS, "tensor/array outputs") for name in ["hamming", "total_variation"]],
        ("hellinger", NOT_TENSORS, "tensor/array outputs"),
        ("jaccard", NOT_TENSORS, "lists of Python sets or frozensets"),
        ("mask_jaccard", [[1, 2], [3]], "lists of Python sets or frozensets"),
        ("levenshtein", torch.zeros(2, 5), "lists of strings"),
        ("levenshtein_normalized", [1, 2], "lists of strings"),
        ("lpips", NOT_TENSORS, "tensor/array outputs"),
    ],
)
def test_a_wrong_output_type_names_the_distance_and_what_it_takes(name, wrong, takes):
    from centersmooth.metrics import OutputTypeError

    m = get_metric(name)
    got = "a list of str" if wrong is NOT_TENSORS else None
    for call in (lambda: m(wrong, wrong), lambda: m.pairwise(wrong, wrong)):
        with pytest.raises(OutputTypeError, match=f"the distance '{name}' takes .*{takes}") as e:
            call()
        assert isinstance(e.value, TypeError)
        if got:
            assert str(e.value).endswith(f"the model returned {got}")


def test_l2_on_strings_says_what_the_model_returned():
    with pytest.raises(TypeError) as e:
        get_metric("l2")(["a", "b"], ["c", "d"])
    assert str(e.value) == (
        "the distance 'l2' takes tensor/array outputs (a batch with a first batch dimension); "
        "the model returned a list of str"
    )


def test_a_model_returning_strings_to_l2_fails_before_any_certificate():
    smoother = CenterSmoothing(
        lambda b: ["x"] * b.shape[0],
        metric="l2",
        sigma=0.5,
        n_center=200,
        n_check=200,
        n_certify=200,
        delta=0.15,
        seed=0,
    )
    with pytest.raises(TypeError, match="'l2' takes tensor/array outputs.*a list of str"):
        smoother.certify(torch.zeros(2), 0.1)


def test_numpy_arrays_are_taken_as_tensors():
    a, b = np.zeros((2, 3)), np.ones((2, 3))
    assert get_metric("l2")(a, b).tolist() == pytest.approx([math.sqrt(3)] * 2)


# ----------------------------------------------------------------------------- diameter
def distributions(n, rows=1, k=5):
    p = torch.softmax(torch.randn(n, rows, k, generator=gen, dtype=torch.float64), dim=-1)
    return p if rows > 1 else p[:, 0]


@pytest.mark.parametrize(
    "name, want",
    [("angular", 1.0), ("cosine", 2.0), ("jaccard", 1.0), ("mask_jaccard", 1.0)]
    + [("hamming", 1.0), ("levenshtein_normalized", 1.0)]
    + [(name, None) for name in ["l2", "l1", "linf", "squared_l2", "tv1", "tv2"]]
    + [("total_variation", None), ("hellinger", None)],
)
def test_diameter_on_generic_outputs(name, want):
    metric = get_metric(name)
    samples = OUTPUTS[name](30)
    if name in ("total_variation", "hellinger"):
        samples = rand(30, 6)  # not probability vectors: unbounded
    assert metric.diameter(samples) == want


@pytest.mark.parametrize("rows", [1, 3])
def test_diameter_on_probability_vectors(rows):
    """k distributions per output: total variation k, l1 2k, hellinger sqrt(k), l2 sqrt(2k),
    linf 1, squared l2 2k; reached by outputs with disjoint supports."""
    samples = distributions(50, rows)
    want = {
        "total_variation": rows,
        "l1": 2 * rows,
        "hellinger": math.sqrt(rows),
        "l2": math.sqrt(2 * rows),
        "linf": 1.0,
        "squared_l2": 2 * rows,
    }
    for name, value in want.items():
        metric = get_metric(name)
        assert metric.diameter(samples) == pytest.approx(value, rel=1e-9), name
        # reached: two outputs with disjoint supports (the first and the last class)
        p = torch.zeros(1, rows, 5, dtype=torch.float64)
        q = p.clone()
        p[..., 0], q[..., -1] = 1.0, 1.0
        if rows == 1:
            p, q = p[:, 0], q[:, 0]
        assert float(metric(p, q)[0]) == pytest.approx(value), name


def test_diameter_of_the_image_total_variations_is_none_even_on_probability_vectors():
    """tv1 / tv2 are total variations of a difference image, not distances between
    distributions: unbounded whatever the outputs look like."""
    images = distributions(20, rows=4)  # (20, 4, 5): rows sum to one
    for name in ("tv1", "tv2"):
        assert get_metric(name).diameter(images) is None


def test_directions_of_non_negative_outputs_are_at_most_a_right_angle_apart():
    samples = rand(30, 6)  # non-negative
    assert get_metric("angular").diameter(samples) == 0.5
    assert get_metric("cosine").diameter(samples) == 1.0
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert get_metric("cosine")(a, b).item() == pytest.approx(1.0)
    assert get_metric("angular")(a, b).item() == pytest.approx(0.5)


def test_levenshtein_diameter_is_the_longest_sample():
    m = get_metric("levenshtein")
    assert m.diameter(["ab", "", "abcd"]) == 4.0
    assert m(["abcd"], [""]).item() == 4.0 and m(["abcd"], ["wxyz"]).item() == 4.0
    assert m.diameter(["", ""]) is None


def test_diameter_of_user_distances_is_their_upper_bound():
    assert FunctionMetric(lambda a, b: a).diameter(torch.zeros(3, 2)) is None
    assert FunctionMetric(lambda a, b: a, upper=3.0).diameter(torch.zeros(3, 2)) == 3.0

    class Custom(Metric):
        upper = 0.5

    assert Custom().diameter(["a"]) == 0.5


@pytest.mark.needs("lpips")
def test_lpips_diameter_bounds_every_distance():
    m = get_metric("lpips")
    images = 2 * torch.rand(6, 3, 32, 32, generator=gen) - 1
    bound = m.diameter(images)
    assert bound is not None and 0 < bound < 20
    d = m.pairwise(images, images)
    assert float(d.max()) <= bound


@pytest.mark.parametrize(
    "labels",
    [
        torch.randint(0, 2, (40, 6, 5), generator=gen).bool(),  # binary masks
        torch.randint(-3, 7, (40, 30), generator=gen),  # ten integer labels, some negative
        torch.randint(0, 4, (40, 30), generator=gen).double(),  # integral float labels
        torch.randint(0, 4, (40, 30), generator=gen) * 0.5,  # not integral: compared directly
        torch.randint(0, 1000, (40, 30), generator=gen),  # a wide range: compared directly
    ],
    ids=["bool", "ints", "integral-floats", "halves", "wide"],
)
def test_hamming_pairwise_and_mode_match_the_direct_forms(labels):
    """The class-by-class matrix products give exactly the fraction of differing positions, and
    the counted per-position mode is torch.mode's (the smallest label among ties)."""
    metric = get_metric("hamming")
    a, b = labels[:15], labels[15:]
    want = torch.stack([(x.reshape(-1) != b.reshape(len(b), -1)).float().mean(1) for x in a])
    assert torch.equal(metric.pairwise(a, b), want)
    mode = torch.mode(labels[:6], dim=0).values  # six samples: many ties
    assert torch.equal(metric.central_candidates(labels[:6]), mode.unsqueeze(0))


@pytest.mark.parametrize("name", ["tv1", "tv2"])
def test_tv_pairwise_blocks_give_the_same_matrix(monkeypatch, name):
    """Blocks of rows and columns (forced tiny here: 2 rows, 3 columns of 3 x 5 x 4 images with
    two gradient components) give the matrix of one block (to rounding: the sums may run in
    another order) and of the elementwise distance."""
    import centersmooth.metrics.image as image

    metric = get_metric(name)
    a, b = rand(7, 3, 5, 4).float(), rand(9, 3, 5, 4).float()
    whole = metric.pairwise(a, b)
    monkeypatch.setattr(image, "PAIRWISE_ROWS", 2)
    monkeypatch.setattr(image, "PAIRWISE_BLOCK", 2 * 3 * 6 * 20)
    torch.testing.assert_close(metric.pairwise(a, b), whole, atol=1e-6, rtol=1e-6)
    rows = torch.stack([metric(a[i : i + 1].expand_as(b), b) for i in range(7)])
    torch.testing.assert_close(whole, rows, atol=1e-5, rtol=1e-6)


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize("name, known", [("L2", "l2"), ("Hellinger", "hellinger"), ("TV1", "tv1")])
def test_metric_names_match_whatever_their_case(name, known):
    assert get_metric(name).name == known


@pytest.mark.parametrize(
    "name, closest",
    [("levenstein", "levenshtein"), ("Jacard", "jaccard"), ("helinger", "hellinger")],
)
def test_a_misspelt_metric_name_suggests_the_closest(name, closest):
    with pytest.raises(ValueError, match=f"did you mean '{closest}'") as caught:
        get_metric(name)
    assert "known metrics: angular" in str(caught.value)


def test_a_name_taken_in_another_case_cannot_be_registered():
    from centersmooth.metrics import register_metric

    with pytest.raises(ValueError, match="'l2' is already registered"):
        register_metric("L2", lambda: get_metric("l1"))


# ----------------------------------------------------------------------------- probability vectors
@pytest.mark.parametrize("name", ["total_variation", "hellinger"])
def test_logits_are_refused_by_the_probability_distances_with_the_advice_to_add_a_softmax(name):
    weights = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))

    def logits(batch):
        return batch @ weights.T

    smoother = CenterSmoothing(logits, metric=name, sigma=0.25, seed=0, n_center=1_000,
                               n_check=1_000, n_certify=1_000, delta=0.15)  # fmt: skip
    with pytest.raises(ValueError, match=r"softmax over the last dimension") as caught:
        smoother.certify(torch.zeros(10), 0.1)
    assert f"'{name}' is a distance between probability vectors" in str(caught.value)
    numpy_model = CenterSmoothing(
        lambda b: b @ weights.T.double().numpy(), metric=name, sigma=0.25, n_center=1_000,
        n_check=1_000, n_certify=1_000, delta=0.15,
    )  # fmt: skip
    with pytest.raises(ValueError, match="softmax"):
        numpy_model.certify(np.zeros(10), 0.1)
    softmax = softmax_logits_smoother(name, SOFTMAX_LOGITS[name].seed)  # the same logits
    assert not softmax.certify(torch.zeros(10), 0.1).abstained


def test_probability_vectors_are_checked_within_the_rounding_of_their_float_type():
    from centersmooth.metrics.probability import not_probability_vectors

    eps32 = torch.finfo(torch.float32).eps
    scores = torch.randn(64, 3, 1000, generator=torch.Generator().manual_seed(1)) * 5
    p32 = torch.softmax(scores, dim=-1)  # 3 distributions of 1,000 classes per output
    assert not not_probability_vectors(p32, eps32).any()
    # float32 probabilities handed back as float64 keep float32's rounding: still taken
    assert not not_probability_vectors(p32.double(), eps32).any()
    p16 = torch.softmax(scores.half(), dim=-1)
    assert not not_probability_vectors(p16.float(), torch.finfo(torch.float16).eps).any()
    off = p32.clone()
    off[5, 1, 0] += 1e-3  # one row sums to 1.001
    negative = p32.clone()
    negative[7, 2, 3] = -1e-3
    negative[7, 2, 4] += 1e-3
    for bad, row in ((off, 5), (negative, 7)):
        flags = not_probability_vectors(bad, eps32)
        assert flags.tolist() == [i == row for i in range(64)]
    assert not_probability_vectors(["a"], eps32) is None


# ----------------------------------------------------------------------------- token sequences
def random_token_sequences(n, seed=0):
    rng = random.Random(seed)
    words = ["the", "cat", "sat", 7, ("on", "mat")]  # any hashable token
    return [
        (tuple if i % 2 else list)(rng.choice(words) for _ in range(rng.randint(0, 5)))
        for i in range(n)
    ]


@pytest.mark.parametrize("name", ["levenshtein", "levenshtein_normalized"])
def test_edit_distances_take_sequences_of_tokens(name):
    metric = get_metric(name)
    a, b = random_token_sequences(40, seed=1), random_token_sequences(30, seed=2)
    want = torch.tensor([[reference(name, x, y) for y in b] for x in a], dtype=torch.float64)
    torch.testing.assert_close(metric.pairwise(a, b), want)
    pairs = list(zip(a, b + b[:10], strict=True))
    elementwise = [reference(name, x, y) for x, y in pairs]
    torch.testing.assert_close(
        metric([x for x, _ in pairs], [y for _, y in pairs]),
        torch.tensor(elementwise, dtype=torch.float64),
    )
    # tokens are compared whole: two words differ by one substitution, not by their letters
    assert float(metric([("the", "cat")], [("the", "dog")])[0]) == (
        1.0 if name == "levenshtein" else 2 / 5
    )
    with pytest.raises(TypeError, match="token sequences"):
        metric(["ab", ("a", "b")], ["ab", "ab"])  # strings and sequences are not mixed


def test_a_model_returning_words_is_certified_in_edit_distance():
    cert = words_smoother(WORDS.seed).certify(WORDS_X, 0.1)
    assert not cert.abstained and cert.center == ("up", "up", "down", "up")
    assert cert.output_diameter == 4.0 and 0 <= cert.eps_out
