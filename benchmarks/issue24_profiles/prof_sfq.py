"""Phase times of sample_from_q(q, 1e6, seed=1) at N=1e7 (the benchmark's call)."""
import os, sys, time, statistics, json
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import numpy as np
import numba
from zp_ref.apps.bench import _pool, CONFIG
from zp_ref.sampling_from_q import sample_from_q
from zp_ref.kernels import threads_for, threading_layer
from zp_ref.kernels import cpu_sample_from_q as K
from zp_ref.kernels import cpu_sampling as S
from zp_ref.kernels.cpu_weights import power_mode
from zp_ref.rng import STREAMS, key_of

N, B = 10**7, 10**6
q = _pool(N)
p = 2.0
params = (p, power_mode(p), 1e-6, 100.0, 1.0)
key = key_of(1, STREAMS["importance"])


def grouped_draws():
    """The draws' groups of the benchmark's call, as resolve_draws_from_q is given them:
    (nb, offsets, starts, grouped, total)."""
    nb = (q.size + S.PREFIX_BLOCK - 1) // S.PREFIX_BLOCK
    totals = np.empty(nb); K.block_totals_from_q(q, params, totals, K.parts_for(nb))
    ends = np.add.accumulate(totals); offsets = np.concatenate(([0.0], ends[:-1]))
    starts, grouped = S.group_draws(key, ends, S.guide_table(ends), B)
    return nb, offsets, starts.copy(), grouped.copy(), ends[-1]


T = {}
import resource
F = {}
def _flt():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_minflt + r.ru_majflt
_last = [0]
def tick(name, t0):
    t = time.perf_counter(); T.setdefault(name, []).append(t - t0)
    f = _flt(); F.setdefault(name, []).append(f - _last[0]); _last[0] = f
    return time.perf_counter()

def phased():
    _last[0] = _flt()
    t0 = t_start = time.perf_counter()
    with threads_for(q.size + B):
        nb = (q.size + S.PREFIX_BLOCK - 1) // S.PREFIX_BLOCK
        totals = np.empty(nb)
        K.block_totals_from_q(q, params, totals, K.parts_for(nb)); t0 = tick("1 block_totals_from_q", t0)
        ends = np.add.accumulate(totals)
        S.check_weight_sums(np.empty(0), 0, ends[-1]); t0 = tick("2 accumulate+check", t0)
        out = np.empty(B, dtype=np.int64)
        offsets = np.concatenate(([0.0], ends[:-1]))
        guide = S.guide_table(ends); t0 = tick("3 out,offsets,guide", t0)
        parts = max(1, min(numba.get_num_threads(), B // 4096))
        counts = np.zeros((parts, nb + 1), dtype=np.int64)
        blocks = S.scratch("blocks", B, np.int32)
        S.locate_draws(key, ends[-1], ends, guide, blocks, counts); t0 = tick("4 locate_draws", t0)
        fill = (np.cumsum(counts.T.ravel()) - counts.T.ravel()).reshape(nb + 1, parts).T.copy()
        starts = np.append(fill[0], B)
        grouped = S.scratch("grouped", B, np.int64); t0 = tick("5 fill", t0)
        S.group_draws_by_block(blocks, fill, grouped); t0 = tick("6 group_draws_by_block", t0)
        K.resolve_draws_from_q(key, ends[-1], q, params, offsets, starts, grouped, out, K.parts_for(nb)); t0 = tick("7 resolve_draws_from_q", t0)
        corner = grouped[starts[nb]:]
        if corner.size:
            out[corner] = K.last_positive_weight(q, params)
        t0 = tick("8 corner", t0)
    T.setdefault("total phased", []).append(time.perf_counter() - t_start)
    return out

ref = sample_from_q(q, B, seed=1)
assert np.array_equal(phased(), ref)
for _ in range(4): sample_from_q(q, B, seed=1); phased()
T.clear(); F.clear()
HZ = os.sysconf("SC_CLK_TCK")
def busy():
    v = list(map(int, open("/proc/stat").readline().split()[1:])); return (v[0] + v[1] + v[2] + v[5] + v[6]) / HZ
b0 = busy(); c0 = time.process_time(); w0 = time.perf_counter()
whole = []
R = int(os.environ.get("REPS", 11))
for _ in range(R):
    t0 = time.perf_counter(); sample_from_q(q, B, seed=1); whole.append(time.perf_counter() - t0)
    phased()
def fmt(v):
    q1, m, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return f"median {m*1e3:7.2f} ms [q1 {q1*1e3:6.2f}, q3 {q3*1e3:6.2f}] min {min(v)*1e3:6.2f}"
other = ((busy() - b0) - (time.process_time() - c0)) / (time.perf_counter() - w0) if R else 0
if R:
  print(f"other processes' CPU {other:.2f} cores")
  print("layer", threading_layer(), "threads", numba.get_num_threads(), "load", os.getloadavg())
  print(f"{'sample_from_q whole':28s}", fmt(whole), [round(x*1e3,1) for x in whole])
  for k in sorted(T): print(f"{k:28s}", fmt(T[k]), [round(x*1e3,1) for x in T[k]])
