"""make_report on small hand-written results files: numbers checked by hand, plots written."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from centersmooth.runs import tables
from centersmooth.runs.report import (
    add_arguments,
    as_image,
    display_images,
    load_run,
    main,
    make_report,
    quantile,
    summarize,
)

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
    input [1, 2, 3, 10]: median 2.5. Certified 3/4, abstained 1/4. Forward passes
    [1401, 1401, 1401, 801]: median 1401.
    At eps_in 0.5: eps_out [2, 3, null (beyond max_eps_in), null (abstained)]: median inf,
    certified 2/4, abstained 1/4; no forward passes recorded."""
    return [
        row(0, 0.25, 1.0, smoothing_error=0.1, base_error=0.5, smoothed_error=0.1, seconds=1.0,
            forward_passes=1401),
        row(1, 0.25, 4.0, smoothing_error=0.3, base_error=0.8, smoothed_error=0.4, seconds=3.0,
            forward_passes=1401),
        row(2, 0.25, 2.0, smoothing_error=0.2, base_error=0.6, smoothed_error=0.2, seconds=2.0,
            forward_passes=1401),
        row(
            3, 0.25, None, abstained=True, smoothing_error=None, base_error=0.7,
            smoothed_error=None, seconds=10.0, forward_passes=801,
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
    assert first.seconds_per_input == 2.5 and first.passes_per_input == 1401
    assert second.eps_in == 0.5 and second.eps_out[0] == math.inf
    assert math.isnan(second.passes_per_input)
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
        "| ours | 0.25 | 0.25 | 4 | 3 [1.75, inf] | 1,401 | 75% | 0% | 25% | 0.2 [0.15, 0.25] "
        "| 0.65 | 0.2 | 2.5 |" in md
    )
    assert "| paper | 0.25 | 0.25 | 4 | 6 [3.5, inf] | 1,401 | 75% |" in md
    assert "| ours | 0.25 | 0.5 | 4 | inf [2.75, inf] | – | 50% |" in md
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


# ------------------------------------------------------------------ vacuous certificates


def vacuous_rows() -> list[dict]:
    """Four angular rows at eps_in 0.25: two certified (0.2, 0.4), one vacuous written with the
    field (0.9, vacuous=true: its outputs' diameter was 0.8), one from a file written before the
    field (1.0 = the angular distance's largest value: inferred vacuous)."""
    return [
        row(0, 0.25, 0.2, metric="angular", vacuous=False),
        row(1, 0.25, 0.4, metric="angular", vacuous=False),
        row(2, 0.25, 0.9, metric="angular", vacuous=True, output_diameter=0.8),
        row(3, 0.25, 1.0, metric="angular"),
    ]


def test_vacuous_certificates_are_counted_apart(tmp_path: Path) -> None:
    assert not tables.is_vacuous(row(0, 0.25, 50.0))  # l2: no largest value known
    assert tables.is_vacuous(row(0, 0.25, 1.0, metric="jaccard"))
    assert not tables.is_vacuous(row(0, 0.25, 0.99, metric="jaccard"))
    assert not tables.is_vacuous(row(0, 0.25, None, metric="jaccard"))
    assert tables.is_vacuous(row(0, 0.25, 3.0, output_diameter=2.5))
    assert not tables.is_vacuous(row(0, 0.25, 1.0, metric="angular", vacuous=False))
    run = load_run(write(tmp_path / "ours.jsonl", [header(), *vacuous_rows()]))
    (s,) = summarize(run)
    assert s.certified_rate == 0.5 and s.vacuous_rate == 0.5 and s.abstain_rate == 0
    # the vacuous radii count as inf: sorted [0.2, 0.4, inf, inf]
    assert s.eps_out == (math.inf, pytest.approx(0.35), math.inf)
    md = make_report([run.path], tmp_path / "r").read_text()
    assert "| eps_out | passes | certified | vacuous | abstain |" in md
    assert "| ours | 0.25 | 0.25 | 4 | inf [0.35, inf] | – | 50% | 50% | 0% |" in md
    (t,) = tables.summarize(run.rows)
    assert (t["certified"], t["vacuous"], t["abstain"], t["eps_out"]) == (0.5, 0.5, 0.0, math.inf)
    text = tables.format_table([t])
    assert "certified" in text and "vacuous" in text
    # rates in percent, passes as a count: a share of inputs is not read as a number of them
    line = text.splitlines()[1]
    assert line.split()[4:7] == ["50%", "50%", "0%"]
    t["passes"] = 20_001.0
    assert "20,001" in tables.format_table([t])


def test_known_diameters_match_the_distances() -> None:
    """Each largest value the report infers vacuity from is the distance's own cap (rows of
    distances not listed carry their ``vacuous`` field or are not inferred)."""
    from centersmooth.metrics import get_metric

    for name, diameter in tables.KNOWN_DIAMETERS.items():
        assert get_metric(name).upper == diameter, name
    # the probability distances have no fixed largest value: k for k distributions per output
    for name in ("total_variation", "hellinger", "l2"):
        assert name not in tables.KNOWN_DIAMETERS and get_metric(name).upper is None


# ------------------------------------------------------------------ grid figures


def load_summarize_script() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "results" / "summarize.py"
    spec = importlib.util.spec_from_file_location("results_summarize", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grid_figure_tells_every_variant_apart() -> None:
    script = load_summarize_script()
    earlier = {"n_center": 10_000, "n_check": 10_000, "n_certify": 100_000, "bound": "binomial"}
    today = dict(earlier, n_certify=10_000, share_check_samples=True)
    settings = {
        "default": dict(earlier, nearest_candidate=True, ball_mass=0.5),
        "default ": dict(earlier),  # the paper's 3 R-hat
        "default  ": dict(earlier, ball_mass=0.25),
        "default   ": dict(earlier, n_certify=10_000, nearest_candidate=True),
        "paper": dict(earlier, n_certify=1_000_000, bound="hoeffding"),
        "default    ": dict(today, nearest_candidate=True, pairwise_bound=True),
        "default     ": dict(today, n_certify="auto", nearest_candidate=True),
        "default      ": dict(today, nearest_candidate=True, pairwise_bound=False),
    }
    labels = [script.variant_label(p.strip(), sm) for p, sm in settings.items()]
    assert labels[0] == "earlier defaults: 10⁴/10⁴/10⁵, binomial, nearest-candidate bound"
    assert labels[4] == "paper preset: 10⁴/10⁴/10⁶, hoeffding, 3 R-hat"
    assert labels[5] == "defaults: 10⁴/10⁴/10⁴, binomial, pairwise bound, shared"
    assert labels[6] == "10⁴/10⁴/auto, binomial, nearest-candidate bound, shared"
    assert labels[7] == "10⁴/10⁴/10⁴, binomial, nearest-candidate bound, shared"
    assert len(set(labels)) == 8
    summaries = [
        {"metric": m, "dataset": d, "variant": v, "sigma": sg, "eps_in": h * sg,
         "eps_out": (1 + i) * h * sg + (m == "l2")}
        for m in ("angular", "l2") for d in ("mnist", "fashion-mnist")
        for i, v in enumerate(labels) for sg in (0.25, 0.5) for h in (0.5, 1.0)
    ]  # fmt: skip
    fig = script.draw("autoencoder", summaries)
    (legend,) = fig.legends
    handles = legend.legend_handles
    assert [t.get_text() for t in legend.get_texts()][-1] == labels[4]
    looks = [(h.get_color(), h.get_marker()) for h in handles]
    assert len({c for c, _ in looks}) == 8  # a colour
    assert len({m for _, m in looks}) == 8  # and a marker per variant,
    styles = script.variant_styles(labels)
    assert len({str(s[1]) for s in styles.values()}) == 8  # and a line style
    assert looks[-1][0] == "black" and styles[labels[4]][:2] == ("black", "--")  # paper preset
    assert legend.handlelength >= 4 and legend.get_texts()[0].get_fontsize() >= 8
    assert len(fig.axes) == 4  # a row per data set, a column per distance
    # every panel names its sigmas at the lines' ends
    assert {t.get_text() for t in fig.axes[0].texts} == {"σ=0.25", "σ=0.5"}


# ------------------------------------------------------------------ example images


def test_example_outputs_keep_their_own_scale_when_not_on_the_inputs() -> None:
    rng = np.random.default_rng(2)
    img = rng.uniform(size=(1, 8, 8))
    unit = img / np.linalg.norm(img)  # the angular center: entries near 0
    example = {"input": img.reshape(64), "base_output": img, "center_l2": img * 0.9,
               "center_angular": unit}  # fmt: skip
    columns = ["input", "base_output", "center_l2", "center_angular"]
    shown = display_images(example, columns)
    assert [own for _, own in shown] == [False, False, False, True]
    for image, _ in shown:
        assert image is not None and image.min() >= 0 and image.max() <= 1
    angular = shown[3][0]
    assert angular is not None and angular.max() == 1.0 and angular.min() == 0.0
    # on the input's scale it would have been near black
    np.testing.assert_allclose(angular, (unit[0] - unit.min()) / np.ptp(unit))
    l2 = shown[2][0]
    assert l2 is not None
    np.testing.assert_allclose(l2, 0.9 * img[0])  # inputs in [0, 1]: drawn on [0, 1]
    # a constant output is mid-grey, not black
    (flat, own), = display_images({"base_output": img, "center_x": np.zeros((8, 8))},
                                  ["center_x"])  # fmt: skip
    assert own and flat is not None and np.all(flat == 0.5)


def test_report_notes_own_scaled_examples(tmp_path: Path) -> None:
    ex = tmp_path / "ours.examples"
    ex.mkdir()
    img = np.random.default_rng(3).uniform(size=(1, 8, 8))
    np.savez(
        ex / "input_0.npz", input=img, base_output=img, center_angular=img / np.linalg.norm(img)
    )
    ours = write(tmp_path / "ours.jsonl", [header(examples_dir="ours.examples"), *fixture_rows()])
    md = make_report([ours], tmp_path / "r").read_text()
    assert "min-max scaled on its own" in md
    assert (tmp_path / "r" / "examples_ours.png").read_bytes().startswith(PNG)


# ------------------------------------------------------------------ files without rows, not results


def test_header_only_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = write(tmp_path / "running.jsonl", [header()])
    assert main([str(empty), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert f"no rows yet in {empty}: the run has not certified any input" in err
    assert not (tmp_path / "r" / "report.md").exists()
    # beside a file with rows: the report is written, the empty file named
    ours = write(tmp_path / "ours.jsonl", [header(), *fixture_rows()])
    assert main([str(ours), str(empty), "--out", str(tmp_path / "r")]) == 0
    assert "no rows yet in" in capsys.readouterr().err
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| ours | 0.25 | 0.25 |" in md and "## Files without rows" in md
    assert "running: no rows yet" in md
    with pytest.raises(ValueError, match="no rows yet"):
        make_report([empty], tmp_path / "r2")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("x.npy", None, "not a centersmooth results file"),
        ("notes.txt", b"hello\nworld\n", "not a centersmooth results file"),
        ("list.jsonl", b"[1, 2]\n", "its first line is not a run header"),
        ("rows.jsonl", b'{"input_index": 0}\n', "its first line is not a run header"),
        ("empty.jsonl", b"", "is empty"),
        ("torn.jsonl", b'{"record": "header", "for', "part of a run header"),
    ],
)
def test_not_a_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes | None,
    expected: str,
) -> None:  # fmt: skip
    path = tmp_path / name
    if content is None:
        np.save(path, np.zeros((3, 28, 28)))
    else:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as err:
        main([str(path), "--out", str(tmp_path / "r")])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert expected in message and str(path) in message
    assert "torn last line" not in message and "codec" not in message


def test_bad_line_after_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "ours.jsonl", [header(), *fixture_rows()])
    with open(path, "a") as f:
        f.write("garbage\n" + json.dumps(row(5, 0.25, 1.0)) + "\n")
    with pytest.raises(ValueError, match="cannot be read as a results file.*line 10"):
        load_run(path)


# ------------------------------------------------------------------ options


def test_labels_after_one_flag_or_several(tmp_path: Path) -> None:
    ours = write(tmp_path / "ours.jsonl", [header(), *fixture_rows()])
    paper = write(tmp_path / "paper.jsonl", [header(), *fixture_rows()])
    for flags in (["--label", "mine", "theirs"], ["--label", "mine", "--label", "theirs"]):
        out = tmp_path / "-".join(flags)
        assert main([str(ours), str(paper), "--out", str(out), *flags]) == 0
        md = (out / "report.md").read_text()
        assert "| mine | 0.25 | 0.25 |" in md and "| theirs | 0.25 | 0.25 |" in md
    with pytest.raises(SystemExit) as err:
        main([str(ours), str(paper), "--out", str(tmp_path / "x"), "--label", "one"])
    assert err.value.code == 2


def test_every_option_says_its_default() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            assert action.help and "default" in action.help, action.option_strings


def test_report_module_does_not_import_torch() -> None:
    code = "import sys, centersmooth.runs.report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
