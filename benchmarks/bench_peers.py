"""zp_ref's weighted draws against every CPU peer (issue 14): N = 1e7 Q values, B = 1e6
draws, p = 2, min_q_abs = 1e-6, max_weight = 100.

Ours (cpu backend):
- *default path*: ``sample_indices(importance_weights(q, normalize=False), B, seed=1)``,
  a fresh weight array every call;
- *out= path*: the same with ``importance_weights(..., out=w)`` into a kept array;
- *sample_from_q*: ``sample_from_q(q, B, seed=1)``, no weight array at all;
- *repeated draws*: ``DrawTable(w).sample(B, seed=s)`` on a table built once;
- *weight pass*: ``importance_weights(q, normalize=False)`` allocating, and with out=.
Peers, each timed as a user would run it: NumPy weights + ``Generator.choice``; NumPy
weights + cumsum + searchsorted; PyTorch CPU weights + ``torch.multinomial``; scipy's
UNU.RAN ``DiscreteGuideTable`` and ``DiscreteAliasUrn`` (setup + draws, on precomputed
weights: their weight pass is not counted); ``DiscreteGuideTable.rvs`` alone on a
built table; ``np.sum(q)``, the memory-bound floor of a pass over q; and, for the
allocating weight pass, ``np.empty_like(q)`` filled by a parallel loop: the floor of
producing a fresh (N,) array (the kernel faults in and zeroes its pages).

Every row carries its target, the load average when it ran and a note when the machine
was busy (load > 1). ``--quick`` runs the same cases with fewer repeats. The first
row of each of our calls notes its peak extra memory (tracemalloc: NumPy allocations,
the output included, scratch kept between calls excluded).

    python benchmarks/bench_peers.py [--quick] [--json PATH]
"""
import argparse
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout

from zp_ref.apps.bench import _pool, format_table, machine_info, ratio_row, time_call  # noqa: E402
from zp_ref.draw_table import DrawTable  # noqa: E402
from zp_ref.sampling import sample_indices  # noqa: E402
from zp_ref.sampling_from_q import sample_from_q  # noqa: E402
from zp_ref.weighting import importance_weights  # noqa: E402

N_POOL, N_DRAWS = 10**7, 10**6
CONFIG = dict(weight_power=2.0, min_q_abs=1e-6, max_weight=100.0)
#: (our call, peer) -> the ratio issue 14 asks for (peer time / our time)
TARGETS = {("default", "numpy_choice"): 40.0, ("default", "torch"): 18.0,
           ("default", "scipy_guide"): 10.0, ("sample_from_q", "numpy_choice"): 60.0,
           ("sample_from_q", "torch"): 25.0, ("sample_from_q", "scipy_guide"): 15.0,
           ("repeated", "scipy_guide_rvs"): 4.0, ("weights", "np_sum"): 1 / 2.5,
           ("weights_out", "np_sum"): 1 / 2.0}


@njit(parallel=True, cache=True)
def fill_parallel(out, value):
    """out[:] = value on all threads: the floor of writing a fresh array."""
    for i in prange(out.size):
        out[i] = value


def peak_extra_bytes(fn) -> int:
    """Peak NumPy memory allocated during one call of fn (tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def load_note(load: float) -> str:
    return f"load {load:.2f}" + (" (busy machine: ratios understate ours)" if load > 1 else "")


def run(quick: bool = False) -> list:
    """The rows (schema of zp_ref.bench), each with ``load`` and ``peak_bytes``."""
    repeats = 3 if quick else 7
    q = _pool(N_POOL)
    w_buf = np.empty_like(q)
    w = importance_weights(q, normalize=False, backend="cpu", **CONFIG)
    table = DrawTable(w, backend="cpu")
    seeds = iter(range(10**9))

    ours = {
        "default": lambda: sample_indices(
            importance_weights(q, normalize=False, backend="cpu", **CONFIG), N_DRAWS, seed=1,
            backend="cpu"),
        "out": lambda: sample_indices(
            importance_weights(q, normalize=False, backend="cpu", out=w_buf, **CONFIG),
            N_DRAWS, seed=1, backend="cpu"),
        "sample_from_q": lambda: sample_from_q(q, N_DRAWS, seed=1, backend="cpu", **CONFIG),
        "repeated": lambda: table.sample(N_DRAWS, seed=next(seeds)),
        "weights": lambda: importance_weights(q, normalize=False, backend="cpu", **CONFIG),
        "weights_out": lambda: importance_weights(q, normalize=False, backend="cpu",
                                                  out=w_buf, **CONFIG),
    }
    names = {"default": "default path: weights (allocating) + draws",
             "out": "out= path: weights into a kept array + draws",
             "sample_from_q": "sample_from_q (no weight array)",
             "repeated": "repeated draws: DrawTable.sample",
             "weights": "weight pass, allocating", "weights_out": "weight pass, out="}
    peers = _peers(q, w)
    timed_peers = {}
    rows = []
    for key, fn in ours.items():
        t_ours = time_call(fn, repeats)
        peak = peak_extra_bytes(fn)
        for peer, (label, peer_fn) in peers.items():
            target = TARGETS.get((key, peer))
            if key in ("repeated", "weights", "weights_out") and target is None \
                    and (key, peer) != ("weights", "fresh_fill"):
                continue
            if key in ("default", "out", "sample_from_q") \
                    and peer in ("np_sum", "scipy_guide_rvs", "fresh_fill"):
                continue
            if peer_fn is None:
                rows.append(ratio_row("peers", names[key], t_ours, label, None, target,
                                      note="not installed"))
                continue
            if peer not in timed_peers:
                timed_peers[peer] = time_call(peer_fn, repeats, 0 if quick else 1)
            load = os.getloadavg()[0]
            first = not rows or rows[-1]["case"] != names[key]
            note = f"{load_note(load)}; peak extra memory {peak / 2**20:.1f} MiB" if first \
                else (load_note(load) if load > 1 else "")
            row = ratio_row("peers", names[key], t_ours, label, timed_peers[peer], target,
                            note=note)
            row.update(load=load, peak_bytes=peak)
            rows.append(row)
    return rows


def _peers(q, w) -> dict:
    """peer key -> (label, callable or None when the library is missing)."""
    def numpy_weights():
        return importance_weights(q, backend="numpy", **CONFIG)

    def numpy_choice():
        return np.random.default_rng(1).choice(q.size, N_DRAWS, p=numpy_weights())

    def cumsum_searchsorted():
        c = np.cumsum(importance_weights(q, normalize=False, backend="numpy", **CONFIG))
        return np.searchsorted(c, np.random.default_rng(1).random(N_DRAWS) * c[-1], "right")

    peers = {"numpy_choice": ("NumPy weights + Generator.choice", numpy_choice),
             "cumsum": ("NumPy weights + cumsum + searchsorted", cumsum_searchsorted)}
    try:
        import torch
    except ImportError:
        peers["torch"] = ("PyTorch CPU weights + multinomial", None)
    else:
        q_t = torch.from_numpy(q)
        gen = torch.Generator().manual_seed(1)

        def torch_multinomial():
            wt = torch.clamp(1.0 / torch.clamp(q_t.abs(), min=1e-6) ** 2, max=100.0)
            return torch.multinomial(wt / wt.sum(), N_DRAWS, replacement=True, generator=gen)
        peers["torch"] = (f"PyTorch {torch.__version__} CPU weights + multinomial "
                          f"({torch.get_num_threads()} threads)", torch_multinomial)
    try:
        from scipy.stats.sampling import DiscreteAliasUrn, DiscreteGuideTable
    except ImportError:
        for key in ("scipy_guide", "scipy_alias", "scipy_guide_rvs"):
            peers[key] = (f"scipy {key}", None)
    else:
        built = DiscreteGuideTable(w, random_state=np.random.default_rng(1))
        peers.update({
            "scipy_guide": ("scipy DiscreteGuideTable (setup + draws)",
                            lambda: DiscreteGuideTable(
                                w, random_state=np.random.default_rng(1)).rvs(N_DRAWS)),
            "scipy_alias": ("scipy DiscreteAliasUrn (setup + draws)",
                            lambda: DiscreteAliasUrn(
                                w, random_state=np.random.default_rng(1)).rvs(N_DRAWS)),
            "scipy_guide_rvs": ("scipy DiscreteGuideTable.rvs alone",
                                lambda: built.rvs(N_DRAWS))})
    peers["np_sum"] = ("np.sum(q) (memory-bound floor)", lambda: np.sum(q))
    fill_parallel(np.empty(1), 1.0)                          # compile outside the timing
    peers["fresh_fill"] = ("np.empty_like(q) + parallel fill (fresh-page floor)",
                           lambda: fill_parallel(np.empty_like(q), 1.0))
    return peers


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="same cases, fewer repeats")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    machine = machine_info()
    rows = run(args.quick)
    machine["load_average_end"] = list(os.getloadavg())
    result = {"schema": "zp_ref.bench/1", "quick": args.quick, "machine": machine,
              "rows": rows, "notes": [], "seconds": time.perf_counter() - t0}
    report = format_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
        report += f"\nwrote {args.json}"
    return report


if __name__ == "__main__":
    print(main())
