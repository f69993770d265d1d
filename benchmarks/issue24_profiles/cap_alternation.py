"""bench_refinement's interleaved 6-D rounds (cap 1e6, cap 5e6) with per-run wall, user,
sys, minor faults, RSS and gc collections: is every other cap-5e6 run slow, and why?"""
import gc, os, sys, time, resource
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2])); sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import bench_refinement as br
HZ = os.sysconf("SC_CLK_TCK")
def busy():
    v = list(map(int, open("/proc/stat").readline().split()[1:])); return (v[0] + v[1] + v[2] + v[5] + v[6]) / HZ
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
caps = [10**6, 5 * 10**6]
for cap in caps: br._sphere_6d(cap)
for r in range(int(os.environ.get("ROUNDS", 6))):
    for cap in caps:
        g0 = sum(s["collections"] for s in gc.get_stats())
        r0 = resource.getrusage(resource.RUSAGE_SELF); b0 = busy(); m0 = rss_mb(); t0 = time.perf_counter()
        br._sphere_6d(cap)
        wall = time.perf_counter() - t0; r1 = resource.getrusage(resource.RUSAGE_SELF)
        own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        g1 = sum(s["collections"] for s in gc.get_stats())
        print(f"round {r} cap {cap:.0e}: wall {wall:.3f} s user {r1.ru_utime - r0.ru_utime:.3f} sys {r1.ru_stime - r0.ru_stime:.3f} "
              f"minflt {r1.ru_minflt - r0.ru_minflt} rss before {m0:.0f} MB after {rss_mb():.0f} MB gc {g1 - g0} other cpu {((busy() - b0) - own) / wall:.2f}", flush=True)
