"""Scale-out on Dask: importance weights, weighted draws, |Q| bands and stratified
draws over chunked 1-D dask arrays, with the answers of the in-memory API.

Every function takes a 1-D ``dask.array.Array`` (pool entries in order; chunks of any
sizes, empty ones included) and runs on whatever scheduler is active: a
``distributed.Client`` when one is open, else dask's threads. Pools never travel to
the client: the passes over the chunks return block totals, counts and the indices
drawn; the client groups the draws by block and sends each chunk those of its blocks,
which it resolves with the in-memory kernels (docs/scale.md). Weights + draws read q
and never store a chunk of weights (``sample_from_q``'s kernels). The chunk machinery
(pool checks, the map over chunks, blockwise prefix sums across chunks) is
:mod:`zp_ref.bridges.dask_blocks`; stratified draws are
:mod:`zp_ref.bridges.dask_strata`; pools on disk (``.npy``, zarr) are
:mod:`zp_ref.bridges.dask_pools`, all re-exported here.

Exactness. A weighted draw is defined by the blockwise prefix sums of
``zp_ref.sampling.prefix_sums`` (blocks of PREFIX_BLOCK = 512 consecutive entries of
the weighted sequence, summed sequentially; block ends added sequentially). Chunk
boundaries need not fall on block boundaries: each chunk sums its whole blocks
(sequential sums, as the oracle) and returns the raw weights of the partial blocks at
its two ends (< 512 each); the client sums a block split across chunks sequentially
over its pieces in pool order and accumulates all block totals sequentially. So the
indices equal ``zp_ref.sample_indices`` / ``zp_ref.stratified_sample`` on the
concatenated pool for the same seed, bit for bit. Normalised importance weights differ
from the in-memory ones only in the order of the total (see :func:`importance_weights`),
to rtol 1e-12.
"""
from __future__ import annotations

import warnings

import numpy as np

try:
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("zp_ref.bridges.dask needs dask: install the extra with "
                      "`pip install zp_ref[dask]` (dask[array] and distributed)") from exc

from ..checks import check_backend, check_choice, check_seed
from ..bands import DEFAULT_EDGES, check_edges
from ..backends import resolve_backend
from ..rng import STREAMS, check_draw_count, key_of, uniforms
from ..weighting import NAN_POLICIES, check_weight_config, check_weight_total
from .dask_blocks import (Blocks, as_float, block_pieces, check_pool, check_resolved,
                          check_total, chunk_starts, head_length, last_nonzero, map_chunks,
                          q_block_pieces, q_last_positive, resolve_grouped)
from .dask_pools import pool_from_npy, pool_from_zarr, to_zarr

__all__ = ["importance_weights", "sample_indices", "band_of", "stratified_sample",
           "pool_from_npy", "pool_from_zarr", "to_zarr"]

#: Attribute of an unnormalised weights array from :func:`importance_weights` holding
#: the per-chunk statistics of its eager pass (block totals, validation counts), so that
#: :func:`sample_indices` on it needs one pass over the pool, not two.
_DRAW_STATS = "_zp_draw_stats"
#: Attribute of the same array holding (q, weight config, backend): the draws pass
#: then reads q and recomputes weights only in the blocks that hold draws.
_DRAW_SOURCE = "_zp_draw_source"


# ------------------------------------------------------------------ importance weights
def _chunk_weights(q, config, backend):
    """(unnormalised weights, NaN count, first NaN position or -1) of one chunk; NaN
    gets weight 0, as in the in-memory path."""
    from ..weighting import importance_weights as weights_in_memory
    q = as_float(q)
    if q.size == 0:
        return np.empty(0), 0, -1
    n_nan, first_nan = 0, -1
    if np.isnan(np.sum(q)):                  # NaN, or inf - inf: count exactly
        nan = np.isnan(q)
        n_nan = int(nan.sum())
        if n_nan:
            first_nan = int(np.argmax(nan))
            q = np.where(nan, np.inf, q)
    p, min_q_abs, max_weight, temperature = config
    w = weights_in_memory(q, weight_power=p, min_q_abs=min_q_abs, max_weight=max_weight,
                          temperature=temperature, normalize=False,
                          backend=resolve_backend(backend, q.size))
    return w, n_nan, first_nan


def _weights_stats(q, config, backend, start):
    """(np.sum of the chunk's weights, NaN count, first NaN position or -1, and, when
    ``start`` is given, what pass 1 of :func:`sample_indices` needs of these weights).

    With ``start`` (unnormalised weights) on a chunk whose backend is cpu, the block
    totals come straight from q (:func:`q_block_pieces`, no weights array; the sum is
    then not needed and given as 0.0); a NaN in q or a non-finite total falls back to
    the weights themselves, which count and place the bad entries."""
    if start is not None:
        chunk = as_float(q)
        if resolve_backend(backend, chunk.size) == "cpu":
            pieces = q_block_pieces(chunk, start, config)
            with np.errstate(over="ignore", invalid="ignore"):
                total = np.nan if pieces is None else (
                    pieces["full"].sum() + pieces["head"].sum() + pieces["tail"].sum())
            if np.isfinite(total):          # weights are finite, >= 0: nothing to count
                return 0.0, 0, -1, {"n_neg": 0, "n_bad": 0, "n_nonzero": None,
                                    "last_nonzero": q_last_positive(chunk, config),
                                    "pieces": pieces,
                                    "total": float(total), "from_q": True}
    w, n_nan, first_nan = _chunk_weights(q, config, backend)
    draw_stats = None if start is None else _weights_chunk_stats(w, start, True)
    return float(np.sum(w)), n_nan, first_nan, draw_stats


def _weights_block(q, config, backend, total):
    w = _chunk_weights(q, config, backend)[0]
    if total is not None:
        np.divide(w, total, out=w)
    return w


def importance_weights(q, *, weight_power=2.0, min_q_abs=1e-6, max_weight=100.0,
                       temperature=1.0, normalize=True, nan_policy="raise",
                       backend="auto") -> "da.Array":
    """``zp_ref.importance_weights`` over a chunked pool, as a lazy dask array.

    Each chunk runs the in-memory kernel. One eager pass here counts NaNs (``ValueError``
    naming the count and the global index of the first, or a ``RuntimeWarning`` with
    ``nan_policy="omit"``) and sums the weights.
    Float order of the total: each chunk's weights are summed with ``np.sum`` (NumPy
    pairwise summation), then the chunk totals are added sequentially in chunk order
    from 0.0; weights equal the in-memory ones to rtol 1e-12. The result is recomputed
    from ``q`` whenever it is computed (``persist()`` it to keep it in the workers).
    With ``normalize=False`` the eager pass also gathers what :func:`sample_indices`
    needs of these weights (block totals, validation counts), kept on the returned
    array, so drawing from it reads the pool once more, not twice.

    Parameters
    ----------
    q : dask.array.Array, shape (N,)
        Real Q values of the pool, in chunks.
    weight_power, min_q_abs, max_weight, temperature : float
        As in :func:`zp_ref.importance_weights` (defaults 2.0, 1e-6, 100.0, 1.0).
    normalize : bool, default True
        Divide by the total.
    nan_policy : {"raise", "omit"}, default "raise"
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        The in-memory kernel each chunk runs (resolved per chunk).

    Returns
    -------
    dask.array.Array
        float64, shape (N,), chunked as ``q``.
    """
    config = check_weight_config(weight_power, min_q_abs, max_weight, temperature)
    check_choice(nan_policy, "nan_policy", NAN_POLICIES)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be True or False, got {normalize!r}")
    check_backend(backend)
    q = check_pool(q, "q", hint="zp_ref.importance_weights")
    starts = chunk_starts(q)
    stats = map_chunks(_weights_stats, q, [(config, backend, None if normalize else int(s))
                                            for s in starts[:-1]])
    n_nan = sum(s[1] for s in stats.values())
    if n_nan:
        first = min(int(starts[c]) + s[2] for c, s in stats.items() if s[1])
        if nan_policy == "raise":
            raise ValueError(f"q holds {n_nan} NaN value(s), first at index {first}; clean "
                             "them or pass nan_policy='omit'")
        warnings.warn(f"importance_weights: {n_nan} NaN value(s) in q given weight 0 "
                      "(nan_policy='omit')", RuntimeWarning, stacklevel=2)
    total = 0.0
    for c in range(q.numblocks[0]):
        total += stats[c][0]
    if normalize:
        check_weight_total(total, q.shape[0], lambda: bool(da.isfinite(q).any().compute()))
    w = q.map_blocks(_weights_block, config, backend, total if normalize else None,
                     dtype=np.float64)
    if not normalize:      # sample_indices(w) reuses this pass instead of its first one
        setattr(w, _DRAW_STATS, {c: s[3] for c, s in stats.items()})
        setattr(w, _DRAW_SOURCE, (q, config, backend))
    return w


# ------------------------------------------------------------------ sample_indices
def _weights_chunk_stats(w, start, with_pieces):
    """Validation counts of one chunk of weights and, when asked, its pieces. Fast path:
    min >= 0 and a finite sum rule out negative and non-finite entries without
    counting them."""
    w = as_float(w)
    pieces = block_pieces(w, None, start, start) if with_pieces else None
    stats = {"n_neg": 0, "n_bad": 0, "n_nonzero": int(np.count_nonzero(w)),
             "last_nonzero": last_nonzero(w), "pieces": pieces, "total": 0.0}
    if w.size == 0:
        return stats
    with np.errstate(over="ignore"):
        total = (pieces["full"].sum() + pieces["head"].sum() + pieces["tail"].sum()
                 if pieces is not None else np.sum(w))
    stats["total"] = float(total)
    if w.min() >= 0 and np.isfinite(total):
        return stats
    negative, bad = w < 0, ~np.isfinite(w)
    for name, mask in (("neg", negative), ("bad", bad)):
        count = int(mask.sum())
        first = int(np.argmax(mask)) if count else -1
        stats.update({f"n_{name}": count, f"first_{name}": first,
                      f"{name}_value": float(w[first]) if count else 0.0})
    return stats


def _weights_chunk_draws(w, start, request, key, total, n):
    """Chunk positions of the draws ``request`` sends to this chunk of weights."""
    return resolve_grouped(as_float(w), head_length(start, w.shape[0]), request, key, total, n)


def _q_chunk_draws(q, start, request, key, total, n, config, backend, from_q):
    """The same from a chunk of q: weights recomputed in the blocks holding draws when
    pass 1 summed them from q (``from_q``), else the chunk's weights (as pass 1)."""
    head = head_length(start, q.shape[0])
    if from_q:
        return resolve_grouped(as_float(q), head, request, key, total, n, config)
    return resolve_grouped(_chunk_weights(q, config, backend)[0], head, request, key, total, n)


def _top_keys(w, start, n, seed):
    """The chunk's n largest keys log(w_i) - log(-log(u_i)) (ties to the lower index)."""
    from ..sampling import without_replacement_keys_numpy
    w = as_float(w)
    positive = np.flatnonzero(w > 0)
    u = uniforms(seed, STREAMS["without_replacement"], w.size, start=start,
                 backend="numpy")[positive]
    keys = without_replacement_keys_numpy(w[positive], u)
    if keys.size > n:
        kth = np.partition(-keys, n - 1)[n - 1]
        keep = np.flatnonzero(-keys <= kth)
        keep = keep[np.lexsort((positive[keep], -keys[keep]))[:n]]
        keys, positive = keys[keep], positive[keep]
    return keys, positive + start


def sample_indices(weights, n, *, seed, replace=True) -> np.ndarray:
    """``zp_ref.sample_indices`` over a chunked pool, equal to the in-memory result on
    the concatenated weights for the same seed.

    With replacement, two passes: (1) every chunk returns its block totals and
    validation counts (skipped when ``weights`` is the result of
    ``importance_weights(q, normalize=False)``, whose eager pass gathered them); the
    client accumulates the block ends, groups the draws by block (the in-memory
    ``group_draws``: targets ``u(seed, 0, j) * C[-1]``) and resolves those in blocks
    split across chunks; (2) every chunk holding draws receives the draw numbers in its
    whole blocks and the block end before them, rebuilds its block ends (the same
    sequential sums) and returns the draws' indices; on the result of
    ``importance_weights(q, normalize=False)`` it reads q and recomputes the weights
    only in the blocks holding draws. Without replacement: (1)
    validation counts; (2) every chunk returns its n largest keys
    ``log(w_i) - log(-log(u(seed, 1, i)))``; the client merges.

    Parameters
    ----------
    weights : dask.array.Array, shape (N,)
        Finite weights >= 0 with a positive total, in chunks.
    n : int
        Number of draws, >= 0.
    seed : int
        Seed in [0, 2**64).
    replace : bool, default True
        Draw with replacement.

    Returns
    -------
    numpy.ndarray
        int64, shape (n,), global indices into ``weights``.
    """
    w = check_pool(weights, "weights", hint="zp_ref.sample_indices")   # the in-memory order
    n = check_draw_count(n, "n")
    seed = check_seed(seed)
    if not isinstance(replace, (bool, np.bool_)):
        raise TypeError(f"replace must be True or False, got {replace!r}")
    starts = chunk_starts(w)
    n_chunks = w.numblocks[0]
    stats = getattr(w, _DRAW_STATS, None)
    if stats is None or not replace and any(s["n_nonzero"] is None for s in stats.values()):
        stats = map_chunks(_weights_chunk_stats, w,
                            [(int(starts[c]), bool(replace)) for c in range(n_chunks)])
    _check_weight_stats(stats, starts)
    if not replace:
        total = 0.0
        for c in range(n_chunks):
            total += stats[c]["total"]      # Python floats: an overflow gives inf
        check_total(total)                 # refused in memory too, though keys need no sum
        n_positive = sum(s["n_nonzero"] for s in stats.values())
        if n > n_positive:
            raise ValueError(f"n={n} draws without replacement need at least n positive "
                             f"weights; weights has {n_positive}")
        if n == 0:
            return np.empty(0, dtype=np.int64)
        tops = map_chunks(_top_keys, w, [(int(starts[c]), n, seed) if stats[c]["n_nonzero"]
                                          else None for c in range(n_chunks)])
        keys = np.concatenate([tops[c][0] for c in sorted(tops)])
        idx = np.concatenate([tops[c][1] for c in sorted(tops)])
        return idx[np.lexsort((idx, -keys))[:n]].astype(np.int64)
    blocks = Blocks({c: s["pieces"] for c, s in stats.items() if s["pieces"] is not None},
                     w.shape[0])
    check_total(blocks.total)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    last_nonzero = max(int(starts[c]) + s["last_nonzero"] for c, s in stats.items()
                       if s["last_nonzero"] >= 0)
    key = key_of(seed, STREAMS["importance"])
    out, runs = blocks.group(key, n, last_nonzero)
    requests = {c: (float(blocks.offsets[k0]), k1 - k0, draws)
                for c, (k0, k1, _, draws) in runs.items()}
    batch = (key, blocks.total, n)
    source = getattr(w, _DRAW_SOURCE, None)
    if source is None:
        answers = map_chunks(_weights_chunk_draws, w, [
            (int(starts[c]), requests[c]) + batch if c in requests else None
            for c in range(n_chunks)])
    else:
        q, config, backend = source
        answers = map_chunks(_q_chunk_draws, q, [
            (int(starts[c]), requests[c]) + batch
            + (config, backend, stats[c].get("from_q", False))
            if c in requests else None for c in range(n_chunks)])
    for c, positions in answers.items():
        out[requests[c][2]] = starts[c] + positions
    return check_resolved(out)


def _check_weight_stats(stats, starts):
    """The in-memory path's errors, with global indices."""
    chunks = sorted(stats)
    n_neg = sum(stats[c]["n_neg"] for c in chunks)
    if n_neg:
        c = next(c for c in chunks if stats[c]["n_neg"])
        raise ValueError(f"weights must be >= 0: {n_neg} negative value(s), first at index "
                         f"{int(starts[c]) + stats[c]['first_neg']} ({stats[c]['neg_value']})")
    n_bad = sum(stats[c]["n_bad"] for c in chunks)
    if n_bad:
        c = next(c for c in chunks if stats[c]["n_bad"])
        raise ValueError(f"weights must be finite: {n_bad} non-finite value(s), first at "
                         f"index {int(starts[c]) + stats[c]['first_bad']} "
                         f"({stats[c]['bad_value']})")
    if not any(stats[c]["last_nonzero"] >= 0 for c in chunks):
        raise ValueError("weights sum to 0: at least one weight must be positive")


# ------------------------------------------------------------------ bands
def _band_block(q, edges, backend, block_info=None):
    """Band ids of one chunk; NaN raises naming its global index."""
    from ..bands import band_of as band_of_in_memory
    q = as_float(q)
    nan = np.isnan(q)
    if nan.any():
        start = block_info[0]["array-location"][0][0] if block_info else 0
        raise ValueError(f"q must not contain NaN: {int(nan.sum())} NaN value(s) in the chunk "
                         f"starting at {start}, first at index {start + int(np.argmax(nan))}")
    return band_of_in_memory(q, edges, backend=resolve_backend(backend, q.size))


def band_of(q, edges=DEFAULT_EDGES, *, backend="auto") -> "da.Array":
    """``zp_ref.band_of`` over a chunked pool: the number of edges strictly below |q|.

    A NaN raises ``ValueError`` when the result is computed.

    Parameters
    ----------
    q : dask.array.Array, shape (N,)
        Real Q values, in chunks.
    edges : sequence of float, shape (K,), default DEFAULT_EDGES
        Increasing band edges on |Q|.
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        The in-memory kernel each chunk runs (resolved per chunk).

    Returns
    -------
    dask.array.Array
        Lazy int64, shape (N,), in [0, K].
    """
    edges = check_edges(edges)
    check_backend(backend)
    q = check_pool(q, "q", allow_empty=True, hint="zp_ref.band_of")
    return q.map_blocks(_band_block, edges, backend, dtype=np.int64)


from .dask_strata import stratified_sample  # noqa: E402  (moved there: bounded memory)
