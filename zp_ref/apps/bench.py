"""The benchmark suite behind ``zp-ref bench``: a timing harness, the sampling
benchmark of the contract, the machine description and one ratio table.

Every figure is the **median** of several timed calls after warm-up calls (which also
load or compile the Numba kernels), with the spread (quartiles, max) and the minimum as
an extra figure only; every ratio is computed from medians measured in the same run. A
benchmark is a function ``run(quick: bool) -> list[dict]`` returning rows of this
schema (JSON-able)::

    {"benchmark": "sampling", "case": "default call ...", "ours": timing,
     "baseline": "NumPy weights + Generator.choice", "baseline_time": timing,
     "ratio": baseline median / ours median  (> 1: ours is faster),
     "target": 40.0 (the ratio the contract asks for, or None), "met": bool | None,
     "load": [1, 5, 15 min load average when the row was measured],
     "other_cpu": cores other processes kept busy while our calls were timed (or None),
     "note": str}

with ``timing = {"median", "q1", "q3", "min", "max": s, "runs", "warmup": int,
"times": [s, ...]}`` (seconds). The first-call rows (a fresh process, warm and cold
Numba cache) and the refinement rows live in ``benchmarks/bench_first_call.py`` and
``benchmarks/bench_refinement.py`` of a checkout and join the table when found.
"""
from __future__ import annotations

import argparse
import importlib.util
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
SCHEMA = "zp_ref.bench/2"
#: Timed calls and warm-up calls of our functions (full run, quick run).
REPEATS, QUICK_REPEATS = 7, 3
WARMUP, QUICK_WARMUP = 4, 2
#: Weight parameters of the sampling rows (zp_ref's defaults, spelled out for the peers).
CONFIG = dict(weight_power=2.0, min_q_abs=1e-6, max_weight=100.0)
#: (our call, peer) -> the ratio the contract asks for (peer median / our median).
TARGETS = {("default", "numpy_choice"): 40.0, ("default", "torch"): 18.0,
           ("default", "scipy_guide"): 10.0, ("sample_from_q", "numpy_choice"): 60.0,
           ("sample_from_q", "scipy_guide"): 15.0, ("weights", "np_sum"): 1 / 2.5,
           ("weights_out", "np_sum"): 1 / 2.0}


# ------------------------------------------------------------------ harness
def timing(times, warmup: int = 0) -> dict:
    """Median, quartiles, min and max of ``times`` (seconds), with the raw times."""
    times = [float(t) for t in times]
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 \
        else (times[0], None, times[0])
    return {"median": statistics.median(times), "q1": q1, "q3": q3, "min": min(times),
            "max": max(times), "runs": len(times), "warmup": warmup, "times": times}


def time_call(fn, repeats: int, warmup: int = 1) -> dict:
    """Run ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed: ``timing``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return timing(times, warmup)


def load_average() -> list | None:
    """The 1, 5 and 15 minute load averages (``uptime``), None where unknown."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _machine_busy_seconds() -> float | None:
    """CPU seconds every process of the machine has used since boot (/proc/stat: user,
    nice, system, irq, softirq); None where /proc/stat is not readable."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:8]]
        return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and of its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def other_cpu_start() -> tuple:
    """The start of an :func:`other_cpu` measurement."""
    return _machine_busy_seconds(), _own_cpu_seconds(), time.perf_counter()


def other_cpu(start) -> float | None:
    """Cores that other processes kept busy since ``start`` (:func:`other_cpu_start`): the
    machine's CPU seconds less ours, per second of wall time; None where unknown.

    The load average cannot tell a quiet machine: it counts the benchmark itself, and a
    job in another container (or niced) takes a core from our parallel kernels all the
    same. About 0 on a quiet machine; 1.0: one core was taken all along, and our
    two-thread kernels ran at their one-thread speed."""
    busy0, own0, t0 = start
    busy1, wall = _machine_busy_seconds(), time.perf_counter() - t0
    if busy0 is None or busy1 is None or wall <= 0:
        return None
    return round(max(0.0, (busy1 - busy0) - (_own_cpu_seconds() - own0)) / wall, 2)


def ratio_row(benchmark, case, ours, baseline, baseline_time, target=None, note="") -> dict:
    """A table row; ``ratio`` = baseline median / ours median; ``load`` = now;
    ``other_cpu`` = ``ours["other_cpu"]`` (set by the timing harness) or None."""
    ratio = baseline_time["median"] / ours["median"] if baseline_time else None
    return {"benchmark": benchmark, "case": case, "ours": ours, "baseline": baseline,
            "baseline_time": baseline_time, "ratio": ratio, "target": target,
            "met": None if target is None or ratio is None else bool(ratio >= target),
            "load": load_average(),
            "other_cpu": ours.get("other_cpu") if isinstance(ours, dict) else None, "note": note}


def _blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        env = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                          "MKL_NUM_THREADS") if k in os.environ}
        return (", ".join(f"{k}={v}" for k, v in env.items()) or "library default") + \
            " (threadpoolctl not installed)"
    return ", ".join(f"{i.get('internal_api')}: {i.get('num_threads')}"
                     f" ({i.get('architecture')})"
                     for i in threadpool_info()) or "no BLAS loaded"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _hugepages() -> str | None:
    """The transparent huge page mode (Linux), e.g. ``always [madvise] never``."""
    try:
        return Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        return None


def machine_info() -> dict:
    """Cores, load, library versions, thread counts and the environment that changes
    NumPy's speed (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE) of this machine."""
    import numba

    from ..kernels import threading_layer
    info = {"cpu": _cpu_model(), "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "load_average": load_average(),
            "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "numba_threads": numba.get_num_threads(),
            "numba_threading_layer": threading_layer(),
            "blas_threads": _blas_threads(), "platform": platform.platform(),
            "transparent_hugepage": _hugepages(),
            "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE",
                                                            "OPENBLAS_L2_SIZE")}}
    try:
        import scipy
        info["scipy"] = scipy.__version__
    except ImportError:
        info["scipy"] = None
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


def peer_calls(q, w, n_draws) -> dict:
    """The CPU peers, each as a user would run it: peer key -> (label, callable, or
    None when the library is missing). ``w``: our unnormalised weights of ``q``, the
    input of scipy's generators (their weight pass is not counted)."""
    from ..weighting import importance_weights

    def numpy_choice():
        p = importance_weights(q, backend="numpy", **CONFIG)
        return np.random.default_rng(1).choice(q.size, n_draws, p=p)

    def cumsum_searchsorted():
        c = np.cumsum(importance_weights(q, normalize=False, backend="numpy", **CONFIG))
        return np.searchsorted(c, np.random.default_rng(1).random(n_draws) * c[-1], "right")

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
            return torch.multinomial(wt / wt.sum(), n_draws, replacement=True, generator=gen)
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
                                w, random_state=np.random.default_rng(1)).rvs(n_draws)),
            "scipy_alias": ("scipy DiscreteAliasUrn (setup + draws)",
                            lambda: DiscreteAliasUrn(
                                w, random_state=np.random.default_rng(1)).rvs(n_draws)),
            "scipy_guide_rvs": ("scipy DiscreteGuideTable.rvs alone",
                                lambda: built.rvs(n_draws))})
    peers["np_sum"] = ("np.sum(q) (memory-bound floor)", lambda: np.sum(q))
    return peers


def our_calls(q, n_draws) -> dict:
    """Our calls of the sampling rows: key -> (label, callable)."""
    from ..sampling import sample_indices
    from ..sampling_from_q import sample_from_q
    from ..weighting import importance_weights
    w_buf = np.empty_like(q)
    return {
        "default": ("default call: sample_indices(importance_weights(q), B, seed=1)",
                    lambda: sample_indices(importance_weights(q), n_draws, seed=1)),
        "sample_from_q": ("sample_from_q(q, B, seed=1) (no weight array)",
                          lambda: sample_from_q(q, n_draws, seed=1)),
        "weights": ("weight pass importance_weights(q), allocating",
                    lambda: importance_weights(q)),
        "weights_out": ("weight pass importance_weights(q, out=w)",
                        lambda: importance_weights(q, out=w_buf)),
        "draws": ("draws alone: sample_indices(w, B, seed=1) on stored weights",
                  lambda: sample_indices(w_buf, n_draws, seed=1)),
    }


#: Which peers each of our calls is compared with in the contract's table.
PEERS_OF = {"default": ("numpy_choice", "torch", "scipy_guide"),
            "sample_from_q": ("numpy_choice", "torch", "scipy_guide"),
            "weights": ("np_sum",), "weights_out": ("np_sum",), "draws": ()}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def compare(ours: dict, peers: dict, peers_of: dict, targets: dict, quick: bool,
            benchmark: str = "sampling", repeats: int | None = None) -> list:
    """Time every call of ``ours`` and each peer it is compared with, interleaved: after
    the warm-up calls (WARMUP for ours, one per peer), each of ``repeats`` rounds times
    every call once (ours right after one untimed call of itself, as in a loop), so a
    change of the machine's load during the run reaches both sides of every ratio.
    Returns rows whose ratios are medians over medians, each with the cores other
    processes kept busy during the rounds (:func:`other_cpu`)."""
    repeats = repeats or (QUICK_REPEATS if quick else REPEATS)
    warmup = QUICK_WARMUP if quick else WARMUP
    used = [p for key in ours for p in peers_of.get(key, ()) if peers[p][1] is not None]
    used = list(dict.fromkeys(used))
    for _, fn in ours.values():
        for _ in range(warmup):
            fn()
    if not quick:
        for peer in used:
            peers[peer][1]()
    times = {("ours", k): [] for k in ours} | {("peer", p): [] for p in used}
    start = other_cpu_start()
    for _ in range(repeats):
        for key, (_, fn) in ours.items():
            fn()
            times["ours", key].append(_timed(fn))
        for peer in used:
            times["peer", peer].append(_timed(peers[peer][1]))
    others = other_cpu(start)
    peer_times = {p: timing(times["peer", p], 0 if quick else 1) for p in used}
    rows = []
    for key, (label, _) in ours.items():
        t_ours = dict(timing(times["ours", key], warmup), other_cpu=others)
        if not peers_of.get(key):
            rows.append(ratio_row(benchmark, label, t_ours, None, None))
        for peer in peers_of.get(key, ()):
            peer_label, peer_fn = peers[peer]
            rows.append(ratio_row(benchmark, label, t_ours, peer_label, peer_times.get(peer),
                                  targets.get((key, peer)),
                                  note="" if peer_fn else "not installed"))
    return rows


def sampling_benchmarks(quick: bool = False, *, n_pool: int = 10**7, n_draws: int = 10**6,
                        repeats: int | None = None, first_call: bool = True) -> list:
    """The contract's sampling rows (N = 1e7 Q values uniform on [-2, 2), B = 1e6
    draws, zp_ref's default weights p = 2, min_q_abs = 1e-6, max_weight = 100, backend
    "auto"): the default call and ``sample_from_q`` against NumPy, PyTorch CPU and
    scipy's guide table; the weight pass against ``np.sum(q)``; the draws alone; and,
    from a checkout, the first call of a fresh process (``bench_first_call.py``)."""
    from ..weighting import importance_weights

    q = _pool(n_pool)
    w = importance_weights(q, normalize=False, backend="cpu", **CONFIG)
    rows = compare(our_calls(q, n_draws), peer_calls(q, w, n_draws), PEERS_OF, TARGETS,
                   quick, repeats=repeats)
    del q, w
    if first_call:
        module = _checkout_module("bench_first_call")
        if module is not None:
            rows.extend(module.run(quick, n_pool=n_pool, n_draws=n_draws, repeats=repeats))
    return rows


# ------------------------------------------------------------------ suite
def _checkout_path(name: str) -> Path | None:
    """``benchmarks/<name>.py`` of the checkout holding this package, or of the working
    directory; None when neither exists."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        path = root / "benchmarks" / f"{name}.py"
        if path.is_file():
            return path
    return None


def _checkout_module(name: str):
    """``benchmarks/<name>.py`` of a checkout, imported; None when absent."""
    path = _checkout_path(name)
    if path is None:
        return None
    spec = importlib.util.spec_from_file_location(f"zp_ref_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _refinement_module():
    """benchmarks/bench_refinement.py of a checkout (None when absent)."""
    return _checkout_module("bench_refinement")


BENCHMARKS = ("sampling", "refinement")


def run_suite(quick: bool = False, include=BENCHMARKS) -> dict:
    """The benchmarks named in ``include``: {"schema", "quick", "machine", "rows",
    "notes", "seconds"}."""
    t0 = time.perf_counter()
    machine = machine_info()
    rows, notes = [], []
    if "sampling" in include:
        rows.extend(sampling_benchmarks(quick))
        if _checkout_path("bench_first_call") is None:
            notes.append("first call: benchmarks/bench_first_call.py not found (run from a "
                         "checkout of zp_ref to include it)")
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
    machine["load_average_end"] = load_average()
    return {"schema": SCHEMA, "quick": bool(quick), "machine": machine, "rows": rows,
            "notes": notes, "seconds": time.perf_counter() - t0}


def _seconds(s) -> str:
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def _fmt_time(t) -> str:
    """``median [q1, q3]`` (the spread of the middle half), or the median alone."""
    if not isinstance(t, dict) or "median" not in t:
        return "-"
    if t.get("q1") is None or t.get("runs", 1) < 2:
        return f"{_seconds(t['median'])} ({t.get('runs', 1)} run)"
    return f"{_seconds(t['median'])} [{_seconds(t['q1'])}, {_seconds(t['q3'])}]"


def _fmt_min(t) -> str:
    return _seconds(t["min"]) if isinstance(t, dict) and "min" in t else "-"


def _fmt_target(r) -> str:
    if r.get("target_text"):
        return r["target_text"]
    return "-" if r.get("target") is None else f">= {r['target']:.3g}x"


def format_table(result: dict) -> str:
    """The suite's result as a plain-text table, the machine above it: medians with
    their quartiles, the minimum as an extra column, ratios of medians."""
    m = result["machine"]
    end = m.get("load_average_end")
    lines = [f"machine: {m['cpu']}, {m['usable_cores']} usable cores, load average "
             f"{' '.join(f'{x:.2f}' for x in (m.get('load_average') or []))} at the start"
             + (f", {' '.join(f'{x:.2f}' for x in end)} at the end" if end else ""),
             f"python {m['python']}, numpy {m['numpy']}, numba {m['numba']} "
             f"({m['numba_threads']} threads, {m.get('numba_threading_layer')}), scipy "
             f"{m.get('scipy')}, torch {m.get('torch')}, BLAS {m['blas_threads']}, "
             f"OPENBLAS env {m.get('openblas_env')}", ""]
    header = ("benchmark", "case", "ours: median [q1, q3]", "ours min", "baseline",
              "baseline: median [q1, q3]", "ratio", "target", "met", "load", "other CPU")
    table = [header]
    for r in result["rows"]:
        ratio = r.get("ratio")
        load = r.get("load")
        table.append((str(r.get("benchmark", "")), str(r.get("case", r.get("name", ""))),
                      _fmt_time(r.get("ours")), _fmt_min(r.get("ours")),
                      str(r.get("baseline") or "-"), _fmt_time(r.get("baseline_time")),
                      "-" if ratio is None else f"{ratio:.3g}x", _fmt_target(r),
                      {True: "yes", False: "NO", None: "-"}[r.get("met")],
                      f"{load[0]:.2f}" if load else "-",
                      "-" if r.get("other_cpu") is None else f"{r['other_cpu']:.2f}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for k, row in enumerate(table):
        lines.append("  ".join(c.ljust(wd) for c, wd in zip(row, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * wd for wd in widths))
    notes = [f"{r.get('case', '')}: {r['note']}" for r in result["rows"] if r.get("note")]
    lines += [""] + [f"note: {n}" for n in notes + result["notes"]]
    lines.append(f"({'quick' if result['quick'] else 'full'} run, {result['seconds']:.0f} s; "
                 "ratio = baseline median / our median, same run; load = 1-min load average "
                 "when the row was measured; other CPU = cores other processes kept busy "
                 "while it was timed, 0 on a quiet machine)")
    return "\n".join(lines)


def _jsonable(obj):
    """NumPy scalars and arrays in a benchmark's rows as plain JSON values."""
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zp-ref bench", description="zp_ref benchmark suite")
    p.add_argument("--quick", action="store_true", help="fewer repeats (under two minutes)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--sampling", action="store_true",
                   help="the sampling rows only (first calls included), no refinement")
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
    if getattr(args, "sampling", False):
        include = ("sampling",)
    return _report(run_suite(bool(getattr(args, "quick", False)), include), path)


def _report(result: dict, path) -> str:
    """The table of ``result``; with ``path``, also ``result`` as JSON there."""
    report = format_table(result)
    if path:
        from .._atomic import atomic_write_json        # fsync'ed, unique temp file
        atomic_write_json(path, result, indent=2, default=_jsonable)
        report += f"\nwrote {path}"
    return report


def script_command(description: str, run, argv=None, quick_help: str = "fewer repeats") -> str:
    """The ``main`` of a checkout's benchmark script: ``--quick``/``--json PATH``, then
    ``run(quick)`` rows in one result (schema, machine, load at the end) and its table."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    path = check_json_path(args.json) if args.json else None
    t0 = time.perf_counter()
    machine = machine_info()
    rows = run(args.quick)
    machine["load_average_end"] = load_average()
    result = {"schema": SCHEMA, "quick": args.quick, "machine": machine, "rows": rows,
              "notes": [], "seconds": time.perf_counter() - t0}
    return _report(result, path)
