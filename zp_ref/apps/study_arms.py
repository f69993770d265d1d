"""The training study's arms: where each method's batches come from (see
:mod:`zp_ref.apps.study`, docs/training_study.md).

Every arm is a *batch source*: ``epoch_batches(epoch)`` gives the epoch's batches (int64
index arrays into the current pool), ``pool()`` the current pool tensors (x (n, dim),
y (n,)), which grow in the ``*_grow`` arms; ``end_epoch()`` runs after the epoch's steps;
``seconds`` is the wall time spent in the sampler (refreshes and draws). Random numbers
come from :mod:`zp_ref.rng` only.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..bridges.torch import (CurriculumBatchSampler, HybridBatchSampler,
                             ImportanceWeightedSampler, evaluate_q_fn, torch)
from ..bridges.torch_poles import PoleDistance
from ..rng import STREAMS, derive_seed, uniforms
from ..sampling import sample_indices

__all__ = ["TRUE_Q_METHODS", "LABEL_Q_METHODS", "LABEL_GROW_METHODS", "POLE_Q_METHODS",
           "MODEL_Q_METHODS", "MODEL_DRIVEN_METHODS", "GROW_METHODS", "SQUARED_ERROR_METHODS",
           "LARGE_POOL_METHODS", "METHODS", "MODEL_DRIVEN_GATE", "PARTIAL_REFRESH_ROWS",
           "ARM_BASE", "make_source", "model_driven_config", "label_distance",
           "CURRICULUM_FAR_FLOOR", "CURRICULUM_FAR_FLOORS"]

#: Samplers given the target's true Q on the pool (the most favourable case).
TRUE_Q_METHODS = ("importance", "hybrid", "curriculum", "active")
#: The true-Q curriculum given, as its Q, the distance to the poles the labels show
#: (:func:`zp_ref.model_driven_growth.label_pole_distance`, units of x): no true Q, no model;
#: and the same with half of every stage on the far band (``default_stages(5, 0.5)``), or
#: 70 % of it (``_floor70``).
LABEL_Q_METHODS = ("curriculum_labels", "curriculum_labels_floor", "curriculum_labels_floor70")
#: The true-Q curriculum given, as its Q, the distance to the nearest pole that the model's
#: Q head or the labels show (:class:`zp_ref.bridges.torch_poles.PoleDistance`, refreshed
#: every epoch): the model's poles, spurious ones included, and the target's that it lacks;
#: and the same with half of every stage on the far band.
POLE_Q_METHODS = ("curriculum_poles", "curriculum_poles_floor")
#: The far band's least share in every stage of ``curriculum_labels_floor``: the safe
#: sampler's uniform floor.
CURRICULUM_FAR_FLOOR = 0.5
#: The far band's least share in every stage, per floored curriculum arm (0 for the rest).
CURRICULUM_FAR_FLOORS = {"curriculum_labels_floor": CURRICULUM_FAR_FLOOR,
                         "curriculum_poles_floor": CURRICULUM_FAR_FLOOR,
                         "curriculum_labels_floor70": 0.7}
#: Today's samplers with the model's own Q head on the pool (``q_fn``), refreshed every epoch.
MODEL_Q_METHODS = ("importance_model_q", "hybrid_model_q", "curriculum_model_q")
#: The safe model-driven sampler (zp_ref.torch_bridge.ModelDrivenSampler): its defaults,
#: with refinement of the model's Q, growing the pool through y_fn, and with the variance
#: gate of Katharopoulos & Fleuret 2018 (``variance_gate=MODEL_DRIVEN_GATE``), and the
#: default and growing arms told the squared error of the prediction instead of the
#: training loss (``SQUARED_ERROR_METHODS``), and the default arm told the squared error
#: with a partial refresh (``refresh_rows=PARTIAL_REFRESH_ROWS``); the growing arm with
#: ``growth="poles"`` (new labels at the target's own poles), told the training loss or
#: the squared error; the default arm told the squared error with the band curriculum over
#: the distance to the labels' poles instead of the model's (``q_signal="labels",
#: schedule="bands"``: ``model_driven_sqerr_labels``).
MODEL_DRIVEN_METHODS = ("model_driven", "model_driven_refine", "model_driven_grow",
                        "model_driven_gate", "model_driven_sqerr", "model_driven_grow_sqerr",
                        "model_driven_sqerr_partial", "model_driven_grow_poles",
                        "model_driven_grow_poles_sqerr", "model_driven_sqerr_labels")
#: Model-driven arms whose ``loss_fn`` is ``(model.predict(x) - y)^2``, the squared error
#: of the prediction P/Q, which is largest at the poles the model lacks; the study's
#: training loss, (Q y - P)^2 / (1 + y^2), tends to a constant (Q' delta)^2 there.
SQUARED_ERROR_METHODS = ("model_driven_sqerr", "model_driven_grow_sqerr",
                         "model_driven_sqerr_partial", "model_driven_grow_poles_sqerr",
                         "model_driven_sqerr_labels")
#: The labels' curriculum without a floor (``curriculum_labels``) on a pool that grows by
#: ``label_budget`` labels at every epoch start: at the labels' pole brackets (as
#: ``growth="poles"``), and its control, the same number of uniform new points.
LABEL_GROW_METHODS = ("curriculum_labels_grow", "curriculum_labels_grow_uniform")
#: Arms that only mean something on a pool much larger than the study's 2**15 (the fifth
#: run's 2**18), left out of the study's default arms: ``model_driven_sqerr`` with every
#: refresh after the first evaluating ``PARTIAL_REFRESH_ROWS`` rows only.
LARGE_POOL_METHODS = ("model_driven_sqerr_partial",)
#: The partial arm's ``refresh_rows`` (the benchmark's setting, docs/benchmarks.md).
PARTIAL_REFRESH_ROWS = 4096
#: ModelDrivenConfig fields every study arm sets before its own: the full refresh of
#: every run made before ``refresh_rows`` defaulted to "auto".
ARM_BASE = {"refresh_rows": 0}
#: Arms that label new points with y_fn, all with the same budget of new labels:
#: the model-driven one, uniform new points (its control) and the true-Q oracle (the
#: same sampler and settings given the target's true Q instead of the model's).
GROW_METHODS = ("model_driven_grow", "model_driven_grow_sqerr", "model_driven_grow_poles",
                "model_driven_grow_poles_sqerr", "uniform_grow", "oracle_grow")
METHODS = (("uniform",) + TRUE_Q_METHODS + LABEL_Q_METHODS + LABEL_GROW_METHODS + POLE_Q_METHODS
           + MODEL_Q_METHODS + ("zeroproofml_adaptive",)
           + MODEL_DRIVEN_METHODS + ("uniform_grow", "oracle_grow"))
#: The model_driven_gate arm's ``variance_gate``: importance stays on only while it is
#: estimated to lower the gradient's second moment at all (tau >= 1). K&F's threshold
#: tau_th = (B + 3b) / (3b) prices the extra forward passes that score a large batch B
#: for a batch b; the model-driven refresh has already paid for its scores (the loss of
#: every pool point), so that cost term is 1 here.
MODEL_DRIVEN_GATE = 1.0
#: Stream of the uniform_grow arm's new points (offset past the pool's own draws).
GROW_STREAM, GROW_START = STREAMS["pool"], 1 << 36
#: Counter offset of ``curriculum_labels_grow``'s uniforms at the brackets (past the rest).
LABEL_GROW_START = 1 << 38


class _Timed:
    """Accumulates the wall time of the sampler's work in ``seconds``."""
    seconds = 0.0

    def _timed(self, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0

    def end_epoch(self) -> None:
        pass


class _FixedPool(_Timed):
    def __init__(self, x: np.ndarray, y: np.ndarray):
        self._x, self._y = torch.from_numpy(x), torch.from_numpy(y)

    def pool(self):
        return self._x, self._y


class BridgeSource(_FixedPool):
    """Today's samplers of :mod:`zp_ref.torch_bridge` (uniform, importance, hybrid,
    curriculum; true Q or the model's Q head)."""

    def __init__(self, method, x, y, q, cfg, seed, model):
        super().__init__(x, y)
        b, spe = cfg.batch_size, cfg.steps_per_epoch
        self.kind = kind = ("curriculum" if method.startswith("curriculum")
                            else method.replace("_model_q", ""))
        if method in LABEL_Q_METHODS:     # the labels' poles, timed as the sampler's work
            q = self._timed(label_distance, x, y, cfg.q_floor)
        self.spe, self.b = spe, b
        if method in MODEL_Q_METHODS or method in POLE_Q_METHODS:
            q_fn = (self._timed(PoleDistance, model.q, x, y, floor=cfg.q_floor)
                    if method in POLE_Q_METHODS else model.q)
            source = {"x_pool": self._x, "q_fn": q_fn, "refresh_every": 1}
        else:
            source = {"q_pool": q}
        if kind == "importance":
            self.sampler = ImportanceWeightedSampler(num_samples=b * spe, seed=seed,
                                                     backend="numpy", **source)
        elif kind == "curriculum":
            from ..curriculum import BandCurriculum, default_stages
            curriculum = BandCurriculum(default_stages(5, CURRICULUM_FAR_FLOORS.get(method, 0.0)),
                                        epochs_per_stage=max(1, cfg.epochs // 3), seed=seed,
                                        within=cfg.curriculum_within, backend="numpy")
            self.sampler = CurriculumBatchSampler(batch_size=b, num_batches=spe,
                                                  curriculum=curriculum, **source)
        else:   # uniform and active draw uniformly from their pool; hybrid mixes
            ratio = cfg.hybrid_ratio if kind == "hybrid" else 0.0
            self.sampler = HybridBatchSampler(batch_size=b, num_batches=spe, ratio=ratio,
                                              seed=seed, backend="numpy", **source)

    def _draw(self, epoch):
        self.sampler.set_epoch(epoch)
        if self.kind == "importance":
            return list(self.sampler.indices().reshape(self.spe, self.b))
        return self.sampler.batches()

    def epoch_batches(self, epoch):
        return self._timed(self._draw, epoch)

    def end_epoch(self):
        if self.kind == "curriculum":
            self._timed(self.sampler.update)


class AdaptiveSource(_FixedPool):
    """zeroproofml 0.6.1's ``AdaptiveSampler``: at every epoch start ``update`` with the
    model's Q over the pool (its documented use), then ``steps_per_epoch * batch_size``
    draws with replacement from its weights by :func:`zp_ref.sampling.sample_indices`
    (seed ``derive_seed(seed, epoch)``) instead of torch's global random state."""

    def __init__(self, x, y, cfg, seed, model):
        from .study_zeroproofml import adaptive_sampler
        super().__init__(x, y)
        self.sampler, self.implementation = adaptive_sampler(len(y))
        self.model, self.cfg, self.seed = model, cfg, seed
        self.weight_range = []

    def _draw(self, epoch):
        from .study_zeroproofml import adaptive_weights
        w = adaptive_weights(self.sampler, evaluate_q_fn(self.model.q, self._x))
        self.weight_range.append((float(w.min()), float(w.max())))
        b, spe = self.cfg.batch_size, self.cfg.steps_per_epoch
        idx = sample_indices(w, b * spe, seed=derive_seed(self.seed, epoch), backend="numpy")
        return list(idx.reshape(spe, b))

    def epoch_batches(self, epoch):
        return self._timed(self._draw, epoch)


def model_driven_config(method: str, cfg):
    """The ModelDrivenConfig of a model-driven arm: the library's defaults
    (``model_driven``); with ``refine=True`` (``model_driven_refine``); with
    ``variance_gate=MODEL_DRIVEN_GATE`` (``model_driven_gate``); with
    ``refresh_rows=PARTIAL_REFRESH_ROWS`` (``model_driven_sqerr_partial``); with
    ``q_signal="labels", schedule="bands"`` (``model_driven_sqerr_labels``); with
    ``refine=True`` and ``cfg.label_budget`` new labels per refresh when the defaults
    grow none (``model_driven_grow`` and ``oracle_grow``: new points around high-loss
    points and in the refined cells of Q, as docs/torch.md describes; the pole arms with
    ``growth="poles"``). The defaults are ``ModelDrivenConfig(**ARM_BASE)``
    (``refresh_rows=0``) with ``cfg.model_driven``'s (field, value) pairs replaced: every
    arm but the partial one refreshes the whole pool, as in every run before the default
    became "auto" (which is 0 on the study's pool of 2**15)."""
    from ..model_driven import ModelDrivenConfig
    overrides = getattr(cfg, "model_driven", ())
    try:
        overrides = dict(overrides)
    except (TypeError, ValueError):
        raise TypeError(f"model_driven must be ((field, value), ...) pairs, got "
                        f"{overrides!r}") from None
    unknown = sorted(set(overrides) - set(ModelDrivenConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"model_driven names no ModelDrivenConfig field: {unknown}; "
                         f"accepted: {sorted(ModelDrivenConfig.__dataclass_fields__)}")
    base = ModelDrivenConfig(**{**ARM_BASE, **overrides})
    if method == "model_driven_refine":
        return dataclasses.replace(base, refine=True)
    if method == "model_driven_gate":
        return dataclasses.replace(base, variance_gate=MODEL_DRIVEN_GATE)
    if method == "model_driven_sqerr_partial":
        return dataclasses.replace(base, refresh_rows=PARTIAL_REFRESH_ROWS)
    if method == "model_driven_sqerr_labels":
        return dataclasses.replace(base, q_signal="labels", schedule="bands")
    if method in GROW_METHODS:
        return dataclasses.replace(base, refine=True,
                                   label_budget=base.label_budget or cfg.label_budget,
                                   growth="poles" if "_poles" in method else base.growth)
    return base


class ModelDrivenSource(_Timed):
    """zp_ref's ModelDrivenSampler over the pool: the model's Q head (``q_fn``) and its
    per-point loss (``loss_fn``); ``y_fn`` for the growing arms; the true Q as ``q_fn``
    for ``oracle_grow``."""

    def __init__(self, method, target, x, y, cfg, seed, model):
        from ..bridges.torch_model import ModelDrivenSampler
        self.config = model_driven_config(method, cfg)
        q_fn = _true_q_fn(target) if method == "oracle_grow" else model.q
        grow = method in GROW_METHODS
        loss_fn = (_squared_error(model) if method in SQUARED_ERROR_METHODS
                   else _sample_loss(model, cfg))
        self.sampler = ModelDrivenSampler(
            torch.from_numpy(x), cfg.batch_size, cfg.steps_per_epoch, q_fn=q_fn,
            y_pool=torch.from_numpy(y), loss_fn=loss_fn,
            y_fn=_y_fn(target) if grow else None, config=self.config, seed=seed)

    def pool(self):
        return self.sampler.x_pool, self.sampler.y_pool

    def _draw(self, epoch):
        self.sampler.set_epoch(epoch)
        return list(self.sampler.batches())

    def epoch_batches(self, epoch):
        return self._timed(self._draw, epoch)

    def refresh_log(self) -> list:
        return [dict(r) for r in getattr(self.sampler, "refresh_log", [])]


def _box(target) -> tuple:
    """The target's box as (lo, hi), float64 (dim,) each."""
    return (np.array([b[0] for b in target.bounds]), np.array([b[1] for b in target.bounds]))


def _uniform_new_points(target, seed: int, n: int, k: int) -> np.ndarray:
    """n points uniform in the target's box (n, dim): the uniform_grow arm's new points
    after its first k (GROW_STREAM from GROW_START)."""
    d = target.dim
    lo, hi = _box(target)
    u = uniforms(seed, GROW_STREAM, n * d, start=GROW_START + k * d, backend="numpy")
    return lo + (hi - lo) * u.reshape(n, d)


class UniformGrowSource(_Timed):
    """The y_fn control: at every refresh of the model-driven grow arm (epochs 0,
    refresh_every, 2 refresh_every, ...) as many new uniform points of the box as its
    ``label_budget``, labelled by the target, join the pool; batches are uniform draws
    over the current pool."""

    def __init__(self, target, x, y, cfg, seed):
        mdc = model_driven_config("model_driven_grow", cfg)
        self.budget, self.every = int(mdc.label_budget), int(mdc.refresh_every)
        self.target, self.cfg, self.seed = target, cfg, seed
        self._x, self._y = x, y
        self.n_new = 0

    def pool(self):
        return torch.from_numpy(self._x), torch.from_numpy(self._y)

    def _draw(self, epoch):
        if epoch % self.every == 0 and self.budget:
            new = _uniform_new_points(self.target, self.seed, self.budget, self.n_new)
            y_new = self.target.evaluate(new)[0]
            self._x = np.concatenate([self._x, new])
            self._y = np.concatenate([self._y, y_new])
            self.n_new += self.budget
        b, spe = self.cfg.batch_size, self.cfg.steps_per_epoch
        u = uniforms(derive_seed(self.seed, epoch), STREAMS["uniform"], b * spe,
                     backend="numpy")
        idx = np.minimum((u * self._y.size).astype(np.int64), self._y.size - 1)
        return list(idx.reshape(spe, b))

    def epoch_batches(self, epoch):
        return self._timed(self._draw, epoch)


class LabelGrowSource(_Timed):
    """``curriculum_labels`` on a growing pool: at every epoch start ``cfg.label_budget``
    new points join the pool, labelled by the target, and the curriculum's Q (the
    distance to the labels' poles, :func:`label_distance`) is found again over the whole
    pool. ``curriculum_labels_grow``: the new points at the labels' pole brackets
    (:func:`~zp_ref.model_driven_growth.pole_brackets` with ``max(1, budget // 16)``
    brackets 4 spacings apart, then :func:`~zp_ref.model_driven_growth.at_brackets`, as
    ``growth="poles"``, clipped to the target's box), uniform in the box while the labels
    show none; ``curriculum_labels_grow_uniform``: uniform in the box (uniform_grow's
    points). New points whose label is not finite are left out."""

    def __init__(self, method, target, x, y, cfg, seed):
        from ..curriculum import BandCurriculum, default_stages
        from ..model_driven_growth import pool_geometry
        self.at_poles, self.target, self.cfg, self.seed = (
            method == "curriculum_labels_grow", target, cfg, seed)
        self._x, _, self.spacing = pool_geometry(x, "x")
        self._y = np.asarray(y, dtype=np.float64)
        self.curriculum = BandCurriculum(default_stages(5), seed=seed, backend="numpy",
                                         epochs_per_stage=max(1, cfg.epochs // 3),
                                         within=cfg.curriculum_within)
        self.sampler, self.n_drawn = None, 0

    def pool(self):
        return torch.from_numpy(self._x), torch.from_numpy(self._y)

    def _new_points(self) -> np.ndarray:
        from ..model_driven_growth import at_brackets, pole_brackets
        n, k = self.cfg.label_budget, self.n_drawn
        self.n_drawn += n
        if self.at_poles:
            a, b = pole_brackets(self._x, self._y, max(1, n // 16), 4 * self.spacing)
            if a.shape[0]:
                u = uniforms(self.seed, GROW_STREAM, 2 * n, start=LABEL_GROW_START + 2 * k,
                             backend="numpy").reshape(n, 2)
                return np.clip(at_brackets(a, b, n, self.spacing, u), *_box(self.target))
        return _uniform_new_points(self.target, self.seed, n, k)

    def _draw(self, epoch):
        new = self._new_points()
        y_new = self.target.evaluate(new)[0]
        keep = np.isfinite(y_new)
        self._x = np.concatenate([self._x, new[keep]])
        self._y = np.concatenate([self._y, y_new[keep]])
        q = label_distance(self._x, self._y, self.cfg.q_floor)
        self.sampler = CurriculumBatchSampler(batch_size=self.cfg.batch_size,
                                              num_batches=self.cfg.steps_per_epoch,
                                              curriculum=self.curriculum, q_pool=q)
        self.sampler.set_epoch(epoch)
        return self.sampler.batches()

    def epoch_batches(self, epoch):
        return self._timed(self._draw, epoch)

    def end_epoch(self):
        self._timed(self.sampler.update)


def label_distance(x, y, q_floor: float) -> np.ndarray:
    """The curriculum's Q in ``curriculum_labels``: the distance of every pool point
    (x (n,) or (n, d), y (n,)) to the poles its labels show, in units of x, at least
    ``q_floor`` (:func:`zp_ref.model_driven_growth.label_pole_distance`)."""
    from ..model_driven_growth import label_pole_distance
    return np.maximum(label_pole_distance(x, y), q_floor)


def _squared_error(model):
    """``loss_fn(x, y) = (model.predict(x) - y)^2`` (n,): the prediction's squared error."""
    return lambda x, y: (model.predict(x) - y) ** 2


def _sample_loss(model, cfg):
    """The per-point training loss of ``model`` (the sampler's ``loss_fn``): the study
    model's ``cfg.loss`` ((P/Q - y)^2 for "mse"), else the model's own."""
    if cfg.loss == "mse" and hasattr(model, "from_features"):
        return _squared_error(model)
    return model.sample_loss


def _true_q_fn(target):
    """The target's true Q as a torch function of x (n, dim) (differentiable, for the
    distance signal |Q| / |grad Q| of the oracle arm)."""
    exps = torch.from_numpy(np.array(target.q.exponents, dtype=np.float64))
    coeffs = torch.from_numpy(np.array(target.q.coefficients, dtype=np.float64))

    def q_fn(x):
        x = torch.as_tensor(x, dtype=torch.float64).reshape(-1, target.dim)
        return torch.prod(x[:, None, :] ** exps[None, :, :], dim=2) @ coeffs
    return q_fn


def _y_fn(target):
    def y_fn(x):
        xs = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return torch.from_numpy(target.evaluate(np.reshape(xs, (len(xs), target.dim)))[0])
    return y_fn


def make_source(method, target, x, y, q, cfg, seed, model):
    """The batch source of ``method`` over the pool (x (n, dim), y (n,), true Q q (n,))."""
    if method == "zeroproofml_adaptive":
        return AdaptiveSource(x, y, cfg, seed, model)
    if method in MODEL_DRIVEN_METHODS or method == "oracle_grow":
        return ModelDrivenSource(method, target, x, y, cfg, seed, model)
    if method == "uniform_grow":
        return UniformGrowSource(target, x, y, cfg, seed)
    if method in LABEL_GROW_METHODS:
        return LabelGrowSource(method, target, x, y, cfg, seed)
    return BridgeSource(method, x, y, q, cfg, seed, model)
