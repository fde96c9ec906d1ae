"""The empirical attack on the smoothed function, on linear maps where the worst case is known.

For ``f(x) = A x`` under l2 the smoothed output is close to ``A x`` (the mean is a central
candidate), so the largest shift an attacker can cause within ``||x' - x|| <= eps`` is
``||A||_2 eps``, reached along the top right singular vector. ``A`` has one singular value 3 and
nine of 1: a random direction moves the output by about ``eps sqrt(18 / 10) = 1.34 eps``, the best
one by ``3 eps``, so finding the worst case is a real test of the search.

Tolerance: the two smoothed outputs each carry a center-estimation error ``e ~ N(0, sigma^2 A A^T /
n_center)`` (for the mean; the median candidates are at most ~1.6 times noisier), so
``|d - ||A||_2 eps| <= ||e - e'||`` whose root mean square is ``sigma sqrt(2 tr(A A^T) / n_center)``
= 0.034 here. We allow 0.15 (over 4 times that, and 1.6 times for the noisier candidates).
"""

import dataclasses
import math

import numpy as np
import pytest
import torch
from seeded_settings import ATTACK_N_CENTER as N_CENTER
from seeded_settings import ATTACK_SIGMA as SIGMA
from seeded_settings import ATTACK_TOP as TOP
from seeded_settings import linear_model, smoother_for

from centersmooth import CenterSmoothing
from centersmooth.evaluation.attack import AttackUnsupported, attack

# Every smoother below accepts at x and at the attacked point whatever the attack's seed
# (seeded_settings.ATTACK_*).


def center_error_rms(model: torch.nn.Linear) -> float:
    a = model.weight.detach().double()
    return SIGMA * math.sqrt(2 * float(torch.trace(a @ a.T)) / N_CENTER)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_attack_finds_the_known_worst_case_and_stays_below_eps_out(seed):
    model, x = linear_model(seed)
    smoother = smoother_for(model)
    eps = 0.25
    result = attack(smoother, x, eps, seed=100 + seed)
    worst = TOP * eps
    tol = 0.15
    assert tol > 4 * center_error_rms(model)
    assert not result.abstained and not result.attacked_abstained
    assert result.perturbation_norm <= eps * (1 + 1e-6)
    assert float((result.x_adv - x).norm()) <= eps * (1 + 1e-6)
    assert abs(result.attacked_distance - worst) <= tol
    # the search beats a random direction of the same length by far (about 0.34 against 0.75)
    assert result.random_distance < worst - 2 * tol
    assert result.attacked_distance <= result.eps_out
    assert result.ratio == pytest.approx(result.attacked_distance / result.eps_out)
    assert result.surrogate_attacked >= result.surrogate_clean
    assert result.noise_floor < tol


def test_attack_never_exceeds_eps_out_over_radii():
    model, x = linear_model(5)
    smoother = smoother_for(model, n_center=1000)
    radii = [0.0, 0.1, 0.3, 0.6]
    assert max(radii) < smoother.max_eps_in  # every eps_out finite: no vacuous comparison
    cert = smoother.certify(x, radii, seed=3)
    for i, eps in enumerate(radii):
        result = attack(smoother, x, eps, certificate=cert, seed=10 + i, steps=20, restarts=2)
        assert result.eps_out == pytest.approx(float(cert.eps_out[i]))
        assert math.isfinite(result.eps_out)
        assert result.perturbation_norm <= eps * (1 + 1e-6) + 1e-12
        assert not result.violated
        assert result.attacked_distance <= result.eps_out
        # the known worst shift, with the center-estimation tolerance
        assert result.attacked_distance <= TOP * eps + 0.2


def test_zero_radius_attack_returns_the_input():
    model, x = linear_model(0)
    result = attack(smoother_for(model, n_center=500), x, 0.0, seed=0, steps=3, restarts=1)
    assert torch.equal(result.x_adv, x)
    assert result.perturbation_norm == 0.0


def test_attack_is_reproducible_with_a_seed():
    model, x = linear_model(0)
    smoother = smoother_for(model, n_center=500)
    a = attack(smoother, x, 0.3, seed=7, steps=5, restarts=2)
    b = attack(smoother, x, 0.3, seed=7, steps=5, restarts=2)
    assert torch.equal(a.x_adv, b.x_adv)
    assert a.attacked_distance == b.attacked_distance


def test_abstaining_certificate_gives_an_abstained_result():
    model, x = linear_model(0)
    smoother = smoother_for(model, n_center=500)
    cert = smoother.certify(x, 0.25, seed=0)
    abstained = dataclasses.replace(cert, abstained=True, center=None, eps_out=math.inf)
    result = attack(smoother, x, 0.25, certificate=abstained)
    assert result.abstained and result.x_adv is None and math.isnan(result.attacked_distance)


def test_certificate_for_another_radius_is_refused():
    model, x = linear_model(0)
    smoother = smoother_for(model, n_center=500)
    cert = smoother.certify(x, [0.1, 0.2], seed=0)
    with pytest.raises(ValueError, match="not for eps_in=0.3"):
        attack(smoother, x, 0.3, certificate=cert)


def test_numpy_model_is_refused_with_a_clear_message():
    smoother = CenterSmoothing(
        lambda batch: np.tanh(np.asarray(batch)) * 2.0,
        "l2",
        sigma=0.25,
        n_center=1000,
        n_check=2000,
        n_certify=2000,
    )
    x = np.zeros(4, dtype=np.float32)
    with pytest.raises(AttackUnsupported, match="torch"):
        attack(smoother, x, 0.2, seed=0)


def test_step_function_is_refused_no_gradient():
    smoother = CenterSmoothing(
        lambda b: (b.sum(dim=1, keepdim=True) > 0).float(),
        "l2",
        sigma=0.25,
        n_center=1000,
        n_check=2000,
        n_certify=2000,
    )
    with pytest.raises(AttackUnsupported, match="no gradient"):
        attack(smoother, torch.full((3,), 2.0), 0.2, seed=0)


def test_string_outputs_are_refused():
    smoother = CenterSmoothing(
        lambda b: ["a" * int(v > 0) for v in b[:, 0]],
        "levenshtein",
        sigma=0.25,
        n_center=1000,
        n_check=2000,
        n_certify=2000,
    )
    with pytest.raises(AttackUnsupported):
        attack(smoother, torch.full((2,), 3.0), 0.2, seed=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(eps_in=-0.1), "eps_in"),
        (dict(eps_in=math.nan), "eps_in"),
        (dict(eps_in=0.1, steps=0), "steps"),
        (dict(eps_in=0.1, restarts=0), "restarts"),
        (dict(eps_in=0.1, step_size=-1.0), "step_size"),
    ],
)
def test_bad_attack_arguments(kwargs, message):
    model, x = linear_model(0)
    smoother = smoother_for(model, n_center=500)
    with pytest.raises(ValueError, match=message):
        attack(smoother, x, **kwargs)
