"""Every GPU figure of the library in one timed run: writes OUT_DIR/device_check.md and .json.

Usage: python benchmarks/device_check.py OUT_DIR [--dry-run] [--budget SECONDS]
(normally through ``bash benchmarks/device_check.sh OUT_DIR``, which prepares the environment).

Parts, each with its own time budget (seconds, on one CUDA GPU; the run stops a part that
overruns, keeps the rows it finished and says so in the report):

1. CUDA tests: the tests that need a CUDA device (``pytest -m cuda`` when the marker is
   registered, else the tests whose names mention cuda), with their pass/fail lines.
2. Model: the trained MNIST autoencoder (sigma_train 0.25) from the cache, else trained now with
   ``centersmooth train autoencoder``; random weights if that fails or overruns (said so).
3. Overhead: ``certify`` time / time of the same number of bare forward passes, for the
   autoencoder and the DCGAN generator (3x64x64 outputs).
4. Center search at n_center = 10^4: all pairs + central points, all pairs over the samples
   only, 30 candidates; 1x28x28 and 3x64x64 outputs.
5. Automatic batch size (``sampling.find_batch_size``, what ``batch_size=None`` uses on CUDA) and
   peak device memory (``torch.cuda.max_memory_allocated``).
6. Seconds per certificate with ``certify_batch`` (several inputs per forward pass), fp32 and
   bf16, at 10^4 / 10^4 / 10^5 and 10^4 / 10^4 / 10^4, and the paper's preset, with the
   median eps_out at eps_in 0.25 / 0.375 / 0.5 beside the paper's figures.
7. Runner throughput: ``centersmooth certify`` with one worker on the GPU (and a Ray actor with
   ``--gpus-per-worker 1`` when Ray is installed and time is left).

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
import shlex
import signal
import statistics
import subprocess
import sys
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
from centersmooth.center import find_center  # noqa: E402
from centersmooth.metrics import get_metric  # noqa: E402
from centersmooth.sampling import DEFAULT_BATCH_SIZE, BaseFunction, find_batch_size  # noqa: E402
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
        "total_budget": 450,
        "budgets": {
            "tests": 45,
            "model": 60,
            "overhead": 60,
            "center": 30,
            "batch_memory": 30,
            "certificates": 120,
            "runner": 90,
        },
        "repeats": 2,
        "ae_counts": (10_000, 10_000, 100_000),
        "gan_counts": (10_000, 10_000, 100_000),
        "n_center_search": 10_000,
        "batch_search": {"start": 256, "limit": 2**16},
        "cert_inputs": 10,
        "cert_configs": [
            ("10^4 / 10^4 / 10^5", (10_000, 10_000, 100_000), "default"),
            ("10^4 / 10^4 / 10^4", (10_000, 10_000, 10_000), "default"),
            ("paper preset 10^4 / 10^4 / 10^6", (10_000, 10_000, 1_000_000), "paper"),
        ],
        "runner_inputs": 20,
        "runner_counts": (10_000, 10_000, 100_000),
        "train_args": [],
        "delta": 0.05,  # the library's default
    },
    "dry": {
        "total_budget": 300,
        "budgets": {
            "tests": 60,
            "model": 60,
            "overhead": 60,
            "center": 60,
            "batch_memory": 60,
            "certificates": 60,
            "runner": 60,
        },
        "repeats": 1,
        "ae_counts": (300, 300, 300),
        "gan_counts": (60, 30, 30),
        "n_center_search": 200,
        "batch_search": {"start": 32, "limit": 128},
        "cert_inputs": 2,
        "cert_configs": [
            ("300 / 300 / 1000 (toy)", (300, 300, 1_000), "default"),
            ("300 / 300 / 300 (toy)", (300, 300, 300), "default"),
            ("paper preset 300 / 300 / 2000 (toy)", (300, 300, 2_000), "paper"),
        ],
        "runner_inputs": 2,
        "runner_counts": (300, 300, 1_000),
        "train_args": ["--n-train", "64", "--epochs", "1", "--threads", "1"],
        # a looser delta lets toy sample counts certify (n_center >= 908 at the default 0.05)
        "delta": 0.2,
    },
}


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
        lines = [
            line.strip()
            for line in result["output"].splitlines()
            if any(w in line for w in (" PASSED", " FAILED", " SKIPPED", " ERROR", " XFAIL"))
            and "::" in line
        ]
        # -v prints each test once with its outcome; -rA repeats them in the summary
        outcome_lines = [line for line in lines if line.startswith("tests/")]
        summary = [
            ln for ln in result["output"].splitlines() if ln.startswith("=") and " in " in ln
        ]
        record.update(
            selection=" ".join(selection),
            files=files,
            returncode=result["returncode"],
            timed_out=result["timed_out"],
            lines=outcome_lines or lines,
            summary=summary[-1].strip("= ") if summary else None,
            passed=sum(" PASSED" in ln for ln in outcome_lines),
            failed=sum(" FAILED" in ln or " ERROR" in ln for ln in outcome_lines),
            skipped=sum(" SKIPPED" in ln for ln in outcome_lines),
        )
        if result["returncode"] not in (0, 5):  # 5: nothing selected
            record["output_tail"] = result["output"][-6000:]
            record["notes"].append("some CUDA tests failed: their output is in the JSON")
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
            path = self.out_dir / "models" / "autoencoder-mnist-sigma0.25-toy.pt"
        else:
            path = default_checkpoint("autoencoder", "mnist", SIGMA)
        record["checkpoint"] = str(path)
        if path.is_file() and not self.dry:
            record["source"] = "cached trained checkpoint"
        else:
            cmd = [str(Path(sys.executable).parent / "centersmooth"), "train", "autoencoder"]
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

    def batch_size_for(self, model: nn.Module, x: torch.Tensor) -> int:
        search = self.sizes["batch_search"]
        base = BaseFunction(model, self.device)
        return find_batch_size(base, x, SIGMA, start=search["start"], limit=search["limit"])

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
            # what batch_size=None picks: the search on CUDA, 1,000 on the CPU
            cuda = self.device.type == "cuda"
            batch = self.batch_size_for(model, x) if cuda else DEFAULT_BATCH_SIZE
            total = n_center + n_check + n_certify + 1
            bare_forward(model, x, min(2 * batch, total), batch)  # warm-up
            smoother = CenterSmoothing(
                model,
                sigma=SIGMA,
                n_center=n_center,
                n_check=n_check,
                n_certify=n_certify,
                batch_size=batch,
                device=self.device,
                seed=0,
                delta=self.sizes["delta"],
            )
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
        search = self.sizes["batch_search"]
        record["search"] = dict(search)
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
            found = self.batch_size_for(model, x)
            search_s = time.perf_counter() - start
            search_peak = torch.cuda.max_memory_allocated() if cuda else None
            # what CenterSmoothing(batch_size=None) picks: the search on CUDA, 1,000 elsewhere
            smoother = CenterSmoothing(
                model,
                sigma=SIGMA,
                n_center=n_center,
                n_check=n_check,
                n_certify=n_certify,
                batch_size=None if cuda else found,
                device=self.device,
                seed=0,
                delta=self.sizes["delta"],
            )
            # the first call runs the search inside (batch_size=None) and loads the kernels; the
            # second is timed, and its peak is what certification itself holds
            first_s = timed(lambda s=smoother, xx=x: s.certify(xx, EPS_IN), self.device)
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            certify_s = timed(lambda s=smoother, xx=x: s.certify(xx, EPS_IN), self.device)
            certify_peak = torch.cuda.max_memory_allocated() if cuda else None
            used = getattr(smoother, "_auto_batch_size", None) or smoother.batch_size
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
                "dry run: no device memory to read on the CPU (peaks are blank); the search ran "
                f"over batches {search['start']}..{search['limit']} only"
            )

    def certificates(self, record: dict[str, Any]) -> None:
        record["rows"] = rows = []
        n = self.sizes["cert_inputs"]
        xs = [x.to(self.device) for x in self.load_digits(n)]
        record["inputs"] = n
        model = self.autoencoder()
        batch = None if self.device.type == "cuda" else 1_000
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

    def runner(self, record: dict[str, Any]) -> None:
        record["rows"] = rows = []
        n = self.sizes["runner_inputs"]
        n_center, n_check, n_certify = self.sizes["runner_counts"]
        cs = str(Path(sys.executable).parent / "centersmooth")
        if self.checkpoint is not None and self.data.get("inputs", "").startswith("MNIST"):
            source = ["autoencoder", "--checkpoint", str(self.checkpoint), "--n-inputs", str(n)]
        else:  # no trained model or no MNIST: a seeded random autoencoder on saved inputs
            inputs = self.out_dir / "runner_inputs.npy"
            np.save(inputs, self.load_digits(n).numpy())
            model = f"{Path(__file__).resolve()}:random_autoencoder"
            source = ["--model", model, "--inputs", str(inputs)]
            record["notes"].append("the runner certified a random-weights autoencoder")
        base = [cs, "certify", *source, "--sigma", str(SIGMA), "--eps-in", *map(str, EPS_IN)]
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
            out = self.out_dir / "runner" / f"{label.split(',')[0]}-{len(rows)}.jsonl"
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
                    else "Ray is not installed"
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
            ("runner", self.runner),
        ]:
            self.part(name, lambda rec, f=fn: (self.part_start(rec), f(rec)))
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
            "`find_batch_size` (what `CenterSmoothing(batch_size=None)` runs on CUDA) and "
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
