"""Seeded certificates are the same bit for bit as the recorded ones.

``seeded_certificates.json`` holds every number of a set of seeded predictions and certificates
(the defaults, the paper's preset, several distances with per-distance candidates and a smaller
ball mass, a batch of inputs, a NumPy model, exact noise on a grid, an abstention) as recorded
with this library; the cases are ``seeded_settings.record_cases``, each of which goes its way
(accepts, or abstains) at every seed the seeds job sweeps, so that re-recording never needs
another seed. A change that should not move any number (reorganising the code, a faster kernel
for the same arithmetic) must leave them all equal. Floats, the centers' coordinates included,
are stored as ``float.hex``.

The recorded numbers come from torch's CPU kernels for one instruction set (``cpu_capability`` in
the file): a CPU with another one may round some operations differently, so there every float,
centers included, is compared to 1e-9 relative (1e-12 absolute). Re-record (only after a change
meant to move the numbers, with a note of why) with ``python tests/test_seeded_certificates.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from seeded_settings import RECORD_COUNTS, record_cases

from centersmooth.settings import SmoothingSettings

RECORD = Path(__file__).with_name("seeded_certificates.json")
REL, ABS = 1e-9, 1e-12  # the tolerance on a CPU with another instruction set


def number(value: Any) -> Any:
    """Floats as exact hex strings (lists element-wise), other values as they are."""
    if isinstance(value, list | tuple | np.ndarray):
        return [number(v) for v in value]
    if isinstance(value, bool | np.bool_ | type(None) | str):
        return None if value is None else value if isinstance(value, str) else bool(value)
    return float(value).hex()


def summary(result: Any) -> dict[str, Any]:
    """Every number of a certificate or prediction, floats as hex, the center's coordinates
    flattened (``None`` when it abstained)."""
    record = result.to_dict()
    point = result.center
    record.pop("center")
    record.pop("prediction", None)
    out = {key: number(value) for key, value in sorted(record.items())}
    if point is not None:
        array = point.detach().cpu().numpy() if isinstance(point, torch.Tensor) else point
        point = np.asarray(array, dtype=np.float64).ravel()
    out["center"] = None if point is None else number(point)
    return out


def compute() -> dict[str, list[dict[str, Any]]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            name: [summary(r) for r in run(seed)] for name, (seed, run) in record_cases().items()
        }
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
    """Equal, or (``exact=False``) equal up to ``REL`` / ``ABS`` for floats stored as hex."""
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(same(e, a, exact) for e, a in zip(expected, actual, strict=True))
        )
    if exact or not isinstance(expected, str) or not isinstance(actual, str):
        return bool(expected == actual)
    try:
        e, a = float.fromhex(expected), float.fromhex(actual)
    except ValueError:  # a string that is not a float (an abstention's reason): equal or not
        return expected == actual
    return e == a or math.isclose(e, a, rel_tol=REL, abs_tol=ABS)


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORD.read_text())
    return data


@pytest.fixture(scope="module")
def computed() -> dict[str, list[dict[str, Any]]]:
    return compute()


@pytest.mark.parametrize("case", sorted(record_cases()))
def test_seeded_results_equal_the_recorded_ones(
    case: str, recorded: dict[str, Any], computed: dict[str, list[dict[str, Any]]]
) -> None:
    exact = torch.backends.cpu.get_cpu_capability() == recorded["cpu_capability"]
    expected, actual = recorded["cases"][case], computed[case]
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual, strict=True):
        assert sorted(e) == sorted(a)
        assert e["abstained"] == a["abstained"]  # first the decision, then its numbers
        different = {k: (e[k], a[k]) for k in e if not same(e[k], a[k], exact)}
        assert not different, f"{case}: {different}"


def test_the_code_certifies_what_the_record_is_meant_to_cover(
    computed: dict[str, list[dict[str, Any]]],
) -> None:
    """The cases are not vacuous, as this code computes them: the defaults certify every radius
    with finite numbers and a center; the paper's preset gives another eps_out; each input of
    the batch is certified; the coin abstains with the numbers that say why; and the input-grid
    case pays its slack (a smaller certifiable range than the same counts without the grid)."""

    def floats(values: list[str]) -> list[float]:
        return [float.fromhex(v) for v in values]

    defaults = computed["defaults"][0]
    assert defaults["abstained"] is False and len(defaults["center"]) == 12
    assert all(math.isfinite(v) and v > 0 for v in floats(defaults["eps_out"]))
    paper = computed["paper"][0]
    assert paper["abstained"] is False and paper["eps_out"] != defaults["eps_out"]
    batch = computed["batch"]
    assert len(batch) == 3 and not any(c["abstained"] for c in batch)
    abstained = computed["abstains"][0]
    assert abstained["abstained"] is True and abstained["center"] is None
    assert all(math.isinf(v) for v in floats(abstained["eps_out"]))
    assert "p_low=" in abstained["abstain_reason"]
    grid = computed["input_grid"][0]
    assert grid["abstained"] is False
    plain = SmoothingSettings(sigma=0.25, **RECORD_COUNTS)
    with_grid = SmoothingSettings(sigma=0.25, input_grid=1 / 256, **RECORD_COUNTS)
    assert float.fromhex(grid["max_eps_in"]) == with_grid.max_eps_in < plain.max_eps_in
    assert float.fromhex(defaults["max_eps_in"]) == plain.max_eps_in


def test_off_this_instruction_set_centers_are_still_compared(
    computed: dict[str, list[dict[str, Any]]],
) -> None:
    """The comparison used on a CPU with another instruction set compares every coordinate of
    the center: a rounding-sized difference passes, a real one fails."""
    center = computed["defaults"][0]["center"]
    near = [float.fromhex(v) for v in center]
    near[3] *= 1 + 1e-12
    moved = list(near)
    moved[3] *= 1 + 1e-6
    assert same(center, number(near), exact=False) and not same(center, number(near), exact=True)
    assert not same(center, number(moved), exact=False)
    assert not same(center, None, exact=False) and not same(center, center[:-1], exact=False)


if __name__ == "__main__":
    record()
    print(f"recorded {RECORD}")
