"""zp_ref.bridges.dask (also importable as zp_ref.dask_bridge) on a 2-process LocalCluster bound to loopback: every result equals
the in-memory API on the concatenated pool (indices exactly, weights to rtol 1e-12)."""
import os
import warnings

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from zp_ref import dask_bridge  # noqa: E402
from zp_ref.bridges import dask as db  # noqa: E402
from zp_ref.bands import band_of, stratified_sample  # noqa: E402
from zp_ref.sampling import PREFIX_BLOCK  # noqa: E402
from zp_ref.rng import uniforms  # noqa: E402
from zp_ref.sampling import sample_indices  # noqa: E402
from zp_ref.weighting import importance_weights  # noqa: E402

#: Chunk sizes: empty chunks, a one-entry chunk, boundaries off the 512-block grid.
ODD_CHUNKS = (0, 700, 1, 0, 1500, 3000, 44_799, 0, 20_000, 30_000)
MIX = [0.3, 0.2, 0.2, 0.2, 0.1]


@pytest.fixture(scope="module")
def client(dask_cluster):
    with distributed.Client(dask_cluster) as c:
        yield c


@pytest.fixture(scope="module")
def pool():
    """q (N,) in [-1, 1) with a chunk of +inf (weight 0), and its odd chunking."""
    q = uniforms(3, 20, sum(ODD_CHUNKS), backend="numpy") * 2.0 - 1.0
    q[2201:5201] = np.inf                       # exactly the chunk of 3000
    return q, da.from_array(q, chunks=(ODD_CHUNKS,))


@pytest.fixture(scope="module")
def weights(client, pool):
    """The pool's normalised weights: in memory (computed by dask) and persisted."""
    wd = db.importance_weights(pool[1]).persist()
    return wd.compute(), wd


# ------------------------------------------------------------------ weights
@pytest.mark.parametrize("kwargs", [{}, {"weight_power": 1.5, "temperature": 2.0},
                                    {"weight_power": 3.0, "max_weight": 1e4, "min_q_abs": 1e-3}])
def test_importance_weights_match_in_memory(client, pool, kwargs):
    q, qd = pool
    got = db.importance_weights(qd, **kwargs).compute()
    np.testing.assert_allclose(got, importance_weights(q, **kwargs), rtol=1e-12, atol=0)
    assert got[2201:5201].max() == 0.0
    raw = db.importance_weights(qd, normalize=False, **kwargs).compute()
    np.testing.assert_array_equal(raw, importance_weights(q, normalize=False, **kwargs))


def test_importance_weights_nan_policy(client, pool):
    q, _ = pool
    q = q.copy()
    q[[30_000, 50_123]] = np.nan
    qd = da.from_array(q, chunks=(ODD_CHUNKS,))
    with pytest.raises(ValueError, match=r"2 NaN value\(s\), first at index 30000"):
        db.importance_weights(qd)
    with pytest.warns(RuntimeWarning, match="2 NaN"):
        got = db.importance_weights(qd, nan_policy="omit").compute()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = importance_weights(q, nan_policy="omit")
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert got[30_000] == got[50_123] == 0.0
    # unnormalised: the draws reuse the eager pass's block totals, NaN weights are 0
    with pytest.warns(RuntimeWarning, match="2 NaN"):
        wd = db.importance_weights(qd, nan_policy="omit", normalize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        w = importance_weights(q, nan_policy="omit", normalize=False)
    np.testing.assert_array_equal(db.sample_indices(wd, 50_000, seed=3),
                                  sample_indices(w, 50_000, seed=3, backend="numpy"))


# ------------------------------------------------------------------ draws
@pytest.mark.parametrize("seed", [0, 1, 2**64 - 1])
def test_sample_indices_equal_in_memory(weights, seed):
    w, wd = weights
    got = db.sample_indices(wd, 20_000, seed=seed)
    np.testing.assert_array_equal(got, sample_indices(w, 20_000, seed=seed, backend="numpy"))
    assert not np.any((got >= 2201) & (got < 5201))          # the all-zero chunk
    got = db.sample_indices(wd, 5_000, seed=seed, replace=False)
    np.testing.assert_array_equal(
        got, sample_indices(w, 5_000, seed=seed, replace=False, backend="numpy"))
    assert np.unique(got).size == 5_000


def test_draws_in_blocks_split_over_three_chunks(client):
    # block 1 (entries 512..1023) is split over chunks [0, 600), [600, 601), [601, 2000);
    # only it has weight, so every draw is resolved from the pieces on the client
    assert PREFIX_BLOCK == 512
    w = np.zeros(2000)
    w[512:1024] = np.linspace(1.0, 2.0, 512)
    wd = da.from_array(w, chunks=((600, 1, 0, 1399),))
    for seed in range(4):
        got = db.sample_indices(wd, 3000, seed=seed)
        np.testing.assert_array_equal(got, sample_indices(w, 3000, seed=seed, backend="numpy"))
        assert got.min() >= 512 and got.max() < 1024
        assert np.any(got == 600)                            # the one-entry chunk is drawn


def test_target_rounded_up_to_total_takes_last_nonzero(client):
    """u * total can round up to the total (u < 1): the oracle then takes the last
    nonzero weight. Subnormal weights of 1 and 5 units in the last place make that
    happen for some of 200 draws; the pool is split so that the last nonzero weight
    and the corner are resolved on the client."""
    w = np.array([5e-324, 2.5e-323, 0.0, 0.0])
    total = 3e-323
    assert (uniforms(4, 0, 200, backend="numpy") * total >= total).any()     # corner hit
    want = sample_indices(w, 200, seed=4, backend="numpy")
    for chunks in ((1, 1, 2), (2, 2), (4,)):
        got = db.sample_indices(da.from_array(w, chunks=(chunks,)), 200, seed=4)
        np.testing.assert_array_equal(got, want)
    assert set(want.tolist()) == {0, 1}


def test_without_replacement_takes_every_positive_weight(client):
    w = np.r_[np.zeros(1000), np.arange(1.0, 3001.0), np.zeros(500)]
    wd = da.from_array(w, chunks=((999, 1000, 1, 1500, 1000),))
    for seed in (5, 6):
        got = db.sample_indices(wd, 3000, seed=seed, replace=False)
        np.testing.assert_array_equal(
            got, sample_indices(w, 3000, seed=seed, replace=False, backend="numpy"))
    with pytest.raises(ValueError, match="n=3001 draws without replacement"):
        db.sample_indices(wd, 3001, seed=0, replace=False)


def test_bad_inputs_name_the_argument(client):
    w = np.ones(3000)
    wd = da.from_array(w, chunks=1000)
    with pytest.raises(TypeError, match="weights must be a 1-D dask.array.Array"):
        db.sample_indices(w, 3, seed=0)
    with pytest.raises(ValueError, match=r"weights must be a 1-D dask array, got shape"):
        db.sample_indices(da.ones((4, 4), chunks=2), 3, seed=0)
    with pytest.raises(TypeError, match="weights must hold real numbers"):
        db.sample_indices(da.ones(10, dtype=bool, chunks=5), 3, seed=0)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        db.sample_indices(wd[wd > 0], 3, seed=0)
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        db.sample_indices(wd, -1, seed=0)
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        db.sample_indices(wd, 3, seed=1.5)
    with pytest.raises(TypeError, match="replace must be True or False"):
        db.sample_indices(wd, 3, seed=0, replace="no")
    bad = w.copy()
    bad[[2500, 2700]] = -1.0
    with pytest.raises(ValueError, match=r"2 negative value\(s\), first at index 2500"):
        db.sample_indices(da.from_array(bad, chunks=1000), 3, seed=0)
    bad[[2500, 2700]] = [np.inf, 1.0]
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\), first at index 2500"):
        db.sample_indices(da.from_array(bad, chunks=1000), 3, seed=0)
    with pytest.raises(ValueError, match="weights sum to 0"):
        db.sample_indices(da.zeros(3000, chunks=1000), 3, seed=0)
    with pytest.raises(ValueError, match="the sum of the weights overflows"):
        db.sample_indices(da.full(3000, 1e306, chunks=1000), 3, seed=0)
    with pytest.raises(ValueError, match="q must not be empty"):
        db.importance_weights(da.zeros(0, chunks=1))
    with pytest.raises(ValueError, match="weight_power must be in"):
        db.importance_weights(wd, weight_power=-1.0)
    with pytest.raises(ValueError, match="backend must be one of"):
        db.band_of(wd, backend="gpu")


# ------------------------------------------------------------------ refusal parity
INF, NAN = np.inf, np.nan
OVERFLOW = {"max_weight": 1e308, "min_q_abs": 1e-300}      # weights of 1e308 each
Q_CASES = {"ok": [0.1, -0.2, INF, 0.3], "nan": [1.0, NAN, 0.5], "all_inf": [INF, -INF, INF],
           "near_pole": [1e-300] * 4, "near_pole_nan": [1e-300, NAN, 1e-300], "empty": [],
           "ints": [1, 2, 3]}
Q_KWARGS = {"default": {}, "overflow": OVERFLOW, "overflow_omit": {**OVERFLOW, "nan_policy": "omit"},
            "overflow_raw": {**OVERFLOW, "normalize": False}, "omit": {"nan_policy": "omit"},
            "bad_policy": {"nan_policy": "drop"}, "bad_normalize": {"normalize": 1},
            "bad_backend": {"backend": "gpu"}, "bad_temperature": {"temperature": 0.0},
            "tempered_overflow": {"max_weight": 1e300, "temperature": 0.5}}
W_CASES = {"ok": [1.0, 2.0, 0.0, 3.0], "negative": [1.0, -1.0, 2.0], "nan": [1.0, NAN],
           "inf": [1.0, INF], "sum_overflows": [1e308, 1e308, 1.0], "zeros": [0.0, 0.0],
           "subnormal": [5e-324, 0.0, 1e-320], "empty": [], "ints": [1, 2, 3]}
DRAW_ARGS = [(n, replace, seed) for n in (0, 2, 3, 5, -1, 2.0, 2**60)
             for replace in (True, False, "yes") for seed in (0, -1, 2**64, 0.5, True)]


def outcome(call):
    """None when the call (computed, for a dask result) succeeds, else the exception type."""
    try:
        result = call()
        if hasattr(result, "compute"):
            result.compute()
        return None
    except (TypeError, ValueError) as exc:
        return type(exc)


@pytest.mark.parametrize("case", sorted(Q_CASES))
def test_importance_weights_refuse_exactly_what_the_in_memory_api_refuses(case):
    """Side by side over 10 argument sets: the same success or the same exception type
    (the overflowing total used to return zeros on dask)."""
    q = np.asarray(Q_CASES[case], dtype=float)
    qd = da.from_array(q, chunks=2)
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)        # nan_policy="omit" reports
        for name, kwargs in Q_KWARGS.items():
            want = outcome(lambda: importance_weights(q, **kwargs))
            assert outcome(lambda: db.importance_weights(qd, **kwargs)) == want, name
    if case == "near_pole":
        with pytest.raises(ValueError, match="the sum of the 4 weights overflows float64"):
            db.importance_weights(qd, **OVERFLOW)


@pytest.mark.parametrize("case", sorted(W_CASES))
def test_sample_indices_refuse_exactly_what_the_in_memory_api_refuses(case):
    """Side by side over 105 (n, replace, seed) sets: the same success or the same
    exception type (an overflowing sum without replacement used to be accepted)."""
    w = np.asarray(W_CASES[case], dtype=float)
    wd = da.from_array(w, chunks=2)
    with dask.config.set(scheduler="synchronous"):
        for n, replace, seed in DRAW_ARGS:
            want = outcome(lambda: sample_indices(w, n, seed=seed, replace=replace))
            got = outcome(lambda: db.sample_indices(wd, n, seed=seed, replace=replace))
            assert got == want, (n, replace, seed)
    if case == "sum_overflows":
        with pytest.raises(ValueError, match="the sum of the weights overflows"):
            db.sample_indices(wd, 2, seed=0, replace=False)


STRATIFIED_ARGS = [dict(n=n, mix=mix, within=within, seed=seed, max_weight=cap, min_q_abs=floor)
                   for n in (0, 5, -1, 2**40, 2.0) for mix in ([0.2] * 5, [0.5, 0.5])
                   for within in ("uniform", "importance", "x") for seed in (0, -1)
                   for cap, floor in ((None, 1e-6), (1e308, 1e-300))]


@pytest.mark.parametrize("case", ["ok", "nan", "all_inf", "empty", "near_pole"])
def test_stratified_sample_refuses_exactly_what_the_in_memory_api_refuses(case):
    """Side by side over 120 argument sets: the same success or the same exception type."""
    q = np.asarray({**Q_CASES, "ok": [0.1, 1e-6, 2e-3, INF, 0.5]}[case], dtype=float)
    qd = da.from_array(q, chunks=2)
    with dask.config.set(scheduler="synchronous"):
        for kwargs in STRATIFIED_ARGS:
            want = outcome(lambda: stratified_sample(q, **kwargs))
            assert outcome(lambda: db.stratified_sample(qd, **kwargs)) == want, kwargs


# ------------------------------------------------------------------ bands
def test_band_of_equals_in_memory(client, pool):
    q, qd = pool
    qs, qsd = q * 1e-2, qd * 1e-2
    np.testing.assert_array_equal(db.band_of(qsd).compute(), band_of(qs))
    edges = [1e-3, 0.5]
    np.testing.assert_array_equal(db.band_of(qsd, edges, backend="numpy").compute(),
                                  band_of(qs, edges, backend="numpy"))
    qn = qs.copy()
    qn[40_001] = np.nan
    with pytest.raises(ValueError, match="first at index 40001"):
        db.band_of(da.from_array(qn, chunks=(ODD_CHUNKS,))).compute()


@pytest.mark.parametrize("within, seed, backend", [("uniform", 0, "numpy"),
                                                    ("uniform", 9, "cpu"),
                                                    ("importance", 0, "cpu"),
                                                    ("importance", 9, "numpy")])
def test_stratified_sample_equals_in_memory(client, pool, within, seed, backend):
    q, qd = pool
    qs, qsd = q * 1e-2, qd * 1e-2      # every band has members, B3 has > 512 per chunk
    got, info = db.stratified_sample(qsd, 4000, mix=MIX, seed=seed, within=within,
                                     backend=backend)
    want, want_info = stratified_sample(qs, 4000, mix=MIX, seed=seed, within=within,
                                        backend=backend)
    np.testing.assert_array_equal(got, want)
    assert info == want_info
    if within == "importance":     # B4 is the all-inf chunk: not drawable, redistributed
        assert info["drawable"][4] == 0 and info["achieved"][4] == 0
        assert info["redistributed"][4] == -400 and sum(info["achieved"]) == 4000


def test_stratified_sample_edge_cases(client, pool):
    q, qd = pool
    mix = [0.5, 0.5, 0.0]
    got, info = db.stratified_sample(qd, 10, edges=[1e-4, 0.5], mix=mix, seed=3)
    want, want_info = stratified_sample(q, 10, edges=[1e-4, 0.5], mix=mix, seed=3)
    np.testing.assert_array_equal(got, want)
    assert info == want_info
    empty = da.zeros(0, chunks=1)
    got, info = db.stratified_sample(empty, 0, mix=MIX, seed=0)
    want, want_info = stratified_sample(np.zeros(0), 0, mix=MIX, seed=0)
    assert got.size == 0 and info == want_info
    with pytest.raises(ValueError, match="mix must sum to 1"):
        db.stratified_sample(qd, 10, mix=[0.5, 0.6, 0, 0, 0], seed=0)
    qn = q.copy()
    qn[[7, 9]] = np.nan
    with pytest.raises(ValueError, match=r"2 NaN value\(s\), first at index 7"):
        db.stratified_sample(da.from_array(qn, chunks=(ODD_CHUNKS,)), 10, mix=MIX, seed=0)
    with pytest.raises(ValueError, match="no pool entry can be drawn"):
        db.stratified_sample(da.full(100, np.inf, chunks=30), 5, mix=MIX, seed=0,
                             within="importance")


# ------------------------------------------------------------------ pools on disk
def test_pool_from_npy_files(client, tmp_path):
    parts = [np.arange(0, 1000.0), np.zeros(0), np.arange(1000.0, 1700.0)]
    for i, p in enumerate(parts):
        np.save(tmp_path / f"part_{i:02d}.npy", p)
    pool = db.pool_from_npy(str(tmp_path / "part_*.npy"), chunk_size=300)
    assert pool.chunks[0] == (300, 300, 300, 100, 300, 300, 100)   # empty file: no chunk
    np.testing.assert_array_equal(pool.compute(), np.arange(1700.0))
    listed = db.pool_from_npy([tmp_path / "part_02.npy", tmp_path / "part_00.npy"])
    assert listed[0].compute() == 1000.0
    np.save(tmp_path / "square.npy", np.zeros((2, 2)))
    np.save(tmp_path / "ints.npy", np.arange(3))
    with pytest.raises(ValueError, match="pools are 1-D"):
        db.pool_from_npy(tmp_path / "square.npy")
    with pytest.raises(TypeError, match="share one dtype"):
        db.pool_from_npy([tmp_path / "part_00.npy", tmp_path / "ints.npy"])
    with pytest.raises(ValueError, match="no file matches"):
        db.pool_from_npy(str(tmp_path / "nothing_*.npy"))
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        db.pool_from_npy(tmp_path / "ints.npy", chunk_size=0)


def test_large_pool_from_npy_files(client, tmp_path):
    """2*10**7 entries in 12 files (an empty one, one all +inf, sizes off the block
    grid): weights to rtol 1e-12, draws and stratified draws exactly."""
    n = 2 * 10**7
    q = uniforms(5, 21, n, backend="cpu") * 2.0 - 1.0
    sizes = [1_000_003, 2_999_999, 0, 1_234_567, 3_000_000, 765_433, 2_000_000,
             1_500_001, 2_499_999, 1_000_000, 2_000_000]
    sizes.append(n - sum(sizes))
    bounds = np.cumsum([0] + sizes)
    q[bounds[4]:bounds[5]] = np.inf
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        np.save(tmp_path / f"q_{i:03d}.npy", q[lo:hi])
    pool = db.pool_from_npy(os.path.join(tmp_path, "q_*.npy"))
    assert pool.numblocks[0] == 11 and pool.shape == (n,)     # the empty file adds none

    wd = db.importance_weights(pool)
    w = wd.compute()
    np.testing.assert_allclose(w, importance_weights(q), rtol=1e-12, atol=0)
    got = db.sample_indices(wd, 200_000, seed=11)
    np.testing.assert_array_equal(got, sample_indices(w, 200_000, seed=11, backend="numpy"))
    np.testing.assert_array_equal(got, sample_indices(w, 200_000, seed=11, backend="cpu"))
    assert not np.any((got >= bounds[4]) & (got < bounds[5]))
    assert np.unique(np.searchsorted(bounds, got, side="right")).size == 10

    got, info = db.stratified_sample(pool * 1e-2, 100_000, mix=MIX, seed=4,
                                     within="importance")
    want, want_info = stratified_sample(q * 1e-2, 100_000, mix=MIX, seed=4,
                                        within="importance", backend="cpu")
    np.testing.assert_array_equal(got, want)
    assert info == want_info


def test_dask_bridge_alias_reexports_the_public_names():
    """``import zp_ref.dask_bridge`` keeps working: the same objects, no private names."""
    assert sorted(dask_bridge.__all__) == sorted(db.__all__)
    for name in db.__all__:
        assert getattr(dask_bridge, name) is getattr(db, name)
    assert not [n for n in vars(dask_bridge) if n.startswith("_") and not n.startswith("__")]


def test_draws_from_unnormalised_weights_read_the_pool_once_more():
    """importance_weights(normalize=False) reads every chunk once (its eager pass also
    gathers the block totals); sample_indices on its result then reads only the chunks
    holding draws, once; on any other weights array it reads every chunk twice. The
    indices are the in-memory ones either way."""
    q = uniforms(4, 20, 5000, backend="numpy") * 2.0 - 1.0
    q[1300:2900] = np.inf                         # the middle chunk: weight 0, no draw
    bounds = [0, 1300, 2900, 5000]                # chunk ends off the 512 grid
    reads = []

    def read(lo, hi):
        reads.append(lo)
        return q[lo:hi]

    pool = da.concatenate([da.from_delayed(dask.delayed(read, pure=False)(lo, hi),
                                           shape=(hi - lo,), dtype=np.float64)
                           for lo, hi in zip(bounds[:-1], bounds[1:])])
    want = sample_indices(importance_weights(q, normalize=False), 40, seed=2, backend="numpy")
    with dask.config.set(scheduler="synchronous"):
        w = db.importance_weights(pool, normalize=False)
        assert sorted(reads) == [0, 1300, 2900]
        reads.clear()
        np.testing.assert_array_equal(db.sample_indices(w, 40, seed=2), want)
        assert sorted(reads) == [0, 2900]
        reads.clear()
        np.testing.assert_array_equal(db.sample_indices(w * 1.0, 40, seed=2), want)
        assert sorted(reads) == [0, 0, 1300, 2900, 2900]


def test_zero_total_message_matches_the_in_memory_call():
    """The Dask bridge explains a zero total as the in-memory call does."""
    from zp_ref.weighting import importance_weights as in_memory
    for q in (np.full(6, 1e300), np.array([np.inf, -np.inf, np.inf])):
        with pytest.raises(ValueError) as want:
            in_memory(q)
        with pytest.raises(ValueError) as got:
            db.importance_weights(da.from_array(q, chunks=2))
        assert str(got.value) == str(want.value)
