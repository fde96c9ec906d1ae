"""Certifying inputs in workers: one ``Worker`` (used in-process, in spawned processes and as a
Ray actor, so every backend computes rows with the same code) and the three ways to run them.

A worker builds the model once and turns each ``Job`` (one input and its seed) into a ``Result``
(its rows). ``run_processes`` and ``run_ray`` retry the inputs of a worker that dies, at most
``MAX_ATTEMPTS`` times each; an error raised by the model stops the run.
"""

from __future__ import annotations

import hashlib
import logging
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..center import batch_len, distances_to, repeat, take
from ..certificate import UncertifiableRadiusWarning
from ..metrics import Metric, check_distance, get_metric, needs_check
from ..metrics.base import describe_outputs, is_file_spec, load_metric_file
from ..planning import AbstentionRiskWarning
from ..sampling import PreparedInputs, draw_noisy, finite_outputs, prepare_input
from ..smoothing import CenterSmoothing
from .results_file import RunnerError, json_float, package_version

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # tries per input when the worker running it dies (not when the model raises)
PREFLIGHT_SAMPLES = 32  # noisy outputs of the first input the settings are tried on (preflight)


def resolve_metric(metric: str | Metric) -> Metric:
    """A distance of a run: a registered name, a :class:`Metric`, or ``path/to/file.py:name``
    (a distance in a Python file, ``metrics.base.load_metric_file``; each worker loads it)."""
    if isinstance(metric, str) and is_file_spec(metric):
        return load_metric_file(metric)
    return get_metric(metric)


@dataclass(frozen=True)
class Job:
    """What a worker needs to certify one input."""

    position: int  # position in this call's list of inputs
    index: int  # data set index
    x: np.ndarray
    target: Any
    seed: int
    keep_example: bool


@dataclass
class Result:
    """The rows of one input, and (optionally) arrays for the report's example grid."""

    position: int
    index: int
    rows: list[dict[str, Any]]
    example: dict[str, np.ndarray] | None = None
    platform: dict[str, Any] | None = None  # where the rows were computed (``platform_of``)


class Worker:
    """Builds the model once, then certifies inputs. Used in-process, in spawned processes and as
    a Ray actor, so every backend computes rows with the same code.

    ``options`` says how inputs reach the model and which model the run expects (its
    fingerprint). With ``defer_errors`` (spawned processes, Ray actors) a failure to build the
    model, or a model other than the expected one, is raised by the first ``certify`` call rather
    than by the constructor: the run then stops with that message instead of retrying a worker
    that seems to have died.
    """

    def __init__(
        self,
        model_factory: Callable[[], Any],
        smoothing: dict[str, Any],
        metrics: list[str],
        eps_in: list[float],
        run_seed: int,
        options: WorkerOptions | None = None,
        threads: int | None = None,
        gpus: float = 0.0,
        defer_errors: bool = False,
    ) -> None:
        self.error: Exception | None = None
        self.options = options or WorkerOptions()
        self.metrics = [resolve_metric(m) for m in metrics]
        self.eps_in = list(eps_in)
        self.run_seed = int(run_seed)
        self.version = package_version()
        self.fingerprint: dict[str, Any] | None = None
        try:
            self._build(model_factory, smoothing, metrics, threads, gpus)
        except Exception as err:
            if not defer_errors:
                raise
            self.error = err

    def _build(
        self,
        model_factory: Callable[[], Any],
        smoothing: dict[str, Any],
        metrics: list[str],
        threads: int | None,
        gpus: float,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        kwargs = dict(smoothing)
        if gpus > 0:
            kwargs["device"] = actor_device(kwargs.get("device"))
        try:
            model = model_factory()
        except Exception as err:
            raise ModelFailure(f"the model factory failed: {_describe(err)}") from err
        with warnings.catch_warnings():  # the run said it once, before it started
            warnings.simplefilter("ignore", AbstentionRiskWarning)
            self.smoother = CenterSmoothing(model, metric=self.metrics[0], **kwargs)
        opts = self.options
        self.smoother.memory_share = opts.memory_share
        self.platform = platform_of(self.smoother.device)
        if opts.probe is not None:
            self.fingerprint = model_fingerprint(
                model, self.smoother, self.model_input(opts.probe), repeat=opts.fingerprint is None
            )
            if opts.fingerprint is not None:
                problem = fingerprint_mismatch(opts.fingerprint, self.fingerprint)
                if problem:
                    raise ModelMismatchError(
                        f"the model a worker built differs from the run's ({problem}). "
                        + SAME_MODEL_HINT
                    )

    def ready(self) -> bool:
        return True

    def preflight(self, x: np.ndarray) -> None:
        """Before the run, what its first input would show: the candidate counts name distances
        in use, the model's outputs on ``PREFLIGHT_SAMPLES`` noisy copies of ``x`` are of a kind
        and shape each distance takes, and a distance that is not built in passes its check
        (``check_distance``). So a mistake in the settings is reported before the results file
        exists, not as a failure of the run at its first input."""
        sm = self.smoother
        sm.settings.check_candidate_names(self.metrics)
        prepared = PreparedInputs.build(
            [self.model_input(x)], [0], None, sm.sigma, sm.base_function, sm.device, sm.input_grid
        )
        tolerate_nan = sm.nan_outputs == "outside"  # such outputs are left out of the tries
        try:
            with sm.base_function.evaluating():
                noisy = draw_noisy(prepared.streams, PREFLIGHT_SAMPLES)
                out = sm.base_function(noisy, prepared.np_dtype, check_finite=not tolerate_nan)
        except (ValueError, TypeError):
            raise
        except Exception as err:
            raise ModelFailure(
                f"the model fails on noisy copies of the first input: {_describe(err)}"
            ) from err
        out = finite_outputs(out) if tolerate_nan else out
        if batch_len(out) < 2:
            return  # nothing to try the distances on
        for metric in self.metrics:
            try:
                distances_to(metric, take(out, 0), out)
                if sm.check_metric and needs_check(metric):
                    check_distance(metric, out)
            except (ValueError, TypeError):
                raise
            except Exception as err:
                raise ValueError(
                    f"the distance {metric.name!r} fails on the model's outputs "
                    f"({describe_outputs(out)}): {_describe(err)}"
                ) from err

    def model_input(self, x: np.ndarray) -> Any:
        """One input as the run hands it to ``CenterSmoothing`` (:func:`model_input`)."""
        return model_input(x, self.options.numpy_inputs)

    def certify(self, job: Job) -> Result:
        return self.certify_group([job])[0]

    def certify_group(self, jobs: Sequence[Job]) -> list[Result]:
        """Certify several inputs with their samples sharing forward passes
        (``certify_metrics_batch``); each input keeps its own seed, so its rows are the rows it
        gets alone. ``seconds`` is the group's time divided among its inputs. A failure of the
        model or the distance is raised as :class:`ModelFailure`, naming the inputs."""
        if self.error is not None:
            raise self.error
        try:
            return self._certify_group(jobs)
        except Exception as err:
            names = ", ".join(str(job.index) for job in jobs)
            which = f"input {names}" if len(jobs) == 1 else f"inputs {names}"
            raise ModelFailure(f"{which}: {_describe(err)}") from err

    def _certify_group(self, jobs: Sequence[Job]) -> list[Result]:
        start = time.perf_counter()
        sm = self.smoother
        xs = [self.model_input(job.x) for job in jobs]
        seeds = [job.seed for job in jobs]
        with warnings.catch_warnings():  # per input it would repeat; rows give max_eps_in
            warnings.simplefilter("ignore", UncertifiableRadiusWarning)
            batch = sm.certify_metrics_batch(xs, self.eps_in, self.metrics, seeds=seeds)
        bases = [_base_output(sm, x) for x in xs]
        seconds = (time.perf_counter() - start) / len(jobs)
        return [
            self._result(job, certs, base, seconds)
            for job, certs, base in zip(jobs, batch, bases, strict=True)
        ]

    def _result(self, job: Job, certs: dict[str, Any], base: Any, seconds: float) -> Result:
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
            center = cert.center
            if isinstance(center, np.ndarray) and isinstance(base, torch.Tensor):
                center = torch.as_tensor(center).to(base.device)  # a NumPy model's center
            base_error = smoothed_error = None
            if target is not None:
                base_error = float(distances_to(metric, base[0], target)[0])
                if not cert.abstained:
                    smoothed_error = float(distances_to(metric, center, target)[0])
            if example is not None and not cert.abstained and isinstance(center, torch.Tensor):
                example[f"center_{metric.name}"] = _numpy(center)
            values = (
                cert.eps_out,
                cert.quantile_radius,
                cert.inner_radius,
                cert.near_radius,
                getattr(cert, "pair_radius", math.inf),
            )
            eps_out, outer, inner, near, pair = (
                np.broadcast_to(np.atleast_1d(np.asarray(value, dtype=float)), (len(self.eps_in),))
                for value in values
            )
            vacuous = np.broadcast_to(
                np.atleast_1d(np.asarray(getattr(cert, "vacuous", False), dtype=bool)),
                eps_out.shape,
            )
            pred = cert.prediction
            diameter = getattr(cert, "output_diameter", None)
            check_level = getattr(pred, "check_level", None)
            reason = getattr(cert, "abstain_reason", None) if cert.abstained else None
            for j, eps in enumerate(self.eps_in):
                rows.append(
                    {
                        "input_index": job.index,
                        "metric": metric.name,
                        "sigma": sm.sigma,
                        "eps_in": float(eps),
                        "eps_out": json_float(eps_out[j]),
                        "abstained": bool(cert.abstained),
                        "smoothing_error": cert.smoothing_error,
                        "base_error": base_error,
                        "smoothed_error": smoothed_error,
                        "radius": json_float(cert.radius),
                        "quantile_radius": json_float(outer[j]),
                        "inner_radius": json_float(inner[j]),
                        "near_radius": json_float(near[j]),
                        "pair_radius": json_float(pair[j]),
                        "max_eps_in": json_float(cert.max_eps_in),
                        "vacuous": bool(vacuous[j]),
                        "output_diameter": None if diameter is None else json_float(diameter),
                        "p_low": json_float(pred.p_low),
                        "delta1": json_float(pred.delta1),
                        "check_level": None if check_level is None else json_float(check_level),
                        "abstain_reason": reason,
                        "n_center": sm.n_center,
                        "n_check": sm.n_check,
                        "n_certify": sm.n_certify,
                        "certification_samples": cert.certification_samples,
                        "forward_passes": cert.forward_passes,
                        "bound": sm.bound,
                        "seed": self.run_seed,
                        "input_seed": job.seed,
                        "seconds": seconds,
                        "version": self.version,
                    }
                )
        return Result(job.position, job.index, rows, example, self.platform)


def model_input(x: np.ndarray, numpy_inputs: bool = False) -> Any:
    """One input as a run hands it to ``CenterSmoothing``: a NumPy array for a NumPy model (the
    library then feeds it NumPy batches of the input's dtype), else a torch tensor (an
    ``nn.Module`` then gets its parameters' float dtype; integer inputs become torch's default
    float type)."""
    array = np.array(x)
    if numpy_inputs:
        return array
    t = torch.from_numpy(array)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


SAME_MODEL_HINT = (
    "The model factory must build the same model every call: seed its random generator "
    "(torch.manual_seed) or load saved weights."
)


class ModelFailure(RunnerError):
    """The user's model, its factory or the distance raised while certifying; the message names
    the inputs and the error."""


class ModelMismatchError(RunnerError):
    """A worker (or a resumed run) built another model than the one the run started with."""


@dataclass(frozen=True)
class WorkerOptions:
    """How inputs reach the model, and which model the run expects.

    ``numpy_inputs``: hand ``CenterSmoothing`` NumPy arrays (the model then gets NumPy batches),
    else torch tensors. ``probe``: the run's first input, on which the model's fingerprint is
    taken (none without it). ``fingerprint``: the fingerprint the run started with (``None``:
    nothing to compare with; the worker's own is then taken and kept in ``Worker.fingerprint``).
    ``memory_share``: the part of its device's memory a worker's automatic batch size may plan
    for (several workers on one device each take their share, not the whole).
    """

    numpy_inputs: bool = False
    probe: np.ndarray | None = None
    fingerprint: dict[str, Any] | None = None
    memory_share: float = 1.0  # of the device's memory, for the automatic batch size


def _describe(err: BaseException) -> str:
    """``Type: first line of the message``, for one-line errors."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _base_output(sm: CenterSmoothing, x: Any) -> Any:
    """``f(x)`` for one input, fed exactly as the smoothed function feeds its noisy copies."""
    xt, np_dtype = prepare_input(x, sm.base_function, sm.device, sm.input_grid)
    return sm.base_function(xt.unsqueeze(0), np_dtype)


# ----------------------------------------------------------------------------- fingerprints
PROBE_DIMS = 16  # coordinates of the fixed random projection of the probe outputs
PROBE_RTOL = 1e-4  # relative to the outputs' norm: GPU kernels may differ in the last bits


def _weights_digest(model: torch.nn.Module) -> str | None:
    """SHA-256 of a module's state (names, dtypes, shapes and bytes of every tensor), ``None``
    for a module without any."""
    state = model.state_dict()
    if not state:
        return None
    h = hashlib.sha256()
    for name, value in state.items():
        h.update(name.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def _probe_summary(out: Any) -> tuple[list[float] | None, float | None, str]:
    """A fixed random projection of tensor outputs and their norm (compared with a tolerance),
    or for other outputs (strings, sets) the SHA-256 of their ``repr``."""
    if isinstance(out, np.ndarray) and out.dtype != object:
        out = torch.from_numpy(np.ascontiguousarray(out))
    if isinstance(out, torch.Tensor) and not out.is_complex():
        v = np.nan_to_num(out.detach().cpu().double().numpy().reshape(-1), posinf=1e300)
        gen = np.random.default_rng(20211206)
        proj = gen.standard_normal((PROBE_DIMS, v.size)) / max(v.size, 1) ** 0.5
        digest = hashlib.sha256(v.tobytes()).hexdigest()
        return [float(p) for p in proj @ v], float(np.linalg.norm(v)), digest
    return None, None, hashlib.sha256(repr(out).encode()).hexdigest()


def model_fingerprint(
    model: Any, smoother: CenterSmoothing, probe: Any, repeat: bool = False
) -> dict[str, Any]:
    """What identifies the model a worker built: for an ``nn.Module`` with weights, the SHA-256
    of its state; for any other model, its outputs on ``probe`` (one input, fed as in the run).
    With ``repeat`` the probe runs twice: a model whose outputs change from call to call
    (random) gets no probe entry, as nothing could be compared."""
    if isinstance(model, torch.nn.Module):
        digest = _weights_digest(model)
        if digest is not None:
            return {"weights_sha256": digest}
    out = _base_output(smoother, probe)
    proj, norm, digest = _probe_summary(out)
    if repeat:
        again: dict[str, Any] = {"probe": proj, "probe_norm": norm, "probe_sha256": digest}
        other = dict(
            zip(
                ("probe", "probe_norm", "probe_sha256"),
                _probe_summary(_base_output(smoother, probe)),
                strict=True,
            )
        )
        if fingerprint_mismatch(again, other):
            return {"random_outputs": True}
    return {"probe": proj, "probe_norm": norm, "probe_sha256": digest}


def fingerprint_mismatch(expected: dict[str, Any], got: dict[str, Any]) -> str | None:
    """``None`` when ``got`` may be the model of ``expected``; else what differs."""
    if expected.get("random_outputs") or got.get("random_outputs"):
        return None
    if "weights_sha256" in expected or "weights_sha256" in got:
        if expected.get("weights_sha256") != got.get("weights_sha256"):
            return "its weights differ"
        return None
    a, b = expected.get("probe"), got.get("probe")
    if a is not None and b is not None:
        scale = max(float(expected.get("probe_norm") or 0), float(got.get("probe_norm") or 0))
        diff = float(np.max(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))))
        if diff > PROBE_RTOL * max(scale, 1e-12):
            return "its outputs on the first input differ"
        return None
    if expected.get("probe_sha256") != got.get("probe_sha256"):
        return "its outputs on the first input differ"
    return None


def _as_batch(target: Any, like: Any) -> Any:
    """One target as a batch of one, on the device and in the dtype of the model's outputs
    (a tensor target may sit on any device)."""
    if isinstance(like, torch.Tensor):
        t = (
            target.detach()
            if isinstance(target, torch.Tensor)
            else torch.as_tensor(np.array(target))
        )
        if like.is_floating_point():
            t = t.to(like.dtype)
        return t.to(like.device).unsqueeze(0)
    return repeat(target, 1)


def actor_device(device: Any) -> str | None:
    """The device a Ray actor given GPUs uses for ``device``: Ray makes only the actor's own
    GPUs visible to it, numbered from 0, so ``cuda:1`` (the machine's numbering) would name a
    GPU the actor cannot see ("invalid device ordinal"); any CUDA device, or none given, means
    the actor's first GPU. Other devices are kept."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else None
    return "cuda" if torch.device(device).type == "cuda" else str(device)


def platform_of(device: torch.device) -> dict[str, Any]:
    """Where rows are computed: the device's name (``cpu`` or the GPU model), the torch version
    and its CUDA version. Seeded noise and model outputs are bit for bit the same only on the
    same platform (docs/distributed.md), so a results file records it and a resumed run or a Ray
    worker elsewhere is refused."""
    device = torch.device(device)
    name = device.type
    if device.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(device)
    return {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda}


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# Process-pool backend: one Worker per spawned process.
_PROCESS_WORKER: Worker | None = None


def _process_init(*args: Any) -> None:
    global _PROCESS_WORKER
    from tqdm.auto import tqdm

    # tqdm's default lock is a named semaphore, which a worker stopped by the run (Ctrl-C)
    # would leave behind ("leaked semaphore" warnings); a worker's bars need a thread lock only
    tqdm.set_lock(threading.RLock())
    options: dict[str, Any] = {"defer_errors": True}  # errors reach the run, not the pool
    _PROCESS_WORKER = Worker(*args, **options)


def _process_certify(job: Job) -> Result:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.certify(job)


def run_inline(
    jobs: list[Job],
    worker_args: tuple[Any, ...],
    inputs_per_batch: int = 1,
    worker: Worker | None = None,
) -> Iterator[Result]:
    """In this process, on ``worker`` if given (else one built from ``worker_args``)."""
    if not jobs:
        return
    worker = worker or Worker(*worker_args)
    for start in range(0, len(jobs), inputs_per_batch):
        yield from worker.certify_group(jobs[start : start + inputs_per_batch])


def run_processes(jobs: list[Job], worker_args: tuple[Any, ...], workers: int) -> Iterator[Result]:
    """``workers`` spawned processes, each with its share of this process's torch threads (what
    ``--threads`` set, else torch's default of one per core). A pool that breaks
    (a worker killed) is rebuilt and the unfinished inputs resubmitted.

    Only ``workers`` inputs are in flight at a time, so a break charges an attempt to those
    inputs only (one of them killed its worker), not to every input still queued; the inputs
    that never started go first in the next pool.
    """
    import multiprocessing

    if not jobs:
        return
    threads = max(1, torch.get_num_threads() // workers)
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
        futures: dict[Future[Result], Job] = {}
        queued, retry, broken, stopped = pending, [], False, False
        try:
            while True:
                while queued and not broken and len(futures) < workers:
                    try:
                        with _workers_ignore_ctrl_c():  # a submit may start a worker process
                            future = pool.submit(_process_certify, queued[0])
                    except (BrokenProcessPool, RuntimeError):
                        # a worker died before its future reported it (RuntimeError: the
                        # broken pool had begun to shut down); the job stays queued
                        broken = True
                        break
                    futures[future] = queued.pop(0)
                if not futures:
                    break
                if broken:
                    finished = _settle(pool, futures, queued)
                else:
                    finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in finished:
                    job = futures.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        attempts[job.position] += 1
                        if attempts[job.position] >= MAX_ATTEMPTS:
                            raise RunnerError(
                                f"input {job.index}: its worker died {MAX_ATTEMPTS} times"
                            ) from None
                        retry.append(job)
                        continue
                    yield result
        except BaseException:
            # the run stops early (an error, Ctrl-C): the workers ignore Ctrl-C, so stop them
            # here rather than wait for the inputs they are certifying
            _stop_workers(pool)
            stopped = True
            raise
        finally:
            # with the workers stopped, waiting is short and lets the pool release its queues
            pool.shutdown(wait=stopped or not futures, cancel_futures=True)
        pending = queued + retry
        if pending:
            logger.warning("a worker process died; retrying %d inputs", len(pending))


@contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Ctrl-C ignored while worker processes start, so that they start ignoring it: a process
    that finds SIGINT ignored at its start never turns it into ``KeyboardInterrupt``, and so
    never prints a traceback when the terminal sends Ctrl-C to every process of the command.
    This process handles Ctrl-C and stops the workers (``_stop_workers``). Only the main thread
    may set a handler; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's worker processes (they ignore Ctrl-C, and a run that stops early
    must not wait for the inputs they are certifying)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def _settle(
    pool: ProcessPoolExecutor, futures: dict[Future[Result], Job], queued: list[Job]
) -> set[Future[Result]]:
    """The futures a broken pool has settled. A broken pool fails every job it knows of, then
    stops; one submitted while it broke may never settle, so after the pool has stopped such a
    job goes back to the queue, uncharged (its worker did not die on it)."""
    pool.shutdown(wait=True, cancel_futures=True)
    orphans = [fut for fut in futures if not fut.done()]
    queued[:0] = [futures.pop(fut) for fut in orphans]
    return set(futures)


def import_ray() -> Any:
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


def run_ray(
    jobs: list[Job],
    worker_args: tuple[Any, ...],
    workers: int,
    address: str | None,
    gpus_per_worker: float,
) -> Iterator[Result]:
    """Ray actors, two inputs in flight each. An actor that dies is replaced and its inputs are
    resubmitted (at most ``MAX_ATTEMPTS`` tries per input); an error raised by the model stops
    the run."""
    ray = import_ray()
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
    actor_cls = ray.remote(num_cpus=1, num_gpus=gpus_per_worker, max_restarts=0)(Worker)
    transient = tuple(
        getattr(ray.exceptions, name)
        for name in ("RayActorError", "WorkerCrashedError", "ActorUnavailableError")
        if hasattr(ray.exceptions, name)
    )

    def spawn() -> Any:
        return actor_cls.remote(*worker_args, threads=None, gpus=gpus_per_worker, defer_errors=True)

    actors = [spawn() for _ in range(min(workers, len(jobs)))]
    queue = list(reversed(jobs))
    attempts = {job.position: 0 for job in jobs}
    in_flight: dict[Any, tuple[Any, Job]] = {}
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
                cause = getattr(err, "cause", None)
                if isinstance(cause, RunnerError) and not isinstance(cause, ModelFailure):
                    raise type(cause)(f"{cause} (in a Ray worker)") from err
                if isinstance(cause, ModelFailure):
                    what = str(cause).removeprefix(f"input {job.index}: ")
                elif isinstance(cause, BaseException):
                    what = _describe(cause)
                else:
                    what = str(err)
                raise ModelFailure(f"input {job.index} failed in a Ray worker: {what}") from err
            yield result
            fill()
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if started:
            ray.shutdown()
