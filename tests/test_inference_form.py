"""The fast inference form computes the same function as the trained layers it replaces."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from centersmooth.tasks.gan_faces import DCGANGenerator
from centersmooth.tasks.inference import SubPixelConv, inference_form
from centersmooth.tasks.models import ConvAutoencoder


@pytest.mark.parametrize(
    ("c_in", "c_out", "stride", "kernel", "padding", "bias"),
    [
        (16, 1, 2, 4, 1, True),
        (5, 3, 2, 4, 1, False),
        (4, 2, 3, 3, 0, True),
        (3, 2, 2, 2, 0, True),
        (3, 2, 3, 5, 1, True),
        (2, 1, 2, 6, 2, False),
    ],
)
def test_sub_pixel_layer_equals_the_transposed_convolution(
    c_in: int, c_out: int, stride: int, kernel: int, padding: int, bias: bool
) -> None:
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, bias=bias)
    fast = SubPixelConv.from_transposed(layer)
    assert fast is not None
    x = torch.randn(6, c_in, 7, 5)
    with torch.no_grad():
        expected = layer(x)
        assert fast(x).shape == expected.shape
        torch.testing.assert_close(fast(x), expected, rtol=1e-5, atol=1e-5)


def test_sub_pixel_layer_keeps_dtype() -> None:
    layer = nn.ConvTranspose2d(3, 1, 4, 2, 1).double()
    fast = SubPixelConv.from_transposed(layer)
    assert fast is not None and fast.conv.weight.dtype == torch.float64
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), layer(x))


@pytest.mark.parametrize(
    "layer",
    [
        nn.ConvTranspose2d(4, 2, 4, 1, 0),  # stride 1: nothing to shuffle
        nn.ConvTranspose2d(4, 2, 3, 2, 1),  # kernel - 2 padding != stride
        nn.ConvTranspose2d(4, 2, 4, 2, 1, output_padding=1),
        nn.ConvTranspose2d(4, 2, 4, 2, 1, groups=2),
    ],
)
def test_layers_without_a_sub_pixel_form_are_kept(layer: nn.ConvTranspose2d) -> None:
    assert SubPixelConv.from_transposed(layer) is None
    model = nn.Sequential(layer)
    assert inference_form(model)[0] is layer


def test_only_narrow_layers_are_rewritten_and_models_agree() -> None:
    torch.manual_seed(1)
    for model, x in (
        (ConvAutoencoder(), torch.rand(5, 1, 28, 28)),
        (DCGANGenerator(), torch.randn(3, 100)),
    ):
        model.eval()
        with torch.no_grad():
            expected = model(x)
            inference_form(model)
            kinds = [type(m) for m in model.modules()]
            # the last layer has 1 or 3 channels; the wide ones stay transposed (faster there)
            assert kinds.count(SubPixelConv) == 1
            assert nn.ConvTranspose2d in kinds
            torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_relu_in_place_only_where_nothing_else_sees_its_input() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.ReLU(),  # the caller's tensor: must stay untouched
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),  # a view of the conv output
        nn.ReLU(),
        nn.Linear(3 * 16, 4),
        nn.ReLU(),
    )
    x = torch.randn(5, 2, 4, 4)
    kept = x.clone()
    with torch.no_grad():
        expected = model(x)
        inference_form(model)
        torch.testing.assert_close(model(x), expected)
    assert [m.inplace for m in model if isinstance(m, nn.ReLU)] == [False, True, False, True]
    assert torch.equal(x, kept)
