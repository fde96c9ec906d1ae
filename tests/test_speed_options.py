"""Batched inputs, low precision, compilation and the automatic batch size (issue: performance)."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from centersmooth import CenterSmoothing
from centersmooth.sampling import (
    NOISE_BLOCK,
    BaseFunction,
    NoiseStream,
    OutputMonitor,
    draw_noisy,
    seed_at,
)

SMALL = dict(n_center=4_000, n_check=4_000, n_certify=4_000)


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))


def test_certify_batch_equals_one_input_at_a_time():
    xs = [torch.zeros(6), torch.linspace(-1, 1, 6)]
    seeds = [10, 110]
    together = CenterSmoothing(model(), batch_size=1_000, **SMALL).certify_batch(
        xs, [0.1, 0.2], seeds=seeds
    )
    alone = CenterSmoothing(model(), batch_size=300, **SMALL)  # any batch size gives the same
    for x, seed, cert in zip(xs, seeds, together, strict=True):
        single = alone.certify(x, [0.1, 0.2], seed=seed)
        np.testing.assert_array_equal(cert.eps_out, single.eps_out)
        assert torch.equal(cert.center, single.center)
        assert cert.smoothing_error == single.smoothing_error


@pytest.mark.parametrize("sizes", [[500, 500, 36], [1, NOISE_BLOCK, 7, 2 * NOISE_BLOCK + 3, 2]])
def test_noise_of_sample_j_depends_only_on_the_seed_and_j(sizes):
    """Batches cut anywhere give the noise of whole blocks, block b from its own generator."""
    x, sigma = torch.linspace(-1, 1, 12).reshape(3, 4), 0.3
    reference = NoiseStream(x, sigma, 7)
    blocks = []
    for b in range(5):
        gen = torch.Generator().manual_seed(reference.block_seed(b))
        blocks.append(torch.randn((NOISE_BLOCK, 3, 4), generator=gen))
    expected = torch.cat(blocks)[: sum(sizes)].mul(sigma).add(x)
    stream = NoiseStream(x, sigma, 7)
    got = torch.cat([stream.take(n) for n in sizes])
    assert torch.equal(got, expected)


def test_noise_blocks_of_one_input_have_distinct_generators():
    stream = NoiseStream(torch.zeros(3), 1.0, 123)
    seeds = {stream.block_seed(b) for b in range(100_000)}
    assert len(seeds) == 100_000
    assert NoiseStream(torch.zeros(3), 1.0, 124).block_seed(0) != stream.block_seed(0)


def test_streams_drawn_together_equal_streams_drawn_alone():
    x = torch.linspace(-1, 1, 10)
    together = [NoiseStream(x, 0.5, s) for s in (1, 2, 3)]
    got = torch.cat([draw_noisy(together, 300), draw_noisy(together, 700)])
    alone = [torch.cat([NoiseStream(x, 0.5, s).take(1000)]) for s in (1, 2, 3)]
    expected = torch.cat([torch.cat([a[:300] for a in alone]), torch.cat([a[300:] for a in alone])])
    assert torch.equal(got, expected)


DRAW_SCRIPT = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from centersmooth import CenterSmoothing
from centersmooth.sampling import NoiseStream
x = torch.linspace(-1, 1, 784).reshape(1, 28, 28)
stream = NoiseStream(x, 0.25, 2024)
noise = torch.cat([stream.take(n) for n in (1000, 3, 997, 2000)])
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 8))
torch.nn.init.normal_(net[1].weight, std=0.01)
smoother = CenterSmoothing(net, n_center=2000, n_check=2000, n_certify=4000, seed=3,
                           delta=0.15, batch_size=int(sys.argv[2]))  # level 0.35: accepts
cert = smoother.certify(x, [0.1, 0.2])
print(hashlib.sha256(noise.numpy().tobytes()).hexdigest(), cert.eps_out.tolist(),
      cert.center.tolist())
"""


def test_noise_and_certificates_do_not_depend_on_threads_or_batch_size():
    """Fresh processes with 1 and 2 torch threads and two batch sizes draw the same bits."""
    runs = {
        (threads, batch): subprocess.run(
            [sys.executable, "-c", DRAW_SCRIPT, str(threads), str(batch)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for threads, batch in ((1, 1000), (2, 1000), (2, 333))
    }
    assert len(set(runs.values())) == 1, runs


def test_batch_seeds_are_the_run_seed_plus_the_position():
    smoother = CenterSmoothing(model(), seed=5, **SMALL)
    x = torch.ones(6)
    first = smoother.certify_batch([x, x], 0.1)
    again = smoother.certify_batch([x], 0.1)
    assert first[0].eps_out == again[0].eps_out == smoother.certify(x, 0.1).eps_out
    assert first[0].eps_out != first[1].eps_out  # the second input has its own noise
    assert first[1].eps_out == smoother.certify(x, 0.1, seed=6).eps_out
    assert (seed_at(5, 1), seed_at(2**64 - 1, 2)) == (6, 1)


def test_batch_needs_inputs_of_one_shape():
    smoother = CenterSmoothing(lambda b: b, **SMALL)
    with pytest.raises(ValueError, match="one shape"):
        smoother.certify_batch([torch.zeros(2), torch.zeros(3)], 0.1)
    with pytest.raises(ValueError, match="at least one input"):
        smoother.certify_batch([], 0.1)
    with pytest.raises(ValueError, match="2 seeds for 1 inputs"):
        smoother.certify_batch([torch.zeros(2)], 0.1, seeds=[1, 2])


def test_noise_follows_the_models_dtype():
    net = model().double()
    seen = []
    net.register_forward_pre_hook(lambda mod, args: seen.append(args[0].dtype))
    CenterSmoothing(net, seed=0, **SMALL).predict(torch.zeros(6, dtype=torch.float32))
    assert set(seen) == {torch.float64}


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_half_precision_models_see_x_plus_noise_rounded_once(half):
    """x + delta is formed in float32 and only then rounded to the model's type, so the model is a
    fixed function of x + delta (the Gaussian shift lemma's premise). Rounding x first would move
    123.456 to 123.5 in bf16 (spacing 0.5 there), 0.044 away."""
    net = nn.Linear(1, 1).to(half)
    seen = []
    net.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    sigma, x = 0.25, torch.tensor([123.456])
    CenterSmoothing(net, sigma=sigma, seed=0, **SMALL).predict(x)
    inputs = torch.cat(seen).double()
    assert {t.dtype for t in seen} == {half}
    # Mean of round(x + delta) over n draws: standard error sigma / sqrt(n) (0.0028 for 8,000),
    # plus a rounding bias below 0.002 (the grid spacing 0.5 is 2 sigma); 5 standard errors.
    tolerance = 5 * sigma / len(inputs) ** 0.5 + 0.002
    assert abs(float(inputs.mean()) - 123.456) < tolerance < 0.044


def test_autocast_bf16_certifies_the_low_precision_model():
    cert = CenterSmoothing(model(), autocast="bf16", seed=0, **SMALL).certify(torch.zeros(6), 0.1)
    assert not cert.abstained and cert.center.dtype == torch.float32
    full = CenterSmoothing(model(), seed=0, **SMALL).certify(torch.zeros(6), 0.1)
    assert cert.eps_out == pytest.approx(full.eps_out, rel=0.1)
    with pytest.raises(ValueError, match="autocast"):
        CenterSmoothing(model(), autocast="fp8", **SMALL)


def test_compile_gives_the_same_certificate():
    # The graph-capturing backend without code generation: the wiring of torch.compile, without
    # a minute of C++ compilation in CI (benchmarks/ time the default backend).
    eager = CenterSmoothing(model(), seed=0, **SMALL).certify(torch.zeros(6), 0.1)
    smoother = CenterSmoothing(model(), seed=0, compile="aot_eager", **SMALL)
    compiled = smoother.certify(torch.zeros(6), 0.1)
    assert compiled.eps_out == pytest.approx(eager.eps_out, rel=1e-4)


def test_no_batch_size_is_the_default_and_certifies():
    smoother = CenterSmoothing(lambda b: b, seed=0, **SMALL)
    assert smoother.batch_size is None
    assert not smoother.certify(torch.zeros(2), 0.1).abstained


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64])
def test_output_check_finds_every_non_finite_entry(bad, dtype):
    """The one-reduction check flags exactly the batches with a NaN or an infinity, including
    finite values so large that a sum of them would overflow."""
    big = 1e308 if dtype == torch.float64 else 3e38
    out = torch.full((50, 3, 4), big, dtype=dtype)
    if bad is not None:
        out[17, 2, 1] = bad
    flagged = bool(OutputMonitor(torch.device("cpu")).outputs(out).bad_outputs)
    assert flagged == (bad is not None)


def test_distance_check_flags_negative_and_non_finite_distances():
    for d, bad, negative in (
        (torch.tensor([0.0, 1.0]), False, False),
        (torch.tensor([0.5, -1e-3]), False, True),
        (torch.tensor([float("nan"), 1.0]), True, False),
        (torch.tensor([1.0, float("inf")]), True, False),
        (torch.tensor([]), False, False),
    ):
        monitor = OutputMonitor(torch.device("cpu"))
        monitor.distances(d)
        assert (bool(monitor.bad_distances), bool(monitor.negative)) == (bad, negative)


def dropout_model():
    """Train mode on the whole, one submodule in eval mode: a user's mix to come back exactly."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.Linear(16, 4), nn.Dropout(0.5))
    net.train()
    net[3].eval()
    return net


def modes(net):
    return [m.training for m in net.modules()]


@pytest.mark.parametrize("compile", [False, "aot_eager"])
def test_certify_runs_the_model_in_eval_mode_and_gives_back_its_modes(compile):
    net = dropout_model()
    before = modes(net)
    seen = []
    net.register_forward_pre_hook(lambda mod, args: seen.append(modes(mod)))
    smoother = CenterSmoothing(net, seed=0, compile=compile, **SMALL)
    assert modes(net) == before  # building the smoother changes nothing
    x = torch.linspace(-1, 1, 6)
    cert = smoother.certify(x, 0.1)
    assert modes(net) == before == [True, True, True, True, False]
    if not compile:  # a compiled graph does not run Python hooks
        assert seen and all(not any(flags) for flags in seen)  # every forward pass in eval mode
    # eval-mode outputs: no dropout, so the certified center is the deterministic f's, and the
    # clean output is f(x) exactly
    with torch.no_grad():
        f_x = net.eval()(x.unsqueeze(0))[0]
    assert cert.smoothing_error == pytest.approx(float((cert.center - f_x).norm()), abs=1e-5)
    assert not cert.abstained and cert.radius < 0.5  # dropout would spread outputs far wider
    smoother.predict(x)
    assert modes(net) == [False] * 5  # what the user set meanwhile is kept too


def test_a_model_compiled_by_the_user_gets_its_modes_back():
    net = dropout_model()
    compiled = torch.compile(net, backend="aot_eager")
    CenterSmoothing(compiled, seed=0, **SMALL).predict(torch.zeros(6))
    assert modes(net) == [True, True, True, True, False]


def test_evaluating_switches_once_and_restores_on_errors():
    net = dropout_model()
    calls = []
    original = net.train
    net.train = lambda mode=True: calls.append(mode) or original(mode)
    fn = BaseFunction(net, torch.device("cpu"))
    with fn.evaluating():
        with fn.evaluating():  # nested: no second switch
            first = fn(torch.ones(5, 6))
        assert not any(modes(net))
        assert torch.equal(fn(torch.ones(5, 6)), first)  # deterministic: dropout is off
    assert calls == [False] and modes(net) == [True, True, True, True, False]
    with pytest.raises(RuntimeError), fn.evaluating():
        raise RuntimeError("boom")
    assert modes(net) == [True, True, True, True, False]
    fn(torch.ones(5, 6))  # a call outside evaluating() switches around itself
    assert modes(net) == [True, True, True, True, False]
    net.eval()
    calls.clear()
    fn(torch.ones(5, 6))
    assert calls == []  # already in eval mode: nothing to switch


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_noise_does_not_depend_on_how_it_is_taken():
    """On a CUDA device the blocks are large and drawn on the device; the samples still depend
    only on the seed and their index, not on the batch sizes."""
    x = torch.zeros(784, device="cuda")
    whole = NoiseStream(x, 0.25, 5).take(20_000)
    stream = NoiseStream(x, 0.25, 5)
    parts = torch.cat([stream.take(n) for n in (333, 4_096, 15_571)])
    assert whole.device.type == "cuda" and torch.equal(whole, parts)
