"""Write <dir>/<task>.md (one markdown table per task) and <dir>/<task>_eps_out.png from the JSONL
files under <dir>/<dataset>-<task>/. Usage: .venv/bin/python results/summarize.py [DIR]
(default: results/grid, the CPU grid; results/gpu for the GPU run of run_gpu.sh)."""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from centersmooth.runs.results_file import read_results  # noqa: E402
from centersmooth.runs.tables import format_table, summarize  # noqa: E402
from centersmooth.settings import SmoothingSettings  # noqa: E402

ROOT = Path(__file__).resolve().parent / "grid"
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
    "certified",
    "vacuous",
    "abstain",
    "eps_out",
    "smoothing_error",
    "base_error",
    "smoothed_error",
    "seconds",
    "passes",
    "counts",
)


def main(root: Path = ROOT) -> None:
    by_task: dict[str, list[dict]] = defaultdict(list)
    paths = [p for task in TASKS for p in root.glob(f"*-{task}/*.jsonl")]
    for path in sorted(paths):
        data = read_results(path)
        if not data.rows or data.header is None:
            continue
        first = data.rows[0]
        smoothing = data.header["config"]["smoothing"]
        counts = "/".join(str(smoothing[k]) for k in ("n_center", "n_check", "n_certify"))
        counts += f" {first['bound']}"
        if smoothing.get("ball_mass", 0.5) != 0.5:  # a run with --ball-mass: its own rows, lines
            counts += f", ball_mass {smoothing['ball_mass']:g}"
        if paired(smoothing):
            counts += ", pairwise"
        elif smoothing.get("nearest_candidate", False):  # absent: written before that bound
            counts += ", nearest"
        if smoothing.get("share_check_samples", False):  # absent: separate samples
            counts += ", shared"
        legacy = "" if "noise_stream" in data.header["config"] else ", torch-mt-v1"
        counts += legacy  # the earlier noise stream, and the models as first trained
        for s in summarize(data.rows):
            s.update(
                task=first["task"],
                center=center_search(smoothing, s["metric"]),
                dataset=first["dataset"],
                preset=first.get("preset", "default"),
                h=round(s["eps_in"] / s["sigma"], 3),
                counts=counts,
                variant=variant_label(first.get("preset", "default"), smoothing) + legacy,
                file=str(path.relative_to(root)),
            )
            by_task[first["task"]].append(s)
    at_sigma = [s for task in by_task for s in by_task[task] if s["h"] == 1.0]
    at_sigma.sort(key=lambda s: (s["task"], s["dataset"], s["preset"], s["metric"], s["sigma"]))
    (root / "at_eps_in_sigma.md").write_text(
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
            "`h` = eps_in / sigma; `eps_out`, errors: medians (an abstention, and a vacuous "
            "certificate, count as infinite eps_out); `certified`: share of inputs (percent) "
            "with a finite eps_out below the largest distance two outputs can have; "
            "`vacuous`: share with a finite eps_out at or above it (the certificate says "
            "nothing; for rows written"
            " before the `vacuous` field, inferred for the distances with a known largest value, "
            "angular among them); `abstain`: share of inputs; `seconds`: median wall time per "
            "input, all metrics of the file together (they share the forward passes); `passes`: "
            "median forward passes per input (`-` for files written before they were recorded); "
            "`counts`: n_center / n_check / n_certify and bound (and `--ball-mass` where set; "
            "`nearest`: the nearest-candidate bound, our default since 26 Nov, where the rows "
            "without it use the paper's 3 R-hat; `shared`: the check's samples are the first of "
            "the certification's, the default since shared check samples, so a row over "
            "certified inputs conditions on acceptance (docs/algorithm.md); `torch-mt-v1`: drawn "
            "with the earlier noise stream, from the models as first trained, before they were "
            "retrained with the same command). "
            "base_error = d(f(x), clean image), smoothed_error = "
            "d(smoothed output, clean image), smoothing_error = d(smoothed output, f(x)). "
            "`center`: the center search (all samples, or the first k, plus the central points or"
            " not).",
            "",
            format_table(summaries, COLUMNS, markdown=True),
            "",
            "Files: " + ", ".join(f"`{f}`" for f in files),
            "",
        ]
        (root / f"{task}.md").write_text("\n".join(text))
        fig = draw(task, summaries)
        fig.savefig(root / f"{task}_eps_out.png", dpi=110)
        plt.close(fig)
        print(f"wrote {root / task}.md and {root / task}_eps_out.png")


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


def paired(smoothing: dict[str, Any]) -> bool:
    """Whether the pairwise bound served a file's distances (all or some: ``true`` or ``null``
    in its header; absent in files from before it)."""
    return smoothing.get("pairwise_bound", False) is not False


# For the legend: the variant that matches the library's defaults is "defaults" (with the
# pairwise bound, which serves the grid's distances), the one that matches the defaults before
# shared check samples "earlier defaults".
_LIBRARY = SmoothingSettings()
DEFAULTS = {
    k: getattr(_LIBRARY, k)
    for k in ("n_center", "n_check", "n_certify", "bound", "share_check_samples")
}
EARLIER = dict(DEFAULTS, n_certify=100_000, share_check_samples=False)
PAPER = ("black", "--", "X")  # the paper preset: black, dashed, crosses
VARIANT_STYLES = (  # colour, line style, marker: every other variant differs in all three
    ("C0", "-", "o"),
    ("C3", ":", "s"),
    ("C2", "-.", "^"),
    ("C1", (0, (5, 1.5, 1, 1.5, 1, 1.5)), "D"),
    ("C4", (0, (1, 1)), "v"),
    ("C5", (0, (8, 2)), "P"),
    ("C6", (0, (3, 1, 3, 3)), "*"),
    ("C8", (0, (2, 2)), "h"),
)


SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _count(n: int | str) -> str:
    """10000 -> 10⁴; other numbers (and ``auto``) as they are."""
    if isinstance(n, str):
        return n
    k = round(math.log10(n)) if n > 0 else 0
    return f"10{str(k).translate(SUPERSCRIPTS)}" if 10**k == n else f"{n:,}"


def variant_label(preset: str, smoothing: dict[str, Any]) -> str:
    """The legend's name of a file's settings: sample counts, bound, radius bound, ball mass;
    ``paper preset: ...`` or ``defaults: ...`` where they are those."""
    counts = "/".join(_count(smoothing[k]) for k in ("n_center", "n_check", "n_certify"))
    nearest = bool(smoothing.get("nearest_candidate", False))
    pairwise = paired(smoothing)
    text = f"{counts}, {smoothing['bound']}, " + (
        "pairwise bound" if pairwise else "nearest-candidate bound" if nearest else "3 R-hat"
    )
    if smoothing.get("share_check_samples", False):
        text += ", shared"
    mass = smoothing.get("ball_mass", 0.5)
    if mass != 0.5:
        text += f", ball_mass {mass:g}"
    if preset == "paper":
        return f"paper preset: {text}"
    if nearest and mass == 0.5:
        for name, settings, bound in (
            ("defaults", DEFAULTS, True),
            ("earlier defaults", EARLIER, False),
        ):
            if pairwise == bound and all(smoothing.get(k, False) == v for k, v in settings.items()):
                return f"{name}: {text}"
    return text


def variant_styles(variants: list[str]) -> dict[str, tuple[str, Any, str]]:
    """A (colour, line style, marker) per variant: the paper preset black dashed, every other
    one its own colour, line style and marker."""
    styles: dict[str, tuple[str, Any, str]] = {}
    others = [v for v in variants if not v.startswith("paper preset")]
    for i, v in enumerate(others):
        styles[v] = VARIANT_STYLES[i % len(VARIANT_STYLES)]
    for v in variants:
        styles.setdefault(v, PAPER)
    return styles


def draw(task: str, summaries: list[dict]) -> Figure:
    """Median certified eps_out against eps_in: a row of panels per data set, a column per
    distance; a colour, line style and marker per variant (sample counts, bounds, preset), the
    paper preset black and dashed, explained once in the legend below; each sigma's lines
    labelled at their right end."""
    metrics = sorted({s["metric"] for s in summaries})
    datasets = sorted({s["dataset"] for s in summaries})
    every = [s["variant"] for s in summaries]
    # defaults first, then the commonest; the paper preset last
    variants = sorted(
        set(every),
        key=lambda v: (
            v.startswith("paper preset"),
            not v.startswith("defaults"),
            -every.count(v),
            v,
        ),
    )
    styles = variant_styles(variants)
    n_rows, n_cols = len(datasets), len(metrics)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(max(4.4 * n_cols + 0.6, 7.0), 3.3 * n_rows + 1.0), squeeze=False
    )
    used: set[str] = set()
    for row, dataset in enumerate(datasets):
        for col, metric in enumerate(metrics):
            ax = axes[row][col]
            lines: dict[tuple[str, float], list[tuple[float, float]]] = defaultdict(list)
            for s in summaries:
                if s["dataset"] != dataset or s["metric"] != metric:
                    continue
                if s["eps_out"] is not None and math.isfinite(s["eps_out"]):
                    lines[(s["variant"], s["sigma"])].append((s["eps_in"], s["eps_out"]))
            ends: dict[float, tuple[float, float]] = {}
            for variant in variants:
                for (v, sigma), pts in sorted(lines.items()):
                    if v != variant:
                        continue
                    pts.sort()
                    colour, style, marker = styles[variant]
                    ax.plot(*zip(*pts, strict=True), color=colour, linestyle=style, marker=marker,
                            markersize=4, linewidth=1.5)  # fmt: skip
                    used.add(variant)
                    x, y = pts[-1]
                    if sigma not in ends or (x, y) > ends[sigma]:
                        ends[sigma] = (x, y)
            for sigma, (x, y) in ends.items():
                ax.annotate(f"σ={sigma:g}", (x, y), xytext=(4, 0), textcoords="offset points",
                            fontsize=8, va="center", ha="left")  # fmt: skip
            ax.margins(x=0.18)
            ax.set_xlabel("eps_in", fontsize=9)
            ax.set_ylabel(f"median eps_out ({metric})", fontsize=9)
            ax.set_title(f"{task}, {dataset}: {metric}", fontsize=10)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
            if not lines:
                ax.text(0.5, 0.5, "no certified radius", ha="center", transform=ax.transAxes)
    handles = [
        plt.Line2D(
            [],
            [],
            color=styles[v][0],
            linestyle=styles[v][1],
            marker=styles[v][2],
            markersize=5,
            linewidth=1.5,
            label=v,
        )  # fmt: skip
        for v in variants
        if v in used
    ]
    legend_rows = math.ceil(len(handles) / min(3, max(len(handles), 1)))
    bottom = (0.3 + 0.22 * legend_rows) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    if handles:
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(3, len(handles)),
            fontsize=9,
            handlelength=5,
            frameon=False,
            title="median certified eps_out (an abstention or a vacuous certificate counts as"
            + ("\n" if n_cols < 3 else " ")
            + "infinite and is not drawn)",
            title_fontsize=8,
        )
    return fig


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT)
