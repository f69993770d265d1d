"""The benchmark suite behind ``zp-ref bench``: a timing harness, the sampling
benchmark of the contract, the machine description and one ratio table.

Every figure is the median of several timed runs after a warm-up (which also
compiles the Numba kernels), with min and max. A benchmark is a function
``run(quick: bool) -> list[dict]`` returning rows of this schema (JSON-able)::

    {"benchmark": "sampling", "case": "weights + draws, N=1e7, B=1e6, p=2",
     "ours": timing, "baseline": "NumPy Generator.choice", "baseline_time": timing,
     "ratio": baseline median / ours median  (> 1: ours is faster),
     "target": 30.0 (the ratio the contract asks for, or None), "met": bool | None,
     "note": str}

with ``timing = {"median": s, "min": s, "max": s, "runs": int}`` (seconds). The
refinement benchmark lives in ``benchmarks/bench_refinement.py`` of a checkout (it
needs python-adaptive) and joins the table when it is found.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from ..rng import STREAMS

#: Stream of zp_ref.rng used to build benchmark inputs (``STREAMS["pool"]``).
BENCH_STREAM = STREAMS["pool"]
SCHEMA = "zp_ref.bench/1"


# ------------------------------------------------------------------ harness
def time_call(fn, repeats: int, warmup: int = 1) -> dict:
    """Run ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "runs": repeats}


def ratio_row(benchmark, case, ours, baseline, baseline_time, target=None, note="") -> dict:
    """A table row; ``ratio`` = baseline median / ours median."""
    ratio = baseline_time["median"] / ours["median"] if baseline_time else None
    return {"benchmark": benchmark, "case": case, "ours": ours, "baseline": baseline,
            "baseline_time": baseline_time, "ratio": ratio, "target": target,
            "met": None if target is None or ratio is None else bool(ratio >= target),
            "note": note}


def _blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        env = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                          "MKL_NUM_THREADS") if k in os.environ}
        return (", ".join(f"{k}={v}" for k, v in env.items()) or "library default") + \
            " (threadpoolctl not installed)"
    return ", ".join(f"{i.get('internal_api')}: {i.get('num_threads')}"
                     for i in threadpool_info()) or "no BLAS loaded"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Cores, load, library versions and thread counts of this machine."""
    import numba
    info = {"cpu": _cpu_model(), "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "numba_threads": numba.get_num_threads(),
            "blas_threads": _blas_threads(), "platform": platform.platform()}
    try:
        import torch
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:
        info["torch"] = None
    return info


# ------------------------------------------------------------------ sampling benchmark
def _pool(n: int) -> np.ndarray:
    """A pool of Q values: uniform on [-2, 2) from zp_ref.rng (stream BENCH_STREAM)."""
    from ..rng import uniforms
    return uniforms(2026, BENCH_STREAM, n, backend="cpu") * 4.0 - 2.0


def sampling_benchmarks(quick: bool = False, *, n_pool: int = 10**7, n_draws: int = 10**6,
                        repeats: int | None = None) -> list:
    """The contract's sampling benchmark (N=1e7 pool, B=1e6 draws, p=2): ours
    (``importance_weights(out=...)`` + ``sample_indices``, cpu backend) against NumPy
    (the oracle's weights, then ``Generator.choice(N, B, p=w)``) and PyTorch CPU
    (weights in torch, then ``torch.multinomial(w, B, replacement=True)``), and the
    weight pass alone against ``np.sum(q)`` (the memory-bound floor)."""
    from ..sampling import sample_indices
    from ..weighting import importance_weights

    repeats = repeats or (3 if quick else 7)
    q = _pool(n_pool)
    w_buf = np.empty_like(q)
    config = dict(weight_power=2.0, min_q_abs=1e-6, max_weight=100.0)
    case = f"weights + {n_draws:.0e} draws, N={n_pool:.0e}, p=2".replace("e+0", "e")

    def ours():
        importance_weights(q, out=w_buf, backend="cpu", **config)
        return sample_indices(w_buf, n_draws, seed=1, backend="cpu")

    def numpy_choice():
        w = importance_weights(q, backend="numpy", **config)
        return np.random.default_rng(1).choice(n_pool, n_draws, p=w)

    base_warmup = 0 if quick else 1       # baselines compile nothing: no warm-up when quick
    rows = []
    t_ours = time_call(ours, repeats)
    rows.append(ratio_row("sampling", case, t_ours, "NumPy weights + Generator.choice",
                          time_call(numpy_choice, repeats, base_warmup), target=30.0))
    try:
        import torch
    except ImportError:
        rows.append(ratio_row("sampling", case, t_ours, "PyTorch CPU multinomial", None,
                              target=12.0, note="torch not installed"))
    else:
        q_t = torch.from_numpy(q)
        gen = torch.Generator().manual_seed(1)

        def torch_multinomial():
            w = torch.clamp(1.0 / torch.clamp(q_t.abs(), min=1e-6) ** 2, max=100.0)
            return torch.multinomial(w / w.sum(), n_draws, replacement=True, generator=gen)
        rows.append(ratio_row("sampling", case, t_ours, "PyTorch CPU weights + multinomial",
                              time_call(torch_multinomial, repeats, base_warmup), target=12.0,
                              note=f"torch {torch.__version__}, {torch.get_num_threads()} threads"))
    rows.append(ratio_row(
        "sampling", f"weight pass alone, N={n_pool:.0e}".replace("e+0", "e"),
        time_call(lambda: importance_weights(q, out=w_buf, backend="cpu", **config), repeats),
        "np.sum(q) (memory-bound floor)", time_call(lambda: np.sum(q), repeats), target=0.25,
        note="target: within 4x of np.sum"))
    rows.append(ratio_row(
        "sampling", case.replace("weights + ", "") + " (draws alone)",
        time_call(lambda: sample_indices(w_buf, n_draws, seed=1, backend="cpu"), repeats),
        None, None, note="sample_indices on precomputed weights"))
    return rows


# ------------------------------------------------------------------ suite
def _refinement_module():
    """benchmarks/bench_refinement.py of the checkout holding this package, or of the
    working directory; None when neither exists."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        path = root / "benchmarks" / "bench_refinement.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location("zp_ref_bench_refinement", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    return None


BENCHMARKS = ("sampling", "refinement")


def run_suite(quick: bool = False, include=BENCHMARKS) -> dict:
    """The benchmarks named in ``include``: {"schema", "quick", "machine", "rows",
    "notes", "seconds"}."""
    t0 = time.perf_counter()
    machine = machine_info()
    rows, notes = [], []
    if "sampling" in include:
        rows.extend(sampling_benchmarks(quick))
    if "refinement" in include:
        try:
            module = _refinement_module()
            if module is None:
                notes.append("refinement: benchmarks/bench_refinement.py not found (run from "
                             "a checkout of zp_ref to include it)")
            else:
                rows.extend(module.run(quick))
        except Exception as exc:  # a broken benchmark must not hide the other figures
            notes.append(f"refinement: benchmarks/bench_refinement.py failed: {exc!r}")
    machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {"schema": SCHEMA, "quick": bool(quick), "machine": machine, "rows": rows,
            "notes": notes, "seconds": time.perf_counter() - t0}


def _fmt_time(t) -> str:
    if not isinstance(t, dict) or "median" not in t:
        return "-"
    def f(s):
        return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"
    return f"{f(t['median'])} [{f(t['min'])}, {f(t['max'])}]"


def format_table(result: dict) -> str:
    """The suite's result as a plain-text table, the machine above it."""
    m = result["machine"]
    lines = [f"machine: {m['cpu']}, {m['usable_cores']} usable cores, load "
             f"{' '.join(f'{x:.2f}' for x in (m.get('load_average') or []))}",
             f"python {m['python']}, numpy {m['numpy']}, numba {m['numba']} "
             f"({m['numba_threads']} threads), torch {m.get('torch')}, BLAS {m['blas_threads']}",
             ""]
    header = ("benchmark", "case", "ours: median [min, max]", "baseline",
              "baseline: median [min, max]", "ratio", "target", "met")
    table = [header]
    for r in result["rows"]:
        ratio, target = r.get("ratio"), r.get("target")
        table.append((str(r.get("benchmark", "")), str(r.get("case", r.get("name", ""))),
                      _fmt_time(r.get("ours")), str(r.get("baseline") or "-"),
                      _fmt_time(r.get("baseline_time")),
                      "-" if ratio is None else f"{ratio:.3g}x",
                      "-" if target is None else f">= {target:.3g}x",
                      {True: "yes", False: "NO", None: "-"}[r.get("met")]))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for k, row in enumerate(table):
        lines.append("  ".join(c.ljust(wd) for c, wd in zip(row, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * wd for wd in widths))
    notes = [f"{r.get('case', '')}: {r['note']}" for r in result["rows"] if r.get("note")]
    lines += [""] + [f"note: {n}" for n in notes + result["notes"]]
    lines.append(f"({'quick' if result['quick'] else 'full'} run, {result['seconds']:.0f} s; "
                 "ratio = baseline time / our time)")
    return "\n".join(lines)


def _jsonable(obj):
    """NumPy scalars and arrays in a benchmark's rows as plain JSON values."""
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zp-ref bench", description="zp_ref benchmark suite")
    p.add_argument("--quick", action="store_true", help="fewer repeats (under two minutes)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p


def check_json_path(text) -> Path:
    """The ``--json`` target, refused (ValueError) before any benchmark runs when it is a
    folder or its folder cannot be created or written."""
    from ._args import check_writable_folder
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"--json {str(text)!r} is a folder; give a file path")
    check_writable_folder(path.parent, "--json folder")
    return path


def bench_command(args=None, include=BENCHMARKS) -> str:
    """Run the suite, write JSON when asked, return the report (table, notes) for the
    caller to show. ``args``: an argv list (None: sys.argv[1:]) or a namespace with
    ``quick`` and ``json``."""
    if args is None or isinstance(args, (list, tuple)):
        args = _parser().parse_args(sys.argv[1:] if args is None else list(args))
    path = getattr(args, "json", None)
    path = check_json_path(path) if path else None
    result = run_suite(bool(getattr(args, "quick", False)), include)
    report = format_table(result)
    if path:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=_jsonable))
        os.replace(tmp, path)
        report += f"\nwrote {path}"
    return report
