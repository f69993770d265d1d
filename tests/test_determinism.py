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
