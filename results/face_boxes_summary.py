"""Print the tables of results/face-boxes.md from the face-box results files, the detectors side
by side: per input, eps_out at eps_in = 0.5 / 1 / 1.5 sigma and the smoothing error; then the
medians over the inputs where each detector finds a face, with the certified, vacuous and
abstained counts and the seconds per input.

Usage: .venv/bin/python results/face_boxes_summary.py [DIR]   (default: results/face-boxes; its
subfolder library-counts/ is read too). Files: <detector>-default-<set>-sigma<S>.jsonl.
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from centersmooth.runs.results_file import read_results
from centersmooth.tasks.face_boxes import DETECTOR_NAMES, INPUT_SETS, face_detector, input_set

ROOT = Path(__file__).resolve().parent / "face-boxes"
NAME = re.compile(r"(?P<detector>[a-z]+)-default-(?P<set>[a-z]+)-sigma(?P<sigma>[0-9.]+)\.jsonl")
H_VALUES = (0.5, 1.0, 1.5)


def load(folder: Path) -> dict[tuple[str, float], dict[str, dict[str, Any]]]:
    """(detector, sigma) -> input label -> {counts, clean, eps_out by h, error, seconds,
    abstained, vacuous}, from the files of ``folder`` named as the experiment driver names them."""
    found: dict[tuple[str, float], dict[str, dict[str, Any]]] = defaultdict(dict)
    named = [(m, p) for p in sorted(folder.glob("*.jsonl")) if (m := NAME.fullmatch(p.name))]
    named = [(m, p) for m, p in named if m["set"] in INPUT_SETS]
    for match, path in sorted(named, key=lambda mp: INPUT_SETS.index(mp[0]["set"])):
        results = read_results(path)
        if results.header is None or not results.rows:
            continue
        detector, kind = match["detector"], match["set"]
        n_inputs = int(results.header["n_inputs"])
        images = torch.from_numpy(input_set(kind, n_inputs, "face-boxes"))
        clean = face_detector(detector)(images)
        for i in range(n_inputs):
            rows = [r for r in results.rows if r["input_index"] == i]
            if not rows:
                continue
            label = kind if kind == "astronaut" else f"{kind}{i}"
            sigma = float(rows[0]["sigma"])
            found[(detector, sigma)][label] = {
                "counts": f"{rows[0]['n_center']:,} / {rows[0]['n_check']:,} / "
                f"{rows[0]['n_certify']:,}",
                "face": bool(clean[i, 2] > clean[i, 0] and clean[i, 3] > clean[i, 1]),
                "eps_out": {round(r["eps_in"] / sigma, 3): r for r in rows},
                "error": rows[0]["smoothing_error"],
                "seconds": rows[0]["seconds"],
            }
    return found


def cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    if row["abstained"]:
        return "abstain"
    if row["eps_out"] is None:
        return "beyond max"
    return "1" if row.get("vacuous") else number(row["eps_out"])


def number(value: float) -> str:
    return "1" if value == 1.0 else f"{value:.3f}"


def error(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def tables(found: dict[tuple[str, float], dict[str, dict[str, Any]]]) -> str:
    detectors = sorted({d for d, _ in found}, key=lambda d: list(DETECTOR_NAMES).index(d))
    sigmas = sorted({s for _, s in found})
    labels = list(dict.fromkeys(label for per in found.values() for label in per))
    head = "| input | detector | clean detection |"
    rule = "|---|---|---|"
    for sigma in sigmas:
        head += f" sigma {sigma:g}: eps_out at h = 0.5 / 1 / 1.5 | smoothing error |"
        rule += "---|---|"
    lines = [head, rule]
    for label in labels:
        for detector in detectors:
            entries = [found.get((detector, sigma), {}).get(label) for sigma in sigmas]
            if all(e is None for e in entries):
                continue
            face = next(e["face"] for e in entries if e is not None)
            line = f"| {label} | {DETECTOR_NAMES[detector]} | {'face' if face else 'no face'} |"
            for e in entries:
                if e is None:
                    line += " - | - |"
                    continue
                eps = " / ".join(cell(e["eps_out"].get(h)) for h in H_VALUES)
                line += f" {eps} | {error(e['error'])} |"
            lines.append(line)
    lines += [
        "",
        "Medians over the inputs where the detector finds a face in the clean image (a vacuous 1 "
        "taken as 1, an abstention as 1); certified / vacuous / abstained count every "
        "(input, eps_in); seconds per input (its three eps_in together):",
        "",
        "| detector | sigma | counts | inputs with a face | h = 0.5 | h = 1 | h = 1.5 "
        "| certified / vacuous / abstained | median s per input |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for detector in detectors:
        for sigma in sigmas:
            per = found.get((detector, sigma), {})
            faces = [e for e in per.values() if e["face"]]
            medians = []
            for h in H_VALUES:
                values = [v for e in faces if (v := _value(e["eps_out"].get(h))) is not None]
                medians.append(number(statistics.median(values)) if values else "-")
            rows = [r for e in per.values() for r in e["eps_out"].values()]
            vacuous = sum(bool(r.get("vacuous")) for r in rows if r["eps_out"] is not None)
            certified = sum(r["eps_out"] is not None for r in rows) - vacuous
            abstained = sum(bool(r["abstained"]) for r in rows)
            counts = ", ".join(sorted({e["counts"] for e in per.values()}))
            seconds = [e["seconds"] for e in per.values() if e["seconds"] is not None]
            time = f"{statistics.median(seconds):.0f}" if seconds else "-"
            lines.append(
                f"| {DETECTOR_NAMES[detector]} | {sigma:g} | {counts} | {len(faces)} of "
                f"{len(per)} | {' | '.join(medians)} | {certified} / {vacuous} / {abstained} | "
                f"{time} |"
            )
    return "\n".join(lines)


def _value(row: dict[str, Any] | None) -> float | None:
    """eps_out for a median: a vacuous or abstained row counts as 1 (nothing certified)."""
    if row is None or (row["eps_out"] is None and not row["abstained"]):
        return None
    return 1.0 if row["abstained"] or row.get("vacuous") else float(row["eps_out"])


def main(root: Path = ROOT) -> None:
    for folder, title in ((root, "the paper's counts"), (root / "library-counts", "our counts")):
        found = load(folder) if folder.is_dir() else {}
        if found:
            print(f"### {title} ({folder})\n\n{tables(found)}\n")
        else:
            print(f"### {title}: no results files in {folder}\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
