"""The ``zp-ref`` command line.

``zp-ref demo``    refine a catalogue problem, build a pool from the tree, run a band
                   curriculum (uniform draws inside bands), monitor it and write
                   diagnostics JSON + PNG plots (the main job).
``zp-ref refine``  refine a catalogue problem or a polynomial given by its coefficients;
                   print the pole estimates as a table and save a PNG of the tree.
``zp-ref bench``   the benchmark suite as a ratio table (``zp_ref.bench``).
``zp-ref study``   the training study (``zp_ref.study``, needs the ``torch`` extra).

Bad arguments exit with status 2 and one line on stderr; this includes the
``ValueError``/``TypeError`` the library raises for a bad value while a command is set
up from its arguments. Only this module prints; the library never does.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

#: Tree settings per dimension for ``demo`` and ``refine`` (cells per axis at level 0,
#: deepest level, cap on evaluated points).
TREE_DEFAULTS = {
    1: {"initial_grid_size": 64, "max_refinement_level": 30, "max_grid_points": 20_000},
    2: {"initial_grid_size": 16, "max_refinement_level": 10, "max_grid_points": 50_000},
    3: {"initial_grid_size": 8, "max_refinement_level": 6, "max_grid_points": 50_000},
}
DEFAULT_PROBLEM = "simple_roots_1d"
BACKENDS = ("auto", "numpy", "cpu", "cuda")
CRITERIA = ("abs", "sign", "abs_or_sign", "interval")
TOP_LEVEL_OPTIONS = ("-h", "--help", "--version")


class UsageError(ValueError):
    """A bad command-line value found by the CLI itself."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (status 2) instead of usage + message; usable by
    other zp-ref subcommands that parse their own options (e.g. zp_ref.study)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------ argument types
def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _seed(text: str) -> int:
    value = _int_at_least(0)(text)
    if value >= 2**64:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, 2**64), got {value}")
    return value


def _positive_real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def _reals(text: str, what: str) -> list:
    parts = [v.strip() for v in text.split(",")]
    if "" in parts:
        raise UsageError(f"{what} must be comma-separated numbers without empty entries, got "
                         f"{text!r}")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"{what} must be finite comma-separated numbers, got {text!r}")
    return values


# ------------------------------------------------------------------ shared set-up
def _problem(name: str):
    from . import problems
    return problems.get(name)


def _tree_config(dim: int, bounds, args):
    """ActiveSamplerConfig from TREE_DEFAULTS[dim] and the command-line overrides."""
    from .refinement import ActiveSamplerConfig
    settings = dict(TREE_DEFAULTS[min(dim, 3)])
    for key, arg in (("initial_grid_size", "grid"), ("max_refinement_level", "max_level"),
                     ("max_grid_points", "max_points")):
        if getattr(args, arg) is not None:
            settings[key] = getattr(args, arg)
    return ActiveSamplerConfig(grid_bounds=tuple(tuple(b) for b in bounds),
                               criterion=args.criterion, **settings)


def _out_dir(text: str) -> Path:
    """The output folder, created now and probed with a temporary file, so that a place
    that cannot be written is refused before any work."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {text!r} exists and is not a folder")
    check_writable_folder(out, "--out")
    return out


def check_writable_folder(folder: Path, option: str) -> None:
    """Create ``folder`` (and parents) and write and remove a probe file in it; a
    UsageError naming ``option`` when that fails."""
    import tempfile
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {str(folder)!r} cannot be written: "
                         f"{exc.strerror or exc}") from None


def _check_memory(n_bytes: float, what: str) -> None:
    """Refuse a size whose arrays alone exceed the machine's physical memory."""
    import os
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if n_bytes > total:
        raise UsageError(f"{what} needs about {n_bytes / 2**30:.3g} GiB of arrays, more than "
                         f"this machine's {total / 2**30:.3g} GiB of memory")


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def _table(header: list, rows: list) -> str:
    """A plain text table, columns right-aligned to their widest cell."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------ demo
def _prepare_demo(args):
    """Build every object from the arguments (bad values raise here, before any work)."""
    from .curriculum import BandCurriculum
    from .diagnostics import DiagnosticConfig, DiagnosticMonitor
    from .refinement import ActiveSampler

    problem = _problem(args.problem)
    # the pool's x (n, d) and its draws' uniforms, lo, hi (n, d); q, weights, leaf ids (n,)
    _check_memory(8.0 * args.pool_size * (4 * problem.dim + 3),
                  f"--pool-size {args.pool_size}")
    out = _out_dir(args.out)
    config = _tree_config(problem.dim, problem.bounds, args)
    curriculum = BandCurriculum(epochs_per_stage=max(1, -(-args.epochs // 3)),
                                within="uniform", weight_power=args.weight_power,
                                seed=args.seed, backend=args.backend)
    # near = the bands B0..B(K-1) the curriculum moves towards, far = its far band BK
    # (the far stage's draws): both ratios follow the band edges
    monitor_config = DiagnosticConfig(export_path=str(out), auto_export=False,
                                      near_pole_threshold=float(curriculum.edges[-1]),
                                      far_pole_threshold=float(curriculum.edges[-1]),
                                      q_min_warning_threshold=args.q_min_warning)
    sampler = ActiveSampler(config, q=problem.q, input_dim=problem.dim, backend=args.backend)
    return lambda: _run_demo(args, problem, out, sampler, curriculum,
                             DiagnosticMonitor(monitor_config))


def _build_pool(problem, sampler, size: int, seed: int):
    """The pool: half drawn uniformly over the box, half with every leaf of the tree
    equally likely (so density follows refinement depth): (x (size, d), q (size,))."""
    import numpy as np

    from .rng import derive_seed
    x_far = sampler.sample(size // 2, seed=derive_seed(seed, 0), weighting="volume")
    x_near = sampler.sample(size - size // 2, seed=derive_seed(seed, 1), weighting="leaf")
    x = np.concatenate([x_far, x_near])
    return x, problem.q(x)


def _coverage(q, tau: float) -> float:
    """Share of |q| >= tau: where y = P/Q is REAL (finite, not clipped as a pole)."""
    import numpy as np
    return float((np.abs(q) >= tau).mean())


def _run_demo(args, problem, out, sampler, curriculum, monitor) -> int:
    import numpy as np
    from tqdm import tqdm

    from . import plots
    from .bands import band_counts
    from .diagnostics import QMinWarning
    from .state import atomic_write_bytes, save_state
    from .weighting import importance_weights

    t0 = time.perf_counter()
    sampler.refine()
    stats = sampler.get_statistics()
    centres, half_widths = sampler.pole_estimates()
    _, q_pool = _build_pool(problem, sampler, args.pool_size, args.seed)
    w_pool = importance_weights(q_pool, weight_power=args.weight_power, normalize=False,
                                backend=args.backend)
    edges = list(curriculum.edges)
    tau = args.q_min_warning
    coverage_eval = _coverage(q_pool, tau)
    rows, batch_q = [], None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QMinWarning)
        bar = tqdm(range(args.epochs), desc="zp-ref demo", unit="epoch", file=sys.stderr,
                   disable=True if args.no_progress else None)   # None: off unless a tty
        for epoch in bar:
            stage = curriculum.stage_at(epoch)
            drawn = []
            for b in range(args.batches):
                idx, _ = curriculum.sample(q_pool, args.batch_size, epoch)
                monitor.update_batch(q_pool[idx], w_pool[idx], idx, batch_idx=b, epoch=epoch)
                drawn.append(idx)
            idx = np.concatenate(drawn)
            batch_q = q_pool[idx]
            # coverage as in ZeroProofML: the share of points where y = P/Q is REAL
            # (|Q| >= the q_min warning threshold), over the epoch's draws and the pool
            monitor.update(epoch, {"stage": stage, "coverage_train": _coverage(batch_q, tau),
                                   "coverage_eval": coverage_eval}, q_values=batch_q)
            curriculum.update(epoch)
            counts = np.asarray(monitor.history["band_counts"][-1], dtype=np.float64)
            rows.append({"epoch": epoch, "stage": stage,
                         "q_min": monitor.history["q_min"][-1],
                         "q_mean": monitor.history["q_mean"][-1],
                         "near_pole_ratio": monitor.history["near_pole_ratio"][-1],
                         "far_ratio": monitor.history["far_ratio"][-1],
                         "coverage_train": monitor.history["coverage_train"][-1],
                         "band_fractions": (counts / counts.sum()).tolist()})
            bar.set_postfix(stage=stage, q_min=f"{rows[-1]['q_min']:.1e}")
    n_warnings = sum(issubclass(w.category, QMinWarning) for w in caught)
    for w in caught:
        if not issubclass(w.category, QMinWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    files = [monitor.export_diagnostics(args.epochs - 1),
             save_state(out / "curriculum_state.json", curriculum)]
    figures = {"history.png": plots.plot_history(monitor),
               "band_fractions.png": plots.plot_band_fractions(monitor),
               "q_histogram.png": plots.plot_q_histogram(q_pool, batch_q, edges=edges),
               "curriculum.png": plots.plot_curriculum_timeline(curriculum)}
    if problem.dim <= 2:
        figures["tree.png"] = plots.plot_refinement_tree(sampler)
    files += [_save(fig, out / name) for name, fig in figures.items()]
    seconds = time.perf_counter() - t0
    summary = {
        "problem": {"name": problem.name, "description": problem.description,
                    "dim": problem.dim, "bounds": [list(b) for b in problem.bounds]},
        "arguments": {k: v for k, v in vars(args).items() if k != "prepare"},
        "tree": {k: stats[k] for k in ("n_leaves", "n_evaluations", "flagged_leaves",
                                       "max_refinement_level", "capped_rounds")},
        "pole_estimates": {"count": int(len(centres)),
                           "centres": centres[:100].tolist(),
                           "half_widths": half_widths[:100].tolist()},
        "pool": {"size": int(q_pool.size),
                 "band_counts": band_counts(q_pool, edges, backend=args.backend).tolist()},
        "band_edges": edges,
        "epochs": rows,
        "q_min_warnings": n_warnings,
        "files": [p.name for p in files],
        "seconds": seconds,
    }
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=1).encode())

    print(f"problem {problem.name}: {problem.description}")
    print(f"tree: {stats['n_leaves']} leaves, {stats['n_evaluations']} evaluations of Q, "
          f"max level {stats['max_refinement_level']}, {len(centres)} pole estimates "
          f"(largest half-width {half_widths.max() if len(centres) else float('nan'):.2e})")
    print(f"pool: {q_pool.size} points; {args.epochs} epochs of {args.batches} x "
          f"{args.batch_size} draws (uniform inside |Q| bands; 1/|Q|^{args.weight_power:g} "
          f"importance weights monitored)\n")
    header = ["epoch", "stage", "q_min", "mean |Q|", "near", "far", "coverage"] + \
        [f"B{k}" for k in range(len(edges) + 1)]
    print(_table(header, [[r["epoch"], r["stage"], f"{r['q_min']:.2e}", f"{r['q_mean']:.2e}",
                           f"{r['near_pole_ratio']:.2f}", f"{r['far_ratio']:.2f}",
                           f"{r['coverage_train']:.4f}"] +
                          [f"{f:.2f}" for f in r["band_fractions"]] for r in rows]))
    print(f"\nbands on |Q|: B0 <= {edges[0]:g} < B1 <= ... <= {edges[-1]:g} < "
          f"B{len(edges)}; near: |Q| < {monitor.config.near_pole_threshold:g} (B0..B"
          f"{len(edges) - 1}), far: the far band B{len(edges)}; coverage (the share with "
          f"|Q| >= {tau:g}, y REAL): {coverage_eval:.4f} over the pool")
    if n_warnings:
        print(f"q_min fell below {args.q_min_warning:g} in {n_warnings} batch(es)/epoch(s)")
    print(f"wrote to {out}/: summary.json, {', '.join(p.name for p in files)} "
          f"(a JSON holding arrays has a .npz beside it) in {seconds:.1f} s")
    return 0


# ------------------------------------------------------------------ refine
def _cauchy_bound(coeffs: list) -> float:
    """Every root of sum c_i x**i lies in |x| < 1 + max |c_i / c_n|."""
    lead = coeffs[-1]
    return 1.0 + max(abs(c / lead) for c in coeffs[:-1])


def _prepare_refine(args):
    from .rational import Polynomial
    from .refinement import ActiveSampler

    if args.coeffs is not None:
        coeffs = _reals(args.coeffs, "--coeffs")
        while len(coeffs) > 1 and coeffs[-1] == 0.0:
            coeffs.pop()
        if len(coeffs) < 2:
            raise UsageError(f"--coeffs must give a polynomial of degree >= 1 (lowest degree "
                             f"first, e.g. '-2,0,1' for x^2 - 2), got {args.coeffs!r}")
        q, name = Polynomial(coeffs), f"polynomial {coeffs} (lowest degree first)"
        if args.bounds is not None:
            lo_hi = _reals(args.bounds, "--bounds")
            if len(lo_hi) != 2:
                raise UsageError(f"--bounds must be two numbers 'LO,HI', got {args.bounds!r}")
            bounds = (tuple(lo_hi),)
        else:
            r = _cauchy_bound(coeffs)
            bounds = ((-r, r),)
    else:
        if args.bounds is not None:
            raise UsageError("--bounds applies to --coeffs only (a catalogue problem has its "
                             "own box)")
        problem = _problem(args.problem)
        q, name, bounds = problem.q, f"{problem.name}: {problem.description}", problem.bounds
    config = _tree_config(q.dim, bounds, args)
    out = _out_dir(args.out)
    sampler = ActiveSampler(config, q=q, input_dim=q.dim, backend=args.backend)
    return lambda: _run_refine(args, name, q, sampler, out)


def _run_refine(args, name, q, sampler, out) -> int:
    import numpy as np

    from . import plots
    from .state import atomic_write_bytes

    from .refinement import EnclosureOverflowWarning

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EnclosureOverflowWarning)
        sampler.refine()
    seconds = time.perf_counter() - t0
    notes = [f"note: {w.message}" for w in caught
             if issubclass(w.category, EnclosureOverflowWarning)]
    for w in caught:
        if not issubclass(w.category, EnclosureOverflowWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    stats = sampler.get_statistics()
    centres, half = sampler.pole_estimates()
    q_centre = q(centres) if len(centres) else np.zeros(0)
    d = centres.shape[1]
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if d <= 2:
        files.append(_save(plots.plot_refinement_tree(sampler), out / "tree.png"))
    files.append(atomic_write_bytes(out / "poles.json", json.dumps({
        "q": name, "config": sampler.config.to_dict(), "statistics": stats,
        "centres": centres.tolist(), "half_widths": half.tolist(),
        "q_at_centres": q_centre.tolist()}, indent=1).encode()))

    print(f"Q = {name}")
    print(f"criterion {sampler.config.criterion!r}: {stats['n_leaves']} leaves, "
          f"{stats['n_evaluations']} evaluations, max level {stats['max_refinement_level']}"
          f"{', cap reached' if stats['capped_rounds'] else ''} ({seconds:.2f} s)\n")
    if d == 1:
        header, rows = ["#", "x", "half-width", "Q(centre)"], [
            [i, f"{centres[i, 0]:.12g}", f"{half[i, 0]:.2e}", f"{q_centre[i]:.2e}"]
            for i in range(len(centres))]
        what = "pole estimates"
    else:
        header, rows = _region_rows(centres, half, q_centre)
        what = "regions"
        if len(centres):
            print(f"{len(centres)} pole estimates (flagged cells) in {len(rows)} connected "
                  f"region(s), largest first; each row is one region's bounding box:")
    shown = min(len(rows), args.max_rows)
    print(_table(header, rows[:shown]))
    if len(rows) > shown:
        print(f"... {len(rows) - shown} more {what} (every pole estimate is in {files[-1]})")
    if not len(centres):
        print("(no pole estimates: no cell met the criterion)")
    for note in notes:
        print(note)
    print(f"\nwrote {', '.join(str(p) for p in files)}")
    return 0


def _region_rows(centres, half, q_centre) -> tuple:
    """Table of the connected regions of pole estimates in d >= 2 (cells that touch,
    corners included, join one region): header and rows, largest region first, then by
    position. A row: region number, cells, bounding box per axis, finest half-width,
    max |Q| at the cells' centres."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    d = centres.shape[1]
    axes = [f"x{a}" for a in range(d)]
    header = ["#", "cells"] + [f"{a} {end}" for a in axes for end in ("from", "to")] + \
        ["finest half-width", "max |Q(centre)|"]
    n = len(centres)
    if n == 0:
        return header, []
    pairs = cKDTree(centres).query_pairs(2.0 * half.max(), p=np.inf, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    touch = (np.abs(centres[i] - centres[j]) <= (half[i] + half[j]) * (1 + 1e-9)).all(axis=1)
    graph = coo_matrix((np.ones(int(touch.sum())), (i[touch], j[touch])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    lo, hi = centres - half, centres + half
    regions = []
    for k in np.unique(label):
        m = label == k
        regions.append((-int(m.sum()), tuple(lo[m].min(axis=0)), m))
    regions.sort(key=lambda r: r[:2])
    rows = []
    for number, (neg_count, _, m) in enumerate(regions):
        box = np.stack([lo[m].min(axis=0), hi[m].max(axis=0)], axis=1).ravel()  # per axis
        rows.append([number, -neg_count] + [f"{v:.6g}" for v in box] +
                    [f"{half[m].min():.2e}", f"{np.abs(q_centre[m]).max():.2e}"])
    return header, rows


# ------------------------------------------------------------------ bench and study
def _prepare_bench(args):
    from . import bench
    if args.json is not None:
        bench.check_json_path(args.json)
    return lambda: print(bench.bench_command(args)) or 0


def _study_main(argv) -> int:
    try:
        from .study import study_command
    except ImportError as exc:
        raise UsageError(f"the study needs PyTorch: pip install 'zp_ref[torch]' ({exc})")
    print(study_command(argv))
    return 0


# ------------------------------------------------------------------ parser
def _tree_arguments(p, criterion_default: str, backend_default: str, backend_help: str):
    p.add_argument("--criterion", choices=CRITERIA, default=criterion_default,
                   help="refinement criterion (default: %(default)s; 'interval' is certified "
                        "for polynomials: no zero is missed)")
    p.add_argument("--grid", type=_int_at_least(1), metavar="N",
                   help="cells per axis at level 0 (default: 64 in 1-D, 16 in 2-D, 8 in 3-D)")
    p.add_argument("--max-level", type=_int_at_least(0), metavar="L",
                   help="deepest refinement level (default: 30 in 1-D, 10 in 2-D, 6 in 3-D)")
    p.add_argument("--max-points", type=_int_at_least(1), metavar="N",
                   help="cap on evaluated points (default: 20000 in 1-D, else 50000)")
    p.add_argument("--backend", choices=BACKENDS, default=backend_default, help=backend_help)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .problems import names

    parser = OneLineArgumentParser(prog="zp-ref", description="Near-pole sampling, refinement and "
                     "curriculum for rational models P(x)/Q(x): the zp_ref reference "
                     "implementation.")
    parser.add_argument("--version", action="version", version=f"zp-ref {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo", help="the main job: refine, pool, band curriculum, diagnostics and plots",
        description="Refine a catalogue problem with ActiveSampler, build a pool from the "
                    "tree (half uniform, half leaf-weighted), run a far -> mid -> near band "
                    "curriculum (the stage's mix over |Q| bands, uniform draws inside a "
                    "band, so the far stage draws far points), feed a "
                    "DiagnosticMonitor, and write diagnostics JSON, summary.json, the "
                    "curriculum state and PNG plots to --out. Prints a per-epoch table.")
    demo.add_argument("--problem", choices=names(), default=DEFAULT_PROBLEM,
                      help="catalogue problem (default: %(default)s)")
    demo.add_argument("--epochs", type=_int_at_least(1), default=12,
                      help="epochs, split evenly over the 3 stages (default: %(default)s)")
    demo.add_argument("--batches", type=_int_at_least(1), default=4,
                      help="batches per epoch (default: %(default)s)")
    demo.add_argument("--batch-size", type=_int_at_least(1), default=256,
                      help="draws per batch (default: %(default)s)")
    demo.add_argument("--pool-size", type=_int_at_least(2), default=4000,
                      help="points drawn from the tree into the pool (default: %(default)s)")
    demo.add_argument("--weight-power", type=_positive_real, default=2.0,
                      help="p in the monitored importance weights 1/|Q|^p (ESS, max weight "
                           "share; default: %(default)s)")
    demo.add_argument("--q-min-warning", type=_positive_real, default=1e-12,
                      help="q_min below this is counted as a warning (default: %(default)s)")
    demo.add_argument("--seed", type=_seed, default=0, help="seed (default: %(default)s)")
    demo.add_argument("--out", default="runs/demo",
                      help="output folder, created if needed (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true",
                      help="no progress bar (there is none when stderr is not a terminal)")
    _tree_arguments(demo, "interval", "numpy",
                    "numpy (default: the oracle; at the demo's sizes it is the fastest and "
                    "needs no kernel compilation), cpu (Numba), cuda or auto; all give the "
                    "same draws")
    demo.set_defaults(prepare=_prepare_demo)

    refine = sub.add_parser(
        "refine", help="pole estimates of a catalogue problem or a polynomial",
        description="Build the refinement tree of a catalogue problem (--problem) or of a "
                    "1-D polynomial (--coeffs, lowest degree first), print its pole "
                    "estimates as a table and save tree.png and poles.json to --out.")
    which = refine.add_mutually_exclusive_group()
    which.add_argument("--problem", choices=names(), default=DEFAULT_PROBLEM,
                       help="catalogue problem (default: %(default)s)")
    which.add_argument("--coeffs", metavar="C0,C1,...",
                       help="polynomial coefficients, lowest degree first: '-2,0,1' is "
                            "x^2 - 2 (a leading minus needs --coeffs=-2,0,1)")
    refine.add_argument("--bounds", metavar="LO,HI",
                        help="interval for --coeffs (default: the Cauchy bound, which holds "
                             "every real root)")
    refine.add_argument("--out", default="runs/refine",
                        help="output folder (default: %(default)s)")
    refine.add_argument("--max-rows", type=_int_at_least(1), default=40,
                        help="table rows printed at most: pole estimates in 1-D, connected "
                             "regions of them in 2-D and 3-D (default: %(default)s)")
    _tree_arguments(refine, "interval", "auto",
                    "numpy (the oracle), cpu (Numba), cuda, or auto (default); all build the "
                    "same tree")
    refine.set_defaults(prepare=_prepare_refine)

    bench = sub.add_parser(
        "bench", help="the benchmark suite as a ratio table",
        description="Run the benchmarks of zp_ref (sampling, weights, refinement) against "
                    "NumPy, PyTorch CPU and python-adaptive where installed; print a ratio "
                    "table (median of several runs, with min and max) and the machine.")
    bench.add_argument("--quick", action="store_true",
                       help="fewer repeats (under two minutes)")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.set_defaults(prepare=_prepare_bench)

    study = sub.add_parser(
        "study", add_help=False, help="the training study (needs the torch extra); "
                                      "zp-ref study --help lists its options",
        description="Delegates to zp_ref.study.study_command.")
    study.add_argument("study_args", nargs=argparse.REMAINDER)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad arguments)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["study"]:      # the study parses its own options
            return _study_main(argv[1:])
        if argv[:1] and argv[0].startswith("-") and argv[0] not in TOP_LEVEL_OPTIONS:
            raise UsageError(f"unrecognized option {argv[0]!r}; zp-ref takes only "
                             f"{', '.join(TOP_LEVEL_OPTIONS)} before a COMMAND "
                             f"(demo, refine, bench, study)")
        args = build_parser().parse_args(argv)
        job = args.prepare(args)
    except SystemExit as exc:          # --help, --version and argparse errors
        return exc.code if isinstance(exc.code, int) else 2
    except (ValueError, TypeError) as exc:
        return _error(argv, exc)
    try:
        return job()
    except MemoryError as exc:         # a size the machine cannot hold
        return _error(argv, f"out of memory ({exc or 'MemoryError'}); use smaller sizes "
                            f"(--pool-size, --max-points)")


def _error(argv, exc) -> int:
    """One line on stderr; exit status 2."""
    message = " ".join(str(exc).split())
    command = argv[0] if argv[:1] and not argv[0].startswith("-") else ""
    print(f"zp-ref{' ' + command if command else ''}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
