"""Throughput of zp_ref.bridges.dask on a 2-worker LocalCluster vs the in-memory API on
the same pool (a pool of .npy files on disk).

    python benchmarks/bench_dask.py [--quick] [--json out.json]

Steps, each timed as the median of ``repeats`` runs after one warm-up:
- weights: importance weights (p=2, unnormalised: the draws do not need the total; the
  eager pass also gathers the block totals the draws need),
- draws: B weighted draws with replacement from those weights (one more pass),
- stratified: ``stratified_sample(q, B, within="importance")`` over the bands,
the draws alone from weights kept in the workers (``persist()``), and weights + draws
from the pool kept in the workers (``pool.persist()``: like the in-memory pipeline, no
file is read; the overhead of Dask itself). The file rows read the pool from the files
in the workers (``pool_from_npy``); the in-memory pipeline starts from the loaded array
(loading is timed on its own row), and ``sample_from_q`` (its fastest in-memory form:
no weights array) is timed beside it.
Every dask result is checked to equal the in-memory one.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time

import numpy as np


def _median_time(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _peak_rss_mib():
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent
    that spawned a worker)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _baseline_rss_mib():
    """Peak RSS of a worker once zp_ref and its kernels' modules are imported."""
    import zp_ref.bands  # noqa: F401
    import zp_ref.bridges.dask  # noqa: F401
    import zp_ref.weighting  # noqa: F401
    return _peak_rss_mib()


def run(quick: bool = False) -> dict:
    """Run the benchmark, print the table, return the figures (seconds, MiB)."""
    import dask
    import dask.array as da
    import distributed

    from zp_ref.bridges import dask as db
    from zp_ref.bands import stratified_sample
    from zp_ref.rng import STREAMS, uniforms
    from zp_ref.sampling import sample_indices
    from zp_ref.sampling_from_q import sample_from_q
    from zp_ref.weighting import importance_weights

    n, n_files, n_draws, repeats = ((4 * 10**6, 10, 2 * 10**5, 1) if quick
                                    else (2 * 10**7, 16, 10**6, 7))
    mix = [0.3, 0.2, 0.2, 0.2, 0.1]
    q = uniforms(7, STREAMS["chunked_pool"], n, backend="cpu") * 2e-2 - 1e-2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bounds = np.linspace(0, n, n_files + 1).astype(np.int64) + np.arange(n_files + 1) * 7
        bounds[-1] = n
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            np.save(os.path.join(tmp, f"q_{i:04d}.npy"), q[lo:hi])
        pattern = os.path.join(tmp, "q_*.npy")
        files = sorted(os.listdir(tmp))

        def load():
            return np.concatenate([np.load(os.path.join(tmp, f)) for f in files])

        t_load, _ = _median_time(load, repeats)

        def mem_weights():
            return importance_weights(q, normalize=False)

        def mem_draws(w):
            return sample_indices(w, n_draws, seed=1)

        def mem_strat():
            return stratified_sample(q, n_draws, mix=mix, seed=2, within="importance")

        mem_weights(), mem_draws(mem_weights()), mem_strat()            # warm-up (JIT)
        t_w, w = _median_time(mem_weights, repeats)
        t_d, idx = _median_time(lambda: mem_draws(w), repeats)
        t_s, (sidx, _) = _median_time(mem_strat, repeats)
        sample_from_q(q, n_draws, seed=1)                                # warm-up (JIT)
        t_q, qidx = _median_time(lambda: sample_from_q(q, n_draws, seed=1), repeats)

        with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                      host="127.0.0.1", dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            pool = db.pool_from_npy(pattern)

            def dask_weights():
                return db.importance_weights(pool, normalize=False)

            def dask_draws():
                return db.sample_indices(dask_weights(), n_draws, seed=1)

            def dask_strat():
                return db.stratified_sample(pool, n_draws, mix=mix, seed=2, within="importance")

            worker_base = client.run(_baseline_rss_mib)
            dask_draws(), dask_strat()                                   # warm-up
            dt_w, _ = _median_time(dask_weights, repeats)
            dt_d, didx = _median_time(dask_draws, repeats)
            dt_s, (dsidx, _) = _median_time(dask_strat, repeats)
            persisted = dask_weights().persist()
            distributed.wait(persisted)
            dt_p, pidx = _median_time(
                lambda: db.sample_indices(persisted, n_draws, seed=1), repeats)
            persisted = None                                             # free the workers
            in_workers = pool.persist()
            distributed.wait(in_workers)

            def persisted_draws():
                return db.sample_indices(db.importance_weights(in_workers, normalize=False),
                                         n_draws, seed=1)

            persisted_draws()                                            # warm-up
            dt_m, midx = _median_time(persisted_draws, repeats)
            in_workers = None
            worker_rss = client.run(_peak_rss_mib)
        # dask's threaded scheduler, 2 threads: the same chunks, no process boundary
        chunks = (tuple(np.diff(bounds)),)
        in_memory = da.from_array(q, chunks=chunks)
        with dask.config.set(scheduler="threads", num_workers=2):
            def threads_files():
                pool_t = db.pool_from_npy(pattern)
                return db.sample_indices(db.importance_weights(pool_t, normalize=False),
                                         n_draws, seed=1)

            def threads_memory():
                return db.sample_indices(db.importance_weights(in_memory, normalize=False),
                                         n_draws, seed=1)

            threads_files(), threads_memory()                            # warm-up
            tt_f, tfidx = _median_time(threads_files, repeats)
            tt_m, tmidx = _median_time(threads_memory, repeats)
        if not (np.array_equal(idx, didx) and np.array_equal(sidx, dsidx)
                and np.array_equal(idx, pidx) and np.array_equal(idx, midx)
                and np.array_equal(idx, qidx) and np.array_equal(idx, tfidx)
                and np.array_equal(idx, tmidx)):
            raise AssertionError("dask draws differ from the in-memory draws")
        rows = [("load pool (.npy -> memory)", t_load, None),
                ("weights (eager pass: totals, NaN check)", t_w, dt_w),
                (f"weights + {n_draws:.0e} draws (2 passes)", t_w + t_d, dt_d),
                ("the same, pool persisted in the workers", t_w + t_d, dt_m),
                ("the same vs in-memory sample_from_q", t_q, dt_m),
                (f"{n_draws:.0e} draws from weights in memory/persisted", t_d, dt_p),
                (f"stratified, {n_draws:.0e} draws (importance)", t_s, dt_s),
                ("threads scheduler (2): weights + draws, files", t_w + t_d, tt_f),
                ("threads scheduler (2): the same, pool in memory", t_w + t_d, tt_m)]
    print(f"pool N = {n:.0e} float64 in {n_files} .npy files; dask: LocalCluster 2 workers x "
          f"1 thread (processes), last two rows dask's threaded scheduler with 2 threads; "
          f"{os.cpu_count()} cores; median of {repeats}")
    print(f"{'step':46s} {'in-memory s':>12s} {'dask s':>9s} {'dask/mem':>9s} "
          f"{'dask Mentries/s':>16s}")
    for name, mem, dsk in rows:
        if dsk is None:
            print(f"{name:46s} {mem:12.3f} {'':>9s} {'':>9s} {'':>16s}")
        else:
            print(f"{name:46s} {mem:12.3f} {dsk:9.3f} {dsk / mem:9.1f} {n / dsk / 1e6:16.1f}")
    print("peak RSS per worker (MiB): " + ", ".join(f"{v:.0f}" for v in worker_rss.values())
          + " (after imports: " + ", ".join(f"{v:.0f}" for v in worker_base.values())
          + f"); client {_peak_rss_mib():.0f} (holds the in-memory pool)")
    print("draws equal the in-memory ones: yes; load average " + " ".join(
        f"{v:.2f}" for v in os.getloadavg()))
    return {"n": n, "files": n_files, "draws": n_draws, "repeats": repeats,
            "seconds": {name: {"in_memory": mem, "dask": dsk} for name, mem, dsk in rows},
            "load_average": list(os.getloadavg()),
            "worker_peak_rss_mib": list(worker_rss.values()),
            "worker_rss_after_imports_mib": list(worker_base.values())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small pool (4e6 entries)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    figures = run(args.quick)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
