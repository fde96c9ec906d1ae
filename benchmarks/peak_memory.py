"""Peak host memory of one certificate: what the library holds, not what the model needs.

Usage:
    python benchmarks/peak_memory.py [--n-certify 1000000]
    python benchmarks/peak_memory.py --large [--batch-size 1000] [--n-center 1000 ...]

Default: the base function is a fixed random linear map from a 16-dimensional input to a 3x64x64
image: cheap, so that the run measures what the library holds. Only the distances of the
certification samples are kept (8 bytes each), so the peak is set by the 10^4 center samples
(10^4 x 12,288 floats = 492 MB) and one batch, not by n_certify.

``--large``: a 3x512x512 input (786,432 numbers, 3 MB a sample) through a small strided CNN with
ten outputs, where one batch dominates the peak: with ``--batch-size 1000`` (the former fixed
CPU batch) against the default automatic batch (``batch_size=None``: the memory one sample
needs, at most 1 GiB a batch on the CPU). The peak does not depend on the sample counts beyond
the center samples (here 10 floats each), so smaller counts measure it in less time.

Peak resident memory is read from the kernel (``ru_maxrss``) after the run and compared with
the memory held after imports. Run each setting in its own process (the peak is the process's).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from torch import nn

from centersmooth import CenterSmoothing


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def small_cnn() -> nn.Module:
    """3x512x512 -> 10: a stride-4 convolution to 8 channels, ReLU, mean over the image."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=4, stride=4),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="a 3x512x512 input through a CNN")
    parser.add_argument("--batch-size", type=int, help="default: automatic (batch_size=None)")
    parser.add_argument("--n-center", type=int, default=10_000)
    parser.add_argument("--n-check", type=int, default=10_000)
    parser.add_argument("--n-certify", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.large:
        model: object = small_cnn()
        x = torch.rand(3, 512, 512, generator=torch.Generator().manual_seed(0))
    else:
        weights = torch.randn(3 * 64 * 64, 16, generator=torch.Generator().manual_seed(0)) / 4

        def to_image(batch: torch.Tensor) -> torch.Tensor:
            return (batch @ weights.T).reshape(-1, 3, 64, 64)

        model, x = to_image, torch.zeros(16)
    baseline = rss_mb()
    smoother = CenterSmoothing(
        model,
        sigma=0.25,
        n_center=args.n_center,
        n_check=args.n_check,
        n_certify=args.n_certify,
        batch_size=args.batch_size,
        seed=0,
    )
    start = time.perf_counter()
    cert = smoother.certify(x, [0.25, 0.5])
    seconds = time.perf_counter() - start
    used = args.batch_size or max(smoother._auto_batch_sizes.values())
    print(
        f"{'3x512x512 CNN' if args.large else '16 -> 3x64x64 linear'}: batch {used} "
        f"({'fixed' if args.batch_size else 'automatic'}), counts {args.n_center} / "
        f"{args.n_check} / {args.n_certify}: abstained={cert.abstained}, {seconds:.1f} s"
    )
    print(f"peak RSS {rss_mb():.0f} MB (after imports {baseline:.0f} MB)")


if __name__ == "__main__":
    main()
