"""Numba CPU kernels for weighted draws.

The prefix sums C of the weights are defined blockwise (see sampling.prefix_sums):
blocks of PREFIX_BLOCK entries are summed sequentially, block ends are added
sequentially. Draw j targets t_j = u(seed, 0, j) * C[-1] and takes the first i with
C[i] > t_j. Instead of a binary search per draw, the targets are bucketed by block
(a counting sort guided by a table over the block ends), and every block walks its
own weights once, merging them with its sorted targets. C is never materialised.
"""
import math
import threading

import numba
import numpy as np
from numba import njit, prange

from .cache_loading import load_cached_without_compiler
from .common import PREFIX_BLOCK
from .counter_rng import uniform_at

_GROUP = 4     # blocks summed together: four independent add chains per thread


@njit(cache=True, inline="always")
def block_total(w, lo, hi):
    s = 0.0
    for i in range(lo, hi):
        s += w[i]
    return s


@njit(parallel=True, cache=True)
def block_totals(w, totals, negatives):
    """totals[b] = sequential sum of block b; negatives[g] = negative entries in group g."""
    n = w.size
    nb = totals.size
    B = PREFIX_BLOCK
    for g in prange((nb + _GROUP - 1) // _GROUP):
        b = g * _GROUP
        neg = 0
        if (b + _GROUP) * B <= n:       # four full blocks: four chains side by side
            s0 = s1 = s2 = s3 = 0.0
            src = w[b * B:(b + _GROUP) * B]     # indexed from 0: no negative-index wrap
            for k in range(B):
                x0 = src[k]
                x1 = src[B + k]
                x2 = src[2 * B + k]
                x3 = src[3 * B + k]
                neg += (x0 < 0.0) + (x1 < 0.0) + (x2 < 0.0) + (x3 < 0.0)
                s0 += x0
                s1 += x1
                s2 += x2
                s3 += x3
            totals[b] = s0
            totals[b + 1] = s1
            totals[b + 2] = s2
            totals[b + 3] = s3
        else:
            for bb in range(b, min(nb, b + _GROUP)):
                lo = bb * B
                hi = min(n, lo + B)
                for i in range(lo, hi):
                    neg += w[i] < 0.0
                totals[bb] = block_total(w, lo, hi)
        negatives[g] = neg


@njit(cache=True, inline="always")
def target_block(key, j, total, ends, guide):
    """(t, b): target of draw j and the first block b with ends[b] > t (len(ends) when
    t rounded up to the total)."""
    t = uniform_at(key, np.uint64(j)) * total
    nb = ends.size
    if t >= total:
        return t, nb
    # guess from the guide table; t * (size / total) is inf or NaN for a subnormal
    # total, so the guess is clamped with a comparison that NaN and inf fail
    x = t * (guide.size / total)
    g = guide.size - 1
    if x < g:
        g = np.int64(x)
    b = np.int64(guide[g])
    while ends[b] <= t:
        b += 1
    while b > 0 and ends[b - 1] > t:
        b -= 1
    return t, b


@njit(parallel=True, cache=True)
def locate_draws(key, total, ends, guide, blocks, counts):
    """blocks[j] = block of draw j; counts[p, b] = draws of part p in block b
    (part p holds draws p*n//P .. (p+1)*n//P - 1)."""
    parts = counts.shape[0]
    n = blocks.size
    for p in prange(parts):
        for j in range(p * n // parts, (p + 1) * n // parts):
            t, b = target_block(key, j, total, ends, guide)
            blocks[j] = b
            counts[p, b] += 1


@njit(parallel=True, cache=True)
def group_draws_by_block(blocks, fill, grouped):
    """Counting-sort scatter: part p writes its draws of block b from fill[p, b] on."""
    parts = fill.shape[0]
    n = blocks.size
    for p in prange(parts):
        for j in range(p * n // parts, (p + 1) * n // parts):
            b = blocks[j]
            grouped[fill[p, b]] = j
            fill[p, b] += 1


@njit(cache=True, inline="always")
def count_at_most(base, local, t):
    """Number of i with base + local[i] <= t, for non-decreasing local of length
    PREFIX_BLOCK (a power of two): a branch-free binary search."""
    pos = 0
    step = PREFIX_BLOCK >> 1
    while step > 0:
        pos += step * (base + local[pos + step - 1] <= t)
        step >>= 1
    return pos + (base + local[pos] <= t)


@njit(cache=True, inline="always")
def count_at_most4(base, local, t0, t1, t2, t3):
    """count_at_most for four targets at once: four independent search chains side by
    side, so one draw's dependent loads overlap the others' (a chain alone waits on
    every load). Each result is exactly count_at_most's."""
    p0 = p1 = p2 = p3 = 0
    step = PREFIX_BLOCK >> 1
    while step > 0:
        p0 += step * (base + local[p0 + step - 1] <= t0)
        p1 += step * (base + local[p1 + step - 1] <= t1)
        p2 += step * (base + local[p2 + step - 1] <= t2)
        p3 += step * (base + local[p3 + step - 1] <= t3)
        step >>= 1
    return (p0 + (base + local[p0] <= t0), p1 + (base + local[p1] <= t1),
            p2 + (base + local[p2] <= t2), p3 + (base + local[p3] <= t3))


@njit(cache=True, inline="always")
def local_prefix_sums(w, b, nb, local):
    """local[r, :] = sequential prefix sums of block b + r (r < 4), four chains side by
    side when the four blocks are full; entries past a short block are +inf.
    Returns the number of blocks filled."""
    n = w.size
    B = PREFIX_BLOCK
    count = min(_GROUP, nb - b)
    base = b * B
    if count == _GROUP and base + _GROUP * B <= n:
        a0 = a1 = a2 = a3 = 0.0
        for k in range(B):
            a0 += w[base + k]
            a1 += w[base + B + k]
            a2 += w[base + 2 * B + k]
            a3 += w[base + 3 * B + k]
            local[0, k] = a0
            local[1, k] = a1
            local[2, k] = a2
            local[3, k] = a3
        return count
    for r in range(count):
        lo = base + r * B
        size = min(n, lo + B) - lo
        acc = 0.0
        for k in range(size):
            acc += w[lo + k]
            local[r, k] = acc
        for k in range(size, B):
            local[r, k] = np.inf          # a short last block never matches past its end
    return count


@njit(parallel=True, cache=True)
def resolve_draws(key, total, w, offsets, starts, grouped, out, parts):
    """Blocks build their local prefix sums once (in cache, four at a time) and resolve
    their draws: draw j gets the first i with offsets[b] + local[i] > t_j."""
    n = w.size
    nb = offsets.size
    n_groups = (nb + _GROUP - 1) // _GROUP
    for p in prange(parts):
        local = np.empty((_GROUP, PREFIX_BLOCK))
        for g in range(p * n_groups // parts, (p + 1) * n_groups // parts):
            b0 = g * _GROUP
            if starts[b0] == starts[min(nb, b0 + _GROUP)]:
                continue
            count = local_prefix_sums(w, b0, nb, local)
            resolve_group(key, total, n, offsets, starts, grouped, out, b0, count, local)


@njit(cache=True, inline="always")
def resolve_group(key, total, n, offsets, starts, grouped, out, b0, count, local):
    """Resolve the draws of blocks b0 .. b0 + count - 1 of a pool of n entries, given
    their local prefix sums local[r] (block b0 + r): out[j] = the first i with
    offsets[b] + local[r, i] > t_j. Draws go four at a time (count_at_most4: 24.1 ->
    21.2 ms for resolve_draws_from_q at N = 1e7, B = 1e6 on one thread), the rest one
    by one."""
    for r in range(count):
        b = b0 + r
        lo = b * PREFIX_BLOCK
        last = min(n, lo + PREFIX_BLOCK) - 1 - lo
        base = offsets[b]
        row = local[r]
        a, end = starts[b], starts[b + 1]
        while a + 4 <= end:
            j0, j1, j2, j3 = grouped[a], grouped[a + 1], grouped[a + 2], grouped[a + 3]
            i0, i1, i2, i3 = count_at_most4(
                base, row, uniform_at(key, np.uint64(j0)) * total,
                uniform_at(key, np.uint64(j1)) * total, uniform_at(key, np.uint64(j2)) * total,
                uniform_at(key, np.uint64(j3)) * total)
            out[j0] = lo + min(last, i0)
            out[j1] = lo + min(last, i1)
            out[j2] = lo + min(last, i2)
            out[j3] = lo + min(last, i3)
            a += 4
        for a in range(a, end):
            j = grouped[a]
            t = uniform_at(key, np.uint64(j)) * total
            out[j] = lo + min(last, count_at_most(base, row, t))


_workspace = threading.local()
#: The largest scratch array kept between calls (bytes, per name and calling thread);
#: larger ones are allocated for the call and freed with it. Four names
#: (``totals``, ``negatives``, ``blocks``, ``grouped``): at most 32 MiB per thread.
SCRATCH_KEEP_BYTES = 8 << 20


def scratch(name, size, dtype):
    """A per-thread scratch array, reused between calls while it is at most
    SCRATCH_KEEP_BYTES (fresh pages cost ~4 us each to fault in, more than the work done
    on them); a larger one is not kept, so memory after a call stays bounded."""
    dtype = np.dtype(dtype)
    if size * dtype.itemsize > SCRATCH_KEEP_BYTES:
        return np.empty(size, dtype=dtype)
    buf = getattr(_workspace, name, None)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = np.empty(min(max(size, 1024), SCRATCH_KEEP_BYTES // dtype.itemsize), dtype=dtype)
        setattr(_workspace, name, buf)
    return buf[:size]


def checked_block_ends(w):
    """Sequentially accumulated block totals; raises the contract's ValueErrors."""
    nb = (w.size + PREFIX_BLOCK - 1) // PREFIX_BLOCK
    totals = scratch("totals", nb, np.float64)
    negatives = scratch("negatives", (nb + _GROUP - 1) // _GROUP, np.int64)
    block_totals(w, totals, negatives)
    ends = np.add.accumulate(totals)
    check_weight_sums(w, negatives.sum(), ends[-1])
    return ends


def blockwise_total(w) -> float:
    """C[-1] of sampling.prefix_sums, without materialising C."""
    return float(checked_block_ends(w)[-1])


#: Guide entries per block: with one, a target's walk from its guess to its block takes
#: a mispredicted branch most of the time; with four, a quarter as often (locating 10**6
#: draws among 2e4 blocks: 18.7 -> 9.2 ms on one thread).
GUIDE_PER_BLOCK = 4


@njit(cache=True)
def guide_table_into(ends, guide):
    """guide[g] = first block b with ends[b] > g * (total / G) (G = guide.size), clamped
    to the last block: searchsorted(ends, ..., "right") as one merge of sorted lists."""
    nb, size = ends.size, guide.size
    step = ends[-1] / size
    b = 0
    for g in range(size):
        x = g * step
        while b < nb and ends[b] <= x:
            b += 1
        guide[g] = min(b, nb - 1)


def guide_table(ends):
    """int32 (GUIDE_PER_BLOCK * nb,): a first guess at the block of every target, for
    the block ends ``ends`` (total = ends[-1]); target_block walks from it."""
    guide = np.empty(GUIDE_PER_BLOCK * ends.size, dtype=np.int32)
    guide_table_into(ends, guide)
    return guide


def group_draws(key, ends, guide, n):
    """The n draws of stream ``key`` grouped by block (a counting sort): returns
    (starts int64 (nb + 2,), grouped int64 (n,)); grouped[starts[b]:starts[b + 1]]
    are the draws of block b, block nb holds those whose target rounded up to the
    total. ``grouped`` is per-thread scratch, valid until the next call."""
    nb = ends.size
    parts = max(1, min(numba.get_num_threads(), n // 4096))
    counts = np.zeros((parts, nb + 1), dtype=np.int64)
    blocks = scratch("blocks", n, np.int32)
    locate_draws(key, ends[-1], ends, guide, blocks, counts)
    fill = (np.cumsum(counts.T.ravel()) - counts.T.ravel()).reshape(nb + 1, parts).T.copy()
    starts = np.append(fill[0], n)
    grouped = scratch("grouped", n, np.int64)
    group_draws_by_block(blocks, fill, grouped)
    return starts, grouped


@njit(cache=True)
def starts_of_ordered_draws(key, total, ends, draws, starts):
    """starts (nb + 1,) of draws given in block order (the order of ``group_draws``):
    draws[starts[b]:starts[b + 1]] are those whose target u(key, j) * total has block
    b, the first with ends[b] > t. One merge walk; returns False when a draw is out of
    block order or past the last block."""
    nb = ends.size
    b = 0
    starts[0] = 0
    for a in range(draws.size):
        t = uniform_at(key, np.uint64(draws[a])) * total
        if b > 0 and ends[b - 1] > t:
            return False                  # belongs to an earlier block
        while b < nb and ends[b] <= t:
            b += 1
            starts[b] = a
        if b == nb:
            return False
    for k in range(b + 1, nb + 1):
        starts[k] = draws.size
    return True


def sample_with_replacement_cpu(w, n, key, out=None):
    """Indices (int64 (n,)) of n draws; raises ValueError on negative or non-finite
    weights, or a zero total. w: float64 (N,), validated shape."""
    ends = checked_block_ends(w)
    nb = ends.size
    out = np.empty(n, dtype=np.int64) if out is None else out
    if n == 0:
        return out
    total = ends[-1]
    offsets = np.concatenate(([0.0], ends[:-1]))
    starts, grouped = group_draws(key, ends, guide_table(ends), n)
    resolve_draws(key, total, w, offsets, starts, grouped, out, min(nb, 64))
    corner = grouped[starts[nb]:]
    if corner.size:                       # t rounded up to the total: last positive weight
        out[corner] = np.flatnonzero(w)[-1]
    return out


def check_weight_sums(w, n_negative, total):
    """Raise the contract's errors for bad weights, found from the block pass."""
    if n_negative:
        first = int(np.argmax(w < 0))
        raise ValueError(f"weights must be >= 0: {int(n_negative)} negative value(s), first at "
                         f"index {first} ({w[first]})")
    if not np.isfinite(total):
        bad = ~np.isfinite(w)
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueError(f"weights must be finite: {int(bad.sum())} non-finite value(s), "
                             f"first at index {first} ({w[first]})")
        raise ValueError(f"the sum of the weights overflows ({total}); rescale them")
    if total <= 0.0:
        raise ValueError("weights sum to 0: at least one weight must be positive")


#: scale exponent meaning "no shortcut" in key_at_least (a threshold of -inf)
NO_SHORTCUT = np.iinfo(np.int64).min


@njit(cache=True, inline="always")
def log_key(wi, u):
    """The without-replacement key of weight wi > 0 and uniform u in [0, 1):
    ``log(wi) - log(-log(u))`` (-inf for u = 0). Monotone in the Efraimidis-Spirakis key
    log(u) / wi, and finite for every finite wi > 0, subnormal or huge."""
    return np.log(wi) - np.log(-np.log(u))


@njit(parallel=True, cache=True)
def without_replacement_keys(w, key, out):
    """out[i] = log_key(w[i], u(key, i)) for w[i] > 0, -inf otherwise."""
    for i in prange(w.size):
        out[i] = log_key(w[i], uniform_at(key, np.uint64(i))) if w[i] > 0.0 else -np.inf


@njit(cache=True, inline="always")
def key_at_least(w, key, i, threshold, scale_mantissa, scale_exponent):
    """(w[i] > 0 and key_i >= threshold, key_i). key_i >= t needs -log(u) <= w e^-t, and
    -log(u) >= 1 - u, so an entry with 1 - u > w e^-t (1 + 1e-9) fails without a log;
    ``w e^-t = ldexp(m * scale_mantissa, e + scale_exponent)`` with ``(m, e) = frexp(w)``
    (exact for subnormal w, no overflow or underflow before the last step;
    scale_exponent = NO_SHORTCUT: always take the log)."""
    if not w[i] > 0.0:
        return False, 0.0
    u = uniform_at(key, np.uint64(i))
    if scale_exponent != NO_SHORTCUT:
        m, e = math.frexp(w[i])
        if 1.0 - u > math.ldexp(m * scale_mantissa, e + scale_exponent) * (1.0 + 1e-9):
            return False, 0.0
    v = log_key(w[i], u)
    return v >= threshold, v


@njit(parallel=True, cache=True)
def count_keys_at_least(w, key, threshold, scale_mantissa, scale_exponent, counts):
    """counts[p] = entries of part p (i in p*N//P .. (p+1)*N//P - 1) with w > 0 and a
    key >= threshold."""
    n, parts = w.size, counts.size
    for p in prange(parts):
        c = 0
        for i in range(p * n // parts, (p + 1) * n // parts):
            c += key_at_least(w, key, i, threshold, scale_mantissa, scale_exponent)[0]
        counts[p] = c


@njit(parallel=True, cache=True)
def collect_keys_at_least(w, key, threshold, scale_mantissa, scale_exponent, starts, idx,
                          keys):
    """The entries counted by count_keys_at_least, in ascending index order: part p
    writes its (index, key) pairs from starts[p] on."""
    n, parts = w.size, starts.size - 1
    for p in prange(parts):
        k = starts[p]
        for i in range(p * n // parts, (p + 1) * n // parts):
            ok, v = key_at_least(w, key, i, threshold, scale_mantissa, scale_exponent)
            if ok:
                idx[k] = i
                keys[k] = v
                k += 1


def exp_neg_as_ldexp(t: float):
    """(m, e) with e^-t = m * 2**e, 1 <= m < 2 (to ~1e-13 relative): the scale of the
    shortcut in key_at_least; (1.0, NO_SHORTCUT) for t = -inf."""
    if t == -np.inf:
        return 1.0, NO_SHORTCUT
    x = -t / math.log(2.0)
    e = math.floor(x)
    return 2.0 ** (x - e), int(e)


def sample_without_replacement_cpu(w, n, key):
    """The n largest keys ``log(w_i) - log(-log(u(key, i)))`` in decreasing order, ties to
    the lower index (validated: n <= number of positive weights). Returns int64 (n,).

    Memory: one N-sized float64 array (the keys, partitioned in place to find the n-th
    largest); the candidates (keys >= that threshold, about n of them) are recomputed."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    keys = np.empty_like(w)
    without_replacement_keys(w, key, keys)
    keys.partition(w.size - n)                          # in place, no copy
    threshold = float(keys[w.size - n])                 # the n-th largest key
    del keys
    scale_mantissa, scale_exponent = exp_neg_as_ldexp(threshold)
    counts = np.zeros(max(1, numba.get_num_threads()), dtype=np.int64)
    count_keys_at_least(w, key, threshold, scale_mantissa, scale_exponent, counts)
    starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    idx = np.empty(starts[-1], dtype=np.int64)
    cand_keys = np.empty(starts[-1], dtype=np.float64)
    collect_keys_at_least(w, key, threshold, scale_mantissa, scale_exponent, starts, idx,
                          cand_keys)
    order = np.lexsort((idx, -cand_keys))
    return idx[order[:n]]


load_cached_without_compiler(globals())   # cache loads skip Numba's compiler setup
