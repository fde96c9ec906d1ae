"""tv2 and Hamming center searches with the pairwise forms that loop over rows (before) and the
batched ones (after), side by side and interleaved in one run.

Usage: python benchmarks/pairwise_distances.py [--n 2000] [--repeats 3] [--device cpu]

The row-by-row forms are the library's former ``pairwise`` methods, kept here as references:
one Python iteration per candidate row, each over every sample. The batched forms compute a
block of rows at once (tv2: ``torch.cdist`` batched over pixels; Hamming: class-by-class
matrix products for few integer labels). Both give the same center (checked).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from overhead import timed_call

from centersmooth.center import find_center
from centersmooth.metrics import get_metric
from centersmooth.metrics.base import Metric, flat, float_pair
from centersmooth.metrics.image import TotalVariationDistance, image_gradients
from centersmooth.metrics.masks import HammingDistance


def rowwise_tv2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The former tv2 ``pairwise``: one row of ``a`` at a time against all of ``b``."""
    left, right = float_pair(image_gradients(a), image_gradients(b))
    n, channels, height, width = right.shape
    right = right.reshape(n, 2, channels // 2, height * width)
    left = left.reshape(left.shape[0], 2, channels // 2, height * width)
    out = right.new_empty(left.shape[0], n)
    for i, row in enumerate(left):
        out[i] = (right - row).square_().sum(dim=(1, 2)).sqrt_().sum(dim=1)
    return out


def rowwise_hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The former Hamming ``pairwise``: one row of ``a`` at a time against all of ``b``."""
    fa, fb = flat(a), flat(b)
    rows = [(fa[i : i + 1] != fb).to(torch.float32).mean(dim=1) for i in range(fa.shape[0])]
    return torch.stack(rows) if rows else torch.empty(0, fb.shape[0])


class RowwiseTV2(TotalVariationDistance):
    def __init__(self) -> None:
        super().__init__(2, "tv2")

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return rowwise_tv2(self.accept(a), self.accept(b))


class RowwiseHamming(HammingDistance):
    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return rowwise_hamming(self.accept(a), self.accept(b))


def clouds(n: int, device: torch.device) -> list[tuple[str, Metric, Metric, torch.Tensor]]:
    """(name, row-by-row metric, batched metric, samples): images for tv2 (a fixed image plus
    noise, like a model's outputs around their center) and label maps for Hamming."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for shape in [(1, 28, 28), (3, 64, 64)]:
        base = torch.rand(shape, generator=gen)
        samples = base + 0.1 * torch.randn(n, *shape, generator=gen)
        name = f"tv2, {'x'.join(map(str, shape))} images"
        out.append((name, RowwiseTV2(), get_metric("tv2"), samples.to(device)))
    for classes in (2, 10):
        base = torch.randint(0, classes, (64, 64), generator=gen)
        flip = torch.rand(n, 64, 64, generator=gen) < 0.1
        noise = torch.randint(0, classes, (n, 64, 64), generator=gen)
        samples = torch.where(flip, noise, base)
        name = f"hamming, 64x64 label maps, {classes} labels"
        out.append((name, RowwiseHamming(), get_metric("hamming"), samples.to(device)))
    return out


def search_rows(n: int, repeats: int, device: torch.device) -> list[dict[str, object]]:
    """All-pairs center search (with the central points) of ``n`` samples, before and after."""
    rows = []
    for name, before, after, samples in clouds(n, device):
        central = after.central_candidates(samples)
        times: dict[str, list[float]] = {"before": [], "after": []}
        centers = {}
        for _ in range(repeats):
            for label, metric in (("before", before), ("after", after)):

                def search(
                    m: Metric = metric, s: torch.Tensor = samples, c: torch.Tensor = central
                ) -> object:
                    return find_center(s, m, None, c)

                seconds, centers[label] = timed_call(search, device)
                times[label].append(seconds)
        same = centers["before"].index == centers["after"].index  # type: ignore[attr-defined]
        b, a = statistics.median(times["before"]), statistics.median(times["after"])
        rows.append({"outputs": name, "n": n, "before_s": b, "after_s": a, "ratio": b / a,
                     "same_center": same})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000, help="center samples")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = search_rows(args.n, args.repeats, torch.device(args.device))
    print("| outputs | n | row by row (s) | batched (s) | speed-up | same center |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['outputs']} | {r['n']} | {r['before_s']:.2f} | {r['after_s']:.2f} | "
              f"{r['ratio']:.1f}x | {r['same_center']} |")  # fmt: skip


if __name__ == "__main__":
    main()
