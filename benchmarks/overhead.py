"""Overhead of certification over the base model's own forward passes, and center search time.

Usage: python benchmarks/overhead.py [--repeats 3] [--device cpu] [--ae-counts C K N]
       [--gan-counts C K N] [--checkpoint autoencoder.pt] [--only forward|overhead|center]

0. Forward: bare forward passes of each model as built against the inference form the tasks load
   it in (narrow transposed convolutions as sub-pixel convolutions, channels-last weights).

1. Overhead: wall time of ``certify`` divided by the time of as many bare forward passes as that
   ``certify`` call made (counted with a forward hook: a call that abstains after the check skips
   its certification samples), same batch size, no distances, measured in one process and
   interleaved, for the MNIST conv autoencoder (1x28x28 outputs, random weights) and the DCGAN
   face generator (3x64x64 outputs, the weights shipped with ``gan-face-generate``; random
   weights where that package is missing); with ``--checkpoint`` also the trained autoencoder on
   a test digit (random weights give a diffuse output cloud, the slow case for the pruned center
   search; a trained model's cloud is what certification meets). The table counts the calls that
   abstained.
   Default counts: the library's 10^4 / 10^4 / 10^5 for the autoencoder, 2,000 / 2,000 / 10,000
   for the generator (its forward passes are slow on a CPU).
2. Center search: ``find_center`` on ``n_center = 10^4`` outputs: all pairs with the central
   points (the default), all pairs over the samples only (the paper's), 30 candidates. Uniform
   noise is the worst case for the pruned all-pairs search (no direction dominates); with
   ``--checkpoint`` the rows also use a trained autoencoder's outputs around a test digit.
Prints a markdown table with the median and the range over the repeats.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

from centersmooth import CenterSmoothing
from centersmooth.center import find_center
from centersmooth.data.datasets import load_dataset
from centersmooth.data.weights import MissingWeightsError
from centersmooth.metrics import get_metric
from centersmooth.tasks import get_task, load_model
from centersmooth.tasks.gan_faces import DCGANGenerator, load_generator
from centersmooth.tasks.inference import inference_form
from centersmooth.tasks.models import ConvAutoencoder

EPS_IN = (0.125, 0.25)
T = TypeVar("T")


def timed_call(fn: Callable[[], T], device: torch.device) -> tuple[float, T]:
    """Seconds ``fn`` takes (the device synchronised on both ends) and what it returned."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, value


def timed(fn: Callable[[], object], device: torch.device) -> float:
    return timed_call(fn, device)[0]


def bare_forward(
    model: nn.Module, x: torch.Tensor, n: int, batch_size: int, sigma: float = 0.25
) -> None:
    """``n`` forward passes on noisy copies of ``x`` at the noise level certify uses: a model's
    speed can depend on its inputs' scale (denormal numbers in saturated layers), so the bare
    passes must see inputs like the certified ones."""
    batch = x.unsqueeze(0) + sigma * torch.randn(batch_size, *x.shape, device=x.device)
    with torch.no_grad():
        done = 0
        while done < n:
            size = min(batch_size, n - done)
            model(batch[:size])
            done += size


def certify_passes(
    smoother: CenterSmoothing, model: nn.Module, x: torch.Tensor, eps_in: Sequence[float] = EPS_IN
) -> tuple[int, bool]:
    """The rows ``model`` evaluates in one ``certify`` call, and whether that call abstained.

    A call that abstains after the check skips its certification samples, so the bare passes it
    is held against must be counted, not derived from the sample counts.
    """
    rows = [0]

    def count(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        rows[0] += int(args[0].shape[0])

    handle = model.register_forward_pre_hook(count)
    try:
        certificate = smoother.certify(x, list(eps_in))
    finally:
        handle.remove()
    return rows[0], bool(certificate.abstained)


def interleaved_overhead(
    smoother: CenterSmoothing,
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int,
    repeats: int,
    device: torch.device,
    eps_in: Sequence[float] = EPS_IN,
) -> tuple[list[float], list[float], int]:
    """Per repeat, the seconds of as many bare forward passes as one ``certify`` call made and
    the seconds of that call, interleaved; and how many of the calls abstained."""
    bare, full, abstained = [], [], 0
    for _ in range(repeats):
        seconds, (passes, abstain) = timed_call(
            lambda: certify_passes(smoother, model, x, eps_in), device
        )
        full.append(seconds)
        abstained += abstain
        bare.append(timed(lambda t=passes: bare_forward(model, x, t, batch_size), device))
    return bare, full, abstained


def generator_for_timing() -> tuple[str, nn.Module]:
    """The shipped face generator (what the GAN task certifies), or random weights without the
    ``gan-face-generate`` weights: the time depends on the shapes, abstentions on the weights."""
    try:
        return "DCGAN generator 3x64x64, shipped weights", load_generator()
    except MissingWeightsError:
        torch.manual_seed(0)
        return "DCGAN generator 3x64x64, random weights", DCGANGenerator()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def overhead_rows(
    device: torch.device,
    repeats: int,
    ae_counts: Sequence[int],
    gan_counts: Sequence[int],
    checkpoint: str | None,
) -> list[str]:
    cases = [
        (
            "MNIST conv autoencoder, random weights",
            ConvAutoencoder(),
            torch.rand(1, 28, 28),
            ae_counts,
        ),
        (*generator_for_timing(), torch.randn(100), gan_counts),
    ]
    if checkpoint is not None:  # trained: the output cloud the center search really meets
        digit = torch.as_tensor(load_dataset("mnist").x_test[0])
        cases.insert(
            0, ("MNIST conv autoencoder, trained", load_model(checkpoint), digit, ae_counts)
        )
    rows = []
    for name, model, x, (n_center, n_check, n_certify) in cases:
        # the fast inference form the tasks load their models in (sub-pixel, channels-last)
        model = inference_form(model.eval(), device)
        x = x.to(device)
        batch_size = 500
        # warm-up: first calls (kernel selection, lazy imports) are not what is measured
        bare_forward(model, x, 2 * batch_size, batch_size)
        warm = CenterSmoothing(model, sigma=0.25, n_center=1000, n_check=1000, n_certify=1000)
        warm.certify(x, 0.1)
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
        bare, full, abstained = interleaved_overhead(
            smoother, model, x, batch_size, repeats, device
        )
        ratios = [f / b for f, b in zip(full, bare, strict=True)]
        rows.append(
            f"| {name} | {n_center}/{n_check}/{n_certify} | {batch_size} | {spread(bare)} | "
            f"{spread(full)} | {spread(ratios)} | {abstained} of {repeats} |"
        )
    return rows


def forward_rows(device: torch.device, repeats: int, checkpoint: str | None) -> list[str]:
    """Bare forward passes of each model as built (channels-first, transposed convolutions) and
    in the inference form the tasks load (``centersmooth.tasks.inference``), interleaved."""
    cases: list[tuple[str, nn.Module, torch.Tensor, int]] = [
        (
            "MNIST conv autoencoder, random weights",
            ConvAutoencoder(),
            torch.rand(1, 28, 28),
            10_000,
        ),
        ("DCGAN generator 3x64x64, random weights", DCGANGenerator(), torch.randn(100), 2_000),
    ]
    if checkpoint is not None:  # the stored weights, in the form they were trained in
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
        trained = get_task("autoencoder").build(**payload["meta"]["arch"])
        trained.load_state_dict(payload["state_dict"])
        digit = torch.as_tensor(load_dataset("mnist").x_test[0])
        cases.insert(0, ("MNIST conv autoencoder, trained", trained, digit, 10_000))
    rows = []
    for name, model, x, n in cases:
        plain = model.to(device).eval()
        fast = inference_form(copy.deepcopy(plain), device)
        x = x.to(device)
        for m in (plain, fast):  # warm-up
            bare_forward(m, x, 1_000, 500)
        before, after = [], []
        for _ in range(repeats):
            before.append(timed(lambda m=plain, xx=x, k=n: bare_forward(m, xx, k, 500), device))
            after.append(timed(lambda m=fast, xx=x, k=n: bare_forward(m, xx, k, 500), device))
        speedups = [b / a for b, a in zip(before, after, strict=True)]
        rows.append(f"| {name} | {n} | {spread(before)} | {spread(after)} | {spread(speedups)} |")
    return rows


def center_rows(device: torch.device, repeats: int, checkpoint: str | None) -> list[str]:
    clouds = [
        (f"uniform noise {'x'.join(map(str, shape))}", torch.rand(10_000, *shape, device=device))
        for shape in [(1, 28, 28), (3, 64, 64)]
    ]
    if checkpoint is not None:
        model = load_model(checkpoint).to(device).eval()
        x = torch.as_tensor(load_dataset("mnist").x_test[0], device=device)
        with torch.no_grad():
            noisy = x.unsqueeze(0) + 0.25 * torch.randn(10_000, *x.shape, device=device)
            outputs = torch.cat([model(b) for b in noisy.split(1_000)])
        clouds.append(("MNIST autoencoder outputs 1x28x28", outputs))
    metric = get_metric("l2")
    rows = []
    for name, samples in clouds:
        central = metric.central_candidates(samples)
        for mode, k, extra in [
            ("all pairs + central points", None, central),
            ("all pairs, samples only", None, None),
            ("30 candidates + central points", 30, central),
        ]:
            times = [
                timed(lambda s=samples, kk=k, e=extra: find_center(s, metric, kk, e), device)
                for _ in range(repeats)
            ]
            rows.append(f"| {name} | {mode} | {spread(times)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ae-counts", type=int, nargs=3, default=(10_000, 10_000, 100_000))
    parser.add_argument("--gan-counts", type=int, nargs=3, default=(2_000, 2_000, 10_000))
    parser.add_argument("--checkpoint", help="a trained autoencoder for extra rows")
    parser.add_argument(
        "--only", choices=("overhead", "center", "forward"), help="one of the three tables"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    if args.only in (None, "forward"):
        print("| model | forward passes | as built, s | inference form, s | speed-up |")
        print("|---|---|---|---|---|")
        print("\n".join(forward_rows(device, args.repeats, args.checkpoint)) + "\n")
    if args.only in (None, "overhead"):
        print(
            "| model | samples (center/check/certify) | batch | bare s | certify s | ratio "
            "| abstained |"
        )
        print("|---|---|---|---|---|---|---|")
        rows = overhead_rows(device, args.repeats, args.ae_counts, args.gan_counts, args.checkpoint)
        print("\n".join(rows))
    if args.only in (None, "center"):
        print("\n| outputs | center search | seconds for n_center = 10^4 |")
        print("|---|---|---|")
        print("\n".join(center_rows(device, args.repeats, args.checkpoint)))


if __name__ == "__main__":
    main()
