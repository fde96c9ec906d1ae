"""Every GPU figure of the library in one timed run: writes OUT_DIR/device_check.md and .json.

Usage: python benchmarks/device_check.py OUT_DIR [--dry-run] [--budget SECONDS]
(normally through ``bash benchmarks/device_check.sh OUT_DIR``, which prepares the environment
offline from the folder ``benchmarks/prepare_device_bundle.py`` makes).

Parts, each with its own time budget (seconds, on one CUDA GPU; the run stops a part that
overruns, keeps the rows it finished and says so in the report):

1. CUDA tests: the tests marked ``cuda``, with their pass/fail lines; a collection error, no
   test selected or no pytest counts as a failure.
2. Model: the trained MNIST autoencoder (sigma_train 0.25) from the cache (the prepared folder),
   else trained now with ``python -m centersmooth.cli train autoencoder``; random weights if that
   fails or overruns (said so).
3. Overhead: ``certify`` time / time of the same number of bare forward passes, for the
   autoencoder and the DCGAN generator (3x64x64 outputs).
4. Center search at n_center = 10^4: all pairs + central points, all pairs over the samples
   only, 30 candidates; 1x28x28 and 3x64x64 outputs.
5. Automatic batch size (``batch_size.find_batch_size``, what ``batch_size=None`` uses) and
   peak device memory (``torch.cuda.max_memory_allocated``).
6. Seconds per certificate with ``certify_batch`` (several inputs per forward pass), fp32 and
   bf16, at 10^4 / 10^4 / 10^5 and 10^4 / 10^4 / 10^4, and the paper's preset, with the
   median eps_out at eps_in 0.25 / 0.375 / 0.5 beside the paper's figures.
7. Reproducibility: a seeded certificate computed twice, and with another batch size (cuDNN
   may pick other kernels for another batch shape); the TF32 and determinism settings in force.
8. Grid noise (``input_grid``): noisy samples per second for 3x64x64 inputs, drawn ahead into
   page-locked memory against drawn in line.
9. Distances: ``tv2`` and Hamming pairwise blocks and the Hamming mode on the device.
10. Compiled model (``compile=True``, dynamic shapes): first call, later calls, graphs compiled.
11. Runner throughput: ``python -m centersmooth.cli certify`` with one worker on the GPU (and a
    Ray actor with ``--gpus-per-worker 1`` when Ray is installed and time is left).

``--dry-run`` runs every part at toy sizes on the CPU and writes the same report.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from overhead import (  # noqa: E402
    bare_forward,
    generator_for_timing,
    interleaved_overhead,
    timed,
)

from centersmooth import CenterSmoothing  # noqa: E402
from centersmooth.batch_size import find_batch_size  # noqa: E402
from centersmooth.center import find_center  # noqa: E402
from centersmooth.determinism import fix_cublas_workspace  # noqa: E402
from centersmooth.metrics import get_metric  # noqa: E402
from centersmooth.sampling import BaseFunction  # noqa: E402
from centersmooth.tasks.base import default_checkpoint, load_model  # noqa: E402
from centersmooth.tasks.inference import inference_form  # noqa: E402
from centersmooth.tasks.models import ConvAutoencoder  # noqa: E402

EPS_IN = [0.25, 0.375, 0.5]
SIGMA = 0.25
# The paper's code on an H100: 10^4 / 10^4 / 10^6 samples, MNIST autoencoder at sigma 0.25.
PAPER = {
    "seconds_per_certificate_per_eps_in": 4.94,
    "counts": [10_000, 10_000, 1_000_000],
    "median_eps_out": {"0.25": 4.42, "0.375": 4.68, "0.5": 5.07},
    "gpu": "H100",
}

# Sizes and per-part budgets (seconds). "gpu" is the real run; "dry" the CPU dry run.
SIZES: dict[str, dict[str, Any]] = {
    "gpu": {
        "total_budget": 480,
        "budgets": {
            "tests": 75,
            "model": 40,
            "overhead": 45,
            "center": 25,
            "batch_memory": 30,
            "certificates": 80,
            "reproducibility": 30,
            "grid_noise": 20,
            "distances": 25,
            "compile": 60,
            "runner": 50,
        },
        "repeats": 2,
        "ae_counts": (10_000, 10_000, 100_000),
        "gan_counts": (10_000, 10_000, 100_000),
        "n_center_search": 10_000,
        "batch_limit": 2**16,
        "cert_inputs": 10,
        "cert_configs": [
            ("10^4 / 10^4 / 10^5", (10_000, 10_000, 100_000), "default"),
            ("10^4 / 10^4 / 10^4", (10_000, 10_000, 10_000), "default"),
            ("paper preset 10^4 / 10^4 / 10^6", (10_000, 10_000, 1_000_000), "paper"),
        ],
        "repro_counts": (10_000, 10_000, 100_000),
        "grid_samples": 100_000,
        "distance_rows": 2_000,
        "distance_samples": 10_000,
        "compile_counts": (10_000, 10_000, 100_000),
        "runner_inputs": 20,
        "runner_counts": (10_000, 10_000, 100_000),
        "train_args": [],
        "delta": 0.05,  # the library's default
    },
    "dry": {
        "total_budget": 400,
        "budgets": {
            "tests": 60,
            "model": 60,
            "overhead": 60,
            "center": 60,
            "batch_memory": 60,
            "certificates": 60,
            "reproducibility": 40,
            "grid_noise": 30,
            "distances": 30,
            "compile": 60,
            "runner": 60,
        },
        "repeats": 1,
        "ae_counts": (300, 300, 300),
        "gan_counts": (60, 30, 30),
        "n_center_search": 200,
        "batch_limit": 128,
        "cert_inputs": 2,
        "cert_configs": [
            ("300 / 300 / 1000 (toy)", (300, 300, 1_000), "default"),
            ("300 / 300 / 300 (toy)", (300, 300, 300), "default"),
            ("paper preset 300 / 300 / 2000 (toy)", (300, 300, 2_000), "paper"),
        ],
        "repro_counts": (300, 300, 600),
        "grid_samples": 1_000,
        "distance_rows": 50,
        "distance_samples": 300,
        "compile_counts": (300, 300, 300),
        "runner_inputs": 2,
        "runner_counts": (300, 300, 1_000),
        "train_args": ["--n-train", "64", "--epochs", "1", "--threads", "1"],
        # a looser delta lets toy sample counts certify (n_center >= 908 at the default 0.05)
        "delta": 0.2,
    },
}
# the command, run by this Python (a console script may not exist where the project was not
# installed with pip)
CLI = [sys.executable, "-m", "centersmooth.cli"]


class PartTimeout(Exception):
    """A part ran past its time budget."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise PartTimeout in the main thread once ``seconds`` have passed."""

    def expire(signum: int, frame: Any) -> None:
        raise PartTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_command(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict:
    """Run ``cmd`` in its own process group; kill the whole group when it overruns."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1))
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        timed_out = True
    except BaseException:  # the part's own deadline: leave nothing running
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return {
        "command": shlex.join(cmd),
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "seconds": time.perf_counter() - start,
        "output": out,
    }


def median_range(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Check:
    """Runs the parts in order against their budgets and rewrites the report after each."""

    def __init__(self, out_dir: Path, dry_run: bool, budget: float | None) -> None:
        self.out_dir = out_dir
        self.dry = dry_run
        self.sizes = SIZES["dry" if dry_run else "gpu"]
        self.total_budget = float(budget or self.sizes["total_budget"])
        self.device = torch.device("cpu" if dry_run else "cuda")
        self.start = time.perf_counter()
        self.commands: list[str] = []
        self.data: dict[str, Any] = {
            "mode": "dry run (CPU, toy sizes)" if dry_run else "CUDA",
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "environment": self.environment(),
            "commands": self.commands,
            "paper_reference": PAPER,
            "parts": {},
        }
        self.model: nn.Module | None = None
        self.checkpoint: Path | None = None
        self.digits: torch.Tensor | None = None
        # results files, inputs and toy models: kept out of OUT_DIR, which holds the report
        self.scratch = Path(tempfile.mkdtemp(prefix="centersmooth-device-check-"))

    # ------------------------------------------------------------------ bookkeeping
    def environment(self) -> dict[str, Any]:
        env: dict[str, Any] = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()
            if torch.backends.cudnn.is_available()
            else None,
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "prepared_folder": prepared_folder(),
            # what changes the kernels of a run: TF32 (cuBLAS matrix products / cuDNN
            # convolutions), cuDNN's timing-based choice, cuBLAS's workspace
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        }
        if torch.cuda.is_available() and not self.dry:
            props = torch.cuda.get_device_properties(0)
            env["gpu"] = torch.cuda.get_device_name(0)
            env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
            env["gpu_count"] = torch.cuda.device_count()
        else:
            env["gpu"] = None
        return env

    def remaining(self) -> float:
        return self.total_budget - (time.perf_counter() - self.start)

    def part(self, name: str, fn: Callable[[dict[str, Any]], None]) -> None:
        budget = min(self.sizes["budgets"][name], self.remaining())
        record: dict[str, Any] = {"budget_s": self.sizes["budgets"][name], "notes": []}
        self.data["parts"][name] = record
        if budget < 1:
            record.update(status="skipped", seconds=0.0)
            record["notes"].append("skipped: the run's total time budget was spent")
            self.write()
            return
        if budget < self.sizes["budgets"][name]:
            record["notes"].append(f"budget cut to {budget:.0f} s (the run's total budget)")
        record["allowed_s"] = budget
        start = time.perf_counter()
        try:
            with deadline(budget):
                fn(record)
            record["status"] = "ok"
        except PartTimeout:
            record["status"] = "overran"
            record["notes"].append(
                f"stopped after its budget of {budget:.0f} s; the rows above finished in time, "
                "the rest were skipped"
            )
        except Exception as err:  # noqa: BLE001 - a failing part must not stop the others
            record["status"] = "failed"
            record["error"] = f"{type(err).__name__}: {err}"
            record["traceback"] = traceback.format_exc()
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        record["seconds"] = time.perf_counter() - start
        self.write()

    def command(self, cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict:
        shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        result = run_command(cmd, timeout, env)
        self.commands.append((shown + " " if shown else "") + result["command"])
        return result

    def budget_left(self, record: dict[str, Any]) -> float:
        return record["allowed_s"] - 2.0

    # ------------------------------------------------------------------ parts
    def tests(self, record: dict[str, Any]) -> None:
        files = sorted(
            str(p.relative_to(ROOT))
            for p in (ROOT / "tests").glob("test_*.py")
            if p.name != "test_device_check.py" and "cuda" in p.read_text()
        )
        with open(ROOT / "pyproject.toml", "rb") as f:
            options = tomllib.load(f).get("tool", {}).get("pytest", {}).get("ini_options", {})
        marker = any(m.split(":")[0].strip() == "cuda" for m in options.get("markers", []))
        selection = ["-m", "cuda"] if marker else ["-k", "cuda"]
        cmd = [sys.executable, "-m", "pytest", "-v", "-rA", "-p", "no:cacheprovider"]
        cmd += selection + files
        result = self.command(cmd, self.budget_left(record) - 1)
        output = result["output"]
        lines = [
            line.strip()
            for line in output.splitlines()
            if any(w in line for w in (" PASSED", " FAILED", " SKIPPED", " ERROR", " XFAIL"))
            and "::" in line
        ]
        # -v prints each test once with its outcome; -rA repeats them in the summary
        outcome_lines = [line for line in lines if line.startswith("tests/")]
        summary = [ln for ln in output.splitlines() if ln.startswith("=") and " in " in ln]
        failed = sum(" FAILED" in ln or " ERROR" in ln for ln in outcome_lines)
        passed = sum(" PASSED" in ln for ln in outcome_lines)
        skipped = sum(" SKIPPED" in ln for ln in outcome_lines)
        problem = tests_problem(result["returncode"], output, passed, failed + skipped)
        if problem is None and not self.dry and passed == 0:
            problem = "every CUDA test was skipped (is the GPU visible to them?): a failure"
        record.update(
            selection=" ".join(selection),
            files=files,
            returncode=result["returncode"],
            timed_out=result["timed_out"],
            lines=outcome_lines or lines,
            summary=summary[-1].strip("= ") if summary else None,
            passed=passed,
            # a collection error, no test run or no pytest at all is a failure, never "ok"
            failed=max(failed, 1 if problem else 0),
            skipped=skipped,
        )
        if problem:
            record["notes"].append(problem)
        if result["returncode"] != 0:
            record["output_tail"] = output[-6000:]
            record["notes"].append("pytest's output is in the JSON (output_tail)")
        if result["timed_out"]:
            raise PartTimeout
        if not marker:
            record["notes"].append(
                "no 'cuda' pytest marker is registered: selected the tests named after cuda"
            )

    def load_digits(self, n: int) -> torch.Tensor:
        if self.digits is None or len(self.digits) < n:
            try:
                from centersmooth.data.datasets import load_dataset

                self.digits = torch.as_tensor(load_dataset("mnist").x_test[:n])
                self.data["inputs"] = "MNIST test digits 0..n-1"
            except Exception as err:  # noqa: BLE001
                gen = torch.Generator().manual_seed(0)
                self.digits = torch.rand(n, 1, 28, 28, generator=gen)
                self.data["inputs"] = f"uniform random 1x28x28 images (MNIST unavailable: {err})"
        return self.digits[:n]

    def model_part(self, record: dict[str, Any]) -> None:
        if self.dry:  # never put a toy model into the cache
            path = self.scratch / "models" / "autoencoder-mnist-sigma0.25-toy.pt"
        else:
            path = default_checkpoint("autoencoder", "mnist", SIGMA)
        record["checkpoint"] = str(path)
        if path.is_file() and not self.dry:
            record["source"] = "cached trained checkpoint"
        else:
            cmd = [*CLI, "train", "autoencoder"]
            cmd += ["--dataset", "mnist", "--sigma-train", str(SIGMA)]
            cmd += ["--device", self.device.type, "--out", str(path), "--quiet"]
            cmd += self.sizes["train_args"]
            result = self.command(cmd, self.budget_left(record) - 3)
            record["train_output"] = result["output"].strip()[-2000:]
            record["train_seconds"] = result["seconds"]
            if result["returncode"] == 0 and path.is_file():
                record["source"] = "trained now" + (
                    " (toy: 64 digits, 1 epoch)" if self.dry else ""
                )
            else:
                why = "overran its budget" if result["timed_out"] else "failed"
                record["source"] = f"random weights (training {why})"
                record["notes"].append(
                    f"training {why}: figures below use a random-weights autoencoder"
                )
                path = None
        if path is not None:
            self.checkpoint = path
            self.model = load_model(str(path))
        else:
            torch.manual_seed(0)
            self.model = inference_form(ConvAutoencoder().eval())
        self.data["model_source"] = record["source"]

    def autoencoder(self) -> nn.Module:
        if self.model is None:  # the model part did not finish
            torch.manual_seed(0)
            self.model = inference_form(ConvAutoencoder().eval())
            self.data["model_source"] = "random weights (the model part did not finish)"
        return inference_form(self.model, self.device)

    def generator(self) -> tuple[str, nn.Module]:
        name, model = generator_for_timing()
        return name, inference_form(model.eval(), self.device)

    def smoother(
        self, model: nn.Module, counts: tuple[int, int, int], **settings: Any
    ) -> CenterSmoothing:
        """A seeded smoother of ``model`` on the check's device with ``counts`` samples."""
        n_center, n_check, n_certify = counts
        return CenterSmoothing(
            model,
            sigma=SIGMA,
            n_center=n_center,
            n_check=n_check,
            n_certify=n_certify,
            device=self.device,
            seed=0,
            delta=self.sizes["delta"],
            **settings,
        )

    def batch_size_for(self, model: nn.Module, x: torch.Tensor, n_center: int = 0) -> int:
        """What ``batch_size=None`` picks for one input with ``n_center`` center samples."""
        base = BaseFunction(model, self.device)
        metrics = [get_metric("l2")]
        return find_batch_size(
            base, x, SIGMA, metrics=metrics, held_samples=n_center, limit=self.sizes["batch_limit"]
        )

    def overhead(self, record: dict[str, Any]) -> None:
        record["rows"] = rows = []
        cases = [
            (
                "MNIST conv autoencoder, " + self.data.get("model_source", "?"),
                self.autoencoder(),
                self.load_digits(1)[0],
                self.sizes["ae_counts"],
            ),
            (*self.generator(), torch.randn(100), self.sizes["gan_counts"]),
        ]
        for name, model, x, (n_center, n_check, n_certify) in cases:
            x = x.to(self.device)
            batch = self.batch_size_for(model, x, n_center)  # what batch_size=None picks
            total = n_center + n_check + n_certify + 1
            bare_forward(model, x, min(2 * batch, total), batch)  # warm-up
            smoother = self.smoother(model, (n_center, n_check, n_certify), batch_size=batch)
            smoother.certify(x, EPS_IN)  # warm-up
            bare, full, abstained = interleaved_overhead(
                smoother, model, x, batch, self.sizes["repeats"], self.device, EPS_IN
            )
            rows.append(
                {
                    "model": name,
                    "counts": [n_center, n_check, n_certify],
                    "batch_size": batch,
                    "bare_s": median_range(bare),
                    "certify_s": median_range(full),
                    "ratio": median_range([f / b for f, b in zip(full, bare, strict=True)]),
                    "abstained": abstained,
                }
            )

    def center(self, record: dict[str, Any]) -> None:
        n = self.sizes["n_center_search"]
        record["n_center"] = n
        record["rows"] = rows = []
        gen = torch.Generator(device=self.device).manual_seed(0)
        clouds = [
            (
                f"uniform noise {'x'.join(map(str, s))}",
                torch.rand(n, *s, generator=gen, device=self.device),
            )
            for s in [(1, 28, 28), (3, 64, 64)]
        ]
        model = self.autoencoder()
        x = self.load_digits(1)[0].to(self.device)
        with torch.no_grad():
            noisy = x + SIGMA * torch.randn(n, *x.shape, generator=gen, device=self.device)
            outputs = torch.cat([model(b) for b in noisy.split(1_000)])
        clouds.append((f"autoencoder outputs 1x28x28 ({self.data['model_source']})", outputs))
        metric = get_metric("l2")
        for name, samples in clouds:
            central = metric.central_candidates(samples)
            find_center(samples[:50], metric, None, central[:2])  # warm-up
            for mode, k, extra in [
                ("all pairs + central points", None, central),
                ("all pairs, samples only", None, None),
                ("30 candidates + central points", 30, central),
            ]:
                times = [
                    timed(
                        lambda s=samples, kk=k, e=extra: find_center(s, metric, kk, e), self.device
                    )
                    for _ in range(self.sizes["repeats"])
                ]
                rows.append({"outputs": name, "search": mode, "seconds": median_range(times)})

    def batch_memory(self, record: dict[str, Any]) -> None:
        record["rows"] = rows = []
        cuda = self.device.type == "cuda"
        record["limit"] = self.sizes["batch_limit"]
        cases = [
            (
                "MNIST conv autoencoder",
                self.autoencoder(),
                self.load_digits(1)[0],
                self.sizes["ae_counts"],
            ),
            (*self.generator(), torch.randn(100), self.sizes["gan_counts"]),
        ]
        for name, model, x, (n_center, n_check, n_certify) in cases:
            x = x.to(self.device)
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            found = self.batch_size_for(model, x, n_center)
            search_s = time.perf_counter() - start
            search_peak = torch.cuda.max_memory_allocated() if cuda else None
            # batch_size=None: the library's own choice
            smoother = self.smoother(model, (n_center, n_check, n_certify))
            # the first call runs the search inside (batch_size=None) and loads the kernels; the
            # second is timed, and its peak is what certification itself holds
            first_s = timed(lambda s=smoother, xx=x: s.certify(xx, EPS_IN), self.device)
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            certify_s = timed(lambda s=smoother, xx=x: s.certify(xx, EPS_IN), self.device)
            certify_peak = torch.cuda.max_memory_allocated() if cuda else None
            used = max(smoother._auto_batch_sizes.values(), default=None)
            rows.append(
                {
                    "model": name,
                    "counts": [n_center, n_check, n_certify],
                    "find_batch_size": found,
                    "search_s": search_s,
                    "batch_size_used_by_certify": used,
                    "first_certify_s": first_s,
                    "certify_s": certify_s,
                    "peak_search_gib": None if search_peak is None else search_peak / 2**30,
                    "peak_certify_gib": None if certify_peak is None else certify_peak / 2**30,
                }
            )
        if not cuda:
            record["notes"].append(
                "dry run: no device memory to read on the CPU (peaks are blank); the batch was "
                f"capped at {self.sizes['batch_limit']}"
            )

    def certificates(self, record: dict[str, Any]) -> None:
        record["rows"] = rows = []
        n = self.sizes["cert_inputs"]
        xs = [x.to(self.device) for x in self.load_digits(n)]
        record["inputs"] = n
        model = self.autoencoder()
        batch = None  # the library's choice, on the CPU as on CUDA
        warm = CenterSmoothing(
            model,
            sigma=SIGMA,
            n_center=300,
            n_check=300,
            n_certify=300,
            batch_size=batch,
            device=self.device,
            seed=0,
            delta=0.2,  # a warm-up: only the kernels it loads matter
        )
        warm.certify_batch(xs[:2], EPS_IN)
        plans = [
            (label, counts, preset, precision)
            for label, counts, preset in self.sizes["cert_configs"]
            for precision in ((None, "bf16") if preset == "default" else (None,))
        ]
        for label, (n_center, n_check, n_certify), preset, precision in plans:
            counts = dict(n_center=n_center, n_check=n_check, n_certify=n_certify)
            common = dict(
                sigma=SIGMA,
                batch_size=batch,
                device=self.device,
                seed=0,
                autocast=precision,
                delta=self.sizes["delta"],
                **counts,
            )
            if preset == "paper":
                smoother = CenterSmoothing.paper(model, **common)
            else:
                smoother = CenterSmoothing(model, **common)
            start = time.perf_counter()
            certs = smoother.certify_batch(xs, EPS_IN)
            sync(self.device)
            seconds = time.perf_counter() - start
            eps_out = np.array([np.asarray(c.eps_out, dtype=float) for c in certs])
            medians = {}
            for j, e in enumerate(EPS_IN):
                column = eps_out[:, j]
                medians[f"{e:g}"] = finite(float(np.median(column)))
            rows.append(
                {
                    "counts": label,
                    "preset": preset,
                    "precision": precision or "fp32",
                    "inputs": len(xs),
                    "seconds_total": seconds,
                    "seconds_per_certificate": seconds / len(xs),
                    "seconds_per_certificate_per_eps_in": seconds / len(xs) / len(EPS_IN),
                    "median_eps_out": medians,
                    "abstained": int(sum(c.abstained for c in certs)),
                    "max_eps_in": finite(smoother.max_eps_in),
                }
            )

    def reproducibility(self, record: dict[str, Any]) -> None:
        """A seeded certificate twice, with another batch size, and with TF32 off: which bits
        move. Also the kernel settings a seeded call runs under (read inside the model)."""
        n_center, n_check, n_certify = self.sizes["repro_counts"]
        model = self.autoencoder()
        x = self.load_digits(1)[0].to(self.device)
        seen: dict[str, Any] = {}

        def read_settings(module: nn.Module, args: Any) -> None:
            seen["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
            seen["cudnn_deterministic"] = torch.backends.cudnn.deterministic
            seen["cudnn_benchmark"] = torch.backends.cudnn.benchmark

        def certify(batch: int | None) -> Any:
            smoother = self.smoother(model, (n_center, n_check, n_certify), batch_size=batch)
            return smoother.certify(x, EPS_IN)

        handle = model.register_forward_pre_hook(read_settings)
        try:
            first = certify(None)
        finally:
            handle.remove()
        record["settings_in_a_seeded_call"] = dict(seen)
        record["rows"] = rows = [compare("the same seeded call again", first, certify(None))]
        rows.append(compare("batch size 997 against the automatic one", first, certify(997)))
        for what, tf32 in (("off (cuBLAS and cuDNN)", False), ("on (cuBLAS and cuDNN)", True)):
            with tf32_everywhere(tf32):
                other = certify(None)
            rows.append(compare(f"TF32 {what} against the default", first, other))

    def grid_noise(self, record: dict[str, Any]) -> None:
        """Exact grid noise for 3x64x64 inputs: the stream (narrow integers, drawn ahead into
        page-locked memory on CUDA) against the former in-line int64 draw, interleaved."""
        from centersmooth.grid_noise import GridNoiseStream, lattice_to_float
        from centersmooth.sampling import noise_block

        n = self.sizes["grid_samples"]
        gen = torch.Generator().manual_seed(0)
        k = torch.randint(0, 256, (3, 64, 64), generator=gen).to(self.device)
        block = noise_block(k.float())
        record["rows"] = rows = []

        def stream_draw() -> None:
            stream = GridNoiseStream(k, 1 / 255, SIGMA, torch.float32, 0, block)
            for _ in range(0, n, 1_000):
                stream.take(1_000).sum()

        def inline_draw() -> None:  # int64 from pageable memory, drawn when needed
            stream = GridNoiseStream(k, 1 / 255, SIGMA, torch.float32, 0, block, ahead=False)
            rng, table = stream.rng, stream.table
            done = 0
            while done < n:
                m = torch.from_numpy(table.sample(rng, (block, *k.shape))).to(self.device)
                lattice_to_float(k + m, 1 / 255, torch.float32).sum()
                done += block

        times: dict[str, list[float]] = {"stream": [], "inline": []}
        GridNoiseStream(k, 1 / 255, SIGMA, torch.float32, 0, block).take(1)  # the table, once
        for _ in range(self.sizes["repeats"]):
            times["stream"].append(timed(stream_draw, self.device))
            times["inline"].append(timed(inline_draw, self.device))
        for label, key in (("int16, drawn ahead", "stream"), ("int64, in line (before)", "inline")):
            rows.append(
                {
                    "draw": label,
                    "samples": n,
                    "seconds": median_range(times[key]),
                    "samples_per_s": n / statistics.median(times[key]),
                }
            )

    def distances(self, record: dict[str, Any]) -> None:
        """Pairwise blocks of tv2 and Hamming, row by row (before) and batched (after), and
        the Hamming mode (torch.mode against counting) on the device."""
        from pairwise_distances import clouds, rowwise_hamming, rowwise_tv2

        rows_n, n = self.sizes["distance_rows"], self.sizes["distance_samples"]
        record["rows"] = rows = []
        for name, _, metric, samples in clouds(n, self.device):
            block = samples[:rows_n]
            before = rowwise_tv2 if metric.name == "tv2" else rowwise_hamming
            t_before = timed(lambda b=before, r=block, s=samples: b(r, s), self.device)
            t_after = timed(lambda m=metric, r=block, s=samples: m.pairwise(r, s), self.device)
            rows.append(
                {
                    "what": f"pairwise {rows_n} x {n}: {name}",
                    "before_s": t_before,
                    "after_s": t_after,
                }
            )
            if metric.name == "hamming":
                t_mode = timed(lambda s=samples: torch.mode(s, dim=0), self.device)
                t_count = timed(lambda m=metric, s=samples: m.central_candidates(s), self.device)
                rows.append(
                    {"what": f"mode of {n}: {name}", "before_s": t_mode, "after_s": t_count}
                )

    def compiled_model(self, record: dict[str, Any]) -> None:
        """``compile=True`` (dynamic shapes) against eager: the first call (which compiles),
        a later one, and the graphs compiled over the run's batch sizes."""
        from torch._dynamo.utils import counters

        n_center, n_check, n_certify = self.sizes["compile_counts"]
        backend = "aot_eager" if self.dry else True  # no C++ compilation in the dry run
        record["backend"] = "aot_eager (dry run)" if self.dry else "inductor"
        x = self.load_digits(1)[0].to(self.device)
        record["rows"] = rows = []
        for label, compiled in (("eager", False), ("compiled", backend)):
            smoother = self.smoother(
                self.autoencoder(), (n_center, n_check, n_certify), compile=compiled
            )
            graphs = counters["stats"]["unique_graphs"]
            first = timed(lambda s=smoother: s.certify(x, EPS_IN), self.device)
            later = timed(lambda s=smoother: s.certify(x, EPS_IN), self.device)
            rows.append(
                {
                    "model": label,
                    "first_s": first,
                    "later_s": later,
                    "graphs": counters["stats"]["unique_graphs"] - graphs,
                }
            )

    def runner(self, record: dict[str, Any]) -> None:
        record["rows"] = rows = []
        n = self.sizes["runner_inputs"]
        n_center, n_check, n_certify = self.sizes["runner_counts"]
        if self.checkpoint is not None and self.data.get("inputs", "").startswith("MNIST"):
            source = ["autoencoder", "--checkpoint", str(self.checkpoint), "--n-inputs", str(n)]
        else:  # no trained model or no MNIST: a seeded random autoencoder on saved inputs
            inputs = self.scratch / "runner_inputs.npy"
            np.save(inputs, self.load_digits(n).numpy())
            model = f"{Path(__file__).resolve()}:random_autoencoder"
            source = ["--model", model, "--inputs", str(inputs)]
            record["notes"].append("the runner certified a random-weights autoencoder")
        base = [*CLI, "certify", *source, "--sigma", str(SIGMA), "--eps-in", *map(str, EPS_IN)]
        base += ["--metric", "l2"]
        base += ["--n-center", str(n_center), "--n-check", str(n_check)]
        base += ["--n-certify", str(n_certify), "--device", self.device.type, "--seed", "0"]
        base += ["--delta", str(self.sizes["delta"]), "--quiet", "--examples", "0"]
        if self.dry:
            base += ["--threads", "1"]
        plans = [
            ("local, 1 worker", ["--workers", "1"]),
            ("local, 1 worker, 8 inputs per batch", ["--workers", "1", "--inputs-per-batch", "8"]),
        ]
        ray_ok = not self.dry and _importable("ray")
        if ray_ok:
            plans.append(
                (
                    "ray, 1 actor, 1 GPU",
                    ["--backend", "ray", "--workers", "1", "--gpus-per-worker", "1"],
                )
            )
        for label, extra in plans:
            left = record["allowed_s"] - (time.perf_counter() - self.part_start(record)) - 2
            if left < (30 if "ray" in extra else 5):
                record["notes"].append(f"{label}: skipped (part budget spent)")
                continue
            out = self.scratch / "runner" / f"{label.split(',')[0]}-{len(rows)}.jsonl"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.unlink(missing_ok=True)
            result = self.command([*base, *extra, "--out", str(out)], left)
            row: dict[str, Any] = {"setup": label, "inputs": n, "wall_s": result["seconds"]}
            row["counts"] = [n_center, n_check, n_certify]
            if result["returncode"] == 0:
                lines = [json.loads(s) for s in out.read_text().splitlines() if s.strip()]
                per_input = {
                    r["input_index"]: r["seconds"]
                    for r in lines
                    if r.get("record") != "header" and "seconds" in r
                }
                row["inputs_per_hour"] = n / result["seconds"] * 3600
                if per_input:
                    row["median_s_per_input_in_worker"] = statistics.median(per_input.values())
            else:
                why = "overran" if result["timed_out"] else f"exit {result['returncode']}"
                row["error"] = why + ": " + result["output"].strip()[-500:]
            rows.append(row)
        if not ray_ok:
            record["notes"].append(
                "Ray row skipped: "
                + (
                    "not run in the dry run (Ray start-up alone exceeds its budget)"
                    if self.dry
                    else "Ray is not installed (its wheel, about 70 MB, is larger than what "
                    "travels to an offline GPU machine with the checkout)"
                )
            )

    def part_start(self, record: dict[str, Any]) -> float:
        return record.setdefault("_start", time.perf_counter())

    # ------------------------------------------------------------------ run and report
    def run(self) -> None:
        self.write()
        for name, fn in [
            ("tests", self.tests),
            ("model", self.model_part),
            ("overhead", self.overhead),
            ("center", self.center),
            ("batch_memory", self.batch_memory),
            ("certificates", self.certificates),
            ("reproducibility", self.reproducibility),
            ("grid_noise", self.grid_noise),
            ("distances", self.distances),
            ("compile", self.compiled_model),
            ("runner", self.runner),
        ]:
            self.part(name, lambda rec, f=fn: (self.part_start(rec), f(rec)))
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.data["total_seconds"] = time.perf_counter() - self.start
        if self.dry:
            self.data["dry_run_note"] = (
                f"toy sizes on the CPU with delta {self.sizes['delta']} (so that a few hundred "
                "samples certify): the figures only show that every part runs"
            )
        self.write()

    def write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        clean = json.loads(json.dumps(self.data, default=str), parse_constant=lambda c: None)
        for part in clean["parts"].values():
            part.pop("_start", None)
        (self.out_dir / "device_check.json").write_text(json.dumps(clean, indent=2) + "\n")
        (self.out_dir / "device_check.md").write_text(render(clean))


@contextlib.contextmanager
def tf32_everywhere(on: bool) -> Iterator[None]:
    """TF32 for cuBLAS matrix products (the center search's product forms among them) and
    cuDNN convolutions on or off for the block; the settings before after it."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
        torch.set_float32_matmul_precision("high" if on else "highest")
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
        torch.set_float32_matmul_precision(precision)


def compare(what: str, a: Any, b: Any) -> dict[str, Any]:
    """Whether two certificates agree bit for bit (eps_out and center), and by how much not."""
    ea = np.atleast_1d(np.asarray(a.eps_out, dtype=float))
    eb = np.atleast_1d(np.asarray(b.eps_out, dtype=float))
    row: dict[str, Any] = {"compared": what, "abstained": [a.abstained, b.abstained]}
    finite = np.isfinite(ea) & np.isfinite(eb)
    row["same_eps_out_bits"] = bool(np.array_equal(ea, eb))
    diff = np.abs(ea[finite] - eb[finite]) / np.maximum(np.abs(ea[finite]), 1e-300)
    row["max_rel_eps_out_diff"] = float(diff.max()) if diff.size else None
    if isinstance(a.center, torch.Tensor) and isinstance(b.center, torch.Tensor):
        row["same_center_bits"] = bool(torch.equal(a.center, b.center))
    return row


def tests_problem(returncode: int, output: str, passed: int, others: int) -> str | None:
    """Why a pytest run that reported no failing test still failed, if it did (``others``:
    the tests reported failed or skipped)."""
    ran = passed + others
    if "No module named pytest" in output:
        return "pytest is not installed: no CUDA test ran"
    if re.search(r"ERROR collecting|errors? during collection|Interrupted: ", output):
        return "pytest could not collect the tests (an import failed): counted as a failure"
    if returncode == 5 or ran == 0:
        return "no CUDA test was selected or run: counted as a failure"
    if returncode not in (0, 1):
        return f"pytest stopped with exit status {returncode}: counted as a failure"
    return None


def prepared_folder() -> str:
    """Where the prepared folder of wheels and data is, or that there is none."""
    folder = os.environ.get("DEVICE_CHECK_BUNDLE")
    if folder and Path(folder, "MANIFEST.json").is_file():
        made = json.loads(Path(folder, "MANIFEST.json").read_text()).get("made", "?")
        return f"{folder} (made {made})"
    return "none: data and weights only from this machine's cache, random weights where absent"


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def random_autoencoder() -> nn.Module:
    """A seeded random-weights MNIST autoencoder (the runner's fallback model)."""
    torch.manual_seed(0)
    return ConvAutoencoder()


# ---------------------------------------------------------------------- markdown
def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict) and "median" in value:
        return f"{value['median']:.{digits}f} ({value['min']:.{digits}f}-{value['max']:.{digits}f})"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return lines


def render(data: dict[str, Any]) -> str:
    env = data["environment"]
    parts = data["parts"]
    lines = [
        "# Device check",
        "",
        f"- mode: {data['mode']}",
        f"- date: {data['date']}",
        f"- GPU: {env.get('gpu') or 'none (CPU)'}"
        + (f", {env['gpu_memory_gib']} GiB" if env.get("gpu_memory_gib") else ""),
        f"- torch {env['torch']}, CUDA {env['cuda'] or '–'}, cuDNN {env['cudnn'] or '–'}, "
        f"Python {env['python']}, {env['cpus']} CPUs",
        f"- model: {data.get('model_source', '–')}; inputs: {data.get('inputs', '–')}",
        f"- prepared folder: {env.get('prepared_folder', '–')}",
        f"- total: {fmt(data.get('total_seconds'), 1)} s",
        *([f"- {data['dry_run_note']}"] if data.get("dry_run_note") else []),
        "",
        "## Time budget",
        "",
    ]
    lines += table(
        ["part", "budget s", "used s", "status", "notes"],
        [
            [
                name,
                p.get("budget_s"),
                fmt(p.get("seconds"), 1),
                p.get("status", "running"),
                "; ".join(p.get("notes", [])) or "–",
            ]
            for name, p in parts.items()
        ],
    )
    for name, p in parts.items():
        if p.get("error"):
            lines += ["", f"Part {name} failed: `{p['error']}`"]

    def section(title: str, key: str) -> dict[str, Any] | None:
        lines.extend(["", f"## {title}", ""])
        part = parts.get(key)
        if part is None or part.get("status") == "skipped":
            lines.append("Not run (the time budget was spent).")
            return None
        return part

    if (p := section("CUDA tests", "tests")) is not None:
        lines.append(f"Selection: `pytest {p.get('selection', '')} {' '.join(p.get('files', []))}`")
        lines.append("")
        lines.append(
            f"Passed {p.get('passed', 0)}, failed {p.get('failed', 0)}, "
            f"skipped {p.get('skipped', 0)}; pytest: {p.get('summary') or '–'}"
        )
        lines += ["", "```", *p.get("lines", []), "```"]

    if (p := section("Model", "model")) is not None:
        lines.append(f"{p.get('source', '–')}: `{p.get('checkpoint', '–')}`")
        if p.get("train_seconds") is not None:
            lines.append(f"(training took {p['train_seconds']:.1f} s)")

    if (p := section("Overhead: certify / bare forward passes", "overhead")) is not None:
        lines.append(
            f"eps_in {EPS_IN} in one certify call; median (range) over the repeats; the bare "
            "passes are as many as the certify call made."
        )
        lines.append("")
        lines += table(
            [
                "model",
                "samples (center/check/certify)",
                "batch",
                "bare s",
                "certify s",
                "ratio",
                "abstained",
            ],
            [
                [
                    r["model"],
                    "/".join(map(str, r["counts"])),
                    r["batch_size"],
                    r["bare_s"],
                    r["certify_s"],
                    r["ratio"],
                    r.get("abstained", "?"),
                ]
                for r in p.get("rows", [])
            ],
        )

    if (p := section("Center search", "center")) is not None:
        lines.append(f"`find_center` on n_center = {p.get('n_center')} outputs, l2.")
        lines.append("")
        lines += table(
            ["outputs", "center search", "seconds"],
            [[r["outputs"], r["search"], r["seconds"]] for r in p.get("rows", [])],
        )

    if (p := section("Automatic batch size and peak device memory", "batch_memory")) is not None:
        lines.append(
            "`find_batch_size` (what `CenterSmoothing(batch_size=None)` runs) and "
            "`torch.cuda.max_memory_allocated` during the search and during one certify "
            "(the second call; the first, timed apart, runs the search inside)."
        )
        lines.append("")
        lines += table(
            [
                "model",
                "samples",
                "found batch",
                "search s",
                "certify batch",
                "first certify s",
                "certify s",
                "peak GiB (search)",
                "peak GiB (certify)",
            ],
            [
                [
                    r["model"],
                    "/".join(map(str, r["counts"])),
                    r["find_batch_size"],
                    r["search_s"],
                    r["batch_size_used_by_certify"],
                    r["first_certify_s"],
                    r["certify_s"],
                    r["peak_search_gib"],
                    r["peak_certify_gib"],
                ]
                for r in p.get("rows", [])
            ],
        )

    if p := section("Seconds per certificate (MNIST autoencoder, sigma 0.25)", "certificates"):
        lines.append(
            f"`certify_batch` of {p.get('inputs')} inputs per call (their samples share forward "
            f"passes); each certificate covers eps_in {EPS_IN} at once. Paper (its code, "
            f"{PAPER['gpu']}, 10^4 / 10^4 / 10^6, Hoeffding, one run per eps_in): "
            f"{PAPER['seconds_per_certificate_per_eps_in']} s per certificate per eps_in."
        )
        lines.append("")
        header = ["samples", "precision", "s / certificate", "s / certificate / eps_in"]
        header += [f"median eps_out @ {e:g}" for e in EPS_IN] + ["abstained"]
        body = [
            [
                r["counts"],
                r["precision"],
                r["seconds_per_certificate"],
                r["seconds_per_certificate_per_eps_in"],
                *[r["median_eps_out"].get(f"{e:g}") for e in EPS_IN],
                r["abstained"],
            ]
            for r in p.get("rows", [])
        ]
        body.append(
            [
                "paper (its code, H100) 10^4 / 10^4 / 10^6",
                "fp32",
                "–",
                PAPER["seconds_per_certificate_per_eps_in"],
                *[PAPER["median_eps_out"][f"{e:g}"] for e in EPS_IN],
                "–",
            ]
        )
        lines += table(header, body)
        lines += [
            "",
            "eps_out blank: not certifiable at those sample counts (eps_in above max_eps_in). "
            "Our default rows use the binomial bounds, central candidates and the "
            "nearest-candidate bound; the paper preset rows use the paper's constants.",
        ]

    if (p := section("Reproducibility of a seeded certificate", "reproducibility")) is not None:
        lines.append(
            "The MNIST autoencoder's certificate (seed 0) against itself: again, with another "
            "batch size, with TF32 off and on everywhere. Settings read inside the model during "
            "a seeded call: "
            f"`{p.get('settings_in_a_seeded_call', {})}`; TF32 by default: matrix products "
            f"{env.get('tf32_matmul')}, convolutions {env.get('tf32_cudnn')}; "
            f"CUBLAS_WORKSPACE_CONFIG {env.get('cublas_workspace_config')}."
        )
        lines.append("")
        lines += table(
            ["compared", "same eps_out bits", "same center bits", "max rel. eps_out diff"],
            [
                [
                    r["compared"],
                    r["same_eps_out_bits"],
                    r.get("same_center_bits", "–"),
                    r["max_rel_eps_out_diff"],
                ]
                for r in p.get("rows", [])
            ],
        )

    if (p := section("Exact grid noise (input_grid), 3x64x64 inputs", "grid_noise")) is not None:
        lines += table(
            ["draw", "samples", "seconds", "samples / s"],
            [
                [r["draw"], r["samples"], r["seconds"], fmt(r["samples_per_s"], 0)]
                for r in p.get("rows", [])
            ],
        )

    if p := section("Distances on the device: row by row against batched", "distances"):
        lines += table(
            ["what", "before s", "after s"],
            [[r["what"], r["before_s"], r["after_s"]] for r in p.get("rows", [])],
        )

    if (p := section("Compiled model (compile=True, dynamic shapes)", "compile")) is not None:
        lines.append(f"Backend: {p.get('backend', '–')}; the MNIST autoencoder, one input.")
        lines.append("")
        lines += table(
            ["model", "first certify s", "later certify s", "graphs compiled"],
            [[r["model"], r["first_s"], r["later_s"], r["graphs"]] for r in p.get("rows", [])],
        )

    if (p := section("Runner throughput (one worker per GPU)", "runner")) is not None:
        lines += table(
            [
                "setup",
                "inputs",
                "samples",
                "wall s (incl. start-up)",
                "inputs / hour",
                "median s / input (in worker)",
                "error",
            ],
            [
                [
                    r["setup"],
                    r["inputs"],
                    "/".join(map(str, r["counts"])),
                    r["wall_s"],
                    fmt(r.get("inputs_per_hour"), 0),
                    r.get("median_s_per_input_in_worker"),
                    r.get("error", "–"),
                ]
                for r in p.get("rows", [])
            ],
        )

    lines += ["", "## Commands", "", "```"]
    lines += data.get("invocation", []) + data["commands"]
    lines += ["```", "", "Raw figures: device_check.json (same directory).", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--budget", type=float, help="total seconds for all parts")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        print(
            "device_check: no CUDA device is visible to torch "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); "
            "run it on a machine with a CUDA GPU and a CUDA build of torch, or use --dry-run",
            file=sys.stderr,
        )
        return 2
    if args.dry_run:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    else:  # as a smoother does when it is the first to use CUDA (centersmooth.determinism)
        fix_cublas_workspace(torch.device("cuda"))
    check = Check(args.out_dir, args.dry_run, args.budget)
    check.data["invocation"] = [
        line
        for line in (
            os.environ.get("DEVICE_CHECK_INVOCATION"),
            shlex.join([sys.executable, *sys.argv]),
        )
        if line
    ]
    check.run()
    print(f"device_check: report written to {args.out_dir / 'device_check.md'}")
    failed = [n for n, p in check.data["parts"].items() if p.get("status") == "failed"]
    tests = check.data["parts"].get("tests", {})
    if failed or tests.get("failed"):
        print(f"device_check: failed parts {failed}, failed tests {tests.get('failed', 0)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
