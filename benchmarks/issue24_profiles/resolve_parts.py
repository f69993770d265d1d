"""Where resolve_draws_from_q's time goes (1 thread): variants that drop one piece."""
import os, sys, time, statistics
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2])); sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
os.environ["REPS"] = "0"
import numpy as np
from numba import njit, prange
import prof_sfq as P
from zp_ref.kernels import cpu_sample_from_q as K, cpu_sampling as S
from zp_ref.kernels.cpu_sampling import _GROUP, PREFIX_BLOCK, local_prefix_sums, resolve_group, count_at_most
from zp_ref.kernels.counter_rng import uniform_at
from zp_ref.weighting import importance_weights
q, B, params, key = P.q, P.B, P.params, P.key
nb, offsets, starts, grouped, total = P.grouped_draws()
w = importance_weights(q, normalize=False)

@njit(parallel=True)
def weights_and_prefix_only(q, params, offsets, starts, out, parts):
    nb = offsets.size; n_groups = (nb + _GROUP - 1) // _GROUP; acc = 0.0
    for part in prange(parts):
        scratch = np.empty(K.GROUP_SIZE); local = np.empty((_GROUP, PREFIX_BLOCK))
        for g in range(part * n_groups // parts, (part + 1) * n_groups // parts):
            b0 = g * _GROUP
            size = K.group_weights(q, b0, params, scratch)
            count = local_prefix_sums(scratch[:size], 0, min(_GROUP, nb - b0), local)
            out[g % out.size] = local[0, 7]
    return acc

@njit(parallel=True)
def weights_only(q, params, offsets, out, parts):
    nb = offsets.size; n_groups = (nb + _GROUP - 1) // _GROUP
    for part in prange(parts):
        scratch = np.empty(K.GROUP_SIZE)
        for g in range(part * n_groups // parts, (part + 1) * n_groups // parts):
            size = K.group_weights(q, g * _GROUP, params, scratch)
            out[g % out.size] = scratch[7]

@njit
def rng_only(key, grouped, out):
    for a in range(grouped.size):
        j = grouped[a]
        out[j] = np.int64(uniform_at(key, np.uint64(j)) * 1e6)

@njit
def rng_seq_write(key, grouped, out):
    for a in range(grouped.size):
        j = grouped[a]
        out[a] = np.int64(uniform_at(key, np.uint64(j)) * 1e6)

@njit
def search_with_stored_t(total, offsets, starts, ts, out):
    # binary search per draw on a fixed local block (L1), t from a sequential array
    loc = np.cumsum(np.ones(PREFIX_BLOCK))
    nb = offsets.size
    for b in range(nb):
        for a in range(starts[b], starts[b + 1]):
            out[a] = count_at_most(0.0, loc, ts[a] * 512.0)

out = np.empty(B, dtype=np.int64); small = np.empty(64)
ts = np.random.default_rng(0).random(B)
cases = {
    "resolve_draws_from_q (as shipped)": lambda: K.resolve_draws_from_q(key, total, q, params, offsets, starts, grouped, out, K.parts_for(nb)),
    "resolve_draws on stored w": lambda: S.resolve_draws(key, total, w, offsets, starts, grouped, out, min(nb, 64)),
    "weights + local prefix sums only": lambda: weights_and_prefix_only(q, params, offsets, starts, small, K.parts_for(nb)),
    "weights only (group_weights)": lambda: weights_only(q, params, offsets, small, K.parts_for(nb)),
    "uniform_at per draw + scattered out[j]": lambda: rng_only(key, grouped, out),
    "uniform_at per draw, sequential write": lambda: rng_seq_write(key, grouped, out),
    "branch-free search per draw (L1 block)": lambda: search_with_stored_t(total, offsets, starts, ts, out),
}
for f in cases.values(): f(); f()
res = {k: [] for k in cases}
for _ in range(9):
    for k, f in cases.items():
        t0 = time.perf_counter(); f(); res[k].append(time.perf_counter() - t0)
print("load", os.getloadavg())
for k, v in res.items(): print(f"{k:42s}", P.fmt(v))
