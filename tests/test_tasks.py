"""Tasks: registry, models, the measurement matrix, training, checkpoints and certify setups."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from centersmooth.tasks import (
    ClassifierTask,
    ConvAutoencoder,
    MeasurementReconstructor,
    SmallClassifier,
    Task,
    available_tasks,
    get_task,
    load_checkpoint,
    measurement_matrix,
    register_task,
    train,
)
from centersmooth.tasks.inference import SubPixelConv


@pytest.fixture(autouse=True)
def _cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CENTERSMOOTH_CACHE", str(tmp_path / "cache"))


def test_registry() -> None:
    assert {"autoencoder", "reconstruction", "classifier"} <= set(available_tasks())
    assert get_task("autoencoder").name == "autoencoder"
    assert get_task("classifier").default_metrics == ("total_variation",)
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_task("autoencoder", Task)


def test_driver_modules_run_without_a_double_import() -> None:
    """``python -m centersmooth.tasks.gan_faces`` would warn (runpy) if importing the package
    imported the driver module first; the registry imports it only when the task is asked for."""
    code = "import sys, centersmooth.tasks; print('centersmooth.tasks.gan_faces' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert get_task("gan-faces").name == "gan-faces"


def test_model_shapes() -> None:
    x = torch.rand(3, 1, 28, 28)
    assert ConvAutoencoder(latent=7)(x).shape == x.shape
    assert ConvAutoencoder(1, 8, 8, latent=4).encode(torch.rand(2, 1, 8, 8)).shape == (2, 4)
    assert ConvAutoencoder(3, 32, 32, latent=16)(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    probs = SmallClassifier()(x)
    assert probs.shape == (3, 10)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3))
    rec = MeasurementReconstructor(measurements=50, matrix_seed=1)
    y = rec.measure(x)
    assert y.shape == (3, 50) and rec(y).shape == x.shape
    with torch.no_grad():
        out = rec(y)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    with pytest.raises(ValueError, match="multiples of 4"):
        ConvAutoencoder(1, 10, 10)


def test_measurement_matrix_reproducible_from_seed() -> None:
    a = measurement_matrix(64, 784, seed=5)
    np.testing.assert_array_equal(a.numpy(), measurement_matrix(64, 784, seed=5).numpy())
    assert not torch.equal(a, measurement_matrix(64, 784, seed=6))
    assert a.shape == (64, 784) and a.dtype == torch.float32
    # entries N(0, 1/m): E[A^T A] = I, so the column norms are close to 1
    assert abs(float(a.var()) * 64 - 1) < 0.05
    assert abs(float(a.norm(dim=0).pow(2).mean()) - 1) < 0.05
    rec = MeasurementReconstructor(measurements=64, matrix_seed=5)
    torch.testing.assert_close(rec.A, a, rtol=0, atol=0)
    assert "A" in rec.state_dict()


def test_training_smoke_and_checkpoint_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "ae.pt"
    r = train("autoencoder", "digits", 0.25, epochs=2, n_train=120, seed=3, out=out, progress=False)
    assert r.path == out and out.is_file()
    meta = r.meta
    assert meta["task"] == "autoencoder" and meta["dataset"] == "digits"
    assert meta["sigma_train"] == 0.25 and meta["seed"] == 3 and meta["n_train"] == 120
    assert np.isfinite(meta["final_loss"]) and meta["arch"]["latent"] == 32
    payload = torch.load(out, weights_only=True)
    assert payload["meta"] == meta
    model, meta2 = load_checkpoint(out)
    assert meta2 == meta and not model.training
    x = torch.rand(4, 1, 8, 8)
    again = train(
        "autoencoder",
        "digits",
        0.25,
        epochs=2,
        n_train=120,
        seed=3,
        out=tmp_path / "b.pt",
        progress=False,
    )
    model_b, _ = load_checkpoint(again.path)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model_b(x))  # same seed, same model
        # loaded in the fast inference form: the same function as the stored weights, to rounding
        plain = get_task("autoencoder").build(**meta["arch"]).eval()
        plain.load_state_dict(payload["state_dict"])
        assert model.encoder[0][0].weight.is_contiguous(memory_format=torch.channels_last)
        assert isinstance(model.decoder[-2], SubPixelConv)
        torch.testing.assert_close(model(x), plain(x))
    assert again.meta["final_loss"] == meta["final_loss"]


def test_training_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train("classifier", "digits", 0.1, epochs=1, n_train=64, seed=0, progress=False)
    torch.testing.assert_close(torch.rand(3), expected)


def test_training_argument_errors() -> None:
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        train("autoencoder", "digits", epochs=0)
    with pytest.raises(ValueError, match="sigma_train"):
        train("autoencoder", "digits", sigma_train=-1.0)
    with pytest.raises(ValueError, match="unknown architecture arguments"):
        train("autoencoder", "digits", arch={"layers": 3})


def test_reconstruction_checkpoint_keeps_its_matrix(tmp_path: Path) -> None:
    r = train(
        "reconstruction",
        "digits",
        0.25,
        epochs=1,
        n_train=64,
        out=tmp_path / "r.pt",
        arch={"matrix_seed": 7, "measurements": 20},
        progress=False,
    )
    model, meta = load_checkpoint(r.path)
    assert isinstance(model, MeasurementReconstructor)
    assert meta["arch"]["matrix_seed"] == 7
    torch.testing.assert_close(model.A, measurement_matrix(20, 64, seed=7), rtol=0, atol=0)
    task = get_task("reconstruction")
    setup = task.certify_setup(
        checkpoint=r.path, dataset=None, data_root=None, n_inputs=3, seed=0, sigma=0.25
    )
    assert setup.inputs.shape == (3, 20) and setup.targets is not None
    assert setup.targets.shape == (3, 1, 8, 8)
    np.testing.assert_allclose(
        setup.inputs, model.measure(torch.from_numpy(setup.targets)).numpy(), rtol=1e-5
    )
    factory = pickle.loads(pickle.dumps(setup.model_factory))
    rebuilt = factory()
    torch.testing.assert_close(rebuilt.A, model.A)
    assert setup.run_info["dataset"] == "digits" and setup.run_info["task"] == "reconstruction"


def test_classifier_targets_are_one_hot(tmp_path: Path) -> None:
    r = train(
        "classifier", "digits", 0.25, epochs=1, n_train=64, out=tmp_path / "c.pt", progress=False
    )
    setup = ClassifierTask().certify_setup(
        checkpoint=r.path, dataset="digits", data_root=None, n_inputs=5, seed=1, sigma=0.25
    )
    assert setup.targets is not None and setup.targets.shape == (5, 10)
    np.testing.assert_array_equal(setup.targets.sum(axis=1), np.ones(5))
    with pytest.raises(ValueError, match="trained on 'digits', not 'mnist'"):
        ClassifierTask().certify_setup(
            checkpoint=r.path, dataset="mnist", data_root=None, n_inputs=5, seed=1, sigma=0.25
        )


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable centersmooth checkpoint"):
        load_checkpoint(junk)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a centersmooth checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="centersmooth train autoencoder"):
        get_task("autoencoder").certify_setup(
            checkpoint=None, dataset="digits", data_root=None, n_inputs=1, seed=0, sigma=0.3
        )
