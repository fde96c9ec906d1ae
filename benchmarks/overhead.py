"""Overhead of certification over the base model's own forward passes, and center search time.

Usage: python benchmarks/overhead.py [--repeats 3] [--device cpu]

1. Overhead: wall time of ``certify`` divided by the time of the same number of bare forward
   passes (random inputs, same batch size, no noise, no distances), measured in one process and
   interleaved, for the MNIST conv autoencoder (1x28x28 outputs) and the DCGAN generator (3x64x64
   outputs, random weights: only the shapes matter for time).
2. Center search: ``find_center`` on ``n_center = 10^4`` outputs, all pairs against 30 candidates.
Prints a markdown table with the median and the range over the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from centersmooth import CenterSmoothing
from centersmooth.center import find_center
from centersmooth.metrics import get_metric
from centersmooth.tasks.gan_faces import DCGANGenerator
from centersmooth.tasks.models import ConvAutoencoder


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bare_forward(model: nn.Module, x: torch.Tensor, n: int, batch_size: int) -> None:
    batch = x.unsqueeze(0) + torch.randn(batch_size, *x.shape, device=x.device)
    with torch.no_grad():
        done = 0
        while done < n:
            size = min(batch_size, n - done)
            model(batch[:size])
            done += size


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def overhead_rows(device: torch.device, repeats: int) -> list[str]:
    cases = [
        (
            "MNIST conv autoencoder",
            ConvAutoencoder(),
            torch.rand(1, 28, 28),
            (4_000, 4_000, 40_000),
        ),
        ("DCGAN generator 3x64x64", DCGANGenerator(), torch.randn(100), (1_000, 1_000, 2_000)),
    ]
    rows = []
    for name, model, x, (n_center, n_check, n_certify) in cases:
        model = model.to(device).eval()
        x = x.to(device)
        batch_size = 500
        smoother = CenterSmoothing(
            model,
            sigma=0.25,
            n_center=n_center,
            n_check=n_check,
            n_certify=n_certify,
            batch_size=batch_size,
            device=device,
            seed=0,
        )
        total = n_center + n_check + n_certify + 1
        bare, full = [], []
        for _ in range(repeats):
            bare.append(timed(lambda m=model, xx=x, t=total: bare_forward(m, xx, t, 500), device))
            full.append(timed(lambda s=smoother, xx=x: s.certify(xx, [0.125, 0.25]), device))
        ratios = [f / b for f, b in zip(full, bare, strict=True)]
        rows.append(
            f"| {name} | {n_center}/{n_check}/{n_certify} | {batch_size} | {spread(bare)} | "
            f"{spread(full)} | {spread(ratios)} |"
        )
    return rows


def center_rows(device: torch.device, repeats: int) -> list[str]:
    metric = get_metric("l2")
    rows = []
    for shape in [(1, 28, 28), (3, 64, 64)]:
        samples = torch.rand(10_000, *shape, device=device)
        for mode, k in [("all pairs", None), ("30 candidates", 30)]:
            times = [
                timed(lambda s=samples, kk=k: find_center(s, metric, kk), device)
                for _ in range(repeats)
            ]
            rows.append(f"| {'x'.join(map(str, shape))} | {mode} | {spread(times)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| model | samples (center/check/certify) | batch | bare forward s | certify s | ratio |")
    print("|---|---|---|---|---|---|")
    print("\n".join(overhead_rows(device, args.repeats)))
    print("\n| outputs | center search | seconds for n_center = 10^4 |")
    print("|---|---|---|")
    print("\n".join(center_rows(device, args.repeats)))


if __name__ == "__main__":
    main()
