"""zp_ref's weighted draws against every CPU peer (issues 14 and 24): N = 1e7 Q values,
B = 1e6 draws, p = 2, min_q_abs = 1e-6, max_weight = 100 (zp_ref's defaults).

Ours (backend "auto": the cpu kernels on a machine without a GPU):
- *default call*: ``sample_indices(importance_weights(q), B, seed=1)``, normalised
  weights allocated by every call;
- *out= path*: the same with ``importance_weights(q, out=w)`` into a kept array;
- *sample_from_q*: ``sample_from_q(q, B, seed=1)``, no weight array at all;
- *repeated draws*: ``DrawTable(w).sample(B, seed=s)`` on a table built once;
- *weight pass*: ``importance_weights(q)`` allocating, and with out=.
Peers, each timed as a user would run it (``zp_ref.apps.bench.peer_calls``): NumPy
weights + ``Generator.choice``; NumPy weights + cumsum + searchsorted; PyTorch CPU
weights + ``torch.multinomial``; scipy's UNU.RAN ``DiscreteGuideTable`` and
``DiscreteAliasUrn`` (setup + draws, on precomputed weights: their weight pass is not
counted); ``DiscreteGuideTable.rvs`` alone on a built table; ``np.sum(q)``, the
memory-bound floor of a pass over q; and ``np.empty_like(q)`` filled by a parallel loop:
the floor of producing a fresh (N,) array (its pages are faulted in and zeroed).

Every figure is the median of 7 calls after 4 warm-up calls (peers: after 1), with
quartiles and the minimum; ratios are medians over medians of this run; every row
carries the load average when it was measured. ``--quick`` runs 3 calls. The first
row of each of our calls notes its peak extra memory (tracemalloc: NumPy allocations,
the output included, scratch kept between calls excluded).

    python benchmarks/bench_peers.py [--quick] [--json PATH]
"""
import sys
import tracemalloc
from pathlib import Path

import numpy as np
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout

from zp_ref import recycled  # noqa: E402
from zp_ref.apps import bench  # noqa: E402
from zp_ref.draw_table import DrawTable  # noqa: E402
from zp_ref.sampling import sample_indices  # noqa: E402
from zp_ref.sampling_from_q import sample_from_q  # noqa: E402
from zp_ref.weighting import importance_weights  # noqa: E402

N_POOL, N_DRAWS = 10**7, 10**6
CONFIG = bench.CONFIG
#: (our call, peer) -> the ratio issues 14 and 24 ask for (peer median / our median)
TARGETS = {**bench.TARGETS, ("sample_from_q", "torch"): 25.0,
           ("repeated", "scipy_guide_rvs"): 4.0}
PEERS_OF = {"default": ("numpy_choice", "cumsum", "torch", "scipy_guide", "scipy_alias"),
            "out": ("numpy_choice", "torch", "scipy_guide"),
            "sample_from_q": ("numpy_choice", "cumsum", "torch", "scipy_guide", "scipy_alias"),
            "repeated": ("scipy_guide_rvs",), "weights": ("np_sum", "fresh_fill"),
            "weights_out": ("np_sum",)}


@njit(parallel=True, cache=True)
def fill_parallel(out, value):
    """out[:] = value on all threads: the floor of writing a fresh array."""
    for i in prange(out.size):
        out[i] = value


def peak_extra_bytes(fn) -> int:
    """Peak NumPy memory allocated during one call of fn (tracemalloc), with no
    recycled buffer to reuse (zp_ref.recycled): the memory the call needs."""
    recycled.release()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run(quick: bool = False) -> list:
    """The rows (schema of zp_ref.bench), the first of each of our calls with its
    ``peak_bytes``."""
    q = bench._pool(N_POOL)
    w_buf = np.empty_like(q)
    w = importance_weights(q, normalize=False, backend="cpu", **CONFIG)
    table = DrawTable(w)
    seeds = iter(range(10**9))
    ours = {
        "default": ("default call: sample_indices(importance_weights(q), B, seed=1)",
                    lambda: sample_indices(importance_weights(q), N_DRAWS, seed=1)),
        "out": ("out= path: weights into a kept array + draws",
                lambda: sample_indices(importance_weights(q, out=w_buf), N_DRAWS, seed=1)),
        "sample_from_q": ("sample_from_q(q, B, seed=1) (no weight array)",
                          lambda: sample_from_q(q, N_DRAWS, seed=1)),
        "repeated": ("repeated draws: DrawTable.sample", lambda: table.sample(
            N_DRAWS, seed=next(seeds))),
        "weights": ("weight pass importance_weights(q), allocating",
                    lambda: importance_weights(q)),
        "weights_out": ("weight pass importance_weights(q, out=w)",
                        lambda: importance_weights(q, out=w_buf)),
    }
    peers = bench.peer_calls(q, w, N_DRAWS)
    fill_parallel(np.empty(1), 1.0)                          # compile outside the timing
    peers["fresh_fill"] = ("np.empty_like(q) + parallel fill (fresh-page floor)",
                           lambda: fill_parallel(np.empty_like(q), 1.0))
    rows = bench.compare(ours, peers, PEERS_OF, TARGETS, quick, benchmark="peers")
    labels = {label: key for key, (label, _) in ours.items()}
    seen = set()
    for row in rows:
        if row["case"] in seen:
            continue
        seen.add(row["case"])
        peak = peak_extra_bytes(ours[labels[row["case"]]][1])
        row.update(peak_bytes=peak, note=f"peak extra memory {peak / 2**20:.1f} MiB")
    return rows


def main(argv=None) -> str:
    return bench.script_command(__doc__.splitlines()[0], run, argv,
                                quick_help="same cases, fewer repeats")


if __name__ == "__main__":
    print(main())
