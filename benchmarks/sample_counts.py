"""Sample counts side by side: forward passes, eps_out, abstentions and seconds of candidate
count settings against today's defaults, on the same inputs and seeds, interleaved.

Usage: python benchmarks/sample_counts.py --task autoencoder [--dataset mnist] [--sigma 0.25]
       [--n-inputs 5] [--h 1 1.5 2] [--metric l2] [--configs today 1e4x2 ...] [--threads 1]
       [--out FILE.jsonl]
   or: python benchmarks/sample_counts.py --summary FILE.jsonl [FILE.jsonl ...]

For every input (the task's seeded test inputs, as `centersmooth certify` picks them; for
``gan-faces`` its latent vectors) each configuration certifies the input in turn, with the
input's own seed, so that the configurations see the same center samples and the same stream of
check and certification samples (a smaller count reads a prefix of it); the order of the
configurations rotates from input to input. Each certificate is one JSON line (eps_out,
R_outer / R_inner / R_near, the radius, the forward passes, the seconds); ``--summary`` prints
per configuration the median passes, the median over inputs of the seconds ratio to ``today``
(measured side by side in the same run), the median and range over inputs and eps_in of the
per-input eps_out ratio to ``today`` (on inputs both certified), the abstentions, and per
eps_in / sigma the ratio of the median eps_out to ``today``'s (an abstention counts as
infinite). The task's own settings (the GAN's 30 candidates, its batch size) go
under every configuration.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from centersmooth import CenterSmoothing
from centersmooth.cli.commands import _candidate_count, _CandidatesAction
from centersmooth.runs.runner import input_seed
from centersmooth.tasks import get_task

# name -> (CenterSmoothing arguments over the task's defaults, what it is); all but "defaults",
# the pairwise one and the paper's use the nearest-candidate bound alone (pairwise_bound=False),
# as they were measured before the pairwise bound served the built-in distances by default
CONFIGS: dict[str, tuple[dict[str, Any], str]] = {
    "today": (
        {"n_center": 10_000, "n_check": 10_000, "n_certify": 100_000,
         "share_check_samples": False, "pairwise_bound": False},
        "10^4 / 10^4 / 10^5, separate samples (the defaults before shared check samples)",
    ),
    "shared-1e5": (
        {"n_center": 10_000, "n_check": 10_000, "n_certify": 100_000, "pairwise_bound": False},
        "10^4 / 10^4 / 10^5, shared check samples",
    ),
    "1e4x2": (
        {"n_center": 10_000, "n_check": 10_000, "n_certify": 10_000, "pairwise_bound": False},
        "10^4 / 10^4 / 10^4, shared",
    ),
    "defaults": (
        {},
        "the library's defaults: 10^4 / 10^4 / 10^4, shared, the pairwise bound where it serves",
    ),
    "1e4x2-pairwise": (
        {"n_center": 10_000, "n_check": 10_000, "n_certify": 10_000, "pairwise_bound": True},
        "10^4 / 10^4 / 10^4, shared, the pairwise bound (1,000 rows x 2,000 columns)",
    ),
    "1e4-2e4": (
        {"n_center": 10_000, "n_check": 10_000, "n_certify": 20_000, "pairwise_bound": False},
        "10^4 / 10^4 / 2 10^4, shared",
    ),
    "1e4-3e4": (
        {"n_center": 10_000, "n_check": 10_000, "n_certify": 30_000, "pairwise_bound": False},
        "10^4 / 10^4 / 3 10^4, shared",
    ),
    "5e3-1.5e4": (
        {"n_center": 5_000, "n_check": 15_000, "n_certify": 15_000, "pairwise_bound": False},
        "5,000 / 1.5 10^4 / 1.5 10^4, shared",
    ),
    "8e3-1.2e4": (
        {"n_center": 8_000, "n_check": 12_000, "n_certify": 12_000, "pairwise_bound": False},
        "8,000 / 1.2 10^4 / 1.2 10^4, shared",
    ),
    "1.2e4-8e3": (
        {"n_center": 12_000, "n_check": 8_000, "n_certify": 8_000, "pairwise_bound": False},
        "1.2 10^4 / 8,000 / 8,000, shared",
    ),
    "2e3-1e4": (
        {"n_center": 2_000, "n_check": 10_000, "n_certify": 10_000, "pairwise_bound": False},
        "2,000 / 10^4 / 10^4, shared",
    ),
    "5e3x2": (
        {"n_center": 5_000, "n_check": 5_000, "n_certify": 5_000, "pairwise_bound": False},
        "5,000 / 5,000 / 5,000, shared",
    ),
    "4e3-6e3": (
        {"n_center": 4_000, "n_check": 6_000, "n_certify": 6_000, "pairwise_bound": False},
        "4,000 / 6,000 / 6,000, shared",
    ),
    "auto": (
        {"n_center": 10_000, "n_check": 10_000, "n_certify": "auto", "pairwise_bound": False},
        "10^4 / 10^4 / auto (rounds from 10^4 to 10^6, tolerance 1%), shared",
    ),
    "auto-5e3": (
        {"n_center": 5_000, "n_check": 5_000, "n_certify": "auto", "pairwise_bound": False},
        "5,000 / 5,000 / auto (rounds from 5,000), shared",
    ),
    "paper": (
        {"n_center": 10_000, "n_check": 10_000, "n_certify": 1_000_000, "bound": "hoeffding",
         "central_candidates": False, "nearest_candidate": False,
         "share_check_samples": False},
        "the paper preset, 10^4 / 10^4 / 10^6",
    ),
}  # fmt: skip


def measure(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    setup = task.certify_setup(
        checkpoint=args.checkpoint,
        dataset=args.dataset,
        data_root=None,
        n_inputs=args.n_inputs,
        seed=0,
        sigma=args.sigma,
    )
    model = setup.model_factory()
    metrics = args.metric or list(task.default_metrics)
    eps = [h * args.sigma for h in args.h]
    base = {k: v for k, v in task.preset_settings("default").items() if k != "n_certify"}
    if args.candidates is not None:
        base["candidates"] = args.candidates
    smoothers = {}
    for name in args.configs:
        settings = {**base, **CONFIGS[name][0]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            smoothers[name] = CenterSmoothing(
                model, metric=metrics[0], sigma=args.sigma, **settings
            )
    out = open(args.out, "a") if args.out else sys.stdout  # noqa: SIM115
    for position, (index, x) in enumerate(zip(setup.indices, setup.inputs, strict=True)):
        seed = input_seed(0, int(index))
        shift = position % len(args.configs)
        for name in args.configs[shift:] + args.configs[:shift]:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                certs = smoothers[name].certify_metrics(torch.as_tensor(x), eps, metrics, seed)
            seconds = time.perf_counter() - start
            for metric, cert in certs.items():
                record = {
                    "task": args.task,
                    "sigma": args.sigma,
                    "config": name,
                    "input": int(index),
                    "metric": metric,
                    "h": list(args.h),
                    "eps_out": _floats(cert.eps_out),
                    "outer": _floats(cert.quantile_radius),
                    "inner": _floats(cert.inner_radius),
                    "near": _floats(cert.near_radius),
                    "pair": _floats(cert.pair_radius),
                    "radius": _float(cert.radius),
                    "delta1": cert.prediction.delta1,
                    "abstained": cert.abstained,
                    "passes": cert.forward_passes,
                    "samples": cert.certification_samples,
                    "seconds": seconds,
                }
                out.write(json.dumps(record) + "\n")
                out.flush()
            print(f"input {index} {name}: {seconds:.1f} s", file=sys.stderr, flush=True)


def _float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _floats(values: Any) -> list[float | None]:
    return [_float(v) for v in np.atleast_1d(np.asarray(values, dtype=float))]


def summary(paths: list[Path], reference: str = "today") -> None:
    records = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line]
    for (task, sigma, metric), group in _groups(records).items():
        by = {(r["config"], r["input"]): r for r in group}
        configs = list(dict.fromkeys(r["config"] for r in group))
        inputs = sorted({r["input"] for r in group})
        hs = group[0]["h"]
        print(f"\n{task}, sigma {sigma:g}, {metric}: {len(inputs)} inputs, eps_in / sigma {hs}\n")
        print(
            "| configuration | passes (median) | seconds / today's (median, range) | eps_out / "
            "today's per input (median, range) | "
            + " | ".join(f"median eps_out / today's, h = {h:g}" for h in hs)
            + " | abstained |"
        )
        print("|---|---|---|---|" + "---|" * len(hs) + "---|")
        for name in configs:
            rows = [by[(name, i)] for i in inputs if (name, i) in by]
            passes = statistics.median(r["passes"] for r in rows)
            seconds, ratios = [], []
            ours, theirs = [[] for _ in hs], [[] for _ in hs]
            for r in rows:
                ref = by.get((reference, r["input"]))
                if ref is None:
                    continue
                seconds.append(r["seconds"] / ref["seconds"])
                for j, (a, b) in enumerate(zip(r["eps_out"], ref["eps_out"], strict=True)):
                    ours[j].append(math.inf if a is None else a)
                    theirs[j].append(math.inf if b is None else b)
                    if a is not None and b is not None:
                        ratios.append(a / b)
            medians = [
                statistics.median(a) / statistics.median(b) if a else math.nan
                for a, b in zip(ours, theirs, strict=True)
            ]
            abstained = sum(r["abstained"] for r in rows)
            print(
                f"| {name} | {passes:,.0f} | {_spread(seconds)} | {_spread(ratios)} | "
                + " | ".join(f"{m:.4f}" for m in medians)
                + f" | {abstained} of {len(rows)} |"
            )


def _groups(records: list[dict[str, Any]]) -> dict[tuple[str, float, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["task"], r["sigma"], r["metric"]), []).append(r)
    return groups


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="autoencoder")
    parser.add_argument("--dataset")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--n-inputs", type=int, default=5)
    parser.add_argument("--h", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    parser.add_argument("--metric", nargs="+")
    parser.add_argument(
        "--candidates",
        nargs="+",
        type=_candidate_count,
        action=_CandidatesAction,
        metavar="[DISTANCE=]K",
        help="center candidates, as centersmooth certify takes them (the grid: tv1=30 tv2=30)",
    )
    parser.add_argument("--configs", nargs="+", default=["today", "1e4x2", "5e3-1.5e4"],
                        choices=list(CONFIGS))  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="append one JSON line per certificate here")
    parser.add_argument("--summary", type=Path, nargs="+", help="print the tables of these files")
    args = parser.parse_args()
    if args.summary:
        summary(args.summary)
    else:
        measure(args)


if __name__ == "__main__":
    main()
