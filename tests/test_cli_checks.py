"""The command's checks on a user's run: the new row columns, the model fingerprint (every worker
and every resumed run certifies the same model), how inputs reach the model (dtype), one-line
errors with the rows kept, warnings for radii and pixel ranges, and a --help without torch."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from seeded_settings import TINY, TINY_FLAGS, USER_MODEL

from centersmooth import rounds
from centersmooth.cli import commands as cli

COUNTS = TINY_FLAGS

MODEL = """
import torch

def seeded():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())

def unseeded():
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())

def unseeded_callable():
    w = torch.randn(3, 4)
    return lambda b: torch.tanh(b @ w.T)

def float32_callable():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, generator=g)
    return lambda b: b @ w.T

def fails_on_input_1():
    # runs out of memory on the noisy copies of input 1 while FAIL_ON_INPUT_1 is set
    import os

    import numpy as np

    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    x1 = float(np.load(os.environ["INPUTS"])[1].mean())

    def f(b):
        if os.environ.get("FAIL_ON_INPUT_1") and abs(float(b.mean()) - x1) < 0.05 and len(b) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return lin(b)

    return f
"""


@pytest.fixture
def user(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "m.py"
    model.write_text(MODEL)
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))
    return model, inputs


def certify(model: Path, spec: str, inputs: Path, out: Path, *extra: str) -> list[str]:
    return ["certify", "--model", f"{model}:{spec}", "--inputs", str(inputs), "--sigma", "0.25",
            "--eps-in", "0.1", *COUNTS, "--out", str(out), "--quiet", "--examples", "0",
            *extra]  # fmt: skip


def command(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The real `centersmooth` command, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "centersmooth.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def records(path: Path) -> tuple[dict, list[dict]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return lines[0], lines[1:]


# ----------------------------------------------------------------------------- rows
def test_rows_hold_the_acceptance_numbers_and_no_check_metric_is_passed(
    user, tmp_path, monkeypatch
) -> None:
    model, inputs = user
    seen = {}
    from centersmooth.runs import runner

    real = runner.certify_dataset

    def spy(*args, **kwargs):
        seen["smoothing"] = args[4]
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "certify_dataset", spy)
    out = tmp_path / "r.jsonl"
    seed = ["--seed", str(USER_MODEL.seed)]  # every row accepts (seeded_settings.USER_MODEL)
    assert cli.main(certify(model, "seeded", inputs, out, "--no-check-metric", *seed)) == 0
    assert seen["smoothing"]["check_metric"] is False
    header, rows = records(out)
    assert "check_metric" not in header["config"]["smoothing"]  # it does not change a row
    for row in rows:
        assert isinstance(row["vacuous"], bool)
        assert 0 <= row["p_low"] <= 1 and row["delta1"] > 0
        assert row["check_level"] == pytest.approx(0.5 - TINY["delta"])
        assert row["abstain_reason"] is None and not row["abstained"]
        assert "output_diameter" in row


# ----------------------------------------------------------------------------- fingerprint
def test_an_unseeded_factory_is_refused_by_a_second_worker(user, tmp_path) -> None:
    model, inputs = user
    out = tmp_path / "r.jsonl"
    result = command(*certify(model, "unseeded", inputs, out, "--workers", "2"), cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "must build the same model every call" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    header, rows = records(out)
    assert rows == [] and "weights_sha256" in header["model_fingerprint"]


@pytest.mark.parametrize("spec", ["unseeded", "unseeded_callable"])
def test_an_unseeded_factory_is_refused_on_resume(user, tmp_path, capsys, spec) -> None:
    model, inputs = user
    out = tmp_path / "r.jsonl"
    assert cli.main(certify(model, spec, inputs, out)) == 0
    before = out.read_bytes()
    code = cli.main(certify(model, spec, inputs, out, "--resume", "--eps-in", "0.2"))
    assert code == 2
    err = capsys.readouterr().err
    # a new --eps-in is a new configuration: refused for that first; with the same, for the model
    assert "cannot resume" in err
    with open(out, "rb+") as fh:  # drop the last input's rows: something left to resume
        lines = before.splitlines(keepends=True)
        fh.write(b"".join(lines[:-1]))
        fh.truncate()
    code = cli.main(certify(model, spec, inputs, out, "--resume"))
    assert code == 2
    err = capsys.readouterr().err
    assert "must build the same model every call" in err and "seed" in err


def test_a_seeded_factory_resumes_and_runs_on_two_workers(user, tmp_path) -> None:
    model, inputs = user
    out = tmp_path / "r.jsonl"
    result = command(*certify(model, "seeded", inputs, out, "--workers", "2"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, rows = records(out)
    assert len(rows) == 3
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:-1]))
    assert cli.main(certify(model, "seeded", inputs, out, "--resume")) == 0
    assert len(records(out)[1]) == 3


def test_a_file_without_a_fingerprint_still_resumes(user, tmp_path) -> None:
    model, inputs = user
    out = tmp_path / "r.jsonl"
    assert cli.main(certify(model, "seeded", inputs, out)) == 0
    header, rows = records(out)
    del header["model_fingerprint"]
    out.write_text("".join(json.dumps(r) + "\n" for r in [header, *rows[:-1]]))
    assert cli.main(certify(model, "seeded", inputs, out, "--resume")) == 0
    assert len(records(out)[1]) == 3


# ----------------------------------------------------------------------------- dtypes
def test_float64_inputs_reach_a_float32_module_as_the_library_feeds_them(user, tmp_path) -> None:
    model, _ = user
    inputs = tmp_path / "x64.npy"
    np.save(inputs, np.random.default_rng(0).normal(size=(2, 4)))  # NumPy's default float64
    out = tmp_path / "r.jsonl"
    result = command(*certify(model, "seeded", inputs, out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(records(out)[1]) == 2


def test_a_dtype_mismatch_is_named_as_such(user, tmp_path, capsys) -> None:
    model, _ = user
    inputs = tmp_path / "x64.npy"
    np.save(inputs, np.random.default_rng(0).normal(size=(2, 4)))
    code = cli.main(certify(model, "float32_callable", inputs, tmp_path / "r.jsonl"))
    err = capsys.readouterr().err
    assert code == 2 and "dtype float64" in err and "astype(np.float32)" in err
    assert "has the shape" not in err
    assert not (tmp_path / "r.jsonl").exists()


def test_a_numpy_model_gets_numpy_batches(tmp_path) -> None:
    (tmp_path / "np_model.py").write_text(
        "import numpy as np\n"
        "def make():\n"
        "    def f(b):\n"
        "        assert isinstance(b, np.ndarray) and b.dtype == np.float64, type(b)\n"
        "        return np.tanh(b)\n"
        "    return f\n"
    )
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.random.default_rng(0).normal(size=(2, 4)))
    out = tmp_path / "r.jsonl"
    argv = certify(tmp_path / "np_model.py", "make", inputs, out, "--numpy-model")
    assert cli.main(argv) == 0
    header, rows = records(out)
    assert len(rows) == 2 and header["config"]["run_info"]["numpy_model"] is True


# ----------------------------------------------------------------------------- failures
def test_no_cuda_is_refused_before_the_file_exists(user, tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    model, inputs = user
    out = tmp_path / "r.jsonl"
    result = command(*certify(model, "seeded", inputs, out, "--device", "cuda"), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "no CUDA device" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_model_failing_mid_run_keeps_the_rows_and_says_how_to_resume(user, tmp_path) -> None:
    model, inputs = user
    out = tmp_path / "r.jsonl"
    argv = certify(model, "fails_on_input_1", inputs, out)
    env = {"INPUTS": str(inputs), "FAIL_ON_INPUT_1": "1"}
    result = command(*argv, cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "input 1" in line and "out of memory" in line and "--resume" in line
    assert [r["input_index"] for r in records(out)[1]] == [0]  # input 0 is kept
    debug = command(*argv, "--resume", cwd=tmp_path, env={**env, "CENTERSMOOTH_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert cli_main_with_env(argv + ["--resume"], {"INPUTS": str(inputs)}) == 0
    assert sorted(r["input_index"] for r in records(out)[1]) == [0, 1, 2]


def cli_main_with_env(argv: list[str], env: dict[str, str]) -> int:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return cli.main(argv)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_debug_shows_the_traceback(user, tmp_path, capsys) -> None:
    model, inputs = user
    argv = ["--debug", *certify(model, "nothing", inputs, tmp_path / "r.jsonl")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "defines no 'nothing'" in err


def test_n_certify_auto_from_the_shell_and_resumed(user, tmp_path, capsys) -> None:
    """``--n-certify auto``: the rows say how many certification samples each input drew (the
    rounds start at the check's 400 and double up to the cap) and the forward passes; the
    header records the cap and the tolerance, and an interrupted run resumes to the same rows.
    A fixed count leaves the cap out of the header."""
    model, inputs = user
    out = tmp_path / "auto.jsonl"
    auto = ["--n-certify", "auto", "--n-certify-cap", "20000"]
    seed = ["--seed", str(USER_MODEL.seed)]  # every row accepts (seeded_settings.USER_MODEL)
    argv = certify(model, "seeded", inputs, out, *auto, *seed)  # the last --n-certify counts
    assert cli.main(argv) == 0
    header, rows = records(out)
    sm = header["config"]["smoothing"]
    assert (sm["n_certify"], sm["n_certify_cap"], sm["n_certify_tolerance"]) == (
        "auto",
        20_000,
        0.01,
    )
    assert len(rows) == 3 and all(r["n_certify"] == "auto" for r in rows)
    for r in rows:
        assert not r["abstained"] and r["certification_samples"] in rounds.schedule(400, 20_000)
        assert r["forward_passes"] == 400 + r["certification_samples"] + 1
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]))  # the last input's row is lost
    assert cli.main([*argv, "--resume"]) == 0
    again = records(out)[1]
    assert [dict(r, seconds=0) for r in again] == [dict(r, seconds=0) for r in rows]
    fixed = tmp_path / "fixed.jsonl"
    assert cli.main(certify(model, "seeded", inputs, fixed, *seed)) == 0
    assert "n_certify_cap" not in records(fixed)[0]["config"]["smoothing"]
    assert not records(fixed)[1][0]["abstained"]
    assert records(fixed)[1][0]["forward_passes"] == 400 + 1_000 + 1


def test_a_bad_n_certify_is_refused(user, tmp_path, capsys) -> None:
    model, inputs = user
    argv = certify(model, "seeded", inputs, tmp_path / "r.jsonl", "--n-certify", "many")
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert (
        stop.value.code == 2
        and "expected a positive integer or auto, got 'many'" in capsys.readouterr().err
    )


# ----------------------------------------------------------------------------- warnings
def test_a_radius_beyond_max_eps_in_is_explained(user, tmp_path, capsys) -> None:
    model, inputs = user
    argv = certify(model, "seeded", inputs, tmp_path / "r.jsonl")
    argv[argv.index("--eps-in") + 1] = "1e6"
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "exceeds the largest certifiable radius max_eps_in=" in err
    assert "--sigma" in err and "--n-certify" in err and "1e+06 needs n_certify >= more than" in err
    auto = certify(model, "seeded", inputs, tmp_path / "a.jsonl", "--n-certify", "auto")
    auto[auto.index("--eps-in") + 1] = "1.1"
    assert cli.main(auto) == 0
    err = capsys.readouterr().err
    assert err.count("exceeds the largest certifiable radius") == 1  # once, before the run
    assert "1.1 needs n_certify_cap >= " in err and "--n-certify-cap" in err


def test_a_check_likely_to_abstain_is_said_once_with_the_count_that_fixes_it(
    user, tmp_path, capsys
) -> None:
    model, inputs = user
    # 200 check samples at delta 0.15 (the tiny counts' delta 0.25 abstains on 0.01% of them)
    argv = certify(model, "seeded", inputs, tmp_path / "r.jsonl", "--n-check", "200", "--delta",
                   "0.15")  # fmt: skip
    assert cli.main(argv) == 0  # whether its rows abstain or not
    err = capsys.readouterr().err
    assert err.count("abstains on about 11.8% of well-behaved inputs") == 1
    assert "n_check >= 353" in err and err.startswith("centersmooth: warning:")


def test_pixels_in_0_255_with_a_small_sigma_are_flagged(tmp_path, capsys) -> None:
    (tmp_path / "img.py").write_text(
        "import torch\ndef make():\n    return lambda b: b.flatten(1)[:, :3]\n"
    )
    inputs = tmp_path / "img.npy"
    np.save(inputs, np.random.default_rng(0).integers(0, 256, size=(2, 1, 4, 4), dtype=np.uint8))
    assert cli.main(certify(tmp_path / "img.py", "make", inputs, tmp_path / "r.jsonl")) == 0
    err = capsys.readouterr().err
    assert "0-255" in err and "[0, 1]" in err and len(err.strip().splitlines()) == 1


def test_targets_of_another_shape_or_count_are_refused(user, tmp_path, capsys) -> None:
    model, inputs = user
    for shape, words in (((3, 4), "shape (4,)"), ((2, 3), "2 rows for 3 inputs")):
        targets = tmp_path / "t.npy"
        np.save(targets, np.zeros(shape, dtype=np.float32))
        argv = certify(model, "seeded", inputs, tmp_path / "r.jsonl", "--targets", str(targets))
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert words in err, err
        assert not (tmp_path / "r.jsonl").exists()


# ----------------------------------------------------------------------------- help
def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from centersmooth.cli.commands import build_parser\n"
        "p = build_parser()\n"
        "for c in ('certify', 'train', 'attack', 'demo', 'report'):\n"
        "    try:\n"
        "        p.parse_args([c, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('torch', 'centersmooth.tasks.base', 'matplotlib')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["certify", "train", "attack", "demo"])
def test_every_option_has_help_with_its_default(name: str) -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices[name]
    formatter = cli.HelpFormatter(prog=name)
    for action in p._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, f"{name} {action.option_strings} has no help"
        takes_value = action.nargs != 0 and not isinstance(action, argparse.BooleanOptionalAction)
        if takes_value and not action.required:
            text = formatter._get_help_string(action)
            assert "default" in text, f"{name} {action.option_strings}: {text!r} names no default"
