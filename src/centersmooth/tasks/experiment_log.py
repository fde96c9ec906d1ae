"""Small experiment logs for the perceptual and face tasks: one JSON line per certified input
(resumable: rows already in the file are skipped), and a Markdown table of medians per setting."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..smoothing import Certificate


def certificate_row(
    cert: Certificate, setting: dict[str, Any], input_id: str, seconds: float
) -> dict[str, Any]:
    """A JSON-ready row: the setting, the input, and the certificate's numbers per ``eps_in``."""
    eps_in = np.atleast_1d(cert.eps_in).tolist()
    eps_out = np.atleast_1d(cert.eps_out).tolist()
    return {
        **setting,
        "input": input_id,
        "eps_in": eps_in,
        "eps_out": [None if not math.isfinite(v) else v for v in eps_out],
        "abstained": bool(cert.abstained),
        "radius": None if not math.isfinite(cert.radius) else cert.radius,
        "smoothing_error": cert.smoothing_error,
        "max_eps_in": cert.max_eps_in,
        "seconds": round(seconds, 2),
    }


def done_keys(path: Path, keys: Sequence[str]) -> set[tuple[Any, ...]]:
    if not path.exists():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {tuple(row[k] for k in keys) for row in rows}


def run_rows(
    path: Path,
    jobs: Iterable[tuple[dict[str, Any], str, Callable[[], Certificate]]],
    keys: Sequence[str],
    log: Callable[[str], None] = print,
) -> None:
    """Run each ``(setting, input_id, certify)`` job not yet in ``path`` and append its row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    done = done_keys(path, keys)
    for setting, input_id, certify in jobs:
        row_key = tuple({**setting, "input": input_id}[k] for k in keys)
        if row_key in done:
            continue
        start = time.perf_counter()
        cert = certify()
        row = certificate_row(cert, setting, input_id, time.perf_counter() - start)
        with path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        log(json.dumps(row))


def median_table(path: Path, group: Sequence[str], h_values: Sequence[float]) -> str:
    """Markdown table: per setting (``group`` columns) and ``h = eps_in / sigma``, the median
    ``eps_out`` over inputs (abstentions and uncertifiable radii count as ``inf``), the median
    smoothing error, the abstain rate and the mean seconds per input."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    settings: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        settings.setdefault(tuple(row[g] for g in group), []).append(row)
    header = [*group, "h", "eps_in", "inputs", "median eps_out", "median smoothing error"]
    header += ["abstain rate", "s / input"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, members in settings.items():
        sigma = float(members[0]["sigma"])
        for j, h in enumerate(h_values):
            outs = [r["eps_out"][j] for r in members]
            eps_out = [math.inf if v is None else v for v in outs]
            errors = [r["smoothing_error"] for r in members if r["smoothing_error"] is not None]
            cells = [*map(str, key), f"{h:g}", f"{h * sigma:.4g}", str(len(members))]
            cells.append(_fmt(float(np.median(eps_out))))
            cells.append(_fmt(float(np.median(errors))) if errors else "-")
            cells.append(f"{np.mean([r['abstained'] for r in members]):.2f}")
            cells.append(f"{np.mean([r['seconds'] for r in members]):.0f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    return "inf" if not math.isfinite(value) else f"{value:.4f}"
