"""Training study: does near-pole sampling improve accuracy near poles?

A small learnable rational model ``P(x) / Q(x)`` with ``Q(x) = 1 + sum_k phi_k m_k(x)``
(ZeroProofML's TR-rational form: the constant term of Q is pinned to 1) is fitted to
targets with known poles by each sampling method under the same step budget, model,
initialisation and optimiser; the error is then measured per |Q| band B0..B4 on a test
set stratified by band. The ``*_model_q`` methods are the realistic arm: their sampler
sees only the model's own Q head on the pool (``q_fn``), refreshed at every epoch start.
See docs/training_study.md. Needs torch (``zp_ref[torch]``).

Random numbers come from :mod:`zp_ref.rng` only: its streams ``pool`` (16, training
pool), ``model_init`` (17, model initialisation) and ``test_set`` (18, test set).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ..bands import DEFAULT_EDGES, WITHIN, band_of
from ..bridges.torch import (CurriculumBatchSampler, HybridBatchSampler,
                             ImportanceWeightedSampler, torch)
from ..checks import check_choice, check_count, check_real
from ..rng import STREAMS, derive_seed, uniforms
from .study_model import (RationalModel, Target, batch_loss, draw_optimum, model_errors,
                          pole_distance, targets)

__all__ = ["METHODS", "BANDS", "RationalModel", "StudyConfig", "Target", "targets",
           "run_study", "study_command"]

METHODS = ("uniform", "importance", "hybrid", "curriculum", "active", "importance_model_q",
           "hybrid_model_q", "curriculum_model_q")
#: The realistic arm: the sampler's Q is the model's own Q head on the pool (``q_fn``),
#: re-evaluated at every epoch start, instead of the target's true Q.
MODEL_Q_METHODS = ("importance_model_q", "hybrid_model_q", "curriculum_model_q")
BANDS = tuple(f"B{b}" for b in range(len(DEFAULT_EDGES) + 1))
#: |Q| range of the test points of B0..B3 (log-uniform inside); B4 is |Q| > 1e-2.
TEST_RANGES = ((1e-6, 1e-5), (1e-5, 1e-4), (1e-4, 1e-3), (1e-3, 1e-2))
POOL_STREAM, TEST_STREAM = STREAMS["pool"], STREAMS["test_set"]
#: Training losses: "linearized" mean((Q_m y - P_m)^2 / (1 + y^2)) (a weighted least
#: squares in the parameters, no barrier at Q_m = 0), "mse" mean((P_m/Q_m - y)^2).
LOSSES = ("linearized", "mse")
SCHEMA_VERSION = 1


# ------------------------------------------------------------------ configuration
@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Budget and hyper-parameters, shared by every method (see :meth:`full`, :meth:`quick`).

    Steps = ``epochs * steps_per_epoch`` batches of ``batch_size``. ``q_floor``: training
    and test points need |Q| >= q_floor (targets at most ~1/q_floor). Adam with cosine
    decay from ``lr`` to ``lr_min``. Test: ``test_per_band`` points per band, plus
    ``test_uniform`` uniform points for ``overall_mse``. Active pool: ActiveSampler with
    ``criterion="sign"``, ``initial_grid`` cells per axis and ``active_levels[dim-1]``
    levels, sampled with ``weighting="leaf"``. ``hybrid_ratio``: importance share of a
    hybrid batch; ``curriculum_within``: how the curricula draw inside a band
    (:data:`zp_ref.bands.WITHIN`).
    """
    pool_size: int = 1 << 15
    batch_size: int = 256
    epochs: int = 20
    steps_per_epoch: int = 100
    lr: float = 0.02
    lr_min: float = 1e-8
    q_floor: float = 1e-6
    test_per_band: int = 256
    test_uniform: int = 4096
    initial_grid: tuple = (64, 16)
    active_levels: tuple = (15, 9)
    active_max_points: int = 200_000
    loss: str = "linearized"
    hybrid_ratio: float = 0.7
    curriculum_within: str = "importance"
    targets: tuple = ("rational_1d", "rational_2d")
    methods: tuple = METHODS

    @classmethod
    def full(cls) -> "StudyConfig":
        return cls()

    @classmethod
    def quick(cls) -> "StudyConfig":
        return cls(pool_size=1 << 13, batch_size=128, epochs=9, steps_per_epoch=40,
                   test_per_band=64, test_uniform=1024, active_levels=(15, 7))

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def validate(self) -> "StudyConfig":
        for name in ("pool_size", "batch_size", "epochs", "steps_per_epoch", "test_per_band",
                     "test_uniform", "active_max_points"):
            check_count(getattr(self, name), name, minimum=1)
        check_real(self.lr, "lr", low=0.0, low_open=True)
        check_real(self.lr_min, "lr_min", low=0.0, high=self.lr)
        check_real(self.q_floor, "q_floor", low=0.0, high=TEST_RANGES[0][0])
        check_real(self.hybrid_ratio, "hybrid_ratio", low=0.0, high=1.0)
        check_choice(self.curriculum_within, "curriculum_within", WITHIN)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}")
        known = targets()
        for t in self.targets:
            if t not in known:
                raise ValueError(f"targets must be names from {list(known)}, got {t!r}")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"methods must be names from {list(METHODS)}, got {m!r}")
        return self


# ------------------------------------------------------------------ data
def _box(target: Target, u: np.ndarray) -> np.ndarray:
    lo = np.array([b[0] for b in target.bounds])
    hi = np.array([b[1] for b in target.bounds])
    return lo + (hi - lo) * u


def _uniform_points(target: Target, n: int, seed: int, stream: int, start: int = 0):
    d = target.dim
    u = uniforms(seed, stream, n * d, start=start * d, backend="numpy").reshape(n, d)
    return _box(target, u)


def _points_at_level(target: Target, c: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Newton steps along grad Q from points on Q = 0 to Q = c (c small), (n, dim)."""
    x = start.copy()
    for _ in range(30):
        _, q = target.evaluate(x)
        g = target.q_gradient(x)
        x = x - ((q - c) / np.einsum("ij,ij->i", g, g))[:, None] * g
        if np.all(np.abs(target.evaluate(x)[1] - c) <= 1e-9 * np.abs(c)):
            break
    return x


def test_set(target: Target, cfg: StudyConfig, seed: int = 0) -> dict:
    """Test points per band and uniform ones, with targets: {"B0": (x, y), ...,
    "uniform": (x, y)}. Bands B0..B3: |Q| log-uniform in TEST_RANGES with a random sign,
    reached by Newton steps from a random point of the pole set; B4: uniform points
    with |Q| > 1e-2 (rejection). The band of every point is checked."""
    n = cfg.test_per_band
    u = uniforms(seed, TEST_STREAM, 3 * n * 4, backend="numpy").reshape(4, 3, n)
    out = {}
    for b, (lo, hi) in enumerate(TEST_RANGES):
        mag = np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * u[b, 0])
        c = np.where(u[b, 1] < 0.5, -mag, mag)
        x = _points_at_level(target, c, target.pole_points(u[b, 2]))
        out[BANDS[b]] = x
    far, start = [], 12 * n
    while sum(len(f) for f in far) < n:
        x = _uniform_points(target, 4 * n, seed, TEST_STREAM, start)
        start += 4 * n
        far.append(x[np.abs(target.evaluate(x)[1]) > DEFAULT_EDGES[-1]])
    out[BANDS[-1]] = np.concatenate(far)[:n]
    x = _uniform_points(target, cfg.test_uniform, seed, TEST_STREAM, start)
    out["uniform"] = x[np.abs(target.evaluate(x)[1]) >= cfg.q_floor]
    result = {}
    for name, x in out.items():
        y, q = target.evaluate(x)
        if name != "uniform":
            band = band_of(q, DEFAULT_EDGES, backend="numpy")
            if not (band == BANDS.index(name)).all() or not (np.abs(q) >= cfg.q_floor).all():
                raise RuntimeError(f"test points of {name} left their band")  # a bug, not input
        result[name] = (x, y)
    return result


def _training_pool(target: Target, method: str, cfg: StudyConfig, seed: int):
    """Pool points x (n, dim), targets y, Q values q; |Q| >= q_floor and y finite."""
    if method == "active":
        from ..refinement import ActiveSampler, ActiveSamplerConfig
        d = target.dim
        sampler = ActiveSampler(ActiveSamplerConfig(
            initial_grid_size=cfg.initial_grid[d - 1], grid_bounds=target.bounds,
            max_refinement_level=cfg.active_levels[d - 1], criterion="sign",
            max_grid_points=cfg.active_max_points), q=target.q, input_dim=d).refine()
        x = sampler.sample(cfg.pool_size, seed=seed, weighting="leaf")
    else:
        x = _uniform_points(target, cfg.pool_size, seed, POOL_STREAM)
    y, q = target.evaluate(x)
    keep = (np.abs(q) >= cfg.q_floor) & np.isfinite(y)
    return x[keep], y[keep], q[keep]


def _batches(method: str, q: np.ndarray, cfg: StudyConfig, seed: int, model=None, x=None):
    """Yield (epoch, batch index array) for the method, drawn by the bridge's samplers
    (``backend="numpy"``: the same indices as the Numba kernels, and faster on pools
    this small). The ``*_model_q`` methods get ``q_fn=model.q`` on the pool ``x`` (a
    tensor (n, dim)) instead of the true ``q``, refreshed at every epoch start."""
    b, spe = cfg.batch_size, cfg.steps_per_epoch
    kind = method.replace("_model_q", "")
    source = ({"x_pool": x, "q_fn": model.q, "refresh_every": 1}
              if method in MODEL_Q_METHODS else {"q_pool": q})
    if kind == "importance":
        sampler = ImportanceWeightedSampler(num_samples=b * spe, seed=seed, backend="numpy",
                                            **source)
    elif kind == "curriculum":
        from ..curriculum import BandCurriculum
        curriculum = BandCurriculum(epochs_per_stage=max(1, cfg.epochs // 3), seed=seed,
                                    within=cfg.curriculum_within, backend="numpy")
        sampler = CurriculumBatchSampler(batch_size=b, num_batches=spe, curriculum=curriculum,
                                         **source)
    else:   # uniform and active draw uniformly from their pool; hybrid mixes by hybrid_ratio
        sampler = HybridBatchSampler(batch_size=b, num_batches=spe,
                                     ratio=cfg.hybrid_ratio if kind == "hybrid" else 0.0,
                                     seed=seed,
                                     backend="numpy", **source)
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        if kind == "importance":
            batches = sampler.indices().reshape(spe, b)
        else:
            batches = sampler.batches()
        for idx in batches:
            yield epoch, idx
        if kind == "curriculum":
            sampler.update()


# ------------------------------------------------------------------ one run
def train_one(target: Target, method: str, cfg: StudyConfig, seed: int, test: dict) -> dict:
    """Train one model with one method and seed; per-band test errors and draw statistics.

    With the linearized loss, ``optimum`` reports the same errors for the exact minimiser
    of the loss over the draws of the last quarter of the steps (:func:`draw_optimum`).
    """
    t0 = time.perf_counter()
    x, y, q = _training_pool(target, method, cfg, seed)
    model = RationalModel(target.dim, *target.model_degrees, seed=seed)
    xt = torch.from_numpy(x)
    fp, fq = model.features(xt)
    yt = torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr_min)
    pool_band = band_of(q, DEFAULT_EDGES, backend="numpy")
    drawn = np.zeros(len(BANDS), np.int64)
    late = np.zeros(y.size, np.int64)          # draws per pool entry in the last quarter
    diverged = False
    for step, (_, idx) in enumerate(_batches(method, q, cfg, seed, model, xt)):
        drawn += np.bincount(pool_band[idx], minlength=len(BANDS))
        if 4 * step >= 3 * cfg.steps:
            late += np.bincount(idx, minlength=y.size)
        it = torch.from_numpy(idx)
        loss = batch_loss(model, fp[it], fq[it], yt[it], cfg.loss)
        if not torch.isfinite(loss):
            diverged = True
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    poles = target.pole_points(uniforms(0, TEST_STREAM, 256, start=1 << 40, backend="numpy"))
    out = _evaluate(model, test, poles)
    out.update({"near_pole_coverage": float(drawn[:-1].sum() / drawn.sum()),
                "train_band_fractions": (drawn / drawn.sum()).tolist(),
                "pool_size": int(y.size), "diverged": diverged, "seconds": seconds})
    if cfg.loss == "linearized" and late.any():
        draw_optimum(model, fp, fq, y, late)
        out["optimum"] = _evaluate(model, test, poles)
    return out


def _evaluate(model: RationalModel, test: dict, poles: np.ndarray) -> dict:
    errors = {name: model_errors(model, *test[name]) for name in BANDS + ("uniform",)}
    return {"band_mse": {b: errors[b][0] for b in BANDS},
            "band_median_rel_err": {b: errors[b][1] for b in BANDS},
            "overall_mse": errors["uniform"][0], "pole_distance": pole_distance(model, poles)}


# ------------------------------------------------------------------ the study
def _stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    ok = v[np.isfinite(v)]
    if ok.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(ok.mean()), "std": float(ok.std(ddof=1)) if ok.size > 1 else 0.0,
            "n": int(ok.size)}


def _summarise(runs: list) -> dict:
    summary = {
        "band_mse": {b: _stats([r["band_mse"][b] for r in runs]) for b in BANDS},
        "band_median_rel_err": {b: _stats([r["band_median_rel_err"][b] for r in runs])
                                for b in BANDS},
        "overall_mse": _stats([r["overall_mse"] for r in runs]),
        "near_pole_coverage": float(np.mean([r["near_pole_coverage"] for r in runs])),
        "train_band_fractions": np.mean([r["train_band_fractions"] for r in runs],
                                        axis=0).tolist(),
        "pole_distance": _stats([r["pole_distance"] for r in runs]),
        "seconds": float(np.mean([r["seconds"] for r in runs])),
        "diverged": int(sum(r["diverged"] for r in runs)),
        "runs": [{k: r[k] for k in ("band_mse", "band_median_rel_err", "overall_mse",
                                    "pole_distance", "pool_size", "seconds")} for r in runs],
    }
    if all("optimum" in r for r in runs):
        opt = [r["optimum"] for r in runs]
        summary["optimum"] = {
            "band_median_rel_err": {b: _stats([o["band_median_rel_err"][b] for o in opt])
                                    for b in BANDS},
            "band_mse": {b: _stats([o["band_mse"][b] for o in opt]) for b in BANDS},
            "pole_distance": _stats([o["pole_distance"] for o in opt])}
    return summary


def run_study(quick=True, seeds=3, out="runs/study", progress=True, config=None) -> dict:
    """Run every method on every target for ``seeds`` seeds; write ``study.json`` and
    ``study.png`` into ``out``; return the JSON dict.

    ``study.json``: {"schema_version", "config", "targets": {target: {"methods":
    {method: {"band_mse": {"B0": {"mean", "std", "n"}, ...}, "overall_mse": {...},
    "near_pole_coverage", "seconds", ...}}}}} (the issue's per-method schema, one block
    per target). ``config`` (a :class:`StudyConfig`) replaces the preset chosen by
    ``quick``.
    """
    if not isinstance(quick, (bool, np.bool_)):
        raise TypeError(f"quick must be True or False, got {quick!r}")
    seeds = check_count(seeds, "seeds", minimum=1)
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    if config is None:
        config = StudyConfig.quick() if quick else StudyConfig.full()
    elif not isinstance(config, StudyConfig):
        raise TypeError(f"config must be a StudyConfig or None, got {type(config).__name__}")
    cfg = config.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm
    known = targets()
    jobs = [(t, m, s) for t in cfg.targets for m in cfg.methods for s in range(seeds)]
    bar = tqdm(total=len(jobs), desc="zp-ref study", disable=not progress)
    results = {}
    for name in cfg.targets:
        target = known[name]
        test = test_set(target, cfg)
        methods = {}
        for method in cfg.methods:
            runs = []
            for s in range(seeds):
                bar.set_postfix_str(f"{name} {method} seed {s}")
                runs.append(train_one(target, method, cfg, derive_seed(s, 0), test))
                bar.update()
            methods[method] = _summarise(runs)
        results[name] = {"target": target.config(), "methods": methods,
                         "test_points": {k: int(v[1].size) for k, v in test.items()}}
    bar.close()
    report = {
        "schema_version": SCHEMA_VERSION,
        "config": {**{k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in dataclasses.asdict(cfg).items()},
                   "steps": cfg.steps, "quick": bool(quick), "seeds": seeds,
                   "band_edges": list(DEFAULT_EDGES), "test_ranges": [list(r) for r in TEST_RANGES],
                   "sampler_config": "ImportanceSamplerConfig() defaults (weight_power=2, "
                                     "min_q_abs=1e-6, max_weight=100, importance_batch_ratio=0.7)",
                   "torch": torch.__version__},
        "targets": results,
    }
    (out / "study.json").write_text(json.dumps(report, indent=1))
    plot_study(report).savefig(out / "study.png", dpi=110)
    return report


def plot_study(report: dict):
    """Per-band test MSE (top row) and median |relative error| (bottom row) by method:
    mean over seeds, bars = std, log axes; one column per target. A matplotlib Figure."""
    from matplotlib.figure import Figure
    names = list(report["targets"])
    fig = Figure(figsize=(6.5 * len(names), 8.0), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False)
    ticks = [f"{b}\n{lo:.0e}..{hi:.0e}" for b, (lo, hi) in zip(BANDS, TEST_RANGES)]
    ticks.append(f"{BANDS[-1]}\n>{DEFAULT_EDGES[-1]:.0e}")
    for col, name in enumerate(names):
        methods = report["targets"][name]["methods"]
        width = 0.8 / len(methods)
        for row, (key, label) in enumerate((("band_mse", "test MSE"),
                                             ("band_median_rel_err", "median |rel. error|"))):
            ax = axes[row, col]
            for i, (method, res) in enumerate(methods.items()):
                mean = np.array([np.nan if res[key][b]["mean"] is None else res[key][b]["mean"]
                                 for b in BANDS])
                std = np.array([res[key][b]["std"] or 0.0 for b in BANDS])
                pos = np.arange(len(BANDS)) - 0.4 + (i + 0.5) * width
                low = np.minimum(std, 0.95 * mean)     # keep the lower bar on the log axis
                ax.bar(pos, mean, width, yerr=np.vstack([low, std]), capsize=2, label=method)
            ax.set_yscale("log")
            ax.set_xticks(np.arange(len(BANDS)), ticks)
            ax.set_ylabel(f"{label} (mean over seeds, bar = std)")
            ax.set_title(f"{name}: {label} per |Q| band")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4),
               fontsize=8)
    return fig


def _table(report: dict) -> str:
    """The study as text: per target, test MSE and median |relative error| per band."""
    seeds = report["config"]["seeds"]
    lines = []
    for name, res in report["targets"].items():
        methods = res["methods"]
        lines.append(f"{name}: test MSE per band (mean +- std over {seeds} seeds)")
        lines.append(f"{'method':<19}" + "".join(f"{b:>20}" for b in BANDS + ("uniform",))
                     + f"{'near-pole':>10}{'s/run':>7}")
        for method, m in methods.items():
            cells = [m["band_mse"][b] for b in BANDS] + [m["overall_mse"]]
            lines.append(f"{method:<19}" + "".join(f"{_fmt(c):>20}" for c in cells)
                         + f"{m['near_pole_coverage']:>10.3f}{m['seconds']:>7.1f}")
        lines.append(f"{name}: median |relative error| per band, and pole distance")
        lines.append(f"{'method':<19}" + "".join(f"{b:>20}" for b in BANDS + ("pole dist",)))
        for method, m in methods.items():
            cells = [m["band_median_rel_err"][b] for b in BANDS] + [m["pole_distance"]]
            lines.append(f"{method:<19}" + "".join(f"{_fmt(c):>20}" for c in cells))
        if all("optimum" in m for m in methods.values()):
            lines.append(f"{name}: the same for the exact optimum of each method's late draws")
            for method, m in methods.items():
                o = m["optimum"]
                cells = [o["band_median_rel_err"][b] for b in BANDS] + [o["pole_distance"]]
                lines.append(f"{method:<19}" + "".join(f"{_fmt(c):>20}" for c in cells))
        lines.append("")
    return "\n".join(lines)


def _fmt(stat: dict) -> str:
    if stat["mean"] is None:
        return "diverged"
    return f"{stat['mean']:.2e} +- {stat['std']:.1e}"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def study_command(argv=None) -> str:
    """``zp-ref study [--quick] [--seeds N] [--out DIR]``: run the study; returns its
    table for the command line to show (bad arguments: SystemExit(2), one line)."""
    from ._args import OneLineArgumentParser          # bad arguments: one line, exit 2
    parser = OneLineArgumentParser(
        prog="zp-ref study",
        description="Train a rational model with each sampling method and report the test "
                    "MSE per |Q| band (writes study.json and study.png).")
    parser.add_argument("--quick", action="store_true",
                        help="small budget (360 steps per run, a few minutes) instead of the "
                             "full run")
    parser.add_argument("--seeds", type=_positive_int, default=3, help="seeds per method (3)")
    parser.add_argument("--out", default="runs/study", help="output folder (runs/study)")
    parser.add_argument("--loss", choices=LOSSES, default="linearized",
                        help="training loss (linearized: mean((Q y - P)^2 / (1 + y^2)); "
                             "mse: mean((P/Q - y)^2))")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    preset = StudyConfig.quick() if args.quick else StudyConfig.full()
    report = run_study(quick=args.quick, seeds=args.seeds, out=args.out,
                       progress=not args.no_progress,
                       config=dataclasses.replace(preset, loss=args.loss))
    return (f"{_table(report)}\n"
            f"wrote {Path(args.out) / 'study.json'} and {Path(args.out) / 'study.png'}")
