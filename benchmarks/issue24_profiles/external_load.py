"""Windows of back-to-back sample_from_q calls (N=1e7, B=1e6, p=2) with the CPU time
that other processes took on the 2 cores during each window (/proc/stat minus ours)."""
import os, sys, time, statistics
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import numpy as np
import numba
from zp_ref.apps.bench import _pool
from zp_ref.sampling_from_q import sample_from_q
from zp_ref.sampling import sample_indices
from zp_ref.weighting import importance_weights
from zp_ref.kernels import threading_layer
HZ = os.sysconf("SC_CLK_TCK")
def busy():
    f = open("/proc/stat").readline().split()[1:]
    v = list(map(int, f))
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / HZ, v[1] / HZ   # user+nice+sys+irq+softirq, nice
q = _pool(10**7); B = 10**6
what = os.environ.get("CALL", "sample_from_q")
w = importance_weights(q, normalize=False)
fn = {"sample_from_q": lambda: sample_from_q(q, B, seed=1),
      "default": lambda: sample_indices(importance_weights(q), B, seed=1),
      "draws": lambda: sample_indices(w, B, seed=1)}[what]
for _ in range(5): fn()
print("call", what, "layer", threading_layer(), "threads", numba.get_num_threads(), "load", os.getloadavg())
allt = []
for win in range(int(os.environ.get("WINDOWS", 8))):
    b0, n0 = busy(); c0 = time.process_time(); w0 = time.perf_counter()
    ts = []
    for _ in range(15):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    wall = time.perf_counter() - w0; own = time.process_time() - c0; b1, n1 = busy()
    other = (b1 - b0) - own
    allt += ts
    print(f"window {win}: median {statistics.median(ts)*1e3:6.1f} ms  min {min(ts)*1e3:5.1f}  own cpu/wall {own/wall:4.2f}  "
          f"other processes' cpu/wall {other/wall:5.2f} (niced {(n1-n0)/wall:4.2f})")
qs = statistics.quantiles(allt, n=4, method="inclusive")
print(f"all {len(allt)} calls: median {qs[1]*1e3:.1f} ms [q1 {qs[0]*1e3:.1f}, q3 {qs[2]*1e3:.1f}] load {os.getloadavg()}")
