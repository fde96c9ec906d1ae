"""Experiment drivers (``python -m centersmooth.tasks.NAME``) for the tasks with a fixed model.

A driver certifies its task over several sigmas and presets through the runner: one results file
per setting, the same files ``centersmooth certify`` writes, so either command can continue it;
its tables come from :mod:`centersmooth.runs.report`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .base import PRESETS, Task


def experiment_path(
    out_dir: Path, preset: str, sigma: float, dataset: str | None = None, tag: str | None = None
) -> Path:
    """``<out_dir>/[<tag>-]<preset>[-<dataset>]-sigma<sigma>.jsonl``: the results file of one
    setting (a results file holds a single configuration)."""
    parts = [p for p in (tag, preset, dataset) if p] + [f"sigma{sigma:g}"]
    return Path(out_dir) / ("-".join(parts) + ".jsonl")


def run_experiment(
    task: Task,
    out_dir: Path,
    sigmas: Sequence[float],
    h_values: Sequence[float],
    *,
    presets: Sequence[str] = ("default",),
    datasets: Sequence[tuple[str | None, int]] = ((None, 1),),
    seed: int = 0,
    tag: str | None = None,
    progress: bool = True,
    **overrides: Any,
) -> list[Path]:
    """Certify the task's inputs at ``eps_in = h sigma`` (h in ``h_values``) for every preset,
    input set and sigma with :func:`centersmooth.runs.runner.certify_dataset`, one results file per
    setting (:func:`experiment_path`), each continued if it exists. Returns the files.

    ``datasets``: (``--dataset``, number of inputs) pairs; ``overrides``: :class:`CenterSmoothing`
    arguments over the preset's. Each file is what ``centersmooth certify TASK --dataset D
    --n-inputs N --sigma S --eps-in H... --eps-in-relative --preset P --seed SEED`` (plus the
    overrides as flags) writes, so either command can continue it.
    """
    from ..runs.runner import certify_dataset

    if Path(out_dir).is_file():
        raise ValueError(
            f"{out_dir} is a file; the experiment writes a folder of results files, one per "
            "setting (files of the old single-file format are not continued)"
        )
    paths = []
    for preset in presets:
        settings = {**task.preset_settings(preset), **overrides}
        for dataset, n_inputs in datasets:
            for sigma in sigmas:
                setup = task.certify_setup(
                    checkpoint=None,
                    dataset=dataset,
                    data_root=None,
                    n_inputs=n_inputs,
                    seed=seed,
                    sigma=sigma,
                )
                path = experiment_path(out_dir, preset, sigma, dataset, tag)
                certify_dataset(
                    setup.model_factory,
                    setup.inputs,
                    [h * sigma for h in h_values],
                    list(task.default_metrics),
                    {**settings, "sigma": sigma},
                    path,
                    {**setup.run_info, "preset": preset},
                    seed=seed,
                    targets=setup.targets,
                    indices=[int(i) for i in setup.indices],
                    resume=True,
                    progress=progress,
                    examples=0,
                )
                paths.append(path)
    return paths


def experiment_report(paths: Sequence[Path]) -> str:
    """The markdown summary of results files (``centersmooth report`` without the plots)."""
    from ..runs.report import load_run, markdown, summarize

    runs = [load_run(p) for p in paths]
    return markdown(runs, [s for run in runs for s in summarize(run)], {})


def experiment_parser(
    module: str, description: str, out: Path, sigmas: Sequence[float], presets: Sequence[str]
) -> argparse.ArgumentParser:
    """The arguments every experiment driver shares; a driver adds its inputs and figure."""
    parser = argparse.ArgumentParser(
        prog=f"python -m centersmooth.tasks.{module}", description=description
    )
    parser.add_argument(
        "--out", type=Path, default=out, help=f"folder of results files (default: {out})"
    )
    parser.add_argument("--sigmas", type=float, nargs="+", default=list(sigmas))
    parser.add_argument(
        "--presets",
        nargs="+",
        type=lambda text: "default" if text == "ours" else text,  # "ours": the old name
        choices=PRESETS,
        default=list(presets),
    )
    parser.add_argument("--n-center", type=int, help="centre and check samples (default: preset)")
    parser.add_argument("--n-certify", type=int, help="certification samples (default: preset)")
    parser.add_argument("--delta", type=float, help="default: the preset's")
    parser.add_argument(
        "--pairwise-bound",
        action=argparse.BooleanOptionalAction,
        help="the pairwise bound for every distance, or none (default: the built-in distances "
        "between vectors and images, where the counts allow it)",
    )
    parser.add_argument("--seed", type=int, default=0, help="inputs and smoothing seed")
    parser.add_argument(
        "--device", help="cpu, cuda, cuda:1, ... (default: the CPU) where the samples are computed"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--summary", action="store_true", help="print the tables of the files in --out only"
    )
    return parser


def experiment_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`CenterSmoothing` arguments an experiment driver's flags set."""
    overrides: dict[str, Any] = {}
    if args.n_center is not None:
        overrides.update(n_center=args.n_center, n_check=args.n_center)
    if args.n_certify is not None:
        overrides["n_certify"] = args.n_certify
    if args.delta is not None:
        overrides["delta"] = args.delta
    if args.pairwise_bound is not None:
        overrides["pairwise_bound"] = args.pairwise_bound
    if args.device is not None:
        overrides["device"] = args.device
    return overrides


def library_counts() -> dict[str, int]:
    """The library's default sample counts (``SmoothingSettings``'s), for a driver run of a task
    whose own defaults set other counts."""
    from ..settings import SmoothingSettings

    defaults = SmoothingSettings()
    return {name: getattr(defaults, name) for name in ("n_center", "n_check", "n_certify")}


def guarded(parser: argparse.ArgumentParser, work: Callable[[], object]) -> None:
    """Run a driver's ``work``: a mistake in its settings ends in one line and exit status 2, a
    run that stopped (the model failed on an input) in one line and 1, never a traceback."""
    from ..runs.runner import RunStopped

    try:
        work()
    except RunStopped as err:
        parser.exit(1, f"{parser.prog}: error: {err.advice('the same command continues it')}\n")
    except (ValueError, TypeError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")


def experiment_main(
    parser: argparse.ArgumentParser, args: argparse.Namespace, run: Callable[[], object]
) -> None:
    """A driver's ``main`` after parsing: ``run()`` its experiment (unless ``--summary``,
    ``guarded``), then print the tables of every results file in ``--out``."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.summary:
        guarded(parser, run)
    paths = sorted(Path(args.out).glob("*.jsonl"))
    print(experiment_report(paths) if paths else f"no results files in {args.out}")
