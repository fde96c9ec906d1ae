"""What a GPU user relies on: each device path checked on the CPU as far as its logic allows
(half-precision modules, autocast, targets that cannot become NumPy arrays, device names a Ray
actor cannot see, seeded kernels), and on a CUDA device by the ``cuda`` tests (run by
``benchmarks/device_check.sh``)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import LinearFactory
from seeded_settings import (
    COMPILED,
    COMPILED_COUNTS,
    CONV,
    DEVICE_AUTOCAST,
    DEVICE_BF16,
    DEVICE_COUNTS,
    SIX_TO_FOUR_BATCH,
    SMALL,
    TINY,
    conv_autoencoder,
    six_to_four,
    small,
    small_tanh_net,
)
from torch import nn

import centersmooth.determinism as determinism
from centersmooth import CenterSmoothing
from centersmooth.evaluation.attack import attack
from centersmooth.metrics import get_metric
from centersmooth.runs import runner, workers
from centersmooth.runs.results_file import PlatformMismatchError, read_results
from centersmooth.runs.workers import Result, actor_device, platform_of

ATTACK = dict(steps=4, restarts=1, n_noise=8, n_score=32, noise_floor=False, random_baseline=False)
COUNTS = DEVICE_COUNTS  # the attacked certificates accept (seeded_settings.DEVICE_BF16, ...)
linear = small_tanh_net


# ----------------------------------------------------------------------------- imports
def test_the_package_imports_and_certifies_without_rapidfuzz():
    """rapidfuzz is imported when a string distance is first computed, not with the package."""
    code = (
        "import sys; sys.modules['rapidfuzz'] = None\n"
        "import torch, centersmooth.cli.commands, centersmooth.runs.runner\n"
        "from centersmooth.metrics import get_metric\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from seeded_settings import NO_BATCH_SIZE, identity, small\n"
        "c = small(identity, NO_BATCH_SIZE.seed, batch_size=None)\n"
        "assert not c.certify(torch.zeros(2), 0.1).abstained\n"
        "try:\n"
        "    get_metric('levenshtein').pairwise(['ab'], ['b'])\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "need rapidfuzz: pip install rapidfuzz" in result.stdout


# ----------------------------------------------------------------------------- the attack
def test_attack_runs_a_half_precision_module_as_certified():
    """A bfloat16 module gets its inputs cast as certify casts them (it failed on float32)."""
    smoother = CenterSmoothing(linear(torch.bfloat16), seed=0, **COUNTS)
    result = attack(smoother, torch.zeros(6), 0.1, seed=DEVICE_BF16.seed, **ATTACK)
    assert not result.abstained and np.isfinite(result.surrogate_attacked)
    assert result.perturbation_norm <= 0.1 * (1 + 1e-6)


def test_attack_follows_the_autocast_model():
    """With autocast, every forward pass of the attack runs under autocast, as certify's do."""
    net = linear()
    seen: list[bool] = []
    net.register_forward_pre_hook(lambda m, a: seen.append(torch.is_autocast_enabled("cpu")))
    smoother = CenterSmoothing(net, autocast="bf16", seed=0, **COUNTS)
    result = attack(smoother, torch.zeros(6), 0.1, seed=DEVICE_AUTOCAST.seed, **ATTACK)
    assert not result.abstained and seen and all(seen)


@pytest.mark.needs("lpips")
def test_lpips_lets_the_attack_gradient_through():
    """The LPIPS embedding no longer runs under no_grad: a gradient reaches the input."""
    lpips = get_metric("lpips")
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    loss = lpips(images, torch.zeros(2, 3, 32, 32)).sum()
    (grad,) = torch.autograd.grad(loss, images)
    assert float(grad.abs().sum()) > 0
    with torch.no_grad():  # the center search's passes build no graph
        assert not lpips(images, images).requires_grad


# ----------------------------------------------------------------------------- runner, workers
def test_targets_reach_the_workers_as_host_arrays(monkeypatch):
    """A tensor that cannot become a NumPy array directly (as a CUDA tensor cannot) is moved to
    the host once, in the runner, and every target of a worker is a plain array."""
    x = np.random.default_rng(0).random((2, 16), dtype=np.float32)
    targets = torch.from_numpy(x)
    args = (x, [0.1], ["l2"], None, targets, {}, 0, "local", 1, 0.0)
    on_host = runner._check_arguments(*args)[-1]
    assert isinstance(on_host, np.ndarray) and np.array_equal(on_host, x)
    listed = runner._check_arguments(*args[:4], list(targets), *args[5:])[-1]
    assert all(isinstance(t, np.ndarray) for t in listed)

    def no_numpy(self, *a, **k):
        raise TypeError("can't convert cuda:0 device type tensor to numpy")

    monkeypatch.setattr(torch.Tensor, "__array__", no_numpy)
    batch = workers._as_batch(targets[0], torch.zeros(1, 16, dtype=torch.float64))
    assert batch.shape == (1, 16) and batch.dtype == torch.float64


def test_a_ray_actor_uses_its_own_gpu_whatever_cuda_index_is_named():
    assert actor_device("cuda:1") == "cuda" and actor_device("cuda") == "cuda"
    assert actor_device("cpu") == "cpu"
    assert actor_device(None) == ("cuda" if torch.cuda.is_available() else None)


def run_toy(out: Path, **kw):
    x = np.random.default_rng(0).random((3, 16), dtype=np.float32)
    return runner.certify_dataset(
        LinearFactory(),
        x,
        [0.1],
        ["l2"],
        dict(sigma=0.25, **TINY),
        out,
        {"task": "toy"},
        progress=False,
        examples=0,
        **kw,
    )


def test_the_header_records_the_platform_and_a_resume_elsewhere_is_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    run_toy(out, indices=[0, 1, 2])
    header = read_results(out).header
    assert header is not None and header["platform"] == platform_of(torch.device("cpu"))
    assert header["platform"]["torch"] == torch.__version__
    lines = out.read_text().splitlines()
    elsewhere = dict(header, platform={"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0",
                                       "cuda": "13.0"})  # fmt: skip
    out.write_text("\n".join([json.dumps(elsewhere), *lines[1:2]]) + "\n")
    with pytest.raises(PlatformMismatchError, match="NVIDIA H100 80GB HBM3, torch 2.11.0"):
        run_toy(out, resume=True)
    old = {k: v for k, v in header.items() if k != "platform"}  # a file of an older version
    out.write_text("\n".join([json.dumps(old), *lines[1:2]]) + "\n")
    assert len(run_toy(out, resume=True)) == 3


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_rows_from_another_platform_are_refused(tmp_path, monkeypatch, backend):
    """Workers on another platform than the file's (a Ray cluster of mixed GPUs) stop the run;
    a Ray run's new file takes its header's platform from the first rows."""
    gpu = {"device": "NVIDIA A100-SXM4-40GB", "torch": "2.11.0+cu130", "cuda": "13.0"}
    other = dict(gpu, device="NVIDIA H100 80GB HBM3")
    platforms = [gpu, gpu, other] if backend == "ray" else [gpu]

    def fake_workers(jobs, worker_args, *rest, **kwargs):
        worker = workers.Worker(*worker_args)
        for job, platform in zip(jobs, platforms, strict=False):
            result = worker.certify(job)
            yield Result(result.position, result.index, result.rows, None, platform)

    monkeypatch.setattr(workers, "run_inline", fake_workers)
    monkeypatch.setattr(workers, "run_ray", fake_workers)
    monkeypatch.setattr(workers, "import_ray", lambda: None)
    out = tmp_path / "r.jsonl"
    refused = "NVIDIA H100 80GB HBM3" if backend == "ray" else "NVIDIA A100-SXM4-40GB"
    with pytest.raises(PlatformMismatchError, match=f"these on {refused}"):
        run_toy(out, backend=backend)
    kept = read_results(out)
    if backend == "ray":
        assert kept.header is not None and kept.header["platform"] == gpu
        assert {r["input_index"] for r in kept.rows} == {0, 1}
    else:  # the local header holds this machine's platform: the first rows are refused
        assert kept.header["platform"]["device"] == "cpu" and kept.rows == []


def test_workers_on_one_device_share_its_memory():
    assert runner._memory_share("local", 4, 0.0) == 0.25
    assert runner._memory_share("ray", 4, 0.5) == 0.5 and runner._memory_share("ray", 4, 2) == 1
    worker = workers.Worker(
        LinearFactory(), dict(sigma=0.25, **TINY), ["l2"], [0.1], 0,
        workers.WorkerOptions(memory_share=0.25),
    )  # fmt: skip
    assert worker.smoother.memory_share == 0.25


# ----------------------------------------------------------------------------- tasks
def test_the_model_probe_feeds_the_model_on_the_runs_device(monkeypatch):
    import centersmooth.sampling as sampling
    from centersmooth.tasks.user import model_batch

    asked = []
    real = sampling.resolve_device

    def spy(device, fn):
        asked.append(device)
        return real("cpu", fn)

    monkeypatch.setattr(sampling, "resolve_device", spy)
    out = model_batch(linear(), np.zeros((2, 6), dtype=np.float32), device="cuda:1")
    assert asked == ["cuda:1"] and out.shape == (2, 4)


def test_experiment_drivers_take_a_device():
    from centersmooth.tasks.experiments import experiment_overrides, experiment_parser

    parser = experiment_parser("gan_faces", "", Path("out"), (0.25,), ("default",))
    assert experiment_overrides(parser.parse_args(["--device", "cuda:1"])) == {"device": "cuda:1"}
    assert experiment_overrides(parser.parse_args([])) == {}


def test_training_on_the_cpu_leaves_every_global_generator_as_it_was(monkeypatch, tmp_path):
    """Only the CPU generator is seeded (and restored): torch.manual_seed would also seed every
    CUDA device, even before CUDA starts."""
    from centersmooth.tasks.training import train

    def no_cuda_seed(*args, **kwargs):
        raise AssertionError("a CPU training seeded a CUDA generator")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", no_cuda_seed)
    monkeypatch.setattr(torch.cuda, "manual_seed", no_cuda_seed)
    state = torch.random.get_rng_state()
    result = train("autoencoder", "digits", 0.25, epochs=1, n_train=64, progress=False,
                   out=tmp_path / "m.pt")  # fmt: skip
    assert result.path.is_file() and torch.equal(torch.random.get_rng_state(), state)


# ----------------------------------------------------------------------------- kernels
def test_a_seeded_call_asks_for_deterministic_kernels_on_cuda_only(monkeypatch):
    cudnn = torch.backends.cudnn
    monkeypatch.setattr(determinism, "_WARNED", set())
    monkeypatch.delenv(determinism.CUBLAS_WORKSPACE, raising=False)
    before = (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    with pytest.warns(determinism.DeterminismWarning, match="CUBLAS_WORKSPACE_CONFIG=:4096:8"):
        with determinism.seeded_kernels(torch.device("cuda"), seeded=True):
            assert cudnn.deterministic and not cudnn.benchmark
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.is_deterministic_algorithms_warn_only_enabled()
            assert not torch.utils.deterministic.fill_uninitialized_memory
    assert (
        cudnn.deterministic,
        cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
    ) == before
    assert torch.utils.deterministic.fill_uninitialized_memory
    monkeypatch.setenv(determinism.CUBLAS_WORKSPACE, ":4096:8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for device, seeded in (("cuda", True), ("cuda", False), ("cpu", True)):
            with determinism.seeded_kernels(torch.device(device), seeded):
                assert torch.are_deterministic_algorithms_enabled() == (device == "cuda" and seeded)


def test_cublas_is_fixed_before_cuda_starts(monkeypatch):
    monkeypatch.delenv(determinism.CUBLAS_WORKSPACE, raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    determinism.fix_cublas_workspace(torch.device("cpu"))
    assert determinism.CUBLAS_WORKSPACE not in __import__("os").environ
    determinism.fix_cublas_workspace(torch.device("cuda"))
    assert __import__("os").environ[determinism.CUBLAS_WORKSPACE] == ":4096:8"


def test_seeded_calls_are_the_ones_that_ask(monkeypatch):
    import centersmooth.smoothing as smoothing

    asked = []
    real = smoothing.seeded_kernels

    def spy(device, seeded):
        asked.append(seeded)
        return real(device, seeded)

    monkeypatch.setattr(smoothing, "seeded_kernels", spy)
    unseeded = CenterSmoothing(linear(), **COUNTS)
    unseeded.certify(torch.zeros(6), 0.1)
    unseeded.predict(torch.zeros(6), seed=3)
    unseeded.certify_batch([torch.zeros(6)], 0.1, seeds=[4])
    CenterSmoothing(linear(), seed=0, **COUNTS).certify(torch.zeros(6), 0.1)
    assert asked == [False, True, True, True]


def test_compile_has_dynamic_batch_sizes():
    """One graph for every batch size of the run (300, then the last batch of each stage), and
    one for the single clean input: no recompilation per batch shape."""
    from torch._dynamo import register_backend

    graphs: list[list[object]] = []

    @register_backend
    def counting_graphs(gm, example_inputs):
        graphs.append(list(example_inputs))
        return gm.forward

    # the run accepts (seeded_settings.COMPILED), so every stage (the certification too) is
    # compiled
    smoother = CenterSmoothing(linear(), compile="counting_graphs", batch_size=300,
                               seed=COMPILED.seed, **COMPILED_COUNTS)  # fmt: skip
    assert not smoother.certify(torch.zeros(6), 0.1).abstained
    assert len(graphs) == 2
    assert any(isinstance(t, torch.SymInt) for t in graphs[0])  # the batch is symbolic


# ----------------------------------------------------------------------------- on a CUDA device
@pytest.mark.cuda
def test_cuda_attack_on_bf16_and_autocast_models():
    # the settings of seeded_settings.DEVICE_BF16 and DEVICE_AUTOCAST (on another noise stream)
    for net, autocast in ((linear(torch.bfloat16), None), (linear(), "bf16")):
        smoother = CenterSmoothing(net, autocast=autocast, device="cuda", seed=0, **COUNTS)
        result = attack(smoother, torch.zeros(6), 0.1, seed=DEVICE_BF16.seed, **ATTACK)
        assert not result.abstained and result.x_adv.device.type == "cuda"


@pytest.mark.cuda
@pytest.mark.needs("lpips")
def test_cuda_lpips_attack_gradient():
    images = torch.rand(2, 3, 32, 32, device="cuda", requires_grad=True)
    loss = get_metric("lpips")(images, torch.zeros_like(images)).sum()
    (grad,) = torch.autograd.grad(loss, images)
    assert grad.device.type == "cuda" and float(grad.abs().sum()) > 0


@pytest.mark.cuda
def test_cuda_targets_and_the_platform_in_the_header(tmp_path):
    x = np.random.default_rng(0).random((2, 16), dtype=np.float32)
    rows = runner.certify_dataset(
        LinearFactory(), x, [0.1], ["l2"], dict(sigma=0.25, device="cuda", **TINY),
        tmp_path / "r.jsonl", {"task": "toy"}, targets=torch.from_numpy(x).cuda(),
        progress=False, examples=1,
    )  # fmt: skip
    assert len(rows) == 2 and all(r["base_error"] is not None for r in rows)
    header = read_results(tmp_path / "r.jsonl").header
    assert header["platform"]["device"] == torch.cuda.get_device_name()
    assert header["platform"]["cuda"] == torch.version.cuda


@pytest.mark.cuda
def test_cuda_seeded_certificates_repeat_bit_for_bit():
    net, x = conv_autoencoder()
    first, again = (
        CenterSmoothing(net, device="cuda", seed=CONV.seed, **COUNTS).certify(x, [0.1, 0.2])
        for _ in range(2)
    )
    assert not first.abstained and not again.abstained  # seeded_settings.CONV
    np.testing.assert_array_equal(first.eps_out, again.eps_out)
    assert torch.equal(first.center, again.center)


@pytest.mark.cuda
def test_cuda_hamming_and_tv2_match_the_cpu():
    labels = torch.randint(0, 5, (300, 8, 8), generator=torch.Generator().manual_seed(0))
    hamming = get_metric("hamming")
    assert torch.equal(hamming.pairwise(labels[:40].cuda(), labels.cuda()).cpu(),
                       hamming.pairwise(labels[:40], labels))  # fmt: skip
    assert torch.equal(hamming.central_candidates(labels.cuda()).cpu(),
                       hamming.central_candidates(labels))  # fmt: skip
    images = torch.rand(300, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    tv2 = get_metric("tv2")
    torch.testing.assert_close(tv2.pairwise(images[:40].cuda(), images.cuda()).cpu(),
                               tv2.pairwise(images[:40], images), rtol=1e-5, atol=1e-4)  # fmt: skip


@pytest.mark.cuda
def test_cuda_training_restores_the_cuda_generator(tmp_path):
    from centersmooth.tasks.training import train

    torch.cuda.manual_seed(123)
    state = torch.cuda.get_rng_state()
    train("autoencoder", "digits", 0.25, epochs=1, n_train=64, progress=False, device="cuda",
          out=tmp_path / "m.pt")  # fmt: skip
    assert torch.equal(torch.cuda.get_rng_state(), state)


@pytest.mark.cuda
@pytest.mark.needs("gan-faces", "lpips")
def test_cuda_gan_figure(tmp_path):
    from centersmooth.tasks import gan_faces

    distances = gan_faces.figure(
        tmp_path / "f.png", 0.25, "paper", h=0.5, neighbours=1, device="cuda",
        n_center=400, n_check=400, n_certify=400, delta=0.25, candidates=8,
    )  # fmt: skip
    assert (tmp_path / "f.png").stat().st_size > 0 and np.isfinite(distances["base"])


@pytest.mark.cuda
def test_cuda_auto_rounds_on_shared_check_samples_stay_on_the_device():
    """``n_certify="auto"`` over shared check samples on a CUDA device: the check's distances
    (kept on the device in float64) start the first round, each round's join them there and are
    sorted there, and two inputs go on round by round on their own streams. The passes the
    counter hears are the certificates' own, and a second run repeats them bit for bit.
    ``SIX_TO_FOUR_BATCH``'s setting (seeded_settings: its check cannot fail by chance)."""
    heard: list[int] = []

    def run() -> tuple[CenterSmoothing, list]:
        smoother = small(six_to_four(), SIX_TO_FOUR_BATCH.seed, device="cuda",
                         n_certify="auto", n_certify_cap=16_000)  # fmt: skip
        smoother.pass_counter = heard.append
        return smoother, smoother.certify_batch([torch.ones(6), torch.ones(6)], [0.1, 0.5])

    smoother, certs = run()
    s = smoother.settings
    assert s.rounds == (2_000, 4_000, 8_000, 16_000)
    for cert in certs:
        assert not cert.abstained and cert.center.device.type == "cuda"
        assert cert.certification_samples in s.rounds
        assert cert.forward_passes == s.n_center + cert.certification_samples + 1
        assert np.all(np.isfinite(cert.eps_out))  # both radii within the first round's reach
    assert sum(heard) == sum(cert.forward_passes for cert in certs)
    _, again = run()
    for first, second in zip(certs, again, strict=True):
        np.testing.assert_array_equal(first.eps_out, second.eps_out)
        assert first.certification_samples == second.certification_samples
        assert torch.equal(first.center, second.center)


class TwoHeads(nn.Module):
    """A detector-like module returning a dict of batches on its device: ``"boxes"``, the same
    box for every input but NaN where the first coordinate passes 0.5 (about 2% of the noise at
    ``x = 0``, sigma 0.25), and ``"scores"``."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        far = x[:, :1] > 0.5
        boxes = torch.where(far, math.nan, 1.0).expand(-1, 4).contiguous()
        return {"boxes": boxes, "scores": x.sum(dim=1)}


@pytest.mark.cuda
def test_cuda_output_selector_and_outputs_outside_every_ball():
    """``output`` picks the boxes of a CUDA module's dict, and ``nan_outputs="outside"`` counts
    its NaN boxes outside every ball, with shared check samples. Every finite box is the same,
    so the center is that box (radius 0) and the check counts the finite check samples, about
    98% against a level of 35%: it cannot go the other way by chance; the certification's
    finite distances are 0, and at ``eps_in = 0.1`` every order statistic's level (at most 0.78)
    lies well inside the finite share, so ``eps_out`` is 0."""
    smoother = CenterSmoothing(TwoHeads(), sigma=0.25, output="boxes", nan_outputs="outside",
                               device="cuda", seed=0, **SMALL)  # fmt: skip
    cert = smoother.certify(torch.zeros(6), 0.1)
    assert not cert.abstained and cert.eps_out == 0.0 and cert.smoothing_error == 0.0
    assert cert.center.device.type == "cuda"
    assert torch.equal(cert.center.cpu(), torch.ones(4))
    assert 0 < smoother.n_check - cert.prediction.check_count < smoother.n_check // 10


@pytest.mark.cuda
def test_cuda_model_probe_feeds_a_callable_on_the_runs_device():
    """A callable wrapping a CUDA network has no parameters to say where it runs: the probe
    feeds it on the run's ``--device``."""
    from centersmooth.tasks.user import model_batch

    net = linear().cuda()
    seen = []

    def wrapped(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.device.type)
        return net(batch)

    out = model_batch(wrapped, np.zeros((2, 6), dtype=np.float32), device="cuda")
    assert seen == ["cuda"] and out.device.type == "cuda" and tuple(out.shape) == (2, 4)
