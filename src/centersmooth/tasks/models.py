"""Small base models for the paper's image experiments (sized to train in minutes on a CPU).

- :class:`ConvAutoencoder`: dimensionality reduction, image -> latent -> image.
- :class:`MeasurementReconstructor`: reconstruction from Gaussian measurements ``y = A x``:
  back-projection ``A^T y``, then a convolutional encoder-decoder. ``A`` is drawn from a seed,
  scaled by ``1 / sqrt(m)`` and stored in the state dict as a buffer.
- :class:`SmallClassifier`: an MNIST-sized CNN whose output is a probability vector.

Image sides must be multiples of 4 (8, 28 and 32 are).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def _check_shape(channels: int, height: int, width: int) -> None:
    for name, value in (("channels", channels), ("height", height), ("width", width)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if height % 4 or width % 4:
        raise ValueError(f"image sides must be multiples of 4, got {height}x{width}")


def _encoder(channels: int, width: int) -> nn.Sequential:
    """Two stride-2 convolutions: (C, H, W) -> (2 * width, H / 4, W / 4)."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
        nn.ReLU(),
    )


def _decoder(channels: int, width: int) -> nn.Sequential:
    """Two stride-2 transposed convolutions back to (C, H, W), values in (0, 1)."""
    return nn.Sequential(
        nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
        nn.Sigmoid(),
    )


class ConvAutoencoder(nn.Module):
    """Conv encoder -> linear bottleneck of ``latent`` units -> conv decoder (images in [0, 1])."""

    def __init__(
        self,
        channels: int = 1,
        height: int = 28,
        width: int = 28,
        latent: int = 128,
        hidden: int = 16,
    ) -> None:
        super().__init__()
        _check_shape(channels, height, width)
        if latent < 1 or hidden < 1:
            raise ValueError(f"latent and hidden must be positive, got {latent}, {hidden}")
        self.shape = (channels, height, width)
        self.inner = (2 * hidden, height // 4, width // 4)
        flat = math.prod(self.inner)
        self.encoder = nn.Sequential(
            _encoder(channels, hidden), nn.Flatten(), nn.Linear(flat, latent)
        )
        self.expand = nn.Sequential(nn.Linear(latent, flat), nn.ReLU())
        self.decoder = _decoder(channels, hidden)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.expand(z).view(-1, *self.inner))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def measurement_matrix(
    measurements: int, features: int, seed: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Gaussian ``A`` of shape ``(m, features)`` with entries ``N(0, 1/m)``, reproducible from
    ``seed`` (NumPy's PCG64 generator, so the same on every platform and device)."""
    if measurements < 1 or features < 1:
        raise ValueError(f"need positive sizes, got m={measurements}, features={features}")
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((measurements, features)) / math.sqrt(measurements)
    return torch.from_numpy(a).to(dtype)


class MeasurementReconstructor(nn.Module):
    """Image from Gaussian measurements ``y = A x``: ``A^T y`` then a conv encoder-decoder.

    The encoder-decoder is :class:`ConvAutoencoder`'s (conv encoder, a linear bottleneck of
    ``latent`` units that mixes the whole image, conv decoder): back-projection spreads every
    measurement over all pixels, so a purely local network cannot undo it. Inputs are measurement
    vectors ``(n, m)``; smoothing noise is added to them. :meth:`measure` gives the clean
    measurements of images.
    """

    A: torch.Tensor

    def __init__(
        self,
        channels: int = 1,
        height: int = 28,
        width: int = 28,
        measurements: int = 256,
        matrix_seed: int = 0,
        latent: int = 256,
        hidden: int = 16,
    ) -> None:
        super().__init__()
        _check_shape(channels, height, width)
        self.shape = (channels, height, width)
        self.matrix_seed = int(matrix_seed)
        self.register_buffer(
            "A", measurement_matrix(measurements, channels * height * width, matrix_seed)
        )
        self.net = ConvAutoencoder(channels, height, width, latent=latent, hidden=hidden)

    @property
    def measurements(self) -> int:
        return int(self.A.shape[0])

    def measure(self, images: torch.Tensor) -> torch.Tensor:
        """``y = A x`` for a batch of images ``(n, C, H, W)`` -> ``(n, m)``."""
        return images.reshape(images.shape[0], -1).to(self.A.dtype) @ self.A.T

    def back_project(self, y: torch.Tensor) -> torch.Tensor:
        return (y @ self.A).view(-1, *self.shape)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(self.back_project(y))


class SmallClassifier(nn.Module):
    """A small CNN; ``forward`` gives class probabilities (softmax), ``logits`` the scores."""

    def __init__(
        self,
        channels: int = 1,
        height: int = 28,
        width: int = 28,
        classes: int = 10,
        hidden: int = 8,
    ) -> None:
        super().__init__()
        _check_shape(channels, height, width)
        self.features = nn.Sequential(
            nn.Conv2d(channels, hidden, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(hidden, 2 * hidden, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * hidden * (height // 4) * (width // 4), 64),
            nn.ReLU(),
            nn.Linear(64, classes),
        )

    @property
    def classes(self) -> int:
        head = self.features[-1]
        assert isinstance(head, nn.Linear)
        return head.out_features

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)
