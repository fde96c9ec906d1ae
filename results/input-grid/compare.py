"""Exact-noise mode against the standard mode on the same inputs: median eps_out per distance and
eps_in, the per-row ratio, and seconds per input (results/input-grid.md)."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def rows(path: Path) -> dict[tuple[int, str, float], dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {(r["input_index"], r["metric"], r["eps_in"]): r for r in records[1:]}


def main(standard: Path, grid: Path) -> None:
    plain, exact = rows(standard), rows(grid)
    keys = sorted(set(plain) & set(exact))
    sigma = next(iter(plain.values()))["sigma"]
    print(f"{len({k[0] for k in keys})} inputs in both files\n")
    print(
        "| distance | eps_in / sigma | standard: median eps_out | exact noise | ratio of medians "
        "| median per-row ratio |"
    )
    print("|---|---|---|---|---|---|")
    ratios = []
    for metric in dict.fromkeys(k[1] for k in keys):
        for eps in sorted({k[2] for k in keys if k[1] == metric}):
            same = [k for k in keys if k[1] == metric and k[2] == eps]
            a = [plain[k]["eps_out"] for k in same]
            b = [exact[k]["eps_out"] for k in same]
            if None in a or None in b:
                print(f"| {metric} | {eps / sigma:g} | (abstained or beyond max_eps_in) | | | |")
                continue
            per_row = [y / x for x, y in zip(a, b, strict=True)]
            ratios += per_row
            ma, mb = statistics.median(a), statistics.median(b)
            print(
                f"| {metric} | {eps / sigma:g} | {ma:.4g} | {mb:.4g} | {mb / ma:.4f} "
                f"| {statistics.median(per_row):.4f} |"
            )
    print(
        f"\nall rows: median ratio {statistics.median(ratios):.4f}, "
        f"range {min(ratios):.4f}-{max(ratios):.4f}"
    )
    seconds_a = {k[0]: plain[k]["seconds"] for k in keys}
    seconds_b = {k[0]: exact[k]["seconds"] for k in keys}
    per_input = [seconds_b[i] / seconds_a[i] for i in seconds_a]
    print(
        f"seconds per input: standard {statistics.median(seconds_a.values()):.2f}, exact noise "
        f"{statistics.median(seconds_b.values()):.2f}, median per-input ratio "
        f"{statistics.median(per_input):.3f}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
