"""Numba CPU kernels of the active-refinement tree (see :mod:`zp_ref.refinement`; their
host driver is :mod:`zp_ref.refinement.cpu`).

Per round: ``collect_candidates`` (one pass over the nodes); the split in three
streaming passes, ``face_keys_of``, ``assign_face_ids`` (face points are shared through
an open-addressing hash table of packed lattice keys, so each point is created once; a
tight loop of lookups, so their cache misses overlap) and ``emit_children`` (children,
their corner ids, fresh centres); then ``eval_points_*`` (Q at the new points) and
``cell_flags`` (the criterion on the new cells), run in parallel for batches of at
least ``zp_ref.kernels.PARALLEL_MIN_WORK``. The streaming passes stay serial: on two shared cores a parallel
region costs more than they do. Operation orders equal the NumPy oracle's, so values and
flags are bit-identical; point ids may be numbered differently, leaves are not.
"""
import math

import numpy as np
from numba import njit, prange

from .common import CRIT_INTERVAL, RADIUS_INFLATE, simple_flag
from .cpu_poly import BLOCK, block_powers, fill_powers, horner_at, terms_block

EMPTY = -1
HASH_MUL = np.uint64(0x9E3779B97F4A7C15)
#: Cells / points per chunk of the parallel loops (one scratch allocation per chunk).
CHUNK = 16384
#: Bit 63 of a cell's urgency key: set for a cell without a sign change (less urgent).
NO_SIGN_BIT = np.uint64(1) << np.uint64(63)


# ------------------------------------------------------------------ hash table of keys
# Open addressing with linear probing; row h of ``table`` (cap, 2) holds (key, id) in one
# cache line, key EMPTY when free. Home slot: Fibonacci hashing, the top bits of
# key * 2**64/phi.
@njit(cache=True, inline="always")
def insert_or_get(table, key, new_id, shift):
    """Id stored for ``key``; inserts ``key -> new_id`` when absent (returns new_id)."""
    mask = table.shape[0] - 1
    h = np.int64((np.uint64(key) * HASH_MUL) >> np.uint64(shift))
    while True:
        k = table[h, 0]
        if k == key:
            return table[h, 1]
        if k == EMPTY:
            table[h, 0] = key
            table[h, 1] = new_id
            return new_id
        h = (h + 1) & mask


@njit(cache=True)
def table_insert_all(table, keys, shift):
    """Insert keys[i] -> i for every i (index rebuild)."""
    for i in range(keys.size):
        insert_or_get(table, keys[i], i, shift)


@njit(cache=True, inline="always")
def table_has(table, key, shift):
    """``key`` is in the table."""
    mask = table.shape[0] - 1
    h = np.int64((np.uint64(key) * HASH_MUL) >> np.uint64(shift))
    while table[h, 0] != EMPTY:
        if table[h, 0] == key:
            return True
        h = (h + 1) & mask
    return False


@njit(cache=True)
def table_contains(table, keys, shift, out):
    """out[i] = keys[i] is in the table."""
    for i in range(keys.size):
        out[i] = table_has(table, keys[i], shift)


# ------------------------------------------------------------------ one round
@njit(cache=True)
def collect_candidates(n, alive, flag, exhausted, level, L, out):
    """Ids of splittable leaves (alive, flagged, not exhausted, level < L) into out."""
    m = 0
    for i in range(n):
        if alive[i] and flag[i] and not exhausted[i] and level[i] < L:
            out[m] = i
            m += 1
    return m


@njit(cache=True, inline="always")
def lattice_key(lo, i, strides):
    """Packed lattice key of the lower corner of cell i."""
    key = 0
    for a in range(lo.shape[1]):
        key += lo[i, a] * strides[a]
    return key


@njit(cache=True)
def interval_flag(a0, R, E, floor):
    """(flag, exhausted) of the certified criterion (as refinement.oracle.interval_flags):
    an overflowed enclosure (inf/NaN) is flagged, and split no more when its floor
    overflows too. Shared by the numba.cuda kernel as a device function."""
    if math.isfinite(a0) and math.isfinite(R) and math.isfinite(E):
        f = a0 <= R + E
        return f, f and R <= E
    return True, not math.isfinite(floor)


@njit(cache=True)
def face_keys_of(sel, lo, level, strides, L, offsets, face_pos, out):
    """out[s, f] = packed key of face point f of cell sel[s] (the non-corner, non-centre
    points of its half-step lattice)."""
    d = lo.shape[1]
    for s in range(sel.size):
        i = sel[s]
        half = np.int64(1) << (L - level[i])
        base = lattice_key(lo, i, strides)
        for f in range(face_pos.size):
            key = base
            for a in range(d):
                key += offsets[face_pos[f], a] * half * strides[a]
            out[s, f] = key


@njit(cache=True)
def assign_face_ids(fkeys, table, shift, p0, pkey, ids):
    """ids[j] = id of face key fkeys[j]: found in the table, or the next new id from p0
    (its key appended to pkey). A loop this small keeps many lookups in flight, so their
    cache misses overlap (fusing it with the key computation is ~2.5x slower). Returns
    the number of new points."""
    pt = p0
    for j in range(fkeys.size):
        got = insert_or_get(table, fkeys[j], pt, shift)
        if got == pt:
            pkey[pt] = fkeys[j]
            pt += 1
        ids[j] = got
    return pt - p0


@njit(cache=True)
def emit_children(sel, face_ids, lo, level, corner, centre, alive, flag, exhausted, c0,
                  pkey, pc0, strides, L, corner_pos, centre_pos, face_pos, bits,
                  child_corner_pos):
    """Child c of cell sel[s] becomes node c0 + s * 2**d + c with centre point
    pc0 + s * 2**d + c; its corners come from the parent's corners and centre and the
    face ids."""
    d = lo.shape[1]
    nc = bits.shape[0]
    ids = np.empty(corner_pos.size + face_pos.size + 1, np.int64)
    for s in range(sel.size):
        i = sel[s]
        half = np.int64(1) << (L - level[i])
        base = lattice_key(lo, i, strides)
        for j in range(nc):
            ids[corner_pos[j]] = corner[i, j]
        ids[centre_pos] = centre[i]
        for f in range(face_pos.size):
            ids[face_pos[f]] = face_ids[s, f]
        for c in range(nc):
            node = c0 + s * nc + c
            pt = pc0 + s * nc + c
            ckey = base
            for a in range(d):
                lo[node, a] = lo[i, a] + bits[c, a] * half
                ckey += (bits[c, a] * half + (half >> 1)) * strides[a]
            level[node] = level[i] + 1
            for j in range(nc):
                corner[node, j] = ids[child_corner_pos[c, j]]
            pkey[pt] = ckey
            centre[node] = pt
            alive[node] = True
            flag[node] = False
            exhausted[node] = False


@njit(cache=True)
def lattice_coord(k, M, lo, hi, width):
    """lo + width * (k / M), exactly hi at k = M (as the oracle)."""
    if k == M:
        return hi
    return lo + width * (k / M)


@njit(cache=True)
def eval_points_1d(pkey, p0, p1, M, lo, hi, width, coeffs, value):
    """value[p] = Q(x(pkey[p])) for p in [p0, p1), dense 1-D Q (key = lattice index)."""
    for p in range(p0, p1):
        value[p] = horner_at(coeffs, lattice_coord(pkey[p], M, lo, hi, width))


@njit(cache=True)
def eval_points_nd(pkey, p0, p1, strides, M, lo, hi, width, exps, w, emax, value):
    """value[p] = Q(x(pkey[p])) for p in [p0, p1), sparse d-D Q, in blocks of points."""
    d = strides.size
    pw = np.empty((d, emax.max() + 1, BLOCK))
    xa = np.empty(BLOCK)
    acc = np.empty(BLOCK)
    rem = np.empty(BLOCK, np.int64)
    for i0 in range(p0, p1, BLOCK):
        m = min(p1, i0 + BLOCK) - i0
        for i in range(m):
            rem[i] = pkey[i0 + i]
        for a in range(d):                 # k_a = rem // stride_a, then rem -= k_a * stride_a
            for i in range(m):
                k = rem[i] // strides[a] if a < d - 1 else rem[i]
                rem[i] -= k * strides[a]
                xa[i] = lattice_coord(k, M[a], lo[a], hi[a], width[a])
            block_powers(pw, a, xa, m, emax[a])
        terms_block(exps, w, pw, m, acc)
        for i in range(m):
            value[i0 + i] = acc[i]


@njit(parallel=True, cache=True)
def eval_points_nd_parallel(pkey, p0, p1, strides, M, lo, hi, width, exps, w, emax, value):
    """eval_points_nd over chunks of CHUNK points in parallel."""
    for c in prange((p1 - p0 + CHUNK - 1) // CHUNK):
        a = p0 + c * CHUNK
        eval_points_nd(pkey, a, min(p1, a + CHUNK), strides, M, lo, hi, width, exps, w, emax,
                       value)


@njit(cache=True)
def taylor_enclosure(xlo, xhi, exps, w, emax, term, flat, mult, cexp, bexp, err_factor,
                     taylor, cpow, rpow, spow):
    """(|A_0|, R, E, floor) of the Taylor form of Q over the box [xlo, xhi] (see
    zp_ref.refinement.oracle.enclosure; ``spow`` is reused for the powers of min |x_a| after E)."""
    d = xlo.size
    for a in range(d):
        c = 0.5 * (xlo[a] + xhi[a])
        r = max(xhi[a] - c, c - xlo[a]) * RADIUS_INFLATE
        fill_powers(cpow, a, c, emax[a])
        fill_powers(rpow, a, r, emax[a])
        fill_powers(spow, a, abs(c) + r, emax[a])
    taylor[:] = 0.0
    for z in range(term.size):
        prod = w[term[z]] * mult[z]
        for a in range(d):
            prod = prod * cpow[a, cexp[z, a]]
        taylor[flat[z]] = taylor[flat[z]] + prod
    R = 0.0
    for f in range(1, taylor.size):
        prod = abs(taylor[f])
        for a in range(d):
            prod = prod * rpow[a, bexp[f, a]]
        R = R + prod
    E = err_factor * bound_sum(exps, w, spow)
    for a in range(d):
        m = 0.0 if xlo[a] <= 0.0 <= xhi[a] else min(abs(xlo[a]), abs(xhi[a]))
        fill_powers(spow, a, m, emax[a])
    floor = bound_sum(exps, w, spow)
    for z in range(term.size):
        prod = abs(w[term[z]] * mult[z])
        for a in range(d):
            prod = prod * spow[a, cexp[z, a]]
        floor = max(floor, prod)
    return abs(taylor[0]), R, E, floor


@njit(cache=True)
def bound_sum(exps, w, spow):
    """sum_t |w_t| prod_a spow[a, e_ta] (the B of the enclosure)."""
    B = 0.0
    for t in range(w.size):
        prod = abs(w[t])
        for a in range(exps.shape[1]):
            prod = prod * spow[a, exps[t, a]]
        B = B + prod
    return B


@njit(cache=True, inline="always")
def urgency_key(sign, min_abs, fbuf, ubuf):
    """A cell's urgency as one uint64 that orders as the cap's urgency order does
    (``zp_ref.refinement.engine.urgency_order``): bit 63 set without a sign change
    (or exact 0), below it the IEEE bits of min |Q| >= 0 (NaN, when a value is pending,
    above +inf). ``fbuf`` (1,) float64 and ``ubuf``, its uint64 view, carry the bits."""
    fbuf[0] = min_abs
    key = ubuf[0] & ~NO_SIGN_BIT
    return key if sign else key | NO_SIGN_BIT


@njit(cache=True)
def cell_flags(c0, c1, lo, level, corner, centre, value, crit, small_cut, L, M, box_lo,
               box_hi, width, exps, w, emax, term, flat, mult, cexp, bexp, err_factor,
               flag, exhausted, urgency):
    """flag / exhausted / urgency (``urgency_key``) of nodes [c0, c1): the criterion on
    the cell's corner and centre values (a pending NaN value: not flagged; "small" is
    |Q| < small_cut[level]), or its certified enclosure (values play no part)."""
    d = lo.shape[1]
    nc = corner.shape[1]
    taylor = np.empty(bexp.shape[0])
    cpow = np.empty((d, emax.max() + 1))
    rpow = np.empty((d, emax.max() + 1))
    spow = np.empty((d, emax.max() + 1))
    xlo = np.empty(d)
    xhi = np.empty(d)
    fbuf = np.empty(1)
    ubuf = fbuf.view(np.uint64)
    for i in range(c0, c1):
        pending, pos, neg, zero, small = False, False, False, False, False
        m = np.inf
        for j in range(nc + 1):
            v = value[corner[i, j]] if j < nc else value[centre[i]]
            if v != v:
                pending = True
            pos |= v > 0
            neg |= v < 0
            zero |= v == 0
            small |= abs(v) < small_cut[level[i]]
            m = min(m, abs(v))
        urgency[i] = urgency_key((pos and neg) or zero, np.nan if pending else m, fbuf, ubuf)
        ex = False
        if crit != CRIT_INTERVAL:
            f = simple_flag(crit, (pos and neg) or zero, small)
        else:
            unit = np.int64(1) << (L + 1 - level[i])
            for a in range(d):
                xlo[a] = lattice_coord(lo[i, a], M[a], box_lo[a], box_hi[a], width[a])
                xhi[a] = lattice_coord(lo[i, a] + unit, M[a], box_lo[a], box_hi[a], width[a])
            a0, R, E, floor = taylor_enclosure(xlo, xhi, exps, w, emax, term, flat, mult,
                                               cexp, bexp, err_factor, taylor, cpow, rpow,
                                               spow)
            f, ex = interval_flag(a0, R, E, floor)
            pending = False
        flag[i] = f and not pending
        exhausted[i] = ex and not pending


@njit(parallel=True, cache=True)
def cell_flags_parallel(c0, c1, lo, level, corner, centre, value, crit, small_cut, L, M,
                        box_lo, box_hi, width, exps, w, emax, term, flat, mult, cexp, bexp,
                        err_factor, flag, exhausted, urgency):
    """cell_flags over chunks of CHUNK nodes in parallel."""
    for c in prange((c1 - c0 + CHUNK - 1) // CHUNK):
        a = c0 + c * CHUNK
        cell_flags(a, min(c1, a + CHUNK), lo, level, corner, centre, value, crit, small_cut, L,
                   M, box_lo, box_hi, width, exps, w, emax, term, flat, mult, cexp, bexp,
                   err_factor, flag, exhausted, urgency)
