"""The DCGAN face generator certified in LPIPS, on tiny sample counts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from seeded_settings import GAN, GAN_COUNTS, gan_generator, gan_latent, gan_smoother

from centersmooth.data import weights
from centersmooth.runs.runner import read_results
from centersmooth.tasks import gan_faces


@pytest.fixture(scope="module")
def generator() -> gan_faces.DCGANGenerator:
    return gan_generator()


@pytest.mark.needs("gan-faces")
def test_generator_makes_faces_in_signed_range(generator: gan_faces.DCGANGenerator) -> None:
    z = gan_faces.latent_inputs(3, seed=1)
    with torch.no_grad():
        images = generator(z)
        again = generator(z[:1, :, None, None])
    assert images.shape == (3, 3, 64, 64)
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    assert float(images.std()) > 0.1  # not a constant image
    assert torch.allclose(images[:1], again, atol=1e-6)  # eval mode: no batch dependence
    with pytest.raises(ValueError, match="latent batch"):
        generator(torch.zeros(2, 7))


@pytest.mark.needs("gan-faces", "lpips")
def test_certifies_one_latent_in_lpips() -> None:
    smoother = gan_smoother(GAN.seed)
    assert smoother.metric.name == "lpips" and smoother.metric.gamma == 2.0
    cert = smoother.certify(gan_latent(), [0.125, 0.25])
    assert not cert.abstained
    assert cert.center.shape == (3, 64, 64)
    eps_out = np.asarray(cert.eps_out)
    assert np.all(np.isfinite(eps_out)) and eps_out[0] <= eps_out[1]
    # gamma (R_outer + gamma (R_near + R_inner)) with gamma = 2 for LPIPS
    outer, near, inner = (
        np.asarray(r) for r in (cert.quantile_radius, cert.near_radius, cert.inner_radius)
    )
    assert np.allclose(eps_out, 2.0 * (outer + 2.0 * (near + inner)))
    assert np.all(near < inner)  # 8 candidates: the nearest one's ball is still the smaller
    assert cert.smoothing_error is not None and 0.0 <= cert.smoothing_error < eps_out[0]
    assert math.isfinite(cert.max_eps_in) and cert.max_eps_in > 0.25


@pytest.mark.needs("gan-faces")
def test_paper_preset_uses_the_papers_gan_constants(
    generator: gan_faces.DCGANGenerator,
) -> None:
    smoother = gan_faces.make_smoother(0.5, "paper", generator=generator)
    assert (smoother.n_center, smoother.n_check, smoother.n_certify) == (2_000, 2_000, 10_000)
    assert smoother.delta == 0.08 and smoother.candidates == 30
    assert smoother.bound == "hoeffding" and not smoother.central_candidates
    with pytest.raises(ValueError, match="preset"):
        gan_faces.make_smoother(0.5, "biggan", generator=generator)


@pytest.mark.needs("gan-faces")
def test_make_smoother_has_the_tasks_settings(generator: gan_faces.DCGANGenerator) -> None:
    task = gan_faces.GanFacesTask()
    for preset, name in (("default", "default"), ("ours", "default"), ("paper", "paper")):
        smoother = gan_faces.make_smoother(0.5, preset, generator=generator)
        for key, value in task.preset_settings(name).items():
            assert getattr(smoother, key) == value, (preset, key)
    assert smoother.batch_size == 250
    assert gan_faces.make_smoother(0.5, generator=generator, candidates=12).candidates == 12


@pytest.mark.needs("gan-faces", "lpips")
def test_driver_certifies_through_the_runner(tmp_path: Path) -> None:
    # the settings of seeded_settings.GAN: the run's input 0 and the figure's two predictions
    # accept (the run's seed is 0, the runner's default)
    tiny = dict(GAN_COUNTS, n_certify=300)
    paths = gan_faces.experiment(
        tmp_path, inputs=2, sigmas=[0.25], presets=["default"], progress=False, **tiny
    )
    assert paths == [tmp_path / "default-sigma0.25.jsonl"]
    results = read_results(paths[0])
    assert results.header is not None
    config = results.header["config"]
    assert config["run_info"]["preset"] == "default" and config["metrics"] == ["lpips"]
    sm = config["smoothing"]
    assert sm["bound"] == "binomial" and sm["central_candidates"] is True
    assert (sm["n_center"], sm["candidates"], sm["batch_size"]) == (150, 8, 250)
    assert [r["eps_in"] for r in results.rows[:3]] == pytest.approx([0.125, 0.25, 0.375])
    row = results.rows[0]
    assert row["input_index"] == 0 and row["eps_in"] == 0.125 and not row["abstained"]
    assert row["eps_out"] is not None
    # the figure, with the run's seed, inputs and settings, shows the center the runner
    # certified and quotes its eps_out
    out = tmp_path / "figure.png"
    distances = gan_faces.figure(
        out, 0.25, "default", h=0.5, neighbours=1, n_inputs=2, results=tmp_path, **tiny
    )
    assert out.stat().st_size > 0
    assert distances["base"] == pytest.approx(row["smoothing_error"], rel=1e-3, abs=1e-5)
    assert distances["eps_out"] == row["eps_out"]


def test_missing_weights_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(weights.MissingWeightsError, match=r"gan-face-generate==1\.1\.1"):
        gan_faces.load_generator(str(tmp_path / "weights.tar"))


@pytest.mark.needs("gan-faces")
def test_registered_task_gives_latents_and_a_picklable_model(
    generator: gan_faces.DCGANGenerator,
) -> None:
    import pickle

    from centersmooth.tasks import get_task

    task = get_task("gan-faces")
    assert task.default_metrics == ("lpips",)
    setup = task.certify_setup(
        checkpoint=None, dataset=None, data_root=None, n_inputs=2, seed=3, sigma=0.5
    )
    assert setup.inputs.shape == (2, 100)
    assert np.array_equal(setup.inputs, gan_faces.latent_inputs(2, 3).numpy())
    model = pickle.loads(pickle.dumps(setup.model_factory))()
    with torch.no_grad():
        assert model(torch.from_numpy(setup.inputs)).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="no data set"):
        task.certify_setup(
            checkpoint=None, dataset="mnist", data_root=None, n_inputs=1, seed=0, sigma=0.5
        )
