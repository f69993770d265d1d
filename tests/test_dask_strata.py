"""zp_ref.bridges.dask_strata: stratified draws over chunked pools with streaming chunk
passes. The indices equal the in-memory ``zp_ref.stratified_sample`` bit for bit (odd
chunkings, empty bands, all-zero-weight bands, draws rounded up to the total, weights
from another backend); the streaming kernels equal NumPy references; a chunk task
allocates O(outputs) on the Python side (tracemalloc), never O(chunk)."""
import tracemalloc

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from zp_ref.bands import band_of, stratified_sample  # noqa: E402
from zp_ref.bridges import dask as db  # noqa: E402
from zp_ref.bridges import dask_strata as ds  # noqa: E402
from zp_ref.bridges.dask_blocks import block_pieces  # noqa: E402
from zp_ref.kernels.cpu_band_stream import (band_counts_stream, member_positions,  # noqa: E402
                                            same_weights_everywhere, weight_params)
from zp_ref.rng import STREAMS, derive_seed, uniforms  # noqa: E402
from zp_ref.weighting import importance_weights  # noqa: E402

import naive  # noqa: E402

EDGES = [1e-5, 1e-4, 1e-3, 1e-2, 0.5]    # band 4 has no member, band 5 only +-inf
MIX = [0.25, 0.2, 0.2, 0.15, 0.1, 0.1]
#: Empty chunks, one-entry chunks, boundaries off the 512 grid, small chunks: the rare
#: bands' blocks (band 0: ~1 member in 1000) are split across many chunks.
CHUNKINGS = {"odd": (0, 700, 1, 0, 1500, 3000, 44_799, 0, 20_000, 30_000),
             "small": (1, 0, 2_047) + (9_001,) * 10 + (7_942,),
             "one": (100_000,)}


@pytest.fixture(scope="module")
def client(dask_cluster):
    with distributed.Client(dask_cluster) as c:
        yield c


def make_pool(size=100_000, seed=3):
    """q in [-1e-2, 1e-2) with +-inf runs (weight 0): one run makes a whole chunk of
    "odd" non-drawable; band 4 (1e-2 < |q| <= 0.5) is empty and band 5 (|q| > 0.5, here
    only +-inf) has members but all weights 0."""
    q = uniforms(seed, 20, size, backend="numpy") * 2e-2 - 1e-2
    q[2201:5201] = np.inf
    q[60_000:60_010] = -np.inf
    return q


def check_equal(qd, q, **kwargs):
    got, info = db.stratified_sample(qd, **kwargs)
    want, want_info = stratified_sample(q, **kwargs)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64
    assert info == want_info
    return got, info


@pytest.mark.parametrize("chunking", sorted(CHUNKINGS))
@pytest.mark.parametrize("within", ["uniform", "importance"])
def test_equals_in_memory_for_odd_chunkings(client, chunking, within):
    q = make_pool()
    qd = da.from_array(q, chunks=(CHUNKINGS[chunking],))
    for seed in (0, 5, 2**63 + 1):
        got, info = check_equal(qd, q, n=5000, edges=EDGES, mix=MIX, seed=seed, within=within)
        assert info["members"][4] == 0 and info["achieved"][4] == 0       # redistributed
        assert info["members"][5] == 3010
        if within == "importance":                  # band 5: +-inf only, weight 0
            assert info["drawable"][5] == 0 and info["achieved"][5] == 0
    # a rare band's blocks span several chunks: band 0 has ~1 member per 1000 entries,
    # so each of its 512-member blocks covers ~5e5 entries (here: its 2nd block, if any,
    # and its partial blocks are split over 3+ chunks of "small")
    assert 50 < info["members"][0] < 200


def test_equals_the_naive_reference(client):
    q = make_pool(20_000, seed=8)
    qd = da.from_array(q, chunks=((7_000, 0, 1, 12_999),))
    for within in ("uniform", "importance"):
        got, _ = db.stratified_sample(qd, 300, edges=EDGES, mix=MIX, seed=4, within=within)
        assert got.tolist() == naive.stratified_sample(q.tolist(), 300, EDGES, MIX, 4, within)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_weights_of_another_backend_are_used_segment_by_segment(backend, monkeypatch):
    """A power whose NumPy weights differ from the cpu kernel's in the last bit: the
    chunks take the backend's weights, SEGMENT entries at a time (state across
    segments), and the indices equal that backend's in-memory ones."""
    q = make_pool()
    kwargs = dict(n=6000, edges=EDGES, mix=MIX, seed=1, within="importance",
                  weight_power=1.5, max_weight=1e6)
    assert not same_weights_everywhere(1.5) and same_weights_everywhere(2.0)
    w_numpy = importance_weights(q, weight_power=1.5, max_weight=1e6, normalize=False,
                                 backend="numpy")
    w_cpu = importance_weights(q, weight_power=1.5, max_weight=1e6, normalize=False,
                               backend="cpu")
    assert not np.array_equal(w_numpy, w_cpu)              # the case is not vacuous
    monkeypatch.setattr(ds, "SEGMENT", 1000)
    qd = da.from_array(q, chunks=(CHUNKINGS["odd"],))
    with dask.config.set(scheduler="synchronous"):
        check_equal(qd, q, backend=backend, **kwargs)


def test_target_rounded_up_to_the_total_takes_the_last_nonzero_member(client):
    """max_weight = 5e-324 caps every finite weight to the smallest subnormal, so a band
    of m drawable members has total m * 5e-324, and u * total rounds up to the total for
    u > 1 - 1/(2m): such draws take the band's last nonzero-weight member, not its last
    member. Band 5 gets 10 such members (|q| = 0.75) followed by |q| = 1e200 (weight
    1 / inf = 0)."""
    q = make_pool()
    q[-50:-40] = 0.75
    q[-40:] = 1e200
    kwargs = dict(n=4000, edges=EDGES, mix=MIX, seed=11, within="importance",
                  max_weight=5e-324)
    qd = da.from_array(q, chunks=(CHUNKINGS["small"],))
    got, info = check_equal(qd, q, **kwargs)
    assert info["drawable"][5] == 10 and info["members"][5] == 3060
    n5, first = info["achieved"][5], sum(info["achieved"][:5])
    u = uniforms(derive_seed(11, 5), STREAMS["importance"], n5, backend="numpy")
    corner = u * (10 * 5e-324) == 10 * 5e-324
    assert corner.any()                                  # the corner case happens
    assert (got[first:first + n5][corner] == q.size - 41).all()


def test_empty_pool_nan_and_no_drawable_entry(client):
    got, info = db.stratified_sample(da.zeros(0, chunks=1), 0, mix=[0.2] * 5, seed=0)
    assert got.size == 0 and info == stratified_sample(np.zeros(0), 0, mix=[0.2] * 5,
                                                       seed=0)[1]
    q = make_pool()
    q[[70_000, 90_001]] = np.nan
    with pytest.raises(ValueError, match=r"2 NaN value\(s\), first at index 70000"):
        db.stratified_sample(da.from_array(q, chunks=(CHUNKINGS["odd"],)), 10, mix=[0.2] * 5,
                             seed=0, within="importance")
    with pytest.raises(ValueError, match="no pool entry can be drawn"):
        db.stratified_sample(da.full(2000, -np.inf, chunks=300), 5, mix=[0.2] * 5, seed=0,
                             within="importance")
    with pytest.raises(ValueError, match="backend must be one of"):
        db.stratified_sample(da.zeros(10, chunks=3), 5, mix=[0.2] * 5, seed=0, backend="gpu")


# ------------------------------------------------------------------ kernels
def test_band_counts_stream_equals_bincount_over_segments():
    q = make_pool(50_000)
    q[[123, 40_000]] = np.nan
    edges = np.array(EDGES)
    params = weight_params(2.0, 1e-6, 1e300)
    members, drawable = np.zeros(6, dtype=np.int64), np.zeros(6, dtype=np.int64)
    nan = np.array([0, -1], dtype=np.int64)
    for lo in (0, 20_001):                                   # two segments, shared state
        seg = q[lo:lo + 20_001] if lo == 0 else q[lo:]
        band_counts_stream(seg, np.empty(0), lo, edges, params, True, members, drawable, nan)
    clean = np.where(np.isnan(q), 0.0, q)
    bands = band_of(clean, edges)
    w = importance_weights(clean, max_weight=1e300, normalize=False, backend="cpu")
    np.testing.assert_array_equal(members, np.bincount(bands, minlength=6))
    np.testing.assert_array_equal(drawable,                  # NaN: band 0, not drawable
                                  np.bincount(bands[(w > 0) & ~np.isnan(q)], minlength=6))
    assert nan.tolist() == [2, 123]


@pytest.mark.parametrize("r0", [0, 1, 511, 512, 700])
def test_band_block_pieces_equal_block_pieces_of_the_stored_weights(r0):
    q = make_pool(60_000)
    edges = np.array(EDGES)
    start = 1_000_003
    w = importance_weights(q, normalize=False, backend="cpu")            # max_weight 100
    bands = band_of(q, edges)
    got = ds._band_pieces(q, start, edges, (2.0, 1e-6, 100.0), "cpu", 10**7,
                          {b: (r0 + b, int((bands == b).sum())) for b in range(5)})
    for b in range(5):
        members = np.flatnonzero(bands == b)
        want = block_pieces(w[members], members, start, r0 + b)
        pieces, last = got[b]
        assert pieces.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(pieces[key], want[key], err_msg=f"{b} {key}")
        nonzero = members[w[members] != 0]
        assert last == (start + nonzero[-1] if nonzero.size else -1)


def test_member_positions_equal_flatnonzero():
    q = make_pool(30_000)
    edges = np.array(EDGES)
    bands = band_of(q, edges)
    rng = np.random.default_rng(0)
    wanted = {b: np.sort(rng.integers(0, (bands == b).sum(), 50)) for b in (0, 2, 3)}
    rank_ptr = ds._csr([wanted[b].size if b in wanted else 0 for b in range(6)])
    ranks = np.concatenate([wanted[b] for b in sorted(wanted)])
    out = np.full(ranks.size, -1, dtype=np.int64)
    left = np.array([ranks.size])
    member_positions(q, 0, edges, 77, np.zeros(6, dtype=np.int64), rank_ptr, ranks,
                     rank_ptr[:-1].copy(), out, left)
    assert left[0] == 0
    for b in wanted:
        np.testing.assert_array_equal(out[rank_ptr[b]:rank_ptr[b + 1]],
                                      77 + np.flatnonzero(bands == b)[wanted[b]])


# ------------------------------------------------------------------ memory
#: Python-side bytes a chunk task may allocate besides its outputs (chunk: 16 MB).
TASK_BOUND = 1 << 20


def chunk_requests(q, n, within, weight_power, backend):
    """What the client sends a pool of one chunk: (pass 2 wanted, pass 3 weighted,
    pass 3 uniform), planned by the client code under the synchronous scheduler."""
    qd = da.from_array(q, chunks=q.size)
    edges = np.array(EDGES)
    config = (weight_power, 1e-6, 1e300)
    stats = ds._band_stats(q, edges, config, backend, q.size)
    members = stats["members"].reshape(1, -1)
    alloc = np.array([n // 6] * 6) * (stats["drawable"] > 0)
    live = [b for b in range(6) if alloc[b]]
    rank0 = np.vstack((np.zeros(6, dtype=np.int64), members))
    with dask.config.set(scheduler="synchronous"):
        if within == "importance":
            _, weighted, uniform = ds._plan_weighted_bands(
                qd, np.array([0, q.size]), rank0, members, members[0], alloc, live, 5, edges,
                config, backend)
        else:
            _, weighted, uniform = ds._plan_uniform_bands(rank0, members[0], alloc, live, 5)
    wanted = {b: (0, int(members[0, b])) for b in live}
    return edges, config, wanted, weighted[0], {b: r[0] for b, r in uniform[0].items()}


def traced_peak(fn):
    """(result, peak bytes traced above the start) of fn()."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("backend, power", [("cpu", 2.0), ("numpy", 2.0), ("numpy", 1.5)])
def test_chunk_tasks_allocate_o_outputs(backend, power):
    """Each pass on a 2e6-entry chunk (16 MB) allocates < 1 MiB on the Python side
    besides its outputs (pass 2: 8 bytes per 512 members; pass 3: 8 bytes per draw
    sent); the kernels themselves allocate O(bands x 512) scratch (not traced). With a
    power other than 0, 1/2, 1, 2 on numpy, a segment's weights and NumPy's temporaries
    add to it (measured 2.1 MiB for SEGMENT = 2**16, bound 5 x 8 x SEGMENT).
    Measured on the cpu path (2026-11-30): pass 1 17 KB, pass 2 70 KB, pass 3 360 KB
    for 12 337 draws (importance) and 215 KB for 13 332 (uniform)."""
    q = make_pool(2_000_000, seed=9)
    n_pool = q.size
    for within in ("importance", "uniform"):
        edges, config, wanted, weighted, uniform = chunk_requests(q[:50_000], 600, within, power,
                                                                   backend)
        ds._band_draws(q[:50_000], 0, edges, config, backend, n_pool, weighted, uniform)  # warm
        edges, config, wanted, weighted, uniform = chunk_requests(q, 20_000, within, power, backend)
        bound = TASK_BOUND + (5 * 8 * ds.SEGMENT if not same_weights_everywhere(power) else 0)
        stats, peak = traced_peak(lambda: ds._band_stats(q, edges, config, backend, n_pool))
        assert peak < bound, ("pass 1", peak)
        pieces, peak = traced_peak(lambda: ds._band_pieces(q, 0, edges, config, backend,
                                                           n_pool, wanted))
        outputs = sum(p[k].nbytes for p, _ in pieces.values() for k in p if k != "r0")
        assert peak < bound + 2 * outputs, ("pass 2", peak, outputs)
        found, peak = traced_peak(lambda: ds._band_draws(q, 0, edges, config, backend,
                                                         n_pool, weighted, uniform))
        n_sent = sum(r[3].size for r in weighted.values()) + sum(r.size for r in uniform.values())
        assert n_sent > 1000 and sum(f.size for f in found.values()) == n_sent
        assert all((f >= 0).all() for f in found.values())
        assert peak < bound + 4 * 8 * n_sent, ("pass 3", within, peak, n_sent)
