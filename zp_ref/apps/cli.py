"""The ``zp-ref`` command line.

``zp-ref demo``    refine a catalogue problem, build a pool from the tree, run a band
                   curriculum (uniform draws inside bands), monitor it and write
                   diagnostics JSON + PNG plots (the main job).
``zp-ref refine``  refine a catalogue problem or a polynomial given by its coefficients;
                   print the pole estimates as a table and save a PNG of the tree.
``zp-ref bench``   the benchmark suite as a ratio table (``zp_ref.apps.bench``).
``zp-ref study``   the training study (``zp_ref.apps.study``, needs the ``torch`` extra).

Bad arguments exit with status 2 and one line on stderr; this includes the
``ValueError``/``TypeError`` the library raises for a bad value while a command is set
up from its arguments. A file that cannot be written (a full disk) exits with status 1,
Ctrl-C with 130, each with one line on stderr; every file is written atomically
(``zp_ref._atomic``), so the previous file stays intact. Only this module prints; the
library never does.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings

from ..refinement.config import CRITERIA
from ._args import (BACKENDS, DEFAULT_PROBLEM, TOP_LEVEL_OPTIONS, OneLineArgumentParser,
                    UsageError, catalogue_problem, int_at_least, out_dir,
                    positive_real, reals, save_figure, seed_arg, text_table, tree_config)
from .demo import prepare_demo


# ------------------------------------------------------------------ demo
def _prepare_demo(args):
    """The demo's job: run it (zp_ref.apps.demo), print its report, exit 0."""
    job = prepare_demo(args)

    def run() -> int:
        print(job())
        return 0
    return run


# ------------------------------------------------------------------ refine
def _cauchy_bound(coeffs: list) -> float:
    """Every root of sum c_i x**i lies in |x| < 1 + max |c_i / c_n|."""
    lead = coeffs[-1]
    return 1.0 + max(abs(c / lead) for c in coeffs[:-1])


def _prepare_refine(args):
    from ..rational import Polynomial
    from ..refinement import ActiveSampler

    if args.coeffs is not None:
        coeffs = reals(args.coeffs, "--coeffs")
        while len(coeffs) > 1 and coeffs[-1] == 0.0:
            coeffs.pop()
        if len(coeffs) < 2:
            raise UsageError(f"--coeffs must give a polynomial of degree >= 1 (lowest degree "
                             f"first, e.g. '-2,0,1' for x^2 - 2), got {args.coeffs!r}")
        q, name = Polynomial(coeffs), f"polynomial {coeffs} (lowest degree first)"
        if args.bounds is not None:
            lo_hi = reals(args.bounds, "--bounds")
            if len(lo_hi) != 2:
                raise UsageError(f"--bounds must be two numbers 'LO,HI', got {args.bounds!r}")
            bounds = (tuple(lo_hi),)
        else:
            r = _cauchy_bound(coeffs)
            if not math.isfinite(2.0 * r):       # the interval's width must be finite too
                raise UsageError(f"--coeffs {args.coeffs!r}: the bound on the real roots "
                                 f"computed from them, 1 + max|c_i / c_n| = {r:g}, overflows "
                                 f"float64 (the interval (-r, r) is {2.0 * r:g} wide); give "
                                 f"the interval with --bounds LO,HI")
            bounds = ((-r, r),)
    else:
        if args.bounds is not None:
            raise UsageError("--bounds applies to --coeffs only (a catalogue problem has its "
                             "own box)")
        problem = catalogue_problem(args.problem)
        q, name, bounds = problem.q, f"{problem.name}: {problem.description}", problem.bounds
    config = tree_config(q.dim, bounds, args)
    out = out_dir(args.out)
    sampler = ActiveSampler(config, q=q, input_dim=q.dim, backend=args.backend)
    return lambda: _run_refine(args, name, q, sampler, out)


def _run_refine(args, name, q, sampler, out) -> int:
    import numpy as np

    from .. import plots
    from .._atomic import atomic_write_json
    from ..refinement import EnclosureOverflowWarning

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
        files.append(save_figure(plots.plot_refinement_tree(sampler), out / "tree.png"))
    files.append(atomic_write_json(out / "poles.json", {
        "q": name, "config": sampler.config.to_dict(), "statistics": stats,
        "centres": centres.tolist(), "half_widths": half.tolist(),
        "q_at_centres": q_centre.tolist()}))

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
    print(text_table(header, rows[:shown]))
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
    p.add_argument("--grid", type=int_at_least(1), metavar="N",
                   help="cells per axis at level 0 (default: 64 in 1-D, 16 in 2-D, 8 in 3-D)")
    p.add_argument("--max-level", type=int_at_least(0), metavar="L",
                   help="deepest refinement level (default: 30 in 1-D, 10 in 2-D, 6 in 3-D)")
    p.add_argument("--max-points", type=int_at_least(1), metavar="N",
                   help="cap on evaluated points (default: 20000 in 1-D, else 50000)")
    p.add_argument("--backend", choices=BACKENDS, default=backend_default, help=backend_help)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from ..problems import names

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
    demo.add_argument("--epochs", type=int_at_least(1), default=12,
                      help="epochs, split evenly over the 3 stages (default: %(default)s)")
    demo.add_argument("--batches", type=int_at_least(1), default=4,
                      help="batches per epoch (default: %(default)s)")
    demo.add_argument("--batch-size", type=int_at_least(1), default=256,
                      help="draws per batch (default: %(default)s)")
    demo.add_argument("--pool-size", type=int_at_least(2), default=4000,
                      help="points drawn from the tree into the pool (default: %(default)s)")
    demo.add_argument("--weight-power", type=positive_real, default=2.0,
                      help="p in the monitored importance weights 1/|Q|^p (ESS, max weight "
                           "share; default: %(default)s)")
    demo.add_argument("--q-min-warning", type=positive_real, default=1e-12,
                      help="q_min below this is counted as a warning (default: %(default)s)")
    demo.add_argument("--seed", type=seed_arg, default=0, help="seed (default: %(default)s)")
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
    refine.add_argument("--max-rows", type=int_at_least(1), default=40,
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
        description="Delegates to zp_ref.apps.study.study_command.")
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
    except OSError as exc:             # a file that cannot be written (a full disk, ...)
        return _error(argv, exc, status=1)
    except KeyboardInterrupt:          # every file is written atomically: none is torn
        return _error(argv, "interrupted; the files written so far are complete and a "
                            "file being written was left as it was", status=130)


def _error(argv, exc, status: int = 2) -> int:
    """One line on stderr; returns ``status`` (2: bad arguments, 1: the job failed,
    130: interrupted)."""
    message = " ".join(str(exc).split())
    command = argv[0] if argv[:1] and not argv[0].startswith("-") else ""
    print(f"zp-ref{' ' + command if command else ''}: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
