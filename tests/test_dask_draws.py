"""The draws pass of zp_ref.bridges.dask: draws grouped by block on the client, resolved
in the chunks, and weights + draws read straight from q (no weights array)."""
import tracemalloc
import warnings

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

from zp_ref.bridges import dask as db  # noqa: E402
from zp_ref.bridges import dask_blocks  # noqa: E402
from zp_ref.rng import STREAMS, key_of, uniforms  # noqa: E402
from zp_ref.sampling import PREFIX_BLOCK, sample_indices  # noqa: E402
from zp_ref.weighting import importance_weights  # noqa: E402

#: Empty chunks, a one-entry chunk, boundaries off the 512 grid, a chunk of +inf.
CHUNKS = (0, 700, 1, 0, 1500, 3000, 24_799, 0, 20_000)
CONFIGS = [{}, {"weight_power": 1.5, "temperature": 2.0},
           {"weight_power": 3.0, "max_weight": 1e4, "min_q_abs": 1e-3}]


@pytest.fixture(scope="module")
def q():
    q = uniforms(8, 20, sum(CHUNKS), backend="numpy") * 2.0 - 1.0
    q[2201:5201] = np.inf
    return q


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("backend", ["auto", "cpu", "numpy"])
def test_weights_then_draws_equal_in_memory_on_every_backend(q, config, backend):
    """The q path (cpu chunks) and the weights path (numpy chunks) give the in-memory
    indices of the same backend's weights, bit for bit, with and without replacement."""
    qd = da.from_array(q, chunks=(CHUNKS,))
    w = importance_weights(q, normalize=False, backend="cpu" if backend == "auto" else backend,
                           **config)
    with dask.config.set(scheduler="synchronous"):
        wd = db.importance_weights(qd, normalize=False, backend=backend, **config)
        for seed in (0, 9):
            np.testing.assert_array_equal(db.sample_indices(wd, 30_000, seed=seed),
                                          sample_indices(w, 30_000, seed=seed))
        np.testing.assert_array_equal(db.sample_indices(wd, 2_000, seed=1, replace=False),
                                      sample_indices(w, 2_000, seed=1, replace=False))


def test_cpu_chunks_never_compute_a_weights_array(q, monkeypatch):
    """With the cpu backend, importance_weights(normalize=False) and the draws from it
    read q only: the function that makes a chunk's weights array is never called."""
    qd = da.from_array(q, chunks=(CHUNKS,))
    want = sample_indices(importance_weights(q, normalize=False, backend="cpu"), 5_000, seed=2)

    def no_weights_array(*args):
        raise AssertionError("a weights array was computed")

    monkeypatch.setattr(db, "_chunk_weights", no_weights_array)
    with dask.config.set(scheduler="synchronous"):
        wd = db.importance_weights(qd, normalize=False, backend="cpu")
        np.testing.assert_array_equal(db.sample_indices(wd, 5_000, seed=2), want)


def test_chunk_passes_allocate_far_less_than_the_chunk():
    """Pass 1 (block totals from q) and pass 2 (draws from q) on a chunk of 2e6 entries
    (16 MB): NumPy allocations peak under 1 MiB in pass 1 (block totals: 8 bytes per 512
    entries) and under 100 bytes per draw in pass 2 (20 000 draws: their targets,
    blocks, order and output; block totals and ends: 16 bytes per 512 entries)."""
    chunk = uniforms(3, 20, 2_000_000, backend="cpu") * 2e-2 - 1e-2
    config = (2.0, 1e-6, 100.0, 1.0)
    start = 1_000_003                                   # off the block grid
    db._weights_stats(chunk, config, "cpu", start)      # compile outside the trace
    tracemalloc.start()
    try:
        stats = db._weights_stats(chunk, config, "cpu", start)[3]
        pass1_peak = tracemalloc.get_traced_memory()[1]
        before = dask_blocks.block_pieces(np.zeros(start), None, 0, 0)    # weight 0
        blocks = dask_blocks.Blocks({0: before, 1: stats["pieces"]}, start + chunk.size)
        key = key_of(5, STREAMS["importance"])
        out, runs = blocks.group(key, 20_000, start + stats["last_nonzero"])
        k0, k1, _, draws = runs[1]
        request = (float(blocks.offsets[k0]), k1 - k0, draws)
        tracemalloc.reset_peak()
        positions = db._q_chunk_draws(chunk, start, request, key, blocks.total, 20_000,
                                      config, "cpu", True)
        pass2_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stats["from_q"] and pass1_peak < 1 << 20, pass1_peak
    assert pass2_peak < 100 * 20_000, pass2_peak
    assert positions.min() >= 0 and positions.max() < chunk.size


@pytest.mark.parametrize("chunks", [(0, 700, 1, 0, 1500, 3000, 2799), (512, 512, 7000),
                                    (8000,), (1,) * 30 + (7970,)])
def test_group_places_every_draw_exactly_once(chunks):
    """Blocks.group: the draws resolved on the client and those requested from the
    chunks partition 0..n-1; a chunk receives only its draw numbers, the number of its
    whole blocks and the block end before them, rebuilds its block ends and finds each
    draw's block itself; the indices are the in-memory ones."""
    w = uniforms(2, 20, sum(chunks), backend="numpy") + 0.5
    starts = np.r_[0, np.cumsum(chunks)]
    pieces = {c: dask_blocks.block_pieces(w[starts[c]:starts[c + 1]], None, int(starts[c]),
                                          int(starts[c]))
              for c in range(len(chunks)) if chunks[c]}
    blocks = dask_blocks.Blocks(pieces, w.size)
    key = key_of(7, STREAMS["importance"])
    out, runs = blocks.group(key, 4_000, w.size - 1)
    seen = np.flatnonzero(out >= 0).tolist()
    for c, (run_k0, k1, counts, grouped) in runs.items():
        base, n_blocks = float(blocks.offsets[run_k0]), k1 - run_k0     # what a chunk gets
        head = dask_blocks.head_length(int(starts[c]), chunks[c])
        k0 = (int(starts[c]) + head) // PREFIX_BLOCK          # the chunk's first whole block
        assert run_k0 == k0 and counts[0] == 0 and counts[-1] == grouped.size
        assert n_blocks == pieces[c]["full"].size and n_blocks * PREFIX_BLOCK <= chunks[c]
        assert base == (blocks.ends[k0 - 1] if k0 else 0.0)
        assert grouped.dtype == np.uint32                     # 4 bytes a draw on the wire
        seen += grouped.tolist()
        out[grouped] = starts[c] + dask_blocks.resolve_grouped(
            w[starts[c]:starts[c + 1]], head, (base, n_blocks, grouped), key,
            blocks.total, 4_000)
    assert sorted(seen) == list(range(4_000))
    np.testing.assert_array_equal(out, sample_indices(w, 4_000, seed=7, backend="numpy"))


def test_nan_chunks_fall_back_and_the_rest_read_q(q):
    """A chunk holding NaN (nan_policy="omit") takes the weights path (weight 0 for
    NaN, counted and warned); the others still read q; the indices are the in-memory
    ones."""
    q = q.copy()
    q[[800, 30_000]] = np.nan
    qd = da.from_array(q, chunks=(CHUNKS,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        w = importance_weights(q, normalize=False, nan_policy="omit", backend="cpu")
    with dask.config.set(scheduler="synchronous"):
        with pytest.warns(RuntimeWarning, match="2 NaN"):
            wd = db.importance_weights(qd, normalize=False, nan_policy="omit")
        stats = getattr(wd, db._DRAW_STATS)
        # NaN in chunks 4 and 8
        assert [c for c, s in stats.items() if not s.get("from_q")] == [4, 8]
        np.testing.assert_array_equal(db.sample_indices(wd, 20_000, seed=4),
                                      sample_indices(w, 20_000, seed=4))


def test_many_chunks_gather_results_as_they_complete(q, monkeypatch, dask_cluster):
    """On a distributed client with GATHER_AS_COMPLETED_MIN chunk tasks or more, the
    passes gather each result as it completes (freeing it in the worker); the indices
    and the stratified info are the in-memory ones."""
    distributed = pytest.importorskip("distributed")
    from zp_ref.bands import stratified_sample
    calls = []
    real = distributed.as_completed

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(distributed, "as_completed", counting)
    monkeypatch.setattr(dask_blocks, "GATHER_AS_COMPLETED_MIN", 2)
    qd = da.from_array(q, chunks=(CHUNKS,))
    want = sample_indices(importance_weights(q, normalize=False), 3_000, seed=6)
    want_s, want_info = stratified_sample(q, 3_000, mix=[0.3, 0.2, 0.2, 0.2, 0.1], seed=6,
                                          within="importance")
    with distributed.Client(dask_cluster):
        got = db.sample_indices(db.importance_weights(qd, normalize=False), 3_000, seed=6)
        got_s, info = db.stratified_sample(qd, 3_000, mix=[0.3, 0.2, 0.2, 0.2, 0.1], seed=6,
                                           within="importance")
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_s, want_s)
    assert info == want_info
    assert len(calls) == 5            # weights, draws, and the three stratified passes
