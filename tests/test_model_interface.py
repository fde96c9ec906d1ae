"""Models as users have them: scikit-learn estimators passed as they are, and models with
several outputs (a dict, a tuple or a named tuple of batches, a detector's list of per-input
dicts), one of which ``output=`` chooses."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from seeded_settings import (
    DETECTOR,
    DETECTOR_X,
    EDGE,
    ESTIMATORS,
    detector,
    estimator_data,
    estimators,
)

from centersmooth import CenterSmoothing
from centersmooth.sampling import SeveralOutputsError, model_function, select_output

# every prediction below accepts (seeded_settings.ESTIMATORS and DETECTOR)
COUNTS = dict(EDGE, seed=DETECTOR.seed)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# ----------------------------------------------------------------------------- scikit-learn
def test_an_estimator_is_certified_through_its_transform() -> None:
    x = estimator_data()[0]
    fitted = estimators()
    for estimator in (fitted["pca"], fitted["pipeline"]):
        assert model_function(estimator).__name__ == "transform"
        cert = CenterSmoothing(estimator, seed=ESTIMATORS.seed, **EDGE).certify(x, 0.1)
        assert not cert.abstained and isinstance(cert.center, np.ndarray)
        assert cert.center.shape == (2,)


def test_an_estimator_without_transform_is_certified_through_its_predict() -> None:
    pipeline = estimators()["regression"]
    assert model_function(pipeline).__name__ == "predict"  # the pipeline hides its transform
    cert = CenterSmoothing(pipeline, seed=ESTIMATORS.seed, **EDGE).certify(estimator_data()[0], 0.1)
    assert not cert.abstained


def test_an_object_that_is_no_model_is_refused_with_the_methods_to_pass() -> None:
    class Fitted:
        def decision_function(self, x):
            return x

    with pytest.raises(TypeError, match=r"transform or predict.*fitted.decision_function"):
        CenterSmoothing(Fitted())


# ----------------------------------------------------------------------------- several outputs
Detection = collections.namedtuple("Detection", "boxes scores")


def as_tuple(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = detector(batch)
    return out["boxes"], out["scores"]


def per_input(batch: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    out = detector(batch)
    return [{"boxes": b, "scores": s} for b, s in zip(out["boxes"], out["scores"], strict=True)]


X = DETECTOR_X


@pytest.mark.parametrize(
    "model, first",
    [
        (detector, "'boxes'"),
        (as_tuple, "0"),
        (lambda b: Detection(*as_tuple(b)), "'boxes'"),
    ],
)
def test_several_outputs_are_refused_with_their_names(model, first) -> None:
    with pytest.raises(SeveralOutputsError, match=f"of outputs, not a batch.*output={first}"):
        CenterSmoothing(model, metric="jaccard", **COUNTS).certify(X, 0.1)


@pytest.mark.parametrize(
    "model, output",
    [
        (detector, "boxes"),
        (as_tuple, 0),
        (as_tuple, "0"),  # as the command line passes it
        (lambda b: Detection(*as_tuple(b)), "boxes"),
        (lambda b: Detection(*as_tuple(b)), 0),
        (per_input, "boxes"),
        (detector, lambda out: out["boxes"]),
    ],
)
def test_output_chooses_the_certified_output(model, output) -> None:
    cert = CenterSmoothing(model, metric="jaccard", output=output, **COUNTS).certify(X, 0.1)
    reference = CenterSmoothing(detector, metric="jaccard", output="boxes", **COUNTS)
    expected = reference.certify(X, 0.1)
    assert cert.abstained == expected.abstained is False
    np.testing.assert_array_equal(cert.eps_out, expected.eps_out)
    assert torch.equal(torch.as_tensor(cert.center), expected.center)


def test_several_outputs_each_with_its_own_distance() -> None:
    boxes = CenterSmoothing(detector, metric="jaccard", output="boxes", **COUNTS)
    scores = CenterSmoothing(detector, metric="l2", output="scores", **COUNTS)
    certs = [boxes.certify(X, 0.1), scores.certify(X, 0.1)]
    assert [c.abstained for c in certs] == [False, False]
    assert certs[0].center.shape == (4,) and certs[1].center.shape == (1,)


def test_a_wrong_output_names_the_ones_there_are() -> None:
    with pytest.raises(SeveralOutputsError, match=r"'labels'.*'boxes'.*'scores'"):
        select_output(detector(X[None]), "labels")
    with pytest.raises(SeveralOutputsError, match=r"output=2.*0.*1"):
        select_output(as_tuple(X[None]), 2)
    with pytest.raises(SeveralOutputsError, match="returns one"):
        select_output(torch.zeros(2, 3), "boxes")
    with pytest.raises(TypeError, match="output must be"):
        CenterSmoothing(detector, output=1.5)


def test_a_list_of_objects_is_one_output() -> None:
    strings = ["a", "b"]
    assert select_output(strings, None) is strings


# ----------------------------------------------------------------------------- examples
@pytest.mark.parametrize("name", ["several_outputs.py"])
def test_the_examples_run(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    # each output says what it got: a certificate or an abstention (the example's own counts)
    assert "without output=:" in result.stdout
    for output in ("boxes under jaccard", "scores under l2"):
        assert f"{output}: center" in result.stdout or f"{output}: abstained" in result.stdout


def test_output_chooses_the_output_of_a_numpy_model() -> None:
    """A NumPy model (fed NumPy arrays) returning a dict has its output chosen as a torch model's
    is: the certificate is the one of the model that returns that output alone, bit for bit."""

    def both(b: np.ndarray) -> dict[str, np.ndarray]:
        return {"y": 2.0 * b[:, :2], "s": b.sum(axis=1, keepdims=True)}

    def alone(b: np.ndarray) -> np.ndarray:
        return 2.0 * b[:, :2]

    x = np.linspace(-1.0, 1.0, 4)
    chosen = CenterSmoothing(both, output="y", **COUNTS).certify(x, 0.1)
    plain = CenterSmoothing(alone, **COUNTS).certify(x, 0.1)
    assert chosen.abstained == plain.abstained
    np.testing.assert_array_equal(chosen.eps_out, plain.eps_out)
    if not plain.abstained:
        np.testing.assert_array_equal(chosen.center, plain.center)
