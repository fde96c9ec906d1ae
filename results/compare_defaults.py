"""Write results/grid/defaults.md: the grid at today's default counts against the earlier
defaults, against `--n-certify auto` and against the pairwise bound, on the same models, inputs
and seeds.

Each cell's four 4-distance files: `sigma<S>.jsonl` (10^4 / 10^4 / 10^4, shared check samples),
`sigma<S>-separate-1e5.jsonl` (10^4 / 10^4 / 10^5, separate samples: the defaults before shared
check samples), `sigma<S>-auto.jsonl` (10^4 / 10^4 / auto, shared) and `sigma<S>-pairwise.jsonl`
(the defaults with `--pairwise-bound`). Medians over the inputs all four files hold; an abstention
and a vacuous certificate count as an infinite `eps_out`.
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
    "auto": "-auto",
    "pairwise": "-pairwise",
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
        "# Today's default counts against the earlier defaults, on the grid",
        "",
        "`.venv/bin/python results/compare_defaults.py` (what was run: `results/README.md`). "
        "Per cell, distance and `h = eps_in / sigma`, the median `eps_out` over the cell's "
        "inputs (an abstention or a vacuous certificate counts as infinite), as a ratio to "
        "the earlier defaults' median on the same models, inputs and seeds:",
        "",
        "- **earlier**: 10^4 / 10^4 / 10^5, separate check and certification samples "
        "(120,001 forward passes; `sigma<S>-separate-1e5.jsonl`)",
        "- **defaults**: 10^4 / 10^4 / 10^4, the check's samples the first of the "
        "certification's (20,001 passes; `sigma<S>.jsonl`)",
        "- **auto**: 10^4 / 10^4 / `auto` (rounds doubling from 10^4 up to 10^6, tolerance 1%, "
        "shared; `sigma<S>-auto.jsonl`); its passes are per input, for all four `eps_in` "
        "together",
        "- **pairwise**: the defaults' counts with the pairwise bound (`--pairwise-bound`, off "
        "by default; `R_pair` from 1,000 of the center samples against 2,000 others; "
        "`sigma<S>-pairwise.jsonl`)",
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
    every = [
        _r(c, "defaults", "earlier", m, h) for c in cells.values() for m in METRICS for h in hs
    ]
    pairwise = [
        _r(c, "pairwise", "earlier", m, h) for c in cells.values() for m in METRICS for h in hs
    ]
    text += [
        "",
        f"Over all {len(every)} rows (cell, distance, h), defaults / earlier: {_span(every)} "
        f"(min-max, median); {sum(r > TARGET for r in every)} rows above {TARGET}. "
        f"Pairwise / earlier: {_span(pairwise)}; {sum(r > TARGET for r in pairwise)} rows "
        f"above {TARGET}.",
    ]
    text.append("")
    text.append(f"Ratios over the {n} cells (min-max, median; `above`: rows above {TARGET}):")
    text.append("")
    text.append(
        "| distance | h | defaults / earlier | above | auto / earlier | auto / defaults "
        "| pairwise / earlier |"
    )
    text.append("|---|---|---|---|---|---|---|")
    for metric in METRICS:
        for h in hs:
            new = [_r(c, "defaults", "earlier", metric, h) for c in cells.values()]
            auto = [_r(c, "auto", "earlier", metric, h) for c in cells.values()]
            auto_new = [_r(c, "auto", "defaults", metric, h) for c in cells.values()]
            pair = [_r(c, "pairwise", "earlier", metric, h) for c in cells.values()]
            above = sum(r > TARGET for r in new)
            text.append(
                f"| {metric} | {h:g} | {_span(new)} | {above} of {len(new)} | {_span(auto)} "
                f"| {_span(auto_new)} | {_span(pair)} |"
            )
    seconds = [ratio(c["seconds:defaults"], c["seconds:earlier"]) for c in cells.values()]
    text += [
        "",
        "Seconds per input (median per cell, the four distances together), defaults over "
        f"earlier: {_span(seconds)}. The two ran one after the other in the same stream, "
        "beside the other data set's stream, so the ratio is indicative (`results/README.md` "
        "says which runs had the faster tv1 / tv2 search); `benchmarks/RESULTS.md` has the "
        "side-by-side measurement. The pairwise runs came later, with the faster center search "
        "of 6 Dec 17:00 UTC: their seconds (median per cell "
        f"{_span([c['seconds:pairwise'] for c in cells.values()])}) compare with neither.",
    ]
    return text


def table(cells: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """One row per cell and distance."""
    hs = sorted({h for c in cells.values() for h in c["hs"]})
    h_text = " / ".join(f"{h:g}" for h in hs)
    lines = [
        f"| cell | sigma | distance | earlier `eps_out`, h = {h_text} | defaults / earlier "
        "| auto / earlier | auto passes (median, max) | pairwise / earlier |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (cell, sigma), c in cells.items():
        passes = c["passes:auto"]
        for metric in METRICS:
            earlier = " / ".join(f"{c['medians'][('earlier', metric, h)]:.4g}" for h in c["hs"])
            new = " / ".join(f"{_r(c, 'defaults', 'earlier', metric, h):.4f}" for h in c["hs"])
            auto = " / ".join(f"{_r(c, 'auto', 'earlier', metric, h):.4f}" for h in c["hs"])
            pair = " / ".join(f"{_r(c, 'pairwise', 'earlier', metric, h):.4f}" for h in c["hs"])
            lines.append(
                f"| {cell} | {sigma} | {metric} | {earlier} | {new} | {auto} "
                f"| {median(passes):,.0f}, {max(passes):,} | {pair} |"
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
