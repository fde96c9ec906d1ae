"""Turn results files into a markdown summary and PNG plots (``centersmooth report``).

For every (task and data set, metric, sigma, eps_in) of every results file: the median and
interquartile range of ``eps_out`` (an input that abstained or could not be certified counts as
``eps_out = inf``), the certified and abstain rates, the median and IQR of the smoothing error,
the medians of the base and smoothed errors against the ground truth, and the median time per
input. Several files sit side by side in each table and plot (for example our defaults against
``--preset paper``).

Plots: ``eps_out`` against ``eps_in`` (median line, IQR band, one line per sigma and file), the
empirical distribution of ``eps_out``, and, where the run saved example arrays that look like
images, a grid of inputs with their base and smoothed outputs.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .runner import read_results

INF = math.inf


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
    certified_rate: float
    abstain_rate: float
    smoothing_error: tuple[float, float, float]  # over inputs that did not abstain
    base_error: float  # median; nan without targets
    smoothed_error: float  # median over inputs that did not abstain; nan without targets
    seconds_per_input: float  # median


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
    set (so that MNIST and Fashion-MNIST runs of one task stay apart), else the task."""
    task = str(row.get("task") or "(no task)")
    dataset = row.get("dataset")
    return f"{task} / {dataset}" if dataset else task


def _three(values: list[float]) -> tuple[float, float, float]:
    return quantile(values, 0.5), quantile(values, 0.25), quantile(values, 0.75)


def load_run(path: str | Path, label: str | None = None) -> RunFile:
    """Read a results file (a torn last line is dropped and reported)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"results file not found: {p}")
    existing = read_results(p)
    if existing.header is None:
        raise ValueError(f"{p}: empty or not a centersmooth results file")
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
        eps_out = [INF if r["eps_out"] is None else float(r["eps_out"]) for r in rows]
        smoothing = [float(r["smoothing_error"]) for r in rows if r["smoothing_error"] is not None]
        base = [float(r["base_error"]) for r in rows if r.get("base_error") is not None]
        smoothed = [float(r["smoothed_error"]) for r in rows if r.get("smoothed_error") is not None]
        seconds: dict[int, float] = {}
        for r in rows:
            seconds.setdefault(int(r["input_index"]), float(r["seconds"]))
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
                abstain_rate=sum(bool(r["abstained"]) for r in rows) / len(rows),
                smoothing_error=_three(smoothing),
                base_error=quantile(base, 0.5),
                smoothed_error=quantile(smoothed, 0.5),
                seconds_per_input=quantile(list(seconds.values()), 0.5),
            )
        )
    return out


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "inf"
    return f"{v:.4g}"


def _fmt3(t: tuple[float, float, float]) -> str:
    if math.isnan(t[0]):
        return "–"
    return f"{_fmt(t[0])} [{_fmt(t[1])}, {_fmt(t[2])}]"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _labels(paths: Sequence[Path]) -> list[str]:
    """File stems, with the parent folder added where two stems collide."""
    stems = [p.stem for p in paths]
    labels = [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
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
        "that abstained or could not be certified counts as `eps_out = inf`. Base and smoothed",
        "errors: medians of `d(f(x), target)` and `d(center, target)`. Time: median seconds per",
        "input (all metrics of the input together).",
        "",
    ]
    by_table: dict[tuple[str, str], list[Summary]] = {}
    for s in summaries:
        by_table.setdefault((s.task, s.metric), []).append(s)
    order = {run.label: i for i, run in enumerate(runs)}
    for (task, metric), group in sorted(by_table.items()):
        lines += [f"## {task} — {metric}", ""]
        lines += [
            "| run | sigma | eps_in | inputs | eps_out | certified | abstain | smoothing error "
            "| base error | smoothed error | s / input |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in sorted(group, key=lambda s: (s.sigma, s.eps_in, order[s.run])):
            lines.append(
                f"| {s.run} | {_fmt(s.sigma)} | {_fmt(s.eps_in)} | {s.n_inputs} | "
                f"{_fmt3(s.eps_out)} | {s.certified_rate:.0%} | {s.abstain_rate:.0%} | "
                f"{_fmt3(s.smoothing_error)} | {_fmt(s.base_error)} | {_fmt(s.smoothed_error)} | "
                f"{_fmt(s.seconds_per_input)} |"
            )
        lines.append("")
        for name in plots.get(f"{task}|{metric}", []):
            lines += [f"![{name}]({name})", ""]
    example_plots = plots.get("examples", [])
    if example_plots:
        lines += ["## Examples", ""]
        for name in example_plots:
            lines += [f"![{name}]({name})", ""]
    return "\n".join(lines)


def _plot_curves(group: list[Summary], title: str, path: Path, runs: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    sigmas = sorted({s.sigma for s in group})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    for i, sigma in enumerate(sigmas):
        for j, run in enumerate(runs):
            pts = sorted(
                (s for s in group if s.sigma == sigma and s.run == run), key=lambda s: s.eps_in
            )
            if not pts:
                continue
            x = np.array([s.eps_in for s in pts])
            med, lo, hi = (
                np.array([v if math.isfinite(v) else np.nan for v in vals])
                for vals in zip(*(s.eps_out for s in pts), strict=True)
            )
            color = colors[i % len(colors)]
            label = f"sigma={sigma:g}" + (f" ({run})" if len(runs) > 1 else "")
            ax.plot(x, med, styles[j % len(styles)], color=color, marker="o", label=label)
            ax.fill_between(x, lo, hi, color=color, alpha=0.15)
    ax.set_xlabel("eps_in")
    ax.set_ylabel("eps_out (median, IQR band)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_distribution(runs: list[RunFile], task: str, metric: str, title: str, path: Path) -> None:
    """Empirical CDF of eps_out per (run, eps_in), one panel per sigma. Uncertified inputs count
    in the denominator, so a curve ends at the certified rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        (run.label, r)
        for run in runs
        for r in run.rows
        if task_label(r) == task and r["metric"] == metric
    ]
    sigmas = sorted({float(r["sigma"]) for _, r in rows})
    fig, axes = plt.subplots(1, len(sigmas), figsize=(4.5 * len(sigmas), 3.6), squeeze=False)
    styles = ["-", "--", ":", "-."]
    labels = [run.label for run in runs]
    for ax, sigma in zip(axes[0], sigmas, strict=True):
        eps_values = sorted({float(r["eps_in"]) for _, r in rows if float(r["sigma"]) == sigma})
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, eps in enumerate(eps_values):
            for j, label in enumerate(labels):
                vals = [
                    r["eps_out"]
                    for lab, r in rows
                    if lab == label and float(r["sigma"]) == sigma and float(r["eps_in"]) == eps
                ]
                if not vals:
                    continue
                finite = np.sort([float(v) for v in vals if v is not None])
                if finite.size == 0:
                    continue
                y = np.arange(1, finite.size + 1) / len(vals)
                name = f"eps_in={eps:g}" + (f" ({label})" if len(labels) > 1 else "")
                ax.step(
                    finite,
                    y,
                    styles[j % len(styles)],
                    where="post",
                    color=colors[i % len(colors)],
                    label=name,
                )
        ax.set_title(f"sigma={sigma:g}")
        ax.set_xlabel("eps_out")
        ax.set_ylabel("fraction of inputs certified within")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"input": "input", "target": "target", "base_output": "base f(x)"}
    fig, axes = plt.subplots(
        len(examples),
        len(columns),
        figsize=(1.6 * len(columns), 1.6 * len(examples)),
        squeeze=False,
    )
    for i, (index, example) in enumerate(examples):
        images = [as_image(example[key]) if key in example else None for key in columns]
        gray = [img for img in images if img is not None and img.ndim == 2]
        # one grey scale per row, so that input, base and smoothed outputs compare directly
        lo = min((float(img.min()) for img in gray), default=0.0)
        hi = max((float(img.max()) for img in gray), default=1.0)
        for j, (key, img) in enumerate(zip(columns, images, strict=True)):
            ax = axes[i][j]
            ax.axis("off")
            if img is not None and img.ndim == 3:
                ax.imshow(np.clip(img, 0, 1))
            elif img is not None:
                ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            if i == 0:
                ax.set_title(titles.get(key, "smoothed " + key[len("center_") :]), fontsize=8)
            if j == 0:
                ax.text(-0.1, 0.5, f"#{index}", transform=ax.transAxes, ha="right", va="center")
    fig.suptitle(run.label, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def make_report(
    result_files: Sequence[str | Path],
    out_dir: str | Path,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write ``report.md`` and the PNG plots for ``result_files`` into ``out_dir``; return the
    markdown path. ``labels`` name the files in tables and legends (default: the file stems)."""
    paths = [Path(p) for p in result_files]
    if not paths:
        raise ValueError("give at least one results file")
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} results files")
    names = list(labels) if labels is not None else _labels(paths)
    runs = [load_run(p, name) for p, name in zip(paths, names, strict=True)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [s for run in runs for s in summarize(run)]
    plots: dict[str, list[str]] = {}
    tables = sorted({(s.task, s.metric) for s in summaries})
    for task, metric in tables:
        group = [s for s in summaries if s.task == task and s.metric == metric]
        title = f"{task} — {metric}"
        curve = f"eps_out_vs_eps_in_{_slug(task)}_{_slug(metric)}.png"
        _plot_curves(group, title, out / curve, [run.label for run in runs])
        dist = f"eps_out_distribution_{_slug(task)}_{_slug(metric)}.png"
        _plot_distribution(runs, task, metric, title, out / dist)
        plots[f"{task}|{metric}"] = [curve, dist]
    for run in runs:
        name = f"examples_{_slug(run.label)}.png"
        if _plot_examples(run, out / name):
            plots.setdefault("examples", []).append(name)
    report = out / "report.md"
    report.write_text(markdown(runs, summaries, plots), encoding="utf-8")
    return report


# ------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``centersmooth report``."""
    parser.add_argument("results", nargs="+", help="results files (JSONL) to summarise together")
    parser.add_argument("--out", default="report", help="output directory (default: report/)")
    parser.add_argument(
        "--label",
        action="append",
        dest="labels",
        help="name of each results file in tables and plots (once per file, in order)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``centersmooth report``; print where the report went."""
    path = make_report(args.results, args.out, args.labels)
    print(f"wrote {path} and its plots")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="centersmooth report", description="Summarise results files: tables and plots."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"centersmooth report: error: {err}\n")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
