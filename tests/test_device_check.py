"""``benchmarks/device_check.sh`` (every GPU figure in one run) works end to end: its dry run at toy
sizes on the CPU writes the full report with sane numbers, and without a GPU it refuses to run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["tests", "model", "overhead", "center", "batch_memory", "certificates", "runner"]
SECTIONS = [
    "## Time budget",
    "## CUDA tests",
    "## Model",
    "## Overhead: certify / bare forward passes",
    "## Center search",
    "## Automatic batch size and peak device memory",
    "## Seconds per certificate",
    "## Runner throughput",
    "## Commands",
]


def positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("device_check")
    subprocess.run(
        ["bash", str(ROOT / "benchmarks/device_check.sh"), str(out), "--dry-run"],
        check=True,
        timeout=300,
    )
    report = (out / "device_check.md").read_text()
    data = json.loads((out / "device_check.json").read_text())
    return report, data


def test_dry_run_report_has_every_section(dry_run: tuple[str, dict]) -> None:
    report, data = dry_run
    for heading in SECTIONS:
        assert heading in report, heading
    assert "Not run" not in report
    assert data["mode"].startswith("dry run")
    assert data["environment"]["torch"] == torch.__version__
    assert data["date"] and data["total_seconds"] > 0
    for name in PARTS:
        part = data["parts"][name]
        assert part["status"] == "ok", (name, part.get("error"), part.get("notes"))
        assert 0 < part["seconds"] <= part["budget_s"]
    # the commands are written out as run
    commands = "\n".join(data["commands"])
    assert "-m pytest" in commands and "centersmooth train autoencoder" in commands
    assert "centersmooth certify" in commands and "--workers 1" in commands
    assert data["invocation"][0].startswith("bash benchmarks/device_check.sh")
    # the paper's reference sits beside our figures
    assert "| paper (its code, H100) 10^4 / 10^4 / 10^6 | fp32 | – | 4.940 | 4.420 |" in report


def test_dry_run_figures_are_sane(dry_run: tuple[str, dict]) -> None:
    _, parts = dry_run[0], dry_run[1]["parts"]
    tests = parts["tests"]
    assert tests["failed"] == 0
    assert any("test_cuda_matches_cpu" in line for line in tests["lines"])

    overhead = parts["overhead"]["rows"]
    assert [r["model"].split(",")[0] for r in overhead] == [
        "MNIST conv autoencoder",
        "DCGAN generator 3x64x64",
    ]
    for row in overhead:
        assert positive(row["bare_s"]["median"]) and positive(row["certify_s"]["median"])
        assert positive(row["ratio"]["median"])
        # counted, not assumed: at toy sizes the generator's check may fail (the bare passes
        # then match the shorter certify call)
        assert isinstance(row["abstained"], int) and row["abstained"] >= 0

    center = parts["center"]["rows"]
    assert len(center) == 9  # three clouds x three searches
    assert {r["search"] for r in center} == {
        "all pairs + central points",
        "all pairs, samples only",
        "30 candidates + central points",
    }
    assert all(positive(r["seconds"]["median"]) for r in center)

    batch = parts["batch_memory"]["rows"]
    assert len(batch) == 2
    for row in batch:
        assert row["find_batch_size"] >= parts["batch_memory"]["search"]["start"]
        assert positive(row["certify_s"])

    certs = parts["certificates"]["rows"]
    assert {(r["preset"], r["precision"]) for r in certs} == {
        ("default", "fp32"),
        ("default", "bf16"),
        ("paper", "fp32"),
    }
    assert len(certs) == 5
    for row in certs:
        assert positive(row["seconds_per_certificate"])
        # counted, not assumed: at toy sizes the generator's check may fail (the bare passes
        # then match the shorter certify call)
        assert isinstance(row["abstained"], int) and row["abstained"] >= 0
        assert positive(row["median_eps_out"]["0.25"])  # certified at the smallest eps_in

    runner = parts["runner"]["rows"]
    assert runner and all("error" not in r for r in runner)
    assert all(positive(r["inputs_per_hour"]) for r in runner)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_refuses_to_run_without_a_gpu(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/device_check.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no CUDA device" in result.stderr and "--dry-run" in result.stderr
    assert not (tmp_path / "device_check.md").exists()


def test_the_bare_passes_are_counted_from_the_certify_call() -> None:
    """The overhead's bare passes are as many as ``certify`` really ran: every sample plus the
    clean input when it certifies, fewer when it abstains after the check (which skips the
    certification samples and would make certify look cheaper than its forward passes)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from overhead import certify_passes

    from centersmooth import CenterSmoothing

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    smoother = CenterSmoothing(  # delta 0.15: the check's level 0.35 is far below the ball's 1/2
        model, sigma=0.25, n_center=1000, n_check=1000, n_certify=3000, batch_size=256, seed=0,
        delta=0.15,
    )  # fmt: skip
    assert certify_passes(smoother, model, torch.zeros(4)) == (5001, False)

    seen = [0]

    def move_after_the_center_samples(
        module: torch.nn.Module, args: tuple[torch.Tensor], out: torch.Tensor
    ) -> torch.Tensor:
        index = torch.arange(seen[0], seen[0] + out.shape[0])
        seen[0] += out.shape[0]
        return out + 100.0 * (index >= 1000).unsqueeze(1)  # the check samples miss the ball

    handle = model.register_forward_hook(move_after_the_center_samples)
    try:
        passes, abstained = certify_passes(smoother, model, torch.zeros(4))
    finally:
        handle.remove()
    assert abstained and passes == 2001
