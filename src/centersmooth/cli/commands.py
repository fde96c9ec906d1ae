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
import math
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only light modules here: `centersmooth --help` must not import torch (nor NumPy-heavy code or
# the tasks); each subcommand imports what it needs when it runs.
from ..runs.results_file import RunnerError

if TYPE_CHECKING:
    import numpy as np

    from ..settings import SmoothingSettings
    from ..tasks import Task
    from ..tasks.base import CertifySetup

EXIT_USAGE = 2
EXIT_FAILED = 1  # the run started and stopped on an error (the model failed on an input)
DEBUG_ENV = "CENTERSMOOTH_DEBUG"


class CLIError(Exception):
    """A user error with a message to print (no traceback)."""


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help where it has a default worth printing and the
    help does not already say it (options whose default comes from the task or the preset say
    so in their own words)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False:
            return text
        if action.default is argparse.SUPPRESS:
            return text
        if not action.option_strings or action.required:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"centersmooth: warning: {message}", file=sys.stderr)


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


def _whole(text: str) -> int:
    """An integer, also written as a power of ten or in exponent form: ``10000``, ``10_000``,
    ``1e4``, ``10^4`` (as the help writes counts); ``2.5`` or ``1e-3`` are not whole."""
    base, caret, power = text.partition("^")
    if caret:
        value = float(int(base)) ** int(power)
    else:
        try:
            return int(text)
        except ValueError:
            value = float(text)
    if not (math.isfinite(value) and value == int(value)):
        raise ValueError(f"{text!r} is not a whole number")
    return int(value)


_positive_int = _number_type(_whole, lambda v: v >= 1, "a positive integer")
_nonneg_int = _number_type(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number_type(float, lambda v: v > 0 and math.isfinite(v), "a positive number")
_nonneg_float = _number_type(float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0")


def _ratio(text: str) -> float:
    """A number, or a fraction such as ``1/255``."""
    top, slash, bottom = text.partition("/")
    if not slash:
        return float(text)
    if float(bottom) == 0:
        raise ValueError("division by zero")
    return float(top) / float(bottom)


_grid_step = _number_type(_ratio, lambda v: v > 0 and math.isfinite(v), "a positive number or 1/N")
_tolerance = _number_type(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


_positive_count = _number_type(_whole, lambda v: v >= 1, "a positive integer or auto")


def _count_or_auto(text: str) -> int | str:
    """A positive integer, or ``auto`` (``--n-certify auto``)."""
    return "auto" if text.strip().lower() == "auto" else _positive_count(text)


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
    from ..data.datasets import available_datasets
    from ..tasks import available_tasks

    p.add_argument("task", choices=available_tasks(), help="what to train")
    p.add_argument(
        "--dataset", choices=available_datasets(), help="data set (default: the task's, mnist)"
    )
    p.add_argument(
        "--data-root",
        type=Path,
        help="directory with the data set's standard files (default: the installed copies)",
    )
    p.add_argument("--sigma-train", type=_nonneg_float, default=0.25, help="training noise")
    p.add_argument("--epochs", type=_positive_int, default=5, help="passes over the data")
    p.add_argument(
        "--n-train", type=_positive_int, help="train on a seeded subset of this size (default: all)"
    )
    p.add_argument("--batch-size", type=_positive_int, default=128, help="training batch size")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="initialisation and data order")
    p.add_argument(
        "--latent",
        type=_positive_int,
        help="autoencoder latent size (default: 32 for 8x8 images, 128 for 28x28, 256 larger)",
    )
    p.add_argument(
        "--measurements",
        type=_positive_int,
        help="reconstruction: rows of the measurement matrix A (default: 256 for 28x28 images, "
        "a third of the pixels otherwise)",
    )
    p.add_argument(
        "--hidden",
        type=_positive_int,
        help="channels of the first conv layer (default: 16, 8 for the classifier)",
    )
    p.add_argument("--out", type=Path, help="checkpoint path (default: in the cache)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--threads", type=_positive_int, help="torch CPU threads (default: torch's, one per core)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _train_run(args: argparse.Namespace) -> int:
    from ..tasks import train

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
    from ..tasks import available_tasks

    p.add_argument(
        "task",
        nargs="?",
        help=f"one of {', '.join(available_tasks())}; or give --model and --inputs instead",
    )
    src = p.add_argument_group("model and inputs")
    src.add_argument(
        "--checkpoint", type=Path, help="trained model (default: the cached one for --sigma)"
    )
    src.add_argument(
        "--dataset", help="data set of the task (default: the checkpoint's; checked against it)"
    )
    src.add_argument(
        "--data-root",
        type=Path,
        help="directory with the data set's files (default: the installed copies)",
    )
    src.add_argument(
        "--n-inputs", type=_positive_int, default=n_inputs, help="seeded test inputs of the task"
    )
    src.add_argument(
        "--detector",
        help="the face-boxes task's face detector: mtcnn (MTCNN, the paper's), haar (OpenCV's "
        "Haar cascade) or hog (dlib) (default: mtcnn)",
    )
    src.add_argument(
        "--model",
        help="your own model: path/to/file.py:factory, a zero-argument function returning the "
        "base function; it must build the same model every call (seeded, or saved weights) "
        "(default: none, the TASK's model)",
    )
    src.add_argument(
        "--inputs",
        type=Path,
        help="your inputs: a .npy array (N, ...) (default: none, the TASK's test inputs)",
    )
    src.add_argument(
        "--numpy-model",
        action="store_true",
        help="the --model takes NumPy arrays (scikit-learn, NumPy code): it gets NumPy batches "
        "in the dtype of --inputs (float32 for integer inputs). Without it the model gets torch "
        "tensors: an nn.Module in its parameters' float dtype, any other callable in the dtype "
        "of --inputs (torch's default float type for integer inputs)",
    )
    return src


def _add_sample_arguments(cert: argparse._ArgumentGroup, preset: bool) -> None:
    """Sample counts and the other CenterSmoothing settings shared by certify, plan and attack
    (with ``preset``, the ``--preset`` they default from)."""
    if preset:
        cert.add_argument(
            "--preset",
            choices=("default", "paper"),
            default="default",
            help="default: our binomial bounds and central candidates; paper: the paper's "
            "constants",
        )
    counts = {
        "n-center": ("samples for the center (Algorithm 1)", "10^4", "10^4"),
        "n-check": ("samples checking the center's ball", "10^4", "10^4"),
        "n-certify": ("samples for the certified radii (Algorithm 2)", "10^4", "10^6"),
    }
    for name, (what, ours, paper) in counts.items():
        auto = name == "n-certify"
        cert.add_argument(
            f"--{name}",
            type=_count_or_auto if auto else _positive_int,
            help=f"{what}"
            + (": a count, or auto to draw in rounds as each input needs" if auto else "")
            + f" (default: {ours}"
            + (f", {paper} with --preset paper" if preset else "")
            + "; some tasks set their own)",
        )
    cert.add_argument(
        "--n-certify-cap",
        type=_positive_int,
        help="with --n-certify auto: the most certification samples an input may draw "
        "(default: 10^6)",
    )
    cert.add_argument(
        "--n-certify-tolerance",
        type=_tolerance,
        help="with --n-certify auto: draw another round only if it is expected to lower some "
        "eps_out by at least this share (default: 0.01)",
    )
    cert.add_argument(
        "--batch-size",
        type=_positive_int,
        help="noisy copies per forward pass (default: the task's, else from the memory one "
        "sample needs: the largest that fits on a GPU, at most 1000 on the CPU)",
    )
    cert.add_argument(
        "--bound",
        choices=("binomial", "hoeffding"),
        help="confidence bounds: exact binomial ones, or the paper's Hoeffding bounds (default: "
        + ("binomial, hoeffding with --preset paper)" if preset else "binomial)"),
    )
    levels = {
        "alpha-center": "failure probability of the center (default: 0.005)",
        "alpha-certify": "failure probability of the radii (default: 0.005)",
        "delta": "mass margin of the center's ball (default: 0.05)",
    }
    for name, text in levels.items():
        cert.add_argument(f"--{name}", type=_positive_float, help=text)
    cert.add_argument(
        "--ball-mass",
        type=_positive_float,
        help="share of the output mass the smoothed output's ball holds (default: 1/2, the "
        "paper's); below 1/2 the certificate uses two order statistics, often tighter",
    )
    cert.add_argument(
        "--share-check-samples",
        action=argparse.BooleanOptionalAction,
        help="the certification's samples start with the check's: max(n_check, n_certify) "
        "samples after the center's instead of n_check + n_certify (default: on"
        + ("; off in --preset paper" if preset else "")
        + "; --no-share-check-samples draws them apart, as the paper's code does)",
    )
    cert.add_argument(
        "--nan-outputs",
        choices=("error", "outside"),
        help="an output of the model holding a NaN or an infinity: stop with an error, or count "
        "it as an output outside every ball, which keeps the guarantee (default: error)",
    )
    cert.add_argument(
        "--no-check-metric",
        dest="check_metric",
        action="store_false",
        help="do not test a distance that is not built in (its gamma, symmetry, d(a, a) = 0) "
        "on the samples (default: tested; turn it off only for a distance whose constant you "
        "have proven)",
    )
    cert.add_argument(
        "--seed",
        type=_nonneg_int,
        default=0,
        help="seed of the inputs chosen and of the noise: the input of index i is certified "
        "with seed + i, recorded as input_seed in its rows (CenterSmoothing(...).certify(x, "
        "eps_in, seed=row['input_seed']) gives a row again)",
    )
    cert.add_argument(
        "--pairwise-bound",
        action=argparse.BooleanOptionalAction,
        help="bound the radius at x' between center samples, eps_out = gamma (R_outer + "
        "R_pair), at each eps_in within its reach (the nearest-candidate bound beyond): tighter, "
        "costs more distances (default: on for the distances between vectors and images where "
        "n_center holds --pair-rows + --pair-columns; --pairwise-bound: every distance)",
    )
    cert.add_argument(
        "--pair-rows",
        type=_positive_int,
        help="the pairwise bound's center samples whose radius is measured (default: 1000)",
    )
    cert.add_argument(
        "--pair-columns",
        type=_positive_int,
        help="the pairwise bound's center samples each row's radius is measured to (default: 2000)",
    )


def add_radius_arguments(group: argparse._ArgumentGroup, verb: str) -> None:
    """--sigma, --eps-in and --eps-in-relative (certify and attack)."""
    group.add_argument(
        "--sigma", type=_positive_float, required=True, help="noise standard deviation"
    )
    group.add_argument(
        "--input-grid",
        type=_grid_step,
        default=None,
        metavar="STEP",
        help="inputs lie on the grid STEP * Z^d (e.g. 1/255 for 8-bit images): draw the noise "
        "exactly on that grid so that the certificate holds in floating point, for "
        "perturbations on the same grid (default: real-valued Gaussian noise)",
    )
    group.add_argument(
        "--eps-in",
        type=_nonneg_float,
        nargs="+",
        required=True,
        help=f"input radii to {verb} (l2, units of the inputs)",
    )
    group.add_argument(
        "--eps-in-relative",
        action="store_true",
        help="--eps-in values are multiples of sigma (eps_in = value * sigma)",
    )


def _certify_arguments(p: argparse.ArgumentParser) -> None:
    src = add_source_arguments(p, n_inputs=20)
    src.add_argument(
        "--targets",
        type=Path,
        help="optional clean targets of --inputs: a .npy array (N, ...) with one output of the "
        "model's shape per input (default: none, no base or smoothed error)",
    )
    src.add_argument(
        "--output",
        metavar="NAME",
        help="for a --model that returns several outputs (a dict, a tuple or a named tuple of "
        "batches, such as a detector's boxes and scores): the key, field or position of the "
        "one to certify; run once per output to certify several (default: none, the model "
        "returns one output)",
    )

    cert = p.add_argument_group("certificate")
    add_radius_arguments(cert, "certify")
    cert.add_argument(
        "--metric", nargs="+", help="distances (default: the task's; l2 with --model)"
    )
    cert.add_argument("--out", type=Path, required=True, help="results file (JSON lines)")
    _add_sample_arguments(cert, preset=True)
    cert.add_argument(
        "--candidates",
        nargs="+",
        type=_candidate_count,
        action=_CandidatesAction,
        metavar="[DISTANCE=]K",
        help="center among the first K samples (plus central points); DISTANCE=K pairs set it "
        "per distance (e.g. tv1=30 tv2=30), all pairs for the others (default: all pairs, or "
        "the task's)",
    )
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
        "--autocast",
        choices=("bf16", "fp16"),
        help="run a torch model in low precision (default: its own precision)",
    )
    cert.add_argument("--compile", action="store_true", help="torch.compile the model")

    run = p.add_argument_group("execution")
    run.add_argument(
        "--device", help="cpu, cuda, cuda:1, ... (default: where the model's weights are; cpu)"
    )
    run.add_argument("--resume", action="store_true", help="continue an existing results file")
    run.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: this process or spawned processes; ray: Ray actors (docs/distributed.md)",
    )
    run.add_argument("--workers", type=_positive_int, default=1, help="processes or Ray actors")
    run.add_argument(
        "--address", help="Ray cluster address (default: a local Ray instance for the run)"
    )
    run.add_argument(
        "--gpus-per-worker", type=_nonneg_float, default=0.0, help="GPUs per Ray actor"
    )
    run.add_argument(
        "--inputs-per-batch",
        type=_positive_int,
        default=1,
        help="certify this many inputs together, sharing forward passes (small models)",
    )
    run.add_argument("--examples", type=_nonneg_int, default=8, help="inputs saved for figures")
    run.add_argument(
        "--threads",
        type=_positive_int,
        help="torch CPU threads, in all: --workers share them (default: torch's, one per core)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar, no table")


def smoothing_settings(args: argparse.Namespace, task: Task | None = None) -> dict[str, Any]:
    """CenterSmoothing arguments, each level over the one before: the library's defaults, the
    task's defaults, with ``--preset paper`` the paper's constants then the task's paper
    constants (:meth:`Task.preset_settings`), then the explicit flags. Flags a subcommand does
    not define (``attack`` has no preset) count as not given."""
    from ..tasks import Task

    settings: dict[str, Any] = {"sigma": args.sigma}
    settings.update((task or Task()).preset_settings(getattr(args, "preset", None) or "default"))
    for key in (
        "n_center",
        "n_check",
        "n_certify",
        "n_certify_cap",
        "n_certify_tolerance",
        "batch_size",
        "candidates",
        "bound",
        "alpha_center",
        "alpha_certify",
        "delta",
        "ball_mass",
        "pair_rows",
        "pair_columns",
        "device",
        "autocast",
        "input_grid",
        "output",
    ):
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    if getattr(args, "check_metric", True) is False:
        settings["check_metric"] = False
    if getattr(args, "nan_outputs", None) == "outside":  # "error", the default, adds nothing
        settings["nan_outputs"] = "outside"
    for flag in ("central_candidates", "nearest_candidate", "share_check_samples"):
        if getattr(args, flag, None) is not None:
            settings[flag] = getattr(args, flag)
    if getattr(args, "compile", False):
        settings["compile"] = True
    if getattr(args, "pairwise_bound", None) is not None:
        settings["pairwise_bound"] = args.pairwise_bound
    return settings


def _load_array(path: Path, what: str) -> np.ndarray:
    import numpy as np

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
    the source arguments name a user model and not also a task, and that every row is finite."""
    from ..runs.runner import check_finite_rows

    if args.task is not None:
        raise CLIError("give either a TASK or --model with --inputs, not both")
    if args.model is None or args.inputs is None:
        raise CLIError("--model and --inputs go together")
    if args.detector is not None:
        raise CLIError("--detector goes with the face-boxes task, not with --model")
    inputs = _load_array(args.inputs, "--inputs")
    if inputs.ndim < 2 or len(inputs) == 0:
        raise CLIError(f"--inputs must hold an array (N, ...) of N >= 1 inputs, got {inputs.shape}")
    check_finite_rows(inputs, "--inputs")
    return inputs


def task_setup(args: argparse.Namespace) -> tuple[Task, CertifySetup]:
    """The task ``args.task`` names and its inputs and model (``certify``, ``attack``)."""
    from ..tasks import get_task

    if args.task is None:
        raise CLIError("name a TASK, or give --model and --inputs")
    task = get_task(args.task)
    if args.detector is not None:
        from ..tasks.face_boxes import FaceBoxesTask

        if not isinstance(task, FaceBoxesTask):
            raise CLIError(f"--detector goes with the face-boxes task, not {args.task}")
        task = FaceBoxesTask(args.detector)
    setup = task.certify_setup(
        checkpoint=args.checkpoint,
        dataset=args.dataset,
        data_root=args.data_root,
        n_inputs=args.n_inputs,
        seed=args.seed,
        sigma=args.sigma,
    )
    return task, setup


def check_user_inputs(inputs: np.ndarray, sigma: float) -> None:
    """Warn when ``--inputs`` look like 0-255 pixels while ``sigma`` is meant for [0, 1]."""
    import numpy as np

    if inputs.size == 0 or sigma > 2.0:
        return
    top = float(np.max(inputs))
    image_like = inputs.ndim >= 3 or inputs.dtype == np.uint8
    if top > 2.0 and image_like and float(np.min(inputs)) >= 0.0:
        warn(
            f"--inputs range up to {top:g} ({inputs.dtype}), like pixels in 0-255, while --sigma "
            f"{sigma:g} is noise for inputs in [0, 1]: scale the inputs to [0, 1] (x / 255) or "
            "raise --sigma in proportion"
        )


def check_on_grid(
    inputs: Any, grid: float, model_factory: Callable[[], Any], numpy_model: bool = False
) -> None:
    """Refuse, before the results file exists, inputs that are not on the ``--input-grid``,
    each taken as the run takes it: in the float type the model gets (a float32 module gets
    float64 inputs as float32), whose rounding an input on the grid may carry."""
    from ..runs.workers import model_input
    from ..sampling import BaseFunction, prepare_input, resolve_device

    model = model_factory()
    base = BaseFunction(model, resolve_device(None, model))
    for i, x in enumerate(inputs):
        try:
            prepare_input(model_input(x, numpy_model), base, base.device, grid)
        except ValueError as err:
            raise CLIError(f"input {i}: {err}") from None


def check_eps_in(eps_in: Sequence[float], settings: SmoothingSettings) -> None:
    """Warn about each ``eps_in`` above the largest certifiable radius (its rows get no
    eps_out), with the count it would need."""
    import numpy as np

    from ..planning import uncertifiable_message

    eps = np.asarray(eps_in, dtype=float)
    message = uncertifiable_message(settings, eps)
    if message is not None:
        flags = "--n-certify-cap" if settings.auto else "--n-certify (or --n-certify auto)"
        warn(f"{message}. Those rows will have eps_out null: raise {flags} or --sigma")


def check_targets(targets: Any, inputs: np.ndarray, outputs: Any) -> None:
    """Refuse ``--targets`` whose count differs from the inputs' or whose rows do not have the
    shape of the model's outputs (``outputs``: the model's batch on the first inputs)."""
    if len(targets) != len(inputs):
        raise CLIError(f"--targets has {len(targets)} rows for {len(inputs)} inputs")
    shape = getattr(outputs, "shape", None)
    if (
        shape is not None
        and hasattr(targets, "shape")
        and tuple(targets.shape[1:]) != tuple(shape[1:])
    ):
        raise CLIError(
            f"--targets rows have shape {tuple(targets.shape[1:])}, but the model's outputs have "
            f"shape {tuple(shape[1:])}: each row of --targets must be the clean output of the "
            "input in the same row"
        )


def _certify_run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data.datasets import file_sha256
    from ..planning import AbstentionRiskWarning
    from ..runs.runner import certify_dataset, check_device, check_results_path
    from ..runs.tables import format_table, summarize
    from ..runs.workers import resolve_metric
    from ..smoothing import CenterSmoothing
    from ..tasks.user import parse_model_spec, probed_user_model

    _set_threads(args.threads)
    check_results_path(args.out, "--out")
    task: Task | None = None
    numpy_inputs = False
    if args.model is not None or args.inputs is not None:
        inputs = user_inputs(args)
        numpy_inputs = args.numpy_model
        check_device(args.device)  # the probe below runs the model there
        factory, outputs = probed_user_model(
            args.model,
            inputs[:2],
            numpy_model=numpy_inputs,
            device=args.device,
            output=args.output,
        )
        targets = None if args.targets is None else _load_array(args.targets, "--targets")
        if targets is not None:
            check_targets(targets, inputs, outputs)
        check_user_inputs(inputs, args.sigma)
        indices = np.arange(len(inputs))
        run_info: dict[str, Any] = {
            "task": "user",
            "model": args.model,
            # a resume must see the same model file (the weights it loads are the user's to pin)
            "model_sha256": file_sha256(parse_model_spec(args.model)[0]),
            "inputs": str(args.inputs),
        }
        if numpy_inputs:
            run_info["numpy_model"] = True
        metrics = args.metric or ["l2"]
    else:
        if args.targets is not None or args.numpy_model or args.output is not None:
            raise CLIError("--targets, --numpy-model and --output go with --model and --inputs")
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
    settings = smoothing_settings(args, task)
    probe_settings = {k: v for k, v in settings.items() if k not in ("device", "compile")}
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", AbstentionRiskWarning)
        probe = CenterSmoothing(lambda b: b, metric=resolve_metric(metrics[0]), **probe_settings)
    for warning in said:
        warn(str(warning.message))
    check_eps_in(eps_in, probe.settings)
    if settings.get("input_grid") is not None:
        check_on_grid(inputs, settings["input_grid"], factory, numpy_inputs)
    with warnings.catch_warnings():  # said above, in one line
        warnings.simplefilter("ignore", AbstentionRiskWarning)
        rows = certify_dataset(
            factory,
            inputs,
            eps_in,
            metrics,
            settings,
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
            numpy_inputs=numpy_inputs,
        )
    if not args.quiet:
        print(format_table(summarize(rows)))
        print(f"{len(rows)} rows in {args.out}")
    return 0


# ----------------------------------------------------------------------------- plan
def _plan_arguments(p: argparse.ArgumentParser) -> None:
    cert = p.add_argument_group("what to plan for")
    add_radius_arguments(cert, "certify")
    _add_sample_arguments(cert, preset=True)
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")


def _plan_run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import fields

    from ..planning import format_plan, plan
    from ..runs.results_file import jsonable
    from ..settings import SmoothingSettings

    eps_in = [e * args.sigma for e in args.eps_in] if args.eps_in_relative else args.eps_in
    known = {f.name for f in fields(SmoothingSettings) if f.init}
    chosen = {k: v for k, v in smoothing_settings(args).items() if k in known}
    result = plan(SmoothingSettings(**chosen), eps_in)
    if args.json:
        print(json.dumps(jsonable(result.to_dict())))
    else:
        print(format_plan(result))
    return 0


# ----------------------------------------------------------------------------- demo
def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out-dir", type=Path, default=Path("centersmooth-demo"), help="where the figures go"
    )
    p.add_argument(
        "--sigma", type=_positive_float, default=0.25, help="training and smoothing noise"
    )
    p.add_argument("--n-digits", type=_positive_int, default=4, help="test digits to certify")
    p.add_argument("--retrain", action="store_true", help="train even if a cached model exists")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="training, digits and noise")
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
    "plan": Subcommand(
        "before a run: what given sample counts certify, the counts an eps_in needs, and how "
        "often an input would abstain",
        _plan_arguments,
        _plan_run,
    ),
    "report": _module_command(
        "runs.report", "summarise results files: markdown tables (median, IQR) and PNG plots"
    ),
    "attack": _module_command(
        "cli.attack", "attack the smoothed model within eps_in and compare with eps_out"
    ),
}


def register_subcommand(name: str, subcommand: Subcommand) -> None:
    """Add a subcommand (refuses to overwrite an existing one)."""
    if name in SUBCOMMANDS:
        raise ValueError(f"a subcommand named {name!r} is already registered")
    SUBCOMMANDS[name] = subcommand


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    debug_help = (
        f"show the full traceback of an error (also: {DEBUG_ENV}=1); by default a failure of "
        "your model, your files or your settings is one line"
    )
    parser = argparse.ArgumentParser(
        prog="centersmooth",
        description="Center smoothing: certified robustness for models with structured outputs.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"centersmooth {__version__}")
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in SUBCOMMANDS.items():
        p = sub.add_parser(
            name, help=command.help, description=command.help, formatter_class=HelpFormatter
        )
        command.add_arguments(p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
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


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command. A user error is one line on stderr, exit status 2; a run that started
    and stopped on an error of the model (its rows kept, resumable) exits with status 1. With
    ``--debug`` or ``CENTERSMOOTH_DEBUG=1`` the traceback is printed too."""
    from ..runs.results_file import ResultsFileExists
    from ..runs.runner import RunStopped

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("centersmooth: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if _debug(args):
            traceback.print_exc()
        message = str(err)
        if isinstance(err, RunStopped):
            message = err.advice("run the same command again with --resume to continue")
        elif isinstance(err, ResultsFileExists):
            message = err.advice("--resume")
        print(f"centersmooth {args.command}: error: {message}", file=sys.stderr)
        return EXIT_FAILED if isinstance(err, RunStopped) else EXIT_USAGE
