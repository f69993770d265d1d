"""numba.cuda twin of :mod:`zp_ref.kernels.cpu_refinement` (imported only for backend="cuda";
the host driver is :mod:`zp_ref.refinement.cuda`).

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

from .common import CRIT_INTERVAL, RADIUS_INFLATE, cuda_simulated, simple_flag
from .cpu_refinement import interval_flag
from .gpu_launch import one_per_item_shape
from .gpu_poly import MAX_DIM, POW_WIDTH, fill_powers, horner_at, mul, terms_at

#: Width of a scan block (its shared array; small under the simulator, where every
#: thread is a Python thread). Every other launch follows gpu_launch's policy.
SCAN_THREADS = 16 if cuda_simulated() else 256
EMPTY = -1
#: Odd 31-bit multipliers of the table hash (31-bit products never overflow int64).
HASH_C0, HASH_C1, MASK31 = 0x5851F42D, 0x4C957F2D, (1 << 31) - 1
#: Taylor coefficients a thread can hold for criterion="interval".
MAX_TAYLOR = 512


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
        _add_block_offsets[one_per_item_shape(n)](d_dst, d_offsets, n)


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
