"""Matplotlib figures of diagnostics, bands, curricula and refinement trees.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (so no GUI
backend is touched and nothing is shown); save it with ``fig.savefig(path)``. Pass
``ax=`` to draw into an existing axes instead (its figure is returned).
"""
from __future__ import annotations

import numpy as np

from ._validation import as_float_array

#: Pole estimates of a 2-D tree are marked with x up to this many, with dots beyond.
MAX_X_MARKERS = 50
BAND_COLORS = ("#b2182b", "#ef8a62", "#fddbc7", "#92c5de", "#2166ac", "#053061")


def _axes(ax, figsize=(6.4, 4.0)):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _columns(source) -> dict:
    """The per-epoch columns of a DiagnosticMonitor (``.history``) or of a dict of them."""
    history = getattr(source, "history", source)
    if not isinstance(history, dict) or "epoch" not in history:
        raise TypeError(f"source must be a DiagnosticMonitor or a dict of history columns "
                        f"with 'epoch', got {type(source).__name__}")
    return history


def _series(history, key) -> np.ndarray:
    """A history column as float64 with NaN where nothing was recorded."""
    return np.array([np.nan if v is None else float(v) for v in history.get(key, [])] or
                    [np.nan] * len(history["epoch"]), dtype=np.float64)


def band_labels(edges) -> list:
    """``B0: |Q| <= e0``, ``Bk: e(k-1) < |Q| <= ek``, ``BK: |Q| > e(K-1)``."""
    e = [f"{x:.0e}" for x in edges]
    labels = [f"B0: |Q| ≤ {e[0]}"]
    labels += [f"B{k}: {e[k - 1]} < |Q| ≤ {e[k]}" for k in range(1, len(e))]
    return labels + [f"B{len(e)}: |Q| > {e[-1]}"]


def plot_history(source, *, figsize=(10.0, 7.0)):
    """Four panels over epochs: q_min (log axis, with the warning threshold when
    ``source`` is a monitor), near-pole and far ratios, coverage, loss. A panel whose
    columns hold no value says "not recorded" instead of showing a legend."""
    from matplotlib.figure import Figure
    history = _columns(source)
    epochs = np.asarray(history["epoch"], dtype=np.float64)
    fig = Figure(figsize=figsize, layout="constrained")
    axs = fig.subplots(2, 2, sharex=True)
    panels = [(axs[0, 0], "q_min", ["q_min"], "min |Q|"),
              (axs[0, 1], "pole proximity", ["near_pole_ratio", "far_ratio"], "fraction"),
              (axs[1, 0], "coverage", ["coverage_train", "coverage_eval"], "coverage"),
              (axs[1, 1], "loss", ["loss_train", "loss_eval"], "loss")]
    for ax, title, keys, ylabel in panels:
        recorded = False
        for key in keys:
            values = _series(history, key)
            ax.plot(epochs, values, marker=".", label=key)
            recorded |= bool(np.isfinite(values).any())
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        if recorded:
            ax.legend(loc="best", fontsize="small", framealpha=0.8)
        else:                   # say so instead of an empty frame with a legend
            ax.text(0.5, 0.5, f"not recorded ({', '.join(keys)})", transform=ax.transAxes,
                    ha="center", va="center", color="0.4")
    axs[0, 0].set_yscale("log")
    config = getattr(source, "config", None)
    if config is not None:
        axs[0, 0].axhline(config.q_min_warning_threshold, color="k", ls="--", lw=0.8,
                          label="warning threshold")
        axs[0, 0].legend(loc="best", fontsize="small", framealpha=0.8)
    axs[0, 1].set_ylim(0.0, 1.0)
    loss = np.concatenate([_series(history, k) for k in ("loss_train", "loss_eval")])
    if np.isfinite(loss).any() and (loss[np.isfinite(loss)] > 0).all():
        axs[1, 1].set_yscale("log")
    for ax in axs[1]:
        ax.set_xlabel("epoch")
    return fig


def plot_band_fractions(source, *, epochs=None, edges=None, ax=None):
    """Stacked bars: fraction of each |Q| band per epoch.

    ``source``: a DiagnosticMonitor (its ``band_counts`` history; epochs without Q are
    skipped) or counts (E, K+1) with ``epochs`` (E,) and ``edges`` (K,).
    """
    if hasattr(source, "history"):
        rows = [(e, c) for e, c in zip(source.history["epoch"], source.history["band_counts"])
                if c is not None]
        edges = source.config.band_edges if edges is None else edges
        epochs = np.array([e for e, _ in rows], dtype=np.float64)
        counts = np.array([c for _, c in rows], dtype=np.float64).reshape(len(rows), len(edges) + 1)
    else:
        counts = as_float_array(source, "counts", ndim=2)
        epochs = (np.arange(counts.shape[0], dtype=np.float64) if epochs is None
                  else as_float_array(epochs, "epochs"))
        if epochs.size != counts.shape[0]:
            raise ValueError(f"epochs has {epochs.size} entries, counts {counts.shape[0]} rows")
    if edges is None:
        from .bands import DEFAULT_EDGES
        edges = DEFAULT_EDGES
    if counts.shape[1] != len(edges) + 1:
        raise ValueError(f"counts must have len(edges) + 1 = {len(edges) + 1} columns, "
                         f"got {counts.shape[1]}")
    fig, ax = _axes(ax)
    totals = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    bottom = np.zeros(len(epochs))
    for k, label in enumerate(band_labels(edges)):
        ax.bar(epochs, frac[:, k], bottom=bottom, width=0.9, label=label,
               color=BAND_COLORS[k % len(BAND_COLORS)])
        bottom += frac[:, k]
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("fraction of samples")
    ax.set_title("|Q| bands per epoch")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return fig


def plot_q_histogram(q_pool, q_batch=None, *, edges=None, bins=50, ax=None):
    """Histogram of |Q| on log-spaced bins for the pool and (optionally) a batch, each
    normalised to fractions of its own size, with the band edges as vertical lines.
    |Q| = 0 is counted in the first bin and |Q| = inf in the last."""
    from ._validation import check_count
    pool = np.abs(as_float_array(q_pool, "q_pool"))
    batch = None if q_batch is None else np.abs(as_float_array(q_batch, "q_batch"))
    bins = check_count(bins, "bins", minimum=1)
    if edges is None:
        from .bands import DEFAULT_EDGES
        edges = DEFAULT_EDGES
    values = pool if batch is None else np.concatenate([pool, batch])
    if np.isnan(values).any():
        raise ValueError("q_pool / q_batch must not contain NaN")
    finite = values[np.isfinite(values) & (values > 0)]
    lo = min(finite.min() if finite.size else 1.0, min(edges))
    hi = max(finite.max() if finite.size else 1.0, max(edges))
    if hi <= lo:
        lo, hi = lo / 10.0, hi * 10.0
    grid = np.logspace(np.log10(lo), np.log10(hi), bins + 1)
    fig, ax = _axes(ax)
    for data, name, style in ((pool, "pool", "stepfilled"), (batch, "batch", "step")):
        if data is None:
            continue
        zeros = int((data == 0).sum())
        label = f"{name} (n={data.size})" + (f", {zeros} at |Q| = 0 in first bin" if zeros else "")
        ax.hist(np.clip(data, grid[0], grid[-1]), bins=grid,
                weights=np.full(data.size, 1.0 / data.size), histtype=style,
                alpha=0.5 if style == "stepfilled" else 1.0, lw=1.5, label=label)
    for e in edges:
        ax.axvline(e, color="k", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("|Q|")
    ax.set_ylabel("fraction per bin")
    ax.set_title("|Q| of pool vs batch (dotted: band edges)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    return fig


def stages_per_epoch(curriculum) -> np.ndarray:
    """Stage index at each epoch 0..current_epoch of a BandCurriculum (``stage_history``)
    or CurriculumScheduler (``stage_performance``): int64 (current_epoch + 1,)."""
    past = getattr(curriculum, "stage_history", None)
    if past is None:
        past = curriculum.stage_performance
    out = np.zeros(curriculum.current_epoch + 1, dtype=np.int64)
    for run in past:
        out[run["start_epoch"]:run["end_epoch"]] = run["stage"]
    out[curriculum.stage_start_epoch:] = curriculum.current_stage
    return out


def plot_curriculum_timeline(stages, *, names=None, delta=None, ax=None):
    """Which curriculum stage is active at each epoch (one row per stage, a bar per run
    of consecutive epochs), with delta(t) on a log twin axis when ``delta`` (E,) is given
    (``None`` entries, e.g. warmup, are left out).

    ``stages``: (E,) stage index per epoch, or a BandCurriculum / CurriculumScheduler
    (its recorded stages; a BandCurriculum's ``delta_schedule`` gives ``delta``)."""
    if hasattr(stages, "current_stage"):
        schedule = getattr(stages, "delta_schedule", None)
        st = stages_per_epoch(stages)
        if delta is None and schedule is not None:
            delta = [schedule.get_delta(e) for e in range(st.size)]
        n_total = getattr(stages, "n_stages", None) or stages.config.n_stages
    else:
        st = np.asarray(stages)
        if st.ndim != 1 or st.size == 0 or st.dtype.kind not in "iu" or (st < 0).any():
            raise ValueError(f"stages must be a non-empty 1-D array of non-negative stage "
                             f"indices or a curriculum object, got {stages!r:.80}")
        n_total = int(st.max()) + 1
    names = [f"stage {k}" for k in range(n_total)] if names is None else list(names)
    if len(names) < int(st.max()) + 1:
        raise ValueError(f"names has {len(names)} entries, stages go up to {int(st.max())}")
    fig, ax = _axes(ax)
    starts = np.flatnonzero(np.r_[True, st[1:] != st[:-1]])
    ends = np.r_[starts[1:], st.size]
    for s, e in zip(starts, ends):
        k = int(st[s])
        ax.broken_barh([(s - 0.5, e - s)], (k - 0.4, 0.8), color=f"C{k % 10}")
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlim(-0.5, st.size - 0.5)
    ax.set_xlabel("epoch")
    ax.set_title("curriculum stages")
    if delta is not None:
        d = np.array([np.nan if v is None else float(v) for v in delta], dtype=np.float64)
        if d.size != st.size:
            raise ValueError(f"delta has {d.size} entries, stages {st.size}; they must match")
        twin = ax.twinx()
        twin.plot(np.arange(st.size), d, color="k", lw=1.2, label="delta(t)")
        twin.set_yscale("log")
        twin.set_ylabel("delta")
    return fig


def _width_range(widths) -> str:
    return f"{widths.min():.1e}" if widths.min() == widths.max() else \
        f"{widths.min():.1e} to {widths.max():.1e}"


def plot_refinement_tree(active_sampler, ax=None):
    """Leaves of an ActiveSampler: intervals at their refinement level in 1-D,
    rectangles (a quadtree) in 2-D; leaves with a sign change in red, the others in
    blue; pole estimates marked with x (in 2-D with dots beyond ``MAX_X_MARKERS``
    estimates, and their half-width boxes shaded red). In 1-D
    the leaves with a sign change are also marked at their centres (a level-30 bracket
    is far narrower than a pixel), and the legend gives their widths. The legend sits
    outside the axes (inside, translucent, when drawn into a caller's multi-axes figure)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    leaves = active_sampler.leaves()
    lo, hi = np.asarray(leaves["lo"]), np.asarray(leaves["hi"])
    level = np.asarray(leaves["level"])
    flagged = np.asarray(leaves["sign_change"], dtype=bool)
    d = lo.shape[1]
    if d not in (1, 2):
        raise ValueError(f"plot_refinement_tree draws 1-D and 2-D trees, this one has "
                         f"input_dim={d}")
    centres, half = (np.asarray(a) for a in active_sampler.pole_estimates())
    colors = np.where(flagged, "tab:red", "tab:blue")
    n_flag = int(flagged.sum())
    marker = "x" if d == 1 or len(centres) <= MAX_X_MARKERS else "."
    fig, ax = _axes(ax, figsize=(8.8, 6.4) if d == 2 else (10.0, 3.8))
    handles = [Line2D([], [], color="tab:blue", lw=2, label=f"leaves ({len(level) - n_flag})")]
    if d == 1:
        ax.hlines(level, lo[:, 0], hi[:, 0], colors=colors, lw=3)
        ax.scatter(centres[:, 0], np.full(len(centres), level.max() + 1), marker="x",
                   color="k", zorder=3)
        if n_flag:
            ax.scatter(0.5 * (lo[flagged, 0] + hi[flagged, 0]), level[flagged], marker="|",
                       s=120, color="tab:red", zorder=4)
            widths = (hi - lo)[flagged, 0]
            handles.append(Line2D([], [], color="tab:red", marker="|", markersize=10, lw=2,
                                  label=f"sign change ({n_flag}), marked at centres;\n"
                                        f"widths {_width_range(widths)}"))
        ax.set_ylabel("refinement level")
        ax.set_xlabel("x")
    else:
        from matplotlib.collections import PatchCollection
        from matplotlib.patches import Rectangle
        boxes = [Rectangle((a, b), w, h) for (a, b), (w, h) in zip(lo, hi - lo)]
        ax.add_collection(PatchCollection(boxes, facecolors="none", edgecolors=colors,
                                          linewidths=0.4))
        err = [Rectangle(c - r, *(2 * r)) for c, r in zip(centres, half)]
        ax.add_collection(PatchCollection(err, facecolors="tab:red", edgecolors="none",
                                          alpha=0.35))
        ax.scatter(centres[:, 0], centres[:, 1], marker=marker, color="k", zorder=3,
                   s=30 if marker == "x" else 1, linewidths=1.5 if marker == "x" else 0)
        if n_flag:
            handles.append(Line2D([], [], color="tab:red", lw=2, label=f"sign change ({n_flag})"))
        if len(centres):
            handles.append(Patch(facecolor="tab:red", alpha=0.35,
                                 label="pole estimate ± half-width"))
        ax.set_xlim(lo[:, 0].min(), hi[:, 0].max())
        ax.set_ylim(lo[:, 1].min(), hi[:, 1].max())
        ax.set_aspect("equal")
        ax.set_anchor("E")           # spare width goes left, where the y label is
        ax.set_xlabel("x0")
        ax.set_ylabel("x1")
    handles.append(Line2D([], [], color="k", marker=marker, lw=0, markersize=7,
                          label=f"pole estimates ({len(centres)})"))
    ax.set_title(f"refinement tree: {len(level)} leaves, max level {int(level.max())}")
    if ax is fig.axes[0] and len(fig.axes) == 1 and fig.get_layout_engine() is not None:
        fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    else:                       # a caller's axes among others: inside, translucent
        ax.legend(handles=handles, loc="best", fontsize="small", framealpha=0.8)
    return fig
