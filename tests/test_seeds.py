"""The seeds job (opt-in: ``pytest -m seeds``): every setting of ``seeded_settings`` over many
seeds, failing when a test's seed would go the other way more often than its budget allows.

Two estimates per setting, both held against the budget: the observed rate (runs whose
predictions did not all go the expected way, out of the seeds swept) and the normal tail of the
margin ``p_low - (ball_mass - delta)`` (the worst over a run's predictions, sign flipped for an
expected abstention), which sees rates far below one in the number of seeds. Each becomes a
test's failure chance (``Seeded.failure_chance``: a test that needs ``uses`` runs to go its way
fails about ``uses`` times as often; one that searches ``tries`` seeds, with the rate to the
power ``tries``). The table of all settings closes the run (``conftest.pytest_terminal_summary``).
"""

from __future__ import annotations

import math
import statistics
import time

import pytest
import seeded_settings
from seeded_settings import Seeded

pytestmark = pytest.mark.seeds


def margin(setting: Seeded, seed: int) -> float:
    """The smallest ``p_low - level`` over a run's predictions (flipped for an abstention); a
    prediction that abstained on ``Delta1 > delta`` counts as -1."""
    worst = math.inf
    for pred in setting.run(seed):
        m = pred.p_low - pred.check_level
        if pred.abstained and m > 0:
            m = -1.0
        worst = min(worst, m if setting.accepts else -m)
    return worst


def normal_tail(margins: list[float]) -> tuple[float, float]:
    """``(z, tail)``: the mean margin in standard deviations and its normal tail."""
    mean, sd = statistics.fmean(margins), statistics.pstdev(margins)
    if sd == 0:
        return (math.inf, 0.0) if mean > 0 else (-math.inf, 1.0)
    z = mean / sd
    return z, 0.5 * math.erfc(z / math.sqrt(2))


@pytest.mark.parametrize("name", list(seeded_settings.REGISTRY))
def test_setting_goes_its_way_within_its_budget(name: str, request: pytest.FixtureRequest) -> None:
    setting = seeded_settings.REGISTRY[name]
    start = time.perf_counter()
    margins = [margin(setting, seed) for seed in range(setting.seeds)]
    seconds = time.perf_counter() - start
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
