"""Certify a whole data set: an append-only, resumable results file, one writer, many workers.

``certify_dataset`` certifies every input with :meth:`CenterSmoothing.certify_metrics` (all the
distances of one input share its forward passes) and appends one JSON line per
(input, metric, eps_in) to a results file (schema: ``docs/results-schema.md``):

- the file starts with a header line holding the configuration, the package version and the seed;
- the rows of an input are appended together, flushed and fsynced, as soon as the input is done;
- the seed of an input derives from (run seed, input index) only, so its rows do not depend on the
  worker that computed them nor on the order of the inputs;
- ``resume=True`` skips the rows already in the file, drops (and reports) a torn last line left by
  a crash, and refuses a file whose header does not match the configuration. A run killed at any
  moment and resumed ends with exactly the rows of an uninterrupted run (timings aside).

Backends: ``"local"`` (this process, or ``workers`` spawned processes) and ``"ray"`` (Ray actors,
each building the model once; rows stream back to the single writer here; a worker that dies has
its inputs retried on a fresh actor). Ray is optional and imported only when asked for.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .center import distances_to, repeat
from .metrics import get_metric
from .smoothing import CenterSmoothing

logger = logging.getLogger(__name__)

FORMAT = "centersmooth-results"
SCHEMA_VERSION = 1
BACKENDS = ("local", "ray")
MAX_ATTEMPTS = 3  # tries per input when the worker running it dies (not when the model raises)

# Row fields, in file order; run_info fields follow. ``task`` comes from run_info.
ROW_FIELDS = (
    "input_index",
    "task",
    "metric",
    "sigma",
    "eps_in",
    "eps_out",
    "abstained",
    "smoothing_error",
    "base_error",
    "smoothed_error",
    "radius",
    "quantile_radius",
    "max_eps_in",
    "n_center",
    "n_check",
    "n_certify",
    "bound",
    "seed",
    "input_seed",
    "seconds",
    "version",
)
# CenterSmoothing arguments that the runner sets itself.
_RESERVED_SMOOTHING = ("base_function", "metric", "seed")
# Arguments that do not change the rows: left out of the configuration a resume must match.
_RUNTIME_SMOOTHING = ("device", "progress")


def _version() -> str:
    from . import __version__

    return __version__


# ------------------------------------------------------------------------------------ seeds


def input_seed(run_seed: int, input_index: int) -> int:
    """The seed of one input: a 63-bit integer that depends on (run seed, input index) only."""
    words = np.random.SeedSequence(int(run_seed), spawn_key=(int(input_index),)).generate_state(
        2, dtype=np.uint32
    )
    return int((int(words[0]) << 31) ^ int(words[1]))


# ------------------------------------------------------------------------------------ work


@dataclass(frozen=True)
class _Job:
    """What a worker needs to certify one input."""

    position: int  # position in this call's list of inputs
    index: int  # data set index
    x: np.ndarray
    target: Any
    seed: int
    keep_example: bool


@dataclass
class _Result:
    """The rows of one input, and (optionally) arrays for the report's example grid."""

    position: int
    index: int
    rows: list[dict[str, Any]]
    example: dict[str, np.ndarray] | None = None


class _Worker:
    """Builds the model once, then certifies inputs. Used in-process, in spawned processes and as
    a Ray actor, so every backend computes rows with the same code."""

    def __init__(
        self,
        model_factory: Callable[[], Any],
        smoothing: dict[str, Any],
        metrics: list[str],
        eps_in: list[float],
        run_seed: int,
        threads: int | None = None,
        gpus: float = 0.0,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        kwargs = dict(smoothing)
        if kwargs.get("device") is None and gpus > 0 and torch.cuda.is_available():
            kwargs["device"] = "cuda"
        self.smoother = CenterSmoothing(model_factory(), metric=metrics[0], **kwargs)
        self.metrics = [get_metric(m) for m in metrics]
        self.eps_in = list(eps_in)
        self.run_seed = int(run_seed)
        self.version = _version()

    def ready(self) -> bool:
        return True

    def certify(self, job: _Job) -> _Result:
        return self.certify_group([job])[0]

    def certify_group(self, jobs: Sequence[_Job]) -> list[_Result]:
        """Certify several inputs with their samples sharing forward passes
        (``certify_metrics_batch``); each input keeps its own seed, so its rows are the rows it
        gets alone. ``seconds`` is the group's time divided among its inputs."""
        start = time.perf_counter()
        xs = [torch.from_numpy(np.array(job.x)) for job in jobs]  # the model gets torch batches
        xs = [x if x.is_floating_point() else x.to(torch.get_default_dtype()) for x in xs]
        seeds = [job.seed for job in jobs]
        batch = self.smoother.certify_metrics_batch(xs, self.eps_in, self.metrics, seeds=seeds)
        bases = [self.smoother.base_function(x.to(self.smoother.device).unsqueeze(0)) for x in xs]
        seconds = (time.perf_counter() - start) / len(jobs)
        return [
            self._result(job, certs, base, seconds)
            for job, certs, base in zip(jobs, batch, bases, strict=True)
        ]

    def _result(self, job: _Job, certs: dict[str, Any], base: Any, seconds: float) -> _Result:
        sm = self.smoother
        target = None if job.target is None else _as_batch(job.target, base)
        rows = []
        example: dict[str, np.ndarray] | None = None
        if job.keep_example and isinstance(base, torch.Tensor):
            example = {"input": np.asarray(job.x), "base_output": _numpy(base[0])}
            if isinstance(target, torch.Tensor):
                example["target"] = _numpy(target[0])
        for metric in self.metrics:
            cert = certs[metric.name]
            base_error = smoothed_error = None
            if target is not None:
                base_error = float(distances_to(metric, base[0], target)[0])
                if not cert.abstained:
                    smoothed_error = float(distances_to(metric, cert.center, target)[0])
            if example is not None and not cert.abstained and isinstance(cert.center, torch.Tensor):
                example[f"center_{metric.name}"] = _numpy(cert.center)
            eps_out = np.atleast_1d(np.asarray(cert.eps_out, dtype=float))
            quantile = np.atleast_1d(np.asarray(cert.quantile_radius, dtype=float))
            for j, eps in enumerate(self.eps_in):
                rows.append(
                    {
                        "input_index": job.index,
                        "metric": metric.name,
                        "sigma": sm.sigma,
                        "eps_in": float(eps),
                        "eps_out": _finite(eps_out[j]),
                        "abstained": bool(cert.abstained),
                        "smoothing_error": cert.smoothing_error,
                        "base_error": base_error,
                        "smoothed_error": smoothed_error,
                        "radius": _finite(cert.radius),
                        "quantile_radius": _finite(quantile[j]),
                        "max_eps_in": _finite(cert.max_eps_in),
                        "n_center": sm.n_center,
                        "n_check": sm.n_check,
                        "n_certify": sm.n_certify,
                        "bound": sm.bound,
                        "seed": self.run_seed,
                        "input_seed": job.seed,
                        "seconds": seconds,
                        "version": self.version,
                    }
                )
        return _Result(job.position, job.index, rows, example)


def _as_batch(target: Any, like: Any) -> Any:
    """One target as a batch of one, on the device and in the dtype of the model's outputs."""
    if isinstance(like, torch.Tensor):
        t = torch.as_tensor(np.array(target))
        if like.is_floating_point():
            t = t.to(like.dtype)
        return t.to(like.device).unsqueeze(0)
    return repeat(target, 1)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _finite(value: Any) -> float | None:
    """A float for JSON, ``None`` for infinity or NaN (the file never holds Infinity or NaN)."""
    v = float(value)
    return v if math.isfinite(v) else None


# Process-pool backend: one _Worker per spawned process.
_PROCESS_WORKER: _Worker | None = None


def _process_init(*args: Any) -> None:
    global _PROCESS_WORKER
    _PROCESS_WORKER = _Worker(*args)


def _process_certify(job: _Job) -> _Result:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.certify(job)


# ------------------------------------------------------------------------------------ file


def _jsonable(value: Any) -> Any:
    """Plain JSON types (NumPy scalars and arrays converted, non-finite floats as None)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _finite(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, torch.device):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} to the results file: {value!r}")


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, allow_nan=False, separators=(", ", ": ")) + "\n"


@dataclass
class Results:
    """A results file as read back: its header, its rows, and where a torn last line began."""

    header: dict[str, Any] | None
    rows: list[dict[str, Any]]
    torn: bool  # the file ended in a partial line (a crash in mid-write), which was dropped
    valid_bytes: int  # length of the file without that partial line


def read_results(path: str | os.PathLike[str]) -> Results:
    """Header and rows of a results file. A torn last line (a crash in mid-write) is dropped and
    reported; a bad line anywhere else is an error."""
    path = Path(path)
    data = path.read_bytes()
    torn = False
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        logger.warning(
            "%s: dropped a torn last line (%d bytes, left by an interrupted write)",
            path,
            len(data) - keep,
        )
        torn = True
        data = data[:keep]
    header = None
    rows = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not a JSON record ({err})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: not a JSON object")
        if record.get("record") == "header":
            if header is not None:
                raise ValueError(f"{path}, line {number}: a second run header")
            header = record
        else:
            rows.append(record)
    if rows and header is None:
        raise ValueError(f"{path}: rows without a run header: not a centersmooth results file")
    return Results(header, rows, torn, len(data))


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())


class RunnerError(RuntimeError):
    """A run that cannot go on: its file is in use, a worker died too often, the model failed in
    a worker. The message says which input and why."""


class _Writer:
    """Appends records to the results file; each call is one write, flushed and fsynced. Holds an
    exclusive lock on the file (POSIX ``flock``) so that two runs never append to the same file;
    the kernel releases it when the process dies, even by SIGKILL."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "ab")  # noqa: SIM115 - closed in close()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise RunnerError(
                f"{path} is being written by another run; wait for it to end or choose another "
                "output"
            ) from None

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        self.file.write("".join(_dumps(r) for r in records).encode("utf-8"))
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


# ------------------------------------------------------------------------------------ config


def _normalise_smoothing(smoothing: dict[str, Any]) -> dict[str, Any]:
    """The CenterSmoothing arguments with every default filled in, checked by name."""
    params = inspect.signature(CenterSmoothing.__init__).parameters
    known = [p for p in params if p not in ("self", *_RESERVED_SMOOTHING)]
    for key in smoothing:
        if key in _RESERVED_SMOOTHING:
            raise ValueError(
                f"smoothing must not set {key!r}: the runner sets it (metrics go in `metrics`, "
                "and each input's seed derives from the run seed)"
            )
        if key not in known:
            raise ValueError(f"unknown smoothing argument {key!r}; known: {', '.join(known)}")
    full = {p: params[p].default for p in known}
    full.update(smoothing)
    full["progress"] = False
    return full


def _digest(indices: list[int], inputs: np.ndarray, targets: Any) -> str:
    """SHA-256 over the indices, the inputs and the targets: a resume must see the same data."""
    h = hashlib.sha256()
    h.update(np.asarray(indices, dtype=np.int64).tobytes())
    arr = np.ascontiguousarray(inputs)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    if targets is not None:
        if isinstance(targets, np.ndarray) and targets.dtype != object:
            t = np.ascontiguousarray(targets)
            h.update(f"{t.dtype.str}{t.shape}".encode())
            h.update(t.tobytes())
        else:
            h.update(json.dumps([repr(t) for t in targets]).encode())
    return h.hexdigest()


def _config(
    eps_in: list[float],
    metrics: list[str],
    smoothing: dict[str, Any],
    seed: int,
    run_info: dict[str, Any],
    digest: str,
) -> dict[str, Any]:
    """What a resumed run must match: everything that changes a row."""
    return _jsonable(
        {
            "eps_in": eps_in,
            "metrics": metrics,
            "smoothing": {k: v for k, v in smoothing.items() if k not in _RUNTIME_SMOOTHING},
            "seed": seed,
            "run_info": run_info,
            "inputs_sha256": digest,
            "version": _version(),
        }
    )


def _mismatch(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _mismatch(a, b, f"{prefix}{key}.")
        elif a != b:
            if key == "inputs_sha256":
                diffs.append("the inputs, indices or targets differ")
            else:
                diffs.append(f"{prefix}{key}: {a!r} in the file, {b!r} now")
    return diffs


# ------------------------------------------------------------------------------------ entry


def certify_dataset(
    model_factory: Callable[[], Any],
    inputs: np.ndarray,
    eps_in: Sequence[float],
    metrics: Sequence[str],
    smoothing: dict[str, Any],
    out: str | os.PathLike[str],
    run_info: dict[str, Any],
    *,
    seed: int = 0,
    targets: Any = None,
    indices: Sequence[int] | None = None,
    resume: bool = False,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    gpus_per_worker: float = 0.0,
    progress: bool = True,
    examples: int = 8,
    inputs_per_batch: int = 1,
) -> list[dict[str, Any]]:
    """Certify every input at every ``eps_in`` under every metric; append the rows to ``out``.

    ``model_factory`` is a picklable zero-argument callable returning the base function; it is
    called once per worker. ``inputs`` is an array ``(N, ...)`` (each input is passed to the model
    as a torch tensor); ``targets`` (optional, ``N`` clean ground-truth outputs) gives
    ``base_error = d(f(x), target)`` and ``smoothed_error = d(center, target)``. ``indices`` are
    the data set indices of the inputs (default ``range(N)``); the seed of an input derives from
    ``(seed, index)``. ``smoothing`` holds :class:`CenterSmoothing` arguments (not ``metric`` nor
    ``seed``); ``run_info`` (task, dataset, preset, ...) goes into the header and every row.

    An existing ``out`` is continued only with ``resume=True``: rows already there are kept and
    skipped, a torn last line is dropped and reported, a header with another configuration is
    refused. ``backend="ray"`` spreads the inputs over ``workers`` Ray actors (on the cluster at
    ``address`` if given; ``gpus_per_worker`` GPUs each). The first ``examples`` inputs have their
    input, base output, target and centers saved in ``<out stem>.examples/`` for the report.
    ``inputs_per_batch > 1`` certifies that many inputs together (local backend, one worker), their
    samples sharing forward passes: faster for small models, the same rows.

    Returns the rows of every requested (input, metric, eps_in), in input, metric, eps_in order.
    """
    inputs, eps_list, metric_names, indices_list, run_info = _check_arguments(
        inputs, eps_in, metrics, indices, targets, run_info, seed, backend, workers, gpus_per_worker
    )
    if isinstance(inputs_per_batch, bool) or not isinstance(inputs_per_batch, int):
        raise ValueError(f"inputs_per_batch must be a positive integer, got {inputs_per_batch!r}")
    if inputs_per_batch < 1:
        raise ValueError(f"inputs_per_batch must be a positive integer, got {inputs_per_batch!r}")
    full_smoothing = _normalise_smoothing(dict(smoothing))
    # Build one smoother here: checks every argument before any worker starts.
    CenterSmoothing(lambda b: b, metric=metric_names[0], **full_smoothing)
    digest = _digest(indices_list, inputs, targets)
    config = _config(eps_list, metric_names, full_smoothing, seed, run_info, digest)
    path = Path(out)
    examples_dir = path.with_name(path.stem + ".examples")

    if backend == "ray":
        _import_ray()  # a missing Ray is reported before the results file is created
    writer = _Writer(path)  # lock the file before reading it
    try:
        existing = _prepare_file(path, config, resume)
    except BaseException:
        writer.close()
        raise
    done = {_key(r) for r in existing}
    wanted = [(m, e) for m in metric_names for e in eps_list]
    jobs = []
    for position, index in enumerate(indices_list):
        if all((index, m, e) in done for m, e in wanted):
            continue
        jobs.append(
            _Job(
                position=position,
                index=index,
                x=inputs[position],
                target=None if targets is None else targets[position],
                seed=input_seed(seed, index),
                keep_example=position < examples,
            )
        )

    if path.stat().st_size == 0:  # a new file (or one that held only a torn header)
        header = {
            "record": "header",
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "version": _version(),
            "seed": int(seed),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "n_inputs": len(indices_list),
            "examples_dir": examples_dir.name if examples > 0 else None,
            "config": config,
        }
        writer.append([header])
    bar = tqdm(
        total=len(indices_list),
        initial=len(indices_list) - len(jobs),
        desc="certify",
        unit="input",
        disable=not progress,
        dynamic_ncols=True,
    )
    worker_args = (model_factory, full_smoothing, metric_names, eps_list, seed)
    try:
        if backend == "ray":
            results = _run_ray(jobs, worker_args, workers, address, gpus_per_worker)
        elif workers > 1:
            results = _run_processes(jobs, worker_args, workers)
        else:
            results = _run_inline(jobs, worker_args, inputs_per_batch)
        for result in results:
            if result.example is not None:
                _save_example(examples_dir, result.index, result.example)
            new_rows = []
            for row in result.rows:
                if _key(row) in done:
                    continue
                new_rows.append(_full_row(row, run_info))
                done.add(_key(row))
            writer.append(new_rows)
            existing.extend(new_rows)
            bar.update(1)
    finally:
        bar.close()
        writer.close()

    order = {(i, m, e): n for n, (i, (m, e)) in enumerate(_product(indices_list, wanted))}
    rows = [r for r in existing if _key(r) in order]
    rows.sort(key=lambda r: order[_key(r)])
    return rows


def _product(indices: list[int], wanted: list[tuple[str, float]]) -> Iterator[Any]:
    for i in indices:
        for pair in wanted:
            yield i, pair


def _key(row: dict[str, Any]) -> tuple[int, str, float]:
    return int(row["input_index"]), str(row["metric"]), float(row["eps_in"])


def _full_row(row: dict[str, Any], run_info: dict[str, Any]) -> dict[str, Any]:
    full = {name: row.get(name) for name in ROW_FIELDS}
    full["task"] = run_info.get("task")
    for key, value in run_info.items():
        if key != "task":
            full[key] = value
    return _jsonable(full)


def _check_arguments(
    inputs: Any,
    eps_in: Sequence[float],
    metrics: Sequence[str],
    indices: Sequence[int] | None,
    targets: Any,
    run_info: dict[str, Any],
    seed: int,
    backend: str,
    workers: int,
    gpus_per_worker: float,
) -> tuple[np.ndarray, list[float], list[str], list[int], dict[str, Any]]:
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    if not isinstance(inputs, np.ndarray) or inputs.ndim < 2:
        raise ValueError("inputs must be a NumPy array of shape (N, ...) with one input per row")
    n = inputs.shape[0]
    eps_arr = np.atleast_1d(np.asarray(eps_in, dtype=float))
    if eps_arr.ndim != 1 or eps_arr.size == 0 or not np.all(np.isfinite(eps_arr)):
        raise ValueError(f"eps_in must be a non-empty list of finite numbers, got {eps_in!r}")
    if np.any(eps_arr < 0) or len(set(eps_arr.tolist())) != eps_arr.size:
        raise ValueError(f"eps_in must be distinct non-negative numbers, got {eps_in!r}")
    if isinstance(metrics, str):
        metrics = [metrics]
    names = [get_metric(m).name for m in metrics]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"metrics must be a non-empty list of distinct names, got {metrics!r}")
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    if len(idx) != n:
        raise ValueError(f"indices has {len(idx)} entries for {n} inputs")
    if len(set(idx)) != n:
        raise ValueError("indices must be distinct")
    if targets is not None and len(targets) != n:
        raise ValueError(f"targets has {len(targets)} entries for {n} inputs")
    if not isinstance(run_info, dict):
        raise TypeError(f"run_info must be a dict, got {type(run_info).__name__}")
    clash = sorted(set(run_info) & (set(ROW_FIELDS) - {"task"}) | ({"record"} & set(run_info)))
    if clash:
        raise ValueError(f"run_info must not set the row fields {clash}")
    run_info = _jsonable(dict(run_info))
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not (isinstance(gpus_per_worker, int | float) and gpus_per_worker >= 0):
        raise ValueError(f"gpus_per_worker must be a non-negative number, got {gpus_per_worker!r}")
    return inputs, [float(e) for e in eps_arr], names, idx, run_info


def _prepare_file(path: Path, config: dict[str, Any], resume: bool) -> list[dict[str, Any]]:
    """Rows already in ``path`` (after dropping a torn last line) if resuming; else [] for a new
    file. Refuses to overwrite, and refuses a header with another configuration."""
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        return []
    if not resume:
        raise FileExistsError(
            f"{path} already exists; resume it (resume=True, --resume) or choose another output"
        )
    existing = read_results(path)
    if existing.header is None:
        if not path.read_bytes()[: existing.valid_bytes].strip():
            _truncate(path, 0)  # only a torn header: start afresh
            return []
        raise ValueError(f"{path} has no run header: not a centersmooth results file")
    if existing.header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a centersmooth results file (format {FORMAT!r})")
    diffs = _mismatch(existing.header.get("config", {}), config)
    if diffs:
        raise ValueError(
            f"cannot resume {path}: it was written with another configuration ("
            + "; ".join(diffs)
            + "). Use the same settings, or write to a new file."
        )
    if existing.torn:
        _truncate(path, existing.valid_bytes)
    return existing.rows


def _save_example(directory: Path, index: int, arrays: dict[str, np.ndarray]) -> None:
    """Write ``input_<index>.npz`` atomically (a crash leaves the old file or none)."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"input_{index}.npz"
    tmp = directory / f".input_{index}.tmp.npz"
    payload: dict[str, Any] = dict(arrays)
    np.savez_compressed(tmp, **payload)
    os.replace(tmp, final)


# ------------------------------------------------------------------------------------ backends


def _run_inline(
    jobs: list[_Job], worker_args: tuple[Any, ...], inputs_per_batch: int = 1
) -> Iterator[_Result]:
    if not jobs:
        return
    worker = _Worker(*worker_args)
    for start in range(0, len(jobs), inputs_per_batch):
        yield from worker.certify_group(jobs[start : start + inputs_per_batch])


def _run_processes(
    jobs: list[_Job], worker_args: tuple[Any, ...], workers: int
) -> Iterator[_Result]:
    """``workers`` spawned processes, each with its share of the CPU threads. A pool that breaks
    (a worker killed) is rebuilt and the unfinished inputs resubmitted."""
    import multiprocessing

    if not jobs:
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    pending = list(jobs)
    attempts = {job.position: 0 for job in jobs}
    ctx = multiprocessing.get_context("spawn")
    while pending:
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(pending)),
            mp_context=ctx,
            initializer=_process_init,
            initargs=(*worker_args, threads),
        )
        futures: dict[Future[_Result], _Job] = {}
        try:
            futures = {pool.submit(_process_certify, job): job for job in pending}
            pending = []
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in finished:
                    job = futures.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        attempts[job.position] += 1
                        if attempts[job.position] >= MAX_ATTEMPTS:
                            raise RunnerError(
                                f"input {job.index}: its worker died {MAX_ATTEMPTS} times"
                            ) from None
                        pending.append(job)
                        continue
                    yield result
        finally:
            # do not wait for queued inputs when the run stops early (an error, Ctrl-C)
            pool.shutdown(wait=not futures, cancel_futures=True)
        if pending:
            logger.warning("a worker process died; retrying %d inputs", len(pending))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError(
            "backend='ray' needs Ray: pip install 'centersmooth[ray]' (or pip install ray)"
        ) from None
    return ray


def _ship_by_value(ray: Any, fn: Any) -> None:
    """Let Ray workers unpickle ``fn`` even when its module is not importable there (a model file
    loaded by path, a test helper): its module is pickled by value unless it is installed."""
    import sys

    obj = getattr(fn, "func", fn)
    name = getattr(obj, "__module__", None) or type(obj).__module__
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) or ""
    if module is None or name == "__main__" or not origin:
        return
    installed = ("site-packages" in origin) or ("dist-packages" in origin)
    if installed or name.split(".")[0] in ("centersmooth", "torch", "numpy", "functools"):
        return
    try:
        ray.cloudpickle.register_pickle_by_value(module)
    except (ValueError, AttributeError):  # pragma: no cover - older cloudpickle
        pass


def _run_ray(
    jobs: list[_Job],
    worker_args: tuple[Any, ...],
    workers: int,
    address: str | None,
    gpus_per_worker: float,
) -> Iterator[_Result]:
    """Ray actors, two inputs in flight each. An actor that dies is replaced and its inputs are
    resubmitted (at most ``MAX_ATTEMPTS`` tries per input); an error raised by the model stops
    the run."""
    ray = _import_ray()
    if not jobs:
        return
    started = False
    if not ray.is_initialized():
        if address is None:
            # a fresh local instance, even if `ray start` left a cluster address behind
            ray.init(address="local", include_dashboard=False, log_to_driver=True)
        else:
            try:
                ray.init(address=address, log_to_driver=True)
            except (ConnectionError, RuntimeError) as err:
                raise ConnectionError(
                    f"could not connect to the Ray cluster at {address!r}: {err}. Is `ray start "
                    "--head` running there? If the cluster uses token authentication (`ray "
                    "start` of Ray 2.60 enables it), set RAY_AUTH_MODE=token and copy "
                    "~/.ray/auth_token from the head (docs/distributed.md)"
                ) from None
        started = True
    _ship_by_value(ray, worker_args[0])
    actor_cls = ray.remote(num_cpus=1, num_gpus=gpus_per_worker, max_restarts=0)(_Worker)
    transient = tuple(
        getattr(ray.exceptions, name)
        for name in ("RayActorError", "WorkerCrashedError", "ActorUnavailableError")
        if hasattr(ray.exceptions, name)
    )

    def spawn() -> Any:
        return actor_cls.remote(*worker_args, threads=None, gpus=gpus_per_worker)

    actors = [spawn() for _ in range(min(workers, len(jobs)))]
    queue = list(reversed(jobs))
    attempts = {job.position: 0 for job in jobs}
    in_flight: dict[Any, tuple[Any, _Job]] = {}
    per_actor = 2
    try:

        def fill() -> None:
            for actor in actors:
                busy = sum(1 for a, _ in in_flight.values() if a is actor)
                while busy < per_actor and queue:
                    job = queue.pop()
                    in_flight[actor.certify.remote(job)] = (actor, job)
                    busy += 1

        fill()
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            ref = ready[0]
            actor, job = in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except transient as err:
                attempts[job.position] += 1
                if attempts[job.position] >= MAX_ATTEMPTS:
                    raise RunnerError(
                        f"input {job.index}: its Ray worker died {MAX_ATTEMPTS} times ({err})"
                    ) from None
                logger.warning("a Ray worker died; retrying input %d", job.index)
                queue.append(job)
                if actor in actors:
                    actors.remove(actor)
                    ray.kill(actor, no_restart=True)
                    actors.append(spawn())
                fill()
                continue
            except ray.exceptions.RayTaskError as err:
                raise RunnerError(f"input {job.index} failed in a Ray worker: {err}") from None
            yield result
            fill()
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if started:
            ray.shutdown()
