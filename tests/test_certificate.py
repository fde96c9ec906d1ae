"""What a Certificate tells its user: why it abstained, whether it is vacuous, plain-data forms,
the center in the model's own type, and distances that are checked before anything is certified.
"""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from seeded_settings import (
    COIN,
    COIN_COUNTS,
    DOUBLED,
    DOUBLED_NUMPY,
    LINEAR_3_TO_2,
    SHIFT_COSINE,
    SHIFT_COSINE_SAMPLES,
    SHIFT_SQUARED,
    SHIFT_SQUARED_SAMPLES,
    SMALL,
    SOFTMAX,
    CheckShare,
    coin,
    doubled,
    linear_3_to_2,
    shifted,
    small,
    softmax_smoother,
)

from centersmooth import (
    CenterSmoothing,
    Certificate,
    FunctionMetric,
    Prediction,
    UncertifiableRadiusWarning,
    bounds,
)
from centersmooth.metrics.checks import DistanceCheckError


def test_an_abstention_says_which_test_failed_and_with_what_numbers():
    smoother = CenterSmoothing(coin, sigma=1.0, seed=COIN.seed, **COIN_COUNTS)
    cert = smoother.certify(torch.zeros(1), 0.1)
    pred = cert.prediction
    assert cert.abstained and pred.check_level == pytest.approx(0.5 - 0.02)
    assert pred.p_low <= pred.check_level and pred.delta == 0.02
    reason = cert.abstain_reason
    assert reason is not None and f"p_low={pred.p_low:.4g}" in reason
    assert f"{pred.check_level:.4g}" in reason and "n_check" in reason


def test_an_abstention_within_the_sampling_error_asks_for_the_check_count_that_helps():
    """52% of the check samples in the center's ball, above the level 0.484, but 1,000 check
    samples cannot bound that share above the level: the cause is the count, not spread.
    (Scripted: the count is 520 at every seed.)"""
    scripted = CheckShare(n_center=10_000, n_check=1_000, share=0.52)
    smoother = CenterSmoothing(  # 10^4 center samples: Delta1 within delta 0.016
        scripted, sigma=1.0, seed=0, delta=0.016, n_center=10_000, n_check=1_000, n_certify=1_000
    )
    pred = smoother.certify(torch.zeros(1), 0.1).prediction
    assert pred.check_count == 520
    assert pred.abstained and pred.check_count is not None
    share = pred.check_count / pred.n_check
    assert share > pred.check_level  # the point estimate is above the level
    need = bounds.check_samples_for(share, smoother.alpha_check, pred.check_level)
    assert need is not None and need > pred.n_check
    assert f"n_check={need:,}" in pred.abstain_reason and "spread" not in pred.abstain_reason
    assert f"held {pred.check_count} of the n_check=1000" in pred.abstain_reason
    # the count named is the first that bounds that share above the level
    low = bounds.mass_lower_bound(math.floor(share * need), need, smoother.alpha_check)
    before = bounds.mass_lower_bound(math.floor(share * (need - 1)), need - 1, smoother.alpha_check)
    assert low > pred.check_level >= before


def test_an_abstention_with_a_low_share_names_spread():
    settings = CenterSmoothing(lambda b: b, sigma=1.0, n_check=1_000).settings
    level = settings.ball_mass - settings.delta
    reason = settings.abstain_reason(count=400, p_low=0.36)
    assert reason is not None and "too spread out" in reason and "smaller sigma" in reason
    assert "held 400 of the n_check=1000 check samples (0.4)" in reason
    assert "check samples bound" not in reason
    assert settings.abstain_reason(count=700, p_low=level + 0.01) is None


def test_an_accepted_prediction_has_no_abstain_reason():
    pred = small(doubled, DOUBLED.seed).predict(torch.zeros(3))
    assert not pred.abstained and pred.abstain_reason is None
    assert pred.p_low > pred.check_level == pytest.approx(0.5 - SMALL["delta"])


def test_to_dict_and_to_json_give_plain_data():
    smoother = small(doubled, DOUBLED.seed)
    with pytest.warns(UncertifiableRadiusWarning):
        cert = smoother.certify(torch.zeros(3), [0.1, 100.0])
    assert not cert.abstained
    record = cert.to_dict()
    assert record["center"] == cert.center.tolist() and isinstance(record["eps_out"], list)
    assert record["eps_out"][1] == math.inf and record["vacuous"] == [False, False]
    assert record["prediction"]["p_low"] == cert.prediction.p_low
    assert record["abstain_reason"] is None
    parsed = json.loads(cert.to_json())  # strict JSON: infinity becomes null
    assert parsed["eps_out"][1] is None and parsed["eps_in"] == [0.1, 100.0]
    assert json.loads(cert.prediction.to_json())["n_center"] == SMALL["n_center"]


def test_a_numpy_model_gets_its_center_back_as_a_numpy_array():
    def double(batch: np.ndarray) -> np.ndarray:
        assert isinstance(batch, np.ndarray)
        return batch * 2.0

    smoother = small(double, DOUBLED_NUMPY.seed)
    x = np.zeros(3)
    cert = smoother.certify(x, 0.1)
    assert not cert.abstained
    assert isinstance(cert.center, np.ndarray) and cert.center.dtype == np.float64
    assert isinstance(cert.prediction.center, np.ndarray)
    pred = smoother.predict(x)
    assert not pred.abstained and isinstance(pred.center, np.ndarray)
    torch_cert = small(doubled, DOUBLED.seed).certify(torch.zeros(3), 0.1)
    assert not torch_cert.abstained and isinstance(torch_cert.center, torch.Tensor)


def test_a_radius_beyond_what_the_outputs_can_differ_is_vacuous_not_certified():
    smoother = softmax_smoother(SOFTMAX.seed)
    cert = smoother.certify(torch.zeros(3), [0.0, 1.0])
    assert not cert.abstained and cert.output_diameter == pytest.approx(1.0, abs=1e-6)
    eps_out = np.asarray(cert.eps_out)
    np.testing.assert_array_equal(cert.vacuous, eps_out >= cert.output_diameter)
    assert bool(np.asarray(cert.vacuous)[1]) and not bool(np.asarray(cert.certified)[1])


def test_an_unbounded_distance_is_never_vacuous():
    cert = small(doubled, DOUBLED.seed).certify(torch.zeros(3), 0.5)
    assert (
        not cert.abstained
        and cert.output_diameter is None
        and cert.vacuous is False
        and cert.certified is True
    )


def squared_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b) ** 2).flatten(1).sum(dim=1)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (1 - torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)).clamp_min(
        0
    )


# A callable has no fast pairwise form: the smoothers below score 30 candidates. Each decides
# as its built-in twin in the registry (the same distances on the same samples).
FAST = {squared_l2: SHIFT_SQUARED, cosine_distance: SHIFT_COSINE}
SAMPLES_ONLY = {"squared_l2": SHIFT_SQUARED_SAMPLES, "cosine": SHIFT_COSINE_SAMPLES}


@pytest.mark.parametrize("fn", [squared_l2, cosine_distance])
def test_a_callable_that_is_not_a_metric_is_refused_before_any_certificate(fn):
    seed = FAST[fn].seed
    smoother = small(shifted, seed, metric=fn, sigma=0.5, candidates=30)
    with pytest.raises(DistanceCheckError, match="gamma"):
        smoother.certify(torch.zeros(8), 0.25)
    with pytest.raises(DistanceCheckError):
        smoother.predict(torch.zeros(8))
    # declared with its proven constant it certifies; with the check off the user answers for it
    declared = small(shifted, seed, metric=FunctionMetric(fn, gamma=2.0), sigma=0.5, candidates=30)
    cert = declared.certify(torch.zeros(8), 0.25)
    assert not cert.abstained and math.isfinite(cert.eps_out)
    unchecked = small(shifted, seed, metric=fn, sigma=0.5, candidates=30, check_metric=False)
    cert = unchecked.certify(torch.zeros(8), 0.25)
    assert not cert.abstained and math.isfinite(cert.eps_out)


@pytest.mark.parametrize(("fn", "name"), [(squared_l2, "squared_l2"), (cosine_distance, "cosine")])
def test_the_built_in_non_metrics_certify_with_their_constants(fn, name):
    seed = SAMPLES_ONLY[name].seed
    same = dict(sigma=0.5, central_candidates=False)  # centers among the samples
    built_in = small(shifted, seed, metric=name, **same)
    assert built_in.metric.gamma == 2.0
    declared = small(shifted, seed, metric=FunctionMetric(fn, gamma=2.0), **same)
    ours, theirs = built_in.certify(torch.zeros(8), 0.25), declared.certify(torch.zeros(8), 0.25)
    assert not ours.abstained and not theirs.abstained
    assert math.isfinite(ours.eps_out)
    assert ours.eps_out == pytest.approx(theirs.eps_out, rel=1e-5)


# ----------------------------------------------------------------------------- from JSON
def words(batch: torch.Tensor) -> list[tuple[str, ...]]:
    return [tuple("up" if v > 0 else "down" for v in row[:3].tolist()) for row in batch]


def tags(batch: torch.Tensor) -> list[set[int]]:
    return [{int(i) for i in torch.nonzero(row > 0).flatten()} for row in batch]


# Each accepts at seed 0: "tensor" and "numpy" are seeded_settings.DOUBLED and DOUBLED_NUMPY
# (sigma scales a linear map's outputs and moves no decision), "float32-module" LINEAR_3_TO_2;
# the tokens and the set are the same output but for Phi(-4) = 3e-5 of the noise per coordinate.
ROUND_TRIPS = {
    "tensor": (lambda b: b * 2, "l2", torch.zeros(3)),
    "numpy": (lambda b: b * 2.0, "l2", np.zeros(3)),
    "float32-module": (linear_3_to_2(), "l2", torch.zeros(3)),
    "tokens": (words, "levenshtein", torch.tensor([2.0, -2.0, 2.0])),
    "set": (tags, "jaccard", torch.tensor([2.0, -2.0, 2.0])),
}


@pytest.mark.parametrize("case", sorted(ROUND_TRIPS))
def test_a_certificate_comes_back_from_its_json(case):
    model, metric, x = ROUND_TRIPS[case]
    assert LINEAR_3_TO_2.seed == DOUBLED.seed == DOUBLED_NUMPY.seed
    smoother = CenterSmoothing(model, metric=metric, sigma=0.5, seed=LINEAR_3_TO_2.seed, **SMALL)
    with pytest.warns(UncertifiableRadiusWarning):  # one radius beyond max_eps_in: inf
        cert = smoother.certify(x, [0.1, 0.2, 100.0])
    assert not cert.abstained
    text = cert.to_json()
    back = Certificate.from_json(text)
    assert back.to_json() == text and Certificate.from_dict(cert.to_dict()).to_json() == text
    assert isinstance(back.eps_out, np.ndarray) and back.eps_out[2] == math.inf
    np.testing.assert_array_equal(back.eps_out, cert.eps_out)
    np.testing.assert_array_equal(back.vacuous, cert.vacuous)
    assert back.eps_out_reason == cert.eps_out_reason and back.max_eps_in == cert.max_eps_in
    assert type(back.center) is type(cert.center)
    if isinstance(cert.center, torch.Tensor | np.ndarray):
        assert back.center.dtype == cert.center.dtype
        np.testing.assert_array_equal(np.asarray(back.center), np.asarray(cert.center))
    else:
        assert back.center == cert.center
    assert back.prediction == replace(cert.prediction, center=back.prediction.center)
    scalar = smoother.certify(x, 0.1)
    again = Certificate.from_json(scalar.to_json())
    assert isinstance(again.eps_out, float) and again.eps_out == scalar.eps_out


def test_an_abstained_certificate_comes_back_from_its_json():
    smoother = CenterSmoothing(coin, sigma=1.0, seed=COIN.seed, **COIN_COUNTS)
    cert = smoother.certify(torch.zeros(1), [0.1, 0.2])
    assert cert.abstained
    back = Certificate.from_json(cert.to_json())
    assert back.center is None and back.smoothing_error is None and back.radius == math.inf
    assert back.abstain_reason == cert.abstain_reason and back.to_json() == cert.to_json()
    assert Prediction.from_json(cert.prediction.to_json()) == cert.prediction


# ----------------------------------------------------------------------------- help()
def test_help_of_the_smoother_explains_every_argument_and_names_doc_sections():
    import inspect
    import pydoc
    import re
    from pathlib import Path

    text = pydoc.render_doc(CenterSmoothing, renderer=pydoc.plaintext)
    doc = inspect.getdoc(CenterSmoothing) or ""
    for name in inspect.signature(CenterSmoothing.__init__).parameters:
        if name != "self":
            assert f"``{name}``" in doc, name
    for words in ("Delta1", "abstain", "1 - alpha_center - alpha_certify", "2**64"):
        assert words in doc, words
    assert "docs/" not in text  # an installed package has no docs folder
    notes = (Path(__file__).resolve().parents[1] / "docs" / "algorithm.md").read_text()
    headings = [h.replace("`", "") for h in re.findall(r"^#+ (.*)$", notes, flags=re.M)]
    named = re.findall(r'\("([^"]+)"\)', " ".join(doc.split()))
    assert len(named) >= 6
    for section in named:
        assert any(h.startswith(section.replace("`", "")) for h in headings), section
