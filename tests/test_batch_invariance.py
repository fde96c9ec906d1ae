"""Results do not depend on the batch size or on how inputs are grouped, bit for bit, for every
step the library computes; a model whose own kernels round differently by batch size is the
documented exception (README, "Speed"; docs/algorithm.md, "Reproducibility")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import torch_threads

from centersmooth import CenterSmoothing, FunctionMetric
from centersmooth.sampling import in_fixed_chunks

# 0 of 300 seeds abstained on Spread(8); delta 0.4 leaves the check a level of 0.1, which a ball
# holding about half of the outputs passes except with a vanishing probability
COUNTS = dict(n_center=100, n_check=100, n_certify=300, delta=0.4, seed=0)
# a short search for long outputs (its samples do not depend on the batches)
SEARCH = dict(candidates=10, central_candidates=False)


class Spread:
    """A batch-invariant model: every output row is a function of its own input row only,
    computed by a gather and a product (no matrix product, no reduction), so its bits do not
    depend on the batch."""

    def __init__(self, dim_out: int, dim_in: int = 6) -> None:
        gen = torch.Generator().manual_seed(0)
        self.index = torch.arange(dim_out) % dim_in
        self.scale = torch.rand(dim_out, generator=gen) + 0.5

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return batch[:, self.index] * self.scale


def inputs(n: int) -> list[torch.Tensor]:
    return list(torch.rand(n, 6, generator=torch.Generator().manual_seed(3)))


def certificates(model, batch_size: int, xs, group: int, metrics: list, **settings):
    smoother = CenterSmoothing(model, batch_size=batch_size, **COUNTS, **settings)
    seeds = [11 * (i + 1) for i in range(len(xs))]
    out = []
    for start in range(0, len(xs), group):
        out += smoother.certify_metrics_batch(
            xs[start : start + group], [0.05, 0.1], metrics, seeds[start : start + group]
        )
    return out


def same(a, b) -> None:
    assert a.abstained == b.abstained
    np.testing.assert_array_equal(a.eps_out, b.eps_out)
    np.testing.assert_array_equal(a.quantile_radius, b.quantile_radius)
    np.testing.assert_array_equal(a.inner_radius, b.inner_radius)
    np.testing.assert_array_equal(a.near_radius, b.near_radius)
    assert a.radius == b.radius and a.prediction.p_low == b.prediction.p_low
    assert a.smoothing_error == b.smoothing_error
    assert torch.equal(torch.as_tensor(a.center), torch.as_tensor(b.center))


@pytest.fixture
def two_threads():
    """Two torch threads (as on the CI machine): what lets torch split a one-row sum."""
    with torch_threads(2):
        yield


def test_one_output_per_forward_pass_gives_the_bits_of_a_full_batch(two_threads) -> None:
    """Outputs of 33,000 numbers: torch sums a batch of one such row on two threads, in another
    order than a row of a larger batch. The distances see chunks of a fixed size instead."""
    model, xs, metrics = Spread(33_000), inputs(2), ["l2", "squared_l2"]
    reference = certificates(model, 1_000, xs, 1, metrics, **SEARCH)
    assert not any(c.abstained for row in reference for c in row.values())
    grouped = certificates(
        model, 2, xs, 2, metrics, **SEARCH
    )  # one output per input and forward pass
    for ref, got in zip(reference, grouped, strict=True):
        for name in metrics:
            same(ref[name], got[name])


def rounds_by_batch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """l2, moved in its last bits by the size of the batch it is given (as a distance that runs
    a network, such as LPIPS, may be)."""
    return (a - b).norm(dim=1) * (1 + (len(a) % 5) * 2.0**-22)


@pytest.mark.parametrize("batch_size, group", [(333, 1), (1, 1), (3, 3), (7, 2), (1_000, 3)])
def test_every_batch_size_and_grouping_gives_the_same_bits(batch_size, group) -> None:
    model, xs = Spread(8), inputs(3)
    metrics = ["l2", FunctionMetric(rounds_by_batch)]
    reference = certificates(model, 1_000, xs, 1, metrics)
    assert not any(c.abstained for row in reference for c in row.values())
    for ref, got in zip(
        reference, certificates(model, batch_size, xs, group, metrics), strict=True
    ):
        for name in ("l2", "rounds_by_batch"):
            same(ref[name], got[name])


def test_chunks_are_fixed_and_aligned_whatever_the_batches() -> None:
    rows = torch.arange(10_000, dtype=torch.float32).reshape(1_000, 10)
    for sizes in ([1_000], [333, 333, 334], [1] * 1_000, [7, 500, 1, 492]):
        starts = np.cumsum([0, *sizes])
        stream = ([rows[a:b], rows[a:b] + 0.5] for a, b in zip(starts, starts[1:], strict=False))
        chunks = list(in_fixed_chunks(iter(stream)))
        assert [len(c[0]) for c in chunks] == [256, 256, 256, 232]
        assert torch.equal(torch.cat([c[0] for c in chunks]), rows)
        assert torch.equal(torch.cat([c[1] for c in chunks]), rows + 0.5)
    strings = [[f"s{i}" for i in range(a, b)] for a, b in ((0, 300), (300, 301), (301, 600))]
    chunks = list(in_fixed_chunks(iter([s] for s in strings)))
    assert [len(c[0]) for c in chunks] == [256, 256, 88]
    assert [x for c in chunks for x in c[0]] == [f"s{i}" for i in range(600)]


class BatchDependent:
    """A model whose outputs move in their last bits with the batch size, as matrix products and
    convolutions may (their kernels choose an algorithm by the batch's size)."""

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.tanh(batch) + (len(batch) % 3) * 2.0**-20


def test_a_batch_dependent_model_is_reproducible_at_one_batch_size_only() -> None:
    x = torch.linspace(-1, 1, 6)

    def cert(batch_size: int):
        return CenterSmoothing(BatchDependent(), batch_size=batch_size, **COUNTS).certify(
            x, [0.05, 0.1]
        )

    same(cert(1_000), cert(1_000))
    one, other = cert(1_000), cert(50)
    assert not one.abstained and not other.abstained
    assert not np.array_equal(one.eps_out, other.eps_out)  # the documented exception


def test_bad_distances_in_the_last_chunk_are_caught() -> None:
    """The last chunk is measured after the forward passes have ended: the certification draws
    300 samples after the check's 100 (shared check samples), in chunks of 256 and 44."""

    def nan_at_the_end(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d = (a - b).norm(dim=1)
        return d * math.nan if len(a) == 300 - 256 else d

    counts = dict(COUNTS, n_certify=COUNTS["n_check"] + 300)
    smoother = CenterSmoothing(Spread(8), metric=nan_at_the_end, check_metric=False, **counts)
    with pytest.raises(ValueError, match="NaN or infinite distances"):
        smoother.certify(inputs(1)[0], 0.05)
