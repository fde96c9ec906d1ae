"""Summaries of results rows (one line per metric and eps_in) as plain text or markdown.

A row is *certified* when its ``eps_out`` is finite and not vacuous; *vacuous* when ``eps_out``
is finite but at or above the largest distance two outputs can have, so that the certificate
says nothing (the row's ``vacuous`` field; for rows written before that field, inferred for the
distances whose largest value is known, :data:`KNOWN_DIAMETERS`). Medians of ``eps_out`` count
an abstention, an uncertifiable radius and a vacuous certificate alike as infinite: a vacuous
radius is no certificate, and mixing it in as a finite number would make a median look better
than what was certified.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

# The largest value of each built-in distance that has one (``Metric.upper``, which the
# certificate is capped at): an ``eps_out`` at or above it is vacuous. The probability distances
# (total_variation, hellinger) have none: an output may hold several distributions.
KNOWN_DIAMETERS: dict[str, float] = {
    "angular": 1.0,
    "hamming": 1.0,
    "jaccard": 1.0,
    "levenshtein_normalized": 1.0,
    "mask_jaccard": 1.0,
}

SUMMARY_COLUMNS = (
    "metric",
    "sigma",
    "eps_in",
    "n",
    "certified",
    "vacuous",
    "abstain",
    "eps_out",
    "passes",
    "smoothing_error",
    "base_error",
    "smoothed_error",
    "seconds",
)


def is_vacuous(row: Mapping[str, Any]) -> bool:
    """Whether a row's certificate says nothing: its ``vacuous`` field where it has one, else a
    finite ``eps_out`` at or above the row's ``output_diameter`` or its distance's known largest
    value (:data:`KNOWN_DIAMETERS`); False when neither is known."""
    flag = row.get("vacuous")
    if flag is not None:
        return bool(flag)
    eps_out = row.get("eps_out")
    if eps_out is None or not math.isfinite(float(eps_out)):
        return False
    diameter = row.get("output_diameter")
    if diameter is None:
        diameter = KNOWN_DIAMETERS.get(str(row.get("metric")))
    return diameter is not None and float(eps_out) >= float(diameter)


def certified_eps_out(row: Mapping[str, Any]) -> float:
    """``eps_out`` as a certificate: infinite for an abstention, a radius that could not be
    certified (``null``) or a vacuous certificate."""
    eps_out = row.get("eps_out")
    if eps_out is None or is_vacuous(row):
        return math.inf
    return float(eps_out)


def _median(values: Iterable[float]) -> float | None:
    vals = list(values)
    return float(np.median(vals)) if vals else None


def _median_known(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per (metric, sigma, eps_in), in first-seen order: number of inputs, the
    certified, vacuous and abstain rates, median ``eps_out`` (an abstention, an uncertifiable
    radius or a vacuous certificate counts as infinite), the median forward passes per
    certificate (``None`` for rows written before they were recorded), and medians of the
    smoothing, base and smoothed errors and of the seconds per input."""
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
                "certified": sum(math.isfinite(certified_eps_out(r)) for r in group) / len(group),
                "vacuous": sum(is_vacuous(r) for r in group) / len(group),
                "abstain": sum(bool(r["abstained"]) for r in group) / len(group),
                "eps_out": _median(certified_eps_out(r) for r in group),
                "passes": _median_known(r.get("forward_passes") for r in group),
                "smoothing_error": _median_known(r.get("smoothing_error") for r in group),
                "base_error": _median_known(r.get("base_error") for r in group),
                "smoothed_error": _median_known(r.get("smoothed_error") for r in group),
                "seconds": _median_known(seconds.get(int(r["input_index"])) for r in group),
            }
        )
    return out


RATE_COLUMNS = ("certified", "vacuous", "abstain")  # shares of the inputs, shown in percent


def _fmt(value: Any, column: str = "") -> str:
    if value is None:
        return "-"
    if column in RATE_COLUMNS:
        return f"{value:.0%}"
    if column == "passes":
        return f"{value:,.0f}"
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
    cells = [[_fmt(s.get(c), c) for c in columns] for s in summaries]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
