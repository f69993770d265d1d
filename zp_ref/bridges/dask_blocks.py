"""The chunk machinery of :mod:`zp_ref.bridges.dask`: pool checks, one map over the
chunks, and the blockwise prefix sums of a weighted sequence split across chunks (the
pieces each chunk returns, their assembly on the client, and the resolution of draws in
the chunks with the in-memory kernels). See docs/scale.md, "Exactness: the float order".
"""
from __future__ import annotations

import math

import numpy as np
import dask
import dask.array as da

from ..kernels import threads_for
from ..rng import uniform_numpy
from ..sampling import PREFIX_BLOCK

B = PREFIX_BLOCK


def check_pool(a, name: str, *, allow_empty: bool = False, hint: str = "") -> "da.Array":
    """``a`` as a 1-D dask array of real numbers with known chunk sizes."""
    if not isinstance(a, da.Array):
        raise TypeError(f"{name} must be a 1-D dask.array.Array, got {type(a).__name__}"
                        + (f"; for in-memory arrays use {hint}" if hint else ""))
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D dask array, got shape {a.shape}")
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {a.dtype}")
    if any(math.isnan(c) for c in a.chunks[0]):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() "
                         "first")
    if a.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    return a


def chunk_starts(a) -> np.ndarray:
    """Global index of the first entry of every chunk, int64 (n_chunks + 1,)."""
    return np.concatenate(([0], np.cumsum(a.chunks[0]))).astype(np.int64)


#: Chunk tasks from which :func:`map_chunks` gathers results as they complete (fewer:
#: one gather at the end, ~40 ms faster for 16 tasks on 2 workers).
GATHER_AS_COMPLETED_MIN = 64


def map_chunks(func, a, per_chunk_args):
    """``func(chunk, *args)`` on every chunk given a (non-None) args tuple, computed at
    once on the active scheduler; returns {chunk number: result}. On a distributed
    client with GATHER_AS_COMPLETED_MIN tasks or more, the results are gathered as they
    complete and released in the workers at once, so a worker does not hold the results
    of all its chunks (at 10**9 entries in 100 chunks: 8 MB of block totals each)."""
    chunks = a.to_delayed().ravel()
    jobs = {c: dask.delayed(func, pure=False)(chunks[c], *args)
            for c, args in enumerate(per_chunk_args) if args is not None}
    client = _distributed_client()
    if client is None or len(jobs) < GATHER_AS_COMPLETED_MIN:
        return dict(zip(jobs, dask.compute(*jobs.values())))
    from distributed import as_completed
    futures = client.compute(list(jobs.values()))
    chunk_of = {f.key: c for f, c in zip(futures, jobs)}
    done = as_completed(futures, with_results=True)
    del futures                                   # each result is freed once gathered
    return {chunk_of[f.key]: result for f, result in done}


def _distributed_client():
    """The distributed client dask would compute on, or None (another scheduler)."""
    try:
        from distributed import default_client
        client = default_client()
    except (ImportError, ValueError):
        return None
    return client if dask.config.get("scheduler", None) in (None, "dask.distributed") \
        else None


def as_float(chunk) -> np.ndarray:
    """A chunk as contiguous float64 (no copy when it already is)."""
    return np.ascontiguousarray(chunk, dtype=np.float64)


# ------------------------------------------------------------------ blockwise prefix sums
def block_totals(x: np.ndarray) -> np.ndarray:
    """Sequential sums of consecutive blocks of B entries (x.size a multiple of B), by
    the in-memory kernel."""
    from ..kernels.cpu_sampling import block_totals as block_totals_kernel
    n_blocks = x.size // B
    totals = np.empty(n_blocks)
    block_totals_kernel(np.ascontiguousarray(x, dtype=np.float64), totals,
                        np.empty(max(n_blocks, 1), dtype=np.int64))   # negatives: unused
    return totals


def q_block_pieces(q, start, config):
    """:func:`block_pieces` of the importance weights of one chunk of q (float64), with
    the whole blocks summed straight from q by the ``sample_from_q`` kernel (no weights
    array), the partial blocks' weights by the cpu kernel, as the chunk's weights are;
    None when q holds a NaN there (the caller then counts them on the weights).
    ``config``: (p, min_q_abs, max_weight, temperature)."""
    from ..kernels.cpu_weights import importance_weights_cpu
    head = head_length(start, q.size)
    tail = head + (q.size - head) // B * B
    with threads_for(tail - head):
        totals = q_block_totals(q[head:tail], kernel_params(config))
    ends = []
    for part in (q[:head], q[tail:]):
        w = np.empty(part.size)
        if part.size and importance_weights_cpu(part, *config, w)[2]:
            return None
        ends.append(w)
    return {"r0": start, "full": totals,
            "head": ends[0], "head_idx": np.arange(start, start + head),
            "tail": ends[1], "tail_idx": np.arange(start + tail, start + q.size)}


def q_last_positive(q, config) -> int:
    """Position of the last entry of q (float64) whose weight is > 0, -1 if none."""
    from ..kernels.cpu_sample_from_q import last_positive_weight
    return int(last_positive_weight(q, kernel_params(config)))


def kernel_params(config):
    """The weight kernels' parameter tuple (p, power mode, min_q_abs, max_weight, 1/T)."""
    from ..kernels.cpu_weights import power_mode
    p, min_q_abs, max_weight, temperature = config
    return (p, power_mode(p), min_q_abs, max_weight, 1.0 / temperature)


def resolve_grouped(x, head, request, key, total, n, config=None):
    """Chunk positions of the draws the client placed in this chunk's whole blocks, in
    the order of the request's draw numbers.

    ``request`` = (base, n_blocks, draws), from a run of :meth:`Blocks.group`: the chunk's whole
    blocks are its n_blocks blocks from ``head`` on, ``base`` is the sum of all blocks
    before them (``ends[k0 - 1]``). The chunk sums its blocks again (the kernel of pass
    1, the same sums) and adds them to ``base`` one by one, which gives the client's
    block ends bit for bit (``np.add.accumulate`` is sequential), so it finds each
    draw's block (the first with end > t_j; the draws come in block order: one merge
    walk) without receiving 16 bytes per block. ``x``
    is the chunk's weights, or its q (NaN-free) with ``config`` the weight parameters:
    the weights are then recomputed from q. The in-memory kernels resolve the draws
    (the first i with offset + local[i] > t_j)."""
    from ..kernels.cpu_sample_from_q import parts_for, resolve_draws_from_q
    from ..kernels.cpu_sampling import resolve_draws, scratch, starts_of_ordered_draws
    base, n_blocks, draws = request
    whole = x[head:head + n_blocks * B]
    with threads_for(whole.size + draws.size):
        totals = (block_totals(whole) if config is None
                  else q_block_totals(whole, kernel_params(config)))
        ends = np.add.accumulate(np.concatenate(([base], totals)))     # sequential
        starts = np.empty(n_blocks + 1, dtype=np.int64)
        if not starts_of_ordered_draws(key, total, ends[1:], draws, starts):
            raise RuntimeError("internal error: the draws sent to a chunk are not those of "
                               "its blocks, in block order")
        grouped = draws.astype(np.int64)
        out = scratch("draw_out", n, np.int64)       # indexed by draw number; kept warm
        if config is None:
            resolve_draws(key, total, whole, ends[:-1], starts, grouped, out,
                          parts_for(n_blocks))
        else:
            resolve_draws_from_q(key, total, whole, kernel_params(config), ends[:-1], starts,
                                 grouped, out, parts_for(n_blocks))
    return (head + out[draws]).astype(index_dtype(x.size))


def q_block_totals(q, params) -> np.ndarray:
    """Sequential sums of the weights of consecutive blocks of B entries of q (q.size a
    multiple of B), straight from q (the ``sample_from_q`` kernel)."""
    from ..kernels.cpu_sample_from_q import block_totals_from_q, parts_for
    totals = np.empty(q.size // B)
    block_totals_from_q(q, params, totals, parts_for(totals.size))
    return totals


def head_length(r0: int, m: int) -> int:
    """Members before the first block boundary of a run of m members from rank r0."""
    return min(m, -r0 % B)


def block_pieces(wm, members, start, r0):
    """What one chunk returns for a weighted sequence whose members in this chunk have
    ranks r0 .. r0+len(wm)-1: the sequential totals of its whole blocks, and the raw
    weights (with global indices) of the partial blocks at both ends."""
    m = wm.size
    head = head_length(r0, m)
    tail = head + (m - head) // B * B

    def idx(lo, hi):
        pos = np.arange(lo, hi, dtype=np.int64)
        return start + (pos if members is None else members[pos])

    return {"r0": r0, "full": block_totals(wm[head:tail]),
            "head": wm[:head].copy(), "head_idx": idx(0, head),
            "tail": wm[tail:].copy(), "tail_idx": idx(tail, m)}


class Blocks:
    """The block totals of one weighted sequence, assembled on the client from the
    pieces of its chunks (dict chunk -> pieces, in pool order)."""

    def __init__(self, pieces: dict, n_members: int):
        n_blocks = -(-n_members // B)
        totals = np.empty(n_blocks)
        owner = np.full(n_blocks, -1, dtype=np.int64)    # chunk of a whole block, else -1
        fragments = {}
        for c in sorted(pieces):
            p = pieces[c]
            k0 = (p["r0"] + p["head"].size) // B
            if p["head"].size:
                fragments.setdefault(p["r0"] // B, []).append((p["head"], p["head_idx"]))
            totals[k0:k0 + p["full"].size] = p["full"]
            owner[k0:k0 + p["full"].size] = c
            if p["tail"].size:
                fragments.setdefault(k0 + p["full"].size, []).append((p["tail"], p["tail_idx"]))
        self.split = {}                          # block split across chunks -> (local, idx)
        with np.errstate(over="ignore"):         # an infinite total is refused later
            for k, parts in fragments.items():
                local = np.cumsum(np.concatenate([v for v, _ in parts]))     # sequential
                totals[k] = local[-1]
                self.split[k] = (local, np.concatenate([i for _, i in parts]))
            self.ends = np.add.accumulate(totals)                         # sequential
        self.offsets = np.concatenate(([0.0], self.ends[:-1]))
        # segments: runs of whole blocks of one chunk, and single split blocks
        first = np.flatnonzero(np.r_[True, (owner[1:] != owner[:-1]) | (owner[1:] == -1)])
        self.segments = np.stack((first, np.r_[first[1:], n_blocks], owner[first]), axis=1)

    @property
    def total(self) -> float:
        return float(self.ends[-1])

    def group(self, key, n, last_nonzero):
        """The n draws of stream ``key`` placed in blocks by the in-memory counting sort
        (``group_draws``: the first block k with ends[k] > t_j, t_j = u(key, j) * total).
        Returns (out, runs): out int64 (n,) holds the draws resolved here (in blocks
        split across chunks, and targets rounded up to the total: ``last_nonzero``), -1
        elsewhere; runs {chunk: (k0, k1, counts, draws)}: the draws in the chunk's whole
        blocks k0..k1-1 in block order, ``draws[counts[r]:counts[r + 1]]`` in block
        k0 + r (both of ``index_dtype(n)``: 4 bytes a draw on the wire)."""
        from ..kernels.cpu_sampling import group_draws, guide_table
        small = index_dtype(n)
        with threads_for(n + self.ends.size):
            starts, grouped = group_draws(key, self.ends, guide_table(self.ends), n)
        out = np.full(n, -1, dtype=np.int64)
        out[grouped[starts[self.ends.size]:]] = last_nonzero
        runs = {}
        for k0, k1, c in self.segments:
            lo, hi = starts[k0], starts[k1]
            if lo == hi:
                continue
            draws = grouped[lo:hi].astype(small)     # a copy: grouped is scratch
            if c < 0:                                # a split block: resolved here
                local, idx = self.split[k0]
                t = uniform_numpy(key, draws.astype(np.uint64)) * self.total
                out[draws] = idx[np.searchsorted(self.offsets[k0] + local, t, side="right")]
            else:
                runs[int(c)] = (int(k0), int(k1), (starts[k0:k1 + 1] - lo).astype(small), draws)
        return out, runs


def index_dtype(size: int):
    """uint32 for indices below ``size`` when they fit (half the bytes to send), else
    int64."""
    return np.dtype(np.uint32) if size <= 2**32 else np.dtype(np.int64)


def check_total(total: float):
    """The in-memory errors for an overflowing or zero sum of weights."""
    if not np.isfinite(total):
        raise ValueError(f"the sum of the weights overflows ({total}); rescale them")
    if total <= 0.0:
        raise ValueError("weights sum to 0: at least one weight must be positive")


def last_nonzero(w) -> int:
    """Position of the last nonzero entry (-1 if none), scanning back in growing steps."""
    hi, step = w.size, 4096
    while hi > 0:
        lo = max(0, hi - step)
        nz = np.flatnonzero(w[lo:hi])
        if nz.size:
            return lo + int(nz[-1])
        hi, step = lo, 2 * step
    return -1


def check_resolved(out):
    """out, once every draw has an index (an internal invariant: -1 marks a draw that
    no chunk resolved)."""
    if out.size and out.min() < 0:
        raise RuntimeError(f"internal error: {int((out < 0).sum())} draw(s) were not "
                           "resolved by any chunk")
    return out
