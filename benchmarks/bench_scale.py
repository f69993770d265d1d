"""Out-of-core end to end on a 2-process LocalCluster: a Q pool of N entries written to
zarr on disk chunk by chunk (never held whole), then importance weights, weighted draws
with replacement, and a stratified draw (whose info holds the band counts), with a
progress display, the wall time of each step and the peak RSS of every worker and of
the client.

    python benchmarks/bench_scale.py --n 1e8 [--chunk 1e7] [--draws 1e6] [--dir /tmp]
        [--check] [--json out.json]

Q is ``u(7, STREAMS["chunked_pool"], i) * 2e-2 - 1e-2`` for entry i (zp_ref.rng),
generated in the workers.
The store is deleted at the end. ``--check`` (N <= 5e7) also loads the pool and checks
that every index equals the in-memory API's.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np
from distributed.diagnostics.plugin import SchedulerPlugin

MIX = [0.3, 0.2, 0.2, 0.2, 0.1]
#: Chunk functions of zp_ref.bridges.dask whose tasks the progress bar counts (task
#: names as dask.utils.key_split gives them: without the leading underscore).
STEP_TASKS = {"weights": ("weights_stats",), "draws": ("weights_chunk_draws", "q_chunk_draws"),
              "stratified": ("band_stats", "band_pieces", "band_draws")}


def q_block(block, block_info=None):
    """Entries lo:hi of the pool, generated where the chunk is written."""
    from zp_ref.rng import STREAMS, uniforms
    lo, hi = block_info[None]["array-location"][0]
    out = uniforms(7, STREAMS["chunked_pool"], hi - lo, start=lo)
    out *= 2e-2
    out -= 1e-2
    return out


def load_kernels():
    """Run every step once on a small pool in this process (synchronous scheduler), so
    that importing zp_ref and loading its Numba kernels (from the cache, or compiling
    them) are neither timed nor counted in the steps' peak RSS."""
    import dask
    import dask.array as da

    from zp_ref.bridges import dask as db
    from zp_ref.rng import STREAMS, uniforms
    small = da.from_array(uniforms(1, STREAMS["chunked_pool"], 8192) * 2e-2 - 1e-2,
                          chunks=3000)
    with dask.config.set(scheduler="synchronous"):
        db.sample_indices(db.importance_weights(small, normalize=False), 100, seed=0)
        db.stratified_sample(small, 100, mix=MIX, seed=0, within="importance")


def peak_rss_mib(reset=False):
    """This process's peak RSS in MiB (VmHWM in /proc; where that is missing, psutil's
    current RSS), then (reset=True) restart the peak from the current RSS."""
    try:
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except OSError:
        import psutil
        peak = psutil.Process().memory_info().rss
    if reset:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
    return peak / 2**20


class TaskCounter(SchedulerPlugin):
    """A scheduler plugin counting finished tasks by function name."""

    name = "zp-task-counter"

    def __init__(self):
        self.counts = {}

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory":
            from dask.utils import key_split
            name = key_split(key)
            self.counts[name] = self.counts.get(name, 0) + 1


def _counts(dask_scheduler):
    return dict(dask_scheduler.plugins[TaskCounter.name].counts)


class TextBar:
    """tqdm's interface as used here, printing ``name: done/total`` every 5 s."""

    def __init__(self, total, desc, **_):
        self.total, self.desc, self.n, self._last = total, desc, 0, 0.0

    def refresh(self):
        if time.perf_counter() - self._last >= 5.0:
            self._last = time.perf_counter()
            print(f"{self.desc}: {self.n}/{self.total} tasks", flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._last = 0.0
        self.refresh()


def run_step(client, name, total_tasks, fn):
    """fn() with a progress bar of its chunk tasks (polled from the scheduler; tqdm,
    or a line every 5 s without it); returns (result, seconds, {worker: peak RSS MiB},
    client peak RSS MiB)."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = TextBar
    client.run(peak_rss_mib, True)
    peak_rss_mib(True)
    prefixes = STEP_TASKS.get(name, ())
    before = client.run_on_scheduler(_counts)
    done = threading.Event()

    def poll(bar):
        while not done.wait(0.5):
            now = client.run_on_scheduler(_counts)
            bar.n = sum(now.get(p, 0) - before.get(p, 0) for p in prefixes)
            bar.refresh()

    t = time.perf_counter()
    with tqdm(total=total_tasks, desc=f"{name:10s}", unit="task", file=sys.stdout,
              mininterval=0.5, leave=True) as bar:
        thread = threading.Thread(target=poll, args=(bar,), daemon=True)
        thread.start()
        try:
            out = fn()
        finally:
            done.set()
            thread.join()
        bar.n = sum(client.run_on_scheduler(_counts).get(p, 0) - before.get(p, 0)
                    for p in prefixes) if prefixes else total_tasks
        bar.refresh()
    seconds = time.perf_counter() - t
    return out, seconds, client.run(peak_rss_mib), peak_rss_mib()


def run(n, chunk, n_draws, folder, check=False):
    import dask.array as da
    import distributed

    from zp_ref.bridges import dask as db

    store = tempfile.mkdtemp(prefix="zp_scale_", dir=folder)
    path = os.path.join(store, "pool.zarr")
    steps = {}
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            client.register_plugin(TaskCounter())
            client.run(load_kernels)              # imports and kernel loading off the clock
            n_chunks = -(-n // chunk)
            t = time.perf_counter()
            client.run(peak_rss_mib, True)
            lazy = da.empty(n, chunks=chunk, dtype=np.float64).map_blocks(q_block,
                                                                          dtype=np.float64)
            write = client.persist(db.to_zarr(lazy, path, compressors=None, compute=False))
            print(f"write {n:.0e} entries to {path} in {n_chunks} chunks of {chunk:.0e}:")
            distributed.progress(write)
            distributed.wait(write)
            del write
            steps["write pool to zarr"] = (time.perf_counter() - t, client.run(peak_rss_mib),
                                           peak_rss_mib())
            pool = db.pool_from_zarr(path)
            w, *steps["weights (eager pass)"] = run_step(
                client, "weights", n_chunks,
                lambda: db.importance_weights(pool, normalize=False))
            idx, *steps[f"{n_draws:.0e} draws with replacement"] = run_step(
                client, "draws", n_chunks, lambda: db.sample_indices(w, n_draws, seed=1))
            (sidx, info), *steps[f"stratified, {n_draws:.0e} draws (importance)"] = run_step(
                client, "stratified", 3 * n_chunks,
                lambda: db.stratified_sample(pool, n_draws, mix=MIX, seed=2,
                                             within="importance"))
            if check:
                checked = check_in_memory(pool.compute(), n_draws, idx, sidx, info)
            disk = sum(os.path.getsize(os.path.join(d, f))
                       for d, _, files in os.walk(path) for f in files)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return {"n": n, "chunk": chunk, "draws": n_draws, "store_bytes": disk,
            "load_average_at_end": list(os.getloadavg()),
            "band_counts": info["members"], "achieved": info["achieved"],
            "checked_against_in_memory": bool(check and checked),
            "steps": {k: {"seconds": s, "worker_peak_rss_mib": list(wk.values()),
                          "client_peak_rss_mib": c} for k, (s, wk, c) in steps.items()}}


def check_in_memory(q, n_draws, idx, sidx, info):
    from zp_ref.bands import stratified_sample
    from zp_ref.sampling import sample_indices
    from zp_ref.weighting import importance_weights
    w = importance_weights(q, normalize=False)
    want_s, want_info = stratified_sample(q, n_draws, mix=MIX, seed=2, within="importance")
    if not (np.array_equal(idx, sample_indices(w, n_draws, seed=1))
            and np.array_equal(sidx, want_s) and info == want_info):
        raise AssertionError("dask draws differ from the in-memory draws")
    return True


def report(res):
    chunk_mib = res["chunk"] * 8 / 2**20
    print(f"\npool N = {res['n']:.0e} float64 in zarr ({res['store_bytes'] / 2**30:.2f} GiB on "
          f"disk, chunks of {res['chunk']:.0e} = {chunk_mib:.0f} MiB); LocalCluster 2 workers"
          f" x 1 thread (processes); {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'step':44s} {'wall s':>8s} {'Mentries/s':>11s} {'worker peak RSS MiB':>22s} "
          f"{'client MiB':>11s}")
    for name, s in res["steps"].items():
        workers = ", ".join(f"{v:.0f}" for v in s["worker_peak_rss_mib"])
        print(f"{name:44s} {s['seconds']:8.1f} {res['n'] / s['seconds'] / 1e6:11.1f} "
              f"{workers:>22s} {s['client_peak_rss_mib']:11.0f}")
    total = sum(s["seconds"] for s in res["steps"].values())
    print(f"{'total':44s} {total:8.1f}")
    print(f"band counts (members): {res['band_counts']}; stratified draws per band: "
          f"{res['achieved']}")
    print(f"target per worker: 2 x chunk + 300 MiB = {2 * chunk_mib + 300:.0f} MiB")
    if res["checked_against_in_memory"]:
        print("draws equal the in-memory ones: yes")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e9, help="pool entries (default 1e9)")
    parser.add_argument("--chunk", type=float, default=1e7, help="entries per chunk")
    parser.add_argument("--draws", type=float, default=1e6, help="draws per sampling step")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the store goes")
    parser.add_argument("--check", action="store_true",
                        help="compare with the in-memory API (N <= 5e7)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    n, chunk, n_draws = int(args.n), int(args.chunk), int(args.draws)
    if args.check and n > 5 * 10**7:
        parser.error("--check loads the pool into memory: use it with --n <= 5e7")
    res = run(n, chunk, n_draws, args.dir, args.check)
    report(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
