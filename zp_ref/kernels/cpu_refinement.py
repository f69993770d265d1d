"""Numba CPU kernels of the active-refinement tree (see :mod:`zp_ref.refinement`).

Per round: ``collect_candidates`` (one pass over the nodes), ``split_cells`` (sequential:
children, their corner ids, new points; face points are shared through an
open-addressing hash table of packed lattice keys, so each point is created once),
``eval_points_*`` (parallel: Q at the new points) and ``cell_flags`` (parallel: the
criterion on the new cells). Operation orders equal the NumPy oracle's, so values and
flags are bit-identical; point ids may be numbered differently, leaves are not.
"""
import numpy as np
from numba import njit, prange

from ..refinement import (CRIT_ABS, CRIT_ABS_OR_SIGN, CRIT_INTERVAL, CRIT_SIGN, RADIUS_INFLATE,
                          _empty_interval_args, _HostEngine)
from .cpu_poly import BLOCK, block_powers, fill_powers, horner_at, terms_block

EMPTY = -1
HASH_MUL = np.uint64(0x9E3779B97F4A7C15)
#: Cells / points per chunk of the parallel loops (one scratch allocation per chunk).
CHUNK = 2048


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


@njit(cache=True)
def table_contains(table, keys, shift, out):
    """out[i] = keys[i] is in the table."""
    mask = table.shape[0] - 1
    for i in range(keys.size):
        h = np.int64((np.uint64(keys[i]) * HASH_MUL) >> np.uint64(shift))
        out[i] = False
        while table[h, 0] != EMPTY:
            if table[h, 0] == keys[i]:
                out[i] = True
                break
            h = (h + 1) & mask


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


@njit(cache=True)
def split_cells(sel, lo, level, corner, centre, alive, flag, exhausted, n_nodes, pkey,
                n_points, table, shift, strides, L, offsets, corner_pos, centre_pos, face_pos,
                bits, child_corner_pos):
    """Append the 2**d children of every cell in ``sel`` and the points they need.

    Face points (shared with neighbours) are looked up / inserted in the hash table;
    child centres are always new. Returns (nodes, points).
    """
    d = lo.shape[1]
    nc = bits.shape[0]
    ids = np.empty(offsets.shape[0], np.int64)
    node, pt = n_nodes, n_points
    for s in range(sel.size):
        i = sel[s]
        half = np.int64(1) << (L - level[i])
        base = 0
        for a in range(d):
            base += lo[i, a] * strides[a]
        for j in range(nc):
            ids[corner_pos[j]] = corner[i, j]
        ids[centre_pos] = centre[i]
        for f in range(face_pos.size):
            p = face_pos[f]
            key = base
            for a in range(d):
                key += offsets[p, a] * half * strides[a]
            got = insert_or_get(table, key, pt, shift)
            if got == pt:
                pkey[pt] = key
                pt += 1
            ids[p] = got
        for c in range(nc):
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
            pt += 1
            node += 1
    return node, pt


@njit(cache=True)
def lattice_coord(k, M, lo, hi, width):
    """lo + width * (k / M), exactly hi at k = M (as the oracle)."""
    if k == M:
        return hi
    return lo + width * (k / M)


@njit(parallel=True, cache=True)
def eval_points_1d(pkey, p0, p1, M, lo, hi, width, coeffs, value):
    """value[p] = Q(x(pkey[p])) for p in [p0, p1), dense 1-D Q (key = lattice index)."""
    for p in prange(p0, p1):
        value[p] = horner_at(coeffs, lattice_coord(pkey[p], M, lo, hi, width))


@njit(parallel=True, cache=True)
def eval_points_nd(pkey, p0, p1, strides, M, lo, hi, width, exps, w, emax, value):
    """value[p] = Q(x(pkey[p])) for p in [p0, p1), sparse d-D Q, in blocks of points."""
    d = strides.size
    n = p1 - p0
    for b in prange((n + BLOCK - 1) // BLOCK):
        pw = np.empty((d, emax.max() + 1, BLOCK))
        xa = np.empty(BLOCK)
        acc = np.empty(BLOCK)
        i0 = p0 + b * BLOCK
        m = min(p1, i0 + BLOCK) - i0
        for a in range(d):
            for i in range(m):
                k = (pkey[i0 + i] // strides[a]) % (M[a] + 1)
                xa[i] = lattice_coord(k, M[a], lo[a], hi[a], width[a])
            block_powers(pw, a, xa, m, emax[a])
        terms_block(exps, w, pw, m, acc)
        for i in range(m):
            value[i0 + i] = acc[i]


@njit(cache=True)
def taylor_enclosure(xlo, xhi, exps, w, emax, term, flat, mult, cexp, bexp, err_factor,
                     taylor, cpow, rpow, spow):
    """(|A_0|, R, E) of the Taylor form of Q over the box [xlo, xhi] (see _IntervalTables)."""
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
    B = 0.0
    for t in range(w.size):
        prod = abs(w[t])
        for a in range(d):
            prod = prod * spow[a, exps[t, a]]
        B = B + prod
    return abs(taylor[0]), R, err_factor * B


@njit(parallel=True, cache=True)
def cell_flags(c0, c1, lo, level, corner, centre, value, crit, threshold, L, M, box_lo,
               box_hi, width, exps, w, emax, term, flat, mult, cexp, bexp, err_factor,
               flag, exhausted):
    """flag / exhausted of nodes [c0, c1): the criterion on the cell's corner and centre
    values (a pending NaN value: not flagged), or its certified enclosure."""
    d = lo.shape[1]
    nc = corner.shape[1]
    n = c1 - c0
    for ch in prange((n + CHUNK - 1) // CHUNK):
        taylor = np.empty(bexp.shape[0])
        cpow = np.empty((d, emax.max() + 1))
        rpow = np.empty((d, emax.max() + 1))
        spow = np.empty((d, emax.max() + 1))
        xlo = np.empty(d)
        xhi = np.empty(d)
        for i in range(c0 + ch * CHUNK, min(c1, c0 + (ch + 1) * CHUNK)):
            pending, pos, neg, zero, small = False, False, False, False, False
            for j in range(nc + 1):
                v = value[corner[i, j]] if j < nc else value[centre[i]]
                if v != v:
                    pending = True
                pos |= v > 0
                neg |= v < 0
                zero |= v == 0
                small |= abs(v) < threshold
            sign = (pos and neg) or zero
            ex = False
            if crit == CRIT_ABS:
                f = small
            elif crit == CRIT_SIGN:
                f = sign
            elif crit == CRIT_ABS_OR_SIGN:
                f = sign or small
            else:
                unit = np.int64(1) << (L + 1 - level[i])
                for a in range(d):
                    xlo[a] = lattice_coord(lo[i, a], M[a], box_lo[a], box_hi[a], width[a])
                    xhi[a] = lattice_coord(lo[i, a] + unit, M[a], box_lo[a], box_hi[a], width[a])
                a0, R, E = taylor_enclosure(xlo, xhi, exps, w, emax, term, flat, mult, cexp,
                                            bexp, err_factor, taylor, cpow, rpow, spow)
                f = a0 <= R + E
                ex = f and R <= E
            flag[i] = f and not pending
            exhausted[i] = ex and not pending


# ------------------------------------------------------------------ the engine
class CpuEngine(_HostEngine):
    """Host driver of the kernels above on the shared tree arrays.

    Face points only ever coincide with face points of cells of the same level. A
    round that splits only levels never split before therefore dedups its face points
    in a small fresh table (cache-resident); the full table of every point is rebuilt
    lazily when a level is split again (cap deferrals, refine_grid, a loaded tree) or
    when the cap asks which points exist.
    """

    name = "cpu"

    def __init__(self, lat, tree, qspec):
        super().__init__(lat, tree, qspec)
        levels = np.unique(tree.level[:tree.n])
        self.split_levels = set((levels[levels > 0] - 1).tolist())

    def rebuild_index(self) -> None:
        t = self.tree
        self.table, self.shift = _new_table(t.n_points)
        table_insert_all(self.table, t.key[:t.n_points], self.shift)
        self.index_fresh = True

    def _full_index(self, extra: int) -> None:
        """Make the full table current, with room for ``extra`` more keys."""
        t = self.tree
        if not self.index_fresh or 2 * (t.n_points + extra) > self.table.shape[0]:
            self.table, self.shift = _new_table(t.n_points + extra)
            table_insert_all(self.table, t.key[:t.n_points], self.shift)
            self.index_fresh = True

    def exists(self, keys: np.ndarray) -> np.ndarray:
        self._full_index(0)
        out = np.empty(keys.size, np.bool_)
        table_contains(self.table, np.ascontiguousarray(keys, np.int64), self.shift, out)
        return out

    def candidates(self) -> np.ndarray:
        t = self.tree
        out = np.empty(t.n, np.int64)
        m = collect_candidates(t.n, t.alive, t.flag, t.exhausted, t.level, self.lat.L, out)
        return out[:m]

    def split(self, sel: np.ndarray) -> tuple:
        lat, t, tab = self.lat, self.tree, self.lat.tables
        nc, n_face = 2 ** lat.d, tab["face_pos"].size
        t.reserve(sel.size * nc, sel.size * (nc + n_face))
        levels = set(np.unique(t.level[sel]).tolist())
        if levels & self.split_levels:
            self._full_index(sel.size * n_face)
            table, shift = self.table, self.shift
        else:   # at most S * F distinct face keys, in 2-D about half of that
            table, shift = _new_table(sel.size * n_face)
            self.index_fresh = False
        self.split_levels |= levels
        c0, p0 = t.n, t.n_points
        t.n, t.n_points = split_cells(
            sel, t.lo, t.level, t.corner, t.centre, t.alive, t.flag, t.exhausted, t.n, t.key,
            t.n_points, table, shift, lat.strides, lat.L, tab["offsets"],
            tab["corner_pos"], tab["centre_pos"], tab["face_pos"], tab["bits"],
            tab["child_corner_pos"])
        t.value[p0:t.n_points] = np.nan
        return c0, t.n - c0, p0, t.n_points - p0

    def commit(self, sel: np.ndarray) -> None:
        self.tree.alive[sel] = False

    def rollback(self, sel, c0, p0) -> None:
        self.tree.n, self.tree.n_points = c0, p0
        levels = np.unique(self.tree.level[:c0])
        self.split_levels = set((levels[levels > 0] - 1).tolist())
        self.index_fresh = False

    def evaluate(self, p0: int, p1: int) -> None:
        lat, t, poly = self.lat, self.tree, self.qspec.poly
        if lat.d == 1:
            eval_points_1d(t.key, p0, p1, lat.M[0], lat.lo[0], lat.hi[0], lat.width[0],
                           poly.coefficients, t.value)
        else:
            e, w, emax = poly.kernel_arrays()
            eval_points_nd(t.key, p0, p1, lat.strides, lat.M, lat.lo, lat.hi, lat.width,
                           e, w, emax, t.value)

    def update_flags(self, c0: int, c1: int) -> None:
        lat, t = self.lat, self.tree
        args = self.interval.kernel_args() if self.interval is not None \
            else _empty_interval_args(lat.d)
        cell_flags(c0, c1, t.lo, t.level, t.corner, t.centre, t.value, lat.crit_code,
                   lat.threshold, lat.L, lat.M, lat.lo, lat.hi, lat.width, *args,
                   t.flag, t.exhausted)


def _new_table(min_slots: int) -> tuple:
    """(table, shift): an empty hash table of >= 2 * min_slots slots (a power of two,
    >= 16, so the load factor stays <= 1/2) and the hash shift for it."""
    cap = 1 << max(4, int(2 * max(min_slots, 1) - 1).bit_length())
    table = np.empty((cap, 2), np.int64)
    table[:, 0] = EMPTY
    return table, 64 - (cap.bit_length() - 1)
