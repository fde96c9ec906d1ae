"""Sample efficiency: median eps_out with our defaults against the paper's preset, same inputs.

Usage: python benchmarks/sample_efficiency.py --checkpoint PATH [--n-inputs 5] [--sigma 0.25]
       [--paper-n-certify 1000000] [--device cpu]
   or: python benchmarks/sample_efficiency.py --results NAME=FILE ... (the last is the paper's)
       to compare `centersmooth certify` results files (l2 rows, the inputs all files share)
   or: python benchmarks/sample_efficiency.py --grid results/grid (every cell with a paper file and
       a run of our defaults, with the older runs beside them: see GRID_VARIANTS)

Ours (with --checkpoint): the defaults (10^4 / 10^4 / 10^4, the check's samples the first of
the certification's, binomial bounds, central candidates, the nearest-candidate bound) and the
defaults before shared check samples (10^4 / 10^4 / 10^5, separate samples), the latter also
with the 2-approximation bound (the paper's ``eps_out``) and with ``ball_mass=0.25``. Paper:
10^4 / 10^4 / 10^6, Hoeffding, centers among the samples only, the 2-approximation bound.
eps_in = h * sigma for h in {1, 1.5, 2}. The checkpoint is a trained autoencoder of
`centersmooth train` (inputs: the test inputs `centersmooth certify` picks). Prints a markdown
table of median eps_out per configuration and the ratio ours / paper.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from centersmooth import CenterSmoothing
from centersmooth.runs.runner import read_results
from centersmooth.smoothing import PAPER_SETTINGS
from centersmooth.tasks import get_task

H = (1.0, 1.5, 2.0)


def print_table(title: str, medians: dict[str, np.ndarray]) -> None:
    """Median eps_out per configuration and h, and the median over h of the ratio to the last."""
    paper = list(medians.values())[-1]
    print(f"\n{title}\n")
    print("| configuration | " + " | ".join(f"h={h}" for h in H) + " | ratio to paper |")
    print("|---|" + "---|" * (len(H) + 1))
    for name, med in medians.items():
        ratio = _ratio(med, paper)
        cells = " | ".join(f"{v:.3f}" for v in med)
        print(f"| {name} | {cells} | {ratio:.3f} |")


def shared_medians(
    files: dict[str, str | Path], metric: str = "l2"
) -> tuple[float | None, int, dict[str, np.ndarray]]:
    """Sigma, number of shared inputs and median eps_out per file and h, on the inputs every
    file has finished (an abstention counts as infinite)."""
    per_file: dict[str, dict[int, dict[float, float]]] = {}
    sigma = None
    for name, path in files.items():
        by_input: dict[int, dict[float, float]] = {}
        for row in read_results(path).rows:
            if row["metric"] == metric:
                sigma = row["sigma"]
                h = round(row["eps_in"] / row["sigma"], 6)
                eps_out = math.inf if row["eps_out"] is None else row["eps_out"]
                by_input.setdefault(row["input_index"], {})[h] = eps_out
        per_file[name] = {i: v for i, v in by_input.items() if all(h in v for h in H)}
    shared = sorted(set.intersection(*(set(v) for v in per_file.values())))
    medians = {
        name: np.median([[rows[i][h] for h in H] for i in shared], axis=0)
        for name, rows in per_file.items()
    }
    return sigma, len(shared), medians


def from_results(specs: list[str], metric: str = "l2") -> None:
    """The table from results files, on the inputs every file has finished."""
    files = {name or path: path for name, _, path in (s.rpartition("=") for s in specs)}
    sigma, n_shared, medians = shared_medians(files, metric)
    if not n_shared:
        raise SystemExit("the results files share no finished input")
    print_table(f"{metric}, sigma={sigma}, {n_shared} shared inputs", medians)


# a cell's files beside ``sigma<S>-paper.jsonl``, by the suffix after ``sigma<S>``: the
# 4-distance grid at the library's defaults (its l2 rows), at the same counts with the
# nearest-candidate bound alone, at the earlier defaults on the same
# models and seeds, their first run with the earlier noise stream, and runs made before the
# nearest-candidate bound with the 2-approximation bound's ``eps_out`` (the same grid, and
# ``--ball-mass 0.25``)
GRID_VARIANTS = {
    "ours": "",  # the library's defaults
    "ours, nearest-candidate bound alone": "-nearest",  # the same counts, --no-pairwise-bound
    "ours, earlier defaults": "-separate-1e5",  # 10^4 / 10^4 / 10^5, separate samples
    "ours, earlier defaults, first run": "-torch-mt-v1",  # the same, earlier noise stream
    "ours, 2-approximation bound": "-3rhat",
    "ball_mass 0.25, 2-approximation bound": "-mass0.25",
}


def from_grid(root: Path) -> None:
    """One row per cell of a results grid: each variant of ``GRID_VARIANTS`` that the cell has,
    against the paper preset, on the inputs all of the cell's files finished."""
    print(
        "| cell | sigma | shared inputs | ours, h = 1 / 1.5 / 2 | paper, h = 1 / 1.5 / 2 "
        "| ratio to paper: " + " / ".join(f"{'**ours**' if k == 'ours' else k}" for k in
                                          GRID_VARIANTS) + " |"
    )  # fmt: skip
    print("|---|---|---|---|---|---|")
    for paper in sorted(root.glob("*/sigma*-paper.jsonl")):
        files: dict[str, str | Path] = {}
        for name, suffix in GRID_VARIANTS.items():
            path = paper.with_name(paper.name.replace("-paper", suffix))
            if path.is_file():
                files[name] = path
        if "ours" not in files:
            continue
        sigma, n_shared, med = shared_medians({**files, "paper": paper})
        if not n_shared:
            continue
        cells = [" / ".join(f"{v:.3f}" for v in med[k]) for k in ("ours", "paper")]
        ratios = [f"{_ratio(med[k], med['paper']):.3f}" if k in med else "-" for k in GRID_VARIANTS]
        ratios[0] = f"**{ratios[0]}**"
        print(
            f"| {paper.parent.name} | {sigma} | {n_shared} | {cells[0]} | {cells[1]} "
            f"| {' / '.join(ratios)} |"
        )


def _ratio(ours: np.ndarray, paper: np.ndarray) -> float:
    """The median over h of ours / paper."""
    return statistics.median(float(r) for r in ours / paper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", nargs="+", metavar="NAME=FILE")
    parser.add_argument("--grid", type=Path, metavar="DIR", help="every cell of a results grid")
    parser.add_argument("--task", default="autoencoder")
    parser.add_argument("--checkpoint")
    parser.add_argument("--n-inputs", type=int, default=5)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--paper-n-certify", type=int, default=1_000_000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.results:
        from_results(args.results)
        return
    if args.grid:
        from_grid(args.grid)
        return
    if args.checkpoint is None:
        parser.error("give --checkpoint (to certify) or --results (to compare files)")
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
    earlier: dict[str, Any] = dict(n_certify=100_000, share_check_samples=False)
    configs = {
        "ours 10^4/10^4/10^4 shared (defaults)": {},
        "ours 10^4/10^4/10^5 separate": earlier,
        "ours, 2-approximation bound": dict(earlier, nearest_candidate=False),
        "ours, ball_mass 0.25": dict(earlier, ball_mass=0.25),
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
        # tensors: a NumPy input would mean a NumPy model (the model would get NumPy batches)
        rows = [
            smoother.certify(torch.as_tensor(x), eps, seed=i).eps_out for i, x in enumerate(inputs)
        ]
        seconds = (time.perf_counter() - start) / len(inputs)
        medians[name] = np.median(np.stack(rows), axis=0)
        print(f"{name}: {seconds:.1f} s per input", flush=True)
    print_table(
        f"{info['task']} {info['dataset']} sigma={args.sigma}, {len(inputs)} inputs", medians
    )


if __name__ == "__main__":
    main()
