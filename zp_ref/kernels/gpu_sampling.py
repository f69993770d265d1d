"""numba.cuda twins of :mod:`zp_ref.kernels.cpu_sampling` (imported only for backend="cuda").

With replacement, exactly the oracle's indices (``sampling.prefix_sums``):

1. ``block_totals_kernel``: one thread per PREFIX_BLOCK block sums it sequentially; the
   CUDA block stages a tile of its rows through shared memory so that global loads
   are coalesced. It also counts negative and positive weights and finds the last
   positive index (one atomic per CUDA block).
2. ``sequential_scan``: one CUDA block adds the block totals in index order (the
   serial chain of ``np.add.accumulate``; thread 0 runs it out of shared memory, the
   others stage the chunks), giving the block ends. One small copy to the host
   checks the weights (the contract's errors) and reads the total.
3. ``guide_table`` + ``locate_draws``: draw j targets t_j = u(key, j) * total; a guide
   table over [0, total) gives a starting block that is walked to the first block
   whose end exceeds t_j; ``bucket_counts[b]`` counts the draws per block.
4. ``exclusive_scan_counts`` + ``scatter_draws``: a counting sort groups the draws by
   block.
5. ``resolve_draws``: one CUDA block per PREFIX_BLOCK block loads its weights into
   shared memory once, builds the local prefix sums sequentially, and resolves its
   draws by a binary search in shared memory: ``offsets[b] + local[i] > t_j``.

Every add is a plain IEEE double add in the oracle's order (no multiply feeds an add,
so no fused multiply-add can change a bit). The draw order does not depend on the
order in which the atomics run: draw j always lands in ``out[j]``.

Without replacement: keys ``log(w_i) - log(-log(u(key, i)))`` (the order of the
Efraimidis-Spirakis keys log(u) / w_i) are mapped to order-reversing uint64 bits, a radix select on the device (8-bit digits, at most 8
passes: it stops once the n-th key's bucket holds exactly the keys still wanted) finds
the n-th key, a compaction collects the selected indices, and the host puts those n (not N)
in the contract's order (decreasing key, ties to the lower index) with np.lexsort.
``log`` is libdevice's on the device (within 1 ulp of the host's): two keys that
close are a tie in practice never met at the n-th place.
"""
import math

import numpy as np
from numba import cuda
from numba.cuda import libdevice

from .checks import check_count
from .common import PREFIX_BLOCK, cuda_simulated
from .counter_rng import uniform_at
from .cpu_sampling import check_weight_sums
from .gpu_launch import as_device, device_shape, grid_stride_shape

#: PREFIX_BLOCK rows per CUDA block of block_totals_kernel (its thread count), and the
#: columns of the shared tile staged per step (padded by one against bank conflicts);
#: threads per CUDA block of resolve_draws (one CUDA block per PREFIX_BLOCK block) and
#: of exclusive_scan_counts. Under the simulator, where every thread is a Python thread
#: and every barrier costs milliseconds, smaller blocks and fewer steps (same results).
if cuda_simulated():
    TILE_ROWS, TILE_COLS, RESOLVE_THREADS, INT_SCAN_WIDTH = 8, 128, 8, 32
else:
    TILE_ROWS, TILE_COLS, RESOLVE_THREADS, INT_SCAN_WIDTH = 64, 32, 32, 512
TILE_PITCH = TILE_COLS + 1
#: Block totals per shared-memory buffer of sequential_scan (three buffers rotate).
SCAN_CHUNK = 1024
#: Radix-select digits: 8 bits per pass, at most 8 passes over the 64-bit keys.
RADIX_BITS, RADIX_BINS = 8, 256
DIGIT_MASK = np.uint64(RADIX_BINS - 1)
ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
LOW_63 = np.uint64(0x7FFFFFFFFFFFFFFF)


# ------------------------------------------------------------ prefix sums (the contract)
@cuda.jit(cache=True)
def block_totals_kernel(w, totals, counts):
    """totals[r] = sequential sum of block r; counts += [negatives, positives] and
    counts[2] = max(counts[2], last index with w > 0). blockDim.x == TILE_ROWS."""
    tile = cuda.shared.array((TILE_ROWS, TILE_PITCH), np.float64)
    part = cuda.shared.array((3, TILE_ROWS), np.int64)
    t = cuda.threadIdx.x
    row0 = cuda.blockIdx.x * TILE_ROWS
    n = w.size
    s = 0.0
    neg = 0
    pos = 0
    last = -1
    for k0 in range(0, PREFIX_BLOCK, TILE_COLS):
        for e in range(t, TILE_ROWS * TILE_COLS, TILE_ROWS):     # coalesced: 32 in a row
            i = (row0 + e // TILE_COLS) * PREFIX_BLOCK + k0 + e % TILE_COLS
            tile[e // TILE_COLS, e % TILE_COLS] = w[i] if i < n else 0.0
        cuda.syncthreads()
        for c in range(TILE_COLS):
            x = tile[t, c]
            s += x                          # +0.0 padding leaves the sum's bits alone
            if x < 0.0:
                neg += 1
            elif x > 0.0:
                pos += 1
                last = (row0 + t) * PREFIX_BLOCK + k0 + c
        cuda.syncthreads()
    if row0 + t < totals.size:
        totals[row0 + t] = s
    part[0, t] = neg
    part[1, t] = pos
    part[2, t] = last
    cuda.syncthreads()
    if t == 0:
        for r in range(1, TILE_ROWS):
            neg += part[0, r]
            pos += part[1, r]
            last = max(last, part[2, r])
        if neg:
            cuda.atomic.add(counts, 0, neg)
        if pos:
            cuda.atomic.add(counts, 1, pos)
            cuda.atomic.max(counts, 2, last)


@cuda.jit(device=True, inline=True)
def running_sum_inplace(buf, row, acc, m):
    """buf[row, k] = acc + buf[row, 0] + ... + buf[row, k] for k < m, added one at a time
    in index order (loads issued eight ahead of the dependent adds); returns the sum."""
    k = 0
    while k + 8 <= m:
        x0 = buf[row, k]
        x1 = buf[row, k + 1]
        x2 = buf[row, k + 2]
        x3 = buf[row, k + 3]
        x4 = buf[row, k + 4]
        x5 = buf[row, k + 5]
        x6 = buf[row, k + 6]
        x7 = buf[row, k + 7]
        acc += x0
        buf[row, k] = acc
        acc += x1
        buf[row, k + 1] = acc
        acc += x2
        buf[row, k + 2] = acc
        acc += x3
        buf[row, k + 3] = acc
        acc += x4
        buf[row, k + 4] = acc
        acc += x5
        buf[row, k + 5] = acc
        acc += x6
        buf[row, k + 6] = acc
        acc += x7
        buf[row, k + 7] = acc
        k += 8
    while k < m:
        acc += buf[row, k]
        buf[row, k] = acc
        k += 1
    return acc


@cuda.jit(cache=True)
def sequential_scan(totals, ends):
    """One CUDA block (>= 2 threads): ends = np.add.accumulate(totals), the adds in
    index order. Thread 0 runs the chain over chunk c in shared memory while the other
    threads store chunk c - 1 and load chunk c + 1 (three rotating buffers)."""
    buf = cuda.shared.array((3, SCAN_CHUNK), np.float64)
    t = cuda.threadIdx.x
    loaders = cuda.blockDim.x - 1
    n = totals.size
    chunks = (n + SCAN_CHUNK - 1) // SCAN_CHUNK
    if t > 0:
        for k in range(t - 1, min(SCAN_CHUNK, n), loaders):
            buf[0, k] = totals[k]
    cuda.syncthreads()
    acc = 0.0
    for c in range(chunks):
        if t == 0:
            acc = running_sum_inplace(buf, c % 3, acc, min(SCAN_CHUNK, n - c * SCAN_CHUNK))
        else:
            if c + 1 < chunks:
                c0 = (c + 1) * SCAN_CHUNK
                for k in range(t - 1, min(SCAN_CHUNK, n - c0), loaders):
                    buf[(c + 1) % 3, k] = totals[c0 + k]
            if c >= 1:
                c0 = (c - 1) * SCAN_CHUNK
                for k in range(t - 1, SCAN_CHUNK, loaders):
                    ends[c0 + k] = buf[(c - 1) % 3, k]
        cuda.syncthreads()
    if t > 0:
        c0 = (chunks - 1) * SCAN_CHUNK
        for k in range(t - 1, n - c0, loaders):
            ends[c0 + k] = buf[(chunks - 1) % 3, k]


def device_weights(w_dev):
    """``w_dev`` as a non-empty float64 (N,) numba device array (zero-copy)."""
    w_dev = as_device(w_dev, "w_dev")
    if w_dev.dtype != np.float64 or w_dev.ndim != 1:
        raise TypeError(f"w_dev must be a float64 (N,) device array, got {w_dev.dtype} "
                        f"{w_dev.shape}")
    if w_dev.size == 0:
        raise ValueError(f"weights must not be empty, got shape {w_dev.shape}")
    return w_dev


def prefix_ends_device(w_dev, w_host=None) -> tuple:
    """Block ends of the device weights (float64 (nb,) device array) and the total.

    Raises the cpu path's ValueErrors for negative or non-finite weights or a zero
    total (``w_host``, or a copy of ``w_dev``, names the first bad entry).
    Returns (ends_dev, total, n_positive, last_positive)."""
    nb = -(-w_dev.size // PREFIX_BLOCK)
    totals = cuda.device_array(nb, dtype=np.float64)
    ends = cuda.device_array(nb, dtype=np.float64)
    counts = cuda.to_device(np.array([0, 0, -1], dtype=np.int64))
    block_totals_kernel[-(-nb // TILE_ROWS), TILE_ROWS](w_dev, totals, counts)
    sequential_scan[1, device_shape()[0]](totals, ends)
    n_negative, n_positive, last_positive = (int(c) for c in counts.copy_to_host())
    total = float(ends[nb - 1:].copy_to_host()[0])
    if n_negative or not math.isfinite(total) or total <= 0.0:
        check_weight_sums(w_dev.copy_to_host() if w_host is None else w_host, n_negative, total)
    return ends, total, n_positive, last_positive


def prefix_total_gpu(w: np.ndarray) -> float:
    """Host entry point: C[-1] of sampling.prefix_sums of the float64 (N,) ``w``,
    summed on the device in the same order; raises the cpu path's ValueErrors."""
    w = np.ascontiguousarray(w, dtype=np.float64)
    return prefix_ends_device(device_weights(cuda.to_device(w)), w_host=w)[1]


# ------------------------------------------------------------ bucketing the draws
@cuda.jit(cache=True)
def guide_table(ends, total, guide):
    """guide[g] = first block b with ends[b] > g * total / guide.size (clamped)."""
    nb = ends.size
    for g in range(cuda.grid(1), guide.size, cuda.gridsize(1)):
        x = g * (total / guide.size)
        lo = 0
        hi = nb
        while lo < hi:
            mid = (lo + hi) // 2
            if ends[mid] <= x:
                lo = mid + 1
            else:
                hi = mid
        guide[g] = min(lo, nb - 1)


@cuda.jit(cache=True)
def locate_draws(key, total, ends, guide, blocks, bucket_counts):
    """blocks[j] = first block whose end exceeds t_j (ends.size when t_j rounded up to
    the total); bucket_counts[b] += draws in block b."""
    nb = ends.size
    for j in range(cuda.grid(1), blocks.size, cuda.gridsize(1)):
        t = uniform_at(key, np.uint64(j)) * total
        if t >= total:
            b = nb
        else:
            b = guide[min(guide.size - 1, np.int64(t / total * guide.size))]
            while ends[b] <= t:
                b += 1
            while b > 0 and ends[b - 1] > t:
                b -= 1
        blocks[j] = b
        cuda.atomic.add(bucket_counts, b, 1)


@cuda.jit(cache=True)
def exclusive_scan_counts(counts, starts):
    """One CUDA block: starts[0] = 0, starts[i + 1] = counts[0] + ... + counts[i]."""
    buf = cuda.shared.array(INT_SCAN_WIDTH, np.int64)
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    if t == 0:
        starts[0] = 0
    carry = 0
    for c0 in range(0, counts.size, nt):
        i = c0 + t
        buf[t] = counts[i] if i < counts.size else 0
        cuda.syncthreads()
        off = 1
        while off < nt:                     # Hillis-Steele inclusive scan of the chunk
            x = buf[t - off] if t >= off else 0
            cuda.syncthreads()
            buf[t] += x
            cuda.syncthreads()
            off *= 2
        if i < counts.size:
            starts[i + 1] = carry + buf[t]
        carry += buf[nt - 1]
        cuda.syncthreads()


@cuda.jit(cache=True)
def scatter_draws(blocks, fill, grouped):
    """Counting-sort scatter: grouped[starts[b] ..] holds the draws of block b."""
    for j in range(cuda.grid(1), blocks.size, cuda.gridsize(1)):
        grouped[cuda.atomic.add(fill, blocks[j], 1)] = j


# ------------------------------------------------------------ resolving per block
@cuda.jit(device=True, inline=True)
def count_at_most(base, local, t):
    """Number of i with base + local[0, i] <= t for non-decreasing local[0] of length
    PREFIX_BLOCK (a power of two): a binary search in shared memory."""
    pos = 0
    step = PREFIX_BLOCK >> 1
    while step > 0:
        if base + local[0, pos + step - 1] <= t:
            pos += step
        step >>= 1
    return pos + (1 if base + local[0, pos] <= t else 0)


@cuda.jit(cache=True)
def resolve_draws(key, total, w, ends, starts, grouped, last_positive, out):
    """CUDA block b resolves the draws of PREFIX_BLOCK block b: out[j] = first i with
    offsets[b] + local[i] > t_j. Block ends.size takes the draws whose t_j rounded up
    to the total: the last positive weight."""
    local = cuda.shared.array((1, PREFIX_BLOCK), np.float64)
    b = cuda.blockIdx.x
    t = cuda.threadIdx.x
    a0 = starts[b]
    a1 = starts[b + 1]
    if a0 == a1:
        return
    if b == ends.size:
        for a in range(a0 + t, a1, cuda.blockDim.x):
            out[grouped[a]] = last_positive
        return
    lo = b * PREFIX_BLOCK
    size = min(w.size, lo + PREFIX_BLOCK) - lo
    for i in range(t, PREFIX_BLOCK, cuda.blockDim.x):
        local[0, i] = w[lo + i] if i < size else 0.0
    cuda.syncthreads()
    if t == 0:
        running_sum_inplace(local, 0, 0.0, size)
        for i in range(size, PREFIX_BLOCK):
            local[0, i] = np.inf            # a short last block never matches past its end
    cuda.syncthreads()
    base = 0.0 if b == 0 else ends[b - 1]
    for a in range(a0 + t, a1, cuda.blockDim.x):
        j = grouped[a]
        tj = uniform_at(key, np.uint64(j)) * total
        out[j] = lo + min(size - 1, count_at_most(base, local, tj))


def sample_with_replacement_device(w_dev, n: int, key, out_dev=None, w_host=None):
    """``n`` draws from the device weights ``w_dev`` (float64 (N,)); returns the int64
    (n,) device array ``out_dev`` (allocated when None). ``key`` is the uint64 key of
    stream 0 (``rng.key_of(seed, 0)``). Raises the cpu path's ValueErrors."""
    w_dev = device_weights(w_dev)
    n = check_count(n, "n")
    ends, total, _, last_positive = prefix_ends_device(w_dev, w_host)
    out = cuda.device_array(n, dtype=np.int64) if out_dev is None else as_device(out_dev, "out_dev")
    if n == 0:
        return out
    nb = ends.size
    key = np.uint64(key)
    guide = cuda.device_array(nb, dtype=np.int64)
    guide_table[grid_stride_shape(nb)](ends, total, guide)
    blocks = cuda.device_array(n, dtype=np.int32)
    bucket_counts = cuda.to_device(np.zeros(nb + 1, dtype=np.int64))
    locate_draws[grid_stride_shape(n)](key, total, ends, guide, blocks, bucket_counts)
    starts = cuda.device_array(nb + 2, dtype=np.int64)
    exclusive_scan_counts[1, INT_SCAN_WIDTH](bucket_counts, starts)
    fill = cuda.device_array(nb + 2, dtype=np.int64)
    fill.copy_to_device(starts)
    grouped = cuda.device_array(n, dtype=np.int64)
    scatter_draws[grid_stride_shape(n)](blocks, fill, grouped)
    resolve_draws[nb + 1, RESOLVE_THREADS](key, total, w_dev, ends, starts, grouped,
                                           np.int64(last_positive), out)
    return out


def sample_with_replacement_gpu(w: np.ndarray, n: int, key) -> np.ndarray:
    """Host entry point: int64 (n,) indices of n draws from the float64 (N,) ``w``."""
    w = np.ascontiguousarray(w, dtype=np.float64)
    return sample_with_replacement_device(cuda.to_device(w), n, key, w_host=w).copy_to_host()


# ------------------------------------------------------------ without replacement
if cuda_simulated():
    @cuda.jit(device=True, inline=True)
    def float_bits(x):
        return np.float64(x).view(np.uint64)
else:
    @cuda.jit(device=True, inline=True)
    def float_bits(x):
        return np.uint64(libdevice.double_as_longlong(x))


@cuda.jit(cache=True)
def key_bits(w, key, bits):
    """bits[i] ascending == key log(w_i) - log(-log(u_i)) descending: a negative key keeps
    its IEEE bits (they grow with |key|), a non-negative one has all but the sign bit
    flipped (below every negative key, shrinking as the key grows); all ones for
    w_i <= 0 (after the key -inf of u_i = 0)."""
    for i in range(cuda.grid(1), w.size, cuda.gridsize(1)):
        x = w[i]
        if x > 0.0:
            u = uniform_at(key, np.uint64(i))
            k = -np.inf if u == 0.0 else math.log(x) - math.log(-math.log(u))
            b = float_bits(k)
            bits[i] = b if k < 0.0 else b ^ LOW_63
        else:
            bits[i] = ALL_ONES


@cuda.jit(cache=True)
def radix_histogram(bits, sel, shift, hist):
    """hist[d] += entries whose bits match sel[0] under the mask sel[1] and whose digit
    at ``shift`` is d (nothing once sel[2] says the selection is settled)."""
    if sel[2] != 0:
        return
    local = cuda.shared.array(RADIX_BINS, np.int32)
    t = cuda.threadIdx.x
    for d in range(t, RADIX_BINS, cuda.blockDim.x):
        local[d] = 0
    cuda.syncthreads()
    prefix = sel[0]
    mask = sel[1]
    sh = np.uint64(shift)
    for i in range(cuda.grid(1), bits.size, cuda.gridsize(1)):
        b = bits[i]
        if (b & mask) == prefix:
            cuda.atomic.add(local, np.int64((b >> sh) & DIGIT_MASK), 1)
    cuda.syncthreads()
    for d in range(t, RADIX_BINS, cuda.blockDim.x):
        if local[d] != 0:
            cuda.atomic.add(hist, d, np.int64(local[d]))


@cuda.jit(cache=True)
def radix_select_digit(hist, sel, k_left, shift):
    """One thread: fix the digit at ``shift`` of the k_left[0]-th smallest matching
    entry, update sel = (prefix, mask, settled) and k_left, and clear hist. Settled:
    the entries matching the new prefix are exactly the k_left still wanted."""
    if cuda.grid(1) != 0 or sel[2] != 0:
        return
    k = k_left[0]
    acc = 0
    d = 0
    while acc + hist[d] < k:
        acc += hist[d]
        d += 1
    k_left[0] = k - acc
    if hist[d] == k - acc:
        sel[2] = 1
    sh = np.uint64(shift)
    sel[0] = sel[0] | (np.uint64(d) << sh)
    sel[1] = sel[1] | (DIGIT_MASK << sh)
    for e in range(RADIX_BINS):
        hist[e] = 0


@cuda.jit(cache=True)
def collect_selected(bits, sel, counters, chosen, chosen_bits):
    """Entries below the selected prefix (under the mask) go to the front of chosen,
    those matching it (``ties``) to the back, at most chosen.size // 2 of each;
    counters = [below, matching] counts them all."""
    prefix = sel[0]
    mask = sel[1]
    half = chosen.size // 2
    for i in range(cuda.grid(1), bits.size, cuda.gridsize(1)):
        b = bits[i]
        m = b & mask
        if m < prefix:
            p = cuda.atomic.add(counters, 0, 1)
            chosen[p] = i
            chosen_bits[p] = b
        elif m == prefix:
            p = cuda.atomic.add(counters, 1, 1)
            if p < half:
                chosen[half + p] = i
                chosen_bits[half + p] = b


def smallest_keys(bits, n: int) -> np.ndarray:
    """Indices of the ``n`` smallest entries of the uint64 device array ``bits``
    (1 <= n <= bits.size), ordered by (bits, index): int64 (n,) on the host.

    A radix select (8-bit digits from the top) fixes the n-th smallest value on the
    device, a compaction gathers everything below it plus the entries equal to it,
    and the host orders those few with np.lexsort."""
    shape = grid_stride_shape(bits.size)
    sel = cuda.to_device(np.zeros(3, dtype=np.uint64))
    k_left = cuda.to_device(np.array([n], dtype=np.int64))
    hist = cuda.to_device(np.zeros(RADIX_BINS, dtype=np.int64))
    for shift in range(64 - RADIX_BITS, -1, -RADIX_BITS):
        radix_histogram[shape](bits, sel, np.int64(shift), hist)
        radix_select_digit[1, 1](hist, sel, k_left, np.int64(shift))
    counters = cuda.to_device(np.zeros(2, dtype=np.int64))
    chosen = cuda.device_array(2 * n, dtype=np.int64)
    chosen_bits = cuda.device_array(2 * n, dtype=np.uint64)
    collect_selected[shape](bits, sel, counters, chosen, chosen_bits)
    n_below, n_match = (int(c) for c in counters.copy_to_host())
    idx, key_bits = chosen.copy_to_host(), chosen_bits.copy_to_host()
    if n_match <= n:
        tie_idx, tie_bits = idx[n:n + n_match], key_bits[n:n + n_match]
    else:                                 # more exact ties than draws: find them on the host
        prefix = sel.copy_to_host()[0]
        tie_idx = np.flatnonzero(bits.copy_to_host() == prefix)
        tie_bits = np.full(tie_idx.size, prefix, dtype=np.uint64)
    idx = np.concatenate((idx[:n_below], tie_idx))
    key_bits = np.concatenate((key_bits[:n_below], tie_bits))
    return idx[np.lexsort((idx, key_bits))[:n]]


def sample_without_replacement_device(w_dev, n: int, key, w_host=None):
    """``n`` distinct indices (int64 (n,) device array): the n largest keys
    log(w_i) - log(-log(u_i)), in decreasing key order; ``key`` is the uint64 key of stream 1. Raises the cpu path's
    ValueErrors, and one when n exceeds the number of positive weights."""
    w_dev = device_weights(w_dev)
    n = check_count(n, "n")
    _, _, n_positive, _ = prefix_ends_device(w_dev, w_host)
    if n > n_positive:
        raise ValueError(f"n={n} draws without replacement need at least n positive weights; "
                         f"weights has {n_positive}")
    if n == 0:
        return cuda.device_array(0, dtype=np.int64)
    bits = cuda.device_array(w_dev.size, dtype=np.uint64)
    key_bits[grid_stride_shape(w_dev.size)](w_dev, np.uint64(key), bits)
    return cuda.to_device(smallest_keys(bits, n))


def sample_without_replacement_gpu(w: np.ndarray, n: int, key) -> np.ndarray:
    """Host entry point: int64 (n,) distinct indices from the float64 (N,) ``w``."""
    w = np.ascontiguousarray(w, dtype=np.float64)
    return sample_without_replacement_device(cuda.to_device(w), n, key, w_host=w).copy_to_host()
