"""The numpy engine: the oracle of the refinement, plain level-by-level array code
(the Numba ``cpu`` and numba.cuda ``cuda`` engines build the same leaves)."""
from __future__ import annotations

import numpy as np

from ..kernels.common import CRIT_ABS, CRIT_ABS_OR_SIGN, CRIT_SIGN, RADIUS_INFLATE
from ..rational import horner_numpy, terms_numpy
from .engine import HostEngine, IntervalTables
from .tree import Lattice, cell_values, face_keys, sign_change


class NumpyEngine(HostEngine):
    """The oracle: readable level-by-level array code."""

    name = "numpy"

    # -- point index: sorted keys and their ids
    def rebuild_index(self) -> None:
        keys = self.tree.key[:self.tree.n_points]
        order = np.argsort(keys, kind="stable")
        self.sorted_keys, self.sorted_ids = keys[order], order

    def lookup(self, keys: np.ndarray):
        """(found bool, id int64) of keys in the point index (id -1 when not found)."""
        pos = np.minimum(np.searchsorted(self.sorted_keys, keys), self.sorted_keys.size - 1)
        found = self.sorted_keys[pos] == keys
        return found, np.where(found, self.sorted_ids[pos], -1)

    def exists(self, keys):
        return self.lookup(keys)[0]

    def candidates(self) -> np.ndarray:
        """Leaves whose criterion holds, not rounding-dominated, below the deepest level."""
        t = self.tree
        n = t.n
        return np.flatnonzero(t.alive[:n] & t.flag[:n] & ~t.exhausted[:n]
                              & (t.level[:n] < self.lat.L))

    def split(self, sel: np.ndarray) -> tuple:
        """Split cells ``sel``; children and new points (values NaN) are appended.
        Returns (first child, number of children, first new point, number of new points)."""
        lat, t, tab = self.lat, self.tree, self.lat.tables
        d, nc = lat.d, 2 ** lat.d
        S = sel.size
        lo, level = t.lo[sel], t.level[sel]
        half = lat.cell_units(level) // 2                                # child width (S,)
        # ids of the 3**d half-step points of every parent
        ids = np.empty((S, 3 ** d), np.int64)
        ids[:, tab["corner_pos"]] = t.corner[sel]
        ids[:, tab["centre_pos"]] = t.centre[sel]
        fkeys = face_keys(lat, lo, level)
        found, fid = self.lookup(fkeys)
        new_face_keys = np.unique(fkeys[~found])
        p0 = t.n_points
        fid[~found] = p0 + np.searchsorted(new_face_keys, fkeys[~found])
        ids[:, tab["face_pos"]] = fid
        # children: lower corners, corner ids, fresh centres
        child_lo = lo[:, None, :] + tab["bits"][None] * half[:, None, None]          # (S, nc, d)
        child_corner = ids[:, tab["child_corner_pos"]]                              # (S, nc, nc)
        centre_keys = lat.key(child_lo + (half // 2)[:, None, None])                 # (S, nc)
        n_new = new_face_keys.size + S * nc
        t.reserve(S * nc, n_new)
        c0 = t.n
        t.lo[c0:c0 + S * nc] = child_lo.reshape(-1, d)
        t.level[c0:c0 + S * nc] = np.repeat(level + 1, nc)
        t.corner[c0:c0 + S * nc] = child_corner.reshape(-1, nc)
        t.centre[c0:c0 + S * nc] = p0 + new_face_keys.size + np.arange(S * nc)
        t.alive[c0:c0 + S * nc] = True
        t.flag[c0:c0 + S * nc] = False
        t.exhausted[c0:c0 + S * nc] = False
        t.key[p0:p0 + n_new] = np.concatenate([new_face_keys, centre_keys.ravel()])
        t.n += S * nc
        t.n_points += n_new
        return c0, S * nc, p0, n_new

    def commit(self, sel: np.ndarray) -> None:
        self.tree.alive[sel] = False
        self.rebuild_index()

    def rollback(self, sel, c0, p0) -> None:
        self.tree.n, self.tree.n_points = c0, p0
        self.rebuild_index()

    def evaluate(self, p0: int, p1: int) -> None:
        x = self.point_coords(p0, p1)
        poly = self.qspec.poly
        with np.errstate(over="ignore", invalid="ignore"):   # inf / NaN, as the kernels
            if poly.dim == 1:
                self.tree.value[p0:p1] = horner_numpy(poly.coefficients, x[:, 0])
            else:
                self.tree.value[p0:p1] = terms_numpy(*poly.kernel_arrays(), x)

    def update_flags(self, c0: int, c1: int) -> None:
        """flag / exhausted of nodes [c0, c1) from their values (or the enclosure)."""
        lat, t = self.lat, self.tree
        nodes = np.arange(c0, c1)
        vals = cell_values(t, nodes)
        pending = np.isnan(vals).any(axis=1)
        sign = sign_change(vals)
        small = np.abs(vals).min(axis=1) < lat.small_cut[t.level[nodes]]
        exhausted = np.zeros(nodes.size, np.bool_)
        if lat.crit_code == CRIT_ABS:
            flag = small
        elif lat.crit_code == CRIT_SIGN:
            flag = sign
        elif lat.crit_code == CRIT_ABS_OR_SIGN:
            flag = sign | small
        else:   # certified: values play no part (an overflowed value is not "pending")
            pending[:] = False
            flag, exhausted = self._enclosure(nodes)
        t.flag[c0:c1] = flag & ~pending
        t.exhausted[c0:c1] = exhausted & ~pending

    def _enclosure(self, nodes):
        """Certified Taylor-form test (see IntervalTables): (may hold a zero, split no more)."""
        lo_k = self.tree.lo[nodes]
        return interval_flags(*enclosure(self.lat, self.interval, lo_k,
                                         self.tree.level[nodes]))


def enclosure(lat: Lattice, it: IntervalTables, lo_k: np.ndarray, level: np.ndarray) -> tuple:
    """(|A_0|, R, E, floor) of the Taylor form of Q over cells (lower corners ``lo_k``
    (m, d) on the lattice, levels (m,)), each (m,); see IntervalTables. ``floor`` is the
    larger of B and of the largest Taylor product |w mult c**cexp|, both with every |c_a|
    and |c_a| + r_a replaced by min |x_a| over the cell: rounding is monotone, so when the
    floor overflows the enclosure of every sub-cell overflows too. Overflow gives inf /
    NaN entries (no floating-point warnings)."""
    xlo = lat.coords(lo_k)
    xhi = lat.coords(lo_k + lat.cell_units(level)[:, None])
    c = 0.5 * (xlo + xhi)
    r = np.maximum(xhi - c, c - xlo) * RADIUS_INFLATE
    s = np.abs(c) + r
    m = np.where((xlo <= 0) & (0 <= xhi), 0.0, np.minimum(np.abs(xlo), np.abs(xhi)))
    n = lo_k.shape[0]

    def powers(base):
        out = []
        for a in range(lat.d):
            p = np.empty((int(it.emax[a]) + 1, n))
            p[0] = 1.0
            for j in range(1, p.shape[0]):
                p[j] = p[j - 1] * base[:, a]
            out.append(p)
        return out

    def bound(pw):
        total = np.zeros(n)
        for t in range(it.w.size):
            prod = np.full(n, abs(it.w[t]))
            for a in range(lat.d):
                prod = prod * pw[a][it.exps[t, a]]
            total = total + prod
        return total

    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        cpow, rpow = powers(c), powers(r)
        taylor = np.zeros((it.size, n))
        for z in range(it.term.size):
            prod = np.full(n, it.w[it.term[z]] * it.mult[z])
            for a in range(lat.d):
                prod = prod * cpow[a][it.cexp[z, a]]
            taylor[it.flat[z]] = taylor[it.flat[z]] + prod
        R = np.zeros(n)
        for f in range(1, it.size):
            prod = np.abs(taylor[f])
            for a in range(lat.d):
                prod = prod * rpow[a][it.bexp[f, a]]
            R = R + prod
        E = it.err_factor * bound(powers(s))
        mpow = powers(m)
        floor = bound(mpow)
        for z in range(it.term.size):
            prod = np.full(n, abs(it.w[it.term[z]] * it.mult[z]))
            for a in range(lat.d):
                prod = prod * mpow[a][it.cexp[z, a]]
            floor = np.maximum(floor, prod)
    return np.abs(taylor[0]), R, E, floor


def interval_flags(a0, R, E, floor) -> tuple:
    """(flag, exhausted) of the certified criterion from the enclosure terms. Flag when
    ``|A_0| <= R + E`` or when any term is inf/NaN (overflow: the enclosure proves
    nothing, so the cell may hold a zero). Exhausted (flagged, not split further) when
    rounding dominates (``R <= E``), or when the enclosure overflowed and so does its
    ``floor``: no sub-cell's enclosure can be finite."""
    finite = np.isfinite(a0) & np.isfinite(R) & np.isfinite(E)
    contains = ~finite | (a0 <= R + E)
    exhausted = np.where(finite, contains & (R <= E), ~np.isfinite(floor))
    return contains, exhausted
