"""The Ray backend: same rows as a local run, nothing lost when a worker dies, resume across
backends. One local Ray (2 CPUs) for the whole module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FailOutsideFactory, KillWorkerFactory, LinearFactory, tiny_data
from seeded_settings import TINY

from centersmooth.runs.runner import RunnerError, certify_dataset, read_results

pytestmark = pytest.mark.needs("ray")

EPS = [0.1, 0.25]
METRICS = ["l2", "angular"]
SMOOTHING = dict(sigma=0.25, **TINY)
INFO = {"task": "toy"}


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return tiny_data(4)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, data: tuple) -> list[dict]:
    x, t = data
    out = tmp_path_factory.mktemp("ref") / "local.jsonl"
    return run(LinearFactory(), out, x, t)


def run(factory: object, out: Path, x: np.ndarray, t: np.ndarray, **kw: object) -> list[dict]:
    return certify_dataset(
        factory,  # type: ignore[arg-type]
        x,
        EPS,
        METRICS,
        SMOOTHING,
        out,
        INFO,
        seed=11,
        targets=t,
        progress=False,
        **kw,  # type: ignore[arg-type]
    )


def strip(rows: list[dict]) -> list[dict]:
    out = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    return sorted(out, key=lambda r: (r["input_index"], r["metric"], r["eps_in"]))


def test_ray_gives_the_rows_of_a_local_run(
    tmp_path: Path, data: tuple, reference: list[dict]
) -> None:
    out = tmp_path / "ray.jsonl"
    rows = run(LinearFactory(), out, *data, backend="ray", workers=2)
    assert strip(rows) == strip(reference)
    assert strip(read_results(out).rows) == strip(reference)
    assert len(read_results(out).rows) == len(reference)


def test_a_worker_killed_mid_run_loses_nothing(
    tmp_path: Path, data: tuple, reference: list[dict]
) -> None:
    marker = tmp_path / "killed"
    # ten forward calls per input (2 + 2 + 5 batches and f(x)); 4 inputs on 2 actors: one of
    # them certifies at least 2 inputs, and dies in the second
    factory = KillWorkerFactory(str(marker), after=12)
    out = tmp_path / "ray.jsonl"
    rows = run(factory, out, *data, backend="ray", workers=2)
    assert marker.exists()  # a worker did die
    records = read_results(out).rows
    keys = [(r["input_index"], r["metric"], r["eps_in"]) for r in records]
    assert len(keys) == len(set(keys)) == len(reference)  # each row exactly once
    assert strip(records) == strip(rows) == strip(reference)


def test_ray_resumes_a_local_run(tmp_path: Path, data: tuple, reference: list[dict]) -> None:
    out = tmp_path / "r.jsonl"
    run(LinearFactory(), out, *data)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:6]) + lines[6][:7])  # 1 input and a row, then a torn line
    rows = run(LinearFactory(), out, *data, backend="ray", workers=2, resume=True)
    assert strip(rows) == strip(reference) == strip(read_results(out).rows)


def test_an_error_in_the_model_stops_the_run(tmp_path: Path, data: tuple) -> None:
    x, t = data
    with pytest.raises(RunnerError, match="failed in a Ray worker.*the model failed"):
        run(FailOutsideFactory(), tmp_path / "r.jsonl", x, t, backend="ray", workers=1)


def test_a_model_that_fails_on_the_inputs_is_refused_before_the_run(
    tmp_path: Path, data: tuple
) -> None:
    x, t = data
    with pytest.raises(RunnerError, match="fails on noisy copies of the first input"):
        run(LinearFactory(dim_in=3), tmp_path / "r.jsonl", x, t, backend="ray", workers=1)
    assert not (tmp_path / "r.jsonl").exists()


class UnseededFactory:
    """Builds a linear map from torch's global (unseeded) generator: another model each call."""

    def __call__(self) -> torch.nn.Module:
        return torch.nn.Linear(16, 16)


def test_a_ray_worker_refuses_a_model_other_than_the_run_s(tmp_path: Path, data: tuple) -> None:
    x, t = data
    with pytest.raises(RunnerError, match="must build the same model every call"):
        run(UnseededFactory(), tmp_path / "r.jsonl", x, t, backend="ray", workers=1)
