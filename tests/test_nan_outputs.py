"""Outputs holding a NaN (or an infinity): an error by default, or, with
``nan_outputs="outside"``, outputs at infinite distance from every point, outside every ball
(docs/algorithm.md, "Outputs with a NaN")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from seeded_settings import (
    NAN_CENTRAL,
    NAN_CLEAN,
    NAN_COUNTS,
    NAN_SAMPLES,
    broken_where,
    nan_at_zero,
)

from centersmooth import CenterSmoothing

COUNTS = NAN_COUNTS
FAR = 1e6  # farther from every other output than any radius these certificates reach
EPS = [0.1, 0.25, 0.5]


def test_a_nan_output_is_an_error_by_default_that_names_the_option():
    smoother = CenterSmoothing(broken_where(math.nan), sigma=1.0, seed=0, **COUNTS)
    with pytest.raises(ValueError, match="nan_outputs='outside'"):
        smoother.certify(torch.zeros(3), 0.1)


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_outside_counts_them_as_outputs_beyond_every_ball(bad):
    """With the samples as the only candidates, an output at infinite distance and one so far
    away that no ball reaches it give the same center, radius, check count and radii: NaN
    outputs are put at infinite distance, nothing else changes."""
    x = torch.zeros(3)
    # both accept (seeded_settings.NAN_SAMPLES; the check counts of the three outputs agree)
    same = dict(sigma=1.0, seed=NAN_SAMPLES.seed, central_candidates=False, **COUNTS)
    outside = CenterSmoothing(broken_where(bad), nan_outputs="outside", **same)
    far = CenterSmoothing(broken_where(FAR), **same)
    ours, theirs = outside.certify(x, EPS), far.certify(x, EPS)
    assert not ours.abstained and not theirs.abstained
    assert ours.prediction.check_count == theirs.prediction.check_count
    assert torch.equal(ours.center, theirs.center) and ours.radius == theirs.radius
    np.testing.assert_array_equal(ours.eps_out, theirs.eps_out)
    assert np.all(np.asarray(ours.eps_out) < 10)  # no rank reached the outputs far away


def test_outside_certifies_with_the_central_candidates_of_the_finite_outputs():
    smoother = CenterSmoothing(
        broken_where(math.nan), sigma=1.0, seed=NAN_CENTRAL.seed, nan_outputs="outside", **COUNTS
    )  # accepts: seeded_settings.NAN_CENTRAL
    cert = smoother.certify(torch.zeros(3), EPS)
    assert not cert.abstained and torch.isfinite(cert.center).all()
    assert np.all(np.isfinite(cert.eps_out)) and math.isfinite(cert.smoothing_error)


def test_too_few_finite_outputs_abstain_and_say_why():
    def mostly_nan(batch: torch.Tensor) -> torch.Tensor:
        out = batch.double().clone()
        out[batch[:, 0] > -0.5] = math.nan  # 69% of the noise
        return out

    smoother = CenterSmoothing(mostly_nan, sigma=1.0, seed=0, nan_outputs="outside", **COUNTS)
    cert = smoother.certify(torch.zeros(3), 0.1)
    assert cert.abstained and math.isinf(cert.eps_out)
    assert "fewer than 1000 of the n_center=2000 center samples are finite" in cert.abstain_reason


def test_a_nan_clean_output_gives_an_infinite_smoothing_error_not_an_error():
    # accepts: seeded_settings.NAN_CLEAN
    smoother = CenterSmoothing(
        nan_at_zero, sigma=1.0, seed=NAN_CLEAN.seed, nan_outputs="outside", **COUNTS
    )
    cert = smoother.certify(torch.zeros(3), 0.1)
    assert not cert.abstained and cert.smoothing_error == math.inf


def test_nan_outputs_takes_two_values():
    with pytest.raises(ValueError, match="nan_outputs must be one of"):
        CenterSmoothing(lambda b: b, nan_outputs="ignore", **COUNTS)
