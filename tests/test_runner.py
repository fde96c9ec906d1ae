"""certify_dataset: schema, seeds, resume (torn line, mismatched header), SIGKILL + resume."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import KillWorkerFactory, LinearFactory, tiny_data
from seeded_settings import RUNNER, TINY

from centersmooth import CenterSmoothing, __version__
from centersmooth.metrics import get_metric
from centersmooth.runs import runner, workers
from centersmooth.runs.results_file import NOISE_STREAM
from centersmooth.runs.runner import (
    ROW_FIELDS,
    RunnerError,
    certify_dataset,
    input_seed,
    read_results,
)

EPS = [0.1, 0.25, 5.0]  # 5.0 is beyond max_eps_in of the tiny sample counts: never certified
METRICS = ["l2", "angular"]
SMOOTHING = dict(sigma=0.25, **TINY)
INFO = {"task": "toy", "dataset": "random", "preset": "tiny"}
SEED = RUNNER.seed  # every row of the five inputs accepts (seeded_settings.RUNNER)
HERE = Path(__file__).parent


def run(out: Path, x: np.ndarray, t: np.ndarray | None, **kw: object) -> list[dict]:
    kw.setdefault("progress", False)
    return certify_dataset(
        kw.pop("factory", LinearFactory()),  # type: ignore[arg-type]
        x,
        kw.pop("eps_in", EPS),  # type: ignore[arg-type]
        kw.pop("metrics", METRICS),  # type: ignore[arg-type]
        kw.pop("smoothing", SMOOTHING),  # type: ignore[arg-type]
        out,
        kw.pop("run_info", INFO),  # type: ignore[arg-type]
        targets=t,
        **kw,  # type: ignore[arg-type]
    )


def strip(rows: list[dict]) -> list[dict]:
    """Rows without their timings, in a canonical order."""
    out = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    return sorted(out, key=lambda r: (r["input_index"], r["metric"], r["eps_in"]))


def file_rows(path: Path) -> list[dict]:
    return read_results(path).rows


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return tiny_data(5)


@pytest.fixture(scope="module")
def ref_file(tmp_path_factory: pytest.TempPathFactory, data: tuple) -> Path:
    """An uninterrupted run to compare every other run with."""
    out = tmp_path_factory.mktemp("ref") / "ref.jsonl"
    run(out, *data, seed=SEED)
    return out


@pytest.fixture(scope="module")
def reference(ref_file: Path) -> list[dict]:
    return file_rows(ref_file)


def copy_of(ref_file: Path, tmp_path: Path) -> Path:
    out = tmp_path / "r.jsonl"
    out.write_bytes(ref_file.read_bytes())
    return out


# ------------------------------------------------------------------------------ schema


def test_schema_header_and_rows(tmp_path: Path, data: tuple, ref_file: Path) -> None:
    x, t = data
    out = copy_of(ref_file, tmp_path)
    rows = run(out, x, t, seed=SEED, resume=True)  # every row is there: read back, nothing computed
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    lines = text.splitlines()
    header = json.loads(lines[0])
    assert header["record"] == "header" and header["format"] == "centersmooth-results"
    assert header["version"] == __version__ and header["seed"] == SEED and header["n_inputs"] == 5
    assert header["config"]["eps_in"] == EPS and header["config"]["metrics"] == METRICS
    assert header["config"]["smoothing"]["sigma"] == 0.25
    assert header["config"]["smoothing"]["alpha_center"] == 0.005  # defaults are filled in
    assert header["config"]["run_info"] == INFO
    file_records = [json.loads(line) for line in lines[1:]]
    assert len(file_records) == len(x) * len(METRICS) * len(EPS) == len(rows)
    expected_keys = [*ROW_FIELDS, "dataset", "preset"]
    for record in file_records:
        assert list(record) == expected_keys
    assert file_records == rows  # returned as written (timings too)
    # returned in input, metric, eps_in order
    assert [(r["input_index"], r["metric"], r["eps_in"]) for r in rows] == [
        (i, m, e) for i in range(5) for m in METRICS for e in EPS
    ]
    for r in rows:
        assert r["task"] == "toy" and r["version"] == __version__ and r["seed"] == SEED
        assert r["sigma"] == 0.25 and r["bound"] == "binomial"
        assert (r["n_center"], r["n_check"], r["n_certify"]) == (400, 400, 1000)
        assert r["input_seed"] == input_seed(SEED, r["input_index"])
        assert r["seconds"] > 0
        assert not r["abstained"] and r["radius"] is not None  # seeded_settings.RUNNER
        if r["eps_in"] > r["max_eps_in"]:
            assert r["eps_out"] is None and r["quantile_radius"] is None
            assert r["inner_radius"] is None and r["near_radius"] is None
        else:
            assert r["eps_out"] > 0 and r["smoothing_error"] >= 0 and r["smoothed_error"] >= 0
            # the row holds the three statistics of the default bound (gamma = 1 for both)
            radii = r["quantile_radius"] + r["near_radius"] + r["inner_radius"]
            assert r["eps_out"] == pytest.approx(radii, rel=1e-12)
    assert any(r["eps_out"] is not None for r in rows)
    assert all(r["eps_out"] is None for r in rows if r["eps_in"] == 5.0)


def test_rows_match_a_direct_certificate(data: tuple, reference: list[dict]) -> None:
    """The runner's numbers are CenterSmoothing's at the input's seed, plus the target errors."""
    x, t = data
    model = LinearFactory()()
    sm = CenterSmoothing(model, metric="l2", **SMOOTHING)  # type: ignore[arg-type]
    i = 3
    certs = sm.certify_metrics(torch.from_numpy(x[i]), EPS, METRICS, seed=input_seed(SEED, i))
    with torch.no_grad():
        fx = model(torch.from_numpy(x[i : i + 1]))
    target = torch.from_numpy(t[i : i + 1])
    for r in (r for r in reference if r["input_index"] == i):
        cert = certs[r["metric"]]
        j = EPS.index(r["eps_in"])
        expect = float(np.asarray(cert.eps_out)[j])
        assert (r["eps_out"] is None) == (not math.isfinite(expect))
        if r["eps_out"] is not None:
            assert r["eps_out"] == pytest.approx(expect, rel=1e-12)
        metric = get_metric(r["metric"])
        assert r["base_error"] == pytest.approx(float(metric(fx, target)[0]), rel=1e-6)
        assert not cert.abstained  # seeded_settings.RUNNER
        assert r["smoothing_error"] == pytest.approx(cert.smoothing_error, rel=1e-12)
        smoothed = float(metric(cert.center.unsqueeze(0), target)[0])
        assert r["smoothed_error"] == pytest.approx(smoothed, rel=1e-6)


def test_without_targets_errors_are_null(tmp_path: Path, data: tuple) -> None:
    x, _ = data
    rows = run(tmp_path / "r.jsonl", x[:1], None, eps_in=[0.1], metrics=["l2"])
    assert rows[0]["base_error"] is None and rows[0]["smoothed_error"] is None


def test_seeds_do_not_depend_on_order_or_subset(
    tmp_path: Path, data: tuple, reference: list[dict]
) -> None:
    x, t = data
    order = [4, 1, 3]
    rows = run(tmp_path / "r.jsonl", x[order], t[order], seed=SEED, indices=order)
    ref = [r for r in reference if r["input_index"] in order]
    assert strip(rows) == strip(ref)
    assert input_seed(SEED, 1) != input_seed(SEED + 1, 1) and input_seed(SEED, 1) != input_seed(
        SEED, 2
    )


def test_inputs_certified_together_give_the_same_rows(
    tmp_path: Path, data: tuple, reference: list[dict]
) -> None:
    """inputs_per_batch packs the samples of several inputs into each forward pass; each input
    keeps its seed and block noise, so its rows are those it gets alone."""
    x, t = data
    rows = run(tmp_path / "r.jsonl", x, t, seed=SEED, inputs_per_batch=3)
    assert strip(rows) == strip(reference)
    with pytest.raises(ValueError, match="inputs_per_batch"):
        run(tmp_path / "bad.jsonl", x, t, seed=SEED, inputs_per_batch=0)
    with pytest.raises(ValueError, match="one worker"):  # it used to be ignored silently
        run(tmp_path / "bad.jsonl", x, t, seed=SEED, inputs_per_batch=3, workers=2)


def test_process_workers_give_the_same_rows_even_when_one_dies(
    tmp_path: Path, data: tuple, reference: list[dict]
) -> None:
    """Two spawned processes; one is SIGKILLed in its second input (4 inputs on 2 workers: one
    of them gets at least 2); the pool is rebuilt and the file ends with each row once."""
    x, t = data
    marker = tmp_path / "killed"
    factory = KillWorkerFactory(str(marker), after=12)  # same weights as LinearFactory()
    rows = run(tmp_path / "r.jsonl", x[:4], t[:4], seed=SEED, workers=2, factory=factory)
    assert marker.exists()
    ref = [r for r in reference if r["input_index"] < 4]
    assert strip(rows) == strip(ref) == strip(file_rows(tmp_path / "r.jsonl"))


def test_a_dying_worker_charges_only_the_inputs_in_flight(tmp_path: Path, data: tuple) -> None:
    """Three worker deaths in a run of 5 inputs on 2 workers: each break charges an attempt to
    the (at most 2) inputs in flight, not to all those queued, so no input reaches 3 attempts
    and the run completes with every row once."""
    x, t = data
    factory = KillWorkerFactory(str(tmp_path / "deaths"), after=1, kills=3)
    rows = run(tmp_path / "r.jsonl", x, t, workers=2, factory=factory)
    assert (tmp_path / "deaths").read_text() == "3"
    assert sorted({r["input_index"] for r in rows}) == list(range(len(x)))
    assert len(file_rows(tmp_path / "r.jsonl")) == len(rows)


class ScriptedBreakingPool:
    """An in-process stand-in for ProcessPoolExecutor whose first pool breaks as ``script`` says,
    one entry per submit: "ok" runs the job, "raise" makes submit raise BrokenProcessPool (a
    worker died before any future reported it), "broken" returns a future failed with it, and
    "orphan" one that never settles (submitted while the pool broke). Later pools run every
    job."""

    script: tuple[str, ...] = ()
    pools = 0

    def __init__(self, *, initializer, initargs, **_: object) -> None:  # type: ignore[no-untyped-def]
        initializer(*initargs)
        type(self).pools += 1
        self.steps = list(self.script) if type(self).pools == 1 else []

    def submit(self, fn, job):  # type: ignore[no-untyped-def]
        step = self.steps.pop(0) if self.steps else "ok"
        if step == "raise":
            raise BrokenProcessPool("a child process terminated abruptly")
        future: Future = Future()
        if step == "ok":
            future.set_result(fn(job))
        elif step == "broken":
            future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


@pytest.mark.parametrize(
    "script",
    [("ok", "raise"), ("broken", "orphan")],
    ids=["submit-raises", "future-never-settles"],
)
def test_a_pool_that_breaks_around_a_submit_is_rebuilt(
    tmp_path: Path,
    data: tuple,
    reference: list[dict],
    monkeypatch: pytest.MonkeyPatch,
    script: tuple[str, ...],
) -> None:
    """The pool can break while the runner is between futures (CI hit it under load): submit
    raises, or a job submitted as it broke never settles. The run must neither stop nor hang:
    such a job goes to the next pool, uncharged, and every row is written once."""
    x, t = data
    monkeypatch.setattr(workers, "ProcessPoolExecutor", ScriptedBreakingPool)
    monkeypatch.setattr(ScriptedBreakingPool, "script", script)
    monkeypatch.setattr(ScriptedBreakingPool, "pools", 0)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the stand-in runs in here
    rows = run(tmp_path / "r.jsonl", x, t, seed=SEED, workers=2)
    assert ScriptedBreakingPool.pools == 2
    assert strip(rows) == strip(reference) == strip(file_rows(tmp_path / "r.jsonl"))


def test_process_workers_share_the_threads_set_for_the_run(
    tmp_path: Path, data: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--threads 4 with 2 workers: each worker process gets 2 torch threads (it used to get
    os.cpu_count() / workers whatever --threads said)."""
    x, t = data
    given: list[int] = []

    class RecordingPool(ScriptedBreakingPool):
        def __init__(self, *, initializer, initargs, **kw: object) -> None:  # type: ignore[no-untyped-def]
            given.append(initargs[-1])
            super().__init__(initializer=initializer, initargs=initargs, **kw)

    monkeypatch.setattr(workers, "ProcessPoolExecutor", RecordingPool)
    monkeypatch.setattr(ScriptedBreakingPool, "pools", 0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the stand-in runs in here
    run(tmp_path / "r.jsonl", x[:2], t[:2], seed=SEED, workers=2)
    assert given == [2]


# ------------------------------------------------------------------------------ resume


def test_existing_file_needs_resume(tmp_path: Path, data: tuple) -> None:
    x, t = data
    out = tmp_path / "r.jsonl"
    run(out, x[:1], t[:1], eps_in=[0.1], metrics=["l2"])
    with pytest.raises(FileExistsError, match="resume"):
        run(out, x[:1], t[:1], eps_in=[0.1], metrics=["l2"])


def test_resume_of_a_finished_run_computes_nothing(
    tmp_path: Path, data: tuple, ref_file: Path, reference: list[dict]
) -> None:
    x, t = data
    out = copy_of(ref_file, tmp_path)
    size = out.stat().st_size

    def no_model() -> None:
        raise AssertionError("the model must not be built: every row is done")

    again = run(out, x, t, seed=SEED, resume=True, factory=no_model)
    assert again == reference and out.stat().st_size == size


def test_resume_fills_missing_rows_and_drops_torn_line(
    tmp_path: Path,
    data: tuple,
    ref_file: Path,
    reference: list[dict],
    caplog: pytest.LogCaptureFixture,
) -> None:
    x, t = data
    out = copy_of(ref_file, tmp_path)
    lines = out.read_text().splitlines(keepends=True)
    # header, input 0 complete, 2 of input 1's 6 rows, then half a row: a crash in mid-write
    out.write_text("".join(lines[: 1 + 6 + 2]) + lines[9][: len(lines[9]) // 2])
    with caplog.at_level(logging.WARNING, logger="centersmooth.runs.runner"):
        rows = run(out, x, t, seed=SEED, resume=True)
    assert "torn last line" in caplog.text
    assert strip(rows) == strip(reference)
    records = file_rows(out)
    assert strip(records) == strip(reference)  # each row exactly once
    assert out.read_text().endswith("\n")


def test_resume_after_a_torn_header(tmp_path: Path, data: tuple, reference: list[dict]) -> None:
    x, t = data
    out = tmp_path / "r.jsonl"
    out.write_text('{"record": "header", "form')
    rows = run(out, x[:2], t[:2], seed=SEED, resume=True)
    ref = [r for r in reference if r["input_index"] < 2]
    assert strip(rows) == strip(ref) == strip(file_rows(out))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": SEED + 1}, f"seed: {SEED} in the file, {SEED + 1} now"),
        ({"eps_in": [0.1, 0.25]}, "eps_in"),
        ({"metrics": ["l2"]}, "metrics"),
        ({"smoothing": dict(SMOOTHING, sigma=0.5)}, "smoothing.sigma: 0.25 in the file, 0.5 now"),
        ({"run_info": dict(INFO, preset="paper")}, "run_info.preset"),
        ({"shift": 1.0}, "inputs, indices or targets differ"),
    ],
)
def test_resume_refuses_another_configuration(
    tmp_path: Path, data: tuple, ref_file: Path, change: dict, message: str
) -> None:
    x, t = data
    out = copy_of(ref_file, tmp_path)
    before = out.read_bytes()
    kw = dict(change)
    shift = kw.pop("shift", 0.0)
    kw.setdefault("seed", SEED)
    with pytest.raises(ValueError, match="cannot resume") as err:
        run(out, x + shift, t, resume=True, **kw)
    assert message in str(err.value)
    assert out.read_bytes() == before


@pytest.mark.parametrize("old_stream", [None, "torch-mt-v1"])
def test_resume_refuses_a_file_of_another_noise_stream(
    tmp_path: Path, data: tuple, ref_file: Path, old_stream: str | None
) -> None:
    """A file without the field was drawn with the first stream; resuming it is refused."""
    x, t = data
    out = copy_of(ref_file, tmp_path)
    lines = out.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    assert header["config"]["noise_stream"] == NOISE_STREAM == "blocks-v2"
    if old_stream is None:
        del header["config"]["noise_stream"]
    else:
        header["config"]["noise_stream"] = old_stream
    out.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    before = out.read_bytes()
    with pytest.raises(ValueError) as err:
        run(out, x, t, seed=SEED, resume=True)
    message = str(err.value)
    assert "made with noise stream 'torch-mt-v1'" in message and "draws 'blocks-v2'" in message
    assert "start a new file" in message and "\n" not in message
    assert out.read_bytes() == before


def test_a_file_from_before_shared_check_samples_resumes_with_them_off(
    tmp_path: Path, data: tuple
) -> None:
    """A header without ``share_check_samples`` was written with separate samples: it resumes
    with the switch off, and is refused with it on (the rows would differ)."""
    x, t = data
    separate = {**SMOOTHING, "share_check_samples": False}
    out = tmp_path / "old.jsonl"
    rows = run(out, x[:2], t[:2], seed=7, smoothing=separate)
    lines = out.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    assert header["config"]["smoothing"]["share_check_samples"] is False
    del header["config"]["smoothing"]["share_check_samples"]
    out.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    with pytest.raises(ValueError, match="share_check_samples: False in the file, True now"):
        run(out, x[:2], t[:2], seed=7, resume=True)
    assert run(out, x[:2], t[:2], seed=7, smoothing=separate, resume=True) == rows


def test_a_file_from_before_the_pairwise_bound_resumes_without_it(
    tmp_path: Path, data: tuple
) -> None:
    """A header without ``pairwise_bound`` (and its counts) was written without it: it resumes
    so, and is refused with the bound on; the counts are part of the configuration only with
    the bound."""
    x, t = data
    out = tmp_path / "old.jsonl"
    rows = run(out, x[:2], t[:2], seed=7)
    lines = out.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    smoothing = header["config"]["smoothing"]
    assert smoothing.pop("pairwise_bound") is False
    assert "pair_rows" not in smoothing and "pair_columns" not in smoothing
    out.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    assert run(out, x[:2], t[:2], seed=7, resume=True) == rows
    with pytest.raises(ValueError, match="pairwise_bound: False in the file, True now.*--no-pair"):
        pairwise = {**SMOOTHING, "pairwise_bound": True, "pair_rows": 100, "pair_columns": 200}
        run(out, x[:2], t[:2], seed=7, smoothing=pairwise, resume=True)


def test_a_bad_line_inside_the_file_is_an_error(
    tmp_path: Path, data: tuple, ref_file: Path
) -> None:
    x, t = data
    out = copy_of(ref_file, tmp_path)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + "{oops\n" + "".join(lines[1:]))
    with pytest.raises(ValueError, match="line 2"):
        run(out, x, t, seed=SEED, resume=True)


# ------------------------------------------------------------------------------ SIGKILL

CHILD = """
import sys
from pathlib import Path
import numpy as np
from helpers import KillWorkerFactory, LinearFactory, tiny_data
from seeded_settings import RUNNER, TINY
from centersmooth.runs.runner import certify_dataset

x, t = tiny_data(8)
certify_dataset(
    LinearFactory(delay=float(sys.argv[2])), x, {eps}, {metrics}, dict(sigma=0.25, **TINY),
    Path(sys.argv[1]), {info}, seed=RUNNER.seed, targets=t, resume=True, progress=False,
)
"""


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_rows(
    tmp_path: Path,
) -> None:
    """Round 1 kills the child at a random time from its start (possibly before it writes
    anything); later rounds wait until the file grew, then kill after a random delay of up to one
    input's time, so kills land while inputs are computed and written. Each round resumes the
    file of the previous one; a last run finishes it."""
    x, t = tiny_data(8)
    expected = run(tmp_path / "ref.jsonl", x, t, seed=SEED)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(eps=EPS, metrics=METRICS, info=INFO))
    paths = [str(HERE), os.environ.get("PYTHONPATH", "")]  # prepended: keep the caller's path
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    out = tmp_path / "killed.jsonl"
    rng = random.Random(20211206)
    mid_run = 0
    log = []  # what each round did, for the assertion messages
    for round_ in range(4):
        before = out.stat().st_size if out.exists() else 0
        proc = subprocess.Popen(
            [sys.executable, str(script), str(out), "0.05"],  # 0.5 s per input
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if round_ == 0:
            deadline = time.monotonic() + rng.uniform(0.5, 3.0)
        else:
            while proc.poll() is None and (out.stat().st_size if out.exists() else 0) <= before:
                time.sleep(0.005)
            deadline = time.monotonic() + rng.uniform(0.0, 0.6)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        n_rows = len(file_rows(out)) if out.exists() else -1
        log.append(f"round {round_}: rc {proc.returncode}, {n_rows} rows")
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err.decode()
        if 0 < n_rows < len(expected):
            mid_run += 1
    final = subprocess.run(
        [sys.executable, str(script), str(out), "0"], env=env, capture_output=True, timeout=300
    )
    assert final.returncode == 0, final.stderr.decode()
    assert mid_run >= 1, log  # at least one run died with part of the rows written
    records = file_rows(out)
    assert strip(records) == strip(expected), log
    assert len({(r["input_index"], r["metric"], r["eps_in"]) for r in records}) == len(records)


# ------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"smoothing": dict(SMOOTHING, seed=1)}, ValueError, "must not set 'seed'"),
        ({"smoothing": dict(SMOOTHING, metric="l1")}, ValueError, "must not set 'metric'"),
        ({"smoothing": dict(SMOOTHING, sigmaa=1)}, ValueError, "unknown smoothing argument"),
        ({"smoothing": dict(SMOOTHING, sigma=-1)}, ValueError, "sigma"),
        ({"run_info": {"sigma": 1}}, ValueError, "row fields"),
        ({"backend": "dask"}, ValueError, "backend"),
        ({"workers": 0}, ValueError, "workers"),
        ({"eps_in": []}, ValueError, "eps_in"),
        ({"eps_in": [0.1, 0.1]}, ValueError, "distinct"),
        ({"metrics": ["l2", "nope"]}, ValueError, "unknown metric"),
        ({"indices": [0, 0]}, ValueError, "indices"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_argument_errors(tmp_path: Path, data: tuple, kw: dict, error: type, message: str) -> None:
    x, t = data
    with pytest.raises(error, match=message):
        run(tmp_path / "r.jsonl", x[:2], t[:2], **kw)
    assert not (tmp_path / "r.jsonl").exists()


def test_ray_missing_gives_a_clear_message(
    tmp_path: Path, data: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, t = data
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"centersmooth\[ray\]"):
        run(tmp_path / "r.jsonl", x[:1], t[:1], backend="ray")
    assert not (tmp_path / "r.jsonl").exists()


def test_two_runs_never_write_the_same_file(tmp_path: Path, data: tuple) -> None:
    import fcntl

    x, t = data
    out = tmp_path / "r.jsonl"
    with open(out, "ab") as other:  # another run holds the lock
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunnerError, match="being written by another run"):
            run(out, x[:1], t[:1], resume=True)
    assert out.read_bytes() == b""


def test_progress_bar_and_quiet_mode(
    tmp_path: Path, data: tuple, capsys: pytest.CaptureFixture[str]
) -> None:
    x, t = data
    run(tmp_path / "a.jsonl", x[:1], t[:1], eps_in=[0.1], metrics=["l2"], progress=False)
    assert capsys.readouterr().err == ""
    rows = run(tmp_path / "b.jsonl", x[:2], t[:2], eps_in=[0.1], metrics=["l2"], progress=True,
               seed=SEED)  # fmt: skip
    err = capsys.readouterr().err
    # the bar counts forward passes (400 center + 1,000 certification, the check's first, + f(x))
    assert "certify" in err and "2/2 inputs" in err and "pass/s" in err
    assert not any(r["abstained"] for r in rows)  # seeded_settings.RUNNER
    assert [r["forward_passes"] for r in rows] == [1_401, 1_401]
    assert "2.80k/2.80k" in err


def test_rows_carry_the_forward_passes_and_the_certification_samples(
    tmp_path: Path, data: tuple
) -> None:
    """Shared check samples: n_center + max(n_check, n_certify) + 1 passes and N = 1,000
    certification samples; separate: n_center + n_check + n_certify + 1 and N = n_certify."""
    x, t = data
    for shared, passes in ((True, 400 + 1_000 + 1), (False, 400 + 400 + 1_000 + 1)):
        smoothing = {**SMOOTHING, "share_check_samples": shared}
        rows = run(tmp_path / f"{shared}.jsonl", x[:1], t[:1], smoothing=smoothing, seed=SEED)
        assert not any(r["abstained"] for r in rows)  # seeded_settings.RUNNER
        assert {r["forward_passes"] for r in rows} == {passes}
        assert {r["certification_samples"] for r in rows} == {1_000}


def test_the_progress_follows_inputs_that_use_other_counts_and_warns_when_slow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planned passes per input are replaced by each input's own count as it finishes; from the
    first live passes the time of one certificate is estimated and a long one warned about."""
    clock = iter([0.0, 3.0, 3.5, 4.0])
    monkeypatch.setattr(runner.time, "perf_counter", lambda: next(clock))
    progress = runner.PassProgress(planned=100_000, n_inputs=3, done=1, progress=False)
    assert (progress.total, progress.count) == (300_000, 100_000)
    progress.passes(1_000)  # t = 0
    with pytest.warns(runner.SlowCertificateWarning, match=r"about 5 min \(100,000 forward"):
        progress.passes(1_000)  # t = 3: 3 s per 1,000 passes
    progress.passes(500)  # warned once only
    progress.input_done([{"forward_passes": 2_000, "seconds": 1.0}])  # an early abstention
    assert (progress.total, progress.count, progress.unclaimed) == (202_000, 102_500, 500)
    progress.input_done([{"forward_passes": None, "seconds": 1.0}])  # an old row: as planned
    assert (progress.total, progress.count, progress.done) == (202_000, 202_000, 3)
    quiet = runner.PassProgress(planned=1_000, n_inputs=2, done=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.input_done([{"forward_passes": 1_000, "seconds": 30.0}])  # 30 s: not slow
    slow = runner.PassProgress(planned=1_000, n_inputs=2, done=0, progress=False)
    with pytest.warns(runner.SlowCertificateWarning, match="from the first input"):
        slow.input_done([{"forward_passes": 1_000, "seconds": 600.0}])  # another process's


def test_examples_sidecar(tmp_path: Path, data: tuple) -> None:
    x, t = data
    out = tmp_path / "r.jsonl"
    run(out, x[:3], t[:3], eps_in=[0.1], metrics=METRICS, examples=2)
    files = sorted(p.name for p in (tmp_path / "r.examples").iterdir())
    assert files == ["input_0.npz", "input_1.npz"]
    with np.load(tmp_path / "r.examples" / "input_1.npz") as z:
        assert set(z.files) >= {"input", "base_output", "target", "center_l2"}
        np.testing.assert_array_equal(z["input"], x[1])
        np.testing.assert_array_equal(z["target"], t[1])


@pytest.mark.parametrize(
    "kind", ["tensor", "list of arrays", "array"], ids=lambda k: k.replace(" ", "-")
)
def test_targets_digest_sees_every_value(kind):
    """One changed value in long targets changes the digest a resume compares (``repr`` of a
    long tensor or array elides its middle, so hashing it missed such changes)."""
    from centersmooth.runs.runner import _digest

    base = np.zeros((4, 3, 32, 32), dtype=np.float32)
    changed = base.copy()
    changed[2, 1, 16, 16] = 1.0

    def wrap(t):
        return {"tensor": torch.from_numpy(t), "list of arrays": list(t), "array": t}[kind]

    inputs = np.zeros((4, 2), dtype=np.float32)
    assert _digest([0, 1, 2, 3], inputs, wrap(base)) != _digest([0, 1, 2, 3], inputs, wrap(changed))
    assert _digest([0, 1, 2, 3], inputs, wrap(base)) == _digest(
        [0, 1, 2, 3], inputs, wrap(base.copy())
    )
