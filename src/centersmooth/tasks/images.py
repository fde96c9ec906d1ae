"""The paper's image tasks: dimensionality reduction, reconstruction from Gaussian measurements,
and a classifier whose probability vector is certified in total variation distance."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..data.datasets import Dataset
from .base import ImageTask
from .models import ConvAutoencoder, MeasurementReconstructor, SmallClassifier

IMAGE_METRICS = ("l2", "angular", "tv1", "tv2")


def _noisy(x: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    return x + sigma * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)


class AutoencoderTask(ImageTask):
    """Dimensionality reduction: a denoising conv autoencoder (latent 128 for 28x28 images, 256
    for 32x32 as in the paper, 32 for 8x8); smoothing noise on the image."""

    name = "autoencoder"
    description = "dimensionality reduction: conv autoencoder, noise on the image"
    default_metrics = IMAGE_METRICS

    def default_arch(self, dataset: Dataset) -> dict[str, int]:
        arch = super().default_arch(dataset)
        side = arch["height"]
        arch["latent"] = 32 if side <= 8 else (128 if side <= 28 else 256)
        arch["hidden"] = 16
        return arch

    def build(self, **arch: Any) -> nn.Module:
        return ConvAutoencoder(**arch)

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        sigma: float,
        gen: torch.Generator,
    ) -> torch.Tensor:
        return F.mse_loss(model(_noisy(images, sigma, gen)), images)


class ReconstructionTask(ImageTask):
    """Reconstruction from Gaussian measurements ``y = A x`` (about a third as many measurements
    as pixels); smoothing noise on ``y``."""

    name = "reconstruction"
    description = "reconstruction from Gaussian measurements y = Ax, noise on y"
    default_metrics = IMAGE_METRICS

    def default_arch(self, dataset: Dataset) -> dict[str, int]:
        arch = super().default_arch(dataset)
        pixels = arch["channels"] * arch["height"] * arch["width"]
        arch["measurements"] = 256 if pixels == 784 else max(1, pixels // 3)
        arch["matrix_seed"] = 0
        arch["latent"] = arch["measurements"]
        arch["hidden"] = 16
        return arch

    def build(self, **arch: Any) -> nn.Module:
        return MeasurementReconstructor(**arch)

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        sigma: float,
        gen: torch.Generator,
    ) -> torch.Tensor:
        assert isinstance(model, MeasurementReconstructor)
        return F.mse_loss(model(_noisy(model.measure(images), sigma, gen)), images)

    def inputs_and_targets(
        self, model: nn.Module, images: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        assert isinstance(model, MeasurementReconstructor)
        with torch.no_grad():
            y = model.measure(torch.from_numpy(images)).numpy().astype(np.float32)
        return y, images


class ClassifierTask(ImageTask):
    """A small classifier; its softmax output is certified in total variation distance."""

    name = "classifier"
    description = "image classifier, probability vector under total variation"
    default_metrics = ("total_variation",)

    def default_arch(self, dataset: Dataset) -> dict[str, int]:
        arch = super().default_arch(dataset)
        arch["classes"] = dataset.n_classes
        arch["hidden"] = 8
        return arch

    def build(self, **arch: Any) -> nn.Module:
        return SmallClassifier(**arch)

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        sigma: float,
        gen: torch.Generator,
    ) -> torch.Tensor:
        assert isinstance(model, SmallClassifier)
        return F.cross_entropy(model.logits(_noisy(images, sigma, gen)), labels)

    def inputs_and_targets(
        self, model: nn.Module, images: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        assert isinstance(model, SmallClassifier)
        return images, np.eye(model.classes, dtype=np.float32)[labels]
