"""The cpu engine: host driver of the Numba kernels of
:mod:`zp_ref.kernels.cpu_refinement` (same leaves, values and flags as the numpy oracle;
point ids may be numbered differently). Batches of at least
``zp_ref.kernels.PARALLEL_MIN_WORK`` points or cells run the parallel kernels."""
from __future__ import annotations

import numpy as np

from ..kernels import PARALLEL_MIN_WORK, serialised_method
from ..kernels.cpu_cap import existing_face_keys, fitting_prefix, urgency_order
from ..kernels.cpu_refinement import (EMPTY, assign_face_ids, cell_flags, cell_flags_parallel,
                                      collect_candidates, emit_children, eval_points_1d,
                                      eval_points_nd, eval_points_nd_parallel, face_keys_of,
                                      table_contains, table_insert_all)
from .engine import HostEngine, PendingRound, empty_interval_args, open_host_round

#: Face keys per batch of the split (its two scratch arrays: 16 bytes per key).
SPLIT_BATCH_KEYS = 1 << 20


class CpuEngine(HostEngine):
    """Host driver of the kernels of :mod:`zp_ref.kernels.cpu_refinement` on the shared
    tree arrays.

    Face points only ever coincide with face points of cells of the same level. A
    round that splits only levels never split before therefore dedups its face points
    in a small fresh table (cache-resident); the full table of every point is rebuilt
    lazily when a level is split again (cap deferrals, refine_grid, a loaded tree) or
    when the cap asks which points exist.

    A binding cap is resolved in kernels (:mod:`zp_ref.kernels.cpu_cap`): the same cells
    as the oracle's ``select_under_cap``, in memory O(max_grid_points). The split runs in
    batches of ``SPLIT_BATCH_KEYS`` face keys; a round's new points are its 2**d centres
    per cell, then its new face points.
    """

    name = "cpu"

    def __init__(self, lat, tree, qspec):
        super().__init__(lat, tree, qspec)
        levels = np.unique(tree.level[:tree.n])
        self.split_levels = set((levels[levels > 0] - 1).tolist())
        self._buffers = {}
        #: Per node, its urgency key (``cpu_refinement.urgency_key``), kept by update_flags.
        self.urgency = np.empty(tree.level.size, np.uint64)

    def _reserve(self, extra_nodes: int, extra_points: int) -> None:
        """Grow the tree's arrays and the urgency keys with them."""
        t = self.tree
        t.reserve(extra_nodes, extra_points)
        if self.urgency.size < t.level.size:
            old, self.urgency = self.urgency, np.empty(t.level.size, np.uint64)
            self.urgency[:t.n] = old[:t.n]

    def _buffer(self, name: str, size: int, dtype) -> np.ndarray:
        """A scratch array of at least ``size`` entries, kept across rounds (fresh memory
        costs page faults)."""
        buf = self._buffers.get(name)
        if buf is None or buf.size < size:
            old = 0 if buf is None else buf.size
            self._buffers.pop(name, None)       # the old one is freed before the new one
            buf = self._buffers[name] = np.empty(max(size, min(2 * old, self.lat.max_points)),
                                                 dtype)
        return buf[:size]

    def _round_table(self, min_slots: int) -> tuple:
        """An empty table with >= 2 * min_slots slots, reusing the previous round's memory."""
        cap = _table_slots(min_slots)
        table = self._buffer("table", 2 * cap, np.int64).reshape(cap, 2)
        table[:, 0] = EMPTY
        return table, 64 - (cap.bit_length() - 1)

    @serialised_method
    def open_round(self, select) -> PendingRound:
        """The round of the host driver; the cap is resolved by :meth:`select_under_cap`,
        in kernels (it picks the same cells as ``select``, the oracle's, not called)."""
        return open_host_round(self, self.select_under_cap)

    def select_under_cap(self, cand: np.ndarray) -> tuple:
        """(selected node ids, capped): every candidate when all fit, else the longest
        prefix of the urgency order whose new points fit under the cap (as
        ``engine.select_under_cap``)."""
        lat, t = self.lat, self.tree
        if t.n_points + cand.size * (3 ** lat.d - 1) <= lat.max_points:
            return cand, False
        room = lat.max_points - t.n_points
        if room < 2 ** lat.d:                   # not even the first cell's centres fit
            return cand[:0], True
        # every cell costs >= 2**d points: the walk stops within room // 2**d + 1 cells
        order = urgency_order(cand, t.lo, t.level, self.urgency, lat.strides,
                              room // 2 ** lat.d + 1)
        n_face = lat.tables["face_pos"].size
        max_fresh = min(room, cand.size * n_face)
        split_before = np.zeros(lat.L + 1, np.bool_)
        split_before[list(self.split_levels)] = True
        walked = order[:room // 2 ** lat.d + 1]
        if not split_before[t.level[walked]].any():
            table, shift = _new_table(0)    # no face key of these levels exists yet
        elif not self.index_fresh and 4 * walked.size * n_face <= t.n_points:
            # few cells to walk: find which of their face keys exist by one pass over
            # the points instead of a table of every point
            query, qshift = _new_table(walked.size * n_face)
            table, shift = _new_table(walked.size * n_face)
            existing_face_keys(walked, t.lo, t.level, lat.strides, lat.L,
                               lat.tables["offsets"], lat.tables["face_pos"], split_before,
                               t.key, t.n_points, query, qshift, table, shift)
            del query
        else:
            self._full_index(max_fresh)         # with room for the split's new faces
            table, shift = self.table, self.shift
        brought, bshift = self._round_table(max_fresh + n_face)
        k = fitting_prefix(order, t.lo, t.level, lat.strides, lat.L, lat.tables["offsets"],
                           lat.tables["face_pos"], 2 ** lat.d, split_before, table, shift,
                           brought, bshift, room)
        return order[:k], k < cand.size

    @serialised_method
    def rebuild_index(self) -> None:
        t = self.tree
        self.table = None                       # freed before the new one is made
        self.table, self.shift = _new_table(t.n_points)
        table_insert_all(self.table, t.key[:t.n_points], self.shift)
        self.index_fresh = True

    def _full_index(self, extra: int) -> None:
        """Make the full table current, with room for ``extra`` more keys."""
        t = self.tree
        if not self.index_fresh or 2 * (t.n_points + extra) > self.table.shape[0]:
            self.table = None
            self.table, self.shift = _new_table(t.n_points + extra)
            table_insert_all(self.table, t.key[:t.n_points], self.shift)
            self.index_fresh = True

    @serialised_method
    def exists(self, keys: np.ndarray) -> np.ndarray:
        self._full_index(0)
        out = np.empty(keys.size, np.bool_)
        table_contains(self.table, np.ascontiguousarray(keys, np.int64), self.shift, out)
        return out

    def candidates(self) -> np.ndarray:
        t = self.tree
        out = self._buffer("candidates", t.n, np.int64)
        m = collect_candidates(t.n, t.alive, t.flag, t.exhausted, t.level, self.lat.L, out)
        return out[:m].copy()

    def split(self, sel: np.ndarray) -> tuple:
        lat, t, tab = self.lat, self.tree, self.lat.tables
        nc, n_face, S = 2 ** lat.d, tab["face_pos"].size, sel.size
        # the selection keeps the new points under the cap: new faces <= room - S * nc
        max_faces = min(S * n_face, max(lat.max_points - t.n_points - S * nc, 0))
        self._reserve(S * nc, S * nc + max_faces)
        levels = set(np.flatnonzero(np.bincount(t.level[sel], minlength=lat.L + 1)).tolist())
        if levels & self.split_levels:
            self._full_index(max_faces)
            table, shift = self.table, self.shift
        else:   # every face key of the round is new
            table, shift = self._round_table(max_faces)
            self.index_fresh = False
        self.split_levels |= levels
        c0, p0 = t.n, t.n_points
        pf = p0 + S * nc                        # the centres first, then the new faces
        batch = max(1, SPLIT_BATCH_KEYS // max(n_face, 1))
        m = min(S, batch)
        fkeys = self._buffer("fkeys", m * n_face, np.int64)
        face_ids = self._buffer("face_ids", m * n_face, np.int64)
        for s0 in range(0, S, batch):
            part = sel[s0:s0 + batch]
            fk = fkeys[:part.size * n_face].reshape(part.size, n_face)
            ids = face_ids[:part.size * n_face].reshape(part.size, n_face)
            face_keys_of(part, t.lo, t.level, lat.strides, lat.L, tab["offsets"],
                         tab["face_pos"], fk)
            pf += assign_face_ids(fk.reshape(-1), table, shift, pf, t.key, ids.reshape(-1))
            emit_children(part, ids, t.lo, t.level, t.corner, t.centre, t.alive, t.flag,
                          t.exhausted, c0 + s0 * nc, t.key, p0 + s0 * nc, lat.strides, lat.L,
                          tab["corner_pos"], tab["centre_pos"], tab["face_pos"], tab["bits"],
                          tab["child_corner_pos"])
        t.n += S * nc
        t.n_points = pf
        return c0, t.n - c0, p0, t.n_points - p0

    @serialised_method
    def commit(self, sel: np.ndarray) -> None:
        self.tree.alive[sel] = False

    @serialised_method
    def rollback(self, sel, c0, p0) -> None:
        self.tree.n, self.tree.n_points = c0, p0
        levels = np.unique(self.tree.level[:c0])
        self.split_levels = set((levels[levels > 0] - 1).tolist())
        self.index_fresh = False

    @serialised_method
    def evaluate(self, p0: int, p1: int) -> None:
        lat, t, poly = self.lat, self.tree, self.qspec.poly
        if lat.d == 1:
            eval_points_1d(t.key, p0, p1, lat.M[0], lat.lo[0], lat.hi[0], lat.width[0],
                           poly.coefficients, t.value)
        else:
            e, w, emax = poly.kernel_arrays()
            kernel = eval_points_nd_parallel if p1 - p0 >= PARALLEL_MIN_WORK else eval_points_nd
            kernel(t.key, p0, p1, lat.strides, lat.M, lat.lo, lat.hi, lat.width, e, w, emax,
                   t.value)

    @serialised_method
    def update_flags(self, c0: int, c1: int) -> None:
        lat, t = self.lat, self.tree
        args = self.interval.kernel_args() if self.interval is not None \
            else empty_interval_args(lat.d)
        kernel = cell_flags_parallel if c1 - c0 >= PARALLEL_MIN_WORK else cell_flags
        kernel(c0, c1, t.lo, t.level, t.corner, t.centre, t.value, lat.crit_code, lat.small_cut,
               lat.L, lat.M, lat.lo, lat.hi, lat.width, *args, t.flag, t.exhausted, self.urgency)


def _table_slots(min_slots: int) -> int:
    """A power of two >= 2 * min_slots (>= 16): the load factor stays <= 1/2."""
    return 1 << max(4, int(2 * max(min_slots, 1) - 1).bit_length())


def _new_table(min_slots: int) -> tuple:
    """(table, shift): an empty hash table of ``_table_slots(min_slots)`` slots and the
    hash shift for it."""
    cap = _table_slots(min_slots)
    table = np.empty((cap, 2), np.int64)
    table[:, 0] = EMPTY
    return table, 64 - (cap.bit_length() - 1)
