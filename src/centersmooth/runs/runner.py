"""Certify a whole data set: an append-only, resumable results file, one writer, many workers.

``certify_dataset`` certifies every input with :meth:`CenterSmoothing.certify_metrics` (all the
distances of one input share its forward passes) and appends one JSON line per
(input, metric, eps_in) to a results file (schema: ``docs/results-schema.md``):

- the file starts with a header line holding the configuration, the package version and the seed;
- the rows of an input are appended together, flushed and fsynced, as soon as the input is done;
- the seed of an input is the run seed plus its index (``input_seed``, recorded in each row), so
  its rows do not depend on the worker that computed them nor on the order of the inputs, and
  one ``certify`` call with that seed gives them again;
- ``resume=True`` skips the rows already in the file, drops (and reports) a torn last line left by
  a crash, and refuses a file whose header does not match the configuration. A run killed at any
  moment and resumed ends with exactly the rows of an uninterrupted run (timings aside).

Backends (``workers.py``): ``"local"`` (this process, or ``workers`` spawned processes) and
``"ray"`` (Ray actors, each building the model once; rows stream back to the single writer here; a
worker that dies has its inputs retried on a fresh actor). Ray is optional and imported only when
asked for. The file itself (schema, reading, the locked writer): ``results_file.py``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

# torch, the smoother and the workers are imported when a run starts: reading results files
# (``read_results``, ``centersmooth report``) and the command's --help need no torch.
from .results_file import (
    FORMAT,
    NOISE_STREAM,
    ROW_FIELDS,
    SCHEMA_VERSION,
    PlatformMismatchError,
    Results,
    RunnerError,
    Writer,
    describe_platform,
    jsonable,
    package_version,
    platforms_differ,
    prepare_file_header,
    read_results,
)

if TYPE_CHECKING:
    from .workers import Worker

__all__ = ["ROW_FIELDS", "Results", "RunnerError", "certify_dataset", "input_seed", "read_results"]

BACKENDS = ("local", "ray")

# How each input's seed follows from the run seed (``input_seed``), in the header's ``config``:
# files written before the rule have none and are not resumed with it.
INPUT_SEEDS = "seed + input_index"
# CenterSmoothing arguments that the runner sets itself.
_RESERVED_SMOOTHING = ("base_function", "metric", "seed")
# Arguments that do not change the rows: left out of the configuration a resume must match.
_RUNTIME_SMOOTHING = ("device", "progress", "check_metric")
# Arguments that change nothing unless n_certify="auto": left out of the configuration otherwise.
_AUTO_SMOOTHING = ("n_certify_cap", "n_certify_tolerance")
# the pairwise bound's counts change nothing without it
_PAIR_SMOOTHING = ("pair_rows", "pair_columns")


# ------------------------------------------------------------------------------------ seeds


def input_seed(run_seed: int, input_index: int) -> int:
    """The seed of one input: ``(run seed + input index) mod 2**64``, the library's rule for a
    batch (``sampling.seed_at``), so that the row of input ``i`` is
    ``CenterSmoothing(..., seed=run_seed).certify_batch(inputs)[i]`` and, in one call,
    ``certify(inputs[i], eps_in, seed=row["input_seed"])``."""
    from ..sampling import seed_at  # torch only when it is needed

    return seed_at(run_seed, input_index)


# ------------------------------------------------------------------------------------ config


def _normalise_smoothing(smoothing: dict[str, Any]) -> dict[str, Any]:
    """The CenterSmoothing arguments with every default filled in, checked by name."""
    from ..smoothing import CenterSmoothing

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
    _hash_value(h, np.asarray(inputs))
    if targets is not None:
        _hash_value(h, targets)
    return h.hexdigest()


def _hash_value(h: Any, value: Any) -> None:
    """Feed every byte of ``value`` to ``h``: arrays and tensors by their data (``repr`` would
    cut long ones short), sequences item by item, anything else by its ``repr``."""
    torch = sys.modules.get("torch")  # a tensor means torch is imported already
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) and value.dtype != object:
        t = np.ascontiguousarray(value)
        h.update(f"{t.dtype.str}{t.shape}".encode())  # as before: old files still resume
        h.update(t.tobytes())
    elif isinstance(value, list | tuple | np.ndarray):
        h.update(f"seq{len(value)}".encode())
        for item in value:
            _hash_value(h, item)
    else:
        h.update(json.dumps(repr(value)).encode())


def _config(
    eps_in: list[float],
    metrics: list[str],
    smoothing: dict[str, Any],
    seed: int,
    run_info: dict[str, Any],
    digest: str,
    paired: list[str],
) -> dict[str, Any]:
    """What a resumed run must match: everything that changes a row (the cap and tolerance of
    ``n_certify="auto"`` and the pairwise bound's counts only where they are used).
    ``pairwise_bound`` is written as what it resolved to for these distances (``paired``, those
    the pairwise bound serves): ``True`` for all, ``False`` for none (as files from before it
    read), ``None`` (the default, which picks the same ones again) for some; each gives the rows
    again as ``CenterSmoothing``'s argument."""
    unused: tuple[str, ...] = () if smoothing.get("n_certify") == "auto" else _AUTO_SMOOTHING
    served = True if paired == metrics else None if paired else False
    smoothing = {**smoothing, "pairwise_bound": served}
    if not paired:
        unused += _PAIR_SMOOTHING
    return jsonable(
        {
            "eps_in": eps_in,
            "metrics": metrics,
            "smoothing": {
                k: v for k, v in smoothing.items() if k not in _RUNTIME_SMOOTHING + unused
            },
            "seed": seed,
            "run_info": run_info,
            "inputs_sha256": digest,
            "version": package_version(),
            "noise_stream": NOISE_STREAM,
            "input_seeds": INPUT_SEEDS,
        }
    )


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
    numpy_inputs: bool = False,
) -> list[dict[str, Any]]:
    """Certify every input at every ``eps_in`` under every metric; append the rows to ``out``.

    ``model_factory`` is a picklable zero-argument callable returning the base function; it is
    called once per worker. ``inputs`` is an array ``(N, ...)`` (each input is passed to the model
    as a torch tensor); ``targets`` (optional, ``N`` clean ground-truth outputs) gives
    ``base_error = d(f(x), target)`` and ``smoothed_error = d(center, target)``. ``indices`` are
    the data set indices of the inputs (default ``range(N)``); the seed of an input is
    ``seed + index`` (``input_seed``). ``smoothing`` holds :class:`CenterSmoothing` arguments
    (not ``metric`` nor ``seed``); ``run_info`` (task, dataset, preset, ...) goes into the
    header and every row.

    An existing ``out`` is continued only with ``resume=True``: rows already there are kept and
    skipped, a torn last line is dropped and reported, a header with another configuration is
    refused. ``backend="ray"`` spreads the inputs over ``workers`` Ray actors (on the cluster at
    ``address`` if given; ``gpus_per_worker`` GPUs each). The first ``examples`` inputs have their
    input, base output, target and centers saved in ``<out stem>.examples/`` for the report.
    ``inputs_per_batch > 1`` certifies that many inputs together (local backend, one worker), their
    samples sharing forward passes: faster for small models, and the same rows where the model's
    outputs do not depend on its batch (README, "What the batch size changes"). ``numpy_inputs``
    hands each input to :class:`CenterSmoothing` as a NumPy array (the model then receives NumPy
    batches of the inputs' dtype: scikit-learn and other NumPy models); by default it is a torch
    tensor (an ``nn.Module`` receives its parameters' float dtype).

    The model is built once here and fingerprinted (the SHA-256 of an ``nn.Module``'s weights,
    else its outputs on the first input); the fingerprint goes into the header, and a worker or a
    resumed run that builds another model is refused (``ModelMismatchError``): the factory must
    build the same model every call. A device this machine lacks, an input row with NaN or
    infinite values, and settings the model's outputs refute (a distance that does not take them,
    a distance of yours that fails its test, candidate counts for distances not in use: tried on
    noisy copies of the first input, ``Worker.preflight``) are refused before the file is
    created. ``metrics`` are registered names, or ``path/to/file.py:name`` for a distance in a
    Python file (``metrics.base.load_metric_file``; the file's SHA-256 goes into the header and a
    resume must see the same). An error of the model or the distance on an input stops the run with
    :class:`RunStopped` naming the input; the rows already written stay, and ``resume=True``
    continues.

    Returns the rows of every requested (input, metric, eps_in), in input, metric, eps_in order.
    """
    check_results_path(Path(out))
    inputs, eps_list, metric_specs, indices_list, run_info, targets = _check_arguments(
        inputs, eps_in, metrics, indices, targets, run_info, seed, backend, workers, gpus_per_worker
    )
    if isinstance(inputs_per_batch, bool) or not isinstance(inputs_per_batch, int):
        raise ValueError(f"inputs_per_batch must be a positive integer, got {inputs_per_batch!r}")
    if inputs_per_batch < 1:
        raise ValueError(f"inputs_per_batch must be a positive integer, got {inputs_per_batch!r}")
    if inputs_per_batch > 1 and (backend == "ray" or workers > 1):
        raise ValueError(
            "inputs_per_batch > 1 works with the local backend and one worker (several workers "
            "already run inputs side by side); drop one of the two"
        )
    from ..smoothing import CenterSmoothing
    from .workers import (
        SAME_MODEL_HINT,
        Job,
        ModelMismatchError,
        Worker,
        WorkerOptions,
        fingerprint_mismatch,
        import_ray,
        resolve_metric,
        run_inline,
        run_processes,
        run_ray,
    )

    resolved = [resolve_metric(m) for m in metric_specs]
    metric_names = [m.name for m in resolved]
    full_smoothing = _normalise_smoothing(dict(smoothing))
    check_device(full_smoothing.get("device"))
    # Build one smoother here: checks every argument before any worker starts.
    probe = CenterSmoothing(lambda b: b, metric=resolved[0], **full_smoothing)
    probe.settings.check_candidate_names(resolved)
    planned = probe.settings
    digest = _digest(indices_list, inputs, targets)
    paired = [m.name for m in resolved if planned.pairwise_for(m)]
    config = _config(eps_list, metric_names, full_smoothing, seed, run_info, digest, paired)
    files = _metric_files(metric_specs, resolved)
    if files:  # a resume must see the same distance files (absent otherwise: older files match)
        config["metric_files"] = files
    path = Path(out)
    examples_dir = path.with_name(path.stem + ".examples")

    if backend == "ray":
        import_ray()  # a missing Ray is reported before the results file is created
    # The model this run certifies, built here once before the file is touched (a factory that
    # fails leaves no file behind): its fingerprint goes into the header, and every worker (and
    # every resumed run) must build the same model.
    worker_args: tuple[Any, ...] = (model_factory, full_smoothing, metric_specs, eps_list, seed)
    wanted = [(m, e) for m in metric_names for e in eps_list]
    share = _memory_share(backend, workers, gpus_per_worker)
    fingerprint: dict[str, Any] | None = None
    # where the rows are computed: known here for the local backend; a Ray run takes its
    # workers' (the header is then written with the first rows)
    platform: dict[str, Any] | None = None
    local: Worker | None = None
    if not (resume and _all_done(path, indices_list, wanted)):
        reference = Worker(
            model_factory,
            full_smoothing,
            metric_specs,
            eps_list,
            seed,
            WorkerOptions(numpy_inputs, inputs[0], memory_share=share),
        )
        reference.preflight(inputs[0])  # the settings against the model's outputs, up front
        fingerprint = reference.fingerprint
        if backend == "local":
            platform = reference.platform
        if backend == "local" and workers == 1:
            local = reference
        del reference  # else the workers build their own
    worker_args = (*worker_args, WorkerOptions(numpy_inputs, inputs[0], fingerprint, share))

    writer = Writer(path)  # lock the file before reading it
    try:
        existing, old_header = prepare_file_header(path, config, resume)
        old_print = None if old_header is None else old_header.get("model_fingerprint")
        if old_print is not None and fingerprint is not None:
            problem = fingerprint_mismatch(old_print, fingerprint)
            if problem:
                raise ModelMismatchError(
                    f"cannot resume {path}: the model built now differs from the one that wrote "
                    f"it ({problem}). " + SAME_MODEL_HINT
                )
        expected = None if old_header is None else old_header.get("platform")
        _check_platform(expected, platform, f"cannot resume {path}")
    except BaseException:
        writer.close()
        raise
    done = {_key(r) for r in existing}
    jobs = []
    for position, index in enumerate(indices_list):
        if all((index, m, e) in done for m, e in wanted):
            continue
        jobs.append(
            Job(
                position=position,
                index=index,
                x=inputs[position],
                target=None if targets is None else targets[position],
                seed=input_seed(seed, index),
                keep_example=position < examples,
            )
        )

    header: dict[str, Any] | None = None
    if path.stat().st_size == 0:  # a new file (or one that held only a torn header)
        header = {
            "record": "header",
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "version": package_version(),
            "seed": int(seed),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "n_inputs": len(indices_list),
            "examples_dir": examples_dir.name if examples > 0 else None,
            "config": config,
            "model_fingerprint": fingerprint,
            "platform": platform,
        }
        expected = platform
        if platform is not None:
            writer.append([header])
            header = None
    finished = len(indices_list) - len(jobs)
    bar = PassProgress(planned.forward_passes, len(indices_list), finished, progress)
    if local is not None:
        local.smoother.pass_counter = bar.passes
    try:
        if backend == "ray":
            results = run_ray(jobs, worker_args, workers, address, gpus_per_worker)
        elif workers > 1:
            results = run_processes(jobs, worker_args, workers)
        else:
            results = run_inline(jobs, worker_args, inputs_per_batch, worker=local)
        for result in results:
            if expected is None:
                expected = result.platform
            _check_platform(expected, result.platform, f"input {result.index}")
            if result.example is not None:
                _save_example(examples_dir, result.index, result.example)
            new_rows = []
            for row in result.rows:
                if _key(row) in done:
                    continue
                new_rows.append(_full_row(row, run_info))
                done.add(_key(row))
            records = new_rows
            if header is not None:  # a Ray run's new file: the header takes its workers' platform
                records = [{**header, "platform": result.platform}, *new_rows]
                header = None
            writer.append(records)
            existing.extend(new_rows)
            finished += 1
            bar.input_done(result.rows)
    except (RunnerError, ValueError, TypeError, RuntimeError, OSError) as err:
        if isinstance(err, ModelMismatchError | PlatformMismatchError):
            raise
        kept = f"{finished} of {len(indices_list)} inputs are done and kept in {path}"
        raise RunStopped(str(err), kept) from err
    finally:
        if local is not None:
            local.smoother.pass_counter = None
        bar.close()
        writer.close()

    order = {(i, m, e): n for n, (i, (m, e)) in enumerate(_product(indices_list, wanted))}
    rows = [r for r in existing if _key(r) in order]
    rows.sort(key=lambda r: order[_key(r)])
    return rows


SLOW_CERTIFICATE_SECONDS = 120.0  # a certificate estimated to take longer is warned about


class SlowCertificateWarning(UserWarning):
    """One certificate of the run is estimated to take more than ``SLOW_CERTIFICATE_SECONDS``
    (from the first forward passes, or from the first input where the workers run elsewhere);
    the message says how long and what shortens it."""


class PassProgress:
    """The run's progress bar, counted in forward passes of the base function (one certificate
    can take minutes on a large model), with inputs done beside it.

    The bar starts at ``planned`` passes per input (an accepted input's count); as each input
    finishes its own count (its rows' ``forward_passes``) replaces its planned share, so the
    total and the ETA follow inputs that abstain early. Passes reported live (``passes``: the
    in-process worker's hook) move the bar as they happen; the others move it when their input
    is done. From the first live passes (or the first input done) the time one certificate will
    take is estimated, and a long one warned about once (:class:`SlowCertificateWarning`).
    """

    def __init__(self, planned: int, n_inputs: int, done: int, progress: bool) -> None:
        from tqdm.auto import tqdm

        self.planned, self.n_inputs, self.done = planned, n_inputs, done
        self.total, self.count = planned * n_inputs, planned * done  # the bar's, kept here too
        self.bar = tqdm(
            total=planned * n_inputs,
            initial=planned * done,
            desc="certify",
            unit="pass",
            unit_scale=True,
            disable=not progress,
            dynamic_ncols=True,
        )
        self.unclaimed = 0  # passes counted live that no finished input has claimed yet
        self.first: tuple[float, int] | None = None  # (time, passes) at the first live report
        self.warned = False
        self._postfix()

    def passes(self, n: int) -> None:
        """``n`` forward passes just made (the in-process worker's ``pass_counter``)."""
        self.unclaimed += n
        self._move(n)
        now = time.perf_counter()
        if self.first is None:
            self.first = (now, self.unclaimed)
            return
        start, at = self.first
        made = self.unclaimed - at
        if not self.warned and now - start >= 2.0 and made > 0:
            self._check_slow((now - start) / made * self.planned, "the first forward passes")

    def input_done(self, rows: Sequence[dict[str, Any]]) -> None:
        """One input finished with ``rows``: its passes replace its planned share."""
        used = next((r["forward_passes"] for r in rows if r.get("forward_passes")), self.planned)
        claimed = min(used, self.unclaimed)
        self.unclaimed -= claimed
        self.total += used - self.planned
        self.bar.total = self.total
        self._move(used - claimed)
        self.done += 1
        if not self.warned and self.first is None and rows:  # no live report: its own time
            self._check_slow(float(rows[0].get("seconds") or 0.0), "the first input")
        self._postfix()

    def _move(self, n: int) -> None:
        self.count += n
        self.bar.update(n)

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"{self.done}/{self.n_inputs} inputs", refresh=False)

    def _check_slow(self, seconds: float, source: str) -> None:
        from ..center import _duration, outside_caller

        self.warned = True
        if seconds <= SLOW_CERTIFICATE_SECONDS:
            return
        left = self.n_inputs - self.done
        warnings.warn(
            f"one certificate will take about {_duration(seconds)} ({self.planned:,} forward "
            f"passes, estimated from {source}), the {left} inputs left about "
            f"{_duration(seconds * left)} on this worker. Fewer samples shorten it in "
            "proportion (`centersmooth plan` shows what given counts certify, and "
            "n_certify='auto' draws what each input needs); a small model gains from "
            "inputs_per_batch (--inputs-per-batch), a large one from a GPU (device='cuda') or "
            "more workers",
            SlowCertificateWarning,
            stacklevel=outside_caller(),
        )

    def close(self) -> None:
        self.bar.close()


def _memory_share(backend: str, workers: int, gpus_per_worker: float) -> float:
    """The part of its device's memory one worker's automatic batch size may plan for: local
    workers share this machine's device, a Ray actor with a fraction of a GPU gets that
    fraction."""
    if backend == "local":
        return 1.0 / workers
    return float(gpus_per_worker) if 0 < gpus_per_worker < 1 else 1.0


def _check_platform(expected: dict[str, Any] | None, got: dict[str, Any] | None, what: str) -> None:
    """Refuse rows of another platform than the file's (see ``workers.platform_of``)."""
    if expected is not None and got is not None and platforms_differ(expected, got):
        raise PlatformMismatchError(
            f"{what}: the file's rows were computed on {describe_platform(expected)}, these on "
            f"{describe_platform(got)}. Seeded noise and model outputs differ between GPU models "
            "and torch or CUDA versions, so the rows would not be those of one run: continue the "
            "file where it was made (a Ray cluster needs workers of one GPU model and torch "
            "version), or write a new file"
        )


def _all_done(path: Path, indices: list[int], wanted: list[tuple[str, float]]) -> bool:
    """Whether ``path`` holds every row asked for (then a resume builds no model)."""
    try:
        rows = read_results(path).rows if path.is_file() else []
    except (OSError, ValueError, UnicodeDecodeError):
        return False  # the locked read that follows reports it
    done = {_key(r) for r in rows if "input_index" in r}
    return all((i, m, e) in done for i in indices for m, e in wanted)


class RunStopped(RunnerError):
    """The run stopped on an error (the model failed on an input, a worker kept dying); the rows
    of the inputs done are in the file, and the message says how to continue: call
    ``certify_dataset`` again with ``resume=True`` (:meth:`advice` words it for a command)."""

    def __init__(self, reason: str, kept: str) -> None:
        self.reason, self.kept = reason, kept
        super().__init__(self.advice("call certify_dataset again with resume=True to continue"))

    def advice(self, how: str) -> str:
        """The message with ``how`` to continue, such as a command's ``--resume``."""
        return f"{self.reason}. {self.kept}; {how}"


def check_results_path(path: Path, what: str = "out") -> None:
    """Refuse a results path that cannot hold a results file (a folder, a device such as
    ``/dev/null``, a pipe) before any work; ``what`` names it in the message."""
    if path.is_dir():
        raise ValueError(
            f"{what} {path} is a folder; name a file in it, such as {path / 'results.jsonl'}"
        )
    if path.exists() and not path.is_file():
        raise ValueError(
            f"{what} {path} is not a regular file (a device, a pipe or a socket): a results file "
            "is appended to, locked and read back to resume; name a file"
        )


def check_finite_rows(inputs: np.ndarray, what: str = "inputs") -> None:
    """Refuse inputs with NaN or infinite values, naming the first row that has one (``what``
    names the inputs in the message)."""
    if not (
        np.issubdtype(inputs.dtype, np.floating) or np.issubdtype(inputs.dtype, np.complexfloating)
    ):
        return
    bad = np.flatnonzero(~np.isfinite(inputs.reshape(len(inputs), -1)).all(axis=1))
    if bad.size:
        where = np.argwhere(~np.isfinite(inputs[bad[0]]))[0]
        more = f" (and {bad.size - 1} more rows)" if bad.size > 1 else ""
        raise ValueError(
            f"{what} row {bad[0]} holds NaN or infinite values (at {tuple(int(i) for i in where)})"
            f"{more}; every input must be finite"
        )


def _metric_files(specs: Sequence[Any], metrics: Sequence[Any]) -> dict[str, Any]:
    """For the distances loaded from Python files, their name -> the file and its SHA-256."""
    from ..metrics.base import is_file_spec, parse_file_spec

    files = {}
    for spec, metric in zip(specs, metrics, strict=True):
        if is_file_spec(spec):
            path = parse_file_spec(spec, "--metric")[0]
            files[metric.name] = {"spec": spec, "sha256": _file_sha256(path)}
    return files


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_device(device: Any) -> None:
    """Refuse a device this machine does not have, before any file is written."""
    if device is not None:
        from ..sampling import check_device as check  # torch only when a run starts

        check(device)


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
    return jsonable(full)


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
) -> tuple[np.ndarray, list[float], list[Any], list[int], dict[str, Any], Any]:
    from .workers import resolve_metric

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    targets = _on_host(targets)
    if not isinstance(inputs, np.ndarray) or inputs.ndim < 2:
        raise ValueError("inputs must be a NumPy array of shape (N, ...) with one input per row")
    n = inputs.shape[0]
    eps_arr = np.atleast_1d(np.asarray(eps_in, dtype=float))
    if eps_arr.ndim != 1 or eps_arr.size == 0 or not np.all(np.isfinite(eps_arr)):
        raise ValueError(f"eps_in must be a non-empty list of finite numbers, got {eps_in!r}")
    if np.any(eps_arr < 0) or len(set(eps_arr.tolist())) != eps_arr.size:
        raise ValueError(f"eps_in must be distinct non-negative numbers, got {eps_in!r}")
    check_finite_rows(inputs)
    if isinstance(metrics, str):
        metrics = [metrics]
    names = [resolve_metric(m).name for m in metrics]
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
    run_info = jsonable(dict(run_info))
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not (isinstance(gpus_per_worker, int | float) and gpus_per_worker >= 0):
        raise ValueError(f"gpus_per_worker must be a non-negative number, got {gpus_per_worker!r}")
    return inputs, [float(e) for e in eps_arr], list(metrics), idx, run_info, targets


def _on_host(targets: Any) -> Any:
    """Targets as the workers get them: tensors (on any device, CUDA included) as NumPy arrays,
    like the inputs, so that no CUDA tensor is pickled into a worker or a Ray actor."""
    torch = sys.modules.get("torch")
    if torch is None or targets is None:
        return targets
    if isinstance(targets, torch.Tensor):
        return targets.detach().cpu().numpy()
    if isinstance(targets, list | tuple) and any(isinstance(t, torch.Tensor) for t in targets):
        return [t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t for t in targets]
    return targets


def _save_example(directory: Path, index: int, arrays: dict[str, np.ndarray]) -> None:
    """Write ``input_<index>.npz`` atomically (a crash leaves the old file or none)."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"input_{index}.npz"
    tmp = directory / f".input_{index}.tmp.npz"
    payload: dict[str, Any] = dict(arrays)
    np.savez_compressed(tmp, **payload)
    os.replace(tmp, final)
