"""Sample efficiency: median eps_out with our defaults against the paper's preset, same inputs.

Usage: python benchmarks/sample_efficiency.py --checkpoint PATH [--n-inputs 5] [--sigma 0.25]
       [--paper-n-certify 1000000] [--device cpu]

Ours: 10^4 / 10^4 / 10^5 samples, binomial bounds, central candidates; also with 10^4
certification samples. Paper: 10^4 / 10^4 / 10^6, Hoeffding, centers among the samples only.
eps_in = h * sigma for h in {1, 1.5, 2}. The checkpoint is a trained autoencoder of
`centersmooth train` (inputs: the test inputs `centersmooth certify` picks). Prints a markdown
table of median eps_out per configuration and the ratio ours / paper.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from centersmooth import CenterSmoothing
from centersmooth.smoothing import PAPER_SETTINGS
from centersmooth.tasks import get_task

H = (1.0, 1.5, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="autoencoder")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--n-inputs", type=int, default=5)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--paper-n-certify", type=int, default=1_000_000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    setup = get_task(args.task).certify_setup(
        checkpoint=Path(args.checkpoint),
        dataset=None,
        data_root=None,
        n_inputs=args.n_inputs,
        seed=0,
        sigma=args.sigma,
    )
    model, inputs, info = setup.model_factory(), setup.inputs, setup.run_info
    eps = [h * args.sigma for h in H]
    configs = {
        "ours 10^4/10^4/10^5": dict(n_certify=100_000),
        "ours 10^4/10^4/10^4": dict(n_certify=10_000),
        f"paper 10^4/10^4/{args.paper_n_certify:.0e}": dict(
            PAPER_SETTINGS, n_certify=args.paper_n_certify
        ),
    }
    medians: dict[str, np.ndarray] = {}
    for name, settings in configs.items():
        smoother = CenterSmoothing(
            model, sigma=args.sigma, device=args.device, batch_size=2_000, **settings
        )
        start = time.perf_counter()
        rows = [smoother.certify(x, eps, seed=i).eps_out for i, x in enumerate(inputs)]
        seconds = (time.perf_counter() - start) / len(inputs)
        medians[name] = np.median(np.stack(rows), axis=0)
        print(f"{name}: {seconds:.1f} s per input", flush=True)
    paper = medians[list(configs)[-1]]
    print(f"\n{info['task']} {info['dataset']} sigma={args.sigma}, {len(inputs)} inputs\n")
    print("| configuration | " + " | ".join(f"h={h}" for h in H) + " | ratio to paper |")
    print("|---|" + "---|" * (len(H) + 1))
    for name, med in medians.items():
        ratio = statistics.median(float(r) for r in med / paper)
        cells = " | ".join(f"{v:.3f}" for v in med)
        print(f"| {name} | {cells} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
