"""|Q| bands, largest-remainder counts and stratified sampling (zp_ref.bands)."""
import numpy as np
import pytest
from scipy import stats

from zp_ref.bands import (DEFAULT_EDGES, band_counts, band_of, effective_mix,
                          largest_remainder, stratified_sample)
from zp_ref.rng import derive_seed
from zp_ref.sampling import sample_indices, uniform_indices
from zp_ref.weighting import importance_weights

BACKENDS = ["numpy", "cpu", "cuda"]
MIX = [0.1, 0.2, 0.3, 0.15, 0.25]


def pool(n, seed=0):
    """Signed |q| spread log-uniformly over [1e-7, 10]: every default band populated."""
    g = np.random.default_rng(seed)
    return g.choice([-1.0, 1.0], n) * 10.0 ** g.uniform(-7, 1, n)


# ------------------------------------------------------------------ band_of / counts
@pytest.mark.parametrize("backend", BACKENDS)
def test_band_of_counts_edges_strictly_below(backend):
    q = [0.0, 1e-5, -1e-5, np.nextafter(1e-5, 1.0), 1e-4, -5e-3, 1e-2, 0.0100001, np.inf,
         -np.inf, 3.0]
    expected = [0, 0, 0, 1, 1, 3, 3, 4, 4, 4, 4]
    got = band_of(q, backend=backend)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert band_counts(q, backend=backend).tolist() == [3, 2, 0, 2, 4]


@pytest.mark.parametrize("backend", BACKENDS)
def test_band_of_custom_edges_and_empty(backend):
    assert band_of([-2.0, 0.5, 1.0, 1.5], [1.0], backend=backend).tolist() == [1, 0, 0, 1]
    assert band_of([], backend=backend).dtype == np.int64
    assert band_of([], backend=backend).size == 0
    assert band_counts([], backend=backend).tolist() == [0] * 5


def test_band_backends_agree():
    q = np.concatenate([pool(250, 1), [0.0, np.inf, -np.inf], np.asarray(DEFAULT_EDGES)])
    ref = band_of(q, backend="numpy")
    for backend in ("cpu", "cuda"):
        assert np.array_equal(band_of(q, backend=backend), ref)
        assert np.array_equal(band_counts(q, backend=backend), np.bincount(ref, minlength=5))
    big = pool(300_000, 2)                       # several histogram chunks on cpu
    ref = band_of(big, backend="numpy")
    assert np.array_equal(band_of(big, backend="cpu"), ref)
    assert np.array_equal(band_counts(big, backend="cpu"), np.bincount(ref, minlength=5))


@pytest.mark.parametrize("bad, exc, words", [
    (dict(q=[0.1, np.nan, np.nan]), ValueError, ["q", "2 NaN", "index 1"]),
    (dict(q=["a"]), TypeError, ["q"]),
    (dict(q=[[0.1, 0.2]]), ValueError, ["q", "(N, 1)"]),
    (dict(q=[0.1], edges=[1e-3, 1e-4]), ValueError, ["edges", "increasing"]),
    (dict(q=[0.1], edges=[1e-3, 1e-3]), ValueError, ["edges", "increasing"]),
    (dict(q=[0.1], edges=[-1.0, 1.0]), ValueError, ["edges", ">= 0"]),
    (dict(q=[0.1], edges=[1.0, np.inf]), ValueError, ["edges", "finite"]),
    (dict(q=[0.1], edges=[]), ValueError, ["edges", "empty"]),
    (dict(q=[0.1], backend="gpu"), ValueError, ["backend", "cuda"]),
])
@pytest.mark.parametrize("fn", [band_of, band_counts])
def test_band_bad_inputs(fn, bad, exc, words):
    with pytest.raises(exc) as err:
        fn(**bad)
    for w in words:
        assert w in str(err.value)


def test_band_counts_cuda_band_limit():
    with pytest.raises(ValueError, match="edges: backend='cuda' counts at most 64 bands"):
        band_counts([0.1], np.arange(1.0, 65.0), backend="cuda")


# ------------------------------------------------------------------ largest remainder
@pytest.mark.parametrize("n, shares, expected", [
    (7, [0.2] * 5, [2, 2, 1, 1, 1]),                 # ties go to the lower bands
    (103, MIX, [10, 21, 31, 15, 26]),
    (6, [0.25, 0.25, 0.5], [2, 1, 3]),               # remainders .5, .5, 0: band 0 wins
    # exact float64 shares: 5 * 0.3 = 1.4999999999999999445, 5 * 0.1 = 0.5000000000000000278
    (5, [0.3, 0.1, 0.6], [1, 1, 3]),
    (3, [0.5, 0.0, 0.5], [2, 0, 1]),
    (1, [0.0, 0.0, 0.0, 0.0, 1.0], [0, 0, 0, 0, 1]),
    (0, MIX, [0, 0, 0, 0, 0]),
    (10, [0.1, 0.2, 0.7], [1, 2, 7]),
])
def test_largest_remainder_examples(n, shares, expected):
    got = largest_remainder(n, shares)
    assert got.dtype == np.int64 and got.tolist() == expected


@pytest.mark.parametrize("n", [10**10, 2**39, 2**40 - 1, 999_999_999_989])
@pytest.mark.parametrize("shares", [MIX, [0.2] * 5, [0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3],
                                    [0.3, 0.1 + 1e-12, 0.6 - 1e-12]])
def test_largest_remainder_is_exact_for_large_n(n, shares):
    """Exact rationals: the counts sum to n, and each is floor or ceil of the exact
    n * s_b / sum(s), with the rounded-up bands those of the largest exact remainders."""
    from fractions import Fraction
    c = largest_remainder(n, shares)
    assert int(c.sum()) == n
    exact = [Fraction(s) for s in np.asarray(shares, float).tolist()]
    t = [n * s / sum(exact) for s in exact]
    floors = [x.numerator // x.denominator for x in t]
    up = [int(ci) - f for ci, f in zip(c, floors)]
    assert set(up) <= {0, 1}
    rem = [x - f for x, f in zip(t, floors)]
    lowest_up = min((r for r, u in zip(rem, up) if u), default=1)
    assert all(r <= lowest_up for r, u in zip(rem, up) if not u)


def test_largest_remainder_properties():
    g = np.random.default_rng(7)
    for _ in range(300):
        k = int(g.integers(2, 9))
        shares = g.dirichlet(np.ones(k)) * (g.random(k) > 0.3)
        if shares.sum() == 0:
            continue
        shares = shares / shares.sum()
        n = int(g.integers(0, 5000))
        c = largest_remainder(n, shares)
        t = n * shares
        rem = t - np.floor(t)
        up = c - np.floor(t).astype(np.int64)
        assert c.sum() == n
        assert set(up.tolist()) <= {0, 1}
        assert (c[shares == 0] == 0).all()
        # every band rounded up has a remainder >= every positive-share band not rounded up,
        # and on equal remainders the lower band is the one rounded up
        for a in np.flatnonzero(up == 1):
            for b in np.flatnonzero((up == 0) & (shares > 0)):
                assert rem[a] > rem[b] or (rem[a] == rem[b] and a < b)


def test_effective_mix():
    mix = np.array(MIX)
    assert effective_mix(mix, np.array([5, 5, 5, 5, 5])) is not mix
    assert effective_mix(mix, np.array([5, 5, 5, 5, 5])).tolist() == MIX
    np.testing.assert_allclose(effective_mix(mix, np.array([0, 0, 3, 3, 3])),
                               [0, 0, 0.3 / 0.7, 0.15 / 0.7, 0.25 / 0.7], rtol=1e-15)
    # no mass on any available band: in proportion to the drawable members
    assert effective_mix(np.array([1.0, 0, 0, 0, 0]),
                         np.array([0, 1, 3, 0, 4])).tolist() == [0, 0.125, 0.375, 0, 0.5]


# ------------------------------------------------------------------ stratified sampling
def reference(q, n, mix, seed, within, edges=DEFAULT_EDGES):
    """The documented definition, written out with the public building blocks."""
    bands = band_of(q, edges, backend="numpy")
    w = importance_weights(q, weight_power=2.0, min_q_abs=1e-6, max_weight=1.7976931348623157e308,
                           normalize=False, backend="numpy")
    drawable = np.bincount(bands[w > 0] if within == "importance" else bands,
                           minlength=len(edges) + 1)
    alloc = largest_remainder(n, effective_mix(np.asarray(mix, float), drawable))
    out = []
    for b, k in enumerate(alloc):
        if k:
            members = np.flatnonzero(bands == b)
            s = derive_seed(seed, b)
            j = (uniform_indices(members.size, int(k), seed=s, backend="numpy")
                 if within == "uniform" else
                 sample_indices(w[members], int(k), seed=s, backend="numpy"))
            out.append(members[j])
    return np.concatenate(out)


@pytest.mark.parametrize("within", ["uniform", "importance"])
def test_stratified_definition_and_exact_counts(within):
    q = pool(3000, 3)
    g = np.random.default_rng(11)
    for trial in range(12):
        mix = g.multinomial(64, g.dirichlet(np.ones(5))) / 64.0   # dyadic: sums to 1 exactly
        n = int(g.integers(1, 400))
        seed = int(g.integers(0, 2**63))
        idx, info = stratified_sample(q, n, mix=mix, seed=seed, within=within, backend="numpy")
        assert idx.dtype == np.int64 and idx.shape == (n,)
        assert np.array_equal(idx, reference(q, n, mix, seed, within))
        lr = largest_remainder(n, mix).tolist()
        assert info["target"] == lr == info["achieved"]
        assert info["redistributed"] == [0] * 5
        assert np.bincount(band_of(q[idx]), minlength=5).tolist() == lr
        assert info["members"] == np.bincount(band_of(q), minlength=5).tolist()


def test_stratified_is_band_major_and_seeded():
    q = pool(1000, 4)
    idx, _ = stratified_sample(q, 200, mix=MIX, seed=9)
    assert (np.diff(band_of(q[idx])) >= 0).all()
    again, _ = stratified_sample(q, 200, mix=MIX, seed=9)
    other, _ = stratified_sample(q, 200, mix=MIX, seed=10)
    assert np.array_equal(idx, again) and not np.array_equal(idx, other)


@pytest.mark.parametrize("within", ["uniform", "importance"])
def test_stratified_redistribution(within):
    q = pool(3000, 5)
    q = q[np.abs(q) > 1e-4]                                 # bands 0 and 1 empty
    idx, info = stratified_sample(q, 50, mix=MIX, seed=1, within=within)
    # target: exact 50 * 0.15 (float64) = 7.4999.. < 12.5 = 50 * 0.25, so band 4 rounds up
    # m = [0, 0, .3, .15, .25] / .7; 50 m = 21.43, 10.71, 17.86 -> 21, 10, 17 + 2 units
    assert info["target"] == [5, 10, 15, 7, 13]
    assert info["achieved"] == [0, 0, 21, 11, 18]
    assert info["redistributed"] == [-5, -10, 6, 4, 5]
    assert np.bincount(band_of(q[idx]), minlength=5).tolist() == info["achieved"]
    np.testing.assert_allclose(info["mix"], [0, 0, 0.3 / 0.7, 0.15 / 0.7, 0.25 / 0.7],
                               rtol=1e-15)
    # all the mass on empty bands: spread in proportion to the members
    members = info["members"]
    _, info = stratified_sample(q, 100, mix=[0.5, 0.5, 0, 0, 0], seed=1, within=within)
    assert info["achieved"] == largest_remainder(100, np.array(members) / sum(members)).tolist()


def test_stratified_importance_skips_infinite_q():
    q = np.array([1e-6, 2e-3, np.inf, -np.inf, np.inf])    # band 4 holds only +-inf
    idx, info = stratified_sample(q, 10, mix=[0.2, 0.2, 0.2, 0.2, 0.2], seed=0,
                                  within="importance")
    assert info["members"] == [1, 0, 0, 1, 3] and info["drawable"] == [1, 0, 0, 1, 0]
    assert info["achieved"] == [5, 0, 0, 5, 0]
    assert np.isfinite(q[idx]).all()
    _, info = stratified_sample(q, 10, mix=[0.2] * 5, seed=0, within="uniform")
    assert info["achieved"] == [4, 0, 0, 3, 3]       # 1/3 each: 3 + 3 + 3, band 0 gets the 10th
    with pytest.raises(ValueError, match="no pool entry can be drawn"):
        stratified_sample([np.inf, -np.inf], 3, mix=MIX, seed=0, within="importance")


def test_stratified_frequencies_inside_a_band():
    """Inside a band the draws follow the uniform / importance law (chi-square, p > 1e-3)."""
    q = np.array([2e-3, 3e-3, 5e-3, 8e-3, 1e-2, 0.5, 1.0])   # band 3: first five
    mix = [0, 0, 0, 1.0, 0]
    idx, _ = stratified_sample(q, 20000, mix=mix, seed=123, within="uniform")
    f = np.bincount(idx, minlength=7)[:5]
    assert stats.chisquare(f, np.full(5, 4000.0)).pvalue > 1e-3
    idx, _ = stratified_sample(q, 20000, mix=mix, seed=123, within="importance")
    f = np.bincount(idx, minlength=7)[:5]
    w = q[:5] ** -2.0
    assert stats.chisquare(f, 20000 * w / w.sum()).pvalue > 1e-3


@pytest.mark.parametrize("within", ["uniform", "importance"])
def test_stratified_backends_agree(within):
    q = pool(4000, 6)
    ref, info = stratified_sample(q, 500, mix=MIX, seed=77, within=within, backend="numpy")
    got, info_cpu = stratified_sample(q, 500, mix=MIX, seed=77, within=within, backend="cpu")
    assert np.array_equal(ref, got) and info == info_cpu
    small = pool(80, 7)
    ref, info = stratified_sample(small, 25, mix=MIX, seed=78, within=within, backend="numpy")
    got, info_cuda = stratified_sample(small, 25, mix=MIX, seed=78, within=within,
                                       backend="cuda")
    assert np.array_equal(ref, got) and info == info_cuda


def test_stratified_zero_draws():
    idx, info = stratified_sample([], 0, mix=MIX, seed=0)
    assert idx.dtype == np.int64 and idx.size == 0
    assert info["target"] == info["achieved"] == [0] * 5
    idx, info = stratified_sample(pool(10), 0, mix=MIX, seed=0, within="importance")
    assert idx.size == 0 and info["redistributed"] == [0] * 5


def test_stratified_mix_renormalised_within_tolerance():
    mix = np.array(MIX) * (1 + 5e-10)
    a, _ = stratified_sample(pool(500), 77, mix=mix, seed=3)
    b, _ = stratified_sample(pool(500), 77, mix=MIX, seed=3)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(mix=[0.5, 0.5]), ValueError, ["mix", "one entry per band"]),
    (dict(mix=[0.1, 0.2, 0.3, 0.15, 0.2]), ValueError, ["mix", "sum to 1"]),
    (dict(mix=[-0.1, 0.3, 0.3, 0.25, 0.25]), ValueError, ["mix", ">= 0"]),
    (dict(mix=[np.nan, 0.3, 0.3, 0.2, 0.2]), ValueError, ["mix", "finite"]),
    (dict(within="stratified"), ValueError, ["within", "importance"]),
    (dict(seed=-1), ValueError, ["seed"]),
    (dict(seed=1.5), TypeError, ["seed"]),
    (dict(n=-1), ValueError, ["n", ">= 0"]),
    (dict(n=2.0), TypeError, ["n"]),
    (dict(q=[0.1, np.nan]), ValueError, ["q", "NaN"]),
    (dict(q=[]), ValueError, ["q", "empty"]),
    (dict(weight_power=-1.0), ValueError, ["weight_power"]),
    (dict(min_q_abs=0.0), ValueError, ["min_q_abs"]),
    (dict(max_weight=0.0), ValueError, ["max_weight"]),
    (dict(edges=[1e-3, 1e-4, 1e-2, 1e-1]), ValueError, ["edges"]),
    (dict(backend="tpu"), ValueError, ["backend"]),
])
def test_stratified_bad_inputs(kwargs, exc, words):
    args = dict(q=pool(50), n=10, mix=MIX, seed=0)
    args.update(kwargs)
    with pytest.raises(exc) as err:
        stratified_sample(args.pop("q"), args.pop("n"), **args)
    for w in words:
        assert w in str(err.value)
