"""The coverage harness (``centersmooth.evaluation.coverage``): its truths are right and its
counts are exact.

The ball masses each problem claims are checked against brute-force Monte Carlo with a binomial
tolerance; the atoms of the discrete problems give the right mass below the quantile; a short
seeded run of the certify step on the linear map gives a violation count inside the central 99.9%
of ``Bin(trials, exact probability)``; a prediction at ``x'`` that reuses the certification's
seed draws the same noise, which on the sine problem defeats statements about balls around our
center but not the certificate; in the exact-noise mode (``input_grid``) the adversarial
``x'`` is a grid point within ``eps_in`` and the reference masses match the lattice noise the
smoother draws.
"""

import math

import numpy as np
import pytest
import torch
from helpers import torch_threads
from scipy import stats

from centersmooth import CenterSmoothing, grid_noise
from centersmooth.evaluation.coverage import (
    BEYOND_PAIR_REACH,
    GRID_STEP,
    STANDARD_PROBLEMS,
    Setting,
    SettingResult,
    clopper_pearson,
    default_settings,
    markdown_table,
    run_setting,
    shared_sample_settings,
)
from centersmooth.evaluation.coverage_problems import (
    PROBLEMS,
    ClipProblem,
    GridProblem,
    LinearProblem,
    NanProblem,
    NetworkProblem,
    RareModeProblem,
    SineProblem,
    StepProblem,
    snap_toward,
)
from centersmooth.metrics import get_metric

N_MC = 200_000


def problems():
    return [
        LinearProblem(),
        StepProblem(),
        ClipProblem(),
        NetworkProblem(n_reference=400_000),
        NanProblem(),
        RareModeProblem(),
    ]


@pytest.mark.parametrize("problem", problems(), ids=lambda p: p.name)
def test_mass_matches_monte_carlo(problem):
    metric = get_metric(problem.metric)
    gen = torch.Generator().manual_seed(11)
    noise = torch.randn((N_MC, *problem.x.shape), generator=gen, dtype=torch.float64)
    outs = problem.base_function(problem.x + problem.sigma * noise)
    center = outs[:40].nanmean(dim=0)  # an off-center point, as the procedure's centers are
    d = metric(center.expand_as(outs), outs).numpy()
    levels = [0.05, 0.3, 0.5, 0.8, 0.97, 0.9875, 0.995]  # the last two: the rare far mode's
    radii = list(np.nanquantile(d, levels)) + problem.atoms(center.numpy())
    for r in radii:
        for strict in (False, True):
            empirical = float((d < r).mean() if strict else (d <= r).mean())
            exact = problem.mass(center.numpy(), float(r), strict=strict)
            sd = math.sqrt(max(exact * (1 - exact), 1e-6) / N_MC)
            reference_sd = 0.5 / math.sqrt(getattr(problem, "n_reference", 10**12))
            assert abs(empirical - exact) <= 5 * (sd + reference_sd), (r, strict, empirical, exact)


def test_quantile_left_mass_at_an_atom():
    step = StepProblem(p_one=0.2)
    z = np.array([0.0])  # distances 0 (mass 0.8) and 1 (mass 0.2)
    assert step.quantile_left_mass(z, 0.5) == 0.0  # the 0.5-quantile is the atom at 0
    assert step.quantile_left_mass(z, 0.9) == pytest.approx(0.8)  # the atom at 1
    linear = LinearProblem()
    assert linear.quantile_left_mass(linear.f_at_x(), 0.7) == 0.7  # continuous: p itself


def test_linear_worst_case_and_adversary_agree():
    problem = LinearProblem()
    z = problem.f_at_x() + 0.1
    eps = 0.3
    x_adv = problem.adversarial_input(z, eps)
    assert float((x_adv - problem.x).norm()) == pytest.approx(eps)
    moved = problem.base_function(x_adv.unsqueeze(0))[0].numpy()
    # the adversary moves f(x) by scale * eps straight away from z, so the worst mass is reached
    assert np.linalg.norm(moved - z) == pytest.approx(
        np.linalg.norm(problem.f_at_x() - z) + problem.scale * eps
    )
    assert problem.worst_mass(z, 1.0, eps) < problem.mass(z, 1.0)


def test_clopper_pearson_known_values():
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10))
    lo, hi = clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10))
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.187086, abs=1e-5) and hi == pytest.approx(0.812914, abs=1e-5)


@pytest.fixture
def one_thread():
    """Tiny tensors: thread start-up would dominate (as in the harness's own command line)."""
    with torch_threads(1):
        yield


@pytest.mark.parametrize("mass", [0.5, 0.25])
def test_certify_violations_follow_the_exact_binomial_probability(one_thread, mass):
    """On the linear map the certify step fails with probability exactly
    ``P(Bin(n_certify, p) >= k)``, whatever the center: the observed count must fit it, for each
    of the three order statistics (each at ``alpha_certify / 3``)."""
    setting = Setting(problem="linear", eps_over_sigma=(0.5,), n_certify=400, ball_mass=mass)
    result = run_setting(setting, LinearProblem(), trials=300, seed=5, end_to_end=False)
    names = ["certify ", "certify_inner", "certify_near"]
    level = setting.alpha_certify / 3
    for name in names:
        event = next(e for e in result.events if e.event.startswith(name))
        assert event.trials >= 200  # abstentions are a minority
        lo = stats.binom.ppf(0.0005, event.trials, event.exact)
        hi = stats.binom.ppf(0.9995, event.trials, event.exact)
        assert lo <= event.count <= hi, (name, event.count, event.trials, event.exact)
        assert event.exact <= level and event.level == level
    table = markdown_table([result])
    assert "certify eps_in=0.5sigma" in table and "predict" in table
    assert ("ball_mass 0.25" in table) == (mass == 0.25)


@pytest.mark.parametrize("nearest", [True, False])
def test_the_adversarial_events_follow_the_bound_in_use(one_thread, nearest):
    """At the adversarial x' the harness checks the theorem (end_to_end) and, for the
    nearest-candidate bound, the step its proof adds (nearest: rho(x') <= R_near + R_inner), each
    with the level the proof charges; the paper's bound has no such step. A record written before
    the bound existed reads back as the paper's."""
    setting = Setting(problem="linear", eps_over_sigma=(0.5,), nearest_candidate=nearest)
    result = run_setting(setting, LinearProblem(), trials=12, seed=3)
    events = {e.event.split()[0]: e for e in result.events}
    accepted_at_x = 12 - result.abstained
    assert accepted_at_x > 0 and events["end_to_end"].trials == accepted_at_x
    assert events["end_to_end"].level == 0.2
    assert ("nearest" in events) == nearest and ("certify_near" in events) == nearest
    if nearest:
        assert 0 < events["nearest"].trials <= accepted_at_x
        assert events["nearest"].level == pytest.approx(0.05 + 2 * 0.1 / 3)
        assert events["radius"].level == pytest.approx(0.025)
    record = result.to_json()
    del record["setting"]["nearest_candidate"]
    assert not type(result).from_json(record).setting.nearest_candidate


def test_the_sine_problem_negates_its_outputs_at_x_prime():
    """Half a period in every coordinate: the same noise gives the negated outputs, and x' lies
    exactly at the configured distance (no closer eps_in can reach it)."""
    problem = SineProblem(dim=50, h=0.1)
    x_adv = problem.adversarial_input(problem.f_at_x(), 0.1 * problem.sigma)
    assert x_adv is not None
    assert float((x_adv - problem.x).norm()) == pytest.approx(0.1 * problem.sigma)
    assert problem.adversarial_input(problem.f_at_x(), 0.09 * problem.sigma) is None
    noise = problem.sigma * torch.randn(
        64, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    at_x = problem.base_function(problem.x + noise)
    at_x_prime = problem.base_function(x_adv + noise)
    assert torch.allclose(at_x_prime, -at_x, atol=1e-9)
    assert not problem.knows_mass


def test_a_reused_seed_draws_the_same_noise_at_x_prime(one_thread):
    """What the seed-reuse events rely on: ``predict`` at ``x'`` with the certification's seed
    sees the reflected center samples, so its center is our center reflected."""
    problem = SineProblem(dim=200, h=0.1)
    smoother = CenterSmoothing(
        problem.base_function,
        sigma=problem.sigma,
        n_center=100,
        n_check=100,
        n_certify=100,
        delta=0.35,
        alpha_center=0.1,
    )
    x_adv = problem.adversarial_input(problem.f_at_x(), 0.1 * problem.sigma)
    # the first seed whose prediction at x accepts (at these counts some abstain)
    seed = next(s for s in range(50) if not smoother.predict(problem.x, seed=s).abstained)
    at_x = smoother.predict(problem.x, seed=seed)
    same = smoother.predict(x_adv, seed=seed)
    other = smoother.predict(x_adv, seed=seed + 1000)
    assert torch.allclose(same.center, -at_x.center, atol=1e-9)
    assert same.radius == pytest.approx(at_x.radius, rel=1e-9)
    assert not torch.allclose(other.center, -at_x.center, atol=1e-3)


def test_with_a_reused_seed_the_balls_around_our_center_fail_but_the_certificate_holds(
    one_thread,
):
    """The sine problem: with the prediction at x' reusing the certification's seed, the ball
    ``B(zhat, R_inner)`` holds fewer than half of the center samples at x' in most trials
    (nothing bounds that event: no promised level), while the certificate and the bound on
    ``rho(x')`` hold; with its own seed the same event stays rare."""
    problem = SineProblem()
    results = {}
    for reuse in (True, False):
        setting = Setting(problem="sine", eps_over_sigma=(0.1,), delta=0.35, reuse_seed=reuse)
        results[reuse] = run_setting(setting, problem, trials=8, seed=2)
    for reuse, result in results.items():
        events = {e.event.split()[0]: e for e in result.events}
        assert set(events) == {"zhat_inner_ball", "zhat_near_ball", "nearest", "end_to_end"}
        assert all(e.event.endswith("same-seed") == reuse for e in result.events)
        assert events["end_to_end"].trials >= 6 and events["end_to_end"].count == 0
        assert events["nearest"].count == 0 and events["nearest"].level < 0.2
        inner = events["zhat_inner_ball"]
        if reuse:
            assert inner.count >= inner.trials - 1 and math.isnan(inner.level)
        else:
            assert inner.count <= 2 and inner.level == pytest.approx(0.025 + 0.1 / 3)
    table = markdown_table([results[True]])
    assert "no promise" in table and "| - |" in table
    record = results[True].to_json()
    inner_row = next(e for e in record["events"] if e["event"].startswith("zhat_inner_ball"))
    assert inner_row["level"] is None  # strict JSON
    back = SettingResult.from_json(record)
    assert back.setting.reuse_seed and math.isnan(back.events[0].level)
    del record["setting"]["reuse_seed"]  # a record written before the option reads as its own seed
    assert not SettingResult.from_json(record).setting.reuse_seed


def test_the_seed_reuse_settings_come_last():
    """Adding them kept the seeds of the earlier settings: a setting's seed is its place in the
    full list."""
    every = default_settings(list(PROBLEMS))
    standard = default_settings(list(PROBLEMS), "standard")
    reuse = default_settings(list(PROBLEMS), "seed-reuse")
    grid = default_settings(list(PROBLEMS), "input-grid")
    nan = default_settings(list(PROBLEMS), "nan-outputs")
    shared = default_settings(list(PROBLEMS), "shared-samples")
    auto = default_settings(list(PROBLEMS), "auto-samples")
    pairwise = default_settings(list(PROBLEMS), "pairwise")
    assert every == standard + reuse + grid + nan + shared + auto + pairwise
    assert len(standard) == 20
    assert all(s.pairwise_bound and s.share_check_samples for s in pairwise)
    assert not any(s.pairwise_bound for s in standard + reuse + grid + nan + shared + auto)
    beyond = [s for s in pairwise if s.eps_over_sigma == BEYOND_PAIR_REACH]
    assert pairwise[-len(beyond) :] == beyond and len(beyond) == 2 * len(STANDARD_PROBLEMS)
    assert [(s.problem, s.reuse_seed) for s in pairwise[: -len(beyond)] if s.candidates is None][
        -3:
    ] == [("linear", True), ("sine", False), ("sine", True)]
    assert [s.nan_outputs for s in nan] == ["outside"] * 3
    assert [(s.problem, s.n_certify, s.n_certify_tolerance) for s in auto] == [
        ("rare-mode", "auto", 0.01), ("rare-mode", "auto", 0.0),
        ("linear", "auto", 0.01), ("linear", "auto", 0.0),
    ]  # fmt: skip
    assert all(s.share_check_samples and s.n_certify_cap == 3_200 for s in auto)
    assert all(s.share_check_samples for s in shared) and len(shared) == 4 * 4 + 3
    assert not any(s.share_check_samples for s in standard + reuse + grid + nan)
    assert [s.reuse_seed for s in reuse] == [False, True, True]
    assert all(s.problem not in ("sine", "rare-mode") for s in standard + grid + shared)
    assert all(s.input_grid is None for s in standard + reuse)
    assert [s.problem for s in grid] == [*STANDARD_PROBLEMS, "linear"]
    assert [s.input_grid for s in grid] == [GRID_STEP] * 4 + [1 / 255]
    assert all(s.bound == "binomial" and s.candidates is None for s in grid)
    assert len(set(every)) == len(every)  # distinct settings: distinct seeds


def test_shared_samples_are_counted_over_every_trial_and_given_acceptance(one_thread):
    """With shared check samples each order statistic's event is counted twice: over every
    trial at its promised level (an abstention is no violation) and over the accepted trials
    at that level over the acceptance rate. The linear setting whose check accepts about half
    the time is the one that tells them apart."""
    setting = shared_sample_settings(["linear"])[-1]
    assert setting.share_check_samples and setting.delta == 0.04
    result = run_setting(setting, LinearProblem(), trials=40, seed=11, end_to_end=False)
    accepted = 40 - result.abstained
    assert 5 <= accepted <= 35  # Bin(40, 0.47): outside with chance below 1e-6
    assert "shared check samples" in markdown_table([result])
    for name in ("certify ", "certify_inner", "certify_near"):
        rows = [e for e in result.events if e.event.startswith(name)]
        every, given = (e for e in rows if "eps_in=0.25sigma" in e.event)
        assert given.event == every.event + ", given acceptance"
        assert (every.trials, given.trials, given.count) == (40, accepted, every.count)
        assert every.level == pytest.approx(0.1 / 3)
        assert given.level == pytest.approx(0.1 / 3 * 40 / accepted)
        assert every.exact is None and given.exact is None


def test_a_pairwise_setting_counts_each_eps_in_under_the_bound_that_serves_it(one_thread):
    """Radii on both sides of the pairwise reach in one certification: ``R_outer``'s event at
    ``alpha_certify / 2`` where the pairwise bound serves and ``/ 3`` beyond, ``R_inner`` and
    ``R_near`` only beyond, and at ``x'`` (1.75 sigma, beyond) the nearest-candidate events,
    not ``pair``."""
    setting = default_settings(["linear"], "pairwise")[-2]
    assert setting.eps_over_sigma == BEYOND_PAIR_REACH and setting.candidates is None
    result = run_setting(setting, LinearProblem(), trials=6, seed=3)
    events = {e.event: e for e in result.events}
    for h, level in ((0.5, 0.1 / 2), (1, 0.1 / 2), (1.75, 0.1 / 3)):
        assert events[f"certify eps_in={h}sigma"].level == pytest.approx(level)
        assert events[f"certify eps_in={h}sigma"].trials == 6
    for name in ("certify_inner", "certify_near"):
        beyond = f"{name} eps_in=1.75sigma"
        assert sorted(e for e in events if e.startswith(name + " ")) == [
            beyond,
            f"{beyond}, given acceptance",
        ]
    assert "nearest eps_in=1.75sigma" in events
    assert not any(e.startswith("pair ") for e in events)


def test_snap_toward_stays_on_the_grid_within_eps_in():
    """The snapped x' is a grid point no farther than eps_in, each step in the target's
    direction, and the nearest grid point when that one fits."""
    gen = torch.Generator().manual_seed(7)
    grid = 0.05
    x = torch.round(torch.randn(6, generator=gen, dtype=torch.float64) / grid) * grid
    for eps in (0.05, 0.12, 0.5, 1.3):
        for _ in range(20):
            u = torch.randn(6, generator=gen, dtype=torch.float64)
            target = x + eps * u / u.norm()
            snapped = snap_toward(x, target, grid, eps)
            steps = (snapped - x) / grid
            assert torch.allclose(steps, torch.round(steps), atol=1e-9)  # on the grid
            grid_noise.snap_to_grid(snapped, grid)  # the smoother accepts it
            assert float((snapped - x).norm()) <= eps * (1 + 1e-9)
            real = (target - x) / grid
            assert bool((steps.round() * real >= 0).all())  # no step against the direction
            assert bool((steps.round().abs() <= real.abs().round()).all())
    inside = x + torch.tensor([0.049, -0.101, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    nearest = snap_toward(x, inside, grid, 1.0)  # rounding to nearest fits: kept
    assert torch.allclose((nearest - x) / grid, torch.tensor([1.0, -2, 0, 0, 0, 0]).double())


@pytest.mark.parametrize("name", ["linear", "clip"])
def test_grid_problem_masses_match_the_smoothers_lattice_noise(one_thread, name):
    """The wrapped problem's reference masses (ties included: the clip's atoms, lattice outputs)
    against independent draws of the noise stream the smoother itself uses."""
    problem = GridProblem(PROBLEMS[name](), 0.05, n_reference=100_000)
    k = grid_noise.snap_to_grid(problem.x, 0.05)
    stream = grid_noise.GridNoiseStream(k, 0.05, problem.sigma, torch.float64, 99, 1000)
    outs = problem.base_function(stream.take(100_000))
    metric = get_metric(problem.metric)
    z = problem.f_at_x() + 0.03
    d = metric(torch.as_tensor(z).expand_as(outs), outs).numpy()
    for r in list(np.quantile(d, [0.1, 0.5, 0.9])) + [float(np.max(np.abs(z - 1.0)))]:
        for strict in (False, True):
            empirical = float((d < r).mean() if strict else (d <= r).mean())
            exact = problem.mass(z, float(r), strict=strict)
            assert abs(empirical - exact) <= 5 * math.sqrt(2 * 0.25 / 100_000), (r, strict)
    left = problem.quantile_left_mass(z, 0.5)
    assert left <= 0.5 and problem.mass(z, 0.0, strict=True) <= left
    assert problem.optimal_radius(0.6) is None and problem.worst_mass(z, 1.0, 0.1) is None


def test_an_input_grid_setting_runs_on_the_grid(one_thread):
    """A short run: the events with a known truth under lattice noise and the end-to-end one
    at the snapped x', none without one (worst mass, optimal radius); the grid is part of the
    setting's label and its JSON record, and a problem off the grid is refused."""
    setting = Setting(problem="linear", eps_over_sigma=(1.0,), input_grid=0.05)
    problem = GridProblem(LinearProblem(), 0.05, n_reference=50_000)
    result = run_setting(setting, problem, trials=6, seed=1)
    names = {e.event.split()[0] for e in result.events}
    assert names == {
        "predict",
        "certify",
        "certify_inner",
        "certify_near",
        "zhat_inner_ball",
        "zhat_near_ball",
        "nearest",
        "end_to_end",
    }
    assert all(e.trials > 0 and e.count <= e.trials for e in result.events)
    e2e = next(e for e in result.events if e.event.startswith("end_to_end"))
    assert e2e.level == pytest.approx(0.2)
    x_adv = problem.adversarial_input(problem.f_at_x() + 0.1, 0.5)
    assert x_adv is not None and float((x_adv - problem.x).norm()) <= 0.5
    assert float((x_adv - problem.x).norm()) > 0.4  # most of eps_in: 10 grid steps
    assert "input_grid 0.05" in markdown_table([result])
    record = result.to_json()
    assert SettingResult.from_json(record).setting == setting
    del record["setting"]["input_grid"]  # a record from before the option: no grid
    assert SettingResult.from_json(record).setting.input_grid is None
    with pytest.raises(ValueError, match="GridProblem"):
        run_setting(setting, LinearProblem(), trials=1)


def test_a_nan_outputs_setting_counts_every_event_with_a_known_truth(one_thread):
    """The linear map with NaN outputs on 5% of the noise, outside every ball: the events of
    the linear map but the worst mass (not computed), the option in the label and the record."""
    setting = Setting(problem="nan-linear", eps_over_sigma=(1.0,), nan_outputs="outside")
    problem = NanProblem()
    assert problem.base_function(problem.x.unsqueeze(0)).isfinite().all()
    assert problem.optimal_radius(0.96) is None and problem.quantile_left_mass(None, 0.99) == 0.95
    result = run_setting(setting, problem, trials=8, seed=2)
    names = {e.event.split()[0] for e in result.events}
    assert names == {
        "predict", "radius", "certify", "certify_inner", "certify_near", "zhat_inner_ball",
        "zhat_near_ball", "nearest", "end_to_end",
    }  # fmt: skip
    assert all(e.count <= e.trials for e in result.events) and result.abstained < 8
    assert "NaN outside" in markdown_table([result])
    record = result.to_json()
    assert SettingResult.from_json(record).setting == setting
    del record["setting"]["nan_outputs"]  # a record from before the option
    assert SettingResult.from_json(record).setting.nan_outputs == "error"
    with pytest.raises(ValueError, match="nan_outputs='outside'"):
        run_setting(Setting(problem="nan-linear"), problem, trials=1)
