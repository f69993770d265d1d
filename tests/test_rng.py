"""Counter-based RNG: definition, backends, statistics, seeds."""
import numpy as np
import pytest
from scipy import stats

import naive
from zp_ref import rng

SEEDS = [0, 1, 12345, 2**63, 2**64 - 1]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("stream", [0, 3, 2**63])
def test_numpy_oracle_equals_naive_definition(seed, stream):
    got = rng.uniforms(seed, stream, 50, start=2**40, backend="numpy")
    want = [naive.u(seed, stream, 2**40 + j) for j in range(50)]
    assert got.tolist() == want


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
@pytest.mark.parametrize("seed", SEEDS)
def test_backends_give_identical_bits(backend, seed):
    want = rng.uniforms(seed, 7, 300, start=5, backend="numpy")
    got = rng.uniforms(seed, 7, 300, start=5, backend=backend)
    assert np.array_equal(got, want)


def test_scalar_u_matches_vector_and_counter_offsets():
    block = rng.uniforms(9, 2, 100, backend="numpy")
    assert rng.u(9, 2, 37) == block[37]
    assert np.array_equal(rng.uniforms(9, 2, 60, start=40, backend="cpu"), block[40:])


def test_values_in_unit_interval_with_53_bit_grid():
    x = rng.uniforms(3, 0, 10**5, backend="cpu")
    assert x.min() >= 0.0 and x.max() < 1.0
    assert np.all(x * 2.0**53 == np.floor(x * 2.0**53))


def test_chi_square_uniformity_of_one_million_draws():
    x = rng.uniforms(2026, 0, 10**6, backend="cpu")
    counts = np.bincount((x * 1000).astype(np.int64), minlength=1000)
    p = stats.chisquare(counts).pvalue
    assert p > 1e-3, p


def test_kolmogorov_smirnov_uniformity():
    x = rng.uniforms(77, 4, 10**6, backend="cpu")
    assert stats.kstest(x, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("pair", [((5, 0), (5, 1)), ((5, 0), (6, 0)), ((0, 0), (1, 0))])
def test_streams_and_seeds_are_uncorrelated(pair):
    n = 10**6
    a = rng.uniforms(*pair[0], n, backend="cpu")
    b = rng.uniforms(*pair[1], n, backend="cpu")
    r = np.corrcoef(a, b)[0, 1]
    assert abs(r) < 5 / np.sqrt(n)          # 5 standard errors under independence
    lag = np.corrcoef(a[:-1], a[1:])[0, 1]  # serial correlation within a stream
    assert abs(lag) < 5 / np.sqrt(n)


def test_pairs_fill_the_unit_square_evenly():
    x = rng.uniforms(11, 0, 2 * 10**6, backend="cpu").reshape(-1, 2)
    cells = (x[:, 0] * 20).astype(int) * 20 + (x[:, 1] * 20).astype(int)
    assert stats.chisquare(np.bincount(cells, minlength=400)).pvalue > 1e-3


def test_derive_seed_is_pure_and_distinct():
    seeds = [rng.derive_seed(42, i) for i in range(1000)]
    assert len(set(seeds)) == 1000
    assert rng.derive_seed(42, 17) == seeds[17]
    assert all(0 <= s < 2**64 for s in seeds)


@pytest.mark.parametrize("seed, exc", [(-1, ValueError), (2**64, ValueError), (1.0, TypeError),
                                       (True, TypeError), ("3", TypeError), (None, TypeError),
                                       (np.float64(2), TypeError)])
def test_bad_seeds_are_refused_with_the_argument_named(seed, exc):
    with pytest.raises(exc, match="seed"):
        rng.uniforms(seed, 0, 3)


def test_numpy_integer_seeds_are_accepted():
    assert np.array_equal(rng.uniforms(np.uint64(2**64 - 1), 0, 4, backend="numpy"),
                          rng.uniforms(2**64 - 1, 0, 4, backend="numpy"))


def test_bad_counts_and_backends():
    with pytest.raises(ValueError, match="n must"):
        rng.uniforms(0, 0, -1)
    with pytest.raises(TypeError, match="n must"):
        rng.uniforms(0, 0, 2.0)
    with pytest.raises(ValueError, match="backend"):
        rng.uniforms(0, 0, 3, backend="gpu")
    with pytest.raises(ValueError, match="start"):
        rng.uniforms(0, 0, 3, start=2**64 - 2)
