"""Behaviour of the code paths that make the first and the steady calls fast (issue 24);
their speed is measured in benchmarks/, never here.

- zp_ref.recycled: a large output's memory is reused only once no array reaches it;
- the default weight call returns recycled memory and the same values;
- auto backend on a machine without a CUDA driver: numba.cuda is never imported;
- kernels loaded from a warm cache without Numba's compiler setup give the oracle's
  results (fresh processes);
- the benchmark harness: medians, quartiles, ratios of medians.
"""
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from zp_ref import recycled
from zp_ref.apps import bench
from zp_ref.backends import cuda_driver_loadable
from zp_ref.weighting import importance_weights

ROOT = Path(__file__).resolve().parents[1]
LARGE = (recycled.MIN_BYTES // 8) + 1000          # float64 entries above the threshold


def address(a) -> int:
    return a.__array_interface__["data"][0]


@pytest.fixture
def empty_pool():
    recycled.release()
    yield
    recycled.release()


def test_small_outputs_are_plain_arrays(empty_pool):
    a = recycled.empty(100)
    assert a.flags.owndata and a.shape == (100,) and a.dtype == np.float64
    del a
    assert recycled.kept_bytes() == 0


def test_memory_is_reused_only_when_no_view_reaches_it(empty_pool):
    a = recycled.empty(LARGE)
    assert a.shape == (LARGE,) and a.dtype == np.float64
    assert a.flags.c_contiguous and a.flags.writeable and not a.flags.owndata
    where = address(a)
    view = a[10:].reshape(-1)
    a[:] = 7.0
    del a
    assert recycled.kept_bytes() == 0                 # the view still reaches the memory
    other = recycled.empty(LARGE)
    assert address(other) != where
    other[:] = -1.0
    assert np.all(view == 7.0)                        # untouched by the second output
    del view
    assert recycled.kept_bytes() == LARGE * 8
    again = recycled.empty(LARGE)
    assert address(again) == where and recycled.kept_bytes() == 0
    del other, again


def test_dtypes_and_sizes_are_kept_apart(empty_pool):
    a = recycled.empty(LARGE)
    where = address(a)
    del a
    b = recycled.empty(LARGE, np.int64)               # same bytes, other dtype
    c = recycled.empty(LARGE + 1)                     # other size
    assert address(b) != where and address(c) != where and b.dtype == np.int64
    assert recycled.kept_bytes() == LARGE * 8


def test_the_pool_keeps_at_most_keep_bytes(empty_pool, monkeypatch):
    monkeypatch.setattr(recycled, "KEEP_BYTES", 2 * LARGE * 8 + 24)
    arrays = [recycled.empty(LARGE + k) for k in range(3)]
    while arrays:
        del arrays[0]                                  # released oldest first
    assert recycled.kept_bytes() <= recycled.KEEP_BYTES
    assert recycled.kept_bytes() == (LARGE + 1) * 8 + (LARGE + 2) * 8   # oldest dropped
    recycled.release()
    assert recycled.kept_bytes() == 0


def test_threads_never_share_a_live_buffer(empty_pool):
    errors = []

    def work(tag):
        for _ in range(20):
            a = recycled.empty(LARGE)
            a[::4096] = tag
            threading.Event().wait(0.001)
            if not np.all(a[::4096] == tag):
                errors.append(tag)
            del a
    threads = [threading.Thread(target=work, args=(float(t),)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert recycled.kept_bytes() <= recycled.KEEP_BYTES


def test_default_weights_reuse_memory_and_keep_their_values(empty_pool):
    q = np.linspace(-2.0, 2.0, LARGE)
    oracle = importance_weights(q, backend="numpy")
    first = importance_weights(q, backend="cpu")
    where = address(first)
    held = importance_weights(q, backend="cpu")       # first is alive: fresh memory
    assert address(held) != where
    np.testing.assert_allclose(first, oracle, rtol=1e-12, atol=0)
    assert np.array_equal(first, held)
    del first
    again = importance_weights(q, backend="cpu")
    assert address(again) == where and np.array_equal(again, held)


@pytest.mark.skipif(cuda_driver_loadable(), reason="this machine has a CUDA driver library")
def test_auto_without_a_driver_never_imports_numba_cuda():
    program = textwrap.dedent("""
        import sys, numpy as np, zp_ref
        q = np.linspace(-1.0, 1.0, 2**21)          # above the size where auto asks for a GPU
        zp_ref.sample_indices(zp_ref.importance_weights(q), 1000, seed=1)
        print("numba.cuda" in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_ENABLE_CUDASIM", "NUMBA_CUDA_DRIVER")}
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         env=env, cwd=str(ROOT), timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


#: Every opted-in kernel module's entry points, in a fresh process; prints whether the
#: compiler's registries were imported, the kernels' cache hits and misses, and whether
#: each result equals the NumPy oracle.
FAST_LOAD_PROGRAM = textwrap.dedent("""
    import json, sys
    import numpy as np
    import zp_ref
    from zp_ref.draw_table import DrawTable
    N, B = 2**19 + 3, 2**18 + 5
    q = (zp_ref.uniforms(5, 16, N, backend="numpy") - 0.5) * 4.0
    same = {}
    w_np = zp_ref.importance_weights(q, backend="numpy")
    w = zp_ref.importance_weights(q, backend="cpu")
    same["weights"] = bool(np.allclose(w, w_np, rtol=1e-12, atol=0))
    for name, call in {
        "sample_indices": lambda b: zp_ref.sample_indices(w_np, B, seed=3, backend=b),
        "without_replacement": lambda b: zp_ref.sample_indices(w_np, 500, seed=4,
                                                               replace=False, backend=b),
        "sample_from_q": lambda b: zp_ref.sample_from_q(q, B, seed=5, backend=b),
        "draw_table": lambda b: DrawTable(w_np, backend=b).sample(B, seed=6),
        "uniforms": lambda b: zp_ref.uniforms(7, 0, B, backend=b),
    }.items():
        same[name] = bool(np.array_equal(call("cpu"), call("numpy")))
    from numba.core.registry import CPUDispatcher
    hits = misses = 0
    for mod in ("cpu_weights", "cpu_sampling", "cpu_sample_from_q", "cpu_draw_table",
                "cpu_rng"):
        m = sys.modules.get("zp_ref.kernels." + mod)
        for obj in vars(m).values() if m else ():
            if isinstance(obj, CPUDispatcher):
                hits += sum(obj.stats.cache_hits.values())
                misses += sum(obj.stats.cache_misses.values())
    print(json.dumps({"same": same, "hits": hits, "misses": misses,
                      "registries": "numba.np.arraymath" in sys.modules}))
""")


def test_kernels_from_a_warm_cache_skip_the_compiler_and_match_the_oracle():
    def child():
        out = subprocess.run([sys.executable, "-c", FAST_LOAD_PROGRAM], capture_output=True,
                             text=True, cwd=str(ROOT), timeout=600)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])
    child()                                           # writes the cache where it is missing
    report = child()
    assert all(report["same"].values()), report["same"]
    assert report["hits"] > 0 and report["misses"] == 0
    assert report["registries"] is False              # loading needed none of them


def test_timing_gives_median_quartiles_and_extremes():
    t = bench.timing([5.0, 1.0, 3.0, 2.0, 4.0], warmup=4)
    assert (t["median"], t["q1"], t["q3"], t["min"], t["max"]) == (3.0, 2.0, 4.0, 1.0, 5.0)
    assert t["runs"] == 5 and t["warmup"] == 4 and t["times"] == [5.0, 1.0, 3.0, 2.0, 4.0]


def test_ratios_are_medians_over_medians():
    ours = bench.timing([1.0, 1.0, 9.0])
    peer = bench.timing([30.0, 2.0, 30.0])
    row = bench.ratio_row("sampling", "case", ours, "peer", peer, target=20.0)
    assert row["ratio"] == 30.0 and row["met"] is True
    assert row["load"] is None or len(row["load"]) == 3
    table = bench.format_table({"machine": bench.machine_info(), "rows": [row], "notes": [],
                                "quick": True, "seconds": 1.0})
    assert "ours min" in table and "30x" in table


def test_other_cpu_is_the_machines_cpu_less_ours_per_second(monkeypatch):
    """other_cpu: (machine CPU seconds - our CPU seconds) / wall seconds, to 2 decimals;
    None where the machine's CPU time is unknown; shown in the table's last column."""
    import time
    start = (100.0, 10.0, time.perf_counter() - 2.0)       # 2 s of wall time ago
    monkeypatch.setattr(bench, "_machine_busy_seconds", lambda: 103.0)   # 3 CPU s in all
    monkeypatch.setattr(bench, "_own_cpu_seconds", lambda: 11.0)         # 1 of them ours
    assert bench.other_cpu(start) == 1.0
    assert bench.other_cpu((None, 10.0, start[2])) is None
    row = bench.ratio_row("sampling", "case", dict(bench.timing([1.0, 2.0]), other_cpu=1.0),
                          None, None)
    assert row["other_cpu"] == 1.0
    table = bench.format_table({"machine": bench.machine_info(), "rows": [row], "notes": [],
                                "quick": True, "seconds": 1.0})
    header, _, line = table.splitlines()[3:6]
    assert header.rstrip().endswith("other CPU") and line.rstrip().endswith("1.00")


def test_compare_rows_carry_the_other_cpu_of_their_rounds():
    rows = bench.compare({"a": ("call a", lambda: None)}, {}, {}, {}, quick=True)
    other = rows[0]["other_cpu"]
    assert rows[0]["ours"]["other_cpu"] == other
    assert other is None or other >= 0.0


def test_script_command_writes_the_rows_of_run_as_json_and_a_table(tmp_path):
    """A checkout's benchmark script main: run(quick) rows in one schema-tagged result,
    written to --json and shown as the table."""
    import json

    from zp_ref.apps import bench
    seen = []

    def run(quick):
        seen.append(quick)
        return []

    out = tmp_path / "rows.json"
    report = bench.script_command("a test benchmark", run, ["--quick", "--json", str(out)])
    result = json.loads(out.read_text())
    assert seen == [True]
    assert result["schema"] == bench.SCHEMA and result["rows"] == [] and result["quick"] is True
    assert report.endswith(f"wrote {out}")
