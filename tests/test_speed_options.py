"""Batched inputs, low precision, compilation and the automatic batch size (issue: performance)."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from seeded_settings import (
    DROPOUT_EVAL,
    NO_BATCH_SIZE,
    SIX_TO_FOUR,
    SIX_TO_FOUR_BATCH,
    SIX_TO_FOUR_BF16,
    SIX_TO_FOUR_PAIR,
    SMALL,
    dropout_model,
    identity,
    six_to_four,
    small,
)
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

TESTS = Path(__file__).resolve().parent


def model():
    return six_to_four()


def test_certify_batch_equals_one_input_at_a_time():
    xs = [torch.zeros(6), torch.linspace(-1, 1, 6)]
    seeds = SIX_TO_FOUR_PAIR.seed, SIX_TO_FOUR_PAIR.seed + 100
    together = small(model(), None, batch_size=1_000).certify_batch(xs, [0.1, 0.2], seeds=seeds)
    alone = small(model(), None, batch_size=300)  # any batch size gives the same
    for x, seed, cert in zip(xs, seeds, together, strict=True):
        single = alone.certify(x, [0.1, 0.2], seed=seed)
        assert not cert.abstained and not single.abstained
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
sys.path.insert(0, sys.argv[3])
from seeded_settings import WIDE_LINEAR, wide_linear_smoother
from centersmooth.sampling import NoiseStream
x = torch.linspace(-1, 1, 784).reshape(1, 28, 28)
stream = NoiseStream(x, 0.25, 2024)
noise = torch.cat([stream.take(n) for n in (1000, 3, 997, 2000)])
cert = wide_linear_smoother(WIDE_LINEAR.seed, int(sys.argv[2])).certify(x, [0.1, 0.2])
center = None if cert.center is None else cert.center.tolist()
print(hashlib.sha256(noise.numpy().tobytes()).hexdigest(), cert.abstained, cert.eps_out.tolist(),
      center)
"""


def test_noise_and_certificates_do_not_depend_on_threads_or_batch_size():
    """Fresh processes with 1 and 2 torch threads and two batch sizes draw the same bits."""
    runs = {
        (threads, batch): subprocess.run(
            [sys.executable, "-c", DRAW_SCRIPT, str(threads), str(batch), str(TESTS)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for threads, batch in ((1, 1000), (2, 1000), (2, 333))
    }
    assert len(set(runs.values())) == 1, runs
    # the certificate compared is a real one (seeded_settings.WIDE_LINEAR)
    assert runs[1, 1000].split()[1] == "False"


def test_batch_seeds_are_the_run_seed_plus_the_position():
    smoother = small(model(), SIX_TO_FOUR_BATCH.seed)
    x = torch.ones(6)
    first = smoother.certify_batch([x, x], 0.1)
    again = smoother.certify_batch([x], 0.1)
    assert not any(c.abstained for c in [*first, *again])
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
    small(net, 0).predict(torch.zeros(6, dtype=torch.float32))
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
    small(net, 0, sigma=sigma).predict(x)
    inputs = torch.cat(seen).double()
    assert {t.dtype for t in seen} == {half}
    # Mean of round(x + delta) over n draws: standard error sigma / sqrt(n) (0.004 for 4,000),
    # plus a rounding bias below 0.002 (the grid spacing 0.5 is 2 sigma); 5 standard errors.
    tolerance = 5 * sigma / len(inputs) ** 0.5 + 0.002
    assert abs(float(inputs.mean()) - 123.456) < tolerance < 0.044


def test_autocast_bf16_certifies_the_low_precision_model():
    cert = small(model(), SIX_TO_FOUR_BF16.seed, autocast="bf16").certify(torch.zeros(6), 0.1)
    assert not cert.abstained and cert.center.dtype == torch.float32
    full = small(model(), SIX_TO_FOUR.seed).certify(torch.zeros(6), 0.1)
    assert not full.abstained and math.isfinite(full.eps_out)
    assert cert.eps_out == pytest.approx(full.eps_out, rel=0.1)
    with pytest.raises(ValueError, match="autocast"):
        CenterSmoothing(model(), autocast="fp8", **SMALL)


def test_compile_gives_the_same_certificate():
    # The graph-capturing backend without code generation: the wiring of torch.compile, without
    # a minute of C++ compilation in CI (benchmarks/ time the default backend).
    eager = small(model(), SIX_TO_FOUR.seed).certify(torch.zeros(6), 0.1)
    smoother = small(model(), SIX_TO_FOUR.seed, compile="aot_eager")
    compiled = smoother.certify(torch.zeros(6), 0.1)
    assert not eager.abstained and not compiled.abstained and math.isfinite(eager.eps_out)
    assert compiled.eps_out == pytest.approx(eager.eps_out, rel=1e-4)


def test_no_batch_size_is_the_default_and_certifies():
    smoother = small(identity, NO_BATCH_SIZE.seed, batch_size=None)
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


def modes(net):
    return [m.training for m in net.modules()]


@pytest.mark.parametrize("compile", [False, "aot_eager"])
def test_certify_runs_the_model_in_eval_mode_and_gives_back_its_modes(compile):
    net = dropout_model()
    before = modes(net)
    seen = []
    net.register_forward_pre_hook(lambda mod, args: seen.append(modes(mod)))
    smoother = small(net, DROPOUT_EVAL.seed, compile=compile)
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
    small(compiled, 0).predict(torch.zeros(6))
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
def test_cuda_noise_does_not_depend_on_how_it_is_taken():
    """On a CUDA device the blocks are large and drawn on the device; the samples still depend
    only on the seed and their index, not on the batch sizes."""
    x = torch.zeros(784, device="cuda")
    whole = NoiseStream(x, 0.25, 5).take(20_000)
    stream = NoiseStream(x, 0.25, 5)
    parts = torch.cat([stream.take(n) for n in (333, 4_096, 15_571)])
    assert whole.device.type == "cuda" and torch.equal(whole, parts)
