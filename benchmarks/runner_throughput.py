"""Throughput of ``certify_dataset``: inputs per hour with 1 and more workers, scaling efficiency.

A small denoising MLP autoencoder on 8x8 digits (64 -> 128 -> 32 -> 128 -> 64, untrained but
seeded: throughput does not depend on the weights) certified under l2 and angular distances.
Each configuration runs ``--inputs`` inputs into a fresh results file; the time includes starting
the workers (spawned processes or Ray actors, each importing torch and building the model), which
is what a user pays (with Ray, one local instance is started first and reused, as a running
cluster would be: its start-up time is printed apart).
Scaling efficiency = throughput(N workers) / (N * throughput(1 worker)).

    nice .venv/bin/python benchmarks/runner_throughput.py --inputs 16 --workers 1 2
    nice .venv/bin/python benchmarks/runner_throughput.py --backend ray --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from centersmooth.runs.runner import certify_dataset


class DigitsAutoencoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Linear(64, 128),
            nn.ReLU(),
            nn.Linear(128, 32),
            nn.ReLU(),
            nn.Linear(32, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def make_model() -> nn.Module:
    return DigitsAutoencoder()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backend", choices=["local", "ray"], default="local")
    parser.add_argument("--n-center", type=int, default=2_000)
    parser.add_argument("--n-check", type=int, default=2_000)
    parser.add_argument("--n-certify", type=int, default=20_000)
    args = parser.parse_args()

    # one core per worker: the in-process worker gets 1 torch thread, like each spawned process
    # (2 workers on 2 cores) and each Ray actor (num_cpus=1), so efficiency measures core scaling
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    inputs = rng.uniform(size=(args.inputs, 64)).astype(np.float32)
    smoothing = dict(
        sigma=0.25, n_center=args.n_center, n_check=args.n_check, n_certify=args.n_certify
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or '?'}; "
        f"torch {torch.__version__}; load average before: {os.getloadavg()[0]:.1f}"
    )
    print(
        f"backend {args.backend}, {args.inputs} inputs, samples {args.n_center}/{args.n_check}/"
        f"{args.n_certify}, metrics l2+angular, 4 eps_in"
    )
    if args.backend == "ray":
        import ray

        start = time.perf_counter()
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        print(f"ray.init (once, reused by both runs): {time.perf_counter() - start:.1f} s")
    print()
    print(
        "| backend | workers | wall s | inputs / hour | median s / input (in worker) | efficiency |"
    )
    print("|---|---|---|---|---|---|")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            out = Path(tmp) / f"w{workers}.jsonl"
            start = time.perf_counter()
            rows = certify_dataset(
                make_model,
                inputs,
                [0.125, 0.25, 0.375, 0.5],
                ["l2", "angular"],
                smoothing,
                out,
                {"task": "benchmark"},
                backend=args.backend,
                workers=workers,
                progress=False,
                examples=0,
            )
            wall = time.perf_counter() - start
            rate = args.inputs / wall * 3600
            per_input = float(np.median([r["seconds"] for r in rows]))
            base = rate if base is None and workers == 1 else base
            eff = f"{rate / (workers * base):.0%}" if base else "–"
            cells = [args.backend, workers, f"{wall:.1f}", f"{rate:.0f}", f"{per_input:.2f}", eff]
            print("| " + " | ".join(str(c) for c in cells) + " |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    if args.backend == "ray":
        ray.shutdown()


if __name__ == "__main__":
    main()
