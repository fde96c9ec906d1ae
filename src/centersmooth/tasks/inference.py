"""The fast inference form of a trained image model: the same function, evaluated faster.

Certification spends nearly all its time in the base model's forward passes, so the loaders put
models in this form:

- A stride-``s`` transposed convolution with few output channels whose kernel overlaps evenly
  (``kernel - 2 * padding == stride``) becomes an ordinary convolution with ``s * s`` times the
  output channels followed by a pixel shuffle ("sub-pixel convolution"). Both compute the same
  sums. oneDNN's transposed kernel is slow for few output channels: measured on one AVX2 thread,
  the autoencoder's last layer (16 -> 1 channels) runs 3x faster this way and the DCGAN's last
  (64 -> 3) 1.1x faster, while layers with 16 to 256 output channels run 1.5-2.3x slower (the
  sub-pixel kernel does 2.25x the multiplications), so only layers with fewer than
  ``SUBPIXEL_MAX_CHANNELS`` outputs are rewritten. Not measured on a GPU (none was lent), where
  such a narrow layer costs little either way.
- Convolution weights are stored channels-last (about 1.3x faster on a CPU).
- A ReLU in an ``nn.Sequential`` right after a layer that returns a fresh tensor (convolution,
  linear, batch norm) works in place: one allocation and one pass over memory fewer. Nothing
  else can see that tensor, so the values are unchanged.

The values agree with the trained model to float rounding (tested); the certificate is about the
function actually evaluated, which is this one.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

SUBPIXEL_MAX_CHANNELS = 8  # one AVX2 register of float32


class SubPixelConv(nn.Module):
    """``ConvTranspose2d`` rewritten as a pixel shuffle of ``conv2d(x)`` (see the module
    docstring)."""

    def __init__(self, conv: nn.Conv2d, stride: int) -> None:
        super().__init__()
        self.conv = conv
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # pixel_shuffle by hand: ``F.pixel_shuffle`` on a channels-last tensor took 4x longer
        # (500 x 4 x 14 x 14: 3.9 ms against 0.8 ms on one thread)
        y = self.conv(x)
        n, channels, height, width = y.shape
        s = self.stride
        c = channels // (s * s)
        blocks = y.permute(0, 2, 3, 1).reshape(n, height, width, c, s, s)
        return blocks.permute(0, 3, 1, 4, 2, 5).reshape(n, c, height * s, width * s)

    @classmethod
    def from_transposed(cls, layer: nn.ConvTranspose2d) -> SubPixelConv | None:
        """The equivalent sub-pixel layer, or ``None`` when ``layer`` has no such form here
        (unequal or unit strides, groups, dilation, output padding, or an uneven overlap)."""
        if isinstance(layer.padding, str):
            return None
        (s, s_w), (k, k_w), (p, p_w) = layer.stride, layer.kernel_size, layer.padding
        if (s, k, p) != (s_w, k_w, p_w) or s < 2 or k - 2 * p != s:
            return None
        if layer.groups != 1 or layer.dilation != (1, 1) or layer.output_padding != (0, 0):
            return None
        # output row s*m + a sums x[m + j] * W[a + p - s*j] over the j that index W: |j| <= j_max
        # (k - 2p == s makes the range symmetric, so the conv pads j_max on each side)
        j_max = (s - 1 + p) // s
        taps = range(-j_max, j_max + 1)
        weight = layer.weight.detach()  # (in, out, k, k)
        c_in, c_out = weight.shape[:2]
        size = len(taps)
        kernel = weight.new_zeros(c_out, s, s, c_in, size, size)
        for a, b, j1, j2 in itertools.product(range(s), range(s), taps, taps):
            u, v = a + p - s * j1, b + p - s * j2
            if 0 <= u < k and 0 <= v < k:
                kernel[:, a, b, :, j1 + j_max, j2 + j_max] = weight[:, :, u, v].T
        conv = nn.Conv2d(c_in, c_out * s * s, size, padding=j_max, bias=layer.bias is not None)
        conv.weight.data.copy_(kernel.reshape(c_out * s * s, c_in, size, size))
        if layer.bias is not None and conv.bias is not None:
            conv.bias.data.copy_(layer.bias.detach().repeat_interleave(s * s))
        fast = cls(conv, s).to(device=weight.device, dtype=weight.dtype)
        return fast.requires_grad_(layer.weight.requires_grad)


# layers whose output is a new tensor that only the next layer of a Sequential sees
_FRESH_OUTPUT = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm2d, SubPixelConv)


def _relu_in_place(sequence: nn.Sequential) -> None:
    layers = list(sequence)
    for before, layer in zip(layers, layers[1:], strict=False):
        if isinstance(layer, nn.ReLU) and isinstance(before, _FRESH_OUTPUT):
            layer.inplace = True


def inference_form(model: nn.Module, device: str | torch.device | None = None) -> nn.Module:
    """``model`` (in eval mode) with its narrow transposed convolutions in sub-pixel form where
    they have one, safe ReLUs in place, channels-last, on ``device`` (default CPU). Modifies and
    returns ``model``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ConvTranspose2d) and child.out_channels < SUBPIXEL_MAX_CHANNELS:
                replacement = SubPixelConv.from_transposed(child)
                if replacement is not None:
                    setattr(parent, name, replacement)
        if isinstance(parent, nn.Sequential):
            _relu_in_place(parent)
    model.eval()
    return model.to(device or "cpu", memory_format=torch.channels_last)  # type: ignore[call-overload]
