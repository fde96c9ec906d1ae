"""Progress of the center search: a bar over its candidates, and a warning when it will be slow."""

import warnings

import pytest
import torch

from centersmooth import center
from centersmooth.center import SlowCenterSearchWarning, find_center
from centersmooth.metrics import get_metric


def python_l2(a, b):
    """l2 one pair at a time in Python: the kind of distance that makes a search slow."""
    return torch.tensor([float((x - y).norm()) for x, y in zip(a, b, strict=True)])


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Forget which distances were already reported, so each test sees its own warning."""
    monkeypatch.setattr(center, "_warned_slow", set())


def cloud(n=120, dim=5):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(0))


def test_a_slow_search_warns_once_and_points_to_candidate_mode(monkeypatch, fresh_warnings):
    monkeypatch.setattr(center, "SLOW_SEARCH_SECONDS", 1e-9)
    metric = get_metric(python_l2)
    samples = cloud()
    with pytest.warns(SlowCenterSearchWarning) as record:
        found = find_center(samples, metric)
    assert len(record) == 1
    message = str(record[0].message)
    assert "'python_l2'" in message and "120 candidates" in message
    assert "candidates=30" in message and "candidates={'python_l2': 30}" in message
    assert "progress=True" in message
    assert record[0].filename == __file__  # points at the caller's line
    # the warning changes nothing in the search
    monkeypatch.setattr(center, "SLOW_SEARCH_SECONDS", 60.0)
    l2 = find_center(samples, get_metric("l2"))
    assert found.index == l2.index and found.radius == pytest.approx(l2.radius, rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowCenterSearchWarning)
        find_center(samples, metric)  # once per distance: the second search is silent


def test_in_candidate_mode_the_warning_suggests_fewer_candidates(monkeypatch, fresh_warnings):
    monkeypatch.setattr(center, "SLOW_SEARCH_SECONDS", 1e-9)
    with pytest.warns(SlowCenterSearchWarning, match="fewer center samples") as record:
        find_center(cloud(), get_metric(python_l2), n_candidates=40)
    assert "candidates=30" not in str(record[0].message)


def test_a_fast_search_does_not_warn(fresh_warnings):
    samples = torch.randn(2_000, 50, generator=torch.Generator().manual_seed(1))
    metric = get_metric("l2")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowCenterSearchWarning)
        find_center(samples, metric, extra=metric.central_candidates(samples))
        find_center(samples, metric)


def test_progress_shows_a_bar_over_the_candidates(capsys):
    find_center(cloud(), get_metric(python_l2), progress=True)
    err = capsys.readouterr().err
    assert "center search" in err and "/122" in err  # 120 candidates and 2 exact rechecks
    find_center(cloud(), get_metric(python_l2))
    assert capsys.readouterr().err == ""


def pace(n_pool=10_000, progress=False):
    return center._SearchPace(get_metric("l2"), n_pool, 3, 10_000, False, progress)


def test_the_estimate_counts_what_pruning_leaves_to_compute(monkeypatch, fresh_warnings):
    """Timings are fed in: a settled block of 16 candidates all computed in 1.6 s makes 10,003
    candidates about 1,000 s; the same block with every candidate ruled out by lower bounds
    (1.6 ms) makes them about 1 s, and a fast search does not warn."""
    computed = pace()
    assert computed.block_rows(16) == 16  # the memory budget's block: settled at once
    with pytest.warns(SlowCenterSearchWarning, match="about 17 min"):
        computed.scored(16, 16, 1.6)
    assert computed.estimate() == pytest.approx(1_000.0, rel=0.01)
    monkeypatch.setattr(center, "_warned_slow", set())
    pruned = pace()
    pruned.block_rows(16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowCenterSearchWarning)
        pruned.scored(16, 0, 0.0016)
    assert pruned.estimate() < 2.0


def test_blocks_grow_while_call_overhead_dominates_then_settle(fresh_warnings):
    """Fourfold growth while blocks are fast, or while the time per candidate keeps falling (a
    fixed cost per call); a block of a second whose time grew with its size fixes the size."""
    warnings.simplefilter("ignore", SlowCenterSearchWarning)  # these timings make a slow search
    p = pace()
    assert p.block_rows(10_000) == 16
    p.scored(16, 16, 0.01)
    assert p.block_rows(10_000) == 64
    p.scored(64, 64, 1.5)  # 23 ms per candidate against 0.6 ms: linear, so settled
    assert p.block_rows(10_000) == 64
    q = pace()
    q.block_rows(10_000)
    q.scored(16, 16, 1.2)  # slow, but the first: grow to see whether it was overhead
    q.block_rows(10_000)
    q.scored(64, 64, 1.3)  # 20 ms per candidate against 75 ms: overhead, keep growing
    assert q.block_rows(10_000) == 256
    assert q.block_rows(100) == 100  # never beyond the memory budget


def test_blocks_end_at_the_last_row():
    p = pace()
    rows = [stop - start for start, stop in center._blocks(100, 1_000, p)]
    assert sum(rows) == 100 and rows[0] == 16


def test_the_warning_names_the_users_line_through_the_smoother(monkeypatch, fresh_warnings):
    from centersmooth import CenterSmoothing

    monkeypatch.setattr(center, "SLOW_SEARCH_SECONDS", 1e-9)
    smoother = CenterSmoothing(
        lambda b: b, metric=python_l2, n_center=300, n_check=400, n_certify=1_000, delta=0.15
    )
    with pytest.warns(SlowCenterSearchWarning) as record:
        smoother.predict(torch.zeros(2), seed=0)
    assert [r.filename for r in record] == [__file__]
