"""``zp-ref demo``: refine a catalogue problem, build a pool from the tree, run a band
curriculum (uniform draws inside bands), monitor it and write diagnostics JSON,
summary.json, the curriculum state and PNG plots (the CLI's main job); it returns its
report and zp_ref.apps.cli prints it."""
from __future__ import annotations

import sys
import time
import warnings

from ._args import (catalogue_problem, check_memory, out_dir, save_figure, text_table,
                    tree_config)


def prepare_demo(args):
    """Build every object from the arguments (bad values raise here, before any work)."""
    from ..curriculum import BandCurriculum
    from ..diagnostics import DiagnosticConfig, DiagnosticMonitor
    from ..refinement import ActiveSampler

    problem = catalogue_problem(args.problem)
    # the pool's x (n, d) and its draws' uniforms, lo, hi (n, d); q, weights, leaf ids (n,)
    check_memory(8.0 * args.pool_size * (4 * problem.dim + 3),
                  f"--pool-size {args.pool_size}")
    out = out_dir(args.out)
    config = tree_config(problem.dim, problem.bounds, args)
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
    return lambda: run_demo(args, problem, out, sampler, curriculum,
                             DiagnosticMonitor(monitor_config))


def build_pool(problem, sampler, size: int, seed: int):
    """The pool: half drawn uniformly over the box, half with every leaf of the tree
    equally likely (so density follows refinement depth): (x (size, d), q (size,))."""
    import numpy as np

    from ..rng import call_seed
    x_far = sampler.sample(size // 2, seed=call_seed(seed, 0), weighting="volume")
    x_near = sampler.sample(size - size // 2, seed=call_seed(seed, 1), weighting="leaf")
    x = np.concatenate([x_far, x_near])
    return x, problem.q(x)


def _coverage(q, tau: float) -> float:
    """Share of |q| >= tau: where y = P/Q is REAL (finite, not clipped as a pole)."""
    import numpy as np
    return float((np.abs(q) >= tau).mean())


def run_demo(args, problem, out, sampler, curriculum, monitor) -> str:
    import numpy as np
    from tqdm import tqdm

    from .. import plots
    from ..bands import band_counts
    from ..diagnostics import QMinWarning
    from .._atomic import atomic_write_json
    from ..state import save_state
    from ..weighting import importance_weights

    t0 = time.perf_counter()
    sampler.refine()
    stats = sampler.get_statistics()
    centres, half_widths = sampler.pole_estimates()
    _, q_pool = build_pool(problem, sampler, args.pool_size, args.seed)
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
    files += [save_figure(fig, out / name) for name, fig in figures.items()]
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
    atomic_write_json(out / "summary.json", summary)

    lines = []                               # the report; the CLI prints it
    lines.append(f"problem {problem.name}: {problem.description}")
    lines.append(f"tree: {stats['n_leaves']} leaves, {stats['n_evaluations']} evaluations of Q, "
                 f"max level {stats['max_refinement_level']}, {len(centres)} pole estimates "
                 f"(largest half-width {half_widths.max() if len(centres) else float('nan'):.2e})")
    lines.append(f"pool: {q_pool.size} points; {args.epochs} epochs of {args.batches} x "
                 f"{args.batch_size} draws (uniform inside |Q| bands; 1/|Q|^{args.weight_power:g} "
                 f"importance weights monitored)\n")
    header = ["epoch", "stage", "q_min", "mean |Q|", "near", "far", "coverage"] + \
        [f"B{k}" for k in range(len(edges) + 1)]
    lines.append(text_table(header, [
        [r["epoch"], r["stage"], f"{r['q_min']:.2e}", f"{r['q_mean']:.2e}",
         f"{r['near_pole_ratio']:.2f}", f"{r['far_ratio']:.2f}", f"{r['coverage_train']:.4f}"]
        + [f"{f:.2f}" for f in r["band_fractions"]] for r in rows]))
    lines.append(f"\nbands on |Q|: B0 <= {edges[0]:g} < B1 <= ... <= {edges[-1]:g} < "
                 f"B{len(edges)}; near: |Q| < {monitor.config.near_pole_threshold:g} (B0..B"
                 f"{len(edges) - 1}), far: the far band B{len(edges)}; coverage (the share with "
                 f"|Q| >= {tau:g}, y REAL): {coverage_eval:.4f} over the pool")
    if n_warnings:
        lines.append(f"q_min fell below {args.q_min_warning:g} in {n_warnings} "
                     f"batch(es)/epoch(s)")
    lines.append(f"wrote to {out}/: summary.json, {', '.join(p.name for p in files)} "
                 f"(each JSON holding arrays carries them after its header line) in "
                 f"{seconds:.1f} s")
    return "\n".join(lines)
