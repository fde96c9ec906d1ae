"""One seed rule for every entry point: the seed of a call is the seed of its input's noise;
input ``i`` of a batch or of a results file gets ``seed + i``. Checked from Python and through
the real ``centersmooth`` command, whose rows each name the seed that gives them again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from centersmooth import CenterSmoothing

COUNTS = dict(n_center=400, n_check=400, n_certify=1_000, delta=0.15, batch_size=200)

MODEL = """
import torch

def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
"""


def make() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())


def same(a, b) -> None:
    """Two certificates are the same, number for number (their abstention state first)."""
    assert a.abstained == b.abstained
    assert a.to_json() == b.to_json()


def test_the_constructors_seed_is_the_calls_seed():
    x = torch.linspace(-1, 1, 4)
    seeded = CenterSmoothing(make(), seed=3, **COUNTS)
    plain = CenterSmoothing(make(), **COUNTS)
    same(seeded.certify(x, [0.1, 0.2]), plain.certify(x, [0.1, 0.2], seed=3))
    assert seeded.predict(x).to_json() == plain.predict(x, seed=3).to_json()
    # a seed given to the call wins over the constructor's
    same(seeded.certify(x, 0.1, seed=9), plain.certify(x, 0.1, seed=9))
    batch = plain.certify_batch([x, -x, 2 * x], 0.1, seeds=[3, 4, 5])
    for cert, expected in zip(batch, seeded.certify_batch([x, -x, 2 * x], 0.1), strict=True):
        same(cert, expected)
    same(batch[1], plain.certify(-x, 0.1, seed=4))


def test_every_row_of_the_command_is_one_call_with_the_seed_it_records(tmp_path: Path):
    (tmp_path / "m.py").write_text(MODEL)
    inputs = np.random.default_rng(0).normal(size=(3, 4))
    np.save(tmp_path / "x.npy", inputs)
    counts = [f"--{k.replace('_', '-')}={v}" for k, v in COUNTS.items()]
    result = subprocess.run(
        [sys.executable, "-m", "centersmooth.cli", "certify", "--model", "m.py:make",
         "--inputs", "x.npy", "--sigma", "0.25", "--eps-in", "0.1", "0.2", "--seed", "3",
         *counts, "--out", "r.jsonl", "--quiet", "--examples", "0"],
        capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    header, rows = lines[0], lines[1:]
    assert header["config"]["input_seeds"] == "seed + input_index"
    smoothing = header["config"]["smoothing"]
    model = make()
    for row in rows:
        i = row["input_index"]
        assert row["input_seed"] == 3 + i
        # the row again, in one line of Python
        cert = CenterSmoothing(model, metric=row["metric"], **smoothing).certify(
            torch.from_numpy(inputs[i]), row["eps_in"], seed=row["input_seed"]
        )
        assert cert.abstained == row["abstained"]
        assert cert.eps_out == (np.inf if row["eps_out"] is None else row["eps_out"])
        assert cert.prediction.p_low == row["p_low"]
    # the whole file is the batch of the run seed; its first input, one call with it
    smoother = CenterSmoothing(model, seed=3, **smoothing)
    batch = smoother.certify_batch([torch.from_numpy(x) for x in inputs], [0.1, 0.2])
    for i, cert in enumerate(batch):
        mine = [r for r in rows if r["input_index"] == i]
        assert [cert.abstained] * 2 == [r["abstained"] for r in mine]
        got = [None if np.isinf(e) else float(e) for e in cert.eps_out]
        assert got == [r["eps_out"] for r in mine]
    same(smoother.certify(torch.from_numpy(inputs[0]), [0.1, 0.2]), batch[0])


@pytest.mark.parametrize("seed", [0, 2**64 - 1])
def test_seeds_at_the_ends_of_the_range_are_taken(seed):
    smoother = CenterSmoothing(make(), seed=seed, **COUNTS)
    x = torch.zeros(4)
    last = smoother.certify_batch([x, x], 0.1)[1]
    same(last, smoother.certify(x, 0.1, seed=(seed + 1) % 2**64))
