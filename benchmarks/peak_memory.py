"""Peak host memory of one certificate with n_certify = 10^6 and 3x64x64 outputs.

Usage: python benchmarks/peak_memory.py [--n-certify 1000000]

The base function is a fixed random linear map from a 16-dimensional input to a 3x64x64 image:
cheap, so that the run measures what the library holds, not the model. Only the distances of the
certification samples are kept (8 bytes each), so the peak is set by the 10^4 center samples
(10^4 x 12,288 floats = 492 MB) and one batch, not by n_certify. Peak resident memory is read
from the kernel (``ru_maxrss``) after the run and compared with the memory held after imports.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from centersmooth import CenterSmoothing


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-certify", type=int, default=1_000_000)
    args = parser.parse_args()
    weights = torch.randn(3 * 64 * 64, 16, generator=torch.Generator().manual_seed(0)) / 4

    def to_image(batch: torch.Tensor) -> torch.Tensor:
        return (batch @ weights.T).reshape(-1, 3, 64, 64)

    baseline = rss_mb()
    smoother = CenterSmoothing(to_image, sigma=0.25, n_certify=args.n_certify, seed=0)
    start = time.perf_counter()
    cert = smoother.certify(torch.zeros(16), [0.25, 0.5])
    seconds = time.perf_counter() - start
    print(f"n_certify={args.n_certify}: eps_out={cert.eps_out}, {seconds:.1f} s")
    print(f"peak RSS {rss_mb():.0f} MB (after imports {baseline:.0f} MB)")


if __name__ == "__main__":
    main()
