"""Inputs on a grid (``input_grid``, ``--input-grid``): a grid far coarser than the noise, inputs
off the grid and inputs on it up to the rounding of the model's float type, from Python and from
the real command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from seeded_settings import GRID_PIXELS, GRID_PIXELS_COUNTS, float32_pixels, linear_4_to_3

from centersmooth import CenterSmoothing
from centersmooth.grid_noise import grid_text

COUNTS = GRID_PIXELS_COUNTS
CLI_COUNTS = ["--n-center", "1000", "--n-check", "1000", "--n-certify", "1000", "--delta", "0.15"]

MODEL = """
import torch

def float32_module():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3)
"""


def command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real `centersmooth` command, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "centersmooth.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ),
        timeout=300,
    )


def certify(tmp_path: Path, inputs: np.ndarray, grid: str) -> subprocess.CompletedProcess:
    (tmp_path / "m.py").write_text(MODEL)
    np.save(tmp_path / "x.npy", inputs)
    return command(
        "certify", "--model", "m.py:float32_module", "--inputs", "x.npy", "--sigma", "0.25",
        "--eps-in", "0.01", "--input-grid", grid, *CLI_COUNTS, "--out", "r.jsonl", "--quiet",
        cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.parametrize(
    "grid, text", [(1 / 255, "1/255"), (2 / 255, "2/255"), (0.1, "0.1"), (255.0, "255")]
)
def test_a_grid_is_shown_as_a_user_writes_it(grid, text):
    assert grid_text(grid) == text


def test_a_grid_far_coarser_than_sigma_names_the_ratio_and_the_slip():
    with pytest.raises(ValueError) as caught:
        CenterSmoothing(lambda b: b, sigma=0.25, input_grid=255, **COUNTS)
    message = str(caught.value)
    assert "sigma / input_grid = 0.00098" in message and "input_grid=1/255" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="a finer grid .* or a larger sigma"):
        CenterSmoothing(lambda b: b, sigma=0.01, input_grid=0.5, **COUNTS)
    CenterSmoothing(lambda b: b, sigma=0.25, input_grid=1.0, **COUNTS)  # a ratio of 1/4: taken


def test_the_command_refuses_a_coarse_grid_in_one_line_before_any_file(tmp_path):
    result = certify(tmp_path, float32_pixels(np.arange(8).reshape(2, 4)), "255")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "sigma / input_grid = 0.00098" in result.stderr and "1/255" in result.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_normalised_inputs_are_refused_with_the_grid_as_written_and_the_likely_cause():
    smoother = CenterSmoothing(lambda b: b, sigma=0.25, input_grid=1 / 255, **COUNTS)
    normalised = (torch.arange(8, dtype=torch.float64) / 255 - 0.1307) / 0.3081
    with pytest.raises(ValueError) as caught:
        smoother.predict(normalised)
    message = str(caught.value)
    assert "input_grid=1/255" in message and "0.0039" not in message
    assert "negative" in message and "move the normalisation into the model" in message


def test_float32_pixels_saved_as_float64_are_on_the_grid_for_a_float32_module(tmp_path):
    """``float32(k / 255)`` is up to 6.7e-6 grid steps from ``k`` as a float64, which float64's
    rounding does not explain; the float32 module gets it rounded back to float32, where it
    lies on the grid (as in the run). A float64 model refuses it."""
    pixels = float32_pixels(np.arange(200, 208).reshape(2, 4))  # up to 3.3e-6 steps off
    module = linear_4_to_3()
    smoother = CenterSmoothing(module, sigma=0.25, input_grid=1 / 255, seed=GRID_PIXELS.seed,
                               **COUNTS)  # fmt: skip
    assert not smoother.predict(torch.from_numpy(pixels[0])).abstained  # GRID_PIXELS
    float64 = CenterSmoothing(lambda b: b, sigma=0.25, input_grid=1 / 255, **COUNTS)
    with pytest.raises(ValueError, match="not on the grid input_grid=1/255"):
        float64.predict(torch.from_numpy(pixels[0]))

    result = certify(tmp_path, pixels, "1/255")
    assert result.returncode == 0, result.stderr
    normalised = (pixels - 0.1307) / 0.3081
    (tmp_path / "r.jsonl").unlink()
    result = certify(tmp_path, normalised, "1/255")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "input_grid=1/255" in result.stderr and "normalisation into the model" in result.stderr
    assert not (tmp_path / "r.jsonl").exists()
