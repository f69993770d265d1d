"""Training study: does near-pole sampling improve accuracy near poles?

Two model families are fitted to targets with known poles by each sampling method (an
*arm*, :mod:`zp_ref.apps.study_arms`) under the same step budget, initialisation and
optimiser, with a constant learning rate and with a cosine decay; the error is then
measured per |Q| band B0..B4 on a test set stratified by band, with the pole distance,
the far field and the sampler's share of the training time.

- The study's own model (:class:`RationalModel`, ``P / Q`` with ``Q = 1 + sum_k phi_k
  m_k(x)``) under a plain Adam loop with the linearized loss.
- zeroproofml 0.6.1's models under its ``SCMTrainer`` with ``implicit_loss``
  (:mod:`zp_ref.apps.study_zeroproofml`; skipped without zeroproofml).

See docs/training_study.md. Needs torch (``zp_ref[torch]``). Random numbers come from
:mod:`zp_ref.rng` only: its streams ``pool`` (16, training pool and grown points),
``model_init`` (17, model initialisation) and ``test_set`` (18, test set).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ..bands import DEFAULT_EDGES, WITHIN, band_of
from ..bridges.torch import torch
from ..checks import check_choice, check_count, check_real
from ..rng import derive_seed, uniforms
from . import study_zeroproofml
from .study_arms import (ARM_BASE, GROW_METHODS, LARGE_POOL_METHODS, METHODS,
                         MODEL_DRIVEN_METHODS, make_source, model_driven_config)
from .study_data import TEST_STREAM, test_set, training_pool
from .study_model import (RationalModel, Target, batch_loss, draw_optimum, model_errors,
                          pole_distance, real_poles_1d, targets, true_poles)
from .study_report import BANDS, TEST_RANGES, plot_study, summarise, table

__all__ = ["METHODS", "BANDS", "RationalModel", "StudyConfig", "Target", "targets",
           "run_study", "study_command", "test_set", "train_one"]

#: Training losses of the study's own model: "linearized" mean((Q_m y - P_m)^2 / (1 + y^2))
#: (a weighted least squares in the parameters, no barrier at Q_m = 0), "mse"
#: mean((P_m/Q_m - y)^2). The zeroproofml models use zeroproofml's implicit_loss.
LOSSES = ("linearized", "mse")
LR_SCHEDULES = ("cosine", "constant")
TRAINERS = ("adam", "zeroproofml")
#: study.json's schema: 2 adds LR schedules, trainers and the model-driven arms (see
#: docs/training_study.md); 1 had one block of statistics per method.
SCHEMA_VERSION = 2
#: Arms of the cosine runs: every arm but those meant for a large pool.
COSINE_METHODS = tuple(m for m in METHODS if m not in LARGE_POOL_METHODS)
#: Arms run under the constant learning rate.
CONSTANT_METHODS = ("uniform", "zeroproofml_adaptive", "model_driven", "model_driven_gate",
                    "model_driven_sqerr", "model_driven_grow", "model_driven_grow_sqerr",
                    "uniform_grow", "oracle_grow")
#: Arms run with zeroproofml's models under its SCMTrainer (constant LR, SCMTrainer's
#: default of no scheduler).
ZEROPROOFML_METHODS = ("uniform", "hybrid_model_q", "zeroproofml_adaptive", "model_driven",
                       "model_driven_gate", "model_driven_sqerr", "model_driven_grow",
                       "model_driven_grow_sqerr", "uniform_grow")
#: A model pole farther than this from every true pole (1-D) counts as spurious.
SPURIOUS_TOLERANCE = 0.05


# ------------------------------------------------------------------ configuration
@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Budget and hyper-parameters, shared by every arm (see :meth:`full`, :meth:`quick`).

    Steps = ``epochs * steps_per_epoch`` batches of ``batch_size``. ``q_floor``: training
    and test points need |Q| >= q_floor (targets at most ~1/q_floor). Adam from ``lr``,
    constant or with cosine decay to ``lr_min`` (``lr_schedules``). Test:
    ``test_per_band`` points per band, plus ``test_uniform`` uniform points for
    ``overall_mse``. Active pool: ActiveSampler with ``criterion="sign"``,
    ``initial_grid`` cells per axis and ``active_levels[dim-1]`` levels, sampled with
    ``weighting="leaf"``. ``hybrid_ratio``: importance share of a hybrid batch;
    ``curriculum_within``: how the curricula draw inside a band. ``label_budget``: new
    labels per refresh of the growing arms when ModelDrivenConfig's default is 0.
    ``zeroproofml_lr``: the learning rate of zeroproofml's models, (1-D, 2-D).
    ``methods`` run under the cosine schedule, ``constant_methods`` under the constant
    one, ``zeroproofml_methods`` with zeroproofml's models on ``zeroproofml_targets``
    under ``zeroproofml_schedules``. ``model_driven``: ``((field, value), ...)`` replacing
    ModelDrivenConfig's defaults in every model-driven arm (``()``: the library's defaults).
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
    label_budget: int = 256
    zeroproofml_lr: tuple = (0.02, 0.005)
    targets: tuple = ("rational_1d", "rational_2d", "three_poles_1d", "spurious_1d")
    lr_schedules: tuple = LR_SCHEDULES
    methods: tuple = COSINE_METHODS
    constant_methods: tuple = CONSTANT_METHODS
    zeroproofml_methods: tuple = ZEROPROOFML_METHODS
    zeroproofml_targets: tuple = ("rational_1d", "rational_2d")
    zeroproofml_schedules: tuple = ("constant",)
    model_driven: tuple = ()

    @classmethod
    def full(cls) -> "StudyConfig":
        return cls()

    @classmethod
    def quick(cls) -> "StudyConfig":
        return cls(pool_size=1 << 13, batch_size=128, epochs=6, steps_per_epoch=40,
                   test_per_band=64, test_uniform=1024, active_levels=(15, 7),
                   label_budget=64, lr_schedules=("cosine",),
                   zeroproofml_schedules=("cosine",))

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def methods_for(self, schedule: str, trainer: str) -> tuple:
        """The arms run with ``schedule`` and ``trainer``, in ``METHODS`` order."""
        if trainer == "zeroproofml":
            chosen = set(self.zeroproofml_methods if schedule in self.zeroproofml_schedules
                         else ())
        else:
            chosen = set(self.methods if schedule == "cosine" else self.constant_methods)
        return tuple(m for m in METHODS if m in chosen)

    def validate(self) -> "StudyConfig":
        for name in ("pool_size", "batch_size", "epochs", "steps_per_epoch", "test_per_band",
                     "test_uniform", "active_max_points", "label_budget"):
            check_count(getattr(self, name), name, minimum=1)
        check_real(self.lr, "lr", low=0.0, low_open=True)
        if len(self.zeroproofml_lr) != 2:
            raise ValueError(f"zeroproofml_lr must be (1-D rate, 2-D rate), got "
                             f"{self.zeroproofml_lr!r}")
        for rate in self.zeroproofml_lr:
            check_real(rate, "zeroproofml_lr", low=self.lr_min, low_open=True)
        check_real(self.lr_min, "lr_min", low=0.0, high=self.lr)
        check_real(self.q_floor, "q_floor", low=0.0, high=TEST_RANGES[0][0])
        check_real(self.hybrid_ratio, "hybrid_ratio", low=0.0, high=1.0)
        check_choice(self.curriculum_within, "curriculum_within", WITHIN)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}")
        known = targets()
        for field in ("targets", "zeroproofml_targets"):
            for t in getattr(self, field):
                if t not in known:
                    raise ValueError(f"{field} must be names from {list(known)}, got {t!r}")
        for field in ("methods", "constant_methods", "zeroproofml_methods"):
            for m in getattr(self, field):
                if m not in METHODS:
                    raise ValueError(f"{field} must be names from {list(METHODS)}, got {m!r}")
        model_driven_config("model_driven", self)     # ValueError/TypeError naming a bad field
        for field in ("lr_schedules", "zeroproofml_schedules"):
            value = getattr(self, field)
            if not value or any(s not in LR_SCHEDULES for s in value):
                raise ValueError(f"{field} must be a non-empty tuple of {list(LR_SCHEDULES)}, "
                                 f"got {value!r}")
        return self


# ------------------------------------------------------------------ one run
class _Recorder:
    """Per-run bookkeeping of the draws: counts per true band (the band of each pool
    point, extended as the pool grows), and draws per pool entry in the last quarter."""

    def __init__(self, target: Target, cfg: StudyConfig):
        self.target, self.cfg = target, cfg
        self.band = np.zeros(0, np.int64)
        self.drawn = np.zeros(len(BANDS), np.int64)
        self.late = np.zeros(0, np.int64)
        self.step = 0

    def see_pool(self, x) -> None:
        n = len(x)
        if n > self.band.size:
            new = np.asarray(x[self.band.size:], dtype=np.float64).reshape(-1, self.target.dim)
            q = self.target.evaluate(new)[1]
            self.band = np.concatenate([self.band, band_of(q, DEFAULT_EDGES, backend="numpy")])
            self.late = np.concatenate([self.late, np.zeros(n - self.late.size, np.int64)])

    def see_batch(self, idx: np.ndarray) -> None:
        self.drawn += np.bincount(self.band[idx], minlength=len(BANDS))
        if 4 * self.step >= 3 * self.cfg.steps:
            self.late += np.bincount(idx, minlength=self.late.size)
        self.step += 1


def _poles_now(model, target: Target) -> tuple:
    """(the model's real poles in the box, how many are spurious), 1-D only. Spurious:
    the model's real poles beyond the target's count that lie farther than
    SPURIOUS_TOLERANCE from every true pole (a pole still migrating towards a true one
    that the model has not yet found does not count)."""
    poles = real_poles_1d(model, target.bounds)
    truth = true_poles(target)
    far = (np.abs(poles[:, None] - truth[None, :]).min(axis=1) > SPURIOUS_TOLERANCE
           if truth.size else np.ones(poles.size, bool))
    return ([round(float(p), 4) for p in poles],
            int(min(far.sum(), max(poles.size - truth.size, 0))))


def _build_model(target: Target, trainer: str, seed: int):
    if trainer == "zeroproofml":
        return study_zeroproofml.build_model(target.dim, seed)
    return RationalModel(target.dim, *target.model_degrees, seed=seed)


def train_one(target: Target, method: str, cfg: StudyConfig, seed: int, test: dict,
              schedule: str = "cosine", trainer: str = "adam") -> dict:
    """Train one model with one arm, LR schedule, trainer and seed; the per-band test
    errors, pole distance, draw statistics and timings (dict).

    ``seconds``: training wall time (pool, sampler and steps); ``sampler_share``: the
    part of it spent in the sampler (refreshes and draws). 1-D: ``poles_by_epoch`` /
    ``spurious_by_epoch``, the model's real poles at every epoch start and at the end,
    and how many of them are farther than SPURIOUS_TOLERANCE from every true pole. With
    the linearized loss, ``optimum`` reports the same errors for the exact minimiser of
    the loss over the draws of the last quarter of the steps (:func:`draw_optimum`).
    """
    check_choice(schedule, "schedule", LR_SCHEDULES)
    check_choice(trainer, "trainer", TRAINERS)
    t0 = time.perf_counter()
    x, y, q = training_pool(target, method, cfg, seed)
    model = _build_model(target, trainer, seed)
    source = make_source(method, target, x, y, q, cfg, seed, model)
    rec = _Recorder(target, cfg)
    poles, spurious = [], []

    def at_epoch_start(_epoch=None):
        if target.dim == 1:
            p, s = _poles_now(model, target)
            poles.append(p)
            spurious.append(s)

    diverged = False
    if trainer == "zeroproofml":
        class _Watched:     # the source, with the epoch-start hooks of the Adam loop below
            def epoch_batches(self, epoch):
                at_epoch_start()
                batches = source.epoch_batches(epoch)
                rec.see_pool(source.pool()[0])
                return batches

            def pool(self):
                return source.pool()
        diverged = study_zeroproofml.fit(model, _Watched(), epochs=cfg.epochs,
                                         lr=cfg.zeroproofml_lr[target.dim - 1],
                                         lr_min=cfg.lr_min, schedule=schedule,
                                         steps=cfg.steps, on_batch=rec.see_batch)
    else:
        diverged = _adam_loop(model, source, rec, cfg, schedule, at_epoch_start)
    at_epoch_start()
    seconds = time.perf_counter() - t0
    pole_pts = target.pole_points(uniforms(0, TEST_STREAM, 256, start=1 << 40,
                                           backend="numpy"))
    out = _evaluate(model, test, pole_pts)
    xt, yt = source.pool()
    out.update({"near_pole_coverage": float(rec.drawn[:-1].sum() / rec.drawn.sum()),
                "train_band_fractions": (rec.drawn / rec.drawn.sum()).tolist(),
                "pool_size": int(len(yt)), "n_new": int(len(yt) - len(y)),
                "diverged": bool(diverged), "seconds": seconds,
                "sampler_seconds": source.seconds, "sampler_share": source.seconds / seconds,
                "poles_by_epoch": poles or None, "spurious_by_epoch": spurious or None})
    if hasattr(source, "refresh_log"):
        out["refresh_seconds"] = float(sum(r.get("total", 0.0) for r in source.refresh_log()))
        if source.config.variance_gate:     # model_driven_gate: the gate at every refresh
            out["gate_tau"] = [r["gate_tau"] for r in source.refresh_log()]
            out["gate_open"] = [r["gate_open"] for r in source.refresh_log()]
    if hasattr(source, "weight_range"):
        out["weight_range"] = [min(w[0] for w in source.weight_range),
                               max(w[1] for w in source.weight_range)]
    if trainer == "adam" and cfg.loss == "linearized" and rec.late.any() and not diverged:
        fp, fq = model.features(xt)
        draw_optimum(model, fp, fq, yt.numpy(), rec.late)
        out["optimum"] = _evaluate(model, test, pole_pts)
    return out


def _adam_loop(model, source, rec, cfg: StudyConfig, schedule: str, at_epoch_start) -> bool:
    """The study's own loop: Adam on the model's loss over the source's batches;
    True when the loss went non-finite (training stops there)."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps,
                                                        eta_min=cfg.lr_min)
             if schedule == "cosine" else None)
    for epoch in range(cfg.epochs):
        at_epoch_start()
        batches = source.epoch_batches(epoch)
        xt, yt = source.pool()
        rec.see_pool(xt)
        for idx in batches:
            rec.see_batch(idx)
            it = torch.from_numpy(idx)
            fp, fq = model.features(xt[it])
            loss = batch_loss(model, fp, fq, yt[it], cfg.loss)
            if not torch.isfinite(loss):
                return True
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        source.end_epoch()
    return False


def _evaluate(model, test: dict, poles: np.ndarray) -> dict:
    errors = {name: model_errors(model, *test[name]) for name in BANDS + ("uniform",)}
    return {"band_mse": {b: errors[b][0] for b in BANDS},
            "band_median_rel_err": {b: errors[b][1] for b in BANDS},
            "overall_mse": errors["uniform"][0], "pole_distance": pole_distance(model, poles)}


# ------------------------------------------------------------------ the study
def _jobs(cfg: StudyConfig, seeds: int, first_seed: int = 0) -> list:
    """(target, trainer, method, schedule, seed) of every run, in run order (seeds
    ``first_seed .. first_seed + seeds - 1``)."""
    trainers = ("adam", "zeroproofml") if study_zeroproofml.available() else ("adam",)
    jobs = []
    for name in cfg.targets:
        for trainer in trainers:
            if trainer == "zeroproofml" and name not in cfg.zeroproofml_targets:
                continue
            for schedule in cfg.lr_schedules:
                for method in cfg.methods_for(schedule, trainer):
                    jobs += [(name, trainer, method, schedule, s)
                             for s in range(first_seed, first_seed + seeds)]
    return jobs


def method_key(trainer: str, method: str) -> str:
    """study.json's name of an arm: the method, prefixed "zeroproofml/" for zeroproofml's
    models under SCMTrainer."""
    return method if trainer == "adam" else f"zeroproofml/{method}"


#: StudyConfig fields that choose which runs happen (not what a run computes).
SELECTION_FIELDS = ("targets", "lr_schedules", "methods", "constant_methods",
                    "zeroproofml_methods", "zeroproofml_targets", "zeroproofml_schedules")


def run_fingerprint(cfg: StudyConfig) -> str:
    """A hash of everything a run's result depends on besides its own key: the config
    without the selection fields and the library versions (the model-driven defaults
    are part of the key of the arms that use them, see :func:`_cache_key`)."""
    return _digest([{k: v for k, v in dataclasses.asdict(cfg).items()
                     if k not in SELECTION_FIELDS}, torch.__version__,
                    study_zeroproofml.version()])


def _digest(value) -> str:
    import hashlib
    blob = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cache_key(job: tuple) -> list:
    """A run's key in runs.jsonl: (target, trainer, method, schedule, seed), plus a hash
    of ModelDrivenConfig's defaults for the arms that use them."""
    uses = job[2] in MODEL_DRIVEN_METHODS + GROW_METHODS
    return list(job) + [_digest(_model_driven_defaults()) if uses else ""]


def _load_cache(path: Path, fingerprint: str) -> dict:
    cache = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:      # a line cut short by an interrupted run
                continue
            if entry.get("fingerprint") == fingerprint:
                cache[tuple(entry["key"])] = entry["run"]
    return cache


def run_study(quick=True, seeds=5, out="runs/study", progress=True, config=None,
              resume=False, first_seed=0) -> dict:
    """Run every arm on every target, LR schedule and trainer for ``seeds`` seeds; write
    ``study.json`` and ``study.png`` into ``out``; return the JSON dict.

    ``study.json``: {"schema_version", "config", "targets": {target: {"target",
    "test_points", "methods": {method: {"trainer", "arm", "schedules": {schedule:
    {"band_mse": {"B0": {"mean", "std", "n"}, ...}, "overall_mse", "near_pole_coverage",
    "seconds", "band_median_rel_err", "pole_distance", "sampler_share", ...}}}}}}}
    (docs/training_study.md). ``config`` (a :class:`StudyConfig`) replaces the preset
    chosen by ``quick``. Seeds are ``first_seed .. first_seed + seeds - 1`` (a fresh
    set for a confirmation run). Every finished run is appended to ``runs.jsonl`` in ``out``;
    ``resume=True`` reuses the runs found there for the same :func:`run_fingerprint`.
    """
    if not isinstance(quick, (bool, np.bool_)):
        raise TypeError(f"quick must be True or False, got {quick!r}")
    seeds = check_count(seeds, "seeds", minimum=1)
    first_seed = check_count(first_seed, "first_seed")
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
    jobs = _jobs(cfg, seeds, first_seed)
    runs, tests = {}, {}
    fingerprint = run_fingerprint(cfg)
    cache = _load_cache(out / "runs.jsonl", fingerprint) if resume else {}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with tqdm(total=len(jobs), desc="zp-ref study", disable=not progress) as bar, \
            open(out / "runs.jsonl", "a" if resume else "w") as log:
        for job in jobs:
            name, trainer, method, schedule, s = job
            if name not in tests:
                tests[name] = test_set(known[name], cfg)
            run = cache.get(tuple(_cache_key(job)))
            if run is None:
                bar.set_postfix_str(f"{name} {method_key(trainer, method)} {schedule} "
                                    f"seed {s}")
                run = train_one(known[name], method, cfg, derive_seed(s, 0), tests[name],
                                schedule=schedule, trainer=trainer)
                run["seed"] = s
                log.write(json.dumps({"fingerprint": fingerprint, "key": _cache_key(job),
                                      "run": run}) + "\n")
                log.flush()
            runs.setdefault((name, trainer, method), {}).setdefault(schedule, []).append(run)
            bar.update()
    results = {}
    for name in cfg.targets:
        if name not in tests:           # no arm runs on it (e.g. SCMTrainer-only arms)
            continue
        methods = {}
        for (tname, trainer, method), by_schedule in runs.items():
            if tname == name:
                methods[method_key(trainer, method)] = {
                    "trainer": trainer, "arm": method,
                    "schedules": {sch: summarise(r) for sch, r in by_schedule.items()}}
        results[name] = {"target": known[name].config(), "methods": methods,
                         "test_points": {k: int(v[1].size) for k, v in tests[name].items()}}
    report = {
        "schema_version": SCHEMA_VERSION,
        "config": {**{k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in dataclasses.asdict(cfg).items()},
                   "steps": cfg.steps, "quick": bool(quick), "seeds": seeds,
                   "first_seed": first_seed,
                   "band_edges": list(DEFAULT_EDGES), "test_ranges": [list(r) for r in TEST_RANGES],
                   "spurious_tolerance": SPURIOUS_TOLERANCE,
                   "sampler_config": "ImportanceSamplerConfig() defaults (weight_power=2, "
                                     "min_q_abs=1e-6, max_weight=100, importance_batch_ratio=0.7)",
                   "model_driven_config": model_driven_config("model_driven", cfg).to_dict(),
                   "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                   "zeroproofml": study_zeroproofml.version(),
                   "fingerprint": fingerprint, "reused_runs": len(cache),
                   "cpu_seconds": time.process_time() - cpu0,
                   "wall_seconds": time.perf_counter() - wall0},
        "targets": results,
    }
    _save(out, report)
    return report


def _model_driven_defaults() -> dict:
    """The study arms' base, ``ModelDrivenConfig(**ARM_BASE).to_dict()`` (the arms pin
    the full refresh, :func:`~zp_ref.apps.study_arms.model_driven_config`), without
    the fields added later whose default draws as before they existed
    (``variance_gate = 0``: off), so that the runs cached before them keep their keys."""
    from ..model_driven import ModelDrivenConfig
    added_off = {"variance_gate": 0.0}
    return {k: v for k, v in ModelDrivenConfig(**ARM_BASE).to_dict().items()
            if not (k in added_off and v == added_off[k])}


def _save(out: Path, report: dict) -> None:
    from .._atomic import atomic_savefig, atomic_write_json   # no torn file on a crash
    atomic_write_json(out / "study.json", report)
    if report["targets"]:                   # a figure of no target has no axes
        atomic_savefig(plot_study(report), out / "study.png", dpi=110)


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a {what} integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be a {what} integer, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1, "positive")


def _count(text: str) -> int:
    return _int_at_least(text, 0, "non-negative")


def study_command(argv=None) -> str:
    """``zp-ref study [--quick] [--seeds N] [--first-seed K] [--lr-schedule S] ...``: run the
    study; returns its table for the command line to show (bad arguments:
    SystemExit(2), one line)."""
    from ._args import OneLineArgumentParser          # bad arguments: one line, exit 2
    parser = OneLineArgumentParser(
        prog="zp-ref study",
        description="Train rational models with each sampling method and report the error "
                    "per |Q| band, pole distance and sampler cost (writes study.json and "
                    "study.png).")
    parser.add_argument("--quick", action="store_true",
                        help="small budget (240 steps per run, 2 seeds, cosine LR), a "
                             "smoke test, instead of the full run")
    parser.add_argument("--seeds", type=_positive_int, default=None,
                        help="seeds per arm (5; 2 with --quick)")
    parser.add_argument("--first-seed", type=_count, default=0,
                        help="first seed (0); seeds FIRST .. FIRST + N - 1, e.g. 5 for a "
                             "confirmation on fresh seeds")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine", "both"), default=None,
                        help="learning-rate schedules to run (both; cosine with --quick)")
    parser.add_argument("--targets", default=None,
                        help=f"comma-separated targets (default: all of {', '.join(targets())})")
    parser.add_argument("--out", default="runs/study", help="output folder (runs/study)")
    parser.add_argument("--loss", choices=LOSSES, default="linearized",
                        help="training loss of the study's own model (linearized: "
                             "mean((Q y - P)^2 / (1 + y^2)); mse: mean((P/Q - y)^2))")
    parser.add_argument("--threads", type=_positive_int, default=1,
                        help="torch CPU threads (1)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the finished runs in OUT/runs.jsonl (same settings)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    preset = StudyConfig.quick() if args.quick else StudyConfig.full()
    changes = {"loss": args.loss}
    if args.lr_schedule is not None:
        changes["lr_schedules"] = (LR_SCHEDULES if args.lr_schedule == "both"
                                   else (args.lr_schedule,))
    if args.targets is not None:
        names = tuple(t.strip() for t in args.targets.split(",") if t.strip())
        unknown = [t for t in names if t not in targets()]
        if not names or unknown:
            parser.error(f"--targets: unknown target(s) {unknown or [args.targets]}; "
                         f"choose from {', '.join(targets())}")
        changes["targets"] = names
    torch.set_num_threads(args.threads)
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    report = run_study(quick=args.quick, seeds=seeds, out=args.out,
                       progress=not args.no_progress, resume=args.resume,
                       config=dataclasses.replace(preset, **changes),
                       first_seed=args.first_seed)
    return (f"{table(report)}\n"
            f"wrote {Path(args.out) / 'study.json'} and {Path(args.out) / 'study.png'}")
