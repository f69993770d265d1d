"""Capped 6-D sphere (bench_refinement._sphere_6d) at cap 1e6 and 5e6: wall and CPU time
per kernel of the cpu engine, page faults and sys time, tree sizes. Runs alternate."""
import os, sys, time, statistics, resource
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2])); sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import numpy as np
import bench_refinement as br
import zp_ref.refinement.cpu as C
from zp_ref.refinement import engine as E
W, U = {}, {}
def wrap(mod, name):
    f = getattr(mod, name)
    def g(*a, **k):
        t0 = time.perf_counter(); c0 = time.process_time()
        r = f(*a, **k)
        W[name] = W.get(name, 0.0) + time.perf_counter() - t0
        U[name] = U.get(name, 0.0) + time.process_time() - c0
        return r
    setattr(mod, name, g)
for n in ("existing_face_keys", "fitting_prefix", "urgency_order", "assign_face_ids", "cell_flags",
          "cell_flags_parallel", "collect_candidates", "emit_children", "eval_points_nd",
          "eval_points_nd_parallel", "face_keys_of", "table_contains", "table_insert_all", "_new_table"):
    wrap(C, n)
for n in ("_round_table", "_reserve", "candidates"):
    f = getattr(C.CpuEngine, n)
    def mk(f, n):
        def g(self, *a, **k):
            t0 = time.perf_counter(); c0 = time.process_time(); r = f(self, *a, **k)
            W[n] = W.get(n, 0.0) + time.perf_counter() - t0; U[n] = U.get(n, 0.0) + time.process_time() - c0
            return r
        return g
    setattr(C.CpuEngine, n, mk(f, n))
caps = [10**6, 5 * 10**6]
for cap in caps: br._sphere_6d(cap)      # warm-up (compiles / loads)
R = int(os.environ.get("REPS", 5))
res = {cap: {"wall": [], "user": [], "sys": [], "minflt": [], "k": []} for cap in caps}
info = {}
for _ in range(R):
    for cap in caps:
        W.clear(); U.clear()
        r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter()
        s = br._sphere_6d(cap)
        wall = time.perf_counter() - t0; r1 = resource.getrusage(resource.RUSAGE_SELF)
        d = res[cap]
        d["wall"].append(wall); d["user"].append(r1.ru_utime - r0.ru_utime)
        d["sys"].append(r1.ru_stime - r0.ru_stime); d["minflt"].append(r1.ru_minflt - r0.ru_minflt)
        d["k"].append((dict(W), dict(U)))
        st = s.get_statistics()
        info[cap] = dict(leaves=st["n_leaves"], evals=s.n_evaluations, nodes=int(s._engine.tree.n), per_level=st["leaves_per_level"], history=[(h.get("n_selected", h.get("selected")), h["capped"]) for h in s.refinement_history],
                         capped_rounds=st.get("capped_rounds"))
        del s
med = statistics.median
print("load", os.getloadavg())
for cap in caps:
    d = res[cap]
    q = statistics.quantiles(d["wall"], n=4, method="inclusive")
    print(f"cap {cap:.0e}: wall median {q[1]*1e3:.0f} ms [q1 {q[0]*1e3:.0f}, q3 {q[2]*1e3:.0f}]  user {med(d['user'])*1e3:.0f} ms  sys {med(d['sys'])*1e3:.0f} ms  minor faults {med(d['minflt']):.0f}  {info[cap]}")
for cap in caps:
    d = res[cap]
    print(f"cap {cap:.0e} per run: wall", [round(x, 3) for x in d["wall"]], "user", [round(x, 3) for x in d["user"]], "sys", [round(x, 3) for x in d["sys"]], "minflt", d["minflt"])
    print("   per run, top kernels wall:", [{k: round(v * 1e3) for k, v in sorted(r[0].items(), key=lambda kv: -kv[1])[:4]} for r in d["k"]])
names = sorted({n for cap in caps for w, u in res[cap]["k"] for n in w}, key=lambda n: -med([r[0].get(n, 0) for r in res[caps[1]]["k"]]))
print(f"{'kernel':26s} {'wall 1e6':>9s} {'wall 5e6':>9s} {'ratio':>6s} | {'cpu 1e6':>8s} {'cpu 5e6':>8s} {'ratio':>6s}")
for n in names:
    w1 = med([r[0].get(n, 0) for r in res[caps[0]]["k"]]); w5 = med([r[0].get(n, 0) for r in res[caps[1]]["k"]])
    u1 = med([r[1].get(n, 0) for r in res[caps[0]]["k"]]); u5 = med([r[1].get(n, 0) for r in res[caps[1]]["k"]])
    print(f"{n:26s} {w1*1e3:8.1f} {w5*1e3:9.1f} {w5/max(w1,1e-9):6.1f} | {u1*1e3:8.1f} {u5*1e3:8.1f} {u5/max(u1,1e-9):6.1f}")
tot1 = med([sum(r[0].values()) for r in res[caps[0]]["k"]]); tot5 = med([sum(r[0].values()) for r in res[caps[1]]["k"]])
print(f"sum of timed kernels (wall): {tot1*1e3:.0f} / {tot5*1e3:.0f} ms")
