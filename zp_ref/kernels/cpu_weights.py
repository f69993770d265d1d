"""Numba CPU kernels for importance weights.

One fused pass writes the weights and fixed-size chunk sums (the order is fixed, so
the total does not depend on the thread count), a second pass divides by the total.
The inner loop is specialised per power (1, 2, 1/2, integer, general) and
temperature so that it vectorises: a general ``a**-p`` costs ~25x more. A NaN in q
gives a NaN weight for every power (``importance_weight`` selects it, not the formula),
so it reaches its chunk sum; such chunks are fixed up afterwards (``zero_nan_chunk``),
so clean pools pay nothing for the NaN policy."""
import numpy as np
from numba import njit, prange

from .cache_loading import load_cached_without_compiler

#: Entries per partial sum.
SUM_CHUNK = 1 << 16
#: Entries written, then summed back from cache.
SUB_CHUNK = 2048

POWER_ZERO, POWER_ONE, POWER_TWO, POWER_HALF, POWER_INT, POWER_GENERAL = range(6)


def power_mode(p: float) -> int:
    """Which specialisation of ``1 / a**p`` the kernel uses."""
    special = {0.0: POWER_ZERO, 1.0: POWER_ONE, 2.0: POWER_TWO, 0.5: POWER_HALF}
    if p in special:
        return special[p]
    return POWER_INT if p == int(p) and p <= 64 else POWER_GENERAL


@njit(cache=True, inline="always")
def inverse_power(a, p, mode):
    """1 / a**p for a > 0 (mode is a compile-time constant at every call site)."""
    if mode == POWER_TWO:
        return 1.0 / (a * a)
    if mode == POWER_ONE:
        return 1.0 / a
    if mode == POWER_HALF:
        return 1.0 / np.sqrt(a)
    if mode == POWER_ZERO:
        return 1.0
    if mode == POWER_INT:
        return 1.0 / a ** np.int64(p)
    return 1.0 / a**p


@njit(cache=True, inline="always")
def importance_weight(q, p, mode, min_q_abs, max_weight, inv_temperature):
    """Clipped, tempered 1/|q|^p; 0 for q = +-inf; NaN for q = NaN, whatever the
    formula gives (with p = 0 it gives 1: NaN**0 == 1), so a NaN in q always reaches
    the sums that callers test. Both ends are selects: the loops still vectorise."""
    a = abs(q)
    a = min_q_abs if a < min_q_abs else a
    w = inverse_power(a, p, mode)
    w = max_weight if w > max_weight else w
    if inv_temperature != 1.0:
        w = w**inv_temperature
    w = 0.0 if a == np.inf else w
    return w if q == q else np.nan


@njit(cache=True, inline="always")
def fill_weights(q, lo, hi, out, at, p, mode, min_q_abs, max_weight, inv_temperature):
    """out[at:at + hi - lo] = weights of q[lo:hi]; one loop per specialisation so each
    one vectorises. The loops index views from 0: with an index LLVM cannot prove
    non-negative, Numba's negative-index wraparound turns the vector loads and stores
    into gathers and scatters (4-5x slower)."""
    src = q[lo:hi]
    dst = out[at:at + hi - lo]
    if inv_temperature == 1.0 and mode == POWER_TWO:
        for k in range(src.size):
            dst[k] = importance_weight(src[k], 2.0, POWER_TWO, min_q_abs, max_weight, 1.0)
    elif inv_temperature == 1.0 and mode == POWER_ONE:
        for k in range(src.size):
            dst[k] = importance_weight(src[k], 1.0, POWER_ONE, min_q_abs, max_weight, 1.0)
    elif inv_temperature == 1.0 and mode == POWER_HALF:
        for k in range(src.size):
            dst[k] = importance_weight(src[k], 0.5, POWER_HALF, min_q_abs, max_weight, 1.0)
    else:
        for k in range(src.size):
            dst[k] = importance_weight(src[k], p, mode, min_q_abs, max_weight, inv_temperature)


@njit(cache=True, inline="always")
def lane_sum(w, lo, hi):
    """Sum of w[lo:hi] in four interleaved lanes: (s0 + s1) + (s2 + s3)."""
    v = w[lo:hi]
    s0 = s1 = s2 = s3 = 0.0
    i = 0
    while i + 4 <= v.size:
        s0 += v[i]
        s1 += v[i + 1]
        s2 += v[i + 2]
        s3 += v[i + 3]
        i += 4
    while i < v.size:
        s0 += v[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


@njit(cache=True)
def chunk_sum(w, c):
    """Sum of chunk c: the lane sums of its sub-chunks, added in order."""
    hi = min(w.size, (c + 1) * SUM_CHUNK)
    s = 0.0
    for lo in range(c * SUM_CHUNK, hi, SUB_CHUNK):
        s += lane_sum(w, lo, min(hi, lo + SUB_CHUNK))
    return s


@njit(parallel=True, cache=True)
def weights_and_chunk_sums(q, p, mode, min_q_abs, max_weight, inv_temperature, out, sums):
    """out[i] = weight(q[i]); sums[c] = chunk_sum(out, c), computed while hot in cache."""
    n = q.size
    for c in prange(sums.size):
        hi = min(n, (c + 1) * SUM_CHUNK)
        s = 0.0
        for lo in range(c * SUM_CHUNK, hi, SUB_CHUNK):
            end = min(hi, lo + SUB_CHUNK)
            fill_weights(q, lo, end, out, lo, p, mode, min_q_abs, max_weight, inv_temperature)
            s += lane_sum(out, lo, end)
        sums[c] = s


@njit(cache=True)
def zero_nan_chunk(q, out, sums, c):
    """Give the NaNs of chunk c weight 0 and recompute its sum; returns how many."""
    n_nan = 0
    for i in range(c * SUM_CHUNK, min(q.size, (c + 1) * SUM_CHUNK)):
        if q[i] != q[i]:
            out[i] = 0.0
            n_nan += 1
    sums[c] = chunk_sum(out, c)
    return n_nan


@njit(parallel=True, cache=True)
def divide_inplace(w, total):
    for i in prange(w.size):
        w[i] = w[i] / total


def importance_weights_cpu(q, p, min_q_abs, max_weight, temperature, out):
    """Unnormalised weights into ``out`` (NaN and +-inf give 0).

    Returns (out, total, n_nan); ``total`` adds the chunk sums in order."""
    sums = np.empty((q.size + SUM_CHUNK - 1) // SUM_CHUNK)
    weights_and_chunk_sums(q, p, power_mode(p), min_q_abs, max_weight, 1.0 / temperature,
                           out, sums)
    n_nan = 0
    for c in np.flatnonzero(np.isnan(sums)):
        n_nan += zero_nan_chunk(q, out, sums, c)
    return out, float(np.add.accumulate(sums)[-1]), n_nan


load_cached_without_compiler(globals())   # cache loads skip Numba's compiler setup
