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

from .common import cuda_simulated
from .gpu_refinement import EMPTY, _claim, _home

#: Most candidates ranked by counting (n**2 comparisons); more go through the radix sort.
RANK_MAX = 1 << 13
#: Face points per chunk of the capped walk: >= 3**6, so one cell's face points always fit
#: in a chunk (small under the simulator, so that the tests walk several chunks).
CAP_BATCH_KEYS = 1024 if cuda_simulated() else 1 << 20
#: int64 arrays of one entry per candidate the selection may allocate (urgency fields,
#: order and its radix scratch, the selected nodes).
PER_CANDIDATE_ARRAYS = 9


def table_slots(n_keys: int) -> int:
    """Slots of a device hash table for ``n_keys`` keys: a power of two > 2 * n_keys (>= 16)."""
    return 1 << max(4, int(2 * max(n_keys, 1) - 1).bit_length())


def selection_scratch_bytes(max_points: int, scan_threads: int) -> int:
    """Upper bound of the device memory the capped selection allocates, whatever d is.
    With P = max_points (candidates <= leaves <= points <= P), B = CAP_BATCH_KEYS and S
    the scan's block width: ``PER_CANDIDATE_ARRAYS`` int64 arrays over the candidates
    (72 P), the scan's block totals and offsets (at most twice each, 32 (max(P, B) //
    (S - 1) + 64)), the scratch table of keys and ranks (16 B a slot, < 4 (P + B)
    slots: 64 (P + B)), one chunk's slots, charges and their scan (24 B), and the walk's
    three counters: about 138 bytes per point of the cap plus 88 bytes per key of a
    chunk."""
    p, b = int(max_points), CAP_BATCH_KEYS
    scan = 32 * (max(p, b) // (scan_threads - 1) + 64)
    return 8 * PER_CANDIDATE_ARRAYS * p + scan + 64 * (p + b) + 24 * b + 24


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
def _claim_fresh_faces(r0, m, order, cand, lo, level, strides, L, offsets, face_pos, tkeys,
                       shift, rkeys, rshift, rank, rslot, state):
    """Thread j = t * F + f of a chunk of m ranks from r0: face point f of the rank-(r0 + t)
    cell. A tree point gets ``rslot[j] = -1``; a fresh one is claimed in the scratch
    table, whose ``rank`` becomes the lowest claiming rank. Nothing once the walk is
    over (``state[1]``)."""
    j = cuda.grid(1)
    n_face = face_pos.size
    if j >= m * n_face or state[1] != 0:
        return
    r = r0 + j // n_face
    f = j % n_face
    i = cand[order[r]]
    half = np.int64(1) << (L - level[i])
    key = 0
    for a in range(lo.shape[1]):
        key += (lo[i, a] + offsets[face_pos[f], a] * half) * strides[a]
    if _contains(tkeys, key, shift):
        rslot[j] = -1
        return
    h, _ = _claim(rkeys, key, rshift)
    cuda.atomic.min(rank, h, r)
    rslot[j] = h


@cuda.jit
def _chunk_charges(r0, m, n_face, n_centres, rslot, rank, charge, state):
    """charge[t] = 2**d + the fresh face points whose lowest claiming rank is r0 + t."""
    t = cuda.grid(1)
    if t >= m or state[1] != 0:
        return
    c = n_centres
    for f in range(n_face):
        h = rslot[t * n_face + f]
        if h >= 0 and rank[h] == r0 + t:
            c += 1
    charge[t] = c


@cuda.jit
def _chunk_fits(m, charge, before, room, state):
    """state[2] += 1 for every rank of the chunk whose cumulative charge (the walk's total
    before the chunk, state[0], + before + own) fits in room (a prefix: charges > 0)."""
    t = cuda.grid(1)
    if t < m and state[1] == 0 and state[0] + before[t] + charge[t] <= room:
        cuda.atomic.add(state, 2, 1)


@cuda.jit
def _chunk_close(m, charge, before, room, state):
    """Add the chunk's charges to the walk's total state[0]; past room, the walk is over
    (state[1] = 1) and later chunks do nothing."""
    if cuda.grid(1) == 0 and state[1] == 0:
        state[0] += before[m - 1] + charge[m - 1]
        if state[0] > room:
            state[1] = 1


@cuda.jit
def _gather(n, order, cand, sel):
    """sel[r] = the node of rank r."""
    r = cuda.grid(1)
    if r < n:
        sel[r] = cand[order[r]]
