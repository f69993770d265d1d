"""Numba CPU kernels streaming over one chunk of Q values for stratified draws.

Each kernel is one serial walk over a segment ``q`` (float64 contiguous) of a chunk that
computes every entry's band (``band_id`` of :mod:`.cpu_bands`: the number of edges
strictly below |q|) and, when needed, its importance weight, and keeps only per-band
state: counters, one running block sum, and a scratch of one PREFIX_BLOCK block of
local prefix sums and positions per band. So a chunk of M entries costs O(bands x 512)
scratch, never O(M) temporaries.

Weights. With ``w`` empty the kernels compute the weights themselves, PREFIX_BLOCK *
4 entries at a time into a scratch array by ``fill_weights`` of :mod:`.cpu_weights`
(the loop of the in-memory cpu weights, so the same bits); otherwise ``w`` holds the
segment's weights, computed by the caller (a backend whose weights differ from the cpu
kernel's). ``params`` is ``(p, power_mode(p), min_q_abs, max_weight, 1.0)``.

State arrays are inputs and outputs, so a chunk may be walked in several segments
(``base`` = position of the segment's first entry in the chunk); every kernel starts
from the state it is given. The kernels use NumPy's error model, as the parallel weight
kernels do: 1 / 0 (|q|**p underflowing) gives inf, capped by max_weight, not an error.
"""
import numpy as np
from numba import njit

from .common import PREFIX_BLOCK
from .cpu_bands import band_id
from .cpu_sampling import count_at_most
from .cpu_weights import (POWER_HALF, POWER_ONE, POWER_TWO, POWER_ZERO, fill_weights,
                          power_mode)
from .counter_rng import uniform_at

#: Entries whose weights are computed at once into the scratch array.
SCRATCH = 4 * PREFIX_BLOCK


def weight_params(p: float, min_q_abs: float, max_weight: float) -> tuple:
    """The ``params`` tuple of the kernels for temperature 1."""
    return (float(p), power_mode(p), float(min_q_abs), float(max_weight), 1.0)


def same_weights_everywhere(p: float) -> bool:
    """True when every backend's importance weights equal the cpu kernel's bit for bit
    for the power p at temperature 1: p in (0, 1/2, 1, 2), where NumPy takes the same
    fast paths (one, sqrt, identity, square) and the rest is IEEE division. Any other
    power goes through ``pow``, whose last bit differs between NumPy's SIMD loops,
    libm and CUDA."""
    return power_mode(p) in (POWER_ZERO, POWER_ONE, POWER_TWO, POWER_HALF)


@njit(cache=True, inline="always")
def segment_weights(q, w, lo, hi, params, scratch):
    """The weights of q[lo:hi] (hi - lo <= SCRATCH): a view of ``w`` when it is given,
    else ``scratch[:hi - lo]`` filled by the in-memory cpu weight loop."""
    if w.size:
        return w[lo:hi]
    p, mode, min_q_abs, max_weight, inv_temperature = params
    fill_weights(q, lo, hi, scratch, 0, p, mode, min_q_abs, max_weight, inv_temperature)
    return scratch[:hi - lo]


@njit(cache=True, inline="always")
def count_member(x, edges, head, rank):
    """(band b of x, x's rank among b's members in the chunk) with rank[b] advanced, or
    (-1, -1) when band b has nothing to do here (head[b] < 0)."""
    b = band_id(x, edges)
    if head[b] < 0:
        return -1, -1
    r = rank[b]
    rank[b] = r + 1
    return b, r


@njit(cache=True, error_model="numpy")
def band_counts_stream(q, w, base, edges, params, need_weights, members, drawable,
                       nan_state):
    """Pass 1 over a segment: members[b] += entries of band b; drawable[b] += those with
    weight > 0 (when ``need_weights``); nan_state = [NaN count, first NaN position in the
    chunk or -1]. q (S,), w (S,) or (0,), edges (K,), members/drawable int64 (K+1,)."""
    scratch = np.empty(SCRATCH)
    n = q.size
    for lo in range(0, n, SCRATCH):
        hi = min(n, lo + SCRATCH)
        if need_weights:
            ws = segment_weights(q, w, lo, hi, params, scratch)
            for k in range(hi - lo):
                x = q[lo + k]
                b = band_id(x, edges)
                members[b] += 1
                drawable[b] += ws[k] > 0.0
        else:
            for k in range(lo, hi):
                members[band_id(q[k], edges)] += 1
        for k in range(lo, hi):
            if q[k] != q[k]:
                if nan_state[0] == 0:
                    nan_state[1] = base + k
                nan_state[0] += 1


@njit(cache=True, error_model="numpy")
def band_block_pieces(q, w, base, edges, params, start, rank, head, n_full, full_ptr, full,
                      head_ptr, head_w, head_idx, tail_ptr, tail_w, tail_idx, acc, last):
    """Pass 2 over a segment: the pieces of every wanted band's weighted member sequence.

    Band b is wanted when head[b] >= 0; rank[b] counts its members seen in the chunk. Its
    first head[b] members (before the first block boundary) go raw to head_w/head_idx
    from head_ptr[b]; the next n_full[b] * 512 are summed sequentially from 0.0 into
    full[full_ptr[b] + block] (the adds of the in-memory block totals); the rest go raw
    to tail_w/tail_idx from tail_ptr[b]. acc (K+1,) is the running block sum; last[b] =
    global index of the band's last nonzero weight (or stays -1). Indices are global:
    start + base + position in the segment."""
    scratch = np.empty(SCRATCH)
    n = q.size
    B = PREFIX_BLOCK
    for lo in range(0, n, SCRATCH):
        hi = min(n, lo + SCRATCH)
        ws = segment_weights(q, w, lo, hi, params, scratch)
        for k in range(hi - lo):
            b, r = count_member(q[lo + k], edges, head, rank)
            if b < 0:
                continue
            h = head[b]
            x = ws[k]
            g = start + base + lo + k
            if x != 0.0:
                last[b] = g
            if r < h:
                head_w[head_ptr[b] + r] = x
                head_idx[head_ptr[b] + r] = g
                continue
            r -= h
            if r < n_full[b] * B:
                s = acc[b] + x
                if r % B == B - 1:
                    full[full_ptr[b] + r // B] = s
                    s = 0.0
                acc[b] = s
                continue
            r -= n_full[b] * B
            tail_w[tail_ptr[b] + r] = x
            tail_idx[tail_ptr[b] + r] = g


@njit(cache=True, error_model="numpy")
def resolve_band_blocks(q, w, base, edges, params, start, rank, head, block_ptr, offsets,
                        draw_ptr, draws, keys, totals, local, local_idx, out, left):
    """Pass 3 (``within="importance"``) over a segment: the draws whose targets fall in
    the chunk's whole blocks of each band.

    Band b's whole blocks in the chunk start after its first head[b] members (head[b] < 0:
    no draws here); block k of band b (k from 0) is global block number
    block_ptr[b] + k, with offset ``offsets[g]`` (the sum of everything before it) and
    draws draws[draw_ptr[g]:draw_ptr[g + 1]] (draw numbers of stream keys[b]). Blocks
    with draws build their local prefix sums sequentially from 0.0 in local[b] (512,)
    with the members' global indices in local_idx[b]; once complete, draw j (target
    t = uniform_at(keys[b], j) * totals[b]) takes the first member i with
    offsets[g] + local[b, i] > t: out[draw_ptr[g] + a] for the a-th draw of the block.
    left[0] = draws not yet resolved; the walk stops when it reaches 0."""
    scratch = np.empty(SCRATCH)
    n = q.size
    B = PREFIX_BLOCK
    for lo in range(0, n, SCRATCH):
        if left[0] == 0:
            return
        hi = min(n, lo + SCRATCH)
        ws = segment_weights(q, w, lo, hi, params, scratch)
        for k in range(hi - lo):
            b, r = count_member(q[lo + k], edges, head, rank)
            if b < 0:
                continue
            r -= head[b]
            if r < 0 or r >= (block_ptr[b + 1] - block_ptr[b]) * B:
                continue
            g = block_ptr[b] + r // B
            if draw_ptr[g] == draw_ptr[g + 1]:
                continue
            i = r % B
            s = (0.0 if i == 0 else local[b, i - 1]) + ws[k]
            local[b, i] = s
            local_idx[b, i] = start + base + lo + k
            if i < B - 1:
                continue
            for a in range(draw_ptr[g], draw_ptr[g + 1]):
                t = uniform_at(keys[b], np.uint64(draws[a])) * totals[b]
                m = min(B - 1, count_at_most(offsets[g], local[b], t))
                out[a] = local_idx[b, m]
            left[0] -= draw_ptr[g + 1] - draw_ptr[g]


@njit(cache=True, error_model="numpy")
def member_positions(q, base, edges, start, rank, rank_ptr, ranks, next_draw, out, left):
    """Pass 3 (``within="uniform"``) over a segment: global positions of band members
    given their ranks in the chunk. ranks[rank_ptr[b]:rank_ptr[b + 1]] are band b's
    ranks, ascending; out[a] = start + position of the member of rank ranks[a].
    next_draw[b] (from rank_ptr[b]) is the next rank to find; left[0] as above."""
    n = q.size
    for k in range(n):
        if left[0] == 0:
            return
        b = band_id(q[k], edges)
        r = rank[b]
        rank[b] = r + 1
        a = next_draw[b]
        while a < rank_ptr[b + 1] and ranks[a] == r:
            out[a] = start + base + k
            a += 1
            left[0] -= 1
        next_draw[b] = a
