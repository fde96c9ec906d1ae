"""Cost of checking a user's distance (``check_distance``) against one certify call.

Usage: python benchmarks/distance_check_overhead.py [--repeats 3] [--counts C K N]
       [--checkpoint autoencoder.pt] [--device cpu] [--user-certify]

The MNIST conv autoencoder (random weights, or a trained one with ``--checkpoint``) in the
inference form the tasks load it in, sigma 0.25, one input, the library's default counts
(n_center = n_check = 10^4, n_certify = 10^5). The check is run on the l2 distance given as a
plain callable (a ``FunctionMetric``, the distance the check meets in practice). Each repeat
times, one after the other in one process:

1. ``CenterSmoothing(...).certify(x, [0.125, 0.25])`` with the built-in ``"l2"``: the fastest
   certify of this setup (its center search is pruned through l2's Euclidean embedding), so
   the ratio below is an upper bound on the check's share. With ``--user-certify`` also the
   same call with the ``FunctionMetric`` (no pruning: all n^2 distances through the callable,
   minutes per call at the default counts);
2. ``check_distance`` with the ``FunctionMetric`` on 10^4 center samples of the same input
   (drawn once beforehand, not timed), with a sample and the central points of l2 as ``points``
   (four of them; certify passes the chosen center and the central points the same way), at
   its defaults (``n_triples = 2000``, ``seed = 0``).

Prints the times (median and range over the repeats) and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from centersmooth import CenterSmoothing
from centersmooth.data.datasets import load_dataset
from centersmooth.metrics import FunctionMetric, check_distance, get_metric
from centersmooth.tasks import load_model
from centersmooth.tasks.inference import inference_form
from centersmooth.tasks.models import ConvAutoencoder


def user_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The l2 distance as a user would write it."""
    return (a - b).flatten(1).norm(dim=1)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.4g} ({min(values):.4g}-{max(values):.4g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--counts", type=int, nargs=3, default=(10_000, 10_000, 100_000))
    parser.add_argument("--checkpoint", help="a trained autoencoder (default: random weights)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--user-certify", action="store_true", help="also time certify with the callable (slow)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.checkpoint:
        model, label = load_model(args.checkpoint), "trained"
        x = torch.as_tensor(load_dataset("mnist").x_test[0])
    else:
        model, label = ConvAutoencoder(), "random weights"
        x = torch.rand(1, 28, 28)
    model = inference_form(model.eval(), device)
    x = x.to(device)
    n_center, n_check, n_certify = args.counts
    metric = FunctionMetric(user_l2, name="user_l2")
    settings = dict(
        sigma=0.25,
        n_center=n_center,
        n_check=n_check,
        n_certify=n_certify,
        batch_size=500,
        device=device,
        seed=0,
    )
    smoothers = {"built-in l2": CenterSmoothing(model, metric="l2", **settings)}
    if args.user_certify:
        smoothers["callable l2"] = CenterSmoothing(model, metric=metric, **settings)
    # the center samples and the points the check is given (as certify would hand them over)
    with torch.no_grad():
        gen = torch.Generator(device=device).manual_seed(0)
        noisy = x + 0.25 * torch.randn(n_center, *x.shape, generator=gen, device=device)
        samples = torch.cat([model(b) for b in noisy.split(500)])
    central = get_metric("l2").central_candidates(samples)
    points = [samples[0], central]
    # warm-up (first calls, lazy imports)
    check_distance(metric, samples[:100], points)
    CenterSmoothing(model, metric="l2", sigma=0.25, n_center=1000, n_check=1000).certify(x, 0.1)
    certify_s: dict[str, list[float]] = {name: [] for name in smoothers}
    check_s = []
    for _ in range(args.repeats):
        for name, smoother in smoothers.items():
            certify_s[name].append(timed(lambda s=smoother: s.certify(x, [0.125, 0.25])))
        check_s.append(timed(lambda: check_distance(metric, samples, points)))
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"MNIST conv autoencoder ({label}), counts {n_center}/{n_check}/{n_certify}, ", end="")
    print(f"{args.repeats} repeats\n")
    print("| certify with | certify s | check_distance s | check / certify |")
    print("|---|---|---|---|")
    for name, times in certify_s.items():
        ratio = statistics.median(check_s) / statistics.median(times)
        print(f"| {name} | {spread(times)} | {spread(check_s)} | {100 * ratio:.2f}% |")


if __name__ == "__main__":
    main()
