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
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..metrics.base import import_file, parse_file_spec
from ..sampling import SeveralOutputsError, model_function


def parse_model_spec(spec: str) -> tuple[Path, str]:
    """``"path/to/file.py:factory"`` -> (resolved path, factory name), with checked parts."""
    return parse_file_spec(spec, "--model", "factory")


def build_user_model(path: str, name: str) -> Any:
    """Import ``path`` and call its zero-argument ``name()``; the result is the base function."""
    module = import_file(Path(path), "--model")
    factory = getattr(module, name, None)
    if factory is None:
        raise ValueError(f"--model: {path} defines no {name!r}")
    if not callable(factory):
        raise ValueError(f"--model: {name!r} in {path} is not callable")
    model = factory()
    try:
        model_function(model)  # a function, a module or an estimator's transform / predict
    except TypeError:
        raise ValueError(
            f"--model: {name}() returned a value of type {type(model).__name__}, not a model: "
            "return an nn.Module, a function of a batch of inputs or a fitted estimator with a "
            "transform or predict method"
        ) from None
    return model


def user_model_factory(
    spec: str,
    probe: np.ndarray | None = None,
    numpy_model: bool = False,
    device: str | torch.device | None = None,
    output: Any = None,
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
    return probed_user_model(spec, probe, numpy_model, device, output)[0]


def probed_user_model(
    spec: str,
    probe: np.ndarray,
    numpy_model: bool = False,
    device: str | torch.device | None = None,
    output: Any = None,
) -> tuple[functools.partial[Any], Any]:
    """:func:`user_model_factory` with a probe, and the model's outputs on the probe batch
    (``output`` chosen as in the run)."""
    path, name = parse_model_spec(spec)
    model = build_user_model(str(path), name)
    outputs = _probe(model, probe, spec, numpy_model, device, output)
    return functools.partial(build_user_model, str(path), name), outputs


def model_batch(
    model: Any,
    batch: np.ndarray,
    numpy_model: bool = False,
    device: str | torch.device | None = None,
    output: Any = None,
) -> Any:
    """The model's outputs on ``batch`` (N inputs), each input fed as the run feeds it: through
    the smoother's own input preparation and base function (``sampling``), on the run's
    ``device`` (default: where a module's weights are, else the CPU)."""
    from ..runs.workers import model_input
    from ..sampling import BaseFunction, prepare_input, resolve_device

    base = BaseFunction(model, resolve_device(device, model), output=output)
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
    output: Any = None,
) -> Any:
    try:
        return model_batch(model, batch, numpy_model, device, output)
    except SeveralOutputsError as err:
        raise ValueError(f"--model {spec}: {err}") from None
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
        elif "returned NaN or infinite" in first:
            hint = "the model's outputs must be finite"
        elif "contains NaN or infinite" in first:
            hint = "every row of --inputs must be finite"
        elif "base function" in first:  # what it returned is no batch of outputs
            hint = "the model must map a batch of N inputs to a batch of N outputs"
        else:
            hint = "check that each row of --inputs has the shape the model takes"
            if not numpy_model and not isinstance(model, torch.nn.Module):
                hint += " (and, for a NumPy or scikit-learn model, pass --numpy-model)"
        raise ValueError(f"{what} ({cause}); {hint}") from None
