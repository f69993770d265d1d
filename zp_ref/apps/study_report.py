"""The training study's summaries, text tables and figure (see :mod:`zp_ref.apps.study`).

A *cell* is one (target, method, LR schedule): the runs of its seeds, summarised by
:func:`summarise` into mean, sample std and count per metric.
"""
from __future__ import annotations

import numpy as np

from ..bands import DEFAULT_EDGES

__all__ = ["BANDS", "TEST_RANGES", "summarise", "plot_study", "plot_selection", "table",
           "markdown_tables"]

BANDS = tuple(f"B{b}" for b in range(len(DEFAULT_EDGES) + 1))
#: |Q| range of the test points of B0..B3 (log-uniform inside); B4 is |Q| > 1e-2.
TEST_RANGES = ((1e-6, 1e-5), (1e-5, 1e-4), (1e-4, 1e-3), (1e-3, 1e-2))
#: Per-run fields kept in study.json's "runs" lists.
RUN_FIELDS = ("seed", "band_mse", "band_median_rel_err", "overall_mse", "pole_distance",
              "pool_size", "n_new", "seconds", "sampler_seconds", "sampler_share",
              "diverged", "poles_by_epoch", "spurious_by_epoch", "refresh_seconds",
              "gate_tau", "gate_open")


def _stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    ok = v[np.isfinite(v)]
    if ok.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(ok.mean()), "std": float(ok.std(ddof=1)) if ok.size > 1 else 0.0,
            "n": int(ok.size)}


def _error_block(runs: list) -> dict:
    return {"band_mse": {b: _stats([r["band_mse"][b] for r in runs]) for b in BANDS},
            "band_median_rel_err": {b: _stats([r["band_median_rel_err"][b] for r in runs])
                                    for b in BANDS},
            "pole_distance": _stats([r["pole_distance"] for r in runs])}


def summarise(runs: list) -> dict:
    """One cell's summary: the issue's per-method schema (``band_mse``, ``overall_mse``,
    ``near_pole_coverage``, ``seconds``) plus medians of the relative error per band,
    pole distance, sampler share of the training wall time, spurious poles (1-D), the
    exact optimum of the late draws where computed, and the runs themselves."""
    out = _error_block(runs)
    out.update({
        "overall_mse": _stats([r["overall_mse"] for r in runs]),
        "near_pole_coverage": float(np.mean([r["near_pole_coverage"] for r in runs])),
        "train_band_fractions": np.mean([r["train_band_fractions"] for r in runs],
                                        axis=0).tolist(),
        "seconds": float(np.mean([r["seconds"] for r in runs])),
        "sampler_share": _stats([r["sampler_share"] for r in runs]),
        "n_new": _stats([r["n_new"] for r in runs]),
        "diverged": int(sum(r["diverged"] for r in runs)),
        "runs": [{k: r[k] for k in RUN_FIELDS if k in r} for r in runs],
    })
    if all(r.get("spurious_by_epoch") is not None for r in runs):
        counts = [r["spurious_by_epoch"] for r in runs]
        out["spurious"] = {"runs_with_any": int(sum(max(c) > 0 for c in counts)),
                           "runs_at_end": int(sum(c[-1] > 0 for c in counts)),
                           "max_count": int(max(max(c) for c in counts))}
    if all("optimum" in r for r in runs):
        out["optimum"] = _error_block([r["optimum"] for r in runs])
    return out


def _fmt(stat: dict) -> str:
    if stat["mean"] is None:
        return "diverged"
    return f"{stat['mean']:.2e} +- {stat['std']:.1e}"


def _cells(report: dict):
    """(target name, LR schedule, [(method, its statistics)]) for every cell with runs."""
    for name, res in report["targets"].items():
        for schedule in report["config"]["lr_schedules"]:
            rows = [(m, blk["schedules"][schedule]) for m, blk in res["methods"].items()
                    if schedule in blk["schedules"]]
            if rows:
                yield name, schedule, rows


def table(report: dict) -> str:
    """The study as text: per target and LR schedule, median |relative error| per band,
    pole distance, uniform-test MSE and the sampler's share of the training time."""
    seeds = report["config"]["seeds"]
    lines = []
    for name, schedule, rows in _cells(report):
        lines.append(f"{name}, {schedule} LR: median |relative error| per band, pole "
                     f"distance, uniform-test MSE (mean +- std over {seeds} seeds), "
                     f"sampler share of training time")
        lines.append(f"{'method':<28}" + "".join(f"{b:>19}" for b in BANDS)
                     + f"{'pole dist':>19}{'uniform MSE':>19}{'sampler':>8}")
        for method, m in rows:
            cells = [m["band_median_rel_err"][b] for b in BANDS] + [m["pole_distance"],
                                                                     m["overall_mse"]]
            share = m["sampler_share"]["mean"]
            lines.append(f"{method:<28}" + "".join(f" {_fmt(c):>18}" for c in cells)
                         + (f"{share:>8.3f}" if share is not None else f"{'-':>8}"))
        lines.append("")
    return "\n".join(lines)


def plot_study(report: dict):
    """Pole distance (top row) and median |relative error| in B3 and B4 (bottom rows) by
    method, one column per target: mean over seeds, bars = std, log axes; cosine and
    constant LR side by side. A matplotlib Figure."""
    from matplotlib.figure import Figure
    names = list(report["targets"])
    schedules = report["config"]["lr_schedules"]
    panels = (("pole_distance", None, "pole distance"),
              ("band_median_rel_err", "B3", "B3 median |rel. error|"),
              ("band_median_rel_err", "B4", "B4 median |rel. error|"))
    fig = Figure(figsize=(4.8 * len(names), 3.2 * len(panels) + 1.5), layout="constrained")
    axes = fig.subplots(len(panels), len(names), squeeze=False)
    for col, name in enumerate(names):
        methods = report["targets"][name]["methods"]
        labels = list(methods)
        width = 0.8 / max(len(schedules), 1)
        for row, (key, band, title) in enumerate(panels):
            ax = axes[row, col]
            for j, schedule in enumerate(schedules):
                mean, std = [], []
                for m in labels:
                    cell = methods[m]["schedules"].get(schedule)
                    stat = None if cell is None else (cell[key] if band is None
                                                      else cell[key][band])
                    ok = stat is not None and stat["mean"] is not None
                    mean.append(stat["mean"] if ok else np.nan)
                    std.append(stat["std"] if ok else 0.0)
                mean, std = np.array(mean), np.array(std)
                pos = np.arange(len(labels)) - 0.4 + (j + 0.5) * width
                low = np.minimum(std, 0.95 * np.nan_to_num(mean))
                ax.bar(pos, mean, width, yerr=np.vstack([low, std]), capsize=1.5,
                       label=f"{schedule} LR")
            ax.set_yscale("log")
            ax.set_xticks(np.arange(len(labels)), labels, rotation=90, fontsize=6)
            ax.set_title(f"{name}: {title}", fontsize=9)
    handles, legend = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, legend, loc="outside lower center", ncol=len(legend), fontsize=8)
    return fig


def plot_selection(result: dict, far_factor: float = 1.5, title: str = ""):
    """The candidates of a selection (``result["scores"]``: {candidate: {cell: {"ratio",
    "far_ratio"}}}, as ``study_select`` writes them): per cell, one bar per candidate of
    uniform's pole distance over the candidate's (log axis; above 1: closer than
    uniform), hatched where the cell makes the candidate unsafe (``ratio < 1`` or
    ``far_ratio > far_factor``), with lines at 1 and 3. A matplotlib Figure."""
    from matplotlib.figure import Figure
    scores = result["scores"]
    names = list(scores)
    cells = list(next(iter(scores.values())))
    fig = Figure(figsize=(1.1 * len(cells) + 2.5, 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        ratio = np.array([scores[name][c]["ratio"] for c in cells])
        unsafe = [scores[name][c]["ratio"] < 1 or scores[name][c]["far_ratio"] > far_factor
                  for c in cells]
        bars = ax.bar(np.arange(len(cells)) - 0.4 + (j + 0.5) * width, ratio, width,
                      color=f"C{j}")
        for bar, bad in zip(bars, unsafe):
            if bad:
                bar.set_hatch("///")
                bar.set_edgecolor("black")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axhline(3.0, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_ylabel("uniform's pole distance / the candidate's")
    ax.set_xticks(np.arange(len(cells)), [c.replace(", ", "\n") for c in cells],
                  fontsize=7, rotation=45, ha="right")
    ax.set_title(title or "hatched: unsafe cell (closer to no pole than uniform, or far "
                 f"field > {far_factor:g}x uniform's)", fontsize=9)
    from matplotlib.patches import Patch             # unhatched keys: hatching marks cells
    ax.legend(handles=[Patch(facecolor=f"C{j}", label=n) for j, n in enumerate(names)],
              fontsize=7, ncol=2)
    return fig


def _md(stat: dict, digits: int = 2) -> str:
    if stat is None or stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.{digits}e} ± {stat['std']:.1e}"


def markdown_tables(report: dict) -> str:
    """docs/training_study.md's full tables from a study.json dict: per target and LR
    schedule, median |relative error| per band B0..B4, pole distance, uniform-test MSE, sampler share of the training time, runs with a
    spurious pole (any epoch / at the end; 1-D) and new labels per run."""
    seeds = report["config"]["seeds"]
    out = []
    for name, schedule, rows in _cells(report):
        out += [f"### {name}, {schedule} LR (mean ± std over {seeds} seeds)", "",
                "| arm | B0 | B1 | B2 | B3 | B4 | pole distance | uniform-test MSE | "
                "sampler share | spurious (any / end) | new labels |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for method, m in rows:
            sp = m.get("spurious")
            cells = [_md(m["band_median_rel_err"][b]) for b in BANDS]
            cells += [_md(m["pole_distance"]), _md(m["overall_mse"], 1),
                      f"{m['sampler_share']['mean']:.3f}",
                      f"{sp['runs_with_any']} / {sp['runs_at_end']}" if sp else "-",
                      f"{m['n_new']['mean']:.0f}"]
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
