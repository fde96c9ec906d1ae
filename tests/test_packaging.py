"""What installing the library promises: a supported torch range for the library (not an exact
pin, which would block installing it beside another torch), the exact pin kept for the project's
own set-up and CI, a license the build backend takes without a deprecation warning, and a
set-up whose environment has every requirement it installs (``pip check``)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import torch
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUP = (ROOT / "scripts" / "setup.sh").read_text()
PIN = "2.13.0"


def requirement(name: str) -> Requirement:
    found = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    return next(r for r in found if r.name == name)


def test_the_library_takes_a_range_of_torch_versions():
    torch_req = requirement("torch")
    assert not any(spec.operator in ("==", "===") for spec in torch_req.specifier)
    for version in ("2.1.0", "2.4.1", PIN, "2.99"):
        assert torch_req.specifier.contains(version), version
    for version in ("2.0.1", "1.13.1", "3.0.0"):
        assert not torch_req.specifier.contains(version), version
    assert torch_req.specifier.contains(torch.__version__.split("+")[0])


def test_the_project_set_up_keeps_the_exact_pin():
    pins = re.findall(r'"torch==([0-9.]+)"', SETUP)
    assert pins and set(pins) == {PIN}
    # the editable install is made with the pin too, so that it never moves torch
    assert re.search(r'pip install -q -e "\.\[[a-z,]+\]" "torch==' + re.escape(PIN), SETUP)


def test_the_license_is_an_spdx_string_and_the_backend_is_new_enough_for_it():
    assert PYPROJECT["project"]["license"] == "MIT"  # a table is deprecated by setuptools
    backend = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    setuptools = next(r for r in backend if r.name == "setuptools")
    assert not setuptools.specifier.contains("76.1") and setuptools.specifier.contains("77.0")


def test_set_up_installs_nothing_whose_requirements_it_leaves_unmet():
    """lpips and gan-face-generate require torchvision (and wandb): their files are unpacked
    into the cache, never installed, and the set-up ends with ``pip check``."""
    weights_step = (ROOT / "scripts" / "setup.d" / "20-weights.sh").read_text()
    for name in ("lpips==0.1.4", "gan-face-generate==1.1.1"):
        lines = [line for line in weights_step.splitlines() if name in line]
        assert lines and all("--target" in line for line in lines), lines
    assert "pip check" in SETUP.split("setup.d/*.sh")[-1]  # after every step
