"""The ``centersmooth`` command end to end on tiny settings: train, certify (task and --model),
demo, the JSONL schema, and clear one-line errors for bad paths and bad arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from seeded_settings import AUTOENCODER, AUTOENCODER_FLAGS, digits_autoencoder

from centersmooth.cli import commands as cli
from centersmooth.cli import demo
from centersmooth.runs.runner import ROW_FIELDS

TINY = [*AUTOENCODER_FLAGS, "--quiet"]


@pytest.fixture(autouse=True)
def _cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CENTERSMOOTH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    return Path(digits_autoencoder())  # trained once per process (seeded_settings)


def read_jsonl(path: Path) -> tuple[dict, list[dict]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["record"] == "header"
    return records[0], records[1:]


def test_certify_task_end_to_end(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.jsonl"
    code = cli.main(
        ["certify", "autoencoder", "--checkpoint", str(checkpoint), "--sigma", "0.25",
         "--eps-in", "0.5", "1", "--eps-in-relative", "--n-inputs", "2",
         "--metric", "l2", "angular", "--out", str(out), "--seed", str(AUTOENCODER.seed), *TINY]
    )  # fmt: skip
    assert code == 0
    header, rows = read_jsonl(out)
    assert header["config"]["metrics"] == ["l2", "angular"]
    assert header["config"]["eps_in"] == [0.125, 0.25]
    assert len(rows) == 2 * 2 * 2
    for row in rows:
        assert list(row)[: len(ROW_FIELDS)] == list(ROW_FIELDS)
        assert row["task"] == "autoencoder" and row["dataset"] == "digits"
        assert row["preset"] == "default" and row["sigma_train"] == 0.25
        assert row["n_center"] == 1000 and row["bound"] == "binomial"
        assert row["base_error"] is not None and row["base_error"] > 0
        assert row["abstained"] is False  # seeded_settings.AUTOENCODER
        assert row["eps_out"] > 0 and row["smoothed_error"] is not None
    assert {r["input_index"] for r in rows} == set(
        int(i)
        for i in __import__("centersmooth.data.datasets")
        .data.datasets.load_dataset("digits")
        .test_sample(2)
    )
    # an existing results file is not overwritten without --resume
    code = cli.main(
        ["certify", "autoencoder", "--checkpoint", str(checkpoint), "--sigma", "0.25",
         "--eps-in", "0.1", "--n-inputs", "2", "--out", str(out), *TINY]
    )  # fmt: skip
    assert code == 2
    assert "already exists" in capsys.readouterr().err


def test_certify_paper_preset_settings() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        ["certify", "x", "--sigma", "0.5", "--eps-in", "1", "--out", "o", "--preset", "paper"]
    )
    s = cli.smoothing_settings(args)
    assert s["n_certify"] == 1_000_000 and s["bound"] == "hoeffding"
    assert s["central_candidates"] is False and s["sigma"] == 0.5
    args = parser.parse_args(
        ["certify", "x", "--sigma", "0.5", "--eps-in", "1", "--out", "o", "--preset", "paper",
         "--n-certify", "5000", "--device", "cpu"]
    )  # fmt: skip
    s = cli.smoothing_settings(args)
    assert s["n_certify"] == 5000 and s["device"] == "cpu" and s["bound"] == "hoeffding"


@pytest.mark.parametrize(
    "flag, expected",
    [(["30"], 30), (["tv1=30", "tv2=40"], {"tv1": 30, "tv2": 40})],
)
def test_candidates_flag_takes_a_count_or_per_distance_counts(flag, expected) -> None:
    args = cli.build_parser().parse_args(
        ["certify", "x", "--sigma", "0.5", "--eps-in", "1", "--out", "o", "--candidates", *flag]
    )
    assert args.candidates == expected


@pytest.mark.parametrize("flag", [["30", "tv1=3"], ["tv1=0"], ["tv1=x"]])
def test_bad_candidates_flag_exits_2(flag, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(
            ["certify", "x", "--sigma", "0.5", "--eps-in", "1", "--out", "o", "--candidates", *flag]
        )
    assert exit_info.value.code == 2
    assert "--candidates" in capsys.readouterr().err


MODEL_FILE = """
import torch

def factory():
    return lambda x: torch.tanh(2.0 * x)

def not_a_model():
    return 3

def linear4():
    return torch.nn.Linear(4, 2)

VALUE = 5
"""


def test_certify_user_model(tmp_path: Path) -> None:
    model = tmp_path / "mymodel.py"
    model.write_text(MODEL_FILE)
    inputs = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    np.save(tmp_path / "inputs.npy", inputs)
    np.save(tmp_path / "targets.npy", np.tanh(2 * inputs))
    out = tmp_path / "user.jsonl"
    code = cli.main(
        ["certify", "--model", f"{model}:factory", "--inputs", str(tmp_path / "inputs.npy"),
         "--targets", str(tmp_path / "targets.npy"), "--metric", "l2", "--sigma", "0.1",
         "--eps-in", "0.05", "--out", str(out), *TINY]
    )  # fmt: skip
    assert code == 0
    _, rows = read_jsonl(out)
    assert [r["input_index"] for r in rows] == [0, 1]
    assert all(r["task"] == "user" and r["model"] == f"{model}:factory" for r in rows)
    assert all(r["base_error"] == pytest.approx(0, abs=1e-6) for r in rows)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "centersmooth.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_bad_paths_give_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(MODEL_FILE)
    np.save(tmp_path / "x.npy", np.zeros((2, 3), dtype=np.float32))
    common = ["--sigma", "0.1", "--eps-in", "0.1", "--out", str(tmp_path / "o.jsonl")]
    cases = [
        (["certify", "--model", "m.py:factory", "--inputs", "none.npy", *common],
         "none.npy does not exist"),
        (["certify", "--model", "m.py", "--inputs", "x.npy", *common],
         "path/to/file.py:factory"),
        (["certify", "--model", "m.py:nothing", "--inputs", "x.npy", *common],
         "defines no 'nothing'"),
        (["certify", "--model", "m.py:not_a_model", "--inputs", "x.npy", *common],
         "not a model"),
        (["certify", "--model", "m.py:linear4", "--inputs", "x.npy", *common],
         "fails on a batch of --inputs of shape (2, 3)"),
        (["certify", "--model", "m.py:factory", *common], "go together"),
        (["certify", *common], "name a TASK"),
        (["certify", "nope", *common], "unknown task 'nope'"),
        (["certify", "autoencoder", "--checkpoint", "no.pt", *common], "no.pt does not exist"),
        (["certify", "autoencoder", "--dataset", "digits", *common], "centersmooth train"),
        (["certify", "--model", "m.py:factory", "--inputs", "x.npy", "--metric", "bogus",
          *common], "unknown metric 'bogus'"),
        (["train", "autoencoder", "--dataset", "cifar10", "--data-root", "nowhere"],
         "does not exist"),
    ]  # fmt: skip
    for args, message in cases:
        assert cli.main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    # the real entry point: a bad path gives one line on stderr, exit status 2, no traceback
    result = run_cli(
        "certify", "--model", "missing.py:factory", "--inputs", "x.npy", *common, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "file missing.py does not exist" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bad_arguments_exit_2_with_usage(tmp_path: Path, capsys) -> None:
    cases = [
        (["certify", "autoencoder", "--sigma", "-1", "--eps-in", "1", "--out", "o"],
         "expected a positive number"),
        (["certify", "autoencoder", "--sigma", "0.1", "--out", "o"], "--eps-in"),
        (["certify", "autoencoder", "--sigma", "0.1", "--eps-in", "x", "--out", "o"],
         "expected a number >= 0"),
        (["train", "autoencoder", "--epochs", "0"], "expected a positive integer"),
        (["train", "nope"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ]  # fmt: skip
    for args, message in cases:
        with pytest.raises(SystemExit) as info:
            cli.main(args)
        assert info.value.code == 2
        assert message in capsys.readouterr().err, args
    result = run_cli("certify", "autoencoder", "--sigma", "0", "--eps-in", "1", "--out", "o",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "expected a positive number" in result.stderr


def test_subcommand_registry() -> None:
    assert {"demo", "train", "certify"} <= set(cli.SUBCOMMANDS)
    with pytest.raises(ValueError, match="already registered"):
        cli.register_subcommand("demo", cli.SUBCOMMANDS["demo"])


def test_demo_small(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    import torch

    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep the session's setting
    monkeypatch.setattr(demo, "DEMO_EPOCHS", 2)
    monkeypatch.setattr(
        demo, "DEMO_SAMPLES", {"n_center": 1000, "n_check": 2000, "n_certify": 2000}
    )
    code = cli.main(["demo", "--out-dir", str(tmp_path / "d"), "--n-digits", "2"])
    assert code == 0
    text = capsys.readouterr().out
    assert "eps_out" in text and "smoothing_error" in text
    assert (tmp_path / "d" / "demo_digits.png").stat().st_size > 1000
    assert (tmp_path / "d" / "demo_eps_out.png").stat().st_size > 1000
    # the second run reuses the cached model
    assert cli.main(["demo", "--out-dir", str(tmp_path / "d"), "--n-digits", "1"]) == 0
    assert "using the cached model" in capsys.readouterr().out
    assert torch.get_num_threads() == threads
