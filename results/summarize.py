"""Write <dir>/<task>.md (one markdown table per task) and <dir>/<task>_eps_out.png from the JSONL
files under <dir>/<dataset>-<task>/. Usage: .venv/bin/python results/summarize.py [DIR]
(default: results/grid, the CPU grid; results/gpu for the GPU run of run_gpu.sh)."""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from centersmooth.runner import read_results  # noqa: E402
from centersmooth.tables import format_table, summarize  # noqa: E402

ROOT = (
    Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parent / "grid"
)
TASKS = ("autoencoder", "reconstruction", "classifier")
PROTOCOL_INPUTS = 50  # test inputs per cell in the paper and in results/run_gpu.sh
COLUMNS = (
    "dataset",
    "preset",
    "metric",
    "center",
    "sigma",
    "h",
    "eps_in",
    "n",
    "abstain",
    "eps_out",
    "smoothing_error",
    "base_error",
    "smoothed_error",
    "seconds",
    "counts",
)


def main() -> None:
    by_task: dict[str, list[dict]] = defaultdict(list)
    paths = [p for task in TASKS for p in ROOT.glob(f"*-{task}/*.jsonl")]
    for path in sorted(paths):
        data = read_results(path)
        if not data.rows or data.header is None:
            continue
        first = data.rows[0]
        counts = f"{first['n_center']}/{first['n_check']}/{first['n_certify']} {first['bound']}"
        smoothing = data.header["config"]["smoothing"]
        if smoothing.get("ball_mass", 0.5) != 0.5:  # a run with --ball-mass: its own rows, lines
            counts += f", ball_mass {smoothing['ball_mass']:g}"
        if smoothing.get("nearest_candidate", False):  # absent: written before that bound
            counts += ", nearest"
        for s in summarize(data.rows):
            s.update(
                task=first["task"],
                center=center_search(smoothing, s["metric"]),
                dataset=first["dataset"],
                preset=first.get("preset", "default"),
                h=round(s["eps_in"] / s["sigma"], 3),
                counts=counts,
                file=str(path.relative_to(ROOT)),
            )
            by_task[first["task"]].append(s)
    at_sigma = [s for task in by_task for s in by_task[task] if s["h"] == 1.0]
    at_sigma.sort(key=lambda s: (s["task"], s["dataset"], s["preset"], s["metric"], s["sigma"]))
    (ROOT / "at_eps_in_sigma.md").write_text(
        "# Every cell at eps_in = sigma (h = 1); all h in the per-task tables\n\n"
        + format_table(at_sigma, ("task",) + COLUMNS, markdown=True)
        + "\n"
    )
    for task, summaries in by_task.items():
        summaries.sort(
            key=lambda s: (s["dataset"], s["preset"], s["counts"], s["metric"], s["sigma"], s["h"])
        )
        files = sorted({s["file"] for s in summaries})
        n_inputs = sorted({s["n"] for s in summaries})
        text = [
            f"# {task}: certified output radius (medians over {', '.join(map(str, n_inputs))} "
            "test inputs)",
            "",
            *few_inputs_note(n_inputs),
            "What was run, on which machine and with which commands: `results/README.md`.",
            "`h` = eps_in / sigma; `eps_out`, errors: medians (an abstention counts as infinite "
            "eps_out); `abstain`: fraction of inputs; `seconds`: median wall time per input, all "
            "metrics of the file together (they share the forward passes); `counts`: n_center / "
            "n_check / n_certify and bound (and `--ball-mass` where set; `nearest`: the "
            "nearest-candidate bound, our default since 26 Nov, where the rows without it use "
            "the paper's 3 R-hat). base_error = "
            "d(f(x), clean image), smoothed_error = d(smoothed output, clean image), "
            "smoothing_error = d(smoothed output, f(x)). "
            "`center`: the center search (all samples, or the first k, plus the central points "
            "or not).",
            "",
            format_table(summaries, COLUMNS, markdown=True),
            "",
            "Files: " + ", ".join(f"`{f}`" for f in files),
            "",
        ]
        (ROOT / f"{task}.md").write_text("\n".join(text))
        plot(task, summaries)
        print(f"wrote {ROOT / task}.md and {ROOT / task}_eps_out.png")


def few_inputs_note(n_inputs: list[int]) -> list[str]:
    """A line saying so when the cells have fewer inputs than the paper's protocol."""
    if max(n_inputs) >= PROTOCOL_INPUTS:
        return []
    return [
        f"**{max(n_inputs)} test inputs per cell, not the {PROTOCOL_INPUTS} of the paper's "
        "protocol** (why, for the committed grid: no GPU was available, `results/README.md`).",
        "",
    ]


def center_search(smoothing: dict, metric: str) -> str:
    """How the run searched the center for ``metric``: all pairs or k candidates (+ central)."""
    k = smoothing.get("candidates")
    if isinstance(k, dict):
        k = k.get(metric)
    mode = "all pairs" if k is None else f"{k} cand."
    return mode + (" + central" if smoothing.get("central_candidates", True) else "")


STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)))  # one per sample-count / bound variant


def plot(task: str, summaries: list[dict]) -> None:
    """eps_out against eps_in per distance: a colour per (data set, sigma), a line style per
    variant (counts, bound, ball_mass), each explained once in the legend."""
    metrics = sorted({s["metric"] for s in summaries})
    every = [s["counts"] for s in summaries]
    # the commonest first, the default bound before the paper's where as common
    variants = sorted(set(every), key=lambda c: (-every.count(c), "nearest" not in c, c))
    cells = sorted({(s["dataset"], s["sigma"]) for s in summaries})
    colours = {cell: f"C{i % 10}" for i, cell in enumerate(cells)}
    styles = {v: STYLES[i % len(STYLES)] for i, v in enumerate(variants)}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        lines: dict[tuple[str, str, float], list[tuple[float, float]]] = defaultdict(list)
        for s in summaries:
            if s["metric"] == metric and s["eps_out"] is not None and math.isfinite(s["eps_out"]):
                key = (s["dataset"], s["counts"], s["sigma"])
                lines[key].append((s["eps_in"], s["eps_out"]))
        for (dataset, counts, sigma), pts in sorted(lines.items()):
            pts.sort()
            ax.plot(*zip(*pts, strict=True), marker="o", markersize=3,
                    color=colours[(dataset, sigma)], linestyle=styles[counts])  # fmt: skip
        ax.set_xlabel("eps_in")
        ax.set_ylabel(f"median certified eps_out ({metric})")
        ax.set_title(f"{task}: {metric}", fontsize=9)
        ax.grid(alpha=0.3)
        if not lines:
            ax.text(0.5, 0.5, "no certified radius", ha="center", transform=ax.transAxes)
            continue
        used = {(d, sg) for d, _, sg in lines}
        handles = [
            plt.Line2D(
                [], [], color=colours[c], marker="o", markersize=3, label=f"{c[0]}, sigma {c[1]:g}"
            )
            for c in cells
            if c in used
        ]
        handles += [plt.Line2D([], [], color="0.3", linestyle=styles[v], label=v)
                    for v in variants if any(k[1] == v for k in lines)]  # fmt: skip
        ax.legend(handles=handles, fontsize=5)
    fig.tight_layout()
    fig.savefig(ROOT / f"{task}_eps_out.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
