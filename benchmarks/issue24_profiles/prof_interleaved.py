"""sample_from_q and the draws alone timed per phase, interleaved with the peers as
zp_ref.apps.bench.compare does (our call untimed, timed; then each peer once)."""
import os, sys, time, statistics
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2])); sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
os.environ.setdefault("REPS", "0")
import numpy as np
import prof_sfq as P
from zp_ref.apps.bench import peer_calls
from zp_ref.weighting import importance_weights
from zp_ref.sampling import sample_indices
w = importance_weights(P.q, normalize=False, backend="cpu", **P.CONFIG)
peers = peer_calls(P.q, w, P.B)
used = [k for k in ("numpy_choice", "torch", "scipy_guide", "np_sum") if os.environ.get("PEERS", "all") == "all" or k in os.environ["PEERS"]]
for k in used: peers[k][1]()
P.T.clear()
wf = []
whole, draws, ptimes = [], [], {k: [] for k in used}
R = int(os.environ.get("ROUNDS", 9))
for r in range(R):
    P.sample_from_q(P.q, P.B, seed=1)
    r0 = P.resource.getrusage(P.resource.RUSAGE_SELF); c0 = time.process_time(); t0 = time.perf_counter(); P.sample_from_q(P.q, P.B, seed=1); whole.append(time.perf_counter() - t0); c1 = time.process_time(); r1 = P.resource.getrusage(P.resource.RUSAGE_SELF)
    wf.append((r1.ru_minflt - r0.ru_minflt, round((c1 - c0) * 1e3, 1), r1.ru_nvcsw - r0.ru_nvcsw, r1.ru_nivcsw - r0.ru_nivcsw))
    P.phased()
    sample_indices(w, P.B, seed=1)
    t0 = time.perf_counter(); sample_indices(w, P.B, seed=1); draws.append(time.perf_counter() - t0)
    for k in used:
        t0 = time.perf_counter(); peers[k][1](); ptimes[k].append(time.perf_counter() - t0)
print("load", os.getloadavg(), "peers", used)
print(f"{'sample_from_q whole':28s}", P.fmt(whole), [round(x*1e3,1) for x in whole])
print(f"{'draws alone':28s}", P.fmt(draws), [round(x*1e3,1) for x in draws])
print("whole: (faults, cpu ms, vol csw, invol csw)", wf)
for k in sorted(P.T): print(f"{k:28s}", P.fmt(P.T[k]), [round(x*1e3,1) for x in P.T[k]], "faults", P.F.get(k))
for k in used: print(f"{'peer '+k:28s}", P.fmt(ptimes[k]))
