"""``results/run_gpu.sh`` (the full grid, meant for a GPU) runs end to end at toy size on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from centersmooth.runs.runner import read_results

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.needs("mnist")
def test_gpu_grid_script_runs_at_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    env = {
        **os.environ,
        "CS": str(Path(sys.executable).parent / "centersmooth"),
        "DEVICE": "cpu",
        "OUT": str(out),
        "N_INPUTS": "1",
        "EPOCHS": "1",
        "SIGMAS": "0.25",
        "DATASETS": "mnist",
        "TASKS": "autoencoder",
        "TRAIN_ARGS": "--n-train 64 --threads 1",
        # toy counts: delta 0.25 lets 500 samples pass the paper preset's Hoeffding check
        "CERTIFY_ARGS": "--n-center 500 --n-check 500 --n-certify 2000 --delta 0.25 --threads 1",
    }
    subprocess.run(["bash", str(ROOT / "results/run_gpu.sh")], env=env, check=True, timeout=600)
    expected = {
        "mnist-autoencoder/sigma0.25.jsonl": ({"l2", "angular", "tv1", "tv2"}, "binomial"),
        "mnist-autoencoder/sigma0.25-paper.jsonl": ({"l2"}, "hoeffding"),
        "mnist-classifier/sigma0.25.jsonl": ({"total_variation"}, "binomial"),
    }
    for name, (metrics, bound) in expected.items():
        rows = read_results(out / name).rows
        assert {r["metric"] for r in rows} == metrics
        assert len(rows) == 4 * len(metrics)  # one input, four eps_in
        assert {(r["bound"], r["n_certify"], r["sigma"]) for r in rows} == {(bound, 2000, 0.25)}
        assert sorted({r["eps_in"] for r in rows}) == [0.125, 0.25, 0.375, 0.5]
    subprocess.run(
        [sys.executable, str(ROOT / "results/summarize.py"), str(out)], check=True, timeout=300
    )
    assert "| mnist | paper | l2 |" in (out / "autoencoder.md").read_text()
    assert (out / "classifier_eps_out.png").stat().st_size > 0
