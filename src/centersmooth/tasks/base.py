"""What a task is: a base model, how to train it, and which inputs and targets to certify.

A task turns command-line choices (a checkpoint, a data set, a number of inputs) into a
:class:`CertifySetup`: a picklable zero-argument model factory for the runner, the inputs the
smoothed function receives, the clean targets, and the run information written to the results.
Trainable image tasks (:class:`ImageTask`) also say how to build their model and its training loss.
Tasks with a fixed pretrained model override :meth:`Task.certify_setup` only.

A task may also set its own smoothing settings (:attr:`Task.default_settings`,
:attr:`Task.paper_settings`, merged by :meth:`Task.preset_settings`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..data.datasets import Dataset, cache_dir, file_sha256, load_dataset
from ..settings import PAPER_SETTINGS
from .inference import inference_form

CHECKPOINT_FORMAT = "centersmooth-checkpoint"
CHECKPOINT_VERSION = 1
PRESETS = ("default", "paper")  # the values of ``centersmooth certify --preset``


@dataclass(frozen=True)
class CertifySetup:
    """Everything the runner needs for one ``centersmooth certify TASK`` run."""

    model_factory: Any  # picklable zero-argument callable returning the base function
    inputs: np.ndarray  # (N, ...) what the smoothed function receives
    targets: np.ndarray | None  # (N, ...) clean ground truth, or None
    indices: np.ndarray  # data set indices of the inputs
    run_info: dict[str, Any] = field(default_factory=dict)  # task, dataset, model, ...


class Task:
    """A named experiment. Subclasses set the class attributes and implement the methods.

    ``default_settings`` holds the :class:`CenterSmoothing` arguments the task uses unless told
    otherwise (for example the sample counts a slow model can afford, or ``candidates`` for an
    expensive metric); ``paper_settings`` those of the paper's experiment for this task, over the
    generic paper constants ``PAPER_SETTINGS``. See :meth:`preset_settings` for the order.
    """

    name: str = "task"
    description: str = ""
    default_metrics: tuple[str, ...] = ("l2",)
    default_dataset: str | None = None
    trainable: bool = False
    default_settings: ClassVar[dict[str, Any]] = {}
    paper_settings: ClassVar[dict[str, Any]] = {}

    def preset_settings(self, preset: str = "default") -> dict[str, Any]:
        """The :class:`CenterSmoothing` arguments of ``preset`` for this task. Each level goes
        over the one before: the library's defaults (the constructor's, not repeated here), the
        task's ``default_settings``, and for ``preset="paper"`` the paper's constants
        ``PAPER_SETTINGS`` then the task's ``paper_settings``. Explicit arguments (the CLI's
        flags, ``make_smoother`` keywords) go over the result."""
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
        settings = dict(self.default_settings)
        if preset == "paper":
            settings.update(PAPER_SETTINGS)
            settings.update(self.paper_settings)
        return settings

    def certify_setup(
        self,
        *,
        checkpoint: Path | None,
        dataset: str | None,
        data_root: Path | None,
        n_inputs: int,
        seed: int,
        sigma: float,
    ) -> CertifySetup:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class ImageTask(Task):
    """A model trained here on an image data set (autoencoder, reconstruction, classifier)."""

    trainable = True
    default_dataset = "mnist"

    def default_arch(self, dataset: Dataset) -> dict[str, int]:
        """Architecture arguments for ``dataset`` (image shape and the task's sizes)."""
        c, h, w = dataset.image_shape
        return {"channels": c, "height": h, "width": w}

    def build(self, **arch: Any) -> nn.Module:
        raise NotImplementedError

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        sigma: float,
        gen: torch.Generator,
    ) -> torch.Tensor:
        """Training loss of one batch, with Gaussian noise of ``sigma`` where the smoothing noise
        will go (the image for autoencoder and classifier, the measurements for reconstruction)."""
        raise NotImplementedError

    def inputs_and_targets(
        self, model: nn.Module, images: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """What the smoothed function receives for clean ``images``, and the clean targets."""
        return images, images

    def certify_setup(
        self,
        *,
        checkpoint: Path | None,
        dataset: str | None,
        data_root: Path | None,
        n_inputs: int,
        seed: int,
        sigma: float,
    ) -> CertifySetup:
        if checkpoint is None:
            name = dataset or self.default_dataset or ""
            checkpoint = default_checkpoint(self.name, name, sigma, seed=0)
            if not checkpoint.is_file():
                raise FileNotFoundError(
                    f"no trained model at {checkpoint}; train one with `centersmooth train "
                    f"{self.name} --dataset {name} --sigma-train {sigma:g}` or pass --checkpoint"
                )
        model, meta = load_checkpoint(checkpoint)
        if meta["task"] != self.name:
            raise ValueError(f"{checkpoint} holds a {meta['task']!r} model, not {self.name!r}")
        if dataset is not None and dataset != meta["dataset"]:
            raise ValueError(
                f"{checkpoint} was trained on {meta['dataset']!r}, not {dataset!r}; "
                "omit --dataset or pass a matching checkpoint"
            )
        data = load_dataset(meta["dataset"], data_root)
        indices = data.test_sample(n_inputs, seed)
        inputs, targets = self.inputs_and_targets(model, data.x_test[indices], data.y_test[indices])
        run_info = {
            "task": self.name,
            "dataset": meta["dataset"],
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": file_sha256(Path(checkpoint)),  # a resume needs the same weights
            "sigma_train": meta["sigma_train"],
            "train_seed": meta["seed"],
            "arch": meta["arch"],
        }
        return CertifySetup(
            functools.partial(load_model, str(checkpoint)), inputs, targets, indices, run_info
        )


# ----------------------------------------------------------------------------- checkpoints
def default_checkpoint(task: str, dataset: str, sigma_train: float, seed: int = 0) -> Path:
    """``<cache>/models/<task>-<dataset>-sigma<sigma>-seed<seed>.pt``."""
    return cache_dir() / "models" / f"{task}-{dataset}-sigma{sigma_train:g}-seed{seed}.pt"


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``{"meta": ..., "state_dict": ...}`` atomically; ``meta`` holds plain values only
    (task, dataset, sigma_train, seed, final_loss, arch, ...) so that ``weights_only`` loads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "meta": dict(meta),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(
    path: str | Path, device: str | torch.device | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """The model (eval mode) and metadata of a checkpoint, read with ``weights_only=True``."""
    from . import get_task

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same message
        raise ValueError(f"{path} is not a readable centersmooth checkpoint ({err})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a centersmooth checkpoint")
    meta = payload["meta"]
    task = get_task(meta["task"])
    if not isinstance(task, ImageTask):
        raise ValueError(f"task {task.name!r} has no trainable model")
    model = task.build(**meta["arch"])
    model.load_state_dict(payload["state_dict"])
    return inference_form(model, device), meta


def load_model(path: str) -> nn.Module:
    """The model of a checkpoint (a top-level function, so ``partial(load_model, path)`` is a
    picklable model factory for the runner's workers)."""
    return load_checkpoint(path)[0]
