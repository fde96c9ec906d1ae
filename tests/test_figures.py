"""What a reader of the figures must be able to see: inputs not certified (abstentions), every
curve in a colour of its own, a legend that covers no curve, one title, labels that tell the
runs and the inputs apart; and a report without matplotlib (tables, and a note on the figures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from centersmooth.cli import demo  # matplotlib is a test dependency (pyproject.toml)
from centersmooth.runs.plotting import curves_figure, distribution_figure, pyplot
from centersmooth.runs.report import (
    _labels,
    curves,
    distributions,
    load_runs,
    markdown,
    summarize,
    task_label,
)


def header() -> dict:
    return {"record": "header", "format": "centersmooth-results", "version": "0.1.0", "seed": 0,
            "config": {"smoothing": {}, "run_info": {"task": "user"}}}  # fmt: skip


def rows(abstaining: int, scale: float = 1.0, n: int = 10, **info: object) -> list[dict]:
    """``n`` inputs at eps_in 0.1 and 0.2, the first ``abstaining`` of them abstained."""
    out = []
    for i in range(n):
        for eps in (0.1, 0.2):
            abstained = i < abstaining
            out.append({
                "input_index": i, "task": "user", "metric": "l2", "sigma": 0.25, "eps_in": eps,
                "eps_out": None if abstained else scale * (1 + i / 10 + eps),
                "abstained": abstained, "smoothing_error": None, "base_error": None,
                "smoothed_error": None, "seconds": 1.0, **info,
            })  # fmt: skip
    return out


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def two_runs(tmp_path: Path) -> list:
    ours = write(tmp_path / "ours.jsonl", [header(), *rows(3)])
    paper = write(tmp_path / "paper.jsonl", [header(), *rows(0, scale=1.2)])
    return load_runs([ours, paper])


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]


def test_abstentions_are_shown_on_the_curves(two_runs) -> None:
    summaries = [s for run in two_runs for s in summarize(run)]
    lines = curves(summaries, [run.label for run in two_runs])
    fig = curves_figure(lines, "title")
    try:
        assert "30%" in texts(fig)  # 3 of 10 inputs of "ours" not certified, at each eps_in
        assert texts(fig).count("30%") == 2 and not any(t == "0%" for t in texts(fig))
        ax = fig.axes[0]
        top = ax.get_ylim()[1]
        ours_band = ax.collections[0].get_paths()[0].vertices[:, 1]
        assert ours_band.max() == pytest.approx(top)  # its 75th percentile is infinite: open above
        paper_band = ax.collections[1].get_paths()[0].vertices[:, 1]
        assert paper_band.max() < top
    finally:
        pyplot().close(fig)


def test_a_share_written_above_the_axes_clears_the_title(tmp_path: Path) -> None:
    """Every input abstained: the 100% labels sit above the axes, under the title, not on it."""
    run = load_runs([write(tmp_path / "none.jsonl", [header(), *rows(10)])])
    summaries = [s for r in run for s in summarize(r)]
    fig = curves_figure(
        curves(summaries, [r.label for r in run]),
        "a title long enough to reach across the whole width of these axes",
    )
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        renderer = fig.canvas.get_renderer()
        title = ax.title.get_window_extent(renderer)
        labels = [t for t in ax.texts if t.get_text() == "100%"]
        assert len(labels) == 2
        assert all(not t.get_window_extent(renderer).overlaps(title) for t in labels)
    finally:
        pyplot().close(fig)


def test_every_curve_has_a_colour_of_its_own(two_runs) -> None:
    summaries = [s for run in two_runs for s in summarize(run)]
    fig = curves_figure(curves(summaries, [run.label for run in two_runs]), "title")
    try:
        colours = [
            line.get_color() for line in fig.axes[0].get_lines() if line.get_label()[0] != "_"
        ]
        assert len(colours) == 2 and len(set(colours)) == 2
    finally:
        pyplot().close(fig)


def test_the_distribution_has_one_title_and_a_legend_beside_the_curves(two_runs) -> None:
    fig = distribution_figure(distributions(two_runs, "user", "l2"), "user — l2")
    try:
        fig.canvas.draw()
        (ax,) = fig.axes
        assert fig._suptitle is None and ax.get_title() == "user — l2, sigma=0.25"
        legend = ax.get_legend()
        assert legend.get_window_extent().x0 >= ax.get_window_extent().x1
        assert len({t.get_text() for t in legend.get_texts()}) == 4  # 2 eps_in x 2 runs
    finally:
        pyplot().close(fig)


def test_runs_of_one_name_get_labels_without_a_leading_slash(tmp_path: Path) -> None:
    assert _labels([Path("r_ours.jsonl"), Path("r_ours.jsonl")]) == ["r_ours", "r_ours (2)"]
    assert _labels([Path("a/r.jsonl"), Path("b/r.jsonl")]) == ["a/r", "b/r"]
    assert _labels([Path("x/a/r.jsonl"), Path("y/a/r.jsonl")]) == ["x/a/r", "y/a/r"]


def test_a_model_of_your_own_is_named_in_the_headings(tmp_path: Path) -> None:
    info = {"model": "/home/me/models/detector.py:make", "inputs": "data/images.npy"}
    assert task_label(rows(0, **info)[0]) == "detector.py:make on images.npy"
    run = load_runs([write(tmp_path / "r.jsonl", [header(), *rows(0, **info)])])
    md = markdown(run, summarize(run[0]), {})
    assert "## detector.py:make on images.npy — l2" in md and "user — l2" not in md


def test_the_demo_names_each_test_digit(tmp_path: Path) -> None:
    image = torch.zeros(64)
    eps_in = [0.1, 0.2]
    panels = [
        ("#313 (a 1)", image, image, image, image, np.array([1.0, 2.0])),
        ("#265 (a 1)", image, image, image, None, np.array([np.inf, np.inf])),
    ]
    fig = demo.curves_figure(panels, eps_in, 0.25)
    try:
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert labels == ["test digit #313 (a 1)", "test digit #265 (a 1): abstained"]
    finally:
        pyplot().close(fig)
    fig = demo.digits_figure(panels, 0.25)
    try:
        names = texts(fig)
        assert "#313\n(a 1)" in names and "#265\n(a 1)" in names and "abstained" in names
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert len(titles) == 4  # one per column
    finally:
        pyplot().close(fig)


def test_report_without_matplotlib_writes_its_tables(tmp_path: Path) -> None:
    """The real command, with matplotlib made unimportable."""
    results = write(tmp_path / "r.jsonl", [header(), *rows(3)])
    blocked = tmp_path / "blocked" / "matplotlib"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    env = {**os.environ, "PYTHONPATH": str(blocked.parent)}
    result = subprocess.run(
        [sys.executable, "-m", "centersmooth", "report", str(results), "--out", "rep"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "centersmooth[plots]" in result.stderr and "Traceback" not in result.stderr
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| r | 0.25 | 0.1 | 10 |" in report and "centersmooth[plots]" in report
    assert not list((tmp_path / "rep").glob("*.png"))


def test_face_box_panels_say_what_they_show() -> None:
    from centersmooth.tasks.face_boxes import panel_title

    box = (10.0, 10.0, 40.0, 40.0)
    assert panel_title("lfw0", 0.05, box, 0.1) == "lfw0: eps_in=0.05, eps_out=0.100"
    assert panel_title("gan0", 0.05, box, 1.0).endswith("eps_out=1.000: vacuous")
    assert panel_title("lfw4", 0.05, (0.0, 0.0, 0.0, 0.0), 0.0) == (
        "lfw4: eps_in=0.05\nsmoothed: no face, eps_out=0.000"
    )
    assert panel_title("x", 0.05, None, None).endswith("abstained")
