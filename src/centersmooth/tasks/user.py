"""A user's own model, named on the command line as ``path/to/file.py:factory``.

How the command feeds it (the library's rule, :class:`CenterSmoothing`): an ``nn.Module`` gets
torch tensors in its parameters' float dtype, whatever the dtype of ``--inputs``; any other
callable gets torch tensors in the dtype of ``--inputs`` (integer inputs become torch's default
float type), or with ``--numpy-model`` NumPy arrays in that dtype (float32 for integer inputs),
as the library does for an input given as a NumPy array. The probe below and the run feed the
model through the same code.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch


def parse_model_spec(spec: str) -> tuple[Path, str]:
    """``"path/to/file.py:factory"`` -> (resolved path, factory name), with checked parts."""
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise ValueError(f"--model must look like path/to/file.py:factory, got {spec!r}")
    if not name.isidentifier():
        raise ValueError(f"--model: {name!r} is not a Python name (in {spec!r})")
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"--model: file {path_text} does not exist")
    if path.suffix != ".py":
        raise ValueError(f"--model: {path_text} is not a Python file (.py)")
    return path, name


def _import_file(path: Path) -> Any:
    key = "centersmooth_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--model: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]
        raise
    return module


def build_user_model(path: str, name: str) -> Any:
    """Import ``path`` and call its zero-argument ``name()``; the result is the base function."""
    module = _import_file(Path(path))
    factory = getattr(module, name, None)
    if factory is None:
        raise ValueError(f"--model: {path} defines no {name!r}")
    if not callable(factory):
        raise ValueError(f"--model: {name!r} in {path} is not callable")
    model = factory()
    if not callable(model):
        raise ValueError(f"--model: {name}() returned a {type(model).__name__}, not a model")
    return model


def user_model_factory(
    spec: str,
    probe: np.ndarray | None = None,
    numpy_model: bool = False,
    device: str | torch.device | None = None,
) -> functools.partial[Any]:
    """A picklable zero-argument factory for the runner's workers (each imports the file).

    The model is built once here, so that a bad file fails with a clear message and not in a
    worker; with ``probe`` (a batch of inputs) it is also run once on it, fed as in the run, so
    that inputs of the wrong shape or dtype are reported as such (``ValueError``) rather than as
    an error deep inside torch. ``device`` is the run's (``--device``): the probe feeds the
    model there, as the run will.
    """
    if probe is None:
        path, name = parse_model_spec(spec)
        build_user_model(str(path), name)
        return functools.partial(build_user_model, str(path), name)
    return probed_user_model(spec, probe, numpy_model, device)[0]


def probed_user_model(
    spec: str,
    probe: np.ndarray,
    numpy_model: bool = False,
    device: str | torch.device | None = None,
) -> tuple[functools.partial[Any], Any]:
    """:func:`user_model_factory` with a probe, and the model's outputs on the probe batch."""
    path, name = parse_model_spec(spec)
    model = build_user_model(str(path), name)
    outputs = _probe(model, probe, spec, numpy_model, device)
    return functools.partial(build_user_model, str(path), name), outputs


def model_batch(
    model: Any,
    batch: np.ndarray,
    numpy_model: bool = False,
    device: str | torch.device | None = None,
) -> Any:
    """The model's outputs on ``batch`` (N inputs), each input fed as the run feeds it: through
    the smoother's own input preparation and base function (``sampling``), on the run's
    ``device`` (default: where a module's weights are, else the CPU)."""
    from ..runs.workers import model_input
    from ..sampling import BaseFunction, prepare_input, resolve_device

    base = BaseFunction(model, resolve_device(device, model))
    prepared = [prepare_input(model_input(row, numpy_model), base, base.device) for row in batch]
    xs = torch.stack([t for t, _ in prepared])
    return base(xs, prepared[0][1])


_DTYPE_WORDS = re.compile(r"dtype|Double|Float|Half|BFloat|expected scalar type|same type", re.I)


def _probe(
    model: Any,
    batch: np.ndarray,
    spec: str,
    numpy_model: bool = False,
    device: str | torch.device | None = None,
) -> Any:
    try:
        return model_batch(model, batch, numpy_model, device)
    except Exception as err:  # noqa: BLE001 - any failure of the user's model on its inputs
        text = str(err).strip()
        first = text.splitlines()[0] if text else ""
        what = f"--model {spec} fails on a batch of --inputs of shape {tuple(batch.shape)}"
        cause = f"{type(err).__name__}: {first}"
        if _DTYPE_WORDS.search(first):
            kind = "NumPy arrays" if numpy_model else "torch tensors"
            hint = (
                f"the model received {kind} of dtype {batch.dtype} (that of --inputs) and "
                "expects another: save --inputs in the model's dtype (e.g. "
                "x.astype(np.float32)), or return an nn.Module from the factory (it gets its "
                "parameters' dtype)"
            )
        elif "NaN or infinite" in first:
            hint = "the model's outputs must be finite"
        else:
            hint = "check that each row of --inputs has the shape the model takes"
            if not numpy_model and not isinstance(model, torch.nn.Module):
                hint += " (and, for a NumPy or scikit-learn model, pass --numpy-model)"
        raise ValueError(f"{what} ({cause}); {hint}") from None
