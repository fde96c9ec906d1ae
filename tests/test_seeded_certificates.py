"""Seeded certificates are the same bit for bit as the recorded ones.

``seeded_certificates.json`` holds every number of a set of seeded predictions and certificates
(the defaults, the paper's preset, several distances with per-distance candidates and a smaller
ball mass, a batch of inputs, a NumPy model, exact noise on a grid) as recorded with this
library. A change that should not move any number (reorganising the code, a faster kernel
for the same arithmetic) must leave them all equal. Floats are stored as ``float.hex`` and the
centers as the SHA-256 of their bytes.

The recorded numbers come from torch's CPU kernels for one instruction set (``cpu_capability`` in
the file): a CPU with another one may round some operations differently, so there the floats are
compared to 1e-9 relative and the center hashes are skipped. Re-record (only after a change
meant to move the numbers) with ``python tests/test_seeded_certificates.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from centersmooth import CenterSmoothing

RECORD = Path(__file__).with_name("seeded_certificates.json")
SMALL = {"n_center": 1_500, "n_check": 1_500, "n_certify": 4_000, "batch_size": 384}
EPS_IN = [0.05, 0.1, 0.2]


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 12)).eval()


def inputs(n: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return list(torch.rand(n, 12, generator=gen))


def center_hash(point: Any) -> str:
    array = point.detach().cpu().numpy() if isinstance(point, torch.Tensor) else np.asarray(point)
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def number(value: Any) -> Any:
    """Floats as exact hex strings (lists element-wise), other values as they are."""
    if isinstance(value, list | tuple | np.ndarray):
        return [number(v) for v in value]
    if isinstance(value, bool | np.bool_ | type(None) | str):
        return None if value is None else value if isinstance(value, str) else bool(value)
    return float(value).hex()


def summary(result: Any) -> dict[str, Any]:
    """Every number of a certificate or prediction, floats as hex, the center as a hash."""
    record = result.to_dict()
    point = result.center
    record.pop("center")
    record.pop("prediction", None)
    out = {key: number(value) for key, value in sorted(record.items())}
    out["center_sha256"] = None if point is None else center_hash(point)
    return out


def cases() -> dict[str, Callable[[], Any]]:
    xs = inputs(3)
    numpy_model = model()

    def numpy_base(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return numpy_model(torch.from_numpy(batch).float()).double().numpy()

    def certify_several() -> list[Any]:
        smoother = CenterSmoothing(
            model(), sigma=0.25, candidates={"angular": 30}, ball_mass=0.4, seed=7, **SMALL
        )
        certs = smoother.certify_metrics(xs[0], EPS_IN, ["l2", "angular", "l1"])
        return [certs[name] for name in ("l2", "angular", "l1")]

    return {
        "defaults": lambda: [CenterSmoothing(model(), seed=0, **SMALL).certify(xs[0], EPS_IN)],
        "scalar_eps_in": lambda: [CenterSmoothing(model(), seed=0, **SMALL).certify(xs[0], 0.1)],
        "predict": lambda: [CenterSmoothing(model(), seed=3, **SMALL).predict(xs[1])],
        "paper": lambda: [
            CenterSmoothing.paper(model(), sigma=0.25, seed=0, **SMALL).certify(xs[0], EPS_IN)
        ],
        "several_distances": certify_several,
        "batch": lambda: CenterSmoothing(model(), seed=5, **SMALL).certify_batch(xs, EPS_IN),
        "numpy_model": lambda: [
            CenterSmoothing(numpy_base, seed=2, **SMALL).certify(xs[2].double().numpy(), EPS_IN)
        ],
        "input_grid": lambda: [
            CenterSmoothing(model(), seed=4, input_grid=1 / 256, **SMALL).certify(
                torch.round(xs[1] * 256) / 256, EPS_IN
            )
        ],
    }


def compute() -> dict[str, list[dict[str, Any]]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: [summary(r) for r in make()] for name, make in cases().items()}
    finally:
        torch.set_num_threads(threads)


def record() -> None:
    data = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cases": compute(),
    }
    RECORD.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def same(expected: Any, actual: Any, exact: bool) -> bool:
    if isinstance(expected, list):
        return len(expected) == len(actual) and all(
            same(e, a, exact) for e, a in zip(expected, actual, strict=True)
        )
    if exact or not isinstance(expected, str) or not isinstance(actual, str):
        return bool(expected == actual)
    try:
        e, a = float.fromhex(expected), float.fromhex(actual)
    except ValueError:  # a hash
        return True
    return e == a or math.isclose(e, a, rel_tol=1e-9, abs_tol=1e-12)


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORD.read_text())
    return data


@pytest.fixture(scope="module")
def computed() -> dict[str, list[dict[str, Any]]]:
    return compute()


@pytest.mark.parametrize("case", sorted(cases()))
def test_seeded_results_equal_the_recorded_ones(
    case: str, recorded: dict[str, Any], computed: dict[str, list[dict[str, Any]]]
) -> None:
    exact = torch.backends.cpu.get_cpu_capability() == recorded["cpu_capability"]
    expected, actual = recorded["cases"][case], computed[case]
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual, strict=True):
        assert sorted(e) == sorted(a)
        different = {k: (e[k], a[k]) for k in e if not same(e[k], a[k], exact)}
        assert not different, f"{case}: {different}"


def test_the_record_covers_certified_and_cut_off_radii(recorded: dict[str, Any]) -> None:
    """The record is not vacuous: the default case certifies every radius with finite numbers,
    the paper's preset a different eps_out, and the input-grid case pays its slack."""
    defaults = recorded["cases"]["defaults"][0]
    assert not defaults["abstained"]
    assert all(math.isfinite(float.fromhex(v)) for v in defaults["eps_out"])
    assert recorded["cases"]["paper"][0]["eps_out"] != defaults["eps_out"]
    assert len(recorded["cases"]["batch"]) == 3


if __name__ == "__main__":
    record()
    print(f"recorded {RECORD}")
