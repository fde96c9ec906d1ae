"""A task's own smoothing settings: the merge order of ``centersmooth certify`` (library defaults <
task defaults < paper constants < task paper constants < flags), on a fast fake task, and the
settings the gan-faces and face tasks declare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import LinearFactory, tiny_data
from seeded_settings import FAKE_TASK_BALL, TINY

from centersmooth import tasks
from centersmooth.cli import commands as cli
from centersmooth.smoothing import PAPER_SETTINGS
from centersmooth.tasks import CertifySetup, Task, get_task


class FakeTask(Task):
    """A 16-d linear map on seeded inputs, with its own defaults and paper constants."""

    name = "fake"
    default_settings = {
        "n_center": 400,
        "n_check": 400,
        "n_certify": 1_000,
        "delta": TINY["delta"],
        "candidates": 7,
        "batch_size": 200,
    }
    paper_settings = {"n_center": 300, "n_check": 300, "delta": 0.2}

    def certify_setup(self, *, n_inputs: int, **_: Any) -> CertifySetup:
        inputs, _targets = tiny_data(n_inputs)
        return CertifySetup(LinearFactory(), inputs, None, np.arange(n_inputs), {"task": self.name})


def settings(*flags: str, task: Task | None = None) -> dict[str, Any]:
    args = cli.build_parser().parse_args(
        ["certify", "fake", "--sigma", "0.5", "--eps-in", "1", "--out", "o", *flags]
    )
    return cli.smoothing_settings(args, task)


def test_task_defaults_go_over_the_library_defaults() -> None:
    s = settings(task=FakeTask())
    assert s == {"sigma": 0.5, **FakeTask.default_settings}
    assert settings() == {"sigma": 0.5}  # no task: the library's defaults (not repeated)


def test_paper_preset_merge_order() -> None:
    s = settings("--preset", "paper", task=FakeTask())
    assert s["n_center"] == 300 and s["n_check"] == 300 and s["delta"] == 0.2  # task paper
    assert s["n_certify"] == PAPER_SETTINGS["n_certify"]  # generic paper over task default
    assert s["bound"] == "hoeffding" and s["central_candidates"] is False  # generic paper
    assert s["candidates"] == 7 and s["batch_size"] == 200  # task defaults no preset sets
    # a task without paper constants gets the generic ones over its defaults
    plain = settings("--preset", "paper", task=type("Plain", (FakeTask,), {"paper_settings": {}})())
    assert plain["n_center"] == PAPER_SETTINGS["n_center"] and plain["delta"] == 0.05


def test_explicit_flags_win_over_every_preset_level() -> None:
    flags = ["--n-center", "42", "--n-certify", "1234", "--delta", "0.3", "--candidates", "3"]
    for preset in ("default", "paper"):
        args = cli.build_parser().parse_args(
            ["certify", "fake", "--sigma", "0.5", "--eps-in", "1", "--out", "o"]
            + ["--preset", preset, *flags, "--batch-size", "64", "--no-central-candidates"]
        )
        s = cli.smoothing_settings(args, FakeTask())
        assert (s["n_center"], s["n_certify"], s["delta"]) == (42, 1234, 0.3)
        assert s["candidates"] == args.candidates  # however the flag is parsed
        assert s["batch_size"] == 64 and s["central_candidates"] is False
        assert s["n_check"] == (400 if preset == "default" else 300)
    # the paper preset turns central candidates off; the flag turns them back on
    on = settings("--preset", "paper", "--central-candidates", task=FakeTask())
    assert on["central_candidates"] is True and on["bound"] == "hoeffding"
    # likewise its 3 R-hat bound: --nearest-candidate / --no-nearest-candidate
    assert settings("--preset", "paper", task=FakeTask())["nearest_candidate"] is False
    assert "nearest_candidate" not in settings(task=FakeTask())  # the library's default: on
    near = settings("--preset", "paper", "--nearest-candidate", task=FakeTask())
    assert near["nearest_candidate"] is True and near["bound"] == "hoeffding"
    assert settings("--no-nearest-candidate")["nearest_candidate"] is False
    # and its separate check and certification samples: --(no-)share-check-samples
    assert settings("--preset", "paper", task=FakeTask())["share_check_samples"] is False
    assert "share_check_samples" not in settings(task=FakeTask())  # the library's default: on
    shared = settings("--preset", "paper", "--share-check-samples", task=FakeTask())
    assert shared["share_check_samples"] is True
    assert settings("--no-share-check-samples")["share_check_samples"] is False


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="preset must be one of"):
        FakeTask().preset_settings("biggan")


def _header(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text().splitlines()[0])


def test_certify_uses_the_task_settings_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(tasks._REGISTRY, "fake", FakeTask)
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)  # --threads 1: not for the rest
    common = ["certify", "fake", "--n-inputs", "2", "--sigma", "0.1", "--eps-in", "0.05"]
    common += ["--quiet", "--threads", "1"]
    assert cli.main([*common, "--out", str(tmp_path / "default.jsonl")]) == 0
    sm = _header(tmp_path / "default.jsonl")["config"]["smoothing"]
    assert (sm["n_center"], sm["n_certify"], sm["candidates"], sm["batch_size"]) == (
        400,
        1_000,
        7,
        200,
    )
    assert sm["bound"] == "binomial" and sm["central_candidates"] is True
    assert sm["nearest_candidate"] is True  # every default is recorded
    assert sm["share_check_samples"] is True
    paper = tmp_path / "paper.jsonl"
    assert cli.main([*common, "--preset", "paper", "--n-certify", "2000", "--out", str(paper)]) == 0
    header = _header(paper)
    sm = header["config"]["smoothing"]
    assert (sm["n_center"], sm["n_check"], sm["n_certify"], sm["delta"]) == (300, 300, 2000, 0.2)
    assert sm["bound"] == "hoeffding" and sm["central_candidates"] is False
    assert sm["nearest_candidate"] is False and sm["share_check_samples"] is False
    assert sm["candidates"] == 7 and sm["batch_size"] == 200
    assert header["config"]["run_info"]["preset"] == "paper"


def test_gan_faces_declares_its_defaults_and_the_papers_gan_constants() -> None:
    gan = get_task("gan-faces")
    s = settings(task=gan)
    assert s["candidates"] == 30 and s["batch_size"] == 250
    assert "n_center" not in s and "bound" not in s and "delta" not in s  # the library's
    p = settings("--preset", "paper", task=gan)
    assert (p["n_center"], p["n_check"], p["n_certify"]) == (2_000, 2_000, 10_000)
    assert p["delta"] == 0.08 and p["candidates"] == 30 and p["batch_size"] == 250
    assert p["bound"] == "hoeffding" and p["central_candidates"] is False
    assert p["alpha_center"] == p["alpha_certify"] == 0.005


def test_face_tasks_declare_the_counts_they_use() -> None:
    boxes = settings(task=get_task("face-boxes"))
    assert (boxes["n_center"], boxes["n_check"], boxes["n_certify"]) == (5_000, 5_000, 10_000)
    paper = settings("--preset", "paper", task=get_task("face-boxes"))
    assert (paper["n_center"], paper["n_certify"], paper["bound"]) == (5_000, 10_000, "hoeffding")
    emb = settings(task=get_task("face-embeddings"))
    assert (emb["n_center"], emb["n_check"], emb["n_certify"], emb["delta"]) == (60, 60, 200, 0.2)
    # the paper has no face-embedding experiment: its generic constants
    emb_paper = settings("--preset", "paper", task=get_task("face-embeddings"))
    assert {k: emb_paper[k] for k in PAPER_SETTINGS} == PAPER_SETTINGS
    # image tasks keep the library's defaults
    assert settings(task=get_task("autoencoder")) == {"sigma": 0.5}


def test_ball_mass_flag_reaches_the_smoother_and_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert settings("--ball-mass", "0.25")["ball_mass"] == 0.25
    assert "ball_mass" not in settings()  # the library's 1/2, not repeated
    monkeypatch.setitem(tasks._REGISTRY, "fake", FakeTask)
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    common = ["certify", "fake", "--n-inputs", "2", "--sigma", "0.1", "--eps-in", "0.05"]
    common += ["--quiet", "--threads", "1"]
    out = tmp_path / "mass.jsonl"
    # the fake task's 7 candidates are too few for a 0.3 ball (its miss chance is 0.7^7)
    flags = ["--ball-mass", "0.3", "--candidates", "40", "--seed", str(FAKE_TASK_BALL.seed)]
    assert cli.main([*common, *flags, "--out", str(out)]) == 0
    assert _header(out)["config"]["smoothing"]["ball_mass"] == 0.3
    rows = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert len(rows) == 2 and all(r["eps_out"] is not None for r in rows)
    bad = tmp_path / "bad.jsonl"
    assert cli.main([*common, "--ball-mass", "0.6", "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "ball_mass must lie in" in err and len(err.strip().splitlines()) == 1


def test_attack_takes_the_bound_flag_too() -> None:
    args = cli.build_parser().parse_args(
        ["attack", "fake", "--sigma", "0.5", "--eps-in", "1", "--out", "o"]
        + ["--no-nearest-candidate", "--ball-mass", "0.3"]
    )
    s = cli.smoothing_settings(args, FakeTask())
    assert s["nearest_candidate"] is False and s["ball_mass"] == 0.3
