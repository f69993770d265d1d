"""bench_refinement.capped_rows(False) as the benchmark runs it, with getrusage per 6-D run."""
import os, sys, time, resource
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2])); sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import bench_refinement as br
real = br._sphere_6d
log = []
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
def traced(cap, backend="cpu"):
    r0 = resource.getrusage(resource.RUSAGE_SELF); m0 = rss_mb(); t0 = time.perf_counter()
    s = real(cap, backend)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    log.append((cap, round(time.perf_counter() - t0, 3), round(r1.ru_utime - r0.ru_utime, 3), round(r1.ru_stime - r0.ru_stime, 3), r1.ru_minflt - r0.ru_minflt, round(m0)))
    return s
br._sphere_6d = traced
rows = br.capped_rows(False)
for r in rows: print(r["case"][:60], round(r["ours"]["median"], 3), r.get("ratio"), r.get("other_cpu"))
print("(cap, wall, user, sys, minflt, rss MB before)")
for x in log: print(x)
