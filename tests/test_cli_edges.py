"""The command at its edges: every input row and every setting checked before the results file
exists (exit 2, one line, no advice to resume), models with several outputs (``--output``), a
distance of your own (``--metric file.py:name``), scikit-learn estimators, float64 inputs in
every command, an ``--out`` that cannot hold results, Ctrl-C while workers start, counts written
``1e4`` and ``python -m centersmooth``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from seeded_settings import EDGE_COMMAND, EDGE_FLAGS, edge_inputs

from centersmooth.cli import commands as cli

# few samples, delta 0.4: the runs that need an acceptance rely on seeded_settings.EDGE_COMMAND
COUNTS = EDGE_FLAGS

MODEL = """
import collections

import torch


def lin():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3)


def pair():
    # a detector-like model: a batch of boxes and a batch of scores
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 4)

    def f(b):
        boxes = lin(b).sigmoid()
        corners = torch.stack([boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2],
                               boxes[:, 1] + boxes[:, 3]], dim=1)
        return corners, boxes.sum(1, keepdim=True)

    return f


def named():
    f = pair()
    return lambda b: dict(zip(("boxes", "scores"), f(b)))


Detection = collections.namedtuple("Detection", "boxes scores")


def fields():
    f = pair()
    return lambda b: Detection(*f(b))


def pipeline():
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.random.default_rng(0).normal(size=(50, 4))
    return make_pipeline(StandardScaler(), PCA(2)).fit(x)


def nan_sometimes():
    # a NaN in about 1% of the outputs, wherever the noise puts the input
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)

    def f(b):
        out = lin(b)
        out[torch.frac(37 * b[:, 0].abs()) < 0.01] = torch.nan
        return out

    return f


def slow():
    # a model slow enough to be interrupted while it runs
    import time

    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)

    def f(b):
        time.sleep(0.5)
        return lin(b)

    return f
"""

DISTANCE = """
import torch


def manhattan(a, b):
    return (a - b).abs().flatten(1).sum(1)


def squared(a, b):
    return (a - b).square().flatten(1).sum(1)


not_a_distance = 3
"""


@pytest.fixture
def user(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "m.py").write_text(MODEL)
    (tmp_path / "d.py").write_text(DISTANCE)
    inputs = tmp_path / "x.npy"
    np.save(inputs, edge_inputs())
    return tmp_path / "m.py", inputs


def certify(model: Path, spec: str, inputs: Path, out: Path, *extra: str) -> list[str]:
    return ["certify", "--model", f"{model}:{spec}", "--inputs", str(inputs), "--sigma", "0.25",
            "--eps-in", "0.1", *COUNTS, "--out", str(out), "--quiet", "--examples", "0",
            *extra]  # fmt: skip


def command(*args: str, cwd: Path, env: dict[str, str] | None = None, module: str = "centersmooth"):
    """The real command in a subprocess (``python -m centersmooth``)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


# ----------------------------------------------------------------------------- checked up front
@pytest.mark.parametrize("value, where", [(np.nan, (3, 1)), (np.inf, (0, 2)), (-np.inf, (2, 0))])
def test_every_input_row_is_checked_before_the_file_exists(user, tmp_path, capsys, value, where):
    model, _ = user
    x = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    x[where] = value
    inputs = tmp_path / "bad.npy"
    np.save(inputs, x)
    out = tmp_path / "r.jsonl"
    assert cli.main(certify(model, "lin", inputs, out)) == 2
    err = one_line_error(capsys)
    assert f"row {where[0]}" in err and "NaN or infinite" in err
    assert "outputs" not in err and "--resume" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--metric", "levenshtein"], ["levenshtein", "strings", "tensor"]),
        (["--candidates", "l3=30"], ["l3", "candidates"]),
        (["--metric", "l2", "jaccard"], ["jaccard"]),
    ],
)
def test_settings_the_outputs_refute_are_refused_before_the_file_exists(
    user, tmp_path, capsys, extra, words
):
    model, inputs = user
    out = tmp_path / "r.jsonl"
    assert cli.main(certify(model, "lin", inputs, out, *extra)) == 2
    err = one_line_error(capsys)
    assert all(w in err for w in words), err
    assert "--resume" not in err and "resume=True" not in err
    assert not out.exists()


def test_a_model_failure_advises_resume_in_the_commands_words(user, tmp_path) -> None:
    model, inputs = user
    (tmp_path / "fail.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    lin = torch.nn.Linear(4, 3)\n"
        "    def f(b):\n"
        "        if len(b) > 64 and float(b[:, 0].mean()) > 0.5:\n"
        "            raise RuntimeError('CUDA out of memory')\n"
        "        return lin(b)\n"
        "    return f\n"
    )
    x = np.zeros((3, 4), dtype=np.float32)
    x[1, 0] = 1.0  # the model fails on the noisy copies of input 1
    np.save(tmp_path / "x3.npy", x)
    out = tmp_path / "r.jsonl"
    result = command(*certify(tmp_path / "fail.py", "make", tmp_path / "x3.npy", out), cwd=tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "input 1" in line and "--resume" in line and "resume=True" not in line
    assert [r["input_index"] for r in rows(out)] == [0]


def test_an_existing_file_is_refused_in_the_commands_words(user, tmp_path, capsys) -> None:
    model, inputs = user
    out = tmp_path / "r.jsonl"
    assert cli.main(certify(model, "lin", inputs, out)) == 0
    capsys.readouterr()
    assert cli.main(certify(model, "lin", inputs, out)) == 2
    err = one_line_error(capsys)
    assert "already exists" in err and "(--resume)" in err and "resume=True" not in err


# ----------------------------------------------------------------------------- several outputs
@pytest.mark.parametrize(
    "spec, names",
    [("pair", ["0", "1"]), ("named", ["boxes", "scores"]), ("fields", ["boxes", "scores"])],
)
def test_a_model_with_several_outputs_is_told_how_to_choose_one(
    user, tmp_path, capsys, spec, names
):
    model, inputs = user
    out = tmp_path / "r.jsonl"
    assert cli.main(certify(model, spec, inputs, out)) == 2
    err = one_line_error(capsys)
    assert "of outputs, not a batch" in err and f"--output {names[0]}" in err
    assert all(repr(n) in err or n in err for n in names)
    assert "has the shape" not in err
    assert not out.exists()


@pytest.mark.parametrize("spec, output", [("pair", "0"), ("named", "boxes"), ("fields", "boxes")])
def test_output_chooses_which_output_is_certified(user, tmp_path, spec, output) -> None:
    model, inputs = user
    boxes = tmp_path / "boxes.jsonl"
    argv = certify(model, spec, inputs, boxes, "--output", output, "--metric", "jaccard")
    assert cli.main(argv) == 0
    got = rows(boxes)
    assert {r["metric"] for r in got} == {"jaccard"} and len(got) == 4
    header = json.loads(boxes.read_text().splitlines()[0])
    assert header["config"]["smoothing"]["output"] == output
    scores = tmp_path / "scores.jsonl"
    other = "1" if output == "0" else "scores"
    assert cli.main(certify(model, spec, inputs, scores, "--output", other)) == 0
    assert {r["metric"] for r in rows(scores)} == {"l2"}


def test_an_unknown_output_names_the_ones_there_are(user, tmp_path, capsys) -> None:
    model, inputs = user
    out = tmp_path / "r.jsonl"
    assert cli.main(certify(model, "named", inputs, out, "--output", "labels")) == 2
    err = one_line_error(capsys)
    assert "'labels'" in err and "'boxes'" in err and "'scores'" in err
    assert not out.exists()


# ----------------------------------------------------------------------------- your own distance
def test_metric_from_a_file_is_loaded_and_certified(user, tmp_path) -> None:
    model, inputs = user
    out = tmp_path / "r.jsonl"
    argv = certify(model, "lin", inputs, out, "--metric", f"{tmp_path / 'd.py'}:manhattan", "l2")
    assert cli.main([*argv, "--seed", str(EDGE_COMMAND.seed)]) == 0
    got = rows(out)
    assert sorted({r["metric"] for r in got}) == ["l2", "manhattan"] and len(got) == 8
    # every row accepts (seeded_settings.EDGE_COMMAND): both distances are certified
    assert all(not r["abstained"] and r["eps_out"] > 0 for r in got)


def test_outputs_with_a_nan_stop_the_run_or_count_outside_every_ball(user, tmp_path, capsys):
    """Without --nan-outputs the run stops and names the option (about 16 NaN outputs expected
    among the first input's 400 samples alone); with --nan-outputs outside every row is
    certified: the ball holds about half the outputs against a check level of 0.1, and with
    2,000 certification samples the highest order statistic used (near the 0.97 quantile)
    stays below the 1% of outputs put at infinite distance."""
    model, inputs = user
    assert cli.main(certify(model, "nan_sometimes", inputs, tmp_path / "stopped.jsonl")) in (1, 2)
    err = capsys.readouterr().err
    assert "--nan-outputs outside" in err and "Traceback" not in err
    out = tmp_path / "r.jsonl"
    argv = certify(model, "nan_sometimes", inputs, out, "--nan-outputs", "outside")
    assert cli.main([*argv, "--n-certify", "2000"]) == 0
    got = rows(out)
    assert len(got) == 4 and all(not r["abstained"] and r["eps_out"] is not None for r in got)
    header = json.loads(out.read_text().splitlines()[0])
    assert header["config"]["smoothing"]["nan_outputs"] == "outside"


def test_a_resume_must_see_the_same_metric_file(user, tmp_path, capsys) -> None:
    model, inputs = user
    out = tmp_path / "r.jsonl"
    argv = certify(model, "lin", inputs, out, "--metric", f"{tmp_path / 'd.py'}:manhattan")
    assert cli.main(argv) == 0
    header = json.loads(out.read_text().splitlines()[0])
    assert set(header["config"]["metric_files"]) == {"manhattan"}
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]))  # the last input is left to do
    (tmp_path / "d.py").write_text(DISTANCE.replace("abs()", "abs() * 2"))
    capsys.readouterr()
    assert cli.main([*argv, "--resume"]) == 2
    err = one_line_error(capsys)
    assert "cannot resume" in err and "metric_files" in err


def test_metric_from_a_file_runs_in_worker_processes(user, tmp_path) -> None:
    model, inputs = user
    out = tmp_path / "r.jsonl"
    argv = certify(model, "lin", inputs, out, "--metric", f"{tmp_path / 'd.py'}:manhattan")
    result = command(*argv, "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(rows(out)) == 4


@pytest.mark.parametrize(
    "name, words",
    [
        ("squared", ["gamma", "squared"]),  # refuted by the distance check, before the file
        ("missing", ["defines no 'missing'"]),
        ("not_a_distance", ["not callable"]),
    ],
)
def test_a_bad_metric_file_is_refused_before_the_file_exists(user, tmp_path, capsys, name, words):
    model, inputs = user
    out = tmp_path / "r.jsonl"
    argv = certify(model, "lin", inputs, out, "--metric", f"{tmp_path / 'd.py'}:{name}")
    assert cli.main(argv) == 2
    err = one_line_error(capsys)
    assert all(w in err for w in words), err
    assert not out.exists()


# ----------------------------------------------------------------------------- scikit-learn
def test_a_scikit_learn_estimator_is_a_model(user, tmp_path) -> None:
    model, inputs = user
    out = tmp_path / "r.jsonl"
    assert cli.main(certify(model, "pipeline", inputs, out, "--numpy-model")) == 0
    assert len(rows(out)) == 4


# ----------------------------------------------------------------------------- other commands
def test_attack_feeds_float64_inputs_as_certify_does(user, tmp_path) -> None:
    model, _ = user
    inputs = tmp_path / "x64.npy"
    np.save(inputs, np.random.default_rng(0).normal(size=(1, 4)))  # float64
    out = tmp_path / "a.jsonl"
    argv = ["attack", "--model", f"{model}:lin", "--inputs", str(inputs), "--sigma", "0.25",
            "--eps-in", "0.1", *COUNTS, "--steps", "2", "--restarts", "1", "--n-noise", "8",
            "--n-score", "16", "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    assert len(rows(out)) == 1


def test_attack_checks_its_inputs_as_certify_does(user, tmp_path, capsys) -> None:
    model, _ = user
    x = np.zeros((2, 4))
    x[1, 3] = np.nan
    np.save(tmp_path / "bad.npy", x)
    out = tmp_path / "a.jsonl"
    bad = str(tmp_path / "bad.npy")
    argv = ["attack", "--model", f"{model}:lin", "--inputs", bad, "--sigma", "0.25",
            "--eps-in", "0.1", *COUNTS, "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 2
    err = one_line_error(capsys)
    assert "row 1" in err and "NaN or infinite" in err
    assert not out.exists()


@pytest.mark.parametrize("target", ["/dev/null", "folder"])
def test_an_out_that_cannot_hold_results_is_named(user, tmp_path, capsys, target) -> None:
    model, inputs = user
    out = Path(target) if target.startswith("/") else tmp_path / target
    if not target.startswith("/"):
        out.mkdir()
    assert cli.main(certify(model, "lin", inputs, out)) == 2
    err = one_line_error(capsys)
    assert f"--out {out}" in err and "Errno" not in err
    assert ("not a regular file" in err) or ("is a folder" in err)


def test_counts_may_be_written_as_powers_of_ten(user, tmp_path) -> None:
    model, inputs = user
    out = tmp_path / "r.jsonl"
    argv = certify(model, "lin", inputs, out)
    for flag, value in (("--n-center", "4e2"), ("--n-check", "4E2"), ("--n-certify", "10^3")):
        argv[argv.index(flag) + 1] = value
    assert cli.main(argv) == 0
    smoothing = json.loads(out.read_text().splitlines()[0])["config"]["smoothing"]
    assert (smoothing["n_center"], smoothing["n_check"], smoothing["n_certify"]) == (
        400,
        400,
        1000,
    )


@pytest.mark.parametrize("text", ["2.5", "1e-3", "10^-1", "ten", "0"])
def test_a_count_that_is_no_whole_number_is_refused(text, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["certify", "--sigma", "1", "--eps-in", "1", "--out", "o",
                                       "--n-center", text])  # fmt: skip
    assert exit_.value.code == 2
    assert "a positive integer" in capsys.readouterr().err


def test_python_dash_m_centersmooth_runs_the_command(tmp_path) -> None:
    result = command("--help", cwd=tmp_path)
    assert result.returncode == 0 and "certify" in result.stdout


def test_bound_help_is_one_plain_sentence() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("certify", "attack"):
        action = next(a for a in sub.choices[name]._actions if a.dest == "bound")
        text = cli.HelpFormatter(prog=name)._get_help_string(action)
        assert text.count("default") == 1, text
        assert "else the library's" not in text and ";" not in text.split("(default")[0]


# ----------------------------------------------------------------------------- Ctrl-C
def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def ctrl_c_as_in_a_terminal() -> None:
    """Ctrl-C handled by default in the command, as a terminal starts it, even where the tests
    run with SIGINT ignored (started with ``&`` from a script, as a background job ignores it):
    an ignored SIGINT is inherited, and the command would run to its end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("when", ["starting", "running"])
def test_ctrl_c_with_two_workers_prints_one_line(user, tmp_path, when) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it."""
    model, inputs = user
    out = tmp_path / "r.jsonl"
    argv = certify(model, "slow", inputs, out, "--workers", "2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "centersmooth", *argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            started = len(children(proc.pid)) >= 2  # worker processes (and a resource tracker)
            written = out.exists() and out.read_bytes().count(b"\n") >= 2  # a header and a row
            if started and (when == "starting" or written):
                time.sleep(1.0)  # a worker importing torch, or certifying
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines() == ["centersmooth: interrupted"], err
    assert group_ends(proc.pid), "worker processes outlived the command"


def group_ends(pgid: int, seconds: float = 30.0) -> bool:
    """Whether every process of the group has ended within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
