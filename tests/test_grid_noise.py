"""Exact noise for inputs on a grid (``input_grid``): the table, the sampler, the shift bound and
a base function that reads the low-order bits of its input."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats
from seeded_settings import (
    LAST_BIT,
    LAST_BIT_X,
    ODD_SHARE_GRID,
    ODD_SHARE_STANDARD,
    TINY_FLAGS,
    grid_smoother,
    last_bit_model,
    odd_share_smoother,
)

from centersmooth import bounds
from centersmooth.grid_noise import (
    FIXED_BITS,
    WORD,
    GridNoiseStream,
    _phi_minus_half,
    grid_slack,
    lattice_to_float,
    noise_scale,
    noise_table,
    snap_to_grid,
)


@pytest.mark.parametrize("scale", [0.3, 2.5, 63.75])
def test_table_is_the_rounded_gaussian_up_to_its_stated_distance(scale: float) -> None:
    table = noise_table(scale)
    counts = table.probabilities()
    assert sum(counts) == WORD and min(counts) >= 0
    atoms = np.arange(table.lowest, table.lowest + len(counts))
    exact = stats.norm.cdf((atoms + 0.5) / scale) - stats.norm.cdf((atoms - 0.5) / scale)
    table_p = np.array(counts, dtype=float) / WORD
    # each atom is rounded to a multiple of 2**-64; the double evaluation adds ~1e-16
    assert np.max(np.abs(table_p - exact)) < 1e-15
    assert 0 < table.tv < len(counts) * 2.0**-64  # half the sum of the roundings, at most
    assert grid_slack(scale, 784) == table.tv * 784


@pytest.mark.parametrize("scale", [0.3, 2.5, 25.5])
def test_tau_is_an_upper_bound_on_the_total_variation(scale: float) -> None:
    """The table's ``tau`` against the total variation recomputed with 60-digit mpmath from its
    own integers: never below it, and above it by no more than its rounding up to a float (the
    enclosures are 2**-256 wide). The counts are the nearest multiples of 2**-64."""
    import mpmath

    table = noise_table(scale)
    counts = table.probabilities()
    with mpmath.workdps(60):
        s = mpmath.mpf(Fraction(scale).numerator) / Fraction(scale).denominator

        def phi(j: float) -> mpmath.mpf:
            return mpmath.ncdf(mpmath.mpf(j) / s)

        atoms = range(table.lowest, table.lowest + len(counts))
        probs = [phi(j + 0.5) - phi(j - 0.5) for j in atoms]
        outside = phi(table.lowest - 0.5) + 1 - phi(table.lowest + len(counts) - 0.5)
        err = sum(abs(mpmath.mpf(c) / WORD - p) for c, p in zip(counts, probs, strict=True))
        exact = (err + outside) / 2
        assert mpmath.mpf(table.tv) >= exact
        assert mpmath.mpf(table.tv) <= exact * (1 + mpmath.mpf(2) ** -50)
        nearest = [int(mpmath.nint(p * WORD)) for p in probs]
    middle = len(counts) // 2  # atom 0 also takes the remainder of the sum
    assert counts[:middle] == nearest[:middle] and counts[middle + 1 :] == nearest[middle + 1 :]


def test_the_enclosures_of_phi_hold_the_exact_value() -> None:
    """``Phi(x) - 1/2`` lies between the two integers (in units of 2**-256) at random points
    ``k / (2 s)``, against 100-digit mpmath, and they are a few units apart."""
    import mpmath

    rng = np.random.default_rng(0)
    with mpmath.workdps(100):
        for _ in range(60):
            scale = float(10 ** rng.uniform(-0.5, 2.5))
            k = 2 * int(rng.integers(0, 14 * scale + 2)) + 1
            lo, hi = _phi_minus_half(k, scale)
            s = mpmath.mpf(Fraction(scale).numerator) / Fraction(scale).denominator
            exact = (mpmath.ncdf(k / (2 * s)) - mpmath.mpf(1) / 2) * mpmath.mpf(2) ** FIXED_BITS
            assert lo <= exact <= hi and hi - lo < 2**20


def test_the_noise_scale_never_understates_the_shift() -> None:
    """``s * grid >= sigma`` exactly (``||v|| / s`` is then at most ``eps_in / sigma``), with
    ``s`` the float ``sigma / grid`` or the next one up; ``fl(0.25 / fl(1/255))`` falls short and
    is raised, and the stream and the settings use the raised scale."""
    rng = np.random.default_rng(0)
    raised = 0
    for _ in range(3_000):
        sigma, grid = float(rng.uniform(0.01, 2.0)), float(1.0 / rng.integers(2, 1_000))
        s = noise_scale(sigma, grid)
        assert Fraction(s) * Fraction(grid) >= Fraction(sigma)
        assert s in (sigma / grid, math.nextafter(sigma / grid, math.inf))
        raised += s != sigma / grid
    assert raised > 500  # the plain quotient often falls short
    assert Fraction(0.25 / (1 / 255)) * Fraction(1 / 255) < Fraction(0.25)
    k = torch.tensor([3, 4])
    stream = GridNoiseStream(k, 1 / 255, 0.25, torch.float32, seed=0)
    assert stream.table.scale == noise_scale(0.25, 1 / 255) > 0.25 / (1 / 255)
    smoother = grid_smoother(lambda b: b, input_grid=1 / 255)
    assert smoother.grid_slack(784) == grid_slack(noise_scale(0.25, 1 / 255), 784)


def test_sampler_draws_the_atom_of_its_word_and_matches_the_table() -> None:
    table = noise_table(2.5)
    rng = np.random.Generator(np.random.PCG64(3))
    words = rng.bit_generator.random_raw(200_000)
    rng = np.random.Generator(np.random.PCG64(3))
    m = table.sample(rng, (200_000,))
    expected = np.searchsorted(table.bounds, words, side="right") + table.lowest
    assert np.array_equal(m, expected)  # the guide table only speeds up the exact search
    # chi-square against the exact probabilities (seeded: the statistic is a fixed number; a
    # correct sampler fails at p < 1e-4 once in 10^4 seeds)
    counts = np.array(table.probabilities(), dtype=float) / WORD
    keep = counts * m.size >= 5
    observed = np.bincount(m - table.lowest, minlength=len(counts)).astype(float)
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(counts[keep], counts[~keep].sum()) * m.size
    assert stats.chisquare(obs, exp).pvalue > 1e-4


def test_stream_is_reproducible_and_independent_of_the_batch_split() -> None:
    k = torch.tensor([[0, 3], [255, 128]])
    a = GridNoiseStream(k, 1 / 255, 0.25, torch.float32, seed=11)
    b = GridNoiseStream(k, 1 / 255, 0.25, torch.float32, seed=11)
    whole = a.take(700)
    parts = torch.cat([b.take(1), b.take(299), b.take(400)])
    assert torch.equal(whole, parts)
    assert whole.dtype == torch.float32 and whole.shape == (700, 2, 2)
    # every noisy input is the float of a lattice point, computed one way
    n = torch.round(whole.double() * 255).long()
    assert torch.equal(lattice_to_float(n, 1 / 255, torch.float32), whole)
    c = GridNoiseStream(k, 1 / 255, 0.25, torch.float32, seed=12)
    assert not torch.equal(c.take(700), whole)


def test_inputs_must_lie_on_the_grid() -> None:
    pixels = torch.arange(256, dtype=torch.float32) / 255  # float32(k / 255): on the grid
    assert torch.equal(snap_to_grid(pixels, 1 / 255), torch.arange(256))
    with pytest.raises(ValueError, match="not on the grid"):
        snap_to_grid(pixels + 1e-4, 1 / 255)
    smoother = grid_smoother(lambda b: b.reshape(b.shape[0], -1), input_grid=1 / 255)
    with pytest.raises(ValueError, match="not on the grid"):
        smoother.predict(torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="input_grid"):
        grid_smoother(lambda b: b, input_grid=-1.0)
    with pytest.raises(ValueError, match="sigma / input_grid"):
        grid_smoother(lambda b: b, input_grid=1e-9)


def test_shift_bound_with_slack_is_the_gaussian_one_moved_by_the_slack() -> None:
    eps = np.array([0.0, 0.1, 0.5])
    plain = bounds.shifted_mass(0.6, eps, 0.25)
    assert np.array_equal(bounds.shifted_mass(0.6, eps, 0.25, 0.0), plain)
    slack = 1e-6
    moved = bounds.shifted_mass(0.6, eps, 0.25, slack)
    want = stats.norm.cdf(stats.norm.ppf(0.6 + slack) + eps / 0.25) + slack
    # rounded up by bounds.LEVEL_MARGIN (and never below the plain value)
    assert np.all(moved >= want) and np.allclose(moved, want, rtol=2e-10, atol=0)
    assert np.all(moved > plain)
    assert bounds.shifted_mass(0.9999, 10.0, 0.25, 1e-3) == 1.0
    m0 = bounds.max_certifiable_eps(0.25, 100_000, 0.005 / 3, 0.05)
    m1 = bounds.max_certifiable_eps(0.25, 100_000, 0.005 / 3, 0.05, slack=slack)
    assert m0 - 1e-3 < m1 < m0


def test_defaults_are_unchanged_and_grid_levels_are_never_lower() -> None:
    f = lambda b: b.reshape(b.shape[0], -1)  # noqa: E731
    plain = grid_smoother(f)
    grid = grid_smoother(f, input_grid=1 / 255)
    assert plain.grid_slack() == 0.0 and plain.input_grid is None
    eps = np.array([0.0, 0.05, 0.25])
    for a, b in zip(plain.quantile_levels(eps), grid.quantile_levels(eps, dim=784), strict=True):
        assert np.all(b >= a) and np.all(b - a < 1e-12)
    assert grid.max_eps_in <= plain.max_eps_in


def test_exact_mode_certificate_holds_for_a_function_of_the_low_order_bits() -> None:
    grid = 1 / 255
    k = LAST_BIT_X
    x = lattice_to_float(k, grid, torch.float32)
    smoother = grid_smoother(last_bit_model, input_grid=grid, seed=LAST_BIT.seed)
    eps_in = 3 * grid
    cert = smoother.certify(x, eps_in)
    assert not cert.abstained and math.isfinite(cert.eps_out)
    # every lattice point within eps_in that moves coordinate 0 or 1 (by at most 3 steps); each
    # prediction accepts (seeded_settings.LAST_BIT), so every one is compared
    tried = 0
    for d0 in range(-3, 4):
        for d1 in range(-3, 4):
            if d0 * d0 + d1 * d1 > 9:
                continue
            shifted = k.clone()
            shifted[0] += d0
            shifted[1] += d1
            xp = lattice_to_float(shifted, grid, torch.float32)
            pred = smoother.predict(xp, seed=LAST_BIT.seed + 1000 + tried)
            tried += 1
            assert not pred.abstained
            gap = float(torch.linalg.vector_norm(pred.center - cert.center))
            assert gap <= cert.eps_out
    assert tried == 29 == LAST_BIT.uses - 1


def test_the_command_takes_a_fraction_and_refuses_inputs_off_the_grid(tmp_path, capsys):
    from centersmooth.cli import commands as cli

    model = tmp_path / "model.py"
    model.write_text(
        "import torch\n\ndef make():\n    torch.manual_seed(0)\n    return torch.nn.Linear(4, 3)\n"
    )
    on_grid = (np.arange(8, dtype=np.float32).reshape(2, 4) / 255).astype(np.float32)
    counts = TINY_FLAGS

    def run(inputs: np.ndarray, out: str) -> int:
        path = tmp_path / f"{out}.npy"
        np.save(path, inputs)
        argv = ["certify", "--model", f"{model}:make", "--inputs", str(path), "--sigma", "0.25"]
        argv += ["--eps-in", "0.05", "--input-grid", "1/255", "--quiet", *counts]
        return cli.main([*argv, "--out", str(tmp_path / f"{out}.jsonl")])

    assert run(on_grid, "good") == 0
    header = json.loads((tmp_path / "good.jsonl").read_text().splitlines()[0])
    assert 1 / 255 in _values(header)
    capsys.readouterr()
    assert run(on_grid + 0.001, "off") == 2
    err = capsys.readouterr().err
    assert "not on the grid" in err and "Traceback" not in err
    assert not (tmp_path / "off.jsonl").exists()  # refused before the file exists


def _values(record):
    """Every scalar in a nested JSON record."""
    if isinstance(record, dict):
        return [v for value in record.values() for v in _values(value)]
    if isinstance(record, list):
        return [v for value in record for v in _values(value)]
    return [record]


def test_low_order_bits_break_the_standard_mode_not_the_exact_one():
    """At x = 0 with sigma 0.1, fl32(0.1 z) ends in an odd bit about 60% of the time and
    fl32(1e-7 + 0.1 z) about 43%: the standard mode certifies eps_out 0.03 for eps_in 2.8e-6,
    and the smoothed output at x' = x + 1e-7 is 0.17 away, whatever its seed. With the noise on
    the grid the same function keeps its certificate at every grid point tried."""
    x = torch.zeros(784)
    x_near = torch.full((784,), 1e-7)
    standard = odd_share_smoother(ODD_SHARE_STANDARD.seed)
    eps_in = float((x_near - x).norm())
    cert = standard.certify(x, eps_in)
    assert not cert.abstained and cert.eps_out < 0.05
    for seed in range(ODD_SHARE_STANDARD.seed + 1, ODD_SHARE_STANDARD.seed + 4):
        moved = standard.predict(x_near, seed=seed)
        assert not moved.abstained
        assert float((moved.center - cert.center).abs()) > 3 * cert.eps_out

    step = 1 / 255
    exact = odd_share_smoother(ODD_SHARE_GRID.seed, input_grid=step)
    cert = exact.certify(x, 2 * step)
    assert not cert.abstained and math.isfinite(cert.eps_out)
    shifts = [{0: 1}, {0: -1}, {0: 2}, {0: -2}, {0: 1, 1: 1}, {3: -1, 9: 1}, {783: 2}]
    for seed, shift in enumerate(shifts, start=ODD_SHARE_GRID.seed + 10):
        x_grid = x.clone()
        for i, steps in shift.items():
            x_grid[i] = steps * step
        assert float((x_grid - x).norm()) <= 2 * step + 1e-9
        moved = exact.predict(x_grid, seed=seed)
        assert not moved.abstained
        assert float((moved.center - cert.center).abs()) <= cert.eps_out


@pytest.mark.cuda
def test_the_exact_noise_is_the_same_on_cuda_as_on_the_cpu():
    """The integers are drawn on the CPU and n * grid is a correctly rounded float64 product,
    so a seed gives the same noisy inputs, bit for bit, on every device."""
    k = torch.arange(-300, 484, dtype=torch.int64)
    cpu = GridNoiseStream(k, 1 / 255, 0.25, torch.float32, seed=3).take(1_000)
    cuda = GridNoiseStream(k.cuda(), 1 / 255, 0.25, torch.float32, seed=3).take(1_000)
    assert cuda.device.type == "cuda" and torch.equal(cpu, cuda.cpu())


@pytest.mark.parametrize("sizes", [[1_000], [1, 255, 300, 2, 442]])
def test_drawing_ahead_and_narrow_integers_give_the_same_noise(sizes):
    """Blocks drawn ahead on another thread, in int16, and of another size are the integers of
    the plain sequential draw (the generator's words in order)."""
    k = torch.arange(-300, 484, dtype=torch.int64)
    table = noise_table(0.25 * 255)
    rng = np.random.Generator(np.random.PCG64(3))
    words = table.sample(rng, (1_000, 784))  # int64, one block
    want = lattice_to_float(k + torch.from_numpy(words), 1 / 255, torch.float32)
    for ahead, block in ((False, 256), (True, 256), (True, 97)):
        stream = GridNoiseStream(k, 1 / 255, 0.25, torch.float32, seed=3, block=block, ahead=ahead)
        assert stream.atom_dtype == torch.int16
        got = torch.cat([stream.take(n) for n in sizes])
        assert torch.equal(got, want), (ahead, block)


def test_atoms_beyond_int16_travel_as_int32(monkeypatch):
    import centersmooth.grid_noise as grid_noise

    wide = grid_noise.NoiseTable(1.0, -40_000, np.array([2**63], dtype=np.uint64), 0.0)
    monkeypatch.setattr(grid_noise, "noise_table", lambda scale: wide)
    stream = GridNoiseStream(torch.zeros(50, dtype=torch.int64), 1.0, 1.0, torch.float64, seed=0)
    assert stream.atom_dtype == torch.int32
    values = stream.take(300).unique().tolist()
    assert values == [-40_000.0, -39_999.0]


@pytest.mark.cuda
def test_cuda_grid_noise_drawn_ahead_into_page_locked_memory_is_the_cpus():
    from centersmooth.sampling import BaseFunction, PreparedInputs, draw_noisy

    x = (torch.arange(784) % 256).float() / 255
    noise = {}
    for name in ("cpu", "cuda"):
        device = torch.device(name)
        base = BaseFunction(lambda b: b, device)
        inputs = PreparedInputs.build([x], None, 5, 0.25, base, device, 1 / 255)
        noise[name] = torch.cat([draw_noisy(inputs.streams, n) for n in (1, 4_000, 6_999)])
        stream = inputs.streams[0]
        assert (stream.ahead, stream.pinned) == (name == "cuda", name == "cuda")
    assert torch.equal(noise["cpu"], noise["cuda"].cpu())
