"""Determinism: the same seed gives the same bits with NUMBA_NUM_THREADS=1 and =2, in a
fresh process, in this process and after unrelated calls (docs/reliability.md).

Inputs are large enough that every parallel kernel splits its work over both threads
(above ``zp_ref.kernels.PARALLEL_MIN_WORK``, below which kernels run on one thread).
"""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Computes a digest of every seeded output; ``main()`` prints them as JSON, twice: once
#: first thing, once after a burst of unrelated calls.
PROGRAM = textwrap.dedent('''
    import hashlib, json, sys
    import numpy as np
    import zp_ref
    from zp_ref.rational import Polynomial
    from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
    from zp_ref import problems

    N, B = 2**19 + 3, 2**18 + 5       # above kernels.PARALLEL_MIN_WORK: both threads work

    def h(*arrays):
        d = hashlib.sha256()
        for a in arrays:
            a = np.ascontiguousarray(a)
            d.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
        return d.hexdigest()[:24]

    def pool():
        j = np.arange(N, dtype=np.uint64)
        u = zp_ref.uniforms(20261125, 17, N, backend="numpy")
        return (u - 0.5) * 2.0 * np.where(j % 7 == 0, 1e-6, 1.0)   # many near-pole values

    def digests():
        q = pool()
        out = {}
        for b in ("numpy", "cpu"):
            w = zp_ref.importance_weights(q, backend=b)
            out[f"weights[{b}]"] = h(w)
            out[f"raw_weights[{b}]"] = h(zp_ref.importance_weights(q, normalize=False,
                                                                   temperature=0.7, backend=b))
            out[f"sample_indices[{b}]"] = h(zp_ref.sample_indices(w, B, seed=2**64 - 5,
                                                                  backend=b))
            out[f"without_replacement[{b}]"] = h(zp_ref.sample_indices(
                w, 5000, seed=9, replace=False, backend=b))
            out[f"uniforms[{b}]"] = h(zp_ref.uniforms(3, 0, B, backend=b))
            idx, lr = zp_ref.hybrid_indices(w, B, ratio=0.7, seed=4, backend=b)
            out[f"hybrid[{b}]"], out[f"likelihood_ratios[{b}]"] = h(idx), h(lr)
            idx, info = zp_ref.stratified_sample(q, B, mix=[0.3, 0.2, 0.2, 0.1, 0.2], seed=5,
                                                 within="importance", backend=b)
            out[f"stratified[{b}]"] = h(idx) + json.dumps(info["achieved"])
            out[f"band_counts[{b}]"] = h(zp_ref.band_counts(q, backend=b))
            s = zp_ref.ImportanceSampler(seed=77, backend=b)
            out[f"sampler[{b}]"] = h(*[s.hybrid_sample(q, q, 3000)[1] for _ in range(3)])
            p = problems.get("circle_2d")
            a = ActiveSampler(ActiveSamplerConfig(initial_grid_size=8, grid_bounds=p.bounds,
                                                  max_refinement_level=6,
                                                  max_grid_points=30_000),
                              q=p.q, input_dim=2, backend=b).refine()
            leaves = a.leaves()
            out[f"leaves[{b}]"] = h(leaves["lo"], leaves["hi"], leaves["level"],
                                    leaves["q_center"])
            out[f"leaf_samples[{b}]"] = h(a.sample(5000, seed=12, weighting="leaf"))
        return out

    def other_calls():
        g = zp_ref.uniforms(1, 99, 50_000, backend="numpy")
        for b in ("cpu", "numpy"):
            w = zp_ref.importance_weights(g - 0.5, weight_power=3.0, backend=b)
            zp_ref.sample_indices(w, 70_000, seed=1, backend=b)
            zp_ref.sample_indices(w[:100], 7, seed=2, backend=b)
            zp_ref.sample_indices(w, 100, seed=3, replace=False, backend=b)
            zp_ref.stratified_sample(g, 999, mix=[0.2] * 5, seed=8, backend=b)
            ActiveSampler(ActiveSamplerConfig(initial_grid_size=50, grid_bounds=(-3.0, 3.0),
                                              max_refinement_level=12),
                          q=Polynomial.from_roots([-1.0, 0.3, 2.0]), backend=b).refine()

    first = digests()
    other_calls()
    second = digests()
    print(json.dumps({"first": first, "second": second}))
''')


def start_fresh(threads: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["NUMBA_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-c", PROGRAM], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def runs():
    """Digests from two fresh processes (1 and 2 Numba threads), run side by side."""
    procs = {threads: start_fresh(threads) for threads in (1, 2)}
    out = {}
    for threads, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        out[threads] = json.loads(stdout.strip().splitlines()[-1])
    return out


def test_same_bits_after_other_calls(runs):
    for threads, result in runs.items():
        assert result["first"] == result["second"], f"NUMBA_NUM_THREADS={threads}"


def test_same_bits_with_one_and_two_threads(runs):
    one, two = runs[1]["first"], runs[2]["first"]
    assert one.keys() == two.keys()
    diff = [k for k in one if one[k] != two[k]]
    assert not diff, f"differ between 1 and 2 threads: {diff}"


def test_numpy_oracle_and_cpu_kernels_give_the_same_bits(runs):
    d = runs[2]["first"]
    for name in ("sample_indices", "without_replacement", "uniforms", "hybrid", "stratified",
                 "band_counts", "sampler", "leaves", "leaf_samples"):
        assert d[f"{name}[numpy]"] == d[f"{name}[cpu]"], name


def test_this_process_matches_fresh_processes(runs):
    """The pytest process (other tests ran before, threads as configured here)."""
    namespace = {}
    code = PROGRAM.split("first = digests()")[0]          # the definitions only
    exec(compile(code, "<determinism program>", "exec"), namespace)
    here = namespace["digests"]()
    assert here == runs[1]["first"]


def test_inputs_are_large_enough_to_run_in_parallel():
    from zp_ref.kernels import PARALLEL_MIN_WORK
    assert 2**18 + 5 >= PARALLEL_MIN_WORK


def test_program_hashes_every_output_it_names(runs):
    """Guard against a digest that silently hashes nothing (e.g. an empty array)."""
    empty = hashlib.sha256(b"").hexdigest()[:24]
    assert all(not v.startswith(empty) for v in runs[1]["first"].values())
    assert len(runs[1]["first"]) == 24 and np.unique(list(runs[1]["first"].values())).size >= 12


# ------------------------------------------------------------------ fork and threads
#: Runs in a fresh process: draws in the parent, then the same calls in a child forked
#: by multiprocessing ("fork") and from four threads at once; prints the results' digests.
FORK_AND_THREADS = textwrap.dedent('''
    import ctypes, hashlib, json, sys
    if sys.argv[1] == "no-tbb":              # as on a machine without the tbb package
        _cdll = ctypes.CDLL
        def cdll(name, *args, **kwargs):
            if name and "tbb" in str(name):
                raise OSError(f"{name}: hidden by the test")
            return _cdll(name, *args, **kwargs)
        ctypes.CDLL = cdll
    import multiprocessing as mp
    from concurrent.futures import ThreadPoolExecutor
    import numpy as np
    import numba
    import zp_ref
    from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig

    N = 2**18 + 3                           # above kernels.PARALLEL_MIN_WORK

    def calls():
        q = zp_ref.uniforms(4, 17, N, backend="cpu") - 0.5
        w = zp_ref.importance_weights(q, backend="cpu")
        parts = [w, zp_ref.sample_indices(w, N, seed=1, backend="cpu"),
                 zp_ref.sample_indices(w, 1000, seed=2, replace=False, backend="cpu"),
                 zp_ref.band_counts(q, backend="cpu"),
                 zp_ref.stratified_sample(q, N, mix=[0.2] * 5, seed=3, backend="cpu")[0]]
        prob = zp_ref.problems.get("bivariate_deg6_2d")  # refinement and Q kernels too
        config = ActiveSamplerConfig(initial_grid_size=16, grid_bounds=prob.bounds,
                                     max_refinement_level=10, max_grid_points=4_000_000,
                                     criterion="sign")
        tree = ActiveSampler(config, q=prob.q, input_dim=2, backend="cpu").refine()
        leaves = tree.leaves()
        parts += [leaves["lo"], leaves["level"],
                  prob.q.evaluate(np.column_stack([q, q[::-1]]), backend="cpu")]
        d = hashlib.sha256()
        for a in parts:
            d.update(np.ascontiguousarray(a).tobytes())
        return d.hexdigest()

    def child(queue):
        queue.put(calls())

    if __name__ == "__main__":
        parent = calls()
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(queue,))
        proc.start()
        forked = queue.get(timeout=120) if proc.join(120) is None and proc.exitcode == 0 \\
            else f"child exit code {proc.exitcode}"
        with ThreadPoolExecutor(4) as pool:
            threaded = list(pool.map(lambda _: calls(), range(8)))
        print(json.dumps({"layer": numba.threading_layer(), "parent": parent,
                          "forked": forked, "threaded": threaded}))
''')


def run_fork_and_threads(setup: str, layer_env: dict, tmp_path) -> dict:
    script = tmp_path / "fork_and_threads.py"
    script.write_text(FORK_AND_THREADS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(layer_env)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(script), setup], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]     # a crash fails here, not pytest
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tbb_installed() -> bool:
    from zp_ref.kernels import load_tbb
    return load_tbb()


@pytest.mark.parametrize("setup, layer_env, layer", [
    pytest.param("default", {}, "tbb", marks=pytest.mark.skipif(
        not tbb_installed(), reason="the tbb package is not installed")),
    ("no-tbb", {}, "workqueue"),                                  # zp_ref's fallback
    ("default", {"NUMBA_THREADING_LAYER": "workqueue"}, "workqueue"),  # the user's choice
])
def test_forked_child_and_four_threads_draw_the_parents_indices(setup, layer_env, layer,
                                                               tmp_path):
    """After kernel calls in the parent, a child forked by multiprocessing and four
    threads calling at once (8 calls: weights, draws, bands, a refinement tree and
    polynomial evaluation) return the parent's exact results, in the
    threading layer zp_ref selects (TBB; workqueue with a lock without TBB) or the user
    set (workqueue, serialised)."""
    got = run_fork_and_threads(setup, layer_env, tmp_path)
    assert got["layer"] == layer
    assert got["forked"] == got["parent"]
    assert got["threaded"] == [got["parent"]] * 8


def test_user_chosen_omp_layer_is_kept(tmp_path):
    """zp_ref does not override an explicit NUMBA_THREADING_LAYER (omp here), though
    GNU OpenMP is not fork-safe (docs/sampling.md): the layer stays omp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update({"NUMBA_THREADING_LAYER": "omp",
                "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")})
    code = ("import numpy as np, zp_ref; from zp_ref.kernels import threading_layer;"
            "zp_ref.sample_indices(np.ones(300_000), 200_000, seed=1, backend='cpu');"
            "print(threading_layer())")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "omp"
