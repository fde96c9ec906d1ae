"""The seeds job (opt-in: ``pytest -m seeds``): every setting of ``seeded_settings`` over many
seeds, failing when a test's seed would go the other way more often than its budget allows.

Two estimates per setting, both held against the budget: the observed rate (runs whose
predictions did not all go the expected way, out of the seeds swept) and the normal tail of the
margin ``p_low - (ball_mass - delta)`` (the worst over a run's predictions, sign flipped for an
expected abstention), which sees rates far below one in the number of seeds. Each becomes a
test's failure chance (``Seeded.failure_chance``: a test that needs ``uses`` runs to go its way
fails about ``uses`` times as often; one that searches ``tries`` seeds, with the rate to the
power ``tries``). The seeds of a setting are shared out over one process per CPU core. The table
of all settings closes the run (``conftest.pytest_terminal_summary``).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
import seeded_settings

pytestmark = pytest.mark.seeds


def normal_tail(margins: list[float]) -> tuple[float, float]:
    """``(z, tail)``: the mean margin in standard deviations and its normal tail."""
    mean, sd = statistics.fmean(margins), statistics.pstdev(margins)
    if sd == 0:
        return (math.inf, 0.0) if mean > 0 else (-math.inf, 1.0)
    z = mean / sd
    return z, 0.5 * math.erfc(z / math.sqrt(2))


@pytest.fixture(scope="module")
def workers() -> Iterator[tuple[ProcessPoolExecutor, int]]:
    """One process per core (spawned: torch does not survive a fork with threads)."""
    count = os.cpu_count() or 1
    with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool, count


@pytest.mark.parametrize("name", list(seeded_settings.REGISTRY))
def test_setting_goes_its_way_within_its_budget(
    name: str, workers: tuple[ProcessPoolExecutor, int], request: pytest.FixtureRequest
) -> None:
    setting = seeded_settings.REGISTRY[name]
    start = time.perf_counter()
    pool, share = workers
    chunks = [list(range(i, setting.seeds, share)) for i in range(share)]
    results = pool.map(seeded_settings.margins, [name] * share, chunks)
    margins = [m for chunk in results for m in chunk]
    seconds = time.perf_counter() - start
    assert len(margins) == setting.seeds
    failed = sum(m <= 0 for m in margins)
    rate = failed / len(margins)
    z, tail = normal_tail(margins)
    line = (
        f"{name}: {'abstained' if setting.accepts else 'accepted'} on {failed} of "
        f"{len(margins)} seeds, z = {z:.1f} (normal tail {tail:.0e}), {seconds:.0f} s"
    )
    request.config.stash.setdefault(seeded_settings.MEASURED, []).append(line)
    assert setting.failure_chance(rate) <= setting.budget, line
    assert setting.failure_chance(tail) <= setting.budget, line
