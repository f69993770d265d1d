"""Phase times of the default call sample_indices(importance_weights(q), 1e6, seed=1) at
N=1e7 (its cpu path: the weights pass into a recycled buffer, the divide, the block totals,
locate, group, resolve), median of REPS calls after 4 warm-up calls, whole calls alternated
with phased ones; with the CPU other processes took meanwhile."""
import os, sys, time, statistics, resource
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import numpy as np, numba
from zp_ref.apps.bench import _pool
from zp_ref import recycled
from zp_ref.sampling import sample_indices
from zp_ref.weighting import importance_weights
from zp_ref.kernels import threads_for, threading_layer, cpu_sampling as S, cpu_weights as CW
from zp_ref.rng import STREAMS, key_of
HZ = os.sysconf("SC_CLK_TCK")
def busy():
    v = list(map(int, open("/proc/stat").readline().split()[1:])); return (v[0] + v[1] + v[2] + v[5] + v[6]) / HZ
q = _pool(10**7); B = 10**6; key = key_of(1, STREAMS["importance"])
T, F = {}, {}
def flt():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def tick(name, t0, f0):
    t = time.perf_counter(); f = flt()
    T.setdefault(name, []).append(t - t0); F.setdefault(name, []).append(f - f0)
    return time.perf_counter(), flt()
def phased():
    t0, f0 = time.perf_counter(), flt(); ts = t0
    w = recycled.empty(q.size)
    with threads_for(q.size):
        w, total, n_nan = CW.importance_weights_cpu(q, 2.0, 1e-6, 100.0, 1.0, w); t0, f0 = tick("1 weights_and_chunk_sums", t0, f0)
        CW.divide_inplace(w, total); t0, f0 = tick("2 divide_inplace", t0, f0)
    with threads_for(w.size + B):
        ends = S.checked_block_ends(w); t0, f0 = tick("3 block_totals (+accumulate, checks)", t0, f0)
        out = np.empty(B, dtype=np.int64); offsets = np.concatenate(([0.0], ends[:-1])); guide = S.guide_table(ends); t0, f0 = tick("4 out, offsets, guide", t0, f0)
        starts, grouped = S.group_draws(key, ends, guide, B); t0, f0 = tick("5 group_draws (locate + fill + scatter)", t0, f0)
        S.resolve_draws(key, ends[-1], w, offsets, starts, grouped, out, min(ends.size, 64)); t0, f0 = tick("6 resolve_draws", t0, f0)
    T.setdefault("total phased", []).append(time.perf_counter() - ts)
    return out
ref = sample_indices(importance_weights(q), B, seed=1)
assert np.array_equal(phased(), ref)
for _ in range(4): sample_indices(importance_weights(q), B, seed=1); phased()
T.clear(); F.clear()
whole, wf = [], []
b0 = busy(); c0 = time.process_time(); w0 = time.perf_counter()
for _ in range(int(os.environ.get("REPS", 11))):
    f0 = flt(); t0 = time.perf_counter(); sample_indices(importance_weights(q), B, seed=1); whole.append(time.perf_counter() - t0); wf.append(flt() - f0)
    phased()
wall = time.perf_counter() - w0; other = ((busy() - b0) - (time.process_time() - c0)) / wall
def fmt(v):
    q1, m, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return f"median {m*1e3:6.2f} ms [q1 {q1*1e3:6.2f}, q3 {q3*1e3:6.2f}]"
print("layer", threading_layer(), "threads", numba.get_num_threads(), "load", os.getloadavg(), f"other processes' CPU {other:.2f} cores")
print(f"{'default call, whole':42s}", fmt(whole), "minor faults per call", sorted(set(wf)))
for k in sorted(T): print(f"{k:42s}", fmt(T[k]), "faults", sorted(set(F.get(k, [0]))))
