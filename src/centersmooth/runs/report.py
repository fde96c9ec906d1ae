"""Turn results files into a markdown summary and PNG plots (``centersmooth report``).

For every (task and data set, metric, sigma, eps_in) of every results file: the median and
interquartile range of ``eps_out`` (an input that abstained, could not be certified or got a
vacuous certificate counts as ``eps_out = inf``), the certified, vacuous and abstain rates (a
vacuous certificate, ``eps_out`` at or above the largest distance two outputs can have, is not
counted as certified: see :mod:`centersmooth.runs.tables`), the median and IQR of the smoothing
error, the medians of the base and smoothed errors against the ground truth, and the median time per
input. Several files sit side by side in each table and plot (for example our defaults against
``--preset paper``).

Plots: ``eps_out`` against ``eps_in`` (median line, IQR band, one line per sigma and file), the
empirical distribution of ``eps_out``, and, where the run saved example arrays that look like
images, a grid of inputs with their base and smoothed outputs.

Importing this module does not import torch (``centersmooth --help`` stays fast): the results
file reader is imported when a file is read.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .tables import certified_eps_out, is_vacuous

logger = logging.getLogger(__name__)

INF = math.inf
RESULTS_FORMAT = "centersmooth-results"  # the header's "format" (results_file.FORMAT)


@dataclass(frozen=True)
class RunFile:
    """One results file: its label in the report, header and rows."""

    path: Path
    label: str
    header: dict[str, Any]
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class Summary:
    """The statistics of one (run, task, metric, sigma, eps_in) group of rows."""

    run: str
    task: str
    metric: str
    sigma: float
    eps_in: float
    n_inputs: int
    eps_out: tuple[float, float, float]  # median, 25th and 75th percentiles (inf = not certified)
    certified_rate: float  # finite eps_out that is not vacuous
    abstain_rate: float
    smoothing_error: tuple[float, float, float]  # over inputs that did not abstain
    base_error: float  # median; nan without targets
    smoothed_error: float  # median over inputs that did not abstain; nan without targets
    seconds_per_input: float  # median
    vacuous_rate: float = 0.0  # finite eps_out at or above the largest distance between outputs
    passes_per_input: float = math.nan  # median forward passes per certificate (nan: not recorded)


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile with linear interpolation between order statistics (NumPy's default),
    where ``inf`` values are allowed: interpolating towards ``inf`` gives ``inf``."""
    data = sorted(float(v) for v in values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    a, b = data[lo], data[hi]
    frac = pos - lo
    if frac == 0 or a == b:
        return a
    if math.isinf(b):
        return b
    return a + (b - a) * frac


def task_label(row: dict[str, Any]) -> str:
    """The task a row belongs to in the tables: ``task / dataset`` when the run named its data
    set (so that MNIST and Fashion-MNIST runs of one task stay apart); for a model of your own
    (``--model``), its file and factory and the inputs' file (``model.py:make on x.npy``);
    else the task."""
    task = str(row.get("task") or "(no task)")
    model = row.get("model")
    if task == "user" and model:
        path, _, factory = str(model).rpartition(":")
        label = f"{Path(path).name}:{factory}" if path else str(model)
        inputs = row.get("inputs")
        return f"{label} on {Path(str(inputs)).name}" if inputs else label
    dataset = row.get("dataset")
    return f"{task} / {dataset}" if dataset else task


def _three(values: list[float]) -> tuple[float, float, float]:
    return quantile(values, 0.5), quantile(values, 0.25), quantile(values, 0.75)


NOT_RESULTS = (
    "not a centersmooth results file (JSON lines that start with a run header, as "
    "`centersmooth certify --out FILE.jsonl` writes them)"
)


def _check_first_line(p: Path) -> None:
    """Refuse, with a plain message, a file that is not a results file at all (an array, an
    image, another JSON file): its first line must be a JSON run header."""
    with open(p, "rb") as f:
        first = f.readline(16 * 1024 * 1024)
    if not first.strip():
        raise ValueError(
            f"{p} is empty: a run that has not written its header yet, or {NOT_RESULTS}"
        )
    try:
        record = json.loads(first.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        if not first.endswith(b"\n") and first.lstrip().startswith(b'{"record": "header"'):
            raise ValueError(
                f"{p} holds only part of a run header (the run stopped while writing it): "
                "no rows yet"
            ) from None
        raise ValueError(f"{p} is {NOT_RESULTS}") from None
    if not isinstance(record, dict) or record.get("record") != "header":
        raise ValueError(f"{p} is {NOT_RESULTS}: its first line is not a run header")
    if record.get("format", RESULTS_FORMAT) != RESULTS_FORMAT:
        raise ValueError(f"{p} is {NOT_RESULTS}: its header names format {record['format']!r}")


def load_run(path: str | Path, label: str | None = None) -> RunFile:
    """Read a results file (a torn last line is dropped and reported). A file without rows yet
    (only its header) loads with no rows; a file that is not a results file is refused with a
    ``ValueError`` that says so."""
    from .results_file import read_results  # imports torch: only when a file is read

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"results file not found: {p}")
    if p.is_dir():
        raise ValueError(f"{p} is a folder; give the results files (*.jsonl) in it")
    _check_first_line(p)
    try:
        existing = read_results(p)
    except ValueError as err:  # a bad line after a good header
        raise ValueError(f"{p} cannot be read as a results file: {err}") from None
    if existing.header is None:
        raise ValueError(f"{p} is {NOT_RESULTS}")
    return RunFile(p, label or p.stem, existing.header, existing.rows)


def summarize(run: RunFile) -> list[Summary]:
    """One :class:`Summary` per (task, metric, sigma, eps_in) of a run, sorted."""
    groups: dict[tuple[str, str, float, float], list[dict[str, Any]]] = {}
    for row in run.rows:
        key = (
            task_label(row),
            str(row["metric"]),
            float(row["sigma"]),
            float(row["eps_in"]),
        )
        groups.setdefault(key, []).append(row)
    out = []
    for (task, metric, sigma, eps), rows in sorted(groups.items()):
        eps_out = [certified_eps_out(r) for r in rows]
        smoothing = [float(r["smoothing_error"]) for r in rows if r["smoothing_error"] is not None]
        base = [float(r["base_error"]) for r in rows if r.get("base_error") is not None]
        smoothed = [float(r["smoothed_error"]) for r in rows if r.get("smoothed_error") is not None]
        seconds: dict[int, float] = {}
        passes: dict[int, float] = {}
        for r in rows:
            seconds.setdefault(int(r["input_index"]), float(r["seconds"]))
            if r.get("forward_passes") is not None:
                passes.setdefault(int(r["input_index"]), float(r["forward_passes"]))
        out.append(
            Summary(
                run=run.label,
                task=task,
                metric=metric,
                sigma=sigma,
                eps_in=eps,
                n_inputs=len({int(r["input_index"]) for r in rows}),
                eps_out=_three(eps_out),
                certified_rate=sum(math.isfinite(v) for v in eps_out) / len(rows),
                vacuous_rate=sum(is_vacuous(r) for r in rows) / len(rows),
                abstain_rate=sum(bool(r["abstained"]) for r in rows) / len(rows),
                smoothing_error=_three(smoothing),
                base_error=quantile(base, 0.5),
                smoothed_error=quantile(smoothed, 0.5),
                seconds_per_input=quantile(list(seconds.values()), 0.5),
                passes_per_input=quantile(list(passes.values()), 0.5),
            )
        )
    return out


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "inf"
    return f"{v:.4g}"


def _count(v: float) -> str:
    """A count such as the forward passes, written out (20,001, not 2e+04)."""
    return "–" if math.isnan(v) else f"{v:,.0f}"


def _fmt3(t: tuple[float, float, float]) -> str:
    if math.isnan(t[0]):
        return "–"
    return f"{_fmt(t[0])} [{_fmt(t[1])}, {_fmt(t[2])}]"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _labels(paths: Sequence[Path]) -> list[str]:
    """File stems; where two stems collide, with as many parent folders as tell them apart, and
    a number for the same file given twice (``r``, ``r (2)``)."""
    resolved = [p.resolve() for p in paths]
    labels = []
    for p, full in zip(paths, resolved, strict=True):
        twins = {r for q, r in zip(paths, resolved, strict=True) if q.stem == p.stem} - {full}
        label, depth = p.stem, 1
        while twins and depth < len(full.parts):
            label = "/".join([*full.parts[-1 - depth : -1], p.stem])
            twins = {t for t in twins if "/".join([*t.parts[-1 - depth : -1], t.stem]) == label}
            depth += 1
        labels.append(label)
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return unique


def markdown(runs: list[RunFile], summaries: list[Summary], plots: dict[str, list[str]]) -> str:
    """The report text: one table per (task, metric), runs side by side at each sigma, eps_in."""
    lines = ["# Center smoothing report", "", "## Runs", ""]
    lines += [
        "| run | file | version | seed | inputs | rows | settings |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        cfg = run.header.get("config", {})
        sm = cfg.get("smoothing", {})
        info = cfg.get("run_info", {})
        settings = ", ".join(
            f"{k}={sm[k]}"
            for k in (
                "n_center",
                "n_check",
                "n_certify",
                "bound",
                "delta",
                "central_candidates",
                "ball_mass",
                "nearest_candidate",
                "share_check_samples",
                "pairwise_bound",
            )
            if k in sm
        )
        extra = ", ".join(f"{k}={v}" for k, v in info.items() if k != "task")
        if extra:
            settings = f"{settings}; {extra}"
        lines.append(
            f"| {run.label} | `{run.path}` | {run.header.get('version')} | "
            f"{run.header.get('seed')} | {len({int(r['input_index']) for r in run.rows})} | "
            f"{len(run.rows)} | {settings} |"
        )
    lines += [
        "",
        "`eps_out` and the smoothing error: median [25th, 75th percentile] over inputs; an input",
        "that abstained, could not be certified or got a vacuous certificate counts as",
        "`eps_out = inf`. Certified: a finite `eps_out` below the largest distance two outputs can",
        "have. Vacuous: a finite `eps_out` at or above it (the certificate says nothing; inferred",
        "for rows without the `vacuous` field where the distance has a known largest value).",
        "Abstain: the smoothing abstained. Passes: median forward passes of the base function per",
        "certificate (all metrics of the input together; `–` for files that did not record them).",
        "Base and smoothed errors: medians of `d(f(x), target)` and `d(center, target)`. Time:",
        "median seconds per input (all metrics of the input together). With shared check samples",
        "(the default) a statement restricted to certified inputs conditions on their acceptance:",
        "each such certificate holds with probability at least `1 - alpha / P(accept)`.",
        "",
    ]
    by_table: dict[tuple[str, str], list[Summary]] = {}
    for s in summaries:
        by_table.setdefault((s.task, s.metric), []).append(s)
    order = {run.label: i for i, run in enumerate(runs)}
    for (task, metric), group in sorted(by_table.items()):
        lines += [f"## {task} — {metric}", ""]
        lines += [
            "| run | sigma | eps_in | inputs | eps_out | passes | certified | vacuous | abstain "
            "| smoothing error | base error | smoothed error | s / input |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in sorted(group, key=lambda s: (s.sigma, s.eps_in, order[s.run])):
            lines.append(
                f"| {s.run} | {_fmt(s.sigma)} | {_fmt(s.eps_in)} | {s.n_inputs} | "
                f"{_fmt3(s.eps_out)} | {_count(s.passes_per_input)} | "
                f"{s.certified_rate:.0%} | {s.vacuous_rate:.0%} | "
                f"{s.abstain_rate:.0%} | "
                f"{_fmt3(s.smoothing_error)} | {_fmt(s.base_error)} | {_fmt(s.smoothed_error)} | "
                f"{_fmt(s.seconds_per_input)} |"
            )
        lines.append("")
        for name in plots.get(f"{task}|{metric}", []):
            lines += [f"![{name}]({name})", ""]
    example_plots = plots.get("examples", [])
    if example_plots:
        lines += ["## Examples", "", OWN_SCALE_NOTE, ""]
        for name in example_plots:
            lines += [f"![{name}]({name})", ""]
    return "\n".join(lines)


def curves(group: list[Summary], runs: list[str]) -> list[Any]:
    """The lines of the eps_out-against-eps_in figure of one (task, metric): one per (sigma,
    run) with rows, in sigma then run order (``plotting.Curve``)."""
    from .plotting import Curve

    out = []
    for sigma in sorted({s.sigma for s in group}):
        for j, run in enumerate(runs):
            pts = sorted(
                (s for s in group if s.sigma == sigma and s.run == run), key=lambda s: s.eps_in
            )
            if pts:
                out.append(
                    Curve(
                        label=f"sigma={sigma:g}" + (f" ({run})" if len(runs) > 1 else ""),
                        run=j,
                        eps_in=[s.eps_in for s in pts],
                        median=[s.eps_out[0] for s in pts],
                        low=[s.eps_out[1] for s in pts],
                        high=[s.eps_out[2] for s in pts],
                        not_certified=[1.0 - s.certified_rate for s in pts],
                    )
                )
    return out


def distributions(runs: list[RunFile], task: str, metric: str) -> list[Any]:
    """The panels of the distribution figure of one (task, metric), one per sigma: per (eps_in,
    run), the eps_out of its inputs as certificates (``inf`` for an input not certified; they
    count in the denominator, so a curve ends at the certified rate)."""
    from .plotting import Distribution, Step

    rows = [
        (j, r)
        for j, run in enumerate(runs)
        for r in run.rows
        if task_label(r) == task and r["metric"] == metric
    ]
    panels = []
    for sigma in sorted({float(r["sigma"]) for _, r in rows}):
        at_sigma = [(j, r) for j, r in rows if float(r["sigma"]) == sigma]
        steps = []
        for i, eps in enumerate(sorted({float(r["eps_in"]) for _, r in at_sigma})):
            for j, run in enumerate(runs):
                vals = [certified_eps_out(r) for k, r in at_sigma if k == j and r["eps_in"] == eps]
                if vals:
                    name = f"eps_in={eps:g}" + (f" ({run.label})" if len(runs) > 1 else "")
                    steps.append(Step(name, i, j, vals, len(vals)))
        panels.append(Distribution(f"sigma={sigma:g}", steps))
    return panels


def as_image(array: np.ndarray) -> np.ndarray | None:
    """``array`` as a displayable (H, W) or (H, W, 3) image, or None if it does not look like one:
    (H, W), (1 or 3, H, W), or a flat vector of square length (at least 64)."""
    a = np.asarray(array, dtype=float)
    if a.ndim == 3 and a.shape[0] in (1, 3) and min(a.shape[1:]) >= 4:
        a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    elif a.ndim == 1 and a.size >= 64 and math.isqrt(a.size) ** 2 == a.size:
        a = a.reshape(math.isqrt(a.size), math.isqrt(a.size))
    elif not (a.ndim == 2 and min(a.shape) >= 4):
        return None
    return a


def _examples(run: RunFile, limit: int = 6) -> list[tuple[int, dict[str, np.ndarray]]]:
    name = run.header.get("examples_dir")
    if not name:
        return []
    directory = run.path.parent / name
    if not directory.is_dir():
        return []
    found = []
    for p in directory.glob("input_*.npz"):
        match = re.fullmatch(r"input_(-?\d+)\.npz", p.name)
        if match:
            with np.load(p, allow_pickle=False) as data:
                found.append((int(match.group(1)), {k: data[k] for k in data.files}))
    return sorted(found, key=lambda item: item[0])[:limit]


SHARED_KEYS = ("input", "target", "base_output")  # they set a row's display scale
OWN_SCALE_NOTE = (
    "Each row of images shares the grey (or colour) scale of its input, target and base output, "
    "so they compare directly. An output whose values are not on that scale (the angular "
    "center, a unit vector, is) is min-max scaled on its own; its column title is marked *."
)


def display_images(
    example: dict[str, np.ndarray], columns: Sequence[str]
) -> list[tuple[np.ndarray | None, bool]]:
    """Each column's image of one example, scaled to [0, 1] for display, and whether it got a
    scale of its own.

    The scale is the range of the input, target and base output ([0, 1] when they lie in it).
    An image whose values span less than half of that range, or reach more than a quarter of
    it beyond either end (the angular center is a unit vector: all its entries near 0), would
    show as a flat black or white square on it, so it is min-max scaled on its own instead (a
    constant image shows mid-grey)."""
    images = [as_image(example[key]) if key in example else None for key in columns]
    reference = [
        img
        for key, img in zip(columns, images, strict=True)
        if key in SHARED_KEYS and img is not None
    ]
    if reference:
        lo = min(float(img.min()) for img in reference)
        hi = max(float(img.max()) for img in reference)
        if lo >= 0.0 and hi <= 1.0:
            lo, hi = 0.0, 1.0
    else:
        lo, hi = 0.0, 1.0
    span = hi - lo if hi > lo else 1.0
    out: list[tuple[np.ndarray | None, bool]] = []
    for key, img in zip(columns, images, strict=True):
        if img is None:
            out.append((None, False))
            continue
        a, b = float(img.min()), float(img.max())
        fits = bool(reference) and (
            key in SHARED_KEYS
            or (b - a >= 0.5 * span and a >= lo - 0.25 * span and b <= hi + 0.25 * span)
        )
        if fits:
            out.append((np.clip((img - lo) / span, 0.0, 1.0), False))
        elif b > a:
            out.append(((img - a) / (b - a), True))
        else:
            out.append((np.full_like(img, 0.5), True))
    return out


def _plot_examples(run: RunFile, path: Path) -> bool:
    """Grid: a row per example input; columns input, target, base output, smoothed output per
    metric (those that are image-shaped). False when nothing looks like an image."""
    examples = _examples(run)
    if not examples:
        return False
    keys = ["input", "target", "base_output"]
    keys += sorted({k for _, e in examples for k in e if k.startswith("center_")})
    columns = [k for k in keys if any(k in e and as_image(e[k]) is not None for _, e in examples)]
    if "base_output" not in columns:
        return False
    from .plotting import pyplot, save

    plt = pyplot()

    shown = [display_images(example, columns) for _, example in examples]
    own = [any(row[j][1] for row in shown) for j in range(len(columns))]
    titles = {"input": "input", "target": "target", "base_output": "base f(x)"}
    fig, axes = plt.subplots(
        len(examples),
        len(columns),
        figsize=(1.6 * len(columns), 1.6 * len(examples) + (0.35 if any(own) else 0.0)),
        squeeze=False,
    )
    for i, ((index, _), row) in enumerate(zip(examples, shown, strict=True)):
        for j, (key, (img, _)) in enumerate(zip(columns, row, strict=True)):
            ax = axes[i][j]
            ax.axis("off")
            if img is not None and img.ndim == 3:
                ax.imshow(img)
            elif img is not None:
                ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0)
            if i == 0:
                title = titles.get(key, "smoothed " + key[len("center_") :])
                ax.set_title(title + (" *" if own[j] else ""), fontsize=8)
            if j == 0:
                ax.text(-0.1, 0.5, f"#{index}", transform=ax.transAxes, ha="right", va="center")
    fig.suptitle(run.label, fontsize=9)
    fig.tight_layout()
    if any(own):
        fig.subplots_adjust(bottom=0.35 / fig.get_figheight() + 0.02)
        fig.text(
            0.5, 0.01, "* min-max scaled per image (not on the input's scale)",
            ha="center", va="bottom", fontsize=7,
        )  # fmt: skip
    save(fig, path)
    return True


def load_runs(
    result_files: Sequence[str | Path], labels: Sequence[str] | None = None
) -> list[RunFile]:
    """Read the results files, named by ``labels`` (default: the file stems, with the folder
    where two stems collide)."""
    paths = [Path(p) for p in result_files]
    if not paths:
        raise ValueError("give at least one results file")
    if labels is not None and len(labels) != len(paths):
        raise ValueError(
            f"{len(labels)} labels for {len(paths)} results files: give one --label per file, "
            "in the order of the files"
        )
    names = list(labels) if labels is not None else _labels(paths)
    return [load_run(p, name) for p, name in zip(paths, names, strict=True)]


def no_rows_message(run: RunFile) -> str:
    return f"no rows yet in {run.path}: the run has not certified any input"


def write_report(runs: Sequence[RunFile], out_dir: str | Path) -> Path:
    """Write ``report.md`` and the PNG plots of ``runs`` into ``out_dir``; return the markdown
    path. Files without rows yet are named in the report and left out of its tables; if no file
    has rows, ``ValueError`` (``no rows yet in ...``). Without matplotlib (the ``plots`` extra)
    the tables are written alone, with a note in the report on how to get the figures
    (:data:`NO_FIGURES`)."""
    from .plotting import available, curves_figure, distribution_figure, save

    full = [run for run in runs if run.rows]
    if not full:
        raise ValueError("; ".join(no_rows_message(run) for run in runs))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [s for run in full for s in summarize(run)]
    plots: dict[str, list[str]] = {}
    tables = sorted({(s.task, s.metric) for s in summaries})
    draw = available()
    for task, metric in tables if draw else ():
        group = [s for s in summaries if s.task == task and s.metric == metric]
        title = f"{task} — {metric}"
        curve = f"eps_out_vs_eps_in_{_slug(task)}_{_slug(metric)}.png"
        save(curves_figure(curves(group, [run.label for run in full]), title), out / curve)
        dist = f"eps_out_distribution_{_slug(task)}_{_slug(metric)}.png"
        save(distribution_figure(distributions(full, task, metric), title), out / dist)
        plots[f"{task}|{metric}"] = [curve, dist]
    for run in full if draw else ():
        name = f"examples_{_slug(run.label)}.png"
        if _plot_examples(run, out / name):
            plots.setdefault("examples", []).append(name)
    text = markdown(full, summaries, plots)
    if not draw:
        text += f"\n{NO_FIGURES}\n"
    empty = [run for run in runs if not run.rows]
    if empty:
        notes = ["", "## Files without rows", ""]
        notes += [f"- {run.label}: {no_rows_message(run)}." for run in empty]
        text += "\n".join(notes) + "\n"
    report = out / "report.md"
    report.write_text(text, encoding="utf-8")
    return report


NO_FIGURES = (
    "No figures: drawing them needs matplotlib, which is not installed "
    "(pip install 'centersmooth[plots]')."
)


def make_report(
    result_files: Sequence[str | Path],
    out_dir: str | Path,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write ``report.md`` and the PNG plots for ``result_files`` into ``out_dir``; return the
    markdown path. ``labels`` name the files in tables and legends (default: the file stems).
    A file without rows yet is logged and left out; ``ValueError`` if no file has rows."""
    runs = load_runs(result_files, labels)
    for run in runs:
        if not run.rows and any(other.rows for other in runs):
            logger.warning("%s; left out of the report", no_rows_message(run))
    return write_report(runs, out_dir)


# ------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``centersmooth report``."""
    parser.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS.jsonl",
        help="results files (JSON lines written by `centersmooth certify --out`) to summarise "
        "side by side; required, one or more",
    )
    parser.add_argument(
        "--out",
        default="report",
        metavar="DIR",
        help="folder for report.md and the PNG plots, created if missing (default: report)",
    )
    parser.add_argument(
        "--label",
        nargs="+",
        action="extend",
        dest="labels",
        metavar="LABEL",
        help="names of the results files in tables and plots, one per file in the order of the "
        "files: `--label ours paper` or `--label ours --label paper`; give it after the files "
        "(default: the file names without .jsonl, with the folder where two collide)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``centersmooth report``; print where the report went. Exit status 1, with a
    message, when no file has rows yet; files without rows beside others with rows are named
    and left out."""
    runs = load_runs(args.results, args.labels)
    empty = [r for r in runs if not r.rows]
    if len(empty) == len(runs):
        for r in empty:
            print(f"centersmooth report: {no_rows_message(r)}; nothing to report", file=sys.stderr)
        return 1
    for r in empty:
        print(f"centersmooth report: {no_rows_message(r)}; left out", file=sys.stderr)
    from .plotting import available

    path = write_report(runs, args.out)
    if available():
        print(f"wrote {path} and its plots")
    else:
        print(f"centersmooth report: warning: {NO_FIGURES}", file=sys.stderr)
        print(f"wrote {path} (tables only)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="centersmooth report", description="Summarise results files: tables and plots."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (OSError, ValueError) as err:
        parser.exit(2, f"centersmooth report: error: {err}\n")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
