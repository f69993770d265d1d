"""numba.cuda kernels of the capped selection: the oracle's ``select_under_cap``
(:mod:`zp_ref.refinement.engine`) on the device (imported only for backend="cuda"; the
host driver is :mod:`zp_ref.refinement.cuda`).

The urgency order (sign change first, then smaller min |Q|, then lower level, then the
packed key of the lower corner; no two candidates tie) is, for at most ``RANK_MAX``
candidates, each one's rank by counting the candidates before it (one kernel, n**2
comparisons); above that, a stable least-significant-bit-first radix sort, one bit per
pass (a flag, a device-wide scan, a stable scatter): the key's bits, then the level's,
then the 63 bits of min |Q| (a non-negative float64 orders as its bit pattern), then
the sign bit. A cell's charge is its 2**d centres plus
its face points that are not tree points yet and that no more urgent cell brings (the
lowest rank claiming a key wins, by atomic min in a scratch hash table); the selection
is the longest prefix of the order whose charges fit in the room left.
"""
import numpy as np
from numba import cuda

from .gpu_refinement import EMPTY, _claim, _home

#: Most candidates ranked by counting (n**2 comparisons); more go through the radix sort.
RANK_MAX = 1 << 13


@cuda.jit
def _urgency_fields(n, cand, corner, centre, value, lo, level, strides, sign_bit, min_abs,
                    lvl, key):
    """Per candidate r (node cand[r]): 0 if Q changes sign (or is 0) at its points else
    1, min |Q| over them, its level, the packed key of its lower corner."""
    r = cuda.grid(1)
    if r >= n:
        return
    i = cand[r]
    nc = corner.shape[1]
    pos, neg, zero, m = False, False, False, np.inf
    for j in range(nc + 1):
        v = value[corner[i, j]] if j < nc else value[centre[i]]
        pos = pos or v > 0
        neg = neg or v < 0
        zero = zero or v == 0
        m = min(m, abs(v))
    sign_bit[r] = 0 if (pos and neg) or zero else 1
    min_abs[r] = m
    lvl[r] = level[i]
    k = 0
    for a in range(lo.shape[1]):
        k += lo[i, a] * strides[a]
    key[r] = k


@cuda.jit
def _rank_by_count(n, sign_bit, min_abs, lvl, key, order):
    """order[rank of r] = r, the rank being the number of candidates more urgent."""
    r = cuda.grid(1)
    if r >= n:
        return
    rank = 0
    for j in range(n):
        if sign_bit[j] != sign_bit[r]:
            before = sign_bit[j] < sign_bit[r]
        elif min_abs[j] != min_abs[r]:
            before = min_abs[j] < min_abs[r]
        elif lvl[j] != lvl[r]:
            before = lvl[j] < lvl[r]
        else:
            before = key[j] < key[r]
        if before:
            rank += 1
    order[rank] = r


@cuda.jit
def _iota(order, n):
    j = cuda.grid(1)
    if j < n:
        order[j] = j


@cuda.jit
def _bit_is_zero(n, order, field, bit, flag):
    """flag[j] = 1 when bit ``bit`` of field[order[j]] is 0."""
    j = cuda.grid(1)
    if j < n:
        flag[j] = 1 if (field[order[j]] >> bit) & 1 == 0 else 0


@cuda.jit
def _split_scatter(n, order, flag, pos, out):
    """Stable split: zeros (in order) first, then ones (in order)."""
    j = cuda.grid(1)
    if j < n:
        zeros = pos[n - 1] + flag[n - 1]
        out[pos[j] if flag[j] != 0 else zeros + j - pos[j]] = order[j]


@cuda.jit(device=True)
def _contains(tkeys, key, shift):
    """True when ``key`` is in the table (linear probing from its home slot)."""
    mask = tkeys.size - 1
    h = _home(key, shift)
    while True:
        k = tkeys[h]
        if k == key:
            return True
        if k == EMPTY:
            return False
        h = (h + 1) & mask


@cuda.jit
def _face_ranks(n, order, cand, lo, level, strides, L, offsets, face_pos, tkeys, shift,
                rkeys, rshift, rank, fresh, rslot):
    """Thread j = r * F + f: face point f of the rank-r cell; ``fresh`` when it is no
    tree point; its scratch slot, whose ``rank`` becomes the lowest claiming rank."""
    j = cuda.grid(1)
    n_face = face_pos.size
    if j < n * n_face:
        r, f = j // n_face, j % n_face
        i = cand[order[r]]
        half = np.int64(1) << (L - level[i])
        key = 0
        for a in range(lo.shape[1]):
            key += (lo[i, a] + offsets[face_pos[f], a] * half) * strides[a]
        fresh[j] = 0 if _contains(tkeys, key, shift) else 1
        h, _ = _claim(rkeys, key, rshift)
        cuda.atomic.min(rank, h, r)
        rslot[j] = h


@cuda.jit
def _charges(n, n_face, n_centres, fresh, rslot, rank, charge):
    """charge[r] = 2**d + the fresh face points whose lowest claiming rank is r."""
    r = cuda.grid(1)
    if r < n:
        c = n_centres
        for f in range(n_face):
            j = r * n_face + f
            if fresh[j] != 0 and rank[rslot[j]] == r:
                c += 1
        charge[r] = c


@cuda.jit
def _count_fitting(n, charge, before, room, out):
    """out[0] += 1 for every rank whose cumulative charge (before + own) fits in room
    (a prefix, as charges are positive)."""
    r = cuda.grid(1)
    if r < n and before[r] + charge[r] <= room:
        cuda.atomic.add(out, 0, 1)


@cuda.jit
def _gather(n, order, cand, sel):
    """sel[r] = the node of rank r."""
    r = cuda.grid(1)
    if r < n:
        sel[r] = cand[order[r]]
