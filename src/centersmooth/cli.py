"""The ``centersmooth`` command: argument parsing and dispatch only.

Subcommands live in ``SUBCOMMANDS``: name -> :class:`Subcommand` (help text, a function adding its
arguments to a parser, a function running it with the parsed arguments and returning the exit
status). A new subcommand is one entry there: ``Subcommand(help, add_arguments, run)``, or
``_module_command("module", help)`` for a module of this package that defines
``add_arguments(parser)`` and ``run(args) -> int`` (or one ``register_subcommand`` call before
``main``). User errors (bad paths, bad values, missing data) are printed as one line on stderr
with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import report
from .runner import RunnerError

if TYPE_CHECKING:
    from .tasks import Task
    from .tasks.base import CertifySetup

EXIT_USAGE = 2


class CLIError(Exception):
    """A user error with a message to print (no traceback)."""


@dataclass(frozen=True)
class Subcommand:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ----------------------------------------------------------------------------- helpers
def _number_type(
    convert: Callable[[str], Any], valid: Callable[[Any], bool], expected: str
) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert`` the text, then accept it only if ``valid``."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number_type(int, lambda v: v >= 1, "a positive integer")
_nonneg_int = _number_type(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number_type(float, lambda v: v > 0 and bool(np.isfinite(v)), "a positive number")
_nonneg_float = _number_type(float, lambda v: v >= 0 and bool(np.isfinite(v)), "a number >= 0")


def _candidate_count(text: str) -> tuple[str, int]:
    """``K`` or ``DISTANCE=K`` for ``--candidates``."""
    name, _, count = text.rpartition("=")
    return name, _positive_int(count)


class _CandidatesAction(argparse.Action):
    """``--candidates K`` gives an int; ``--candidates tv1=30 tv2=30`` a dict per distance."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if len(values) == 1 and not values[0][0]:
            setattr(namespace, self.dest, values[0][1])
        elif all(name for name, _ in values):
            setattr(namespace, self.dest, dict(values))
        else:
            parser.error("--candidates takes one count K, or DISTANCE=K pairs")


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- train
def _train_arguments(p: argparse.ArgumentParser) -> None:
    from .datasets import available_datasets
    from .tasks import available_tasks

    p.add_argument("task", choices=available_tasks(), help="what to train")
    p.add_argument("--dataset", choices=available_datasets(), help="default: mnist")
    p.add_argument("--data-root", type=Path, help="directory with the data set's standard files")
    p.add_argument("--sigma-train", type=_nonneg_float, default=0.25, help="training noise")
    p.add_argument("--epochs", type=_positive_int, default=5)
    p.add_argument("--n-train", type=_positive_int, help="train on a seeded subset of this size")
    p.add_argument("--batch-size", type=_positive_int, default=128)
    p.add_argument("--lr", type=_positive_float, default=1e-3)
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--latent", type=_positive_int, help="autoencoder latent size")
    p.add_argument("--measurements", type=_positive_int, help="reconstruction: rows of A")
    p.add_argument("--hidden", type=_positive_int, help="channels of the first conv layer")
    p.add_argument("--out", type=Path, help="checkpoint path (default: in the cache)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=_positive_int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _train_run(args: argparse.Namespace) -> int:
    from .tasks import train

    _set_threads(args.threads)
    arch = {
        k: v
        for k, v in (
            ("latent", args.latent),
            ("measurements", args.measurements),
            ("hidden", args.hidden),
        )
        if v is not None
    }
    result = train(
        args.task,
        args.dataset,
        args.sigma_train,
        epochs=args.epochs,
        n_train=args.n_train,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        arch=arch,
        data_root=args.data_root,
        out=args.out,
        device=args.device,
        progress=not args.quiet,
    )
    meta = result.meta
    print(
        f"trained {meta['task']} on {meta['dataset']} (sigma_train {meta['sigma_train']:g}, "
        f"seed {meta['seed']}): final loss {meta['final_loss']:.5f} in "
        f"{meta['train_seconds']:.1f} s -> {result.path}"
    )
    return 0


# ----------------------------------------------------------------------------- certify
def add_source_arguments(p: argparse.ArgumentParser, n_inputs: int) -> argparse._ArgumentGroup:
    """The TASK argument and the "model and inputs" group shared by certify and attack."""
    from .tasks import available_tasks

    p.add_argument(
        "task",
        nargs="?",
        help=f"one of {', '.join(available_tasks())}; or give --model and --inputs instead",
    )
    src = p.add_argument_group("model and inputs")
    src.add_argument("--checkpoint", type=Path, help="trained model (default: the cached one)")
    src.add_argument("--dataset", help="data set of the task (checked against the checkpoint)")
    src.add_argument("--data-root", type=Path, help="directory with the data set's files")
    src.add_argument("--n-inputs", type=_positive_int, default=n_inputs, help="seeded test inputs")
    src.add_argument("--model", help="your own model: path/to/file.py:factory")
    src.add_argument("--inputs", type=Path, help="your inputs: a .npy array (N, ...)")
    return src


def _certify_arguments(p: argparse.ArgumentParser) -> None:
    src = add_source_arguments(p, n_inputs=20)
    src.add_argument("--targets", type=Path, help="optional clean targets: a .npy array (N, ...)")

    cert = p.add_argument_group("certificate")
    cert.add_argument("--sigma", type=_positive_float, required=True)
    cert.add_argument("--eps-in", type=_nonneg_float, nargs="+", required=True)
    cert.add_argument(
        "--eps-in-relative",
        action="store_true",
        help="--eps-in values are multiples of sigma (eps_in = value * sigma)",
    )
    cert.add_argument("--metric", nargs="+", help="distances (default: the task's)")
    cert.add_argument("--out", type=Path, required=True, help="results file (JSON lines)")
    cert.add_argument(
        "--preset",
        choices=("default", "paper"),
        default="default",
        help="default: our binomial bounds and central candidates; paper: the paper's constants",
    )
    for name in ("n-center", "n-check", "n-certify", "batch-size"):
        cert.add_argument(f"--{name}", type=_positive_int)
    cert.add_argument(
        "--candidates",
        nargs="+",
        type=_candidate_count,
        action=_CandidatesAction,
        metavar="[DISTANCE=]K",
        help="center among the first K samples (plus central points); DISTANCE=K pairs set it "
        "per distance (e.g. tv1=30 tv2=30), all pairs for the others",
    )
    cert.add_argument("--bound", choices=("binomial", "hoeffding"))
    cert.add_argument(
        "--central-candidates",
        action=argparse.BooleanOptionalAction,
        help="add the distance's central points to the center search (default: on; off in "
        "--preset paper)",
    )
    cert.add_argument(
        "--nearest-candidate",
        action=argparse.BooleanOptionalAction,
        help="certify through the sample candidate nearest to the center, eps_out = gamma "
        "(R_outer + gamma (R_near + R_inner)) (default: on; off in --preset paper, which uses "
        "the paper's gamma (1 + 2 gamma) R-hat)",
    )
    cert.add_argument(
        "--autocast", choices=("bf16", "fp16"), help="run the model in low precision (torch)"
    )
    cert.add_argument("--compile", action="store_true", help="torch.compile the model")
    for name in ("alpha-center", "alpha-certify", "delta"):
        cert.add_argument(f"--{name}", type=_positive_float)
    cert.add_argument(
        "--ball-mass",
        type=_positive_float,
        help="share of the output mass the smoothed output's ball holds (default 1/2, the "
        "paper's); below 1/2 the certificate uses two order statistics, often tighter",
    )
    cert.add_argument("--seed", type=_nonneg_int, default=0)

    run = p.add_argument_group("execution")
    run.add_argument("--device", help="cpu, cuda, cuda:1, ...")
    run.add_argument("--resume", action="store_true", help="continue an existing results file")
    run.add_argument("--backend", choices=("local", "ray"), default="local")
    run.add_argument("--workers", type=_positive_int, default=1)
    run.add_argument("--address", help="Ray cluster address")
    run.add_argument("--gpus-per-worker", type=_nonneg_float, default=0.0)
    run.add_argument(
        "--inputs-per-batch",
        type=_positive_int,
        default=1,
        help="certify this many inputs together, sharing forward passes (small models)",
    )
    run.add_argument("--examples", type=_nonneg_int, default=8, help="inputs saved for figures")
    run.add_argument(
        "--threads", type=_positive_int, help="torch CPU threads (in all: --workers share them)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar, no table")


def smoothing_settings(args: argparse.Namespace, task: Task | None = None) -> dict[str, Any]:
    """CenterSmoothing arguments, each level over the one before: the library's defaults, the
    task's defaults, with ``--preset paper`` the paper's constants then the task's paper
    constants (:meth:`Task.preset_settings`), then the explicit flags. Flags a subcommand does
    not define (``attack`` has no preset) count as not given."""
    from .tasks import Task

    settings: dict[str, Any] = {"sigma": args.sigma}
    settings.update((task or Task()).preset_settings(getattr(args, "preset", None) or "default"))
    for key in (
        "n_center",
        "n_check",
        "n_certify",
        "batch_size",
        "candidates",
        "bound",
        "alpha_center",
        "alpha_certify",
        "delta",
        "ball_mass",
        "device",
        "autocast",
    ):
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    for flag in ("central_candidates", "nearest_candidate"):
        if getattr(args, flag, None) is not None:
            settings[flag] = getattr(args, flag)
    if getattr(args, "compile", False):
        settings["compile"] = True
    return settings


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{what} file {path} is not a .npy array ({err})") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{what} file {path} holds several arrays; save one with np.save")
    return array


def user_inputs(args: argparse.Namespace) -> np.ndarray:
    """The ``--inputs`` array of a ``--model`` run (``certify``, ``attack``), after checking that
    the source arguments name a user model and not also a task."""
    if args.task is not None:
        raise CLIError("give either a TASK or --model with --inputs, not both")
    if args.model is None or args.inputs is None:
        raise CLIError("--model and --inputs go together")
    inputs = _load_array(args.inputs, "--inputs")
    if inputs.ndim < 2 or len(inputs) == 0:
        raise CLIError(f"--inputs must hold an array (N, ...) of N >= 1 inputs, got {inputs.shape}")
    return inputs


def task_setup(args: argparse.Namespace) -> tuple[Task, CertifySetup]:
    """The task ``args.task`` names and its inputs and model (``certify``, ``attack``)."""
    from .tasks import get_task

    if args.task is None:
        raise CLIError("name a TASK, or give --model and --inputs")
    task = get_task(args.task)
    setup = task.certify_setup(
        checkpoint=args.checkpoint,
        dataset=args.dataset,
        data_root=args.data_root,
        n_inputs=args.n_inputs,
        seed=args.seed,
        sigma=args.sigma,
    )
    return task, setup


def _certify_run(args: argparse.Namespace) -> int:
    from .datasets import file_sha256
    from .runner import certify_dataset
    from .tables import format_table, summarize
    from .tasks.user import parse_model_spec, user_model_factory

    _set_threads(args.threads)
    task: Task | None = None
    if args.model is not None or args.inputs is not None:
        inputs = user_inputs(args)
        factory = user_model_factory(args.model, probe=inputs[:2])
        targets = None if args.targets is None else _load_array(args.targets, "--targets")
        if targets is not None and len(targets) != len(inputs):
            raise CLIError(f"--targets has {len(targets)} rows for {len(inputs)} inputs")
        indices = np.arange(len(inputs))
        run_info: dict[str, Any] = {
            "task": "user",
            "model": args.model,
            # a resume must see the same model file (the weights it loads are the user's to pin)
            "model_sha256": file_sha256(parse_model_spec(args.model)[0]),
            "inputs": str(args.inputs),
        }
        metrics = args.metric or ["l2"]
    else:
        task, setup = task_setup(args)
        factory, inputs, targets, indices = (
            setup.model_factory,
            setup.inputs,
            setup.targets,
            setup.indices,
        )
        run_info = dict(setup.run_info)
        metrics = args.metric or list(task.default_metrics)
    eps_in = [e * args.sigma for e in args.eps_in] if args.eps_in_relative else args.eps_in
    run_info["preset"] = args.preset
    rows = certify_dataset(
        factory,
        inputs,
        eps_in,
        metrics,
        smoothing_settings(args, task),
        args.out,
        run_info,
        seed=args.seed,
        targets=targets,
        indices=[int(i) for i in indices],
        resume=args.resume,
        backend=args.backend,
        workers=args.workers,
        address=args.address,
        gpus_per_worker=args.gpus_per_worker,
        progress=not args.quiet,
        examples=args.examples,
        inputs_per_batch=args.inputs_per_batch,
    )
    if not args.quiet:
        print(format_table(summarize(rows)))
        print(f"{len(rows)} rows in {args.out}")
    return 0


# ----------------------------------------------------------------------------- demo
def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out-dir", type=Path, default=Path("centersmooth-demo"))
    p.add_argument("--sigma", type=_positive_float, default=0.25)
    p.add_argument("--n-digits", type=_positive_int, default=4)
    p.add_argument("--retrain", action="store_true", help="train even if a cached model exists")
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch CPU threads (default 1: the 8x8 model is too small to gain from more)",
    )


def _demo_run(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _set_threads(args.threads)
    run_demo(
        out_dir=args.out_dir,
        sigma=args.sigma,
        n_digits=args.n_digits,
        retrain=args.retrain,
        seed=args.seed,
    )
    return 0


def _module_command(module: str, help: str) -> Subcommand:
    """A subcommand whose ``add_arguments`` and ``run`` live in ``centersmooth.<module>``
    (imported when the parser is built)."""

    def add_arguments(p: argparse.ArgumentParser) -> None:
        importlib.import_module(f"centersmooth.{module}").add_arguments(p)

    def run(args: argparse.Namespace) -> int:
        return int(importlib.import_module(f"centersmooth.{module}").run(args))

    return Subcommand(help, add_arguments, run)


SUBCOMMANDS: dict[str, Subcommand] = {
    "demo": Subcommand(
        "train (or reuse) a denoising autoencoder on the bundled digits, certify a few, plot",
        _demo_arguments,
        _demo_run,
    ),
    "train": Subcommand("train a task's model with Gaussian noise", _train_arguments, _train_run),
    "certify": Subcommand(
        "certify a task's test inputs, or your own model and inputs, into a JSONL file",
        _certify_arguments,
        _certify_run,
    ),
    "report": Subcommand(
        "summarise results files: markdown tables (median, IQR) and PNG plots",
        report.add_arguments,
        report.run,
    ),
    "attack": _module_command(
        "attack_cli", "attack the smoothed model within eps_in and compare with eps_out"
    ),
}


def register_subcommand(name: str, subcommand: Subcommand) -> None:
    """Add a subcommand (refuses to overwrite an existing one)."""
    if name in SUBCOMMANDS:
        raise ValueError(f"a subcommand named {name!r} is already registered")
    SUBCOMMANDS[name] = subcommand


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="centersmooth",
        description="Center smoothing: certified robustness for models with structured outputs.",
    )
    parser.add_argument("--version", action="version", version=f"centersmooth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(_run=command.run)
    return parser


# Errors a user can cause and fix: printed as one line, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    CLIError,
    ValueError,
    TypeError,
    OSError,  # missing files, permissions, a full disk: the message says which
    ConnectionError,  # a Ray cluster that cannot be reached
    RunnerError,  # a locked results file, a worker that kept dying, a model error in a worker
    ImportError,
    SyntaxError,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("centersmooth: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        print(f"centersmooth {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
