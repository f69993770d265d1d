"""Curricula over pole distance.

``CurriculumScheduler`` / ``CurriculumConfig``: ZeroProofML's scheduler (thresholds and
sample weights identical to the anchor, golden-tested) with its bugs fixed (see
docs/differences.md). ``BandCurriculum``: the seed's far -> mid -> near curriculum as
stages of mixes over |Q| bands, drawn with :func:`zp_ref.bands.stratified_sample`,
optionally with the near band edge following the hybrid-gradient delta(t).
See docs/curriculum.md.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from ._validation import (as_float_array, check_backend, check_choice, check_count,
                          check_real, check_seed)
from .tensors import tensor_io
from .bands import (DEFAULT_EDGES, WITHIN, check_edges, check_mix, check_q, default_stages,
                    stratified_sample)
from .rng import call_seed
from .schedule import DeltaSchedule, _check_bool
from .state import STATE_VERSION, check_state, config_fields

ADVANCE = ("epochs", "adaptive")


# ======================================================================= anchor scheduler
@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    """ZeroProofML's curriculum fields (distances in the units of |x - pole| or |Q|).

    Parameters
    ----------
    n_stages, stage_duration, warmup_epochs : int, default 5, 20, 5
    easy_distance, hard_distance : float, default 1.0, 0.01
    initial_easy_ratio, final_easy_ratio : float in [0, 1], default 0.9, 0.2
    linear_progression, adaptive, use_importance_weights : bool, default False, True, True
    min_coverage_for_advance, max_loss_for_advance, importance_temperature : float
        Defaults 0.7, 1.0, 1.0.
    min_epochs : int or None, default None
        Least epochs in a stage before an adaptive advance (None: ``stage_duration // 2``).
    """

    n_stages: int = 5
    stage_duration: int = 20
    easy_distance: float = 1.0
    hard_distance: float = 0.01
    initial_easy_ratio: float = 0.9
    final_easy_ratio: float = 0.2
    linear_progression: bool = False
    warmup_epochs: int = 5
    adaptive: bool = True
    min_coverage_for_advance: float = 0.7
    max_loss_for_advance: float = 1.0
    use_importance_weights: bool = True
    importance_temperature: float = 1.0
    min_epochs: Optional[int] = None

    def __post_init__(self):
        v = {
            "n_stages": check_count(self.n_stages, "n_stages", minimum=1),
            "stage_duration": check_count(self.stage_duration, "stage_duration", minimum=1),
            "hard_distance": check_real(self.hard_distance, "hard_distance", low=0.0),
            "initial_easy_ratio": check_real(self.initial_easy_ratio, "initial_easy_ratio",
                                             low=0.0, high=1.0),
            "final_easy_ratio": check_real(self.final_easy_ratio, "final_easy_ratio",
                                           low=0.0, high=1.0),
            "linear_progression": _check_bool(self.linear_progression, "linear_progression"),
            "warmup_epochs": check_count(self.warmup_epochs, "warmup_epochs"),
            "adaptive": _check_bool(self.adaptive, "adaptive"),
            "min_coverage_for_advance": check_real(self.min_coverage_for_advance,
                                                   "min_coverage_for_advance", low=0.0, high=1.0),
            "max_loss_for_advance": check_real(self.max_loss_for_advance, "max_loss_for_advance"),
            "use_importance_weights": _check_bool(self.use_importance_weights,
                                                  "use_importance_weights"),
            "importance_temperature": check_real(self.importance_temperature,
                                                 "importance_temperature", low=0.0, low_open=True),
            "min_epochs": (None if self.min_epochs is None
                           else check_count(self.min_epochs, "min_epochs")),
        }
        v["easy_distance"] = check_real(self.easy_distance, "easy_distance",
                                        low=v["hard_distance"])
        for key, value in v.items():
            object.__setattr__(self, key, value)

    @property
    def min_stage_epochs(self) -> int:
        """Epochs in a stage before an adaptive advance is allowed."""
        return self.stage_duration // 2 if self.min_epochs is None else self.min_epochs


def _check_poles(pole_locations):
    """None / empty -> None; else finite float64 (m,) or (m, d)."""
    if pole_locations is None:
        return None
    poles = as_float_array(pole_locations, "pole_locations", ndim=(1, 2), allow_empty=True,
                           finite=True)
    return None if poles.size == 0 else poles


class CurriculumScheduler:
    """ZeroProofML's ``CurriculumScheduler``: stage counter, difficulty threshold, sample
    weights; ``current_stage`` and ``current_epoch`` are validated on assignment.

    Parameters
    ----------
    config : CurriculumConfig or None, default None
    pole_locations : array_like, shape (P,) or (P, d), or None
        Distances are ``min_j |x - pole_j|`` (Euclidean for (n, d) inputs), else ``|q|``.
    """

    def __init__(self, config: Optional[CurriculumConfig] = None, pole_locations=None):
        if config is None:
            config = CurriculumConfig()
        if not isinstance(config, CurriculumConfig):
            raise TypeError(f"config must be a CurriculumConfig or None, got "
                            f"{type(config).__name__}")
        self.config = config
        self.pole_locations = _check_poles(pole_locations)
        self._stage = 0
        self._epoch = 0
        self.stage_start_epoch = 0
        self.coverage_history: list[float] = []
        self.loss_history: list[float] = []
        self.stage_performance: list[dict] = []

    # ---------------------------------------------------------------- public state
    @property
    def current_stage(self) -> int:
        return self._stage

    @current_stage.setter
    def current_stage(self, stage):
        stage = check_count(stage, "current_stage")
        if stage >= self.config.n_stages:
            raise ValueError(f"current_stage must be in [0, {self.config.n_stages - 1}] "
                             f"(n_stages = {self.config.n_stages}), got {stage}")
        self._stage = stage

    @property
    def current_epoch(self) -> int:
        return self._epoch

    @current_epoch.setter
    def current_epoch(self, epoch):
        self._epoch = check_count(epoch, "current_epoch")

    # ---------------------------------------------------------------- schedule
    def stage_progress(self) -> float:
        """current_stage / max(1, n_stages - 1), in [0, 1]."""
        return self._stage / max(1, self.config.n_stages - 1)

    def get_difficulty_threshold(self) -> float:
        """Distance at or below which a sample counts as hard.

        ``easy_distance`` during warmup (epoch < warmup_epochs); else
        ``easy*(1-p) + hard*p`` with p the stage progress (linear) or
        ``(exp(progress) - 1) / (e - 1)`` (exponential).
        """
        c = self.config
        if self._epoch < c.warmup_epochs:
            return c.easy_distance
        p = self.stage_progress()
        if not c.linear_progression:
            p = (math.exp(p) - 1.0) / (math.e - 1.0)
        return c.easy_distance * (1.0 - p) + c.hard_distance * p

    def easy_ratio(self) -> float:
        """Share of the total weight given to easy samples at the current stage."""
        p = self.stage_progress()
        return self.config.initial_easy_ratio * (1.0 - p) + self.config.final_easy_ratio * p

    def distances(self, x_values, q_values=None) -> Optional[np.ndarray]:
        """Pole distance per sample, float64 (n,), or None when there is no pole info."""
        return self._distances(as_float_array(x_values, "x_values", ndim=(1, 2), finite=True),
                               q_values)

    def _distances(self, x: np.ndarray, q_values) -> Optional[np.ndarray]:
        if self.pole_locations is not None:
            poles = self.pole_locations
            if x.ndim != poles.ndim or (x.ndim == 2 and x.shape[1] != poles.shape[1]):
                raise ValueError(f"x_values of shape {x.shape} do not match pole_locations of "
                                 f"shape {poles.shape}: use (n,) with (m,) or (n, d) with (m, d)")
            d = np.full(x.shape[0], np.inf)
            for pole in poles:
                gap = np.abs(x - pole) if x.ndim == 1 else np.sqrt(((x - pole) ** 2).sum(axis=1))
                d = np.minimum(d, gap)
            return d
        if q_values is None:
            return None
        q = as_float_array(q_values, "q_values")
        if q.size != x.shape[0]:
            raise ValueError(f"q_values must have one entry per sample ({x.shape[0]}), "
                             f"got {q.size}")
        if np.isnan(q).any():
            raise ValueError(f"q_values must not contain NaN: {int(np.isnan(q).sum())} NaN "
                             f"value(s), first at index {int(np.argmax(np.isnan(q)))}")
        return np.abs(q)

    @tensor_io(q_args=("q_values",), other_args=("x_values",))
    def get_sample_weights(self, x_values, q_values=None) -> np.ndarray:
        """Curriculum sampling weights, float64 (n,), summing to 1.

        Hard samples (distance <= threshold) share ``1 - easy_ratio`` and easy ones
        ``easy_ratio`` (a class that is empty gives its share to the other); inside the
        hard class the weight is proportional to ``exp(-d / importance_temperature)``
        when ``use_importance_weights``, else equal. Uniform without pole information.
        """
        x = as_float_array(x_values, "x_values", ndim=(1, 2), finite=True)
        d = self._distances(x, q_values)
        n = x.shape[0]
        if d is None:
            return np.full(n, 1.0 / n)
        hard = d <= self.get_difficulty_threshold()
        n_hard = int(hard.sum())
        n_easy = n - n_hard
        easy_mass = self.easy_ratio() if n_hard and n_easy else float(n_easy > 0)
        hard_mass = 1.0 - easy_mass if n_hard and n_easy else float(n_hard > 0)
        w = np.empty(n)
        w[~hard] = easy_mass / max(n_easy, 1)
        if n_hard and self.config.use_importance_weights:
            dh = d[hard]
            imp = np.exp(-(dh - dh.min()) / self.config.importance_temperature)
            w[hard] = hard_mass * imp / imp.sum()
        else:
            w[hard] = hard_mass / max(n_hard, 1)
        return w / w.sum()

    # ---------------------------------------------------------------- progression
    def _check_progress_args(self, coverage, loss):
        return (check_real(coverage, "coverage", low=0.0, high=1.0),
                check_real(loss, "loss"))

    def should_advance_stage(self, current_coverage, current_loss) -> bool:
        """True when the stage may advance now (never at the last stage).

        Fixed (``adaptive=False``): ``stage_duration`` epochs in the stage. Adaptive:
        coverage >= ``min_coverage_for_advance``, loss <= ``max_loss_for_advance`` and at
        least ``min_stage_epochs`` epochs in the stage.
        """
        coverage, loss = self._check_progress_args(current_coverage, current_loss)
        c = self.config
        if self._stage >= c.n_stages - 1:
            return False
        in_stage = self._epoch - self.stage_start_epoch
        if not c.adaptive:
            return in_stage >= c.stage_duration
        if coverage < c.min_coverage_for_advance or loss > c.max_loss_for_advance:
            return False
        return in_stage >= c.min_stage_epochs

    def update(self, epoch, coverage, loss) -> dict:
        """Record an epoch (non-decreasing) and advance the stage when due."""
        epoch = check_count(epoch, "epoch")
        coverage, loss = self._check_progress_args(coverage, loss)
        if epoch < self._epoch:
            raise ValueError(f"epoch must not decrease: got {epoch} after {self._epoch}")
        self._epoch = epoch
        self.coverage_history.append(coverage)
        self.loss_history.append(loss)
        advanced = self.should_advance_stage(coverage, loss)
        if advanced:
            self.stage_performance.append({
                "stage": self._stage, "start_epoch": self.stage_start_epoch,
                "end_epoch": epoch, "duration": epoch - self.stage_start_epoch,
                "final_coverage": coverage, "final_loss": loss})
            self._stage += 1
            self.stage_start_epoch = epoch
        return {"stage": self._stage, "progress": self.stage_progress(),
                "difficulty_threshold": self.get_difficulty_threshold(),
                "advanced": advanced, "epochs_in_stage": epoch - self.stage_start_epoch}

    def get_summary(self) -> dict:
        """Stage, threshold, coverage mean and least-squares trend (per update), stages."""
        cov = np.asarray(self.coverage_history)
        return {
            "current_stage": self._stage,
            "current_epoch": self._epoch,
            "total_stages": self.config.n_stages,
            "difficulty_threshold": self.get_difficulty_threshold(),
            "mean_coverage": float(cov.mean()) if cov.size else None,
            "coverage_trend": (float(np.polyfit(np.arange(cov.size), cov, 1)[0])
                               if cov.size > 1 else 0.0),
            "mean_loss": float(np.mean(self.loss_history)) if self.loss_history else None,
            "stage_performance": [dict(p) for p in self.stage_performance],
        }

    # ---------------------------------------------------------------- state protocol
    _STATE_KEYS = ("config", "pole_locations", "current_stage", "current_epoch",
                   "stage_start_epoch", "coverage_history", "loss_history",
                   "stage_performance")
    _PERF_KEYS = ("stage", "start_epoch", "end_epoch", "duration", "final_coverage",
                  "final_loss")

    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "config": dataclasses.asdict(self.config),
                "pole_locations": (None if self.pole_locations is None
                                   else self.pole_locations.copy()),
                "current_stage": self._stage, "current_epoch": self._epoch,
                "stage_start_epoch": self.stage_start_epoch,
                "coverage_history": list(self.coverage_history),
                "loss_history": list(self.loss_history),
                "stage_performance": [dict(p) for p in self.stage_performance]}

    def load_state_dict(self, state) -> None:
        """Restore everything from ``state`` (validated first; nothing changes on error)."""
        other = type(self).from_state_dict(state)
        self.__dict__.update(other.__dict__)

    @classmethod
    def from_state_dict(cls, state) -> "CurriculumScheduler":
        state = check_state(state, cls.__name__, cls._STATE_KEYS)
        config_fields(state["config"], cls.__name__,
                      [f.name for f in dataclasses.fields(CurriculumConfig)])
        obj = cls(CurriculumConfig(**state["config"]), state["pole_locations"])
        obj.current_stage = state["current_stage"]
        obj.current_epoch = state["current_epoch"]
        obj.stage_start_epoch = check_count(state["stage_start_epoch"], "stage_start_epoch")
        if obj.stage_start_epoch > obj.current_epoch:
            raise ValueError(f"{cls.__name__} state: stage_start_epoch "
                             f"{obj.stage_start_epoch} > current_epoch {obj.current_epoch}")
        cov = [check_real(c, "coverage_history entry", low=0.0, high=1.0)
               for c in _as_list(state["coverage_history"], "coverage_history")]
        loss = [check_real(v, "loss_history entry")
                for v in _as_list(state["loss_history"], "loss_history")]
        if len(cov) != len(loss):
            raise ValueError(f"{cls.__name__} state: {len(cov)} coverage but {len(loss)} "
                             f"loss entries")
        obj.coverage_history, obj.loss_history = cov, loss
        perf = _as_list(state["stage_performance"], "stage_performance")
        for p in perf:
            if not isinstance(p, dict) or set(p) != set(cls._PERF_KEYS):
                raise ValueError(f"{cls.__name__} state: stage_performance entries must have "
                                 f"keys {list(cls._PERF_KEYS)}, got {p!r}")
        obj.stage_performance = [dict(p) for p in perf]
        return obj


def _as_list(value, name: str) -> list:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"state {name} must be a list, got {type(value).__name__}")
    return list(value)


# ======================================================================= band curriculum
class BandCurriculum:
    """Stages of mixes over |Q| bands, advanced by epochs or adaptively; call c of
    :meth:`sample` draws with ``stratified_sample(..., seed=derive_seed(seed, c))``.

    Parameters
    ----------
    stages : array_like, shape (S, K+1), or None (:func:`default_stages`)
    edges : sequence of float, shape (K,), default DEFAULT_EDGES
    advance : {"epochs", "adaptive"}, default "epochs"
        The stage at epoch t is ``min(t // epochs_per_stage, S-1)``; or it advances in
        :meth:`update` once coverage >= ``coverage_floor`` and loss <= ``loss_ceiling``
        (None: not checked) held for ``min_epochs`` consecutive updates in the stage.
    epochs_per_stage, min_epochs : int, default 10, 3
    coverage_floor, loss_ceiling : float or None, default 0.7, 1.0 (advance="adaptive")
    delta_schedule : DeltaSchedule or None, default None
        From its warmup's end ``get_delta(t, q_min)`` (q_min of the previous batch)
        replaces the near edge ``edges[0]``; it must stay below ``edges[1]``.
    within : {"importance", "uniform"}, default "importance"
    weight_power, seed, backend : float, int, str, default 2.0, 0, "auto"
        Epochs must not decrease; ``update`` is optional with "epochs" (``sample`` advances).
    """

    def __init__(self, stages=None, *, edges=DEFAULT_EDGES, advance="epochs",
                 epochs_per_stage=10, coverage_floor=0.7, loss_ceiling=1.0, min_epochs=3,
                 delta_schedule=None, within="importance", weight_power=2.0, seed=0,
                 backend="auto"):
        self.edges = check_edges(edges)
        n_bands = self.edges.size + 1
        if stages is None:
            stages = default_stages(n_bands)
        if isinstance(stages, (str, bytes)) or not hasattr(stages, "__len__") or len(stages) == 0:
            raise ValueError(f"stages must be a non-empty list of mixes over {n_bands} bands, "
                             f"got {stages!r:.80}")
        self.stages = np.stack([check_mix(s, n_bands, f"stages[{i}]")
                                for i, s in enumerate(stages)])
        self.advance = check_choice(advance, "advance", ADVANCE)
        self.epochs_per_stage = check_count(epochs_per_stage, "epochs_per_stage", minimum=1)
        self.coverage_floor = (None if coverage_floor is None else
                               check_real(coverage_floor, "coverage_floor", low=0.0, high=1.0))
        self.loss_ceiling = None if loss_ceiling is None else check_real(loss_ceiling,
                                                                         "loss_ceiling")
        self.min_epochs = check_count(min_epochs, "min_epochs", minimum=1)
        if delta_schedule is not None:
            if not isinstance(delta_schedule, DeltaSchedule):
                raise TypeError(f"delta_schedule must be a DeltaSchedule or None, got "
                                f"{type(delta_schedule).__name__}")
            top = delta_schedule.upper_bound()
            if self.edges.size > 1 and top >= self.edges[1]:
                raise ValueError(f"delta_schedule reaches {top} (max of delta_init, "
                                 f"delta_final, min_delta, 2*delta_init if adaptive), which "
                                 f"must stay below edges[1] = {self.edges[1]} so the near edge "
                                 f"it moves keeps the edges increasing")
        self.delta_schedule = delta_schedule
        self.within = check_choice(within, "within", WITHIN)
        self.weight_power = check_real(weight_power, "weight_power", low=0.0)
        self.seed = check_seed(seed)
        self.backend = check_backend(backend)
        self.current_stage = 0
        self.current_epoch = 0
        self.stage_start_epoch = 0
        self.streak = 0
        self.n_calls = 0
        self.last_q_min: Optional[float] = None
        self.stage_history: list[dict] = []
        self.last_info: Optional[dict] = None

    @property
    def n_stages(self) -> int:
        return self.stages.shape[0]

    # ---------------------------------------------------------------- pure queries
    def stage_at(self, epoch) -> int:
        """The stage used at ``epoch``: ``min(epoch // epochs_per_stage, S-1)`` in epochs
        mode, the current stage in adaptive mode."""
        epoch = check_count(epoch, "epoch")
        if self.advance == "epochs":
            return min(epoch // self.epochs_per_stage, self.n_stages - 1)
        return self.current_stage

    def mix_at(self, epoch) -> np.ndarray:
        """The mix of :meth:`stage_at` (epoch), float64 (K+1,)."""
        return self.stages[self.stage_at(epoch)].copy()

    def delta_at(self, epoch) -> Optional[float]:
        """delta(epoch) of the coupled schedule (None without one or during its warmup)."""
        epoch = check_count(epoch, "epoch")
        if self.delta_schedule is None:
            return None
        return self.delta_schedule.get_delta(epoch, q_min=self.last_q_min)

    def edges_at(self, epoch) -> np.ndarray:
        """Edges used at ``epoch``: ``edges`` with ``edges[0] = delta_at(epoch)`` when set."""
        edges = self.edges.copy()
        delta = self.delta_at(epoch)
        if delta is not None:
            edges[0] = delta
        return edges

    # ---------------------------------------------------------------- draws and progress
    def _check_epoch(self, epoch) -> int:
        epoch = check_count(epoch, "epoch")
        if epoch < self.current_epoch:
            raise ValueError(f"epoch must not decrease: got {epoch} after {self.current_epoch}")
        return epoch

    def _enter(self, stage: int, epoch: int) -> bool:
        if stage == self.current_stage:
            return False
        self.stage_history.append({"stage": self.current_stage,
                                   "start_epoch": self.stage_start_epoch, "end_epoch": epoch})
        self.current_stage, self.stage_start_epoch, self.streak = stage, epoch, 0
        return True

    @tensor_io(q_args=("q_pool",), returns="index_tuple")
    def sample(self, q_pool, batch_size, epoch):
        """Draw a batch: ``(idx int64 (batch_size,), band_counts int64 (K+1,))``.

        ``idx`` is band-major (see :func:`stratified_sample`); the call's full ``info``
        is kept in ``last_info``.
        """
        epoch = self._check_epoch(epoch)
        batch_size = check_count(batch_size, "batch_size")
        q_pool = check_q(q_pool, "q_pool", allow_empty=batch_size == 0)
        stage = self.stage_at(epoch)
        idx, info = stratified_sample(
            q_pool, batch_size, edges=self.edges_at(epoch), mix=self.stages[stage],
            seed=call_seed(self.seed, self.n_calls), within=self.within,
            weight_power=self.weight_power, backend=self.backend)
        self.current_epoch = epoch
        self._enter(stage, epoch)
        self.n_calls += 1
        if idx.size:
            self.last_q_min = float(np.min(np.abs(q_pool[idx])))
        self.last_info = info
        return idx, np.asarray(info["achieved"], dtype=np.int64)

    def update(self, epoch, coverage=None, loss=None) -> dict:
        """Record the end of an epoch; advance the stage when due (see the class doc)."""
        epoch = self._check_epoch(epoch)
        if coverage is not None:
            coverage = check_real(coverage, "coverage", low=0.0, high=1.0)
        if loss is not None:
            loss = check_real(loss, "loss")
        if self.advance == "adaptive":
            for value, limit, name in ((coverage, self.coverage_floor, "coverage"),
                                       (loss, self.loss_ceiling, "loss")):
                if value is None and limit is not None:
                    raise ValueError(f"{name} is required by advance='adaptive' (its limit is "
                                     f"{limit}); pass it, or build with that limit set to None")
        self.current_epoch = epoch
        if self.advance == "epochs":
            advanced = self._enter(self.stage_at(epoch), epoch)
        else:
            ok = ((self.coverage_floor is None or coverage >= self.coverage_floor) and
                  (self.loss_ceiling is None or loss <= self.loss_ceiling))
            self.streak = self.streak + 1 if ok else 0
            advanced = (self.streak >= self.min_epochs and
                        self.current_stage < self.n_stages - 1 and
                        self._enter(self.current_stage + 1, epoch))
        return {"epoch": epoch, "stage": self.current_stage, "advanced": advanced,
                "streak": self.streak, "mix": self.stages[self.current_stage].tolist(),
                "delta": self.delta_at(epoch), "edges": self.edges_at(epoch).tolist()}

    def get_summary(self) -> dict:
        return {"current_stage": self.current_stage, "n_stages": self.n_stages,
                "current_epoch": self.current_epoch, "n_calls": self.n_calls,
                "streak": self.streak, "last_q_min": self.last_q_min,
                "stage_history": [dict(h) for h in self.stage_history],
                "last_info": self.last_info}

    # ---------------------------------------------------------------- state protocol
    _CONFIG_KEYS = ("stages", "edges", "advance", "epochs_per_stage", "coverage_floor",
                    "loss_ceiling", "min_epochs", "delta_schedule", "within", "weight_power",
                    "seed", "backend")
    _STATE_KEYS = ("current_stage", "current_epoch", "stage_start_epoch", "streak", "n_calls",
                   "last_q_min", "stage_history")

    def state_dict(self) -> dict:
        """Config and progress (``last_info`` is not part of the state)."""
        return {"version": STATE_VERSION, "stages": self.stages.copy(),
                "edges": self.edges.copy(), "advance": self.advance,
                "epochs_per_stage": self.epochs_per_stage,
                "coverage_floor": self.coverage_floor, "loss_ceiling": self.loss_ceiling,
                "min_epochs": self.min_epochs,
                "delta_schedule": (None if self.delta_schedule is None
                                   else self.delta_schedule.state_dict()),
                "within": self.within, "weight_power": self.weight_power, "seed": self.seed,
                "backend": self.backend, "current_stage": self.current_stage,
                "current_epoch": self.current_epoch, "stage_start_epoch": self.stage_start_epoch,
                "streak": self.streak, "n_calls": self.n_calls, "last_q_min": self.last_q_min,
                "stage_history": [dict(h) for h in self.stage_history]}

    def load_state_dict(self, state) -> None:
        """Restore everything from ``state`` (validated first; nothing changes on error)."""
        other = type(self).from_state_dict(state)
        self.__dict__.update(other.__dict__)

    @classmethod
    def from_state_dict(cls, state) -> "BandCurriculum":
        state = check_state(state, cls.__name__, cls._CONFIG_KEYS + cls._STATE_KEYS)
        config = {k: state[k] for k in cls._CONFIG_KEYS}
        if config["delta_schedule"] is not None:
            config["delta_schedule"] = DeltaSchedule.from_state_dict(config["delta_schedule"])
        obj = cls(config.pop("stages"), **config)
        stage = check_count(state["current_stage"], "current_stage")
        if stage >= obj.n_stages:
            raise ValueError(f"current_stage must be in [0, {obj.n_stages - 1}], got {stage}")
        epoch = check_count(state["current_epoch"], "current_epoch")
        start = check_count(state["stage_start_epoch"], "stage_start_epoch")
        if start > epoch:
            raise ValueError(f"stage_start_epoch {start} > current_epoch {epoch}")
        last_q_min = state["last_q_min"]
        if last_q_min is not None:
            last_q_min = check_real(last_q_min, "last_q_min", low=0.0, allow_inf=True)
        history = _as_list(state["stage_history"], "stage_history")
        for h in history:
            if not isinstance(h, dict) or set(h) != {"stage", "start_epoch", "end_epoch"}:
                raise ValueError(f"stage_history entries must have keys stage, start_epoch, "
                                 f"end_epoch; got {h!r}")
        obj.current_stage, obj.current_epoch, obj.stage_start_epoch = stage, epoch, start
        obj.streak = check_count(state["streak"], "streak")
        obj.n_calls = check_seed(state["n_calls"], "n_calls")
        obj.last_q_min = last_q_min
        obj.stage_history = [dict(h) for h in history]
        return obj
