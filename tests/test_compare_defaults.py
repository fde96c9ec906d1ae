"""``results/compare_defaults.py``: the grid's comparison of today's defaults with the earlier
ones, with the nearest-candidate bound alone and with ``auto``, checked against medians computed
here from the committed rows."""

import importlib.util
import json
import math
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CELL = ROOT / "results/grid/mnist-autoencoder"


def compare_defaults():
    spec = importlib.util.spec_from_file_location(
        "compare_defaults", ROOT / "results/compare_defaults.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def medians(path: Path, metric: str, h: float) -> float:
    rows = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    return statistics.median(
        math.inf if r["abstained"] else r["eps_out"]
        for r in rows
        if r["metric"] == metric and math.isclose(r["eps_in"], h * r["sigma"])
    )


@pytest.mark.parametrize("metric", ["l2", "tv2"])
def test_a_cells_ratios_are_the_medians_of_its_files(metric):
    module = compare_defaults()
    files = {name: CELL / f"sigma0.25{suffix}.jsonl" for name, suffix in module.VARIANTS.items()}
    cell = module.compare_cell(files)
    assert cell["inputs"] == 20 and cell["hs"] == [0.5, 1.0, 1.5, 2.0]
    for h in cell["hs"]:
        for name, path in files.items():
            assert cell["medians"][(name, metric, h)] == medians(path, metric, h)
    assert cell["passes:defaults"] == [20_001] * 20 and cell["passes:earlier"] == [120_001] * 20
    assert cell["abstained"] == {"earlier": 0, "defaults": 0, "nearest": 0, "auto": 0}
    assert cell["passes:nearest"] == [20_001] * 20


def test_a_missing_file_leaves_the_cell_out(tmp_path):
    module = compare_defaults()
    files = {
        name: tmp_path / f"sigma0.25{suffix}.jsonl" for name, suffix in module.VARIANTS.items()
    }
    assert module.compare_cell(files) is None


def test_ratios_say_where_only_one_side_certifies():
    module = compare_defaults()
    assert module.ratio(2.0, 1.0) == 2.0
    assert module.ratio(math.inf, 1.0) == math.inf
    assert module.ratio(1.0, math.inf) == 0.0
    assert math.isnan(module.ratio(math.inf, math.inf))
