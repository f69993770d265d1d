"""Prototype: resolve_group with four draws' branch-free searches interleaved."""
import os, sys, time, statistics
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2])); sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
os.environ["REPS"] = "0"
import numpy as np
from numba import njit, prange
import prof_sfq as P
from zp_ref.kernels import cpu_sample_from_q as K
from zp_ref.kernels.cpu_sampling import _GROUP, PREFIX_BLOCK, local_prefix_sums, count_at_most
from zp_ref.kernels.counter_rng import uniform_at
q, B, params, key = P.q, P.B, P.params, P.key
nb, offsets, starts, grouped, total = P.grouped_draws()

@njit(inline="always")
def count_at_most4(base, row, t0, t1, t2, t3):
    p0 = p1 = p2 = p3 = 0
    step = PREFIX_BLOCK >> 1
    while step > 0:
        p0 += step * (base + row[p0 + step - 1] <= t0)
        p1 += step * (base + row[p1 + step - 1] <= t1)
        p2 += step * (base + row[p2 + step - 1] <= t2)
        p3 += step * (base + row[p3 + step - 1] <= t3)
        step >>= 1
    return (p0 + (base + row[p0] <= t0), p1 + (base + row[p1] <= t1),
            p2 + (base + row[p2] <= t2), p3 + (base + row[p3] <= t3))

@njit(inline="always")
def resolve_group4(key, total, n, offsets, starts, grouped, out, b0, count, local):
    for r in range(count):
        b = b0 + r
        last = min(n, (b + 1) * PREFIX_BLOCK) - 1 - b * PREFIX_BLOCK
        lo = b * PREFIX_BLOCK
        base = offsets[b]
        row = local[r]
        a = starts[b]
        end = starts[b + 1]
        while a + 4 <= end:
            j0 = grouped[a]; j1 = grouped[a + 1]; j2 = grouped[a + 2]; j3 = grouped[a + 3]
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

@njit(parallel=True)
def resolve_draws_from_q4(key, total, q, params, offsets, starts, grouped, out, parts):
    n, nb = q.size, offsets.size
    n_groups = (nb + _GROUP - 1) // _GROUP
    for part in prange(parts):
        scratch = np.empty(K.GROUP_SIZE)
        local = np.empty((_GROUP, PREFIX_BLOCK))
        for g in range(part * n_groups // parts, (part + 1) * n_groups // parts):
            b0 = g * _GROUP
            if starts[b0] == starts[min(nb, b0 + _GROUP)]:
                continue
            size = K.group_weights(q, b0, params, scratch)
            count = local_prefix_sums(scratch[:size], 0, min(_GROUP, nb - b0), local)
            resolve_group4(key, total, n, offsets, starts, grouped, out, b0, count, local)

o1 = np.empty(B, dtype=np.int64); o2 = np.empty(B, dtype=np.int64)
A = lambda: K.resolve_draws_from_q(key, total, q, params, offsets, starts, grouped, o1, K.parts_for(nb))
C = lambda: resolve_draws_from_q4(key, total, q, params, offsets, starts, grouped, o2, K.parts_for(nb))
A(); C(); assert np.array_equal(o1, o2), "not identical"
print("identical indices:", np.array_equal(o1, o2))
ra, rc = [], []
for _ in range(11):
    t0 = time.perf_counter(); A(); ra.append(time.perf_counter() - t0)
    t0 = time.perf_counter(); C(); rc.append(time.perf_counter() - t0)
print("threads", os.environ.get("NUMBA_NUM_THREADS"), "load", os.getloadavg())
print("shipped  ", P.fmt(ra)); print("search x4", P.fmt(rc))
