"""Memory bounds of the cpu kernels (docs/reliability.md, "Memory").

The calls run in one fresh Linux process: warm-up calls on small inputs load the
compiled kernels; before each call the peak RSS (VmHWM) is reset with
``/proc/self/clear_refs`` and its growth over the call is compared with N * 8 bytes.
N = 4e6 (32 MB per float64 array) dominates the interpreter's noise; the draws are
N/40 so their int64 outputs and scratch (about 0.1 N * 8 bytes) stay small.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N = 4_000_000

PROGRAM = textwrap.dedent('''
    import json, sys
    import numpy as np
    import zp_ref

    N = int(sys.argv[1])

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    def reset_peak():
        """Linux: reset the peak RSS (VmHWM) to the current RSS."""
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    small = zp_ref.importance_weights(np.linspace(-1, 1, 4099), backend="cpu")
    zp_ref.importance_weights(np.linspace(-1, 1, 4099), backend="cpu", out=np.empty(4099))
    zp_ref.sample_indices(small, 20_000, seed=1, backend="cpu")
    zp_ref.sample_indices(small, 100, seed=1, replace=False, backend="cpu")

    q = zp_ref.uniforms(5, 17, N, backend="cpu") - 0.5
    out = np.empty(N)
    w = zp_ref.importance_weights(q, backend="cpu", out=out)
    B = N // 40
    sampler = zp_ref.ImportanceSampler(seed=2, backend="cpu")
    calls = {
        "with_replacement": lambda: zp_ref.sample_indices(w, B, seed=3, backend="cpu"),
        "without_replacement": lambda: zp_ref.sample_indices(w, B, seed=3, replace=False,
                                                             backend="cpu"),
        "weights_out": lambda: zp_ref.importance_weights(q, backend="cpu", out=out),
        "weights_new": lambda: zp_ref.importance_weights(q, backend="cpu"),
        "sampler_first_batch": lambda: sampler.sample_batch(q, q, B),
        "sampler_next_batch": lambda: sampler.sample_batch(q, q, B),
    }
    growth = {}
    for case, call in calls.items():        # in this order: the sampler's batches last
        reset_peak()
        before = status("VmRSS")
        r = call()
        growth[case] = status("VmHWM") - before
        del r
    print(json.dumps(growth))
''')


def measure() -> dict:
    """Peak RSS growth of each call, in units of N * 8 bytes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_ENABLE_CUDASIM")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # a fixed mmap threshold: every large array gets fresh pages and returns them on
    # free, so a temporary cannot hide in memory an earlier call released
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    proc = subprocess.run([sys.executable, "-c", PROGRAM, str(N)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {case: value / (N * 8) for case, value in result.items()}


@pytest.fixture(scope="module")
def growths():
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak RSS")
    return measure()


def test_sample_indices_with_replacement_allocates_no_n_sized_float_array(growths):
    # the kernel never materialises the prefix sums: only block totals and draw-sized arrays
    assert growths["with_replacement"] < 0.5, growths


def test_sample_indices_without_replacement_allocates_one_n_sized_float_array(growths):
    assert growths["without_replacement"] < 1.5, growths


def test_importance_weights_with_out_allocates_nothing_n_sized(growths):
    assert growths["weights_out"] < 0.25, growths


def test_importance_weights_allocates_only_its_output(growths):
    assert 0.75 < growths["weights_new"] < 1.5, growths


def test_sampler_first_batch_allocates_its_weight_buffer_and_counts(growths):
    """The first batch of a pool allocates the sampler's persistent state for it: the
    weight buffer (float64, N) and the per-entry draw counts (int64, N)."""
    assert growths["sampler_first_batch"] < 2.5, growths


def test_sampler_next_batch_allocates_no_n_sized_array(growths):
    assert growths["sampler_next_batch"] < 0.5, growths


RETAINED = textwrap.dedent('''
    import json, sys, threading, tracemalloc
    from concurrent.futures import ThreadPoolExecutor
    import numpy as np
    import zp_ref

    n_draws = int(sys.argv[1])
    w = np.linspace(0.0, 1.0, 5000)
    zp_ref.sample_indices(w, 10, seed=0, backend="cpu")            # compile first
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    zp_ref.sample_indices(w, n_draws, seed=1, backend="cpu")
    with ThreadPoolExecutor(3) as pool:                              # three more threads
        barrier = threading.Barrier(3)
        def call(seed):
            zp_ref.sample_indices(w, n_draws, seed=seed, backend="cpu")
            barrier.wait()                   # every worker alive, its scratch still there
            return tracemalloc.get_traced_memory()[0]
        during = max(pool.map(call, range(2, 5)))
    print(json.dumps({"retained": during - base}))
''')


def retained_bytes(n_draws: int) -> int:
    """Traced (tracemalloc) bytes still held after ``sample_indices`` drew ``n_draws``
    on the main thread and on three live worker threads, results freed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_ENABLE_CUDASIM")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", RETAINED, str(n_draws)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["retained"]


def test_scratch_of_large_draws_is_not_kept_after_the_call():
    """5e6 draws need 60 MB of scratch per calling thread; none of it outlives the call
    (it was kept before: +458 MB after 40M draws)."""
    assert retained_bytes(5_000_000) < 1 << 20


def test_scratch_kept_between_calls_is_bounded_per_thread():
    """Draw-sized scratch up to SCRATCH_KEEP_BYTES per name is kept for reuse: at most
    4 names * 8 MiB per calling thread (4 threads here), as docs/sampling.md states."""
    from zp_ref.kernels.cpu_sampling import SCRATCH_KEEP_BYTES
    assert SCRATCH_KEEP_BYTES == 8 << 20
    kept = retained_bytes(600_000)                  # 7.2 MB of scratch per thread, all kept
    assert 4 * 600_000 * 12 <= kept <= 4 * 4 * SCRATCH_KEEP_BYTES + (1 << 20)
