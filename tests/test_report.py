"""make_report on small hand-written results files: numbers checked by hand, plots written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from centersmooth.report import as_image, load_run, main, make_report, quantile, summarize

PNG = b"\x89PNG\r\n\x1a\n"


def header(seed: int = 0, examples_dir: str | None = None) -> dict:
    return {
        "record": "header",
        "format": "centersmooth-results",
        "schema_version": 1,
        "version": "0.1.0",
        "seed": seed,
        "n_inputs": 4,
        "examples_dir": examples_dir,
        "config": {
            "smoothing": {"n_center": 10, "n_check": 10, "n_certify": 100, "bound": "binomial"},
            "run_info": {"task": "digits-ae", "preset": "ours"},
        },
    }


def row(i: int, eps_in: float, eps_out: float | None, **kw: object) -> dict:
    r = {
        "input_index": i,
        "task": "digits-ae",
        "metric": "l2",
        "sigma": 0.25,
        "eps_in": eps_in,
        "eps_out": eps_out,
        "abstained": False,
        "smoothing_error": 0.1,
        "base_error": 0.5,
        "smoothed_error": 0.3,
        "seconds": 1.0,
    }
    r.update(kw)
    return r


def fixture_rows() -> list[dict]:
    """Four inputs at eps_in 0.25; the fourth abstained. Hand computation (linear quantiles):
    eps_out sorted [1, 2, 4, inf]: median = 2 + 0.5 * (4 - 2) = 3, q25 = 1 + 0.75 * 1 = 1.75,
    q75 = inf. Smoothing errors [0.1, 0.2, 0.3]: median 0.2, IQR [0.15, 0.25]. Base errors
    [0.5, 0.6, 0.7, 0.8]: median 0.65. Smoothed errors [0.1, 0.2, 0.4]: median 0.2. Seconds per
    input [1, 2, 3, 10]: median 2.5. Certified 3/4, abstained 1/4.
    At eps_in 0.5: eps_out [2, 3, null (beyond max_eps_in), null (abstained)]: median inf,
    certified 2/4, abstained 1/4."""
    return [
        row(0, 0.25, 1.0, smoothing_error=0.1, base_error=0.5, smoothed_error=0.1, seconds=1.0),
        row(1, 0.25, 4.0, smoothing_error=0.3, base_error=0.8, smoothed_error=0.4, seconds=3.0),
        row(2, 0.25, 2.0, smoothing_error=0.2, base_error=0.6, smoothed_error=0.2, seconds=2.0),
        row(
            3, 0.25, None, abstained=True, smoothing_error=None, base_error=0.7,
            smoothed_error=None, seconds=10.0,
        ),
        row(0, 0.5, 2.0, seconds=1.0),
        row(1, 0.5, None, seconds=3.0),
        row(2, 0.5, 3.0, seconds=2.0),
        row(3, 0.5, None, abstained=True, smoothing_error=None, smoothed_error=None, seconds=10.0),
    ]  # fmt: skip


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_quantile_matches_numpy_and_handles_inf() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 10):
        v = rng.normal(size=n)
        for q in (0.25, 0.5, 0.75):
            assert quantile(v, q) == pytest.approx(np.quantile(v, q))
    assert quantile([1, 2, 4, math.inf], 0.5) == 3.0
    assert quantile([1, 2, 4, math.inf], 0.75) == math.inf
    assert quantile([math.inf, math.inf], 0.5) == math.inf
    assert math.isnan(quantile([], 0.5))


def test_summary_numbers_by_hand(tmp_path: Path) -> None:
    run = load_run(write(tmp_path / "ours.jsonl", [header(), *fixture_rows()]))
    first, second = summarize(run)
    assert (first.task, first.metric, first.sigma, first.eps_in) == ("digits-ae", "l2", 0.25, 0.25)
    assert first.n_inputs == 4
    assert first.eps_out == (3.0, 1.75, math.inf)
    assert first.certified_rate == 0.75 and first.abstain_rate == 0.25
    assert first.smoothing_error == pytest.approx((0.2, 0.15, 0.25))
    assert first.base_error == pytest.approx(0.65)
    assert first.smoothed_error == pytest.approx(0.2)
    assert first.seconds_per_input == 2.5
    assert second.eps_in == 0.5 and second.eps_out[0] == math.inf
    assert second.certified_rate == 0.5 and second.abstain_rate == 0.25


def test_report_markdown_and_plots(tmp_path: Path) -> None:
    ours = write(tmp_path / "ours.jsonl", [header(), *fixture_rows()])
    # a second run ("paper"): every eps_out doubled, sigma 0.5 as well
    paper_rows = [dict(r, eps_out=None if r["eps_out"] is None else 2 * r["eps_out"]) for r in
                  fixture_rows()]  # fmt: skip
    paper_rows += [dict(r, sigma=0.5) for r in paper_rows]
    paper = write(tmp_path / "paper.jsonl", [header(), *paper_rows])
    out = tmp_path / "report"
    md_path = make_report([ours, paper], out)
    md = md_path.read_text()
    assert "## digits-ae — l2" in md
    assert (
        "| ours | 0.25 | 0.25 | 4 | 3 [1.75, inf] | 75% | 25% | 0.2 [0.15, 0.25] | 0.65 | 0.2 "
        "| 2.5 |" in md
    )
    assert "| paper | 0.25 | 0.25 | 4 | 6 [3.5, inf] | 75% |" in md
    assert "| paper | 0.5 | 0.5 | 4 | inf [" in md
    # runs side by side: at each (sigma, eps_in), ours then paper
    assert md.index("| ours | 0.25 | 0.25 |") < md.index("| paper | 0.25 | 0.25 |")
    assert md.index("| paper | 0.25 | 0.25 |") < md.index("| ours | 0.25 | 0.5 |")
    for name in ("eps_out_vs_eps_in_digits-ae_l2.png", "eps_out_distribution_digits-ae_l2.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5_000
        assert f"]({name})" in md


def test_examples_grid_for_images(tmp_path: Path) -> None:
    ex = tmp_path / "ours.examples"
    ex.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        img = rng.uniform(size=(1, 8, 8))
        np.savez(
            ex / f"input_{i}.npz",
            input=img.reshape(64),  # flat 8x8 digits are drawn as images
            base_output=img,
            target=img,
            center_l2=img,
        )
    ours = write(tmp_path / "ours.jsonl", [header(examples_dir="ours.examples"), *fixture_rows()])
    md = make_report([ours], tmp_path / "report").read_text()
    grid = tmp_path / "report" / "examples_ours.png"
    assert grid.read_bytes().startswith(PNG) and grid.stat().st_size > 2_000
    assert "## Examples" in md and "examples_ours.png" in md


def test_as_image() -> None:
    assert as_image(np.zeros(784)).shape == (28, 28)
    assert as_image(np.zeros((3, 8, 8))).shape == (8, 8, 3)
    assert as_image(np.zeros((1, 8, 8))).shape == (8, 8)
    assert as_image(np.zeros(10)) is None and as_image(np.zeros((4, 4))) is not None
    assert as_image(np.zeros((5, 2, 2))) is None


def test_cli_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ours = write(tmp_path / "ours.jsonl", [header(), *fixture_rows()])
    assert main([str(ours), "--out", str(tmp_path / "r"), "--label", "defaults"]) == 0
    assert "| defaults | 0.25 | 0.25 |" in (tmp_path / "r" / "report.md").read_text()
    with pytest.raises(SystemExit) as err:
        main([str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r")])
    assert err.value.code == 2
    assert "not found" in capsys.readouterr().err


def test_data_sets_of_one_task_stay_apart(tmp_path: Path) -> None:
    rows = [dict(r, dataset="mnist") for r in fixture_rows()]
    rows += [dict(r, dataset="fashion-mnist", input_index=r["input_index"] + 10) for r in rows]
    md = make_report([write(tmp_path / "ours.jsonl", [header(), *rows])], tmp_path / "r")
    text = md.read_text()
    assert "## digits-ae / mnist — l2" in text and "## digits-ae / fashion-mnist — l2" in text
    assert (tmp_path / "r" / "eps_out_vs_eps_in_digits-ae-mnist_l2.png").stat().st_size > 0


def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = write(tmp_path / "ours.jsonl", [header(), *fixture_rows()])
    with open(path, "a") as f:
        f.write('{"input_index": 9, "met')
    assert len(load_run(path).rows) == 8
