"""Experiments by name: ``get_task(name)``, ``available_tasks()``, ``register_task``.

A new task is a :class:`Task` subclass (one file) plus one line in ``_REGISTRY``, or one call to
``register_task`` from another module.

The task modules (and torch) are imported when a task or one of the names below is first used, so
that listing the task names (the command's ``--help``) stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import (
        CertifySetup,
        ImageTask,
        Task,
        default_checkpoint,
        load_checkpoint,
        load_model,
        save_checkpoint,
    )
    from .images import AutoencoderTask, ClassifierTask, ReconstructionTask
    from .models import (
        ConvAutoencoder,
        MeasurementReconstructor,
        SmallClassifier,
        measurement_matrix,
    )
    from .training import TrainResult, train

_PUBLIC = {
    "CertifySetup": "base",
    "ImageTask": "base",
    "Task": "base",
    "default_checkpoint": "base",
    "load_checkpoint": "base",
    "load_model": "base",
    "save_checkpoint": "base",
    "AutoencoderTask": "images",
    "ClassifierTask": "images",
    "ReconstructionTask": "images",
    "ConvAutoencoder": "models",
    "MeasurementReconstructor": "models",
    "SmallClassifier": "models",
    "measurement_matrix": "models",
    "TrainResult": "training",
    "train": "training",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def _lazy_task(module: str, cls: str) -> Callable[[], Task]:
    """A task class imported when first asked for (also for modules that are drivers,
    ``python -m centersmooth.tasks.X``, so that running the driver does not import it twice)."""

    def factory() -> Task:
        task: Task = getattr(importlib.import_module(f"{__name__}.{module}"), cls)()
        return task

    return factory


_REGISTRY: dict[str, Callable[[], Task]] = {
    "autoencoder": _lazy_task("images", "AutoencoderTask"),
    "reconstruction": _lazy_task("images", "ReconstructionTask"),
    "classifier": _lazy_task("images", "ClassifierTask"),
    "gan-faces": _lazy_task("gan_faces", "GanFacesTask"),
    "face-boxes": _lazy_task("face_boxes", "FaceBoxesTask"),
    "face-embeddings": _lazy_task("face_embeddings", "FaceEmbeddingsTask"),
}


def register_task(name: str, factory: Callable[[], Task]) -> None:
    """Add a task under ``name`` (refuses to overwrite an existing name)."""
    if name in _REGISTRY:
        raise ValueError(f"a task named {name!r} is already registered")
    _REGISTRY[name] = factory


def available_tasks() -> list[str]:
    """The registered task names, sorted."""
    return sorted(_REGISTRY)


def get_task(name: str) -> Task:
    """The task registered under ``name``."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(
            f"unknown task {name!r}; known tasks: {', '.join(available_tasks())}"
        ) from None


__all__ = [
    "AutoencoderTask",
    "CertifySetup",
    "ClassifierTask",
    "ConvAutoencoder",
    "ImageTask",
    "MeasurementReconstructor",
    "ReconstructionTask",
    "SmallClassifier",
    "Task",
    "TrainResult",
    "available_tasks",
    "default_checkpoint",
    "get_task",
    "load_checkpoint",
    "load_model",
    "measurement_matrix",
    "register_task",
    "save_checkpoint",
    "train",
]
