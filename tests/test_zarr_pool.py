"""Pools in zarr stores (zp_ref.bridges.dask.pool_from_zarr / to_zarr) on a 2-process
LocalCluster bound to loopback: values round-trip exactly, and weights and draws from a
zarr pool equal the in-memory API on the same pool (indices exactly, unnormalised
weights bit for bit). Skipped without zarr (the optional extra ``zarr``)."""
import json

import numpy as np
import pytest

zarr = pytest.importorskip("zarr", exc_type=ImportError)
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from zp_ref.bands import stratified_sample  # noqa: E402
from zp_ref.bridges import dask as db  # noqa: E402
from zp_ref.rng import STREAMS, uniforms  # noqa: E402
from zp_ref.sampling import sample_indices  # noqa: E402
from zp_ref.weighting import importance_weights  # noqa: E402

MIX = [0.3, 0.2, 0.2, 0.2, 0.1]
N = 20_000_003
ZARR_CHUNK = 2_500_000
#: Dask chunks of the zarr pool: uneven, off the 512-entry block grid, empty ones.
UNEVEN = (0, 3_000_001, 1, 0, 7_000_000, 512, 4_999_489)
UNEVEN += (N - sum(UNEVEN),)


@pytest.fixture(scope="module")
def client(dask_cluster):
    with distributed.Client(dask_cluster) as c:
        yield c


INF_RUN = slice(2_999_000, 3_001_500)     # +inf (weight 0) across a chunk boundary


def _q_block(block, block_info=None):
    """Entries lo:hi of q, generated where the chunk lives."""
    lo, hi = block_info[None]["array-location"][0]
    out = uniforms(9, STREAMS["chunked_pool"], hi - lo, start=lo, backend="cpu") * 2e-2 - 1e-2
    out[max(INF_RUN.start, lo) - lo:max(min(INF_RUN.stop, hi) - lo, 0)] = np.inf
    return out


@pytest.fixture(scope="module")
def q():
    """(N,) in [-1e-2, 1e-2), +inf on INF_RUN."""
    q = uniforms(9, STREAMS["chunked_pool"], N, backend="cpu") * 2e-2 - 1e-2
    q[INF_RUN] = np.inf
    return q


@pytest.fixture(scope="module")
def store(client, tmp_path_factory):
    """q generated in the workers, chunk by chunk, into a zarr directory store
    (array "q", zarr chunks of ZARR_CHUNK)."""
    path = tmp_path_factory.mktemp("zarr") / "pool.zarr"
    lazy = da.empty(N, chunks=ZARR_CHUNK).map_blocks(_q_block, dtype=np.float64)
    db.to_zarr(lazy, path, component="q")
    return path


def test_zarr_round_trip_keeps_values_and_chunks(client, store, q):
    pool = db.pool_from_zarr(store, component="q")
    assert pool.chunks[0] == (ZARR_CHUNK,) * 8 + (3,)       # the zarr chunks
    np.testing.assert_array_equal(pool.compute(), q)
    again = db.pool_from_zarr(zarr.storage.LocalStore(store, read_only=True), component="q",
                              chunk_size=7_000_001)
    assert again.chunks[0] == (7_000_001, 7_000_001, 6_000_001)
    np.testing.assert_array_equal(again[-10**6:].compute(), q[-10**6:])


def test_to_zarr_makes_irregular_chunks_regular(client, tmp_path):
    x = np.arange(1000.0)
    db.to_zarr(da.from_array(x, chunks=((0, 300, 1, 0, 699),)), tmp_path / "a.zarr")
    arr = zarr.open_array(tmp_path / "a.zarr", mode="r")
    assert arr.chunks == (699,)                              # the largest dask chunk
    np.testing.assert_array_equal(arr[:], x)
    db.to_zarr(da.from_array(x, chunks=100), tmp_path / "b.zarr", chunk_size=256,
               compressors=None)
    assert zarr.open_array(tmp_path / "b.zarr", mode="r").chunks == (256,)
    np.testing.assert_array_equal(db.pool_from_zarr(tmp_path / "b.zarr").compute(), x)


def test_zarr_pool_weights_and_draws_equal_in_memory(client, store, q, tmp_path):
    """2e7 entries in uneven chunks with empty ones: unnormalised weights bit for bit; weights written
    back to zarr read back bit for bit; draws with and without replacement and
    stratified draws exactly."""
    pool = db.pool_from_zarr(store, component="q").rechunk((UNEVEN,))
    assert pool.chunks[0] == UNEVEN
    w_mem = importance_weights(q, normalize=False, backend="cpu")
    wd = db.importance_weights(pool, normalize=False)
    db.to_zarr(wd, tmp_path / "w.zarr", chunk_size=4_000_000, compressors=None)
    np.testing.assert_array_equal(db.pool_from_zarr(tmp_path / "w.zarr").compute(), w_mem)

    got = db.sample_indices(wd, 10**6, seed=5)
    np.testing.assert_array_equal(got, sample_indices(w_mem, 10**6, seed=5, backend="cpu"))
    assert not np.any((got >= INF_RUN.start) & (got < INF_RUN.stop))
    got = db.sample_indices(wd, 2_000, seed=3, replace=False)
    np.testing.assert_array_equal(got, sample_indices(w_mem, 2_000, seed=3, replace=False,
                                                      backend="cpu"))
    got, info = db.stratified_sample(pool, 100_000, mix=MIX, seed=4, within="importance")
    want, want_info = stratified_sample(q, 100_000, mix=MIX, seed=4, within="importance",
                                        backend="cpu")
    np.testing.assert_array_equal(got, want)
    assert info == want_info


def test_to_zarr_refuses_an_existing_array_and_leaves_it(client, tmp_path):
    """overwrite=False refuses and changes nothing; overwrite=True replaces that array
    only (a sibling array in the same group stays)."""
    path = tmp_path / "p.zarr"
    db.to_zarr(da.arange(10.0, chunks=4), path, component="w")
    db.to_zarr(da.ones(5, chunks=4), path, component="q")
    with pytest.raises(ValueError, match="an array exists at .*component 'w'.*overwrite=True"):
        db.to_zarr(da.zeros(10, chunks=4), path, component="w")
    np.testing.assert_array_equal(zarr.open_array(path, path="w", mode="r")[:], np.arange(10.0))
    db.to_zarr(da.zeros(3, chunks=4), path, component="w", overwrite=True)
    np.testing.assert_array_equal(zarr.open_array(path, path="w", mode="r")[:], np.zeros(3))
    np.testing.assert_array_equal(zarr.open_array(path, path="q", mode="r")[:], np.ones(5))


def test_zarr_bad_arguments_name_the_argument(client, tmp_path):
    zarr.create_array(tmp_path / "square.zarr", shape=(2, 2), dtype="f8")
    zarr.create_array(tmp_path / "text.zarr", shape=(2,), dtype=str)
    group = zarr.open_group(tmp_path / "group.zarr", mode="w")
    group.create_array("q", shape=(4,), dtype="f8")
    db.to_zarr(da.arange(4.0, chunks=2), tmp_path / "ok.zarr")
    cases = [
        (ValueError, "pools are 1-D", dict(path_or_store=tmp_path / "square.zarr")),
        (TypeError, "holds dtype <U|holds dtype StringDType|holds dtype object",
         dict(path_or_store=tmp_path / "text.zarr")),
        (ValueError, "no zarr array at", dict(path_or_store=tmp_path / "missing.zarr")),
        (ValueError, "does not hold a zarr array", dict(path_or_store=tmp_path / "group.zarr")),
        (TypeError, "path_or_store must be a path or a zarr store", dict(path_or_store=3)),
        (TypeError, "component must be None", dict(path_or_store=tmp_path / "group.zarr",
                                                   component=1)),
        (ValueError, "chunk_size must be an integer >= 1",
         dict(path_or_store=tmp_path / "ok.zarr", chunk_size=0)),
    ]
    for exc, match, kwargs in cases:
        with pytest.raises(exc, match=match):
            db.pool_from_zarr(**kwargs)
    assert db.pool_from_zarr(tmp_path / "group.zarr", component="q").shape == (4,)
    with pytest.raises(TypeError, match="array must be a 1-D dask.array.Array"):
        db.to_zarr(np.arange(3.0), tmp_path / "n.zarr")
    with pytest.raises(TypeError, match="array must be a 1-D dask.array.Array"):
        db.to_zarr(da.zeros((2, 2)), tmp_path / "n.zarr")
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        db.to_zarr(da.zeros(2), tmp_path / "n.zarr", overwrite="yes")
    assert not (tmp_path / "n.zarr").exists()               # nothing written on refusal
    meta = json.loads((tmp_path / "ok.zarr" / "zarr.json").read_text())
    assert meta["shape"] == [4]
