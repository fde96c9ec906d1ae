"""The results file: its schema, reading it back, and the one writer that appends to it.

A header line (configuration, package version, seed), then one JSON line per
(input, metric, eps_in), schema in ``docs/results-schema.md``. Every append is one write, flushed
and fsynced, under an exclusive lock; a crash can leave at most a torn last line, which reading
drops and reports, and a resume must match the header's configuration.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

FORMAT = "centersmooth-results"
SCHEMA_VERSION = 1

# The noise stream (``sampling.NoiseStream``) a file's rows were drawn with, in its header's
# ``config``: a file is resumed only with the stream it was made with. "torch-mt-v1" (files
# without the field) drew each input's noise from one sequential torch generator; "blocks-v2"
# gives every block of samples its own generator, so blocks can be drawn in parallel.
NOISE_STREAM = "blocks-v2"
LEGACY_NOISE_STREAM = "torch-mt-v1"

# Row fields, in file order; run_info fields follow. ``task`` comes from run_info.
ROW_FIELDS = (
    "input_index",
    "task",
    "metric",
    "sigma",
    "eps_in",
    "eps_out",
    "abstained",
    "smoothing_error",
    "base_error",
    "smoothed_error",
    "radius",
    "quantile_radius",
    "inner_radius",
    "near_radius",
    "pair_radius",
    "max_eps_in",
    "vacuous",
    "output_diameter",
    "p_low",
    "delta1",
    "check_level",
    "abstain_reason",
    "n_center",
    "n_check",
    "n_certify",
    "certification_samples",
    "forward_passes",
    "bound",
    "seed",
    "input_seed",
    "seconds",
    "version",
)


def package_version() -> str:
    """The version stamped into headers and rows."""
    from .. import __version__

    return __version__


def json_float(value: Any) -> float | None:
    """A float for JSON, ``None`` for infinity or NaN (the file never holds Infinity or NaN)."""
    v = float(value)
    return v if math.isfinite(v) else None


def jsonable(value: Any) -> Any:
    """Plain JSON types (NumPy scalars and arrays converted, non-finite floats as None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return json_float(value)
    if value is None or isinstance(value, str):
        return value
    torch = sys.modules.get("torch")  # not imported here: reading a file needs no torch
    if torch is not None and isinstance(value, torch.device):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} to the results file: {value!r}")


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, allow_nan=False, separators=(", ", ": ")) + "\n"


@dataclass
class Results:
    """A results file as read back: its header, its rows, and where a torn last line began."""

    header: dict[str, Any] | None
    rows: list[dict[str, Any]]
    torn: bool  # the file ended in a partial line (a crash in mid-write), which was dropped
    valid_bytes: int  # length of the file without that partial line


def read_results(path: str | os.PathLike[str]) -> Results:
    """Header and rows of a results file. A torn last line (a crash in mid-write) is dropped and
    reported; a bad line anywhere else is an error."""
    path = Path(path)
    data = path.read_bytes()
    torn = False
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        logger.warning(
            "%s: dropped a torn last line (%d bytes, left by an interrupted write)",
            path,
            len(data) - keep,
        )
        torn = True
        data = data[:keep]
    header = None
    rows = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not a JSON record ({err})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: not a JSON object")
        if record.get("record") == "header":
            if header is not None:
                raise ValueError(f"{path}, line {number}: a second run header")
            header = record
        else:
            rows.append(record)
    if rows and header is None:
        raise ValueError(f"{path}: rows without a run header: not a centersmooth results file")
    return Results(header, rows, torn, len(data))


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())


class RunnerError(RuntimeError):
    """A run that cannot go on: its file is in use, a worker died too often, the model failed in
    a worker. The message says which input and why."""


class PlatformMismatchError(RunnerError):
    """Rows of one results file would come from different platforms (GPU model, torch or CUDA
    version): seeded noise and model outputs differ between them, so a resumed run or a Ray
    worker elsewhere would not add the rows of one run."""


def describe_platform(platform: dict[str, Any]) -> str:
    """``NVIDIA H100 80GB HBM3, torch 2.11.0+cu130, CUDA 13.0`` (or ``cpu, torch ...``)."""
    cuda = platform.get("cuda")
    return f"{platform.get('device')}, torch {platform.get('torch')}" + (
        f", CUDA {cuda}" if cuda else ""
    )


def platforms_differ(expected: dict[str, Any] | None, got: dict[str, Any] | None) -> bool:
    """Whether rows of ``got`` may not join rows of ``expected``: another device name, torch or
    CUDA version (a file of an older version, without the record, takes anything)."""
    if not expected or not got:
        return False
    return any(expected.get(k) != got.get(k) for k in ("device", "torch", "cuda"))


class Writer:
    """Appends records to the results file; each call is one write, flushed and fsynced. Holds an
    exclusive lock on the file (POSIX ``flock``) so that two runs never append to the same file;
    the kernel releases it when the process dies, even by SIGKILL."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "ab")  # noqa: SIM115 - closed in close()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise RunnerError(
                f"{path} is being written by another run; wait for it to end or choose another "
                "output"
            ) from None

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        self.file.write("".join(_dumps(r) for r in records).encode("utf-8"))
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


class ResultsFileExists(FileExistsError):
    """The results file exists and the run was not asked to resume it; :meth:`advice` words
    the message for a command (``--resume``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(self.advice("resume=True"))

    def advice(self, resume: str) -> str:
        return f"{self.path} already exists; resume it ({resume}) or choose another output"


def prepare_file(path: Path, config: dict[str, Any], resume: bool) -> list[dict[str, Any]]:
    """Rows already in ``path`` (after dropping a torn last line) if resuming; else [] for a new
    file. Refuses to overwrite, and refuses a header with another configuration."""
    return prepare_file_header(path, config, resume)[0]


def prepare_file_header(
    path: Path, config: dict[str, Any], resume: bool
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """:func:`prepare_file`, and the header of the file resumed (``None`` for a new file)."""
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        return [], None
    if not resume:
        raise ResultsFileExists(path)
    existing = read_results(path)
    if existing.header is None:
        if not path.read_bytes()[: existing.valid_bytes].strip():
            _truncate(path, 0)  # only a torn header: start afresh
            return [], None
        raise ValueError(f"{path} has no run header: not a centersmooth results file")
    if existing.header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a centersmooth results file (format {FORMAT!r})")
    old_config = {"noise_stream": LEGACY_NOISE_STREAM, **existing.header.get("config", {})}
    if isinstance(old_config.get("smoothing"), dict):  # files from before these switches
        before = {"share_check_samples": False, "pairwise_bound": False}
        old_config["smoothing"] = {**before, **old_config["smoothing"]}
    stream = config.get("noise_stream", LEGACY_NOISE_STREAM)
    if old_config["noise_stream"] != stream:
        raise ValueError(
            f"cannot resume {path}: it was made with noise stream {old_config['noise_stream']!r}; "
            f"this version of centersmooth draws {stream!r}: start a new file, or resume it with "
            f"the centersmooth version that wrote it ({existing.header.get('version', 'unknown')})"
        )
    diffs = _mismatch(_compared(old_config), _compared(config))
    if diffs:
        hint = ""
        if old_config["smoothing"].get("pairwise_bound") is False and any(
            d.startswith("smoothing.pairwise_bound:") for d in diffs
        ):  # a file from before the pairwise bound served its distances by default
            hint = " A file written without the pairwise bound resumes with pairwise_bound=False"
            hint += " (--no-pairwise-bound)."
        raise ValueError(
            f"cannot resume {path}: it was written with another configuration ("
            + "; ".join(diffs)
            + "). Use the same settings, or write to a new file."
            + hint
        )
    if existing.torn:
        _truncate(path, existing.valid_bytes)
    return existing.rows, existing.header


# Settings a resumed run may change: the batch size changes no certificate (on the CPU not even
# a bit of one), and the automatic one (None) depends on the memory free at the time.
FREE_ON_RESUME = ("batch_size",)


def _compared(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the settings a resume may change (``FREE_ON_RESUME``)."""
    smoothing = config.get("smoothing")
    if not isinstance(smoothing, dict):
        return config
    kept = {k: v for k, v in smoothing.items() if k not in FREE_ON_RESUME}
    return {**config, "smoothing": kept}


def _mismatch(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _mismatch(a, b, f"{prefix}{key}.")
        elif a != b:
            if key == "inputs_sha256":
                diffs.append("the inputs, indices or targets differ")
            else:
                diffs.append(f"{prefix}{key}: {a!r} in the file, {b!r} now")
    return diffs
