"""The cuda engine: host driver of the numba.cuda kernels of
:mod:`zp_ref.kernels.gpu_refinement` (imported only for backend="cuda").

The tree lives on the device between rounds; ``host_tree()`` copies it back when the
host needs it. A round of a polynomial Q is two host synchronisations, each a copy of
two int64 counts: ``open_round`` flags and scans the splittable leaves and reads
(points, candidates) back, then compacts them, claims face points, emits the children
and reads the new point count; evaluation and the new cells' flags follow without a
read. Tree arrays and the point table grow by capacity doubling, copied on the device.
When ``max_grid_points`` may bind, the oracle's urgency order and prefix run on the
device too (:mod:`zp_ref.kernels.gpu_cap`) and one more count (the prefix length) is
read. Only a callable Q (its new points go to the host once per round, its values come
back) or a host-side view moves arrays across. Every device-to-host copy goes
through :meth:`CudaEngine._to_host`, which counts it in ``sync_count`` (the regression
guard of tests/test_gpu_refinement.py). Every launch uses
:mod:`zp_ref.kernels.gpu_launch`'s policy.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from ..kernels import gpu_cap
from ..kernels.common import CRIT_INTERVAL
from ..kernels.gpu_cap import (_bit_is_zero, _chunk_charges, _chunk_close, _chunk_fits,
                               _claim_fresh_faces, _gather, _iota, _rank_by_count,
                               _split_scatter, _urgency_fields)
from ..kernels.gpu_launch import one_per_item_shape
from ..kernels.gpu_poly import MAX_AXIS_DEGREE, check_supported
from ..kernels.gpu_refinement import (EMPTY, MAX_TAYLOR, _candidate_flags, _cell_flags, _compact,
                                      _emit_children, _eval_points_1d, _eval_points_nd,
                                      _face_claim, _face_ids, _fill, _insert_points,
                                      _set_point_count, _store_total, exclusive_scan)
from .engine import IntervalTables, PendingRound, empty_interval_args, round_info
from .tree import Tree

_NODE_FIELDS = ("lo", "level", "corner", "centre", "alive", "flag", "exhausted")


class CudaEngine:
    """The tree on the device; ``host_tree()`` copies it back when the host needs it."""

    name = "cuda"

    def __init__(self, lat, tree: Tree, qspec):
        if qspec.poly is not None:
            check_supported(qspec.poly)
        self.lat, self.qspec = lat, qspec
        self.interval = IntervalTables(qspec.poly) if lat.crit_code == CRIT_INTERVAL else None
        if self.interval is not None and int(self.interval.emax.max()) > MAX_AXIS_DEGREE:
            raise ValueError(f"backend='cuda' with criterion='interval' supports degree <= "
                             f"{MAX_AXIS_DEGREE} in each variable; this polynomial has "
                             f"{self.interval.emax.tolist()} (use backend='cpu')")
        if self.interval is not None and self.interval.size > MAX_TAYLOR:
            raise ValueError(f"backend='cuda' with criterion='interval' supports polynomials "
                             f"with at most {MAX_TAYLOR} Taylor coefficients; this one has "
                             f"{self.interval.size} (use backend='cpu')")
        self._buffers = {}
        #: Device-to-host copies (each one a host synchronisation) since construction.
        self.sync_count = 0
        self._constants(lat, qspec)
        self._host = tree
        self._upload(tree)

    def _constants(self, lat, qspec) -> None:
        """Device copies of everything that stays fixed: geometry, split tables, Q."""
        to = cuda.to_device
        self.c_geom = tuple(to(a) for a in (lat.strides, lat.M, lat.lo, lat.hi, lat.width))
        self.c_tab = {k: to(v) for k, v in lat.tables.items() if isinstance(v, np.ndarray)}
        args = self.interval.kernel_args() if self.interval is not None \
            else empty_interval_args(lat.d)
        self.c_small_cut = to(lat.small_cut)
        self.c_interval = tuple(to(a) if isinstance(a, np.ndarray) else a for a in args)
        if qspec.poly is not None:
            self.c_coeffs = to(qspec.poly.coefficients)
            self.c_poly = tuple(to(a) for a in qspec.poly.kernel_arrays())

    def _buffer(self, name: str, size: int, dtype=np.int64):
        """A device scratch array of at least ``size`` entries, reused across rounds."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < size:
            buf = self._buffers[name] = cuda.device_array(max(size, 1, 2 * (0 if buf is None
                                                                          else buf.shape[0])),
                                                          dtype)
        return buf[:max(size, 1)]

    def _exact_buffer(self, name: str, size: int, dtype=np.int64):
        """As ``_buffer``, but grown to exactly ``size`` (the capped selection's scratch,
        bounded by ``gpu_cap.selection_scratch_bytes``)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < size or buf.dtype != dtype:
            self._buffers.pop(name, None)
            buf = self._buffers[name] = cuda.device_array(max(size, 1), dtype)
        return buf[:max(size, 1)]

    # -- host <-> device
    def _to_host(self, d_arr) -> np.ndarray:
        """``d_arr`` copied to the host: the engine's only device-to-host path, counted
        in ``sync_count`` (the copy waits for every kernel queued before it)."""
        self.sync_count += 1
        return d_arr.copy_to_host()

    def _upload(self, tree: Tree) -> None:
        self.n, self.n_points = tree.n, tree.n_points
        self.d_nodes = {}
        cap = max(16, tree.n)
        for name in _NODE_FIELDS:
            host = getattr(tree, name)[:tree.n]
            host = host.astype(np.uint8) if host.dtype == np.bool_ else host
            arr = cuda.device_array((cap,) + host.shape[1:], host.dtype)
            if tree.n:
                arr[:tree.n].copy_to_device(np.ascontiguousarray(host))
            self.d_nodes[name] = arr
        pcap = max(16, tree.n_points)
        self.d_key = cuda.device_array(pcap, np.int64)
        self.d_value = cuda.device_array(pcap, np.float64)
        self.d_key[:tree.n_points].copy_to_device(tree.key[:tree.n_points])
        self.d_value[:tree.n_points].copy_to_device(tree.value[:tree.n_points])
        self.d_counts = cuda.to_device(np.array([tree.n_points, 0], np.int64))
        self.n_leaves = int(tree.alive[:tree.n].sum())
        self._next_candidates = None        # splittable leaves, when counted and read
        self._new_table(tree.n_points)
        self._host_stale = False

    def _new_table(self, n_keys: int) -> None:
        cap = 1 << max(4, int(2 * max(n_keys, 1) - 1).bit_length())
        self.d_tkeys = cuda.device_array(cap, np.int64)
        _fill[one_per_item_shape(cap)](self.d_tkeys, cap, EMPTY)
        self.d_tids = cuda.device_array(cap, np.int64)
        self.shift = 31 - (cap.bit_length() - 1)
        if self.n_points:
            _insert_points[one_per_item_shape(self.n_points)](
                self.d_key, self.n_points, self.d_tkeys, self.d_tids, self.shift)

    def host_tree(self) -> Tree:
        if self._host_stale:
            tree = Tree(self.lat.d)
            tree.reserve(self.n, self.n_points)
            tree.n, tree.n_points = self.n, self.n_points
            for name in _NODE_FIELDS:
                host = self._to_host(self.d_nodes[name][:self.n])
                getattr(tree, name)[:self.n] = host.astype(np.bool_) if host.dtype == np.uint8 \
                    else host
            tree.key[:self.n_points] = self._to_host(self.d_key[:self.n_points])
            tree.value[:self.n_points] = self._to_host(self.d_value[:self.n_points])
            tree.n_leaves = self.n_leaves
            self._host, self._host_stale = tree, False
        return self._host

    def _reserve(self, extra_nodes: int, extra_points: int, extra_keys: int) -> None:
        """Grow the device arrays (copying on the device) and the table when needed."""
        if self.n + extra_nodes > self.d_nodes["level"].shape[0]:
            cap = max(2 * self.d_nodes["level"].shape[0], self.n + extra_nodes)
            for name, old in self.d_nodes.items():
                arr = cuda.device_array((cap,) + old.shape[1:], old.dtype)
                if self.n:
                    arr[:self.n].copy_to_device(old[:self.n])
                self.d_nodes[name] = arr
        if self.n_points + extra_points > self.d_key.shape[0]:
            cap = max(2 * self.d_key.shape[0], self.n_points + extra_points)
            for name in ("d_key", "d_value"):
                old = getattr(self, name)
                arr = cuda.device_array(cap, old.dtype)
                arr[:self.n_points].copy_to_device(old[:self.n_points])
                setattr(self, name, arr)
        if 2 * (self.n_points + extra_keys) > self.d_tkeys.shape[0]:
            self._new_table(self.n_points + extra_keys)

    # -- the sampler's engine interface
    def tree_size(self) -> int:
        return self.n

    def exists(self, keys: np.ndarray) -> np.ndarray:
        tree = self.host_tree()
        return np.isin(keys, tree.key[:tree.n_points])

    def sorted_point_ids(self) -> np.ndarray:
        return np.argsort(self.host_tree().key[:self.n_points], kind="stable")

    def set_values(self, p0: int, values: np.ndarray) -> None:
        self.d_value[p0:p0 + values.size].copy_to_device(np.ascontiguousarray(values))
        self._host_stale, self._next_candidates = True, None

    def set_values_at(self, ids: np.ndarray, values: np.ndarray) -> None:
        tree = self.host_tree()
        tree.value[ids] = values
        self.d_value[:self.n_points].copy_to_device(tree.value[:self.n_points])
        self._next_candidates = None

    def evaluate(self, p0: int, p1: int) -> None:
        end = self._buffer("end", 1)
        _fill[1, 1](end, 1, p1)
        self._evaluate(p0, p1 - p0, end)

    def _evaluate(self, p0: int, n_max: int, d_end) -> None:
        """Q at points [p0, d_end[0]) (d_end on the device, at most n_max points)."""
        lat = self.lat
        strides, M, lo, hi, width = self.c_geom
        if lat.d == 1:
            _eval_points_1d[one_per_item_shape(n_max)](
                self.d_key, p0, d_end, lat.M[0], lat.lo[0], lat.hi[0], lat.width[0],
                self.c_coeffs, self.d_value)
        else:
            _eval_points_nd[one_per_item_shape(n_max)](
                self.d_key, p0, d_end, strides, M, lo, hi, width, *self.c_poly, self.d_value)
        self._host_stale = True

    def update_flags(self, c0: int, c1: int) -> None:
        if c1 <= c0:
            return
        lat, nd = self.lat, self.d_nodes
        _, M, lo, hi, width = self.c_geom
        _cell_flags[one_per_item_shape(c1 - c0)](
            c0, c1, nd["lo"], nd["level"], nd["corner"], nd["centre"], self.d_value,
            lat.crit_code, self.c_small_cut, lat.L, M, lo, hi, width, *self.c_interval,
            nd["flag"], nd["exhausted"])
        self._host_stale, self._next_candidates = True, None

    def _count_candidates(self) -> None:
        """Flag and scan the splittable leaves on the device; the count goes to d_counts[1]."""
        lat, nd, n = self.lat, self.d_nodes, self.n
        self.d_cflag = self._buffer("cflag", n)
        self.d_coffsets = self._buffer("coffsets", n)
        _candidate_flags[one_per_item_shape(n)](n, nd["alive"], nd["flag"], nd["exhausted"],
                                                nd["level"], lat.L, self.d_cflag)
        exclusive_scan(self.d_cflag, n, self.d_coffsets, self._buffer)
        _store_total[1, 1](self.d_cflag, self.d_coffsets, n, self.d_counts, 1)

    def _read_counts(self) -> int:
        """Read (points, splittable leaves) back from the device."""
        n_points, n_cand = (int(v) for v in self._to_host(self.d_counts))
        self.n_points, self._next_candidates = n_points, n_cand
        return n_cand

    def open_round(self, select) -> PendingRound:
        """Flag, count, compact, (cap: select on the device, as ``select_under_cap``;
        ``select`` is not called), split; two count reads, three when the cap may bind."""
        lat, nd, tab = self.lat, self.d_nodes, self.lat.tables
        nc, n_face = 2 ** lat.d, tab["face_pos"].size
        n = self.n
        if self._next_candidates is None:
            self._count_candidates()
            self._read_counts()
        n_cand = self._next_candidates
        n_sel, capped = n_cand, False
        if n_cand:
            d_sel = self._buffer("sel", n_cand)
            _compact[one_per_item_shape(n)](n, self.d_cflag, self.d_coffsets, d_sel)
        if n_cand and self.n_points + n_cand * (3 ** lat.d - 1) > lat.max_points:
            d_sel, n_sel = self._select_under_cap(d_sel, n_cand)
            capped = n_sel < n_cand
        if n_sel == 0:
            return PendingRound(n, 0, self.n_points, 0, None, round_info(
                n_cand, 0, capped, 0, self.n_points, self.n_leaves))
        room = lat.max_points - self.n_points     # the selection keeps new points in it
        self._reserve(n_sel * nc, min(n_sel * (n_face + nc), room), min(n_sel * n_face, room))
        c0, p0 = self.n, self.n_points
        n_sf = n_sel * n_face
        slot = self._buffer("slot", n_sf)
        new_faces = self._buffer("new_faces", 1)
        _fill[1, 1](new_faces, 1, 0)
        d_tab, d_strides = self.c_tab, self.c_geom[0]
        if n_sf:
            fkeys, won = self._buffer("fkeys", n_sf), self._buffer("won", n_sf)
            won_offsets = self._buffer("won_offsets", n_sf)
            _face_claim[one_per_item_shape(n_sf)](n_sel, d_sel, nd["lo"], nd["level"], d_strides,
                                                  lat.L, d_tab["offsets"], d_tab["face_pos"],
                                                  self.d_tkeys, self.shift, fkeys, slot, won)
            exclusive_scan(won, n_sf, won_offsets, self._buffer)
            _store_total[1, 1](won, won_offsets, n_sf, new_faces, 0)
            _face_ids[one_per_item_shape(n_sf)](n_sf, fkeys, slot, won, won_offsets, p0,
                                                self.d_tids, self.d_key)
        _emit_children[one_per_item_shape(n_sel)](
            n_sel, d_sel, slot, self.d_tids, nd["lo"], nd["level"], nd["corner"], nd["centre"],
            nd["alive"], nd["flag"], nd["exhausted"], c0, self.d_key, p0, new_faces, d_strides,
            lat.L, d_tab["corner_pos"], tab["centre_pos"], d_tab["face_pos"], d_tab["bits"],
            d_tab["child_corner_pos"])
        _set_point_count[1, 1](new_faces, p0, n_sel * nc, self.d_counts)
        self.n = c0 + n_sel * nc
        self.n_points = int(self._to_host(self.d_counts)[0])
        n_new = self.n_points - p0
        _fill[one_per_item_shape(n_new)](self.d_value[p0:self.n_points], n_new, np.nan)
        self.n_leaves += n_sel * (nc - 1)
        self._host_stale, self._next_candidates = True, None
        return PendingRound(c0, n_sel * nc, p0, n_new, d_sel, round_info(
            n_cand, n_sel, capped, n_new, self.n_points, self.n_leaves))

    def _select_under_cap(self, d_cand, n: int) -> tuple:
        """The oracle's ``select_under_cap`` on the device (kernels of
        :mod:`zp_ref.kernels.gpu_cap`): the candidates ``d_cand`` (n,) in urgency order and
        the length of the prefix that fits; one read (that length). Only the first
        room // 2**d + 1 ranks can fit; they are walked in chunks of at most
        ``gpu_cap.CAP_BATCH_KEYS`` face points, so the scratch stays within
        ``gpu_cap.selection_scratch_bytes(max_grid_points)`` whatever d is."""
        lat, nd, tab = self.lat, self.d_nodes, self.lat.tables
        buf = self._exact_buffer
        shape = one_per_item_shape(n)
        sign_bit, lvl, key = buf("u_sign", n), buf("u_level", n), buf("u_key", n)
        min_abs = buf("u_min_abs", n, np.float64)
        _urgency_fields[shape](n, d_cand, nd["corner"], nd["centre"], self.d_value, nd["lo"],
                               nd["level"], self.c_geom[0], sign_bit, min_abs, lvl, key)
        order = self._urgency_order(n, sign_bit, min_abs, lvl, key)
        n_face, nc = tab["face_pos"].size, 2 ** lat.d
        room = lat.max_points - self.n_points
        n_walk = min(n, room // nc + 1)
        chunk = max(1, gpu_cap.CAP_BATCH_KEYS // max(n_face, 1))
        slots = gpu_cap.table_slots(room + min(chunk, n_walk) * n_face)
        rkeys, rank = buf("u_rkeys", slots), buf("u_rank", slots)
        _fill[one_per_item_shape(slots)](rkeys, slots, EMPTY)
        _fill[one_per_item_shape(slots)](rank, slots, n)
        m_max = min(chunk, n_walk)
        rslot = buf("u_rslot", m_max * n_face)
        charge, before = buf("u_charge", m_max), buf("u_before", m_max)
        state = buf("u_state", 3)           # walk's total charge, walk over, ranks that fit
        _fill[1, 3](state, 3, 0)
        rshift = 31 - (slots.bit_length() - 1)
        for r0 in range(0, n_walk, chunk):
            m = min(chunk, n_walk - r0)
            if n_face:
                _claim_fresh_faces[one_per_item_shape(m * n_face)](
                    r0, m, order, d_cand, nd["lo"], nd["level"], self.c_geom[0], lat.L,
                    self.c_tab["offsets"], self.c_tab["face_pos"], self.d_tkeys, self.shift,
                    rkeys, rshift, rank, rslot, state)
            part = one_per_item_shape(m)
            _chunk_charges[part](r0, m, n_face, nc, rslot, rank, charge, state)
            exclusive_scan(charge, m, before, buf)
            _chunk_fits[part](m, charge, before, room, state)
            _chunk_close[1, 1](m, charge, before, room, state)
        sel = buf("u_sel", n)
        _gather[shape](n, order, d_cand, sel)
        return sel, int(self._to_host(state[2:3])[0])

    def _urgency_order(self, n: int, sign_bit, min_abs, lvl, key):
        """Candidate positions (n,) most urgent first: ranked by counting up to
        ``gpu_cap.RANK_MAX`` candidates, else radix-sorted one bit per pass."""
        buf, shape = self._exact_buffer, one_per_item_shape(n)
        order, spare = buf("u_order", n), buf("u_spare", n)
        if n <= gpu_cap.RANK_MAX:
            _rank_by_count[shape](n, sign_bit, min_abs, lvl, key, order)
            return order
        _iota[shape](order, n)
        flag, pos = buf("u_flag", n), buf("u_pos", n)
        max_key = int(self.lat.strides[0]) * (int(self.lat.M[0]) + 1)
        # least significant first: key, level, min |Q| (63 bits of a float >= 0), sign
        for field, bits in ((key, max_key.bit_length()), (lvl, int(self.lat.L).bit_length()),
                            (min_abs.view(np.int64), 63), (sign_bit, 1)):
            for b in range(bits):
                _bit_is_zero[shape](n, order, field, b, flag)
                exclusive_scan(flag, n, pos, buf)
                _split_scatter[shape](n, order, flag, pos, spare)
                order, spare = spare, order
        return order

    def undo_round(self, pending: PendingRound) -> None:
        if pending.n_children:
            self._upload(self._host_before(pending.c0, pending.p0, pending.sel))

    def point_coords(self, p0: int, p1: int) -> np.ndarray:
        keys = self._to_host(self.d_key[p0:p1])
        return self.lat.coords(self.lat.decode(keys))

    def _host_before(self, c0: int, p0: int, d_sel) -> Tree:
        """The tree as it was before a failed round (parents alive again)."""
        self.n_points = p0
        tree = self.host_tree()
        tree.n, tree.n_points = c0, p0
        tree.alive[self._to_host(d_sel)] = True
        tree.n_leaves = int(tree.alive[:c0].sum())
        self.n = c0
        return tree
