"""Write results/grid/defaults.md: the grid at today's defaults against the earlier defaults,
against the same counts with the nearest-candidate bound alone and against `--n-certify auto`, on
the same models, inputs and seeds.

Each cell's four 4-distance files: `sigma<S>.jsonl` (10^4 / 10^4 / 10^4, shared check samples,
the pairwise bound within its reach), `sigma<S>-separate-1e5.jsonl` (10^4 / 10^4 / 10^5, separate
samples, the nearest-candidate bound: the defaults before shared check samples),
`sigma<S>-nearest.jsonl` (10^4 / 10^4 / 10^4, shared, the nearest-candidate bound alone) and
`sigma<S>-auto.jsonl` (10^4 / 10^4 / auto, shared, the nearest-candidate bound alone). Medians
over the inputs all four files hold; an abstention and a vacuous certificate count as an infinite
`eps_out`.
Usage: .venv/bin/python results/compare_defaults.py [GRID_DIR]
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from centersmooth.runs.results_file import read_results

ROOT = Path(__file__).resolve().parent / "grid"
CELLS = [
    f"{dataset}-{task}"
    for dataset in ("mnist", "fashion-mnist")
    for task in ("autoencoder", "reconstruction")
]
SIGMAS = ("0.1", "0.25", "0.5")
METRICS = ("l2", "angular", "tv1", "tv2")
VARIANTS = {  # name in the table: file suffix
    "earlier": "-separate-1e5",
    "defaults": "",
    "nearest": "-nearest",
    "auto": "-auto",
}
TARGET = 1.01  # median eps_out of the defaults at most this times the earlier defaults'


def load(path: Path) -> dict[tuple[int, str, float], dict[str, Any]]:
    """The rows of one results file by (input, distance, h)."""
    rows = {}
    for row in read_results(path).rows:
        h = round(row["eps_in"] / row["sigma"], 3)
        rows[(row["input_index"], row["metric"], h)] = row
    return rows


def radius(row: dict[str, Any]) -> float:
    """A row's eps_out, infinite where it certifies nothing."""
    if row["abstained"] or row.get("vacuous") or row["eps_out"] is None:
        return math.inf
    return float(row["eps_out"])


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def compare_cell(files: dict[str, Path]) -> dict[str, Any] | None:
    """Per distance and h the median eps_out of every variant over the shared inputs, with
    abstentions, passes and seconds per input; None when a file is missing."""
    if not all(p.is_file() for p in files.values()):
        return None
    data = {name: load(path) for name, path in files.items()}
    keys = set.intersection(*(set(rows) for rows in data.values()))
    inputs = sorted({k[0] for k in keys})
    hs = sorted({k[2] for k in keys})
    out: dict[str, Any] = {"inputs": len(inputs), "medians": {}, "abstained": {}}
    for metric in METRICS:
        for h in hs:
            present = [i for i in inputs if (i, metric, h) in keys]
            for name, rows in data.items():
                radii = [radius(rows[(i, metric, h)]) for i in present]
                out["medians"][(name, metric, h)] = median(radii)
    for name, rows in data.items():
        per_input = {k[0]: rows[k] for k in keys}  # one row per input carries its cost
        out["abstained"][name] = sum(
            any(rows[k]["abstained"] for k in keys if k[0] == i) for i in inputs
        )
        out[f"passes:{name}"] = [r["forward_passes"] for r in per_input.values()]
        out[f"seconds:{name}"] = median(r["seconds"] for r in per_input.values())
    out["hs"] = hs
    return out


def ratio(a: float, b: float) -> float:
    """a / b, infinite where only a is (it certifies nothing), nan where neither certifies."""
    if math.isinf(a) and math.isinf(b):
        return math.nan
    return math.inf if math.isinf(a) else a / b


def main(root: Path = ROOT) -> None:
    cells = {}
    for cell in CELLS:
        for sigma in SIGMAS:
            files = {
                name: root / cell / f"sigma{sigma}{suffix}.jsonl"
                for name, suffix in VARIANTS.items()
            }
            result = compare_cell(files)
            if result is not None:
                cells[(cell, sigma)] = result
    if not cells:
        sys.exit(f"no cell of {root} has all four files")
    lines = summary(cells) + [""] + table(cells)
    (root / "defaults.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {root / 'defaults.md'} ({len(cells)} cells)")


def summary(cells: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """The targets: passes, eps_out ratios per distance, abstentions, seconds."""
    text = [
        "# Today's defaults against the earlier defaults, on the grid",
        "",
        "`.venv/bin/python results/compare_defaults.py` (what was run: `results/README.md`). "
        "Per cell, distance and `h = eps_in / sigma`, the median `eps_out` over the cell's "
        "inputs (an abstention or a vacuous certificate counts as infinite), as a ratio to "
        "the earlier defaults' median on the same models, inputs and seeds:",
        "",
        "- **earlier**: 10^4 / 10^4 / 10^5, separate check and certification samples, the "
        "nearest-candidate bound (120,001 forward passes; `sigma<S>-separate-1e5.jsonl`)",
        "- **defaults**: 10^4 / 10^4 / 10^4, the check's samples the first of the "
        "certification's, the pairwise bound (`R_pair` from 1,000 of the center samples "
        "against 2,000 others; it serves every `eps_in` here, all below its reach of about "
        "2.5 sigma, 2.3 with tv1 / tv2's 30 candidates) (20,001 passes; `sigma<S>.jsonl`)",
        "- **nearest**: the defaults' counts with the nearest-candidate bound alone "
        "(`--no-pairwise-bound`; `sigma<S>-nearest.jsonl`)",
        "- **auto**: 10^4 / 10^4 / `auto` (rounds doubling from 10^4 up to 10^6, tolerance 1%, "
        "shared, the nearest-candidate bound alone; `sigma<S>-auto.jsonl`); its passes are "
        "per input, for all four `eps_in` together",
        "",
    ]
    n = len(cells)
    for name in VARIANTS:
        passes = [p for c in cells.values() for p in c[f"passes:{name}"]]
        abstained = sum(c["abstained"][name] for c in cells.values())
        inputs = sum(c["inputs"] for c in cells.values())
        text.append(
            f"- {name}: median forward passes per input {median(passes):,.0f} "
            f"(range {min(passes):,}-{max(passes):,}); inputs with an abstention: "
            f"{abstained} of {inputs}"
        )
    hs = sorted({h for c in cells.values() for h in c["hs"]})

    def rows(a: str, b: str) -> list[float]:
        return [_r(c, a, b, m, h) for c in cells.values() for m in METRICS for h in hs]

    every, nearest = rows("defaults", "earlier"), rows("nearest", "earlier")
    text += [
        "",
        f"Over all {len(every)} rows (cell, distance, h), defaults / earlier: {_span(every)} "
        f"(min-max, median); {sum(r > TARGET for r in every)} rows above {TARGET}. "
        f"Nearest / earlier: {_span(nearest)}; {sum(r > TARGET for r in nearest)} rows "
        f"above {TARGET}.",
    ]
    text.append("")
    text.append(f"Ratios over the {n} cells (min-max, median; `above`: rows above {TARGET}):")
    text.append("")
    text.append(
        "| distance | h | defaults / earlier | above | nearest / earlier | above "
        "| auto / earlier | auto / nearest |"
    )
    text.append("|---|---|---|---|---|---|---|---|")
    for metric in METRICS:
        for h in hs:
            new = [_r(c, "defaults", "earlier", metric, h) for c in cells.values()]
            near = [_r(c, "nearest", "earlier", metric, h) for c in cells.values()]
            auto = [_r(c, "auto", "earlier", metric, h) for c in cells.values()]
            auto_near = [_r(c, "auto", "nearest", metric, h) for c in cells.values()]
            text.append(
                f"| {metric} | {h:g} | {_span(new)} | {sum(r > TARGET for r in new)} of "
                f"{len(new)} | {_span(near)} | {sum(r > TARGET for r in near)} of {len(near)} "
                f"| {_span(auto)} | {_span(auto_near)} |"
            )
    text += [
        "",
        "Seconds per input (median per cell, the four distances together): "
        + "; ".join(
            f"{name} {_span([c[f'seconds:{name}'] for c in cells.values()])}" for name in VARIANTS
        )
        + ". The runs were made at different times, two one-thread streams side by side, and "
        "the earlier defaults' and the nearest ones before the faster tv1 / tv2 center search "
        "(`results/README.md` says which), so the seconds compare only roughly; "
        "`benchmarks/RESULTS.md` has the side-by-side measurement.",
    ]
    return text


def table(cells: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """One row per cell and distance."""
    hs = sorted({h for c in cells.values() for h in c["hs"]})
    h_text = " / ".join(f"{h:g}" for h in hs)
    lines = [
        f"| cell | sigma | distance | earlier `eps_out`, h = {h_text} | defaults / earlier "
        "| nearest / earlier | auto / earlier | auto passes (median, max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (cell, sigma), c in cells.items():
        passes = c["passes:auto"]
        for metric in METRICS:
            earlier = " / ".join(f"{c['medians'][('earlier', metric, h)]:.4g}" for h in c["hs"])
            ratios = {
                name: " / ".join(f"{_r(c, name, 'earlier', metric, h):.4f}" for h in c["hs"])
                for name in ("defaults", "nearest", "auto")
            }
            lines.append(
                f"| {cell} | {sigma} | {metric} | {earlier} | {ratios['defaults']} "
                f"| {ratios['nearest']} | {ratios['auto']} | {median(passes):,.0f}, "
                f"{max(passes):,} |"
            )
    return lines


def _r(cell: dict[str, Any], a: str, b: str, metric: str, h: float) -> float:
    return ratio(cell["medians"][(a, metric, h)], cell["medians"][(b, metric, h)])


def _span(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    return f"{min(finite):.4f}-{max(finite):.4f}, {median(finite):.4f}"


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
