"""Stratified draws over a chunked pool: ``stratified_sample`` of
:mod:`zp_ref.bridges.dask`, with worker memory bounded by the chunk plus its outputs.

Every chunk task is one streaming walk over the chunk's q with the Numba kernels of
:mod:`zp_ref.kernels.cpu_band_stream`: band ids and importance weights are computed on
the fly and never stored, so a task holds the chunk, O(bands x 512) scratch and what it
returns (per-band counts, block totals (members/512), < 512 raw weights per band at each
end, the draws it resolves), never O(M) temporaries for a chunk of M entries.

Passes: (1) counts per band (members, drawable members, NaNs); (2, ``within=
"importance"``) per band with draws, the pieces of its weighted member sequence
(:func:`zp_ref.bridges.dask_blocks.block_pieces`'s format, assembled by ``Blocks``);
the client groups each band's draws by block with ``Blocks.group`` (the in-memory
``group_draws``) and resolves the draws in blocks split across chunks and those whose
target rounded up to the total; (3) every chunk resolves the draws in its whole blocks of each band
(offsets, per-block counts and draw numbers sent), or, ``within="uniform"``, turns
member ranks into pool positions. Same weights, same adds in the same order as the
in-memory prefix sums: the indices of ``zp_ref.stratified_sample``, bit for bit.

Weights and ``backend``: the chunk passes compute the weights with the cpu kernel's loop
whatever the backend, when every backend's weights are the same bits (powers 0, 1/2,
1, 2); for another power and a backend other than cpu (numpy, cuda: ``pow`` differs in
the last bit), each chunk is walked in segments of SEGMENT entries whose weights that
backend computes (``zp_ref.importance_weights``: about 4 x 8 x SEGMENT bytes of
temporaries, 2.1 MiB measured).
"""
from __future__ import annotations

import numpy as np

from ..backends import resolve_backend
from ..bands import DEFAULT_EDGES, allocate_draws, band_overflow_error, check_stratified_args
from ..checks import check_backend
from ..kernels.cpu_band_stream import (band_block_pieces, band_counts_stream, member_positions,
                                       resolve_band_blocks, same_weights_everywhere,
                                       weight_params)
from ..rng import STREAMS, derive_seed, key_of
from ..sampling import PREFIX_BLOCK as B
from .dask_blocks import (Blocks, as_float, check_pool, check_resolved, check_total,
                          chunk_starts, head_length, map_chunks)

__all__ = ["stratified_sample"]

#: Entries per segment when the weights come from another backend than the cpu kernel.
SEGMENT = 1 << 16
_NO_WEIGHTS = np.empty(0)


# ------------------------------------------------------------------ chunk side
def _weight_source(weight_config, backend, n_pool):
    """(kernel params, backend whose weights the walk takes, or None: the kernel's own).
    ``backend`` resolves on the pool size, as the in-memory call would."""
    backend = resolve_backend(backend, n_pool)
    if weight_config is None:
        return weight_params(2.0, 1.0, 1.0), None             # unused
    params = weight_params(*weight_config)
    return params, None if backend == "cpu" or same_weights_everywhere(params[0]) else backend


def _segment_weights(q, params, backend):
    """The in-memory weights of one segment on ``backend`` (NaN: weight 0, refused later)."""
    from ..weighting import importance_weights
    nan = np.isnan(q)
    if nan.any():
        q = np.where(nan, np.inf, q)
    return importance_weights(q, weight_power=params[0], min_q_abs=params[2],
                              max_weight=params[3], normalize=False, backend=backend)


def _stream(kernel, q, params, given, *args, left=None):
    """``kernel(segment, weights, base, *args)`` over the chunk: at once with the kernel's
    own weights, or SEGMENT entries at a time with ``given``'s (until left[0] == 0)."""
    if given is None:
        kernel(q, _NO_WEIGHTS, 0, *args)
        return
    for lo in range(0, q.size, SEGMENT):
        if left is not None and left[0] == 0:
            return
        seg = q[lo:lo + SEGMENT]
        kernel(seg, _segment_weights(seg, params, given), lo, *args)


def _band_stats(q, edges, weight_config, backend, n_pool):
    """Pass 1: NaN count and first position; members and drawable members per band."""
    q = as_float(q)
    params, given = _weight_source(weight_config, backend, n_pool)
    n_bands = edges.size + 1
    members, drawable = np.zeros(n_bands, dtype=np.int64), np.zeros(n_bands, dtype=np.int64)
    nan = np.array([0, -1], dtype=np.int64)
    need = weight_config is not None
    _stream(band_counts_stream, q, params, given if need else None, edges, params, need,
            members, drawable, nan)
    if nan[0]:
        return {"n_nan": int(nan[0]), "first_nan": int(nan[1])}
    return {"n_nan": 0, "members": members, "drawable": drawable if need else members}


def _csr(sizes):
    return np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)


def _band_pieces(q, start, edges, weight_config, backend, n_pool, wanted):
    """Pass 2: wanted {b: (r0, members of b here)} -> {b: (pieces of its weighted member
    sequence, global index of its last nonzero weight or -1)}."""
    q = as_float(q)
    params, given = _weight_source(weight_config, backend, n_pool)
    n_bands = edges.size + 1
    head, n_full, n_tail = (np.zeros(n_bands, dtype=np.int64) for _ in range(3))
    head[:] = -1
    for b, (r0, m) in wanted.items():
        head[b] = head_length(r0, m)
        n_full[b] = (m - head[b]) // B
        n_tail[b] = m - head[b] - n_full[b] * B
    full_ptr, head_ptr, tail_ptr = _csr(n_full), _csr(np.maximum(head, 0)), _csr(n_tail)
    full = np.empty(full_ptr[-1])
    head_w, head_idx = np.empty(head_ptr[-1]), np.empty(head_ptr[-1], dtype=np.int64)
    tail_w, tail_idx = np.empty(tail_ptr[-1]), np.empty(tail_ptr[-1], dtype=np.int64)
    rank, acc = np.zeros(n_bands, dtype=np.int64), np.zeros(n_bands)
    last = np.full(n_bands, -1, dtype=np.int64)
    _stream(band_block_pieces, q, params, given, edges, params, start, rank, head, n_full,
            full_ptr, full, head_ptr, head_w, head_idx, tail_ptr, tail_w, tail_idx, acc, last)
    out = {}
    for b, (r0, m) in wanted.items():
        if rank[b] != m:
            raise RuntimeError(f"internal error: band {b} has {int(rank[b])} members in the "
                               f"chunk at {start}, {m} in the first pass (did the pool change?)")
        out[b] = ({"r0": r0, "full": full[full_ptr[b]:full_ptr[b + 1]],
                   "head": head_w[head_ptr[b]:head_ptr[b + 1]],
                   "head_idx": head_idx[head_ptr[b]:head_ptr[b + 1]],
                   "tail": tail_w[tail_ptr[b]:tail_ptr[b + 1]],
                   "tail_idx": tail_idx[tail_ptr[b]:tail_ptr[b + 1]]}, int(last[b]))
    return out


def _band_draws(q, start, edges, weight_config, backend, n_pool, weighted, uniform):
    """Pass 3: weighted {b: (head, block offsets, per-block draw counts (cumulative, from
    0), draw numbers, key, total)} -> {b: global indices of those draws}; uniform {b:
    ascending member ranks local to the chunk} -> {b: global indices}."""
    q = as_float(q)
    n_bands = edges.size + 1
    rank = np.zeros(n_bands, dtype=np.int64)
    if uniform:
        rank_ptr = _csr([uniform[b].size if b in uniform else 0 for b in range(n_bands)])
        ranks = np.concatenate([uniform[b] for b in sorted(uniform)]).astype(np.int64)
        out = np.full(ranks.size, -1, dtype=np.int64)
        left = np.array([ranks.size], dtype=np.int64)
        member_positions(q, 0, edges, start, rank, rank_ptr, ranks, rank_ptr[:-1].copy(), out,
                         left)
        return {b: out[rank_ptr[b]:rank_ptr[b + 1]] for b in uniform}
    params, given = _weight_source(weight_config, backend, n_pool)
    head = np.full(n_bands, -1, dtype=np.int64)
    keys, totals = np.zeros(n_bands, dtype=np.uint64), np.zeros(n_bands)
    sizes = np.zeros(n_bands, dtype=np.int64)
    offsets, counts, draws, base = [], [np.zeros(1, dtype=np.int64)], [], 0
    for b in sorted(weighted):
        head[b], off, cum, numbers, keys[b], totals[b] = weighted[b]
        sizes[b] = off.size
        offsets.append(off)
        counts.append(cum[1:].astype(np.int64) + base)
        draws.append(numbers)
        base += numbers.size
    block_ptr, draw_ptr = _csr(sizes), np.concatenate(counts).astype(np.int64)
    offsets = np.concatenate(offsets).astype(np.float64)
    draws = np.concatenate(draws).astype(np.int64)
    out = np.full(draws.size, -1, dtype=np.int64)
    left = np.array([draws.size], dtype=np.int64)
    local, local_idx = np.empty((n_bands, B)), np.empty((n_bands, B), dtype=np.int64)
    _stream(resolve_band_blocks, q, params, given, edges, params, start, rank, head, block_ptr,
            offsets, draw_ptr, draws, keys, totals, local, local_idx, out, left, left=left)
    found = {}
    for b in sorted(weighted):
        found[b] = out[draw_ptr[block_ptr[b]]:draw_ptr[block_ptr[b + 1]]]
    return found


# ------------------------------------------------------------------ client side
def _plan_weighted_bands(q, starts, rank0, per_chunk, members, alloc, live, seed, edges,
                         weight_config, backend):
    """Pass 2 and the client's part of pass 3 for ``within="importance"``. Returns (draws
    {b: int64 with -1 where a chunk answers}, weighted [{b: request} per chunk],
    uniform = [{}])."""
    n_chunks, n_pool = len(starts) - 1, int(starts[-1])
    wanted = [{b: (int(rank0[c, b]), int(per_chunk[c, b])) for b in live if per_chunk[c, b]}
              or None for c in range(n_chunks)]
    pieces = map_chunks(_band_pieces, q, [
        None if want is None else (int(starts[c]), edges, weight_config, backend, n_pool, want)
        for c, want in enumerate(wanted)])
    draws, weighted = {}, [dict() for _ in range(n_chunks)]
    for b in live:
        blocks = Blocks({c: p[b][0] for c, p in pieces.items() if b in p}, int(members[b]))
        if not np.isfinite(blocks.total):                     # the in-memory message
            raise band_overflow_error(b, int(members[b]), *weight_config)
        check_total(blocks.total)
        key = key_of(derive_seed(seed, b), STREAMS["importance"])
        # u * total rounded up to the total: the band's last nonzero weight
        out, runs = blocks.group(key, int(alloc[b]),
                                 max(p[b][1] for p in pieces.values() if b in p))
        for c, (k0, k1, counts, numbers) in runs.items():   # whole blocks: in their chunk
            weighted[c][b] = (pieces[c][b][0]["head"].size, blocks.offsets[k0:k1], counts,
                              numbers, key, blocks.total)
        draws[b] = out
    return draws, weighted, [dict() for _ in range(n_chunks)]


def _plan_uniform_bands(rank0, members, alloc, live, seed):
    """``within="uniform"``: member ranks ``uniform_indices(members, alloc, seed_b)``,
    sorted and sent to the chunks holding them. Returns (draws, weighted = [{}], uniform
    [{b: (ascending ranks local to the chunk, their draw numbers)} per chunk])."""
    from ..sampling import uniform_indices
    n_chunks = rank0.shape[0] - 1
    draws, uniform = {}, [dict() for _ in range(n_chunks)]
    for b in live:
        ranks = uniform_indices(int(members[b]), int(alloc[b]), seed=derive_seed(seed, b),
                                backend="numpy")
        order = np.argsort(ranks, kind="stable")
        ranks = ranks[order]
        bounds = np.searchsorted(ranks, rank0[:, b], side="left")
        draws[b] = np.full(ranks.size, -1, dtype=np.int64)
        for c in np.flatnonzero(np.diff(bounds)):
            lo, hi = bounds[c], bounds[c + 1]
            uniform[c][b] = (ranks[lo:hi] - rank0[c, b], order[lo:hi])
    return draws, [dict() for _ in range(n_chunks)], uniform


def stratified_sample(q, n, *, edges=DEFAULT_EDGES, mix, seed, within="uniform",
                      weight_power=2.0, min_q_abs=1e-6, max_weight=None, backend="auto"):
    """``zp_ref.stratified_sample`` over a chunked pool, equal to the in-memory result
    on the concatenated q for the same arguments.

    Passes: (1) per chunk, members and drawable members per band (and NaN counts);
    the client allocates the draws; (2, ``within="importance"`` only) per chunk and
    band, the block totals of the band's weights, given the rank of its first member
    there; the client groups the draws by block; (3) each chunk receives the draws that
    fall in its whole blocks (or the member ranks it holds) and returns indices. Every
    chunk pass is one streaming walk: a task needs the chunk plus O(outputs) memory.
    The chunk passes use the streaming cpu kernels whatever ``backend`` (validated as
    in memory), except for a power other than 0, 1/2, 1, 2 on another backend, whose
    weights they take from that backend segment by segment (module docstring).

    Parameters
    ----------
    q : dask.array.Array, shape (N,)
        Real pool values, in chunks (NaN refused).
    n : int
        Number of draws, >= 0.
    edges : sequence of float, shape (K,), default DEFAULT_EDGES
    mix : array_like, shape (K+1,)
        Shares per band, summing to 1.
    seed : int
    within : {"uniform", "importance"}, default "uniform"
    weight_power, min_q_abs : float, default 2.0, 1e-6
    max_weight : float or None, default None
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        All as in :func:`zp_ref.stratified_sample`.

    Returns
    -------
    idx : numpy.ndarray
        int64, shape (n,), band-major global indices.
    info : dict
        As :func:`zp_ref.stratified_sample`'s.
    """
    edges, n, mix, seed, within, weight_power, min_q_abs, max_weight = \
        check_stratified_args(edges, n, mix, seed, within, weight_power, min_q_abs, max_weight)
    check_backend(backend)
    q = check_pool(q, "q", allow_empty=n == 0, hint="zp_ref.stratified_sample")
    n_bands, n_chunks = edges.size + 1, q.numblocks[0]
    starts = chunk_starts(q)
    weight_config = (weight_power, min_q_abs, max_weight) \
        if within == "importance" and n > 0 else None

    stats = map_chunks(_band_stats, q, [(edges, weight_config, backend, int(starts[-1]))]
                       * n_chunks)
    n_nan = sum(s["n_nan"] for s in stats.values())
    if n_nan:
        c = next(c for c in range(n_chunks) if stats[c]["n_nan"])
        raise ValueError(f"q must not contain NaN: {n_nan} NaN value(s), first at index "
                         f"{int(starts[c]) + stats[c]['first_nan']}; |Q| bands need a value "
                         "for every entry")
    per_chunk = np.array([stats[c]["members"] for c in range(n_chunks)],
                         dtype=np.int64).reshape(n_chunks, n_bands)
    members = per_chunk.sum(axis=0)
    drawable = np.array([stats[c]["drawable"] for c in range(n_chunks)],
                        dtype=np.int64).reshape(n_chunks, n_bands).sum(axis=0)
    target, m, alloc = allocate_draws(n, mix, drawable)
    # rank of the first member of band b in chunk c
    rank0 = np.vstack((np.zeros(n_bands, dtype=np.int64), np.cumsum(per_chunk, axis=0)))
    live = [b for b in range(n_bands) if alloc[b] > 0]

    if within == "importance" and live:
        draws, weighted, uniform = _plan_weighted_bands(q, starts, rank0, per_chunk, members,
                                                        alloc, live, seed, edges,
                                                        weight_config, backend)
    else:
        draws, weighted, uniform = _plan_uniform_bands(rank0, members, alloc, live, seed)
    answers = map_chunks(_band_draws, q, [
        (int(starts[c]), edges, weight_config, backend, int(starts[-1]), weighted[c],
         {b: r[0] for b, r in uniform[c].items()})
        if weighted[c] or uniform[c] else None for c in range(n_chunks)])
    for c, found in answers.items():
        for b, idx in found.items():
            numbers = weighted[c][b][3] if b in weighted[c] else uniform[c][b][1]
            draws[b][numbers] = idx
    idx = np.concatenate([check_resolved(draws[b]) for b in live]) if live \
        else np.empty(0, dtype=np.int64)
    info = {"edges": edges.tolist(), "members": members.tolist(),
            "drawable": (drawable if weight_config is not None else members).tolist(),
            "mix": m.tolist(), "target": target.tolist(), "achieved": alloc.tolist(),
            "redistributed": (alloc - target).tolist()}
    return idx.astype(np.int64, copy=False), info
