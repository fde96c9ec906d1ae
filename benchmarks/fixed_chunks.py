"""Distances on chunks of a fixed size against distances on each forward batch, side by side.

Usage: python benchmarks/fixed_chunks.py [--repeats 5] [--threads 2]

The check and certification stages measure their distances on chunks of a fixed number of outputs
at fixed sample positions (``sampling.in_fixed_chunks``: 256 outputs of up to 16,384 numbers,
fewer for larger outputs), so that no distance depends on the batch size. Before, each forward
batch's outputs were measured as they came. This times ``certify`` both ways in one process,
interleaved (the old way by handing the stream through unchanged), on models whose distances are
a large share of the work: a linear map with 784 outputs, the MNIST conv autoencoder (random
weights) and a cheap model with 3x128x128 outputs (85 outputs per chunk). Prints a markdown table:
median and range of the seconds per ``certify`` call and of the ratio fixed / per batch.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import spread, timed  # noqa: E402

from centersmooth import CenterSmoothing, smoothing  # noqa: E402
from centersmooth.tasks.models import ConvAutoencoder  # noqa: E402

COUNTS = {"n_center": 10_000, "n_check": 10_000, "n_certify": 100_000}


class Gathered(nn.Module):
    """Outputs of ``shape`` from a gather and a product of the input: as cheap as a model gets,
    so the distances are most of the work."""

    def __init__(self, dim_in: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        size = int(torch.tensor(shape).prod())
        self.register_buffer("index", torch.arange(size) % dim_in)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, size))
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1)[:, self.index] * self.scale).reshape(len(x), *self.shape)


def cases() -> list[tuple[str, nn.Module, torch.Tensor, dict[str, int]]]:
    torch.manual_seed(0)
    linear = nn.Linear(784, 784)
    x28 = torch.rand(1, 28, 28)
    return [
        ("linear 784 -> 784, l2", nn.Sequential(nn.Flatten(), linear), x28, COUNTS),
        ("MNIST conv autoencoder (random weights), l2", ConvAutoencoder(), x28, COUNTS),
        (
            "gather, 3x128x128 outputs, l2",
            Gathered(64, (3, 128, 128)),
            torch.rand(64),
            {"n_center": 2_000, "n_check": 2_000, "n_certify": 10_000},
        ),
    ]


def per_batch(stream):  # type: ignore[no-untyped-def]
    """The old way: each forward batch's outputs measured as they come."""
    return stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fixed = smoothing.in_fixed_chunks
    cpu = torch.device("cpu")
    print("| model | samples | per batch s | fixed chunks s | fixed / per batch |")
    print("|---|---|---|---|---|")
    for name, model, x, counts in cases():
        smoother = CenterSmoothing(model.eval(), sigma=0.25, seed=0, batch_size=1_000, **counts)
        smoother.certify(x, 0.25)  # warm up
        times: dict[str, list[float]] = {"batch": [], "fixed": []}
        ratios = []
        for _ in range(args.repeats):
            for key, chunker in (("batch", per_batch), ("fixed", fixed)):
                smoothing.in_fixed_chunks = chunker
                times[key].append(timed(functools.partial(smoother.certify, x, 0.25), cpu))
            ratios.append(times["fixed"][-1] / times["batch"][-1])
        smoothing.in_fixed_chunks = fixed
        samples = " / ".join(f"{v:,}" for v in counts.values())
        print(
            f"| {name} | {samples} | {spread(times['batch'])} | {spread(times['fixed'])} | "
            f"**{statistics.median(ratios):.3f}** ({min(ratios):.3f}-{max(ratios):.3f}) |"
        )


if __name__ == "__main__":
    main()
