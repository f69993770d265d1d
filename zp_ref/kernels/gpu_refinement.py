"""numba.cuda twin of :mod:`zp_ref.kernels.cpu_refinement` (imported only for backend="cuda").

The tree lives on the device between rounds. One round is a fixed sequence of kernels:
flag the splittable leaves and scan the flags (device-wide exclusive scan), compact
them, claim their face points in a device hash table (atomic CAS on the packed lattice
key), scan the claims into new point ids, emit the children, evaluate Q at the new
points and test the new cells. The host reads back one pair of counts per round (new
cells, points); only a binding ``max_grid_points`` cap or a Python callable Q moves
arrays to the host. Products go through ``gpu_poly.mul`` (libdevice ``dmul_rn``, never
fused), so values and flags are bit-identical to the CPU's.
"""
import numpy as np
from numba import cuda

from ..refinement import (RADIUS_INFLATE, _Tree,
                          _empty_interval_args, _IntervalTables, CRIT_INTERVAL, call_q)
from ..backends import cuda_simulated
from .cpu_refinement import interval_flag, simple_flag
from .gpu_poly import (MAX_AXIS_DEGREE, MAX_DIM, POW_WIDTH, check_supported, fill_powers,
                       horner_at, mul, terms_at)

#: Threads per block (small under the simulator, where every thread is a Python thread).
THREADS = 16 if cuda_simulated() else 128
SCAN_THREADS = 16 if cuda_simulated() else 256
EMPTY = -1
#: Odd 31-bit multipliers of the table hash (31-bit products never overflow int64).
HASH_C0, HASH_C1, MASK31 = 0x5851F42D, 0x4C957F2D, (1 << 31) - 1
#: Taylor coefficients a thread can hold for criterion="interval".
MAX_TAYLOR = 512


def _grid(n: int) -> int:
    return max(1, (n + THREADS - 1) // THREADS)


# ------------------------------------------------------------------ device-wide scan
@cuda.jit
def _scan_blocks(src, dst, sums, n):
    """Exclusive scan of each block of SCAN_THREADS entries; block totals into sums."""
    tmp = cuda.shared.array(SCAN_THREADS, np.int64)
    t = cuda.threadIdx.x
    i = cuda.blockIdx.x * SCAN_THREADS + t
    v = src[i] if i < n else 0
    tmp[t] = v
    cuda.syncthreads()
    offset = 1
    while offset < SCAN_THREADS:
        x = tmp[t - offset] if t >= offset else 0
        cuda.syncthreads()
        tmp[t] += x
        cuda.syncthreads()
        offset *= 2
    if i < n:
        dst[i] = tmp[t] - v
    if t == SCAN_THREADS - 1:
        sums[cuda.blockIdx.x] = tmp[t]


@cuda.jit
def _add_block_offsets(dst, offsets, n):
    i = cuda.grid(1)
    if i < n:
        dst[i] += offsets[i // SCAN_THREADS]


@cuda.jit
def _store_total(src, dst, n, out, slot):
    """out[slot] = dst[n - 1] + src[n - 1] (the scan total), 0 for n = 0."""
    if cuda.grid(1) == 0:
        out[slot] = dst[n - 1] + src[n - 1] if n > 0 else 0


def exclusive_scan(d_src, n: int, d_dst, scratch=None, depth: int = 0) -> None:
    """d_dst[:n] = exclusive prefix sums of d_src[:n] (int64), all on the device.
    ``scratch(name, size)`` may supply reusable int64 buffers for the block totals."""
    if n == 0:
        return
    blocks = (n + SCAN_THREADS - 1) // SCAN_THREADS
    buffer = scratch or (lambda name, size: cuda.device_array(size, np.int64))
    d_sums = buffer(f"scan_sums{depth}", blocks)
    _scan_blocks[blocks, SCAN_THREADS](d_src, d_dst, d_sums, n)
    if blocks > 1:
        d_offsets = buffer(f"scan_offsets{depth}", blocks)
        exclusive_scan(d_sums, blocks, d_offsets, scratch, depth + 1)
        _add_block_offsets[_grid(n), THREADS](d_dst, d_offsets, n)


@cuda.jit
def _fill(a, n, value):
    i = cuda.grid(1)
    if i < n:
        a[i] = value


# ------------------------------------------------------------------ hash table
@cuda.jit(device=True)
def _home(key, shift):
    """Home slot: multiplicative hash of the two 31-bit halves of the key, top bits of
    the 31-bit result (``shift = 31 - log2(slots)``)."""
    m = ((key & MASK31) * HASH_C0 ^ (key >> 31) * HASH_C1) & MASK31
    return m >> shift


@cuda.jit(device=True)
def _claim(tkeys, key, shift):
    """Slot of ``key``, inserting it when absent; returns (slot, True if inserted here)."""
    mask = tkeys.size - 1
    h = _home(key, shift)
    while True:
        old = cuda.atomic.cas(tkeys, h, EMPTY, key)
        if old == EMPTY:
            return h, True
        if old == key:
            return h, False
        h = (h + 1) & mask


@cuda.jit
def _insert_points(pkey, n, tkeys, tids, shift):
    """Insert point p -> id p for p < n."""
    p = cuda.grid(1)
    if p < n:
        h, _ = _claim(tkeys, pkey[p], shift)
        tids[h] = p


# ------------------------------------------------------------------ one round
@cuda.jit
def _candidate_flags(n, alive, flag, exhausted, level, L, out):
    i = cuda.grid(1)
    if i < n:
        ok = alive[i] != 0 and flag[i] != 0 and exhausted[i] == 0 and level[i] < L
        out[i] = 1 if ok else 0


@cuda.jit
def _compact(n, cflag, offsets, sel):
    i = cuda.grid(1)
    if i < n and cflag[i] != 0:
        sel[offsets[i]] = i


@cuda.jit
def _face_claim(n_sel, sel, lo, level, strides, L, offsets, face_pos, tkeys, shift,
                fkeys, slot, won):
    """Thread j = s * F + f: key of face point f of cell sel[s], claimed in the table."""
    j = cuda.grid(1)
    n_face = face_pos.size
    if j < n_sel * n_face:
        s, f = j // n_face, j % n_face
        i = sel[s]
        half = np.int64(1) << (L - level[i])
        key = 0
        for a in range(lo.shape[1]):
            key += (lo[i, a] + offsets[face_pos[f], a] * half) * strides[a]
        fkeys[j] = key
        h, inserted = _claim(tkeys, key, shift)
        slot[j] = h
        won[j] = 1 if inserted else 0


@cuda.jit
def _face_ids(n, fkeys, slot, won, won_offsets, p0, tids, pkey):
    """A claimed face point gets id p0 + its rank among the claims of this round."""
    j = cuda.grid(1)
    if j < n and won[j] != 0:
        pid = p0 + won_offsets[j]
        tids[slot[j]] = pid
        pkey[pid] = fkeys[j]


@cuda.jit
def _emit_children(n_sel, sel, slot, tids, lo, level, corner, centre, alive, flag, exhausted,
                   c0, pkey, p0, counts, strides, L, corner_pos, centre_pos, face_pos, bits,
                   child_corner_pos):
    """Thread s: the 2**d children of sel[s] at nodes c0 + s * 2**d + c, centres at
    p0 + (new faces) + s * 2**d + c; the parent stops being a leaf."""
    s = cuda.grid(1)
    if s >= n_sel:
        return
    ids = cuda.local.array(729, np.int64)          # 3**MAX_DIM half-step points
    d = lo.shape[1]
    nc = bits.shape[0]
    n_face = face_pos.size
    i = sel[s]
    half = np.int64(1) << (L - level[i])
    for j in range(nc):
        ids[corner_pos[j]] = corner[i, j]
    ids[centre_pos] = centre[i]
    for f in range(n_face):
        ids[face_pos[f]] = tids[slot[s * n_face + f]]
    pc0 = p0 + counts[0]
    for c in range(nc):
        node = c0 + s * nc + c
        pt = pc0 + s * nc + c
        ckey = 0
        for a in range(d):
            lo[node, a] = lo[i, a] + bits[c, a] * half
            ckey += (lo[node, a] + (half >> 1)) * strides[a]
        level[node] = level[i] + 1
        for j in range(nc):
            corner[node, j] = ids[child_corner_pos[c, j]]
        pkey[pt] = ckey
        centre[node] = pt
        alive[node] = 1
        flag[node] = 0
        exhausted[node] = 0
    alive[i] = 0


@cuda.jit
def _set_point_count(counts, p0, n_centres, out):
    if cuda.grid(1) == 0:
        out[0] = p0 + counts[0] + n_centres


@cuda.jit(device=True)
def _coord(k, M, lo, hi, width):
    if k == M:
        return hi
    return lo + mul(width, k / M)


@cuda.jit
def _eval_points_1d(pkey, p0, counts, M, lo, hi, width, coeffs, value):
    """value[p] = Q(x(pkey[p])) for p in [p0, counts[0])."""
    p = p0 + cuda.grid(1)
    if p < counts[0]:
        value[p] = horner_at(coeffs, _coord(pkey[p], M, lo, hi, width))


@cuda.jit
def _eval_points_nd(pkey, p0, counts, strides, M, lo, hi, width, exps, w, emax, value):
    pw = cuda.local.array((MAX_DIM, POW_WIDTH), np.float64)
    p = p0 + cuda.grid(1)
    if p < counts[0]:
        for a in range(strides.size):
            k = (pkey[p] // strides[a]) % (M[a] + 1)
            fill_powers(pw, a, _coord(k, M[a], lo[a], hi[a], width[a]), emax[a])
        value[p] = terms_at(exps, w, pw)


@cuda.jit(device=True)
def _bound_sum(d, exps, w, spow):
    """sum_t |w_t| prod_a spow[a, e_ta] (as cpu_refinement.bound_sum)."""
    B = 0.0
    for t in range(w.size):
        prod = abs(w[t])
        for a in range(d):
            prod = mul(prod, spow[a, exps[t, a]])
        B = B + prod
    return B


@cuda.jit(device=True)
def _enclosure(xlo, xhi, d, exps, w, emax, term, flat, mult, cexp, bexp, err_factor):
    """(|A_0|, R, E, floor) of the Taylor form over [xlo, xhi] (as
    cpu_refinement.taylor_enclosure)."""
    taylor = cuda.local.array(MAX_TAYLOR, np.float64)
    cpow = cuda.local.array((MAX_DIM, POW_WIDTH), np.float64)
    rpow = cuda.local.array((MAX_DIM, POW_WIDTH), np.float64)
    spow = cuda.local.array((MAX_DIM, POW_WIDTH), np.float64)
    for a in range(d):
        c = mul(0.5, xlo[a] + xhi[a])
        r = mul(max(xhi[a] - c, c - xlo[a]), RADIUS_INFLATE)
        fill_powers(cpow, a, c, emax[a])
        fill_powers(rpow, a, r, emax[a])
        fill_powers(spow, a, abs(c) + r, emax[a])
    for f in range(bexp.shape[0]):
        taylor[f] = 0.0
    for z in range(term.size):
        prod = mul(w[term[z]], mult[z])
        for a in range(d):
            prod = mul(prod, cpow[a, cexp[z, a]])
        taylor[flat[z]] = taylor[flat[z]] + prod
    R = 0.0
    for f in range(1, bexp.shape[0]):
        prod = abs(taylor[f])
        for a in range(d):
            prod = mul(prod, rpow[a, bexp[f, a]])
        R = R + prod
    E = mul(err_factor, _bound_sum(d, exps, w, spow))
    for a in range(d):
        m = 0.0 if xlo[a] <= 0.0 <= xhi[a] else min(abs(xlo[a]), abs(xhi[a]))
        fill_powers(spow, a, m, emax[a])
    floor = _bound_sum(d, exps, w, spow)
    for z in range(term.size):
        prod = abs(mul(w[term[z]], mult[z]))
        for a in range(d):
            prod = mul(prod, spow[a, cexp[z, a]])
        floor = max(floor, prod)
    return abs(taylor[0]), R, E, floor


@cuda.jit
def _cell_flags(c0, c1, lo, level, corner, centre, value, crit, small_cut, L, M, box_lo,
                box_hi, width, exps, w, emax, term, flat, mult, cexp, bexp, err_factor,
                flag, exhausted):
    """flag / exhausted of nodes [c0, c1) (as cpu_refinement.cell_flags)."""
    i = c0 + cuda.grid(1)
    if i >= c1:
        return
    d = lo.shape[1]
    nc = corner.shape[1]
    pending, pos, neg, zero, small = False, False, False, False, False
    for j in range(nc + 1):
        v = value[corner[i, j]] if j < nc else value[centre[i]]
        if v != v:
            pending = True
        pos = pos or v > 0
        neg = neg or v < 0
        zero = zero or v == 0
        small = small or abs(v) < small_cut[level[i]]
    ex = False
    if crit != CRIT_INTERVAL:
        f = simple_flag(crit, (pos and neg) or zero, small)
    else:
        xlo = cuda.local.array(MAX_DIM, np.float64)
        xhi = cuda.local.array(MAX_DIM, np.float64)
        unit = np.int64(1) << (L + 1 - level[i])
        for a in range(d):
            xlo[a] = _coord(lo[i, a], M[a], box_lo[a], box_hi[a], width[a])
            xhi[a] = _coord(lo[i, a] + unit, M[a], box_lo[a], box_hi[a], width[a])
        a0, R, E, floor = _enclosure(xlo, xhi, d, exps, w, emax, term, flat, mult, cexp,
                                     bexp, err_factor)
        f, ex = interval_flag(a0, R, E, floor)
        pending = False
    flag[i] = 1 if (f and not pending) else 0
    exhausted[i] = 1 if (ex and not pending) else 0


# ------------------------------------------------------------------ the engine
_NODE_FIELDS = ("lo", "level", "corner", "centre", "alive", "flag", "exhausted")


class CudaEngine:
    """The tree on the device; ``host_tree()`` copies it back when the host needs it."""

    name = "cuda"

    def __init__(self, lat, tree: _Tree, qspec):
        if qspec.poly is not None:
            check_supported(qspec.poly)
        self.lat, self.qspec = lat, qspec
        self.interval = _IntervalTables(qspec.poly) if lat.crit_code == CRIT_INTERVAL else None
        if self.interval is not None and int(self.interval.emax.max()) > MAX_AXIS_DEGREE:
            raise ValueError(f"backend='cuda' with criterion='interval' supports degree <= "
                             f"{MAX_AXIS_DEGREE} in each variable; this polynomial has "
                             f"{self.interval.emax.tolist()} (use backend='cpu')")
        if self.interval is not None and self.interval.size > MAX_TAYLOR:
            raise ValueError(f"backend='cuda' with criterion='interval' supports polynomials "
                             f"with at most {MAX_TAYLOR} Taylor coefficients; this one has "
                             f"{self.interval.size} (use backend='cpu')")
        self._buffers = {}
        self._constants(lat, qspec)
        self._host = tree
        self._upload(tree)

    def _constants(self, lat, qspec) -> None:
        """Device copies of everything that stays fixed: geometry, split tables, Q."""
        to = cuda.to_device
        self.c_geom = tuple(to(a) for a in (lat.strides, lat.M, lat.lo, lat.hi, lat.width))
        self.c_tab = {k: to(v) for k, v in lat.tables.items() if isinstance(v, np.ndarray)}
        self.c_small_cut = to(lat.small_cut)
        args = self.interval.kernel_args() if self.interval is not None \
            else _empty_interval_args(lat.d)
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

    # -- host <-> device
    def _upload(self, tree: _Tree) -> None:
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
        _fill[_grid(cap), THREADS](self.d_tkeys, cap, EMPTY)
        self.d_tids = cuda.device_array(cap, np.int64)
        self.shift = 31 - (cap.bit_length() - 1)
        if self.n_points:
            _insert_points[_grid(self.n_points), THREADS](self.d_key, self.n_points,
                                                          self.d_tkeys, self.d_tids, self.shift)

    def host_tree(self) -> _Tree:
        if self._host_stale:
            tree = _Tree(self.lat.d)
            tree.reserve(self.n, self.n_points)
            tree.n, tree.n_points = self.n, self.n_points
            for name in _NODE_FIELDS:
                host = self.d_nodes[name][:self.n].copy_to_host()
                getattr(tree, name)[:self.n] = host.astype(np.bool_) if host.dtype == np.uint8 \
                    else host
            tree.key[:self.n_points] = self.d_key[:self.n_points].copy_to_host()
            tree.value[:self.n_points] = self.d_value[:self.n_points].copy_to_host()
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
            _eval_points_1d[_grid(n_max), THREADS](
                self.d_key, p0, d_end, lat.M[0], lat.lo[0], lat.hi[0], lat.width[0],
                self.c_coeffs, self.d_value)
        else:
            _eval_points_nd[_grid(n_max), THREADS](
                self.d_key, p0, d_end, strides, M, lo, hi, width, *self.c_poly, self.d_value)
        self._host_stale = True

    def update_flags(self, c0: int, c1: int) -> None:
        if c1 <= c0:
            return
        lat, nd = self.lat, self.d_nodes
        _, M, lo, hi, width = self.c_geom
        _cell_flags[_grid(c1 - c0), THREADS](
            c0, c1, nd["lo"], nd["level"], nd["corner"], nd["centre"], self.d_value,
            lat.crit_code, self.c_small_cut, lat.L, M, lo, hi, width, *self.c_interval,
            nd["flag"], nd["exhausted"])
        self._host_stale, self._next_candidates = True, None

    def _count_candidates(self) -> None:
        """Flag and scan the splittable leaves on the device; the count goes to d_counts[1]."""
        lat, nd, n = self.lat, self.d_nodes, self.n
        self.d_cflag = self._buffer("cflag", n)
        self.d_coffsets = self._buffer("coffsets", n)
        _candidate_flags[_grid(n), THREADS](n, nd["alive"], nd["flag"], nd["exhausted"],
                                            nd["level"], lat.L, self.d_cflag)
        exclusive_scan(self.d_cflag, n, self.d_coffsets, self._buffer)
        _store_total[1, 1](self.d_cflag, self.d_coffsets, n, self.d_counts, 1)

    def _read_counts(self) -> int:
        """The one device-to-host read of a round: (points, splittable leaves)."""
        n_points, n_cand = (int(v) for v in self.d_counts.copy_to_host())
        self.n_points, self._next_candidates = n_points, n_cand
        return n_cand

    def round(self, qspec, select) -> dict:
        lat, nd, tab = self.lat, self.d_nodes, self.lat.tables
        nc, n_face = 2 ** lat.d, tab["face_pos"].size
        n = self.n
        if self._next_candidates is None:
            self._count_candidates()
            self._read_counts()
        n_cand = self._next_candidates
        n_sel, capped = n_cand, False
        if n_cand and self.n_points + n_cand * (3 ** lat.d - 1) > lat.max_points:
            tree = self.host_tree()
            cand = np.flatnonzero(tree.alive[:n] & tree.flag[:n] & ~tree.exhausted[:n]
                                  & (tree.level[:n] < lat.L))
            sel_host, capped = select(cand)
            n_sel = sel_host.size
            d_sel = cuda.to_device(np.ascontiguousarray(sel_host, np.int64)) if n_sel else None
        elif n_cand:
            d_sel = self._buffer("sel", n_cand)
            _compact[_grid(n), THREADS](n, self.d_cflag, self.d_coffsets, d_sel)
        info = {"n_candidates": n_cand, "n_refined": n_sel, "n_deferred": n_cand - n_sel,
                "capped": bool(capped), "n_new_points": 0, "n_evaluated": 0,
                "n_points": self.n_points, "n_leaves": self.n_leaves}
        if n_sel == 0:
            return info
        self._reserve(n_sel * nc, n_sel * (n_face + nc), n_sel * n_face)
        c0, p0 = self.n, self.n_points
        n_sf = n_sel * n_face
        slot = self._buffer("slot", n_sf)
        new_faces = self._buffer("new_faces", 1)
        _fill[1, 1](new_faces, 1, 0)
        d_tab, d_strides = self.c_tab, self.c_geom[0]
        if n_sf:
            fkeys, won = self._buffer("fkeys", n_sf), self._buffer("won", n_sf)
            won_offsets = self._buffer("won_offsets", n_sf)
            _face_claim[_grid(n_sf), THREADS](n_sel, d_sel, nd["lo"], nd["level"], d_strides,
                                              lat.L, d_tab["offsets"], d_tab["face_pos"],
                                              self.d_tkeys, self.shift, fkeys, slot, won)
            exclusive_scan(won, n_sf, won_offsets, self._buffer)
            _store_total[1, 1](won, won_offsets, n_sf, new_faces, 0)
            _face_ids[_grid(n_sf), THREADS](n_sf, fkeys, slot, won, won_offsets, p0,
                                            self.d_tids, self.d_key)
        _emit_children[_grid(n_sel), THREADS](
            n_sel, d_sel, slot, self.d_tids, nd["lo"], nd["level"], nd["corner"], nd["centre"],
            nd["alive"], nd["flag"], nd["exhausted"], c0, self.d_key, p0, new_faces, d_strides,
            lat.L, d_tab["corner_pos"], tab["centre_pos"], d_tab["face_pos"], d_tab["bits"],
            d_tab["child_corner_pos"])
        _set_point_count[1, 1](new_faces, p0, n_sel * nc, self.d_counts)
        n_max = n_sf + n_sel * nc
        self.n = c0 + n_sel * nc
        self._host_stale = True
        if qspec.poly is not None:
            self._evaluate(p0, n_max, self.d_counts)
        else:   # a callable (or none): values come from the host
            self.n_points = int(self.d_counts.copy_to_host()[0])
            keys = self.d_key[p0:self.n_points].copy_to_host()
            if qspec.func is not None:
                try:
                    values = call_q(qspec.func, lat.coords(lat.decode(keys)))
                except BaseException:
                    self._upload(self._host_before(c0, p0, d_sel))
                    raise
            else:
                values = np.full(keys.size, np.nan)
            self.d_value[p0:self.n_points].copy_to_device(values)
        self.update_flags(c0, self.n)
        self.n_leaves += n_sel * (nc - 1)
        self._count_candidates()
        self._read_counts()
        info.update(n_new_points=self.n_points - p0, n_points=self.n_points,
                    n_evaluated=(self.n_points - p0) if qspec.kind != "none" else 0,
                    n_leaves=self.n_leaves)
        return info

    def _host_before(self, c0: int, p0: int, d_sel) -> _Tree:
        """The tree as it was before a failed round (parents alive again)."""
        self.n_points = p0
        tree = self.host_tree()
        tree.n, tree.n_points = c0, p0
        tree.alive[d_sel.copy_to_host()] = True
        tree.n_leaves = int(tree.alive[:c0].sum())
        self.n = c0
        return tree
