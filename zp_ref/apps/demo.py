"""``zp-ref demo``: refine a catalogue problem, build a pool from the tree, run a band
curriculum with importance draws inside bands, monitor it and write diagnostics JSON,
summary.json, the curriculum state and PNG plots (the CLI's main job; it prints)."""
from __future__ import annotations

import json
import sys
import time
import warnings

from ._args import catalogue_problem, out_dir, save_figure, text_table, tree_config


def prepare_demo(args):
    """Build every object from the arguments (bad values raise here, before any work)."""
    from ..curriculum import BandCurriculum
    from ..diagnostics import DiagnosticConfig, DiagnosticMonitor
    from ..refinement import ActiveSampler

    problem = catalogue_problem(args.problem)
    out = out_dir(args.out)
    config = tree_config(problem.dim, problem.bounds, args)
    curriculum = BandCurriculum(epochs_per_stage=max(1, -(-args.epochs // 3)),
                                within="importance", weight_power=args.weight_power,
                                seed=args.seed, backend=args.backend)
    monitor_config = DiagnosticConfig(export_path=str(out), auto_export=False,
                                      near_pole_threshold=float(curriculum.edges[-1]),
                                      far_pole_threshold=1.0,
                                      q_min_warning_threshold=args.q_min_warning)
    sampler = ActiveSampler(config, q=problem.q, input_dim=problem.dim, backend=args.backend)
    return lambda: run_demo(args, problem, out, sampler, curriculum,
                             DiagnosticMonitor(monitor_config))


def build_pool(problem, sampler, size: int, seed: int):
    """The pool: half drawn uniformly over the box, half with every leaf of the tree
    equally likely (so density follows refinement depth): (x (size, d), q (size,))."""
    import numpy as np

    from ..rng import derive_seed
    x_far = sampler.sample(size // 2, seed=derive_seed(seed, 0), weighting="volume")
    x_near = sampler.sample(size - size // 2, seed=derive_seed(seed, 1), weighting="leaf")
    x = np.concatenate([x_far, x_near])
    return x, problem.q(x)


def run_demo(args, problem, out, sampler, curriculum, monitor) -> int:
    import numpy as np
    from tqdm import tqdm

    from .. import plots
    from ..bands import band_counts
    from ..diagnostics import QMinWarning
    from ..state import atomic_write_bytes, save_state
    from ..weighting import importance_weights

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    sampler.refine()
    stats = sampler.get_statistics()
    centres, half_widths = sampler.pole_estimates()
    _, q_pool = build_pool(problem, sampler, args.pool_size, args.seed)
    w_pool = importance_weights(q_pool, weight_power=args.weight_power, normalize=False,
                                backend=args.backend)
    edges = list(curriculum.edges)
    rows, batch_q = [], None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QMinWarning)
        bar = tqdm(range(args.epochs), desc="zp-ref demo", unit="epoch", file=sys.stderr,
                   disable=args.no_progress)
        for epoch in bar:
            stage = curriculum.stage_at(epoch)
            drawn = []
            for b in range(args.batches):
                idx, _ = curriculum.sample(q_pool, args.batch_size, epoch)
                monitor.update_batch(q_pool[idx], w_pool[idx], idx, batch_idx=b, epoch=epoch)
                drawn.append(idx)
            idx = np.concatenate(drawn)
            batch_q = q_pool[idx]
            monitor.update(epoch, {"stage": stage}, q_values=batch_q)
            curriculum.update(epoch)
            counts = np.asarray(monitor.history["band_counts"][-1], dtype=np.float64)
            rows.append({"epoch": epoch, "stage": stage,
                         "q_min": monitor.history["q_min"][-1],
                         "q_mean": monitor.history["q_mean"][-1],
                         "near_pole_ratio": monitor.history["near_pole_ratio"][-1],
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
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=1).encode())

    print(f"problem {problem.name}: {problem.description}")
    print(f"tree: {stats['n_leaves']} leaves, {stats['n_evaluations']} evaluations of Q, "
          f"max level {stats['max_refinement_level']}, {len(centres)} pole estimates "
          f"(largest half-width {half_widths.max() if len(centres) else float('nan'):.2e})")
    print(f"pool: {q_pool.size} points; {args.epochs} epochs of {args.batches} x "
          f"{args.batch_size} draws (importance inside |Q| bands)\n")
    header = ["epoch", "stage", "q_min", "mean |Q|", "near"] + \
        [f"B{k}" for k in range(len(edges) + 1)]
    print(text_table(header, [[r["epoch"], r["stage"], f"{r['q_min']:.2e}", f"{r['q_mean']:.2e}",
                           f"{r['near_pole_ratio']:.2f}"] +
                          [f"{f:.2f}" for f in r["band_fractions"]] for r in rows]))
    print(f"\nbands on |Q|: B0 <= {edges[0]:g} < B1 <= ... <= {edges[-1]:g} < "
          f"B{len(edges)}; near: |Q| < {monitor.config.near_pole_threshold:g}")
    if n_warnings:
        print(f"q_min fell below {args.q_min_warning:g} in {n_warnings} batch(es)/epoch(s)")
    print(f"wrote to {out}/: summary.json, {', '.join(p.name for p in files)} "
          f"(a JSON holding arrays has a .npz beside it) in {seconds:.1f} s")
    return 0
