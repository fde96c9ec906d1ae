"""Summaries of results rows (one line per metric and eps_in) as plain text or markdown."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

SUMMARY_COLUMNS = (
    "metric",
    "sigma",
    "eps_in",
    "n",
    "abstain",
    "eps_out",
    "smoothing_error",
    "base_error",
    "smoothed_error",
    "seconds",
)


def _median(values: Iterable[Any]) -> float | None:
    vals = [math.inf if v is None else float(v) for v in values]
    return float(np.median(vals)) if vals else None


def _median_known(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per (metric, sigma, eps_in), in first-seen order: number of inputs, abstain
    rate, median ``eps_out`` (an abstention or an uncertifiable radius counts as infinite), and
    medians of the smoothing, base and smoothed errors and of the seconds per input."""
    groups: dict[tuple[str, float, float], list[dict[str, Any]]] = {}
    for row in rows:
        key = (str(row["metric"]), float(row["sigma"]), float(row["eps_in"]))
        groups.setdefault(key, []).append(row)
    seconds: dict[int, float] = {}
    for row in rows:
        if row.get("seconds") is not None:
            seconds[int(row["input_index"])] = float(row["seconds"])
    out = []
    for (metric, sigma, eps_in), group in groups.items():
        out.append(
            {
                "metric": metric,
                "sigma": sigma,
                "eps_in": eps_in,
                "n": len(group),
                "abstain": sum(bool(r["abstained"]) for r in group) / len(group),
                "eps_out": _median(r["eps_out"] for r in group),
                "smoothing_error": _median_known(r.get("smoothing_error") for r in group),
                "base_error": _median_known(r.get("base_error") for r in group),
                "smoothed_error": _median_known(r.get("smoothed_error") for r in group),
                "seconds": _median_known(seconds.get(int(r["input_index"])) for r in group),
            }
        )
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.4g}"
    return str(value)


def format_table(
    summaries: Sequence[dict[str, Any]],
    columns: Sequence[str] = SUMMARY_COLUMNS,
    markdown: bool = False,
) -> str:
    """The summaries as an aligned text table, or as a markdown table."""
    cells = [[_fmt(s.get(c)) for c in columns] for s in summaries]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
