"""Training an image task's model with Gaussian noise of ``sigma_train``, seeded, with a progress
bar, ending in a checkpoint that records how the model was made."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.datasets import load_dataset
from .base import ImageTask, default_checkpoint, save_checkpoint


@dataclass(frozen=True)
class TrainResult:
    path: Path
    meta: dict[str, Any]


def train(
    task_name: str,
    dataset: str | None = None,
    sigma_train: float = 0.25,
    *,
    epochs: int = 5,
    n_train: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    arch: dict[str, int] | None = None,
    data_root: str | Path | None = None,
    out: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> TrainResult:
    """Train ``task_name`` on ``dataset`` and save a checkpoint (default path in the cache).

    The noise is added where the smoothing noise will go (see each task's ``loss``). Everything
    random (initialisation, the ``n_train`` subset, shuffling, noise) derives from ``seed``, and
    the global torch RNG state is restored afterwards. ``arch`` overrides architecture arguments
    (``latent``, ``measurements``, ``hidden``, ...).
    """
    from . import get_task

    task = get_task(task_name)
    if not isinstance(task, ImageTask):
        raise ValueError(f"task {task_name!r} has no model to train")
    if not (
        isinstance(sigma_train, int | float) and math.isfinite(sigma_train) and sigma_train >= 0
    ):
        raise ValueError(f"sigma_train must be a finite number >= 0, got {sigma_train!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if n_train is not None and (not isinstance(n_train, int) or n_train < 1):
        raise ValueError(f"n_train must be a positive integer or None, got {n_train!r}")
    if not (isinstance(lr, int | float) and lr > 0):
        raise ValueError(f"lr must be positive, got {lr!r}")

    dataset = dataset or task.default_dataset or "mnist"
    data = load_dataset(dataset, None if data_root is None else Path(data_root))
    full_arch = task.default_arch(data)
    unknown = set(arch or {}) - set(full_arch)
    if unknown:
        raise ValueError(
            f"unknown architecture arguments {sorted(unknown)} for {task_name}; "
            f"known: {sorted(full_arch)}"
        )
    full_arch.update(arch or {})
    rng = np.random.default_rng(seed)
    x, y = data.x_train, data.y_train
    if n_train is not None and n_train < len(x):
        keep = np.sort(rng.choice(len(x), n_train, replace=False))
        x, y = x[keep], y[keep]
    dev = torch.device(device)
    images = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
    labels = torch.from_numpy(np.ascontiguousarray(y)).to(dev)
    steps_per_epoch = math.ceil(len(images) / batch_size)

    start = time.perf_counter()
    with _seeded_global_generators(dev, seed):
        model = task.build(**full_arch).to(dev)
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed)
        order_gen = torch.Generator().manual_seed(seed + 1)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        bar = tqdm(
            total=epochs * steps_per_epoch,
            desc=f"train {task_name} on {dataset} (sigma {sigma_train:g})",
            disable=not progress,
            dynamic_ncols=True,
        )
        epoch_loss = math.nan
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=order_gen).to(dev)
            total, count = 0.0, 0
            for step in range(steps_per_epoch):
                idx = order[step * batch_size : (step + 1) * batch_size]
                loss = task.loss(model, images[idx], labels[idx], float(sigma_train), gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
                bar.update(1)
                bar.set_postfix(loss=f"{total / count:.4f}")
            epoch_loss = total / count
        bar.close()
    model.eval()

    meta: dict[str, Any] = {
        "task": task_name,
        "dataset": dataset,
        "sigma_train": float(sigma_train),
        "seed": int(seed),
        "final_loss": float(epoch_loss),
        "arch": dict(full_arch),
        "epochs": int(epochs),
        "n_train": len(images),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "train_seconds": round(time.perf_counter() - start, 2),
        "version": _version(),
    }
    path = (
        Path(out) if out is not None else default_checkpoint(task_name, dataset, sigma_train, seed)
    )
    save_checkpoint(path, model, meta)
    return TrainResult(path, meta)


@contextlib.contextmanager
def _seeded_global_generators(device: torch.device, seed: int) -> Iterator[None]:
    """torch's global generators seeded for the block and restored after it: the CPU's (weights
    are initialised there) and, when training on a CUDA device, that device's (dropout and other
    random layers draw from it). ``torch.manual_seed`` would also seed every CUDA device, even
    before CUDA starts, and leave them changed."""
    cuda: list[int] = []
    if device.type == "cuda":
        cuda = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def _version() -> str:
    from .. import __version__

    return __version__
