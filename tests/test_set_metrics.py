"""Set-valued outputs: the Jaccard distance on lists of Python sets, and clear type errors."""

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from seeded_settings import (
    MIXED_TAGS,
    MIXED_TAGS_X,
    TAG_SETTINGS,
    TAGS,
    TAGS_X,
    mixed_tags,
    tag_smoother,
    tags,
)

from centersmooth import CenterSmoothing
from centersmooth.metrics import OutputTypeError, get_metric
from centersmooth.metrics import sets as set_module

SET_DISTANCES = ["jaccard", "mask_jaccard"]
# smoothing settings of the set-valued models below (delta 0.15: small counts that accept)
# the tag settings of seeded_settings.TAGS (their center set holds 91% of the mass); the other
# set models below are as sure of theirs (the mixed tags at x = (2, 2): all but Phi(-4) of it)
SETTINGS = dict(TAG_SETTINGS, seed=TAGS["jaccard"].seed)


def random_sets(n, seed=0, universe=8):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        items = frozenset(rng.sample(range(universe), rng.randint(0, 5)))
        out.append(items if i % 2 else set(items))  # sets and frozensets alike
    return out


def reference(a, b):
    union = len(a | b)
    return 0.0 if union == 0 else 1 - len(a & b) / union


@pytest.mark.parametrize("name", SET_DISTANCES)
def test_jaccard_on_python_sets_exact_values(name):
    m = get_metric(name)
    a = [frozenset({1, 2}), frozenset(), frozenset({1}), {"x", "y", "z"}, frozenset({3})]
    b = [frozenset({2, 3}), frozenset(), frozenset(), {"x"}, frozenset({3})]
    assert m(a, b).tolist() == pytest.approx([1 - 1 / 3, 0.0, 1.0, 1 - 1 / 3, 0.0])
    assert m.upper == 1.0 and m.diameter(a) == 1.0


@pytest.mark.parametrize("name", SET_DISTANCES)
def test_pairwise_form_on_sets_matches_the_elementwise_one(name):
    m = get_metric(name)
    a, b = random_sets(13, seed=1), random_sets(17, seed=2)
    got = m.pairwise(a, b)
    assert got.shape == (13, 17) and got.dtype == torch.float64
    want = [[reference(set(x), set(y)) for y in b] for x in a]
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


def test_the_sparse_pairwise_form_gives_the_same_matrix(monkeypatch):
    a, b = random_sets(30, seed=3, universe=50), random_sets(20, seed=4, universe=50)
    dense = set_module.set_jaccard_pairwise(a, b)
    monkeypatch.setattr(set_module, "PAIRWISE_BUDGET", 10)  # forces sparse membership matrices
    sparse = set_module.set_jaccard_pairwise(a, b)
    torch.testing.assert_close(sparse, dense, rtol=0, atol=0)


def test_pairwise_of_empty_sets_only():
    m = get_metric("jaccard")
    assert m.pairwise([frozenset(), set()], [frozenset()]).tolist() == [[0.0], [0.0]]


@pytest.mark.parametrize("name", SET_DISTANCES)
def test_metric_axioms_on_random_sets(name):
    m = get_metric(name)
    a, b, c = (random_sets(300, seed=s, universe=6) for s in (5, 6, 7))
    ab, ba, bc, ac = m(a, b), m(b, a), m(b, c), m(a, c)
    assert torch.equal(ab, ba)
    assert bool((m(a, a) == 0).all())
    assert bool((ac <= ab + bc + 1e-12).all())


def test_majority_set_is_the_central_candidate():
    m = get_metric("jaccard")
    assert m.central_candidates([{1, 2}, {1, 3}, {1}]) == [frozenset({1})]


@pytest.mark.parametrize("name", SET_DISTANCES)
def test_certify_with_set_outputs(name):
    smoother = tag_smoother(name, TAGS[name].seed)
    cert = smoother.certify(TAGS_X, 0.1)
    assert not cert.abstained
    assert cert.center == frozenset({0, 1, 3})
    assert 0.0 <= cert.eps_out <= 1.0


@pytest.mark.parametrize(
    "wrong, got",
    [
        (["ab", "cd"], "a list of str"),
        ([[1], [2]], "a list of list"),
        ([frozenset({1}), "a"], "a list of frozenset and str"),
    ],
)
def test_jaccard_refuses_outputs_that_are_neither_boxes_nor_sets(wrong, got):
    m = get_metric("jaccard")
    message = (
        "the distance 'jaccard' takes tensor/array outputs (a batch with a first batch "
        f"dimension) or lists of Python sets or frozensets; the model returned {got}"
    )
    with pytest.raises(OutputTypeError) as e:
        m(wrong, wrong)
    assert str(e.value) == message


@pytest.mark.parametrize("name", SET_DISTANCES)
def test_sets_are_not_compared_with_tensors(name):
    with pytest.raises(OutputTypeError, match="outputs of one kind"):
        get_metric(name)([frozenset({1})], torch.zeros(1, 4))


def test_boxes_still_work_beside_sets():
    m = get_metric("jaccard")
    box = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    other = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    assert m(box, other).item() == pytest.approx(1 - 1 / 7)


def plain_set_tags(batch):
    """``tags`` as plain (mutable) sets, as many models return them."""
    return [set(s) for s in tags(batch)]


@pytest.mark.parametrize("central", [True, False], ids=["majority-set", "a-sample"])
def test_a_set_valued_center_is_a_frozenset_whichever_candidate_wins(central):
    smoother = CenterSmoothing(
        plain_set_tags, metric="jaccard", central_candidates=central, **SETTINGS
    )
    x = torch.tensor([1.0, 1.0, -1.0, 2.0])
    cert = smoother.certify(x, 0.1)
    assert not cert.abstained
    assert type(cert.center) is frozenset and type(cert.prediction.center) is frozenset
    assert type(smoother.predict(x).center) is frozenset


def test_a_set_center_of_mixed_item_types_goes_to_json_in_a_fixed_order():
    smoother = CenterSmoothing(
        mixed_tags, metric="jaccard", **dict(TAG_SETTINGS, seed=MIXED_TAGS.seed)
    )
    cert = smoother.certify(MIXED_TAGS_X, 0.1)
    assert not cert.abstained and cert.center == frozenset({"up", ("pair", 1), 3})
    record = json.loads(cert.to_json())
    assert sorted(map(json.dumps, record["center"])) == sorted(
        map(json.dumps, ["up", ["pair", 1], 3])
    )
    # the same set built in another order gives the same text
    again = replace(cert, center=frozenset([3, ("pair", 1), "up"]))
    assert again.to_json() == cert.to_json()
