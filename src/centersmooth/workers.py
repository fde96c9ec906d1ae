"""Certifying inputs in workers: one ``Worker`` (used in-process, in spawned processes and as a
Ray actor, so every backend computes rows with the same code) and the three ways to run them.

A worker builds the model once and turns each ``Job`` (one input and its seed) into a ``Result``
(its rows). ``run_processes`` and ``run_ray`` retry the inputs of a worker that dies, at most
``MAX_ATTEMPTS`` times each; an error raised by the model stops the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .center import distances_to, repeat
from .metrics import get_metric
from .results_file import RunnerError, json_float, package_version
from .smoothing import CenterSmoothing

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # tries per input when the worker running it dies (not when the model raises)


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


class Worker:
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
        self.version = package_version()

    def ready(self) -> bool:
        return True

    def certify(self, job: Job) -> Result:
        return self.certify_group([job])[0]

    def certify_group(self, jobs: Sequence[Job]) -> list[Result]:
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
            base_error = smoothed_error = None
            if target is not None:
                base_error = float(distances_to(metric, base[0], target)[0])
                if not cert.abstained:
                    smoothed_error = float(distances_to(metric, cert.center, target)[0])
            if example is not None and not cert.abstained and isinstance(cert.center, torch.Tensor):
                example[f"center_{metric.name}"] = _numpy(cert.center)
            values = (cert.eps_out, cert.quantile_radius, cert.inner_radius, cert.near_radius)
            eps_out, outer, inner, near = (
                np.atleast_1d(np.asarray(value, dtype=float)) for value in values
            )
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
                        "max_eps_in": json_float(cert.max_eps_in),
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
        return Result(job.position, job.index, rows, example)


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


# Process-pool backend: one Worker per spawned process.
_PROCESS_WORKER: Worker | None = None


def _process_init(*args: Any) -> None:
    global _PROCESS_WORKER
    _PROCESS_WORKER = Worker(*args)


def _process_certify(job: Job) -> Result:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.certify(job)


def run_inline(
    jobs: list[Job], worker_args: tuple[Any, ...], inputs_per_batch: int = 1
) -> Iterator[Result]:
    if not jobs:
        return
    worker = Worker(*worker_args)
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
        queued, retry, broken = pending, [], False
        try:
            while True:
                while queued and not broken and len(futures) < workers:
                    try:
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
        finally:
            # do not wait for queued inputs when the run stops early (an error, Ctrl-C)
            pool.shutdown(wait=not futures, cancel_futures=True)
        pending = queued + retry
        if pending:
            logger.warning("a worker process died; retrying %d inputs", len(pending))


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
        return actor_cls.remote(*worker_args, threads=None, gpus=gpus_per_worker)

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
                raise RunnerError(f"input {job.index} failed in a Ray worker: {err}") from None
            yield result
            fill()
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if started:
            ray.shutdown()
