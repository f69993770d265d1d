"""Before/after of the 4-way search in resolve_group, same process, calls alternated:
'before' runs copies of the shipped kernels as of 9906043 (one search per draw)."""
import os, sys, time, statistics
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2])); sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import numpy as np
from numba import njit, prange
from zp_ref.apps.bench import _pool
from zp_ref.kernels import cpu_sample_from_q as K, cpu_sampling as S, threading_layer
from zp_ref.kernels.cpu_sampling import _GROUP, PREFIX_BLOCK, local_prefix_sums, count_at_most
from zp_ref.kernels.counter_rng import uniform_at
from zp_ref.sampling_from_q import sample_from_q
from zp_ref.sampling import sample_indices
from zp_ref.weighting import importance_weights
import numba

@njit(cache=True, inline="always")
def resolve_group_old(key, total, n, offsets, starts, grouped, out, b0, count, local):
    for r in range(count):
        b = b0 + r
        last = min(n, (b + 1) * PREFIX_BLOCK) - 1 - b * PREFIX_BLOCK
        for a in range(starts[b], starts[b + 1]):
            j = grouped[a]
            t = uniform_at(key, np.uint64(j)) * total
            i = min(last, count_at_most(offsets[b], local[r], t))
            out[j] = b * PREFIX_BLOCK + i

@njit(parallel=True, cache=True)
def resolve_draws_from_q_old(key, total, q, params, offsets, starts, grouped, out, parts):
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
            resolve_group_old(key, total, n, offsets, starts, grouped, out, b0, count, local)

@njit(parallel=True, cache=True)
def resolve_draws_old(key, total, w, offsets, starts, grouped, out, parts):
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
            resolve_group_old(key, total, n, offsets, starts, grouped, out, b0, count, local)

NEW = (K.resolve_draws_from_q, S.resolve_draws)
OLD = (resolve_draws_from_q_old, resolve_draws_old)
def use(kernels):
    K.resolve_draws_from_q, S.resolve_draws = kernels

q = _pool(10**7); B = 10**6
calls = {"sample_from_q": lambda: sample_from_q(q, B, seed=1),
         "default call": lambda: sample_indices(importance_weights(q), B, seed=1)}
for name, fn in calls.items():
    use(OLD); a = fn(); use(NEW); b = fn()
    assert np.array_equal(a, b), name
    print(name, "before == after, bit for bit:", np.array_equal(a, b))
    for _ in range(3):
        use(OLD); fn(); use(NEW); fn()
HZ = os.sysconf("SC_CLK_TCK")
def busy():
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / HZ
T = {(n, v): [] for n in calls for v in ("before", "after")}
b0 = busy(); c0 = time.process_time(); w0 = time.perf_counter()
R = int(os.environ.get("REPS", 11))
for _ in range(R):
    for name, fn in calls.items():
        for v, ks in (("before", OLD), ("after", NEW)):
            use(ks); fn()
            t0 = time.perf_counter(); fn(); T[name, v].append(time.perf_counter() - t0)
def fmt(v):
    q1, m, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return f"median {m*1e3:6.2f} ms [q1 {q1*1e3:6.2f}, q3 {q3*1e3:6.2f}] min {min(v)*1e3:6.2f}"
wall = time.perf_counter() - w0
print(f"other processes' CPU during the timed rounds: {((busy() - b0) - (time.process_time() - c0)) / wall:.2f} cores (of 2)")
print("layer", threading_layer(), "threads", numba.get_num_threads(), "load", os.getloadavg())
for k, v in T.items(): print(f"{k[0]:14s} {k[1]:7s}", fmt(v))
