"""The prepared check for a lent GPU machine (run it through benchmarks/gpu_check.sh).

Runs from a checkout with PYTHONPATH=. and installs nothing (numba, numba-cuda,
torch and pytest are expected; each missing piece skips only what needs it). Every
step runs in its own subprocess under a time budget, so one that fails, hangs or
exhausts the device still leaves the others' figures; ``$OUT/gpu_check.json`` is
rewritten after every step and holds::

    {"device": {...}, "mode": "gpu" | "sim", "parity": {name: true | false},
     "timings": {name: {...}}, "skipped": {name: why}, "errors": {name: traceback},
     "steps": {step: {"status", "seconds"}}, "tests": {...}}

Steps: device; parity of weights / uniforms (10**7) and draws (10**6 from 10**7, a
1e12 dynamic range, without replacement) against the cpu backend; the weight kernel
in GB/s against a device-to-device copy; 10**7 draws from 2**24 weights against
torch.multinomial on the same GPU; 10**7 draws from 10**8 weights; the cuda refinement
engine's host synchronisations per round (level-9 tree, round by round); the 2-D tree
at levels 12 (about 1.35e6 leaves) and 14, cuda against the median of cpu runs, leaves
identical; the CUDA tests (pytest).
With ZP_GPU_CHECK_SIM=1 the same steps run at tiny sizes under the CUDA simulator.
Timings: median of several runs after a warm-up, min and max, seconds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

if not hasattr(np, "row_stack"):   # numba 0.68 looks it up; NumPy 2.5 removed it
    np.row_stack = np.vstack

SIM = os.environ.get("ZP_GPU_CHECK_SIM", "0") == "1"
if SIM:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
os.environ.setdefault("NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS", "0")
ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("OUT") or "gpu_check_out")
#: Whole run, and the part of it kept for the CUDA tests at the end (seconds).
TOTAL_BUDGET = float(os.environ.get("ZP_GPU_CHECK_BUDGET", "275"))
TESTS_RESERVE = 20.0 if SIM else 70.0

SIZES = {
    "gpu": dict(n_weights=10**7, n_draws=10**6, n_without=10**5, torch_n=2**24,
                torch_draws=10**7, big_n=10**8, big_draws=10**7, repeats=5,
                tree_grid=16, tree_parity_level=9, tree_level=12, tree_deep_level=14,
                tree_cpu_runs=3, tree_deep_cpu_runs=1, tree_cap=10**8,
                tree_binding_cap=10**6),
    "sim": dict(n_weights=2000, n_draws=200, n_without=50, torch_n=512, torch_draws=100,
                big_n=2500, big_draws=100, repeats=1,
                tree_grid=2, tree_parity_level=2, tree_level=2, tree_deep_level=3,
                tree_cpu_runs=1, tree_deep_cpu_runs=1, tree_cap=10**4,
                tree_binding_cap=60),
}["sim" if SIM else "gpu"]

#: (step, time budget in seconds) in the order they run.
STEPS = [("device", 45), ("parity_weights", 60), ("parity_sampling", 90),
         ("timing_weights", 40), ("timing_sampling", 70), ("timing_big", 60),
         ("timing_from_q", 40), ("tree_syncs", 40), ("tree", 90), ("tree_deep", 100),
         ("tests", 150)]


# ------------------------------------------------------------------ child-side helpers
class Recorder:
    """Results of one step, written to ``path`` after every entry (a killed step
    keeps what it had)."""

    def __init__(self, path: Path):
        self.path = path
        self.data = {"parity": {}, "timings": {}, "skipped": {}, "errors": {}, "info": {}}

    def save(self):
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=_jsonable))
        os.replace(tmp, self.path)

    def put(self, section, name, value):
        self.data[section][name] = value
        self.save()

    def check(self, name, fn):
        """parity[name] = bool(fn()); an exception records False and the traceback."""
        try:
            self.put("parity", name, bool(fn()))
        except Exception:
            self.data["errors"][name] = traceback.format_exc(limit=6)
            self.put("parity", name, False)

    def timing(self, name, fn):
        try:
            self.put("timings", name, fn())
        except Exception:
            self.put("errors", name, traceback.format_exc(limit=6))


def num(n: int) -> str:
    """A size for a result name: 1e7, 2^24, or the plain integer."""
    if n >= 1024 and n & (n - 1) == 0:
        return f"2^{n.bit_length() - 1}"
    k = len(str(n)) - 1
    return f"1e{k}" if n == 10**k and k >= 3 else str(n)


def _jsonable(obj):
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def sync():
    from numba import cuda
    cuda.synchronize()


def time_device(fn, repeats=None, warmup=None) -> dict:
    """Median/min/max seconds of fn() with the device synchronised around each run
    (one warm-up run on a GPU, none under the simulator)."""
    repeats = repeats or SIZES["repeats"]
    warmup = (0 if SIM else 1) if warmup is None else warmup
    for _ in range(warmup):
        fn()
        sync()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"median": times[len(times) // 2], "min": times[0], "max": times[-1],
            "runs": repeats}


def pool(n: int, seed: int = 7):
    """Q values uniform on [-2, 2) (zp_ref.rng, stream "pool"), host float64 (n,)."""
    from zp_ref.rng import STREAMS, uniforms
    return uniforms(seed, STREAMS["pool"], n, backend="cpu") * 4.0 - 2.0


def wide_weights(n: int, seed: int = 8):
    """Weights over 12 decades with 30% zeros (stream "pool", its own seed)."""
    from zp_ref.rng import STREAMS, uniforms
    u = uniforms(seed, STREAMS["pool"], 2 * n, backend="cpu")
    w = 10.0 ** (12.0 * u[:n])
    w[u[n:] < 0.3] = 0.0
    return w


# ------------------------------------------------------------------ the steps
def step_device(rec: Recorder):
    import numba
    from numba import cuda
    info = {"python": sys.version.split()[0], "numba": numba.__version__,
            "simulator": SIM, "sizes": SIZES}
    try:
        import numba_cuda
        info["numba_cuda"] = numba_cuda.__version__
    except ImportError:
        info["numba_cuda"] = None
    if SIM:
        info["name"] = "CUDA simulator"
    else:
        dev = cuda.get_current_device()
        name = dev.name
        info.update(name=name.decode() if isinstance(name, bytes) else str(name),
                    compute_capability=list(dev.compute_capability),
                    multiprocessors=int(dev.MULTIPROCESSOR_COUNT),
                    max_threads_per_block=int(dev.MAX_THREADS_PER_BLOCK))
        free, total = cuda.current_context().get_memory_info()
        info.update(memory_total_gib=total / 2**30, memory_free_gib=free / 2**30)
        try:
            info["driver_version"] = list(cuda.cudadrv.driver.driver.get_version())
        except Exception as exc:
            info["driver_version"] = repr(exc)
    from zp_ref.kernels.gpu_launch import device_shape
    info["launch_shape"] = list(device_shape())     # (threads per block, blocks)
    if SIM:
        info["torch"] = "not probed under the simulator"
        rec.data["info"]["device"] = info
        rec.save()
        return
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_cuda"] = bool(torch.cuda.is_available())
        if torch.cuda.is_available():
            info["torch_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch"] = None
    rec.data["info"]["device"] = info
    rec.save()


def step_parity_weights(rec: Recorder):
    import numpy as np
    from zp_ref.rng import uniforms
    from zp_ref.weighting import importance_weights
    n = SIZES["n_weights"]
    q = pool(n)
    q[::1009] = 0.0
    q[5::100003] = np.inf
    for p, temperature in ((2.0, 1.0), (1.0, 1.0), (1.5, 2.0)):
        name = f"weights_p{p:g}_T{temperature:g}_{num(n)}"
        rec.check(name, lambda: np.allclose(
            importance_weights(q, weight_power=p, temperature=temperature, backend="cuda"),
            importance_weights(q, weight_power=p, temperature=temperature, backend="cpu"),
            rtol=1e-12, atol=0))
    golden = ROOT.parent / "shared" / "golden" / "anchor_v1.json"
    golden = golden if golden.exists() else ROOT / "tests" / "data" / "anchor_v1.json"
    if golden.exists():
        def golden_ok():
            ok = True
            for case in json.loads(golden.read_text())["importance_weights"]:
                c = case["config"]
                got = importance_weights(np.array(case["q"]), backend="cuda", **c)
                ok &= np.allclose(got, case["weights"], rtol=1e-12, atol=0)
            return ok
        rec.check("weights_golden", golden_ok)
    else:
        rec.put("skipped", "weights_golden", "anchor_v1.json not found")
    rec.check(f"uniforms_{num(n)}", lambda: np.array_equal(
        uniforms(3, 0, n, backend="cuda"), uniforms(3, 0, n, backend="cpu")))


def step_parity_sampling(rec: Recorder):
    import numpy as np
    from zp_ref.sampling import sample_indices
    from zp_ref.weighting import importance_weights
    n, b = SIZES["n_weights"], SIZES["n_draws"]
    w = importance_weights(pool(n), backend="cpu")
    for seed in (0, 1):
        rec.check(f"draws_{num(b)}_from_{num(n)}_seed{seed}", lambda: np.array_equal(
            sample_indices(w, b, seed=seed, backend="cuda"),
            sample_indices(w, b, seed=seed, backend="cpu")))
    rec.check(f"draws_{num(b)}_from_{num(n)}_vs_numpy_oracle", lambda: np.array_equal(
        sample_indices(w, b, seed=2, backend="cuda"),
        sample_indices(w, b, seed=2, backend="numpy")))
    wide = wide_weights(n)
    rec.check(f"draws_{num(b)}_from_{num(n)}_dynamic_range_1e12_zeros", lambda: np.array_equal(
        sample_indices(wide, b, seed=3, backend="cuda"),
        sample_indices(wide, b, seed=3, backend="cpu")))
    m = SIZES["n_without"]
    try:
        reference = sample_indices(w, m, seed=4, replace=False, backend="cpu")
        ref_name = "cpu"
    except (ImportError, AttributeError):       # cpu kernel not there: the oracle
        reference = sample_indices(w, m, seed=4, replace=False, backend="numpy")
        ref_name = "numpy"
    rec.check(f"without_replacement_{num(m)}_from_{num(n)}_vs_{ref_name}", lambda: np.array_equal(
        sample_indices(w, m, seed=4, replace=False, backend="cuda"), reference))


def step_timing_weights(rec: Recorder):
    import numpy as np
    from numba import cuda
    from zp_ref.kernels.gpu_weights import importance_weights_device
    n = SIZES["n_weights"]
    q_dev = cuda.to_device(pool(n))
    out_dev = cuda.device_array(n, dtype=np.float64)
    moved = 16.0 * n                              # read q, write w: bytes per pass

    def rates(t, nbytes):
        return {**t, "bytes": nbytes, "GB_per_s": nbytes / t["median"] / 1e9}
    copy = rates(time_device(lambda: out_dev.copy_to_device(q_dev)), moved)
    rec.put("timings", f"device_to_device_copy_{num(n)}", copy)
    fused = rates(time_device(lambda: importance_weights_device(
        q_dev, 2.0, 1e-6, 100.0, 1.0, False, out_dev)), moved)
    fused["fraction_of_copy_bandwidth"] = fused["GB_per_s"] / copy["GB_per_s"]
    rec.put("timings", f"weights_kernel_{num(n)}_p2_unnormalised", fused)
    normalised = rates(time_device(lambda: importance_weights_device(
        q_dev, 2.0, 1e-6, 100.0, 1.0, True, out_dev)), 2 * moved)
    normalised["fraction_of_copy_bandwidth"] = normalised["GB_per_s"] / copy["GB_per_s"]
    rec.put("timings", f"weights_kernel_{num(n)}_p2_normalised", normalised)


def step_timing_sampling(rec: Recorder):
    import numpy as np
    from numba import cuda
    from zp_ref.kernels.gpu_sampling import sample_with_replacement_device
    from zp_ref.rng import key_of
    from zp_ref.sampling import sample_indices
    from zp_ref.weighting import importance_weights
    n, b = SIZES["torch_n"], SIZES["torch_draws"]
    w = importance_weights(pool(n, seed=9), backend="cpu")
    w_dev = cuda.to_device(w)
    out = cuda.device_array(b, dtype=np.int64)
    key = key_of(5, 0)
    ours = time_device(lambda: sample_with_replacement_device(w_dev, b, key, out_dev=out))
    ours["draws_per_s"] = b / ours["median"]
    rec.put("timings", f"ours_{num(b)}_draws_from_{num(n)}", ours)
    rec.check(f"draws_{num(b)}_from_{num(n)}_vs_cpu", lambda: np.array_equal(
        out.copy_to_host(), sample_indices(w, b, seed=5, backend="cpu")))
    if SIM:
        rec.put("skipped", "torch_multinomial", "simulator: no CUDA device for torch")
        return
    try:
        import torch
        if not torch.cuda.is_available():
            raise ImportError("torch has no CUDA device")
    except ImportError as exc:
        rec.put("skipped", "torch_multinomial", repr(exc))
        return
    w_t = torch.from_numpy(w).cuda()
    gen = torch.Generator(device="cuda").manual_seed(5)

    def torch_draws(weights):
        torch.multinomial(weights, b, replacement=True, generator=gen)
        torch.cuda.synchronize()
    for dtype in (torch.float64, torch.float32):
        def timed(wt=w_t.to(dtype)):
            t = time_device(lambda: torch_draws(wt))
            return {**t, "draws_per_s": b / t["median"],
                    "ours_speedup": t["median"] / ours["median"]}
        rec.timing(f"torch_multinomial_{num(b)}_from_{num(n)}_{str(dtype).split('.')[-1]}", timed)
    rec.check("torch_tensor_input_zero_copy", lambda: np.array_equal(
        sample_with_replacement_device(w_t, b, key).copy_to_host(), out.copy_to_host()))


def step_timing_from_q(rec: Recorder):
    """sample_from_q on the device (block totals from q, weights recomputed only in the
    blocks that draws land in) against the two-step weights + draws, both device-resident."""
    import numpy as np
    from numba import cuda
    from zp_ref.kernels.cpu_weights import power_mode
    from zp_ref.kernels.gpu_sample_from_q import block_ends_from_q_device, draws_from_q_device
    from zp_ref.kernels.gpu_sampling import sample_with_replacement_device
    from zp_ref.kernels.gpu_weights import importance_weights_device
    from zp_ref.rng import key_of
    from zp_ref.sampling_from_q import sample_from_q
    n, b = SIZES["torch_n"], SIZES["torch_draws"]
    q = pool(n, seed=10)
    q_dev, w_dev = cuda.to_device(q), cuda.device_array(n, dtype=np.float64)
    out = cuda.device_array(b, dtype=np.int64)
    params, key = (2.0, power_mode(2.0), 1e-6, 100.0, 1.0), key_of(6, 0)

    def from_q():
        ends, total, _, last = block_ends_from_q_device(q_dev, params)
        return draws_from_q_device(q_dev, params, ends, total, last, b, key)

    def two_step():
        importance_weights_device(q_dev, 2.0, 1e-6, 100.0, 1.0, False, w_dev)
        return sample_with_replacement_device(w_dev, b, key, out_dev=out)
    ours = time_device(from_q)
    base = time_device(two_step)
    rec.put("timings", f"sample_from_q_{num(b)}_from_{num(n)}",
            {**ours, "two_step_median": base["median"],
             "speedup_vs_two_step": base["median"] / ours["median"]})
    rec.check(f"sample_from_q_{num(b)}_from_{num(n)}_vs_cpu", lambda: np.array_equal(
        from_q().copy_to_host(), sample_from_q(q, b, seed=6, backend="cpu")))
    rec.check(f"two_step_{num(b)}_from_{num(n)}_equals_from_q", lambda: np.array_equal(
        two_step().copy_to_host(), from_q().copy_to_host()))


def step_timing_big(rec: Recorder):
    import numpy as np
    from numba import cuda
    from zp_ref.kernels.gpu_sampling import sample_with_replacement_device
    from zp_ref.kernels.gpu_weights import importance_weights_device
    from zp_ref.rng import key_of
    from zp_ref.sampling import sample_indices
    n, b = SIZES["big_n"], SIZES["big_draws"]
    w_dev = cuda.device_array(n, dtype=np.float64)
    q_dev = cuda.to_device(pool(n, seed=10))
    importance_weights_device(q_dev, 2.0, 1e-6, 100.0, 1.0, False, w_dev)
    del q_dev
    out = cuda.device_array(b, dtype=np.int64)
    key = key_of(6, 0)
    t = time_device(lambda: sample_with_replacement_device(w_dev, b, key, out_dev=out))
    t["draws_per_s"] = b / t["median"]
    t["weights_per_s"] = n / t["median"]
    rec.put("timings", f"ours_{num(b)}_draws_from_{num(n)}", t)
    rec.check(f"draws_{num(b)}_from_{num(n)}_vs_cpu", lambda: np.array_equal(
        out.copy_to_host(), sample_indices(w_dev.copy_to_host(), b, seed=6, backend="cpu")))
    if SIM:
        return
    try:
        import torch
        torch.multinomial(torch.ones(n, device="cuda"), 10, replacement=True)
        rec.put("info", "torch_multinomial_1e8", "accepted")
    except ImportError:
        pass
    except Exception as exc:     # expected: torch.multinomial stops at 2**24 categories
        rec.put("info", "torch_multinomial_1e8", f"refused: {str(exc).splitlines()[0]}")


def _tree(backend, level, grid, cap, *, run=True):
    """The 2-D tree of benchmarks/bench_refinement.py: the zero curves of the degree-6
    catalogue polynomial, ``criterion="sign"`` (level 12: about 1.35e6 leaves), refined
    unless ``run`` is False."""
    from zp_ref import problems
    from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
    prob = problems.get("bivariate_deg6_2d")
    config = ActiveSamplerConfig(initial_grid_size=grid, grid_bounds=prob.bounds,
                                 max_refinement_level=level, max_grid_points=cap,
                                 criterion="sign")
    s = ActiveSampler(config, q=prob.q, input_dim=2, backend=backend)
    return s.refine() if run else s


def _same_leaves(a, b) -> bool:
    """The two samplers' leaves are identical."""
    la, lb = a.leaves(), b.leaves()
    return la.keys() == lb.keys() and all(np.array_equal(la[k], lb[k], equal_nan=True)
                                          for k in la)


def _importable_cuda_refinement(rec: Recorder) -> bool:
    try:
        import zp_ref.refinement.cuda  # noqa: F401
    except ImportError as exc:
        rec.put("skipped", "tree", f"refinement on cuda not importable: {exc!r}")
        return False
    return True


def step_tree_syncs(rec: Recorder):
    """Host synchronisations (device-to-host copies) of each round of the cuda engine,
    round by round, on the parity-level tree; its leaves against the cpu backend's
    (this also compiles the kernels the timed steps use)."""
    if not _importable_cuda_refinement(rec):
        return
    level, grid, cap = SIZES["tree_parity_level"], SIZES["tree_grid"], SIZES["tree_cap"]
    s = _tree("cuda", level, grid, cap, run=False)
    per_round = []
    while True:
        before = s._engine.sync_count
        s.refine(max_rounds=1)
        per_round.append(s._engine.sync_count - before)
        if s.refinement_history[-1]["n_refined"] == 0:
            break
    rec.put("info", "tree_syncs_per_round", {
        "level": level, "n_leaves": int(s.get_statistics()["n_leaves"]),
        "per_round": per_round, "max": max(per_round)})
    rec.check(f"tree_2d_syncs_per_round_level{level}_at_most_2", lambda: max(per_round) <= 2)
    rec.check(f"tree_2d_leaves_level{level}_cuda_vs_cpu",
              lambda: _same_leaves(s, _tree("cpu", level, grid, cap)))


def _tree_at(rec: Recorder, level: int, cpu_runs: int):
    """cuda against the median of ``cpu_runs`` cpu runs at ``level``: construction and
    ``refine()`` timed, the host views (statistics, leaves) not; each backend compiled
    first on a level-2 tree on a GPU (a step is a fresh process). Leaves identical; the
    cuda run's host syncs and rounds."""
    grid, cap, built = SIZES["tree_grid"], SIZES["tree_cap"], {}
    for backend, runs in (("cuda", 1 if SIM else 2), ("cpu", cpu_runs)):
        stats = {}
        if not SIM:         # the simulator compiles nothing
            _tree(backend, 2, grid, cap)

        def build(backend=backend, stats=stats):
            s = _tree(backend, level, grid, cap)     # construction + refine(): the timed part
            built[backend] = s
            if backend == "cuda":
                stats["host_syncs"] = s._engine.sync_count
                stats["rounds"] = len(s.refinement_history)

        def timed(build=build, stats=stats, runs=runs, backend=backend):
            t = time_device(build, repeats=runs, warmup=0)
            info = built[backend].get_statistics()     # host views: not timed
            return {**t, **stats, "n_leaves": info["n_leaves"],
                    "n_evaluations": info["n_evaluations"]}
        rec.timing(f"tree_2d_deg6_level{level}_{backend}", timed)
    t, key = rec.data["timings"], f"tree_2d_deg6_level{level}"
    if f"{key}_cuda" in t and f"{key}_cpu" in t:
        t[f"{key}_cuda"]["cpu_median_over_cuda"] = (t[f"{key}_cpu"]["median"]
                                                    / t[f"{key}_cuda"]["median"])
        rec.save()
    if "cuda" in built and "cpu" in built:
        rec.check(f"tree_2d_leaves_level{level}_cuda_vs_cpu",
                  lambda: _same_leaves(built["cuda"], built["cpu"]))


def step_tree(rec: Recorder):
    if _importable_cuda_refinement(rec):
        _tree_at(rec, SIZES["tree_level"], cpu_runs=SIZES["tree_cpu_runs"])
        _capped_tree(rec, SIZES["tree_level"], SIZES["tree_binding_cap"])


def _capped_tree(rec: Recorder, level: int, cap: int):
    """The tree under a binding ``max_grid_points`` (the urgency order and prefix on the
    device: a radix sort above gpu_cap.RANK_MAX candidates): one timed run per backend,
    leaves identical, the cuda run's host syncs."""
    grid, built, name = SIZES["tree_grid"], {}, f"tree_2d_deg6_level{level}_cap{num(cap)}"
    for backend in ("cuda", "cpu"):
        def timed(backend=backend):
            t = time_device(lambda: built.__setitem__(backend, _tree(backend, level, grid, cap)),
                            repeats=1, warmup=0)
            s = built[backend]
            extra = {"capped_rounds": sum(h["capped"] for h in s.refinement_history)}
            if backend == "cuda":
                extra.update(host_syncs=s._engine.sync_count, rounds=len(s.refinement_history))
            return {**t, **extra}
        rec.timing(f"{name}_{backend}", timed)
    if "cuda" in built and "cpu" in built:
        rec.check(f"{name}_leaves_cuda_vs_cpu",
                  lambda: _same_leaves(built["cuda"], built["cpu"]))


def step_tree_deep(rec: Recorder):
    if _importable_cuda_refinement(rec):
        _tree_at(rec, SIZES["tree_deep_level"], cpu_runs=SIZES["tree_deep_cpu_runs"])


def _pytest(rec: Recorder, name, args, timeout):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        tail = (res.stdout + res.stderr).strip().splitlines()
        summary = {"command": " ".join(cmd[1:]), "returncode": res.returncode,
                   "seconds": time.perf_counter() - t0, "last_lines": tail[-15:]}
        ok = res.returncode == 0 or (res.returncode == 5 and name == "pytest_cuda_selected")
    except subprocess.TimeoutExpired:
        summary = {"command": " ".join(cmd[1:]), "returncode": None, "timeout_s": timeout}
        ok = False
    rec.data["info"][name] = summary
    rec.put("parity", name, ok)


def step_tests(rec: Recorder):
    deadline = time.monotonic() + float(os.environ.get("ZP_GPU_CHECK_STEP_BUDGET", "140"))
    if SIM:      # the full file runs in CI anyway: one quick test shows the step works
        _pytest(rec, "pytest_gpu_kernels", ["tests/test_gpu_kernels.py", "-k", "uniforms_empty"],
                max(5.0, deadline - time.monotonic()))
        return
    tests = ROOT / "tests"
    files = sorted({str(p.relative_to(ROOT)) for pat in ("test_*gpu*.py", "test_*cuda*.py")
                    for p in tests.glob(pat) if p.name != "test_gpu_check.py"})
    _pytest(rec, "pytest_gpu_kernels", files, max(5.0, (deadline - time.monotonic()) * 0.5))
    ignore = [f"--ignore={f}" for f in files + ["tests/test_gpu_check.py"]]
    _pytest(rec, "pytest_cuda_selected", ["tests", "-k", "cuda or gpu", *ignore],
            max(5.0, deadline - time.monotonic() - 2.0))


STEP_FUNCTIONS = {name[5:]: fn for name, fn in globals().items() if name.startswith("step_")}


# ------------------------------------------------------------------ the parent
def run_all() -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"device": None, "mode": "sim" if SIM else "gpu",
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "parity": {}, "timings": {},
              "skipped": {}, "errors": {}, "info": {}, "steps": {}, "tests": {}}
    path = OUT / "gpu_check.json"

    def save():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=_jsonable))
        os.replace(tmp, path)
    save()
    t_start = time.monotonic()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    for step, budget in STEPS:
        left = TOTAL_BUDGET - (time.monotonic() - t_start)
        if step != "tests":
            left -= TESTS_RESERVE
        timeout = min(budget, left)
        if timeout < 5:
            report["steps"][step] = {"status": "skipped", "why": "no time left"}
            save()
            continue
        part = OUT / f".step_{step}.json"
        part.unlink(missing_ok=True)
        t0 = time.monotonic()
        try:
            res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--step", step,
                                  str(part)], cwd=ROOT, env={**env, "ZP_GPU_CHECK_STEP_BUDGET":
                                                            str(timeout - 5)},
                                 capture_output=True, text=True, timeout=timeout)
            status = "ok" if res.returncode == 0 else f"failed (exit {res.returncode})"
            log = (res.stdout + res.stderr).strip()
        except subprocess.TimeoutExpired as exc:
            status = f"timeout after {timeout:.0f} s"
            log = ((exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes)
                   else (exc.stdout or "")) + ((exc.stderr or b"").decode(errors="replace")
                                               if isinstance(exc.stderr, bytes)
                                               else (exc.stderr or ""))
        report["steps"][step] = {"status": status, "seconds": round(time.monotonic() - t0, 2)}
        if status != "ok" and log:
            report["steps"][step]["log_tail"] = log.splitlines()[-25:]
        if part.exists():
            try:
                data = json.loads(part.read_text())
            except ValueError as exc:
                data = {"errors": {step: f"unreadable step result: {exc}"}}
            for section in ("parity", "timings", "skipped", "errors", "info"):
                report[section].update(data.get(section, {}))
            part.unlink()
        if step == "device":
            report["device"] = report["info"].pop("device", None)
        if step == "tests":
            report["tests"] = {k: report["info"].pop(k) for k in
                               ("pytest_gpu_kernels", "pytest_cuda_selected")
                               if k in report["info"]}
        save()
    report["seconds"] = round(time.monotonic() - t_start, 1)
    report["all_parity_true"] = bool(report["parity"]) and all(report["parity"].values())
    save()
    return report


def summary(report: dict) -> str:
    dev = report.get("device") or {}
    lines = [f"device: {dev.get('name')} (mode {report['mode']}), {report.get('seconds')} s"]
    lines += [f"step {k}: {v['status']} {v.get('seconds', '')}" for k, v in report["steps"].items()]
    lines += [f"parity {k}: {v}" for k, v in report["parity"].items()]
    for k, v in report["timings"].items():
        extra = ", ".join(f"{e}={v[e]:.4g}" for e in ("GB_per_s", "fraction_of_copy_bandwidth",
                                                        "draws_per_s", "ours_speedup",
                                                        "cpu_median_over_cuda", "n_leaves",
                                                        "host_syncs", "rounds")
                          if isinstance(v.get(e), (int, float)))
        lines.append(f"timing {k}: median {v['median'] * 1e3:.3f} ms "
                     f"[{v['min'] * 1e3:.3f}, {v['max'] * 1e3:.3f}] {extra}")
    syncs = report["info"].get("tree_syncs_per_round")
    if syncs:
        lines.append(f"host syncs per round (level {syncs['level']}): max {syncs['max']}, "
                     f"{syncs['per_round']}")
    lines += [f"skipped {k}: {v}" for k, v in report["skipped"].items()]
    lines += [f"error {k}: {v.strip().splitlines()[-1]}" for k, v in report["errors"].items()]
    return "\n".join(lines)


def main(argv) -> int:
    if len(argv) == 3 and argv[0] == "--step":
        rec = Recorder(Path(argv[2]))
        rec.save()
        try:
            if argv[1] not in STEP_FUNCTIONS:
                raise KeyError(f"no step {argv[1]!r}; steps: {sorted(STEP_FUNCTIONS)}")
            STEP_FUNCTIONS[argv[1]](rec)
        except Exception:
            rec.put("errors", argv[1], traceback.format_exc(limit=8))
            return 1
        return 0
    report = run_all()
    print(summary(report))
    print(f"wrote {OUT / 'gpu_check.json'}")
    return 0 if report["all_parity_true"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
