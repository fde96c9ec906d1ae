"""A user's own model, named on the command line as ``path/to/file.py:factory``."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
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


def user_model_factory(spec: str, probe: np.ndarray | None = None) -> functools.partial[Any]:
    """A picklable zero-argument factory for the runner's workers (each imports the file).

    The model is built once here, so that a bad file fails with a clear message and not in a
    worker; with ``probe`` (a batch of inputs) it is also run once on it, so that inputs of the
    wrong shape are reported as such (``ValueError``) rather than as an error deep inside torch.
    """
    path, name = parse_model_spec(spec)
    model = build_user_model(str(path), name)
    if probe is not None:
        _probe(model, probe, spec)
    return functools.partial(build_user_model, str(path), name)


def _probe(model: Any, batch: np.ndarray, spec: str) -> None:
    x = torch.from_numpy(np.array(batch))
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            model(x)
    except Exception as err:  # noqa: BLE001 - any failure of the user's model on its inputs
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(
            f"--model {spec} fails on a batch of --inputs of shape {tuple(x.shape)} "
            f"({type(err).__name__}: {first}); check that each row of --inputs has the shape "
            "the model takes"
        ) from None
