"""Legacy ZeroProofML's training API over the zp_ref core.

Replace ``from zeroproof.training.sampling_diagnostics import ...``,
``from zeroproof.training.advanced_control import CurriculumScheduler, CurriculumConfig``
or ``from zeroproof.autodiff.hybrid_gradient import ...`` by
``from zp_ref.compat.legacy import ...`` and the rest of the code runs unchanged: legacy
signatures (positional ``input_dim``, ``compute_weights(x_pool, q_pool)``,
``refine_grid({key: q})``, ``update_batch(batch_idx, q_min)``, ...), legacy return types
(torch tensors, ``defaultdict`` counts, histories as lists) and legacy keywords.
Everything is computed by the core (``ImportanceSampler``, ``ActiveSampler``,
``DiagnosticMonitor``, ``IntegratedSampler``, ``CurriculumScheduler``,
``DeltaSchedule``); the legacy bugs it does not reproduce are listed in
docs/differences.md. Not provided: the controllers (PIController, HybridController,
create_advanced_controller) and ``HybridGradientContext``.
"""
from __future__ import annotations

import contextlib
import enum
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import curriculum as _curriculum
from .. import diagnostics as _diagnostics
from .. import integrated as _integrated
from .. import sampling as _sampling
from .. import refinement as _refinement
from ..checks import check_count, check_real
from ..rng import call_seed
from ..schedule import DeltaSchedule
from ..tensors import host_pool, q_to_numpy, scalar_value, to_numpy

__all__ = ["SamplingStrategy", "ImportanceSamplerConfig", "ImportanceSampler",
           "ActiveSamplerConfig", "ActiveSampler", "DiagnosticConfig", "DiagnosticMonitor",
           "IntegratedSampler", "create_integrated_sampler", "CurriculumConfig",
           "CurriculumScheduler", "ScheduleType", "HybridGradientSchedule",
           "create_default_schedule", "TRTag"]

# The configs and the strategy enum have the legacy fields and values (plus zp_ref's).
SamplingStrategy = _integrated.SamplingStrategy
DiagnosticConfig = _diagnostics.DiagnosticConfig
CurriculumConfig = _curriculum.CurriculumConfig


@dataclass
class ImportanceSamplerConfig(_sampling.ImportanceSamplerConfig):
    """The core config plus the anchor's ``resample_ratio``: checked in [0, 1] as the
    anchor checks it, and without effect, as in the anchor (nothing reads it)."""
    resample_ratio: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        check_real(self.resample_ratio, "resample_ratio", low=0.0, high=1.0)


@dataclass(frozen=True)
class ActiveSamplerConfig(_refinement.ActiveSamplerConfig):
    """The core config plus the anchor's ``refinement_ratio`` (an int >= 1) and
    ``min_points_per_region`` (an int >= 0): checked, and without effect (the tree
    always halves every axis; see docs/refinement.md)."""
    refinement_ratio: int = 3
    min_points_per_region: int = 5

    def __post_init__(self):
        super().__post_init__()
        check_count(self.refinement_ratio, "refinement_ratio", minimum=1)
        check_count(self.min_points_per_region, "min_points_per_region")


class TRTag(enum.Enum):
    """The transreal tags legacy diagnostics count (``zeroproof.core.TRTag``'s names)."""
    REAL = 0
    PINF = 1
    NINF = 2
    PHI = 3


def _tensor(a):
    """``a`` as a torch tensor (a tensor is returned as is; a big-endian array is
    converted to native order first)."""
    return a if isinstance(a, torch.Tensor) else torch.as_tensor(host_pool(np.asarray(a), "a"))


def _snapshot(x_values, q_values) -> tuple:
    """Copies of a weighted pool as the call saw it, as tensors (Q in its own dtype, so
    the cached weights equal the call's)."""
    return _tensor(x_values).detach().clone(), _tensor(q_values).detach().clone()


def _cache_key(x) -> str:
    """The legacy cache key of one pool entry: 6 decimals for a scalar, else the list of
    its first three values."""
    x = _tensor(x)
    return f"{x.item():.6f}" if x.dim() == 0 else f"{x.flatten()[:3].tolist()}"


# =========================================================================== importance
class ImportanceSampler:
    """Legacy ``ImportanceSampler`` over :class:`zp_ref.ImportanceSampler` (``seed=``
    added). ``sample_counts`` (pool index -> times drawn), ``q_cache`` /
    ``weight_cache`` (legacy cache key -> Q / weight of the pools weighted so far) and
    ``total_samples`` keep their legacy meanings.

    Parameters
    ----------
    config, seed, backend : as in :class:`zp_ref.ImportanceSampler` (config of this module)
    """

    #: pools kept unfolded at most (then folded into the caches, legacy's O(N) cost)
    PENDING_POOLS = 8

    def __init__(self, config=None, *, seed=0, backend="auto"):
        config = ImportanceSamplerConfig() if config is None else config
        self._over_core(_sampling.ImportanceSampler(config, seed=seed, backend=backend))

    @classmethod
    def _over(cls, core):
        obj = cls.__new__(cls)
        obj._over_core(core)
        return obj

    def _over_core(self, core):
        self._core = core
        self._pending = []                  # (x, q) weighted since the caches were built
        self._q_cache, self._w_cache = {}, {}

    config = property(lambda self: self._core.config)
    total_samples = property(lambda self: self._core.total_samples)

    @property
    def sample_counts(self):
        counts = self._core.sample_counts
        return defaultdict(int, {int(i): int(counts[i]) for i in np.flatnonzero(counts)})

    def _remember(self, x_values, q_values):
        """Note a weighted pool (a snapshot: later writes to the caller's buffers do not
        change what the caches say this call saw); the same x object again replaces its
        entry."""
        entry = (x_values, *_snapshot(x_values, q_values))
        if self._pending and self._pending[-1][0] is x_values:
            self._pending[-1] = entry
        else:
            self._pending.append(entry)
        if len(self._pending) > self.PENDING_POOLS:
            self._fold()

    def _fold(self):
        """Add the pending pools to the caches (in order: later pools win)."""
        for _, x, q in self._pending:
            w = to_numpy(self._core.compute_weights(q), "weights")
            q = np.asarray(q_to_numpy(q, "q_values")).reshape(-1)
            for i, xi in enumerate(x):
                key = _cache_key(xi)
                self._q_cache[key], self._w_cache[key] = float(q[i]), float(w[i])
        self._pending = []

    @property
    def q_cache(self) -> dict:
        self._fold()
        return self._q_cache

    @property
    def weight_cache(self) -> dict:
        self._fold()
        return self._w_cache

    def compute_weights(self, x_values, q_values) -> torch.Tensor:
        """Normalised importance weights ``1/|Q|**p`` of the pool (clipped, tempered)."""
        w = self._core.compute_weights(q_values)
        self._remember(x_values, q_values)
        return _tensor(w)

    def sample_batch(self, x_pool, q_pool, batch_size):
        """(batch_x, indices): importance draws with replacement, as tensors."""
        batch_x, idx = self._core.sample_batch(x_pool, q_pool, batch_size)
        self._remember(x_pool, q_pool)
        return _tensor(batch_x), _tensor(idx)

    def hybrid_sample(self, x_pool, q_pool, batch_size):
        """(batch_x, indices): importance_batch_ratio importance draws, the rest uniform."""
        batch_x, idx = self._core.hybrid_sample(x_pool, q_pool, batch_size)
        self._remember(x_pool, q_pool)
        return _tensor(batch_x), _tensor(idx)

    def _get_cache_key(self, x) -> str:
        return _cache_key(x)

    def get_statistics(self) -> dict:
        """{} before the first batch, else the core's statistics (legacy keys included)."""
        return self._core.get_statistics() if self.total_samples else {}


# =========================================================================== active
#: Q given to grid points no refine_grid dict has named yet: far from any pole (and small
#: enough that sums over max_grid_points of them stay finite).
FAR_Q = 1e300


class ActiveSampler:
    """Legacy ``ActiveSampler(config, input_dim)`` over :class:`zp_ref.ActiveSampler`
    (its 2**d-tree replaces the legacy point list; ``q=`` and ``backend=`` added).

    Parameters
    ----------
    config, input_dim, q, backend : as in :class:`zp_ref.ActiveSampler`
    """

    def __init__(self, config=None, input_dim=1, *, q=None, backend="auto"):
        config = ActiveSamplerConfig() if config is None else config
        self._core = _refinement.ActiveSampler(config, q=q, input_dim=input_dim,
                                               backend=backend)
        self.q_history = {}

    @classmethod
    def _over(cls, core):
        obj = cls.__new__(cls)
        obj._core, obj.q_history = core, {}
        return obj

    config = property(lambda self: self._core.config)
    input_dim = property(lambda self: self._core.input_dim)

    @property
    def grid_points(self) -> list:
        return self.get_current_grid().tolist()

    @property
    def refinement_history(self) -> list:
        """One dict per round: the core's record plus the legacy ``n_added`` and
        ``total_points``."""
        return [{**h, "n_added": h["n_new_points"], "total_points": h["n_points"]}
                for h in self._core.refinement_history]

    def _point_key(self, point) -> str:
        point = _tensor(point) if not isinstance(point, list) else torch.tensor(point)
        return f"{point.item():.6f}" if point.dim() == 0 else f"{point.flatten().tolist()}"

    def get_current_grid(self) -> torch.Tensor:
        """Every grid point, (N, input_dim), torch's default float dtype."""
        return torch.as_tensor(self._core.get_current_grid(), dtype=torch.get_default_dtype())

    def refine_grid(self, q_values) -> None:
        """One refinement round from ``{self._point_key(point): Q}`` (the legacy form) or
        an array aligned with :meth:`get_current_grid`. Points the dict does not name keep
        their known Q; points never given one count as far from any pole (``FAR_Q``)."""
        if not isinstance(q_values, dict):
            self._core.refine_grid(q_values)
            return
        q_values = {k: check_real(scalar_value(v, f"q_values[{k!r}]"), f"q_values[{k!r}]",
                                  allow_inf=True) for k, v in q_values.items()}
        self.q_history.update(q_values)
        keys = [self._point_key(p) for p in self.get_current_grid()]
        values = self._core.grid_values()
        hits = [i for i, k in enumerate(keys) if k in q_values]
        if not hits:
            return
        for i in hits:
            values[i] = float(q_values[keys[i]])
        values[np.isnan(values)] = FAR_Q
        self._core.refine_grid(values)

    def get_statistics(self) -> dict:
        """The core's statistics; with dict refinements, ``near_pole_points`` and
        ``mean_q_abs`` are over the Q values received (``q_history``), as in legacy."""
        stats = self._core.get_statistics()
        if self.q_history:
            q = np.abs(np.fromiter(self.q_history.values(), dtype=np.float64))
            stats["near_pole_points"] = int((q < self.config.refinement_threshold).sum())
            stats["mean_q_abs"] = float(q.mean())
        return stats


# =========================================================================== diagnostics
#: legacy columns filled only when their input was given (no None rows)
_SPARSE = {"q_min", "q_mean", "q_std"}


class DiagnosticMonitor:
    """Legacy ``DiagnosticMonitor`` over :class:`zp_ref.DiagnosticMonitor`. Histories
    are dicts of lists; exports are JSON (+ .npz), never pickle; warnings through
    ``warnings``/``logging``, never print."""

    def __init__(self, config=None):
        self._core = _diagnostics.DiagnosticMonitor(config)
        self.export_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def _over(cls, core):
        obj = cls.__new__(cls)
        obj._core = core
        obj.export_dir.mkdir(parents=True, exist_ok=True)
        return obj

    config = property(lambda self: self._core.config)
    export_dir = property(lambda self: Path(self._core.config.export_path))
    pq_snapshots = property(lambda self: list(self._core.pq_snapshots))

    @property
    def history(self) -> dict:
        """Per-update lists; a metric not passed repeats its last value (legacy rule) and
        the Q columns hold only the updates that had q_values."""
        out = {}
        for key, col in self._core.history.items():
            col = list(col)
            if key in _SPARSE:
                col = [v for v in col if v is not None]
            elif key in _diagnostics.METRIC_KEYS:
                for i in range(1, len(col)):
                    if col[i] is None:
                        col[i] = col[i - 1]
            out[key] = col
        return out

    tag_history = property(lambda self: _dense(self._core.tag_history))
    gradient_history = property(lambda self: _dense(self._core.gradient_history))

    @property
    def batch_metrics(self):
        rows = _dense(self._core.batch_metrics)
        m = self._core.batch_metrics
        rows["n_non_real"] = [a + b + c for a, b, c in zip(m["n_pinf"], m["n_ninf"], m["n_phi"])
                              if a is not None]
        return defaultdict(list, {k: v for k, v in rows.items() if v})

    def update(self, epoch, metrics, p_values=None, q_values=None, gradients=None,
               tags=None):
        """The core's update; 0-d tensor metrics (``loss.detach()``) are numbers."""
        if isinstance(metrics, dict):
            metrics = {k: scalar_value(v, f"metrics[{k!r}]") for k, v in metrics.items()}
        self._core.update(scalar_value(epoch, "epoch"), metrics, p_values=p_values,
                          q_values=q_values, gradients=gradients, tags=tags)

    def update_batch(self, batch_idx, q_min, tags=None, loss=None):
        """The core's update_batch; ``q_min`` and ``loss`` may be 0-d tensors (a tensor
        of several elements raises ValueError naming it)."""
        self._core.update_batch(batch_idx=scalar_value(batch_idx, "batch_idx"),
                                q_min=scalar_value(q_min, "q_min"), tags=tags,
                                loss=scalar_value(loss, "loss"))

    def export_diagnostics(self, epoch):
        return self._core.export_diagnostics(epoch)

    def get_summary(self) -> dict:
        return self._core.get_summary()


def _dense(table) -> dict:
    """Columns without their None rows (legacy tables grow only when measured)."""
    return {k: [v for v in col if v is not None] for k, col in table.items()}


# =========================================================================== integrated
class IntegratedSampler:
    """Legacy ``IntegratedSampler`` over :class:`zp_ref.IntegratedSampler` (``seed=`` and
    ``q=`` added). Without ``q``, ACTIVE refines its grid from the pool's Q (legacy
    ``refine_grid`` dict) and draws grid points uniformly; HYBRID refines it from the
    first 100 pool entries, as the legacy class does."""

    def __init__(self, strategy=SamplingStrategy.HYBRID, importance_config=None,
                 active_config=None, diagnostic_config=None, *, seed=0, q=None,
                 backend="auto"):
        strategy = _integrated._strategy(strategy)
        core = _integrated.IntegratedSampler(
            _core_strategy(strategy, q), importance_config, active_config,
            diagnostic_config, q=q, seed=seed, backend=backend)
        self._assemble(strategy, core, active_config)

    def _assemble(self, strategy, core, active_config):
        """Legacy views over a core sampler; without q, a legacy grid of its own."""
        self.strategy, self._core = strategy, core
        self.importance_sampler = ImportanceSampler._over(core.importance_sampler)
        self.active_sampler = (ActiveSampler(active_config, backend=core.backend)
                               if core.active_sampler is None
                               else ActiveSampler._over(core.active_sampler))
        self.diagnostic_monitor = DiagnosticMonitor._over(core.diagnostic_monitor)
        self.sampling_history = []

    def sample_batch(self, x_pool, q_pool, batch_size, epoch=0):
        """(batch_x tensor, info) with info's legacy keys (plus zp_ref's)."""
        legacy_tree = self._core.active_sampler is None
        if self.strategy is SamplingStrategy.ACTIVE and legacy_tree:
            batch_x, info = self._legacy_active(x_pool, q_pool, batch_size, epoch)
        else:
            batch_x, info = self._core.sample_batch(x_pool, q_pool, batch_size, epoch)
            if self.strategy is SamplingStrategy.HYBRID and legacy_tree:
                self._refine_from_pool(x_pool, q_pool, epoch, limit=100)
                info["active_stats"] = self.active_sampler.get_statistics()
            info = {**info, "strategy": self.strategy.value}
        if info.get("indices") is not None:
            info["indices"] = _tensor(info["indices"])
        self.sampling_history.append({"epoch": epoch, "batch_size": batch_size, **{
            k: v for k, v in info.items() if k not in ("indices", "likelihood_ratios")}})
        return _tensor(batch_x), info

    def _refine_from_pool(self, x_pool, q_pool, epoch, limit=None):
        if epoch % self.active_sampler.config.adapt_frequency:
            return
        x, q = _tensor(x_pool), np.asarray(q_to_numpy(q_pool, "q_pool")).reshape(-1)
        n = len(x) if limit is None else min(limit, len(x))
        key = self.active_sampler._point_key
        self.active_sampler.refine_grid({key(x[i]): float(q[i]) for i in range(n)})

    def _legacy_active(self, x_pool, q_pool, batch_size, epoch):
        from ..sampling import uniform_indices
        self._refine_from_pool(x_pool, q_pool, epoch)
        grid = self.active_sampler.get_current_grid()
        call = self._core.n_calls
        idx = uniform_indices(len(grid), batch_size,
                              seed=call_seed(self._core.seed, call, part=2))
        self._core.n_calls += 1
        return grid[torch.as_tensor(idx)], {
            "strategy": self.strategy.value, "call": call, "indices": None,
            "grid_indices": torch.as_tensor(idx),
            "active_stats": self.active_sampler.get_statistics()}

    def update_diagnostics(self, **kwargs):
        self.diagnostic_monitor.update(**kwargs)

    def update_batch_diagnostics(self, **kwargs):
        self.diagnostic_monitor.update_batch(**kwargs)

    def get_diagnostics_summary(self) -> dict:
        return self.diagnostic_monitor.get_summary()

    def export_all(self, epoch):
        return self._core.export_all(epoch)


def _core_strategy(strategy, q):
    """ACTIVE without q has no core tree: the core draws nothing itself (UNIFORM) and
    the legacy grid path serves the batches."""
    return SamplingStrategy.UNIFORM if strategy is SamplingStrategy.ACTIVE and q is None \
        else strategy


def create_integrated_sampler(strategy="hybrid", weight_power=2.0, export_path="diagnostics",
                              **kwargs) -> IntegratedSampler:
    """The legacy factory: the anchor's keywords and zp_ref's, all listed in the core's.

    Parameters
    ----------
    strategy, weight_power, export_path, **kwargs : as in :func:`zp_ref.create_integrated_sampler`

    Returns
    -------
    IntegratedSampler
    """
    strategy = _integrated._strategy(strategy)
    core = _integrated.create_integrated_sampler(
        _core_strategy(strategy, kwargs.get("q")), weight_power, export_path, **kwargs)
    obj = IntegratedSampler.__new__(IntegratedSampler)
    obj._assemble(strategy, core, _active_config(kwargs))
    return obj


def _active_config(kwargs) -> ActiveSamplerConfig:
    """The ActiveSamplerConfig the factory's keywords describe (the legacy grid's)."""
    keep = {k: kwargs[k] for k in ("grid_bounds", "max_grid_points", "criterion",
                                   "adapt_frequency") if k in kwargs}
    return ActiveSamplerConfig(initial_grid_size=kwargs.get("grid_size", 100),
                               refinement_threshold=kwargs.get("refinement_threshold", 0.1),
                               max_refinement_level=kwargs.get("max_refinement", 5), **keep)


# =========================================================================== curriculum
class CurriculumScheduler(_curriculum.CurriculumScheduler):
    """Legacy ``CurriculumScheduler(config, pole_locations)``: the core scheduler, whose
    ``get_sample_weights`` returns a NumPy array for any input (legacy return type)."""

    def get_sample_weights(self, x_values, q_values=None) -> np.ndarray:
        w = super().get_sample_weights(x_values, q_values)
        return to_numpy(w, "weights") if isinstance(w, torch.Tensor) else w


# =========================================================================== schedule
class ScheduleType(enum.Enum):
    """The legacy schedule types (``schedule_type`` of :class:`HybridGradientSchedule`)."""
    LINEAR = enum.auto()
    EXPONENTIAL = enum.auto()
    COSINE = enum.auto()


@dataclass
class HybridGradientSchedule:
    """Legacy hybrid-gradient schedule; ``get_delta`` is :class:`zp_ref.DeltaSchedule`'s
    with the batch q_min passed explicitly (``get_delta(epoch, q_min=None)``)."""

    warmup_epochs: int = 0
    transition_epochs: int = 20
    delta_init: float = 1e-2
    delta_final: float = 1e-6
    schedule_type: ScheduleType = ScheduleType.EXPONENTIAL
    enable: bool = True
    saturating_bound: float = 1.0
    force_pole_exploration: bool = True
    pole_exploration_radius: float = 0.05
    pole_exploration_epochs: int = 5
    pole_detection_threshold: float = 0.1
    adaptive_delta: bool = True
    min_delta: float = 1e-8
    detected_poles: list = field(default_factory=list)
    pole_exploration_schedule: dict = field(default_factory=dict)

    def __post_init__(self):
        self.delta_schedule()                  # validate now, not at the first epoch

    def delta_schedule(self) -> DeltaSchedule:
        """The core schedule with this object's current fields."""
        return DeltaSchedule(self.warmup_epochs, self.transition_epochs, self.delta_init,
                             self.delta_final, self.schedule_type, self.min_delta,
                             self.adaptive_delta)

    def is_warmup(self, epoch) -> bool:
        return self.enable and self.delta_schedule().get_delta(epoch) is None

    def is_transitioning(self, epoch) -> bool:
        return (self.enable and not self.is_warmup(epoch) and self.transition_epochs > 0
                and self.delta_schedule().progress(epoch) < 1.0)

    def _progress(self, epoch) -> float:
        return self.delta_schedule().progress(epoch)

    def get_delta(self, epoch, q_min=None):
        """delta(epoch), None when disabled or in warmup; ``q_min`` feeds the adaptive
        rule (the legacy global context is not kept)."""
        return self.delta_schedule().get_delta(epoch, q_min) if self.enable else None

    def get_mode_description(self, epoch) -> str:
        if not self.enable:
            return "disabled"
        if self.is_warmup(epoch):
            return f"warmup (mask-real only, {epoch}/{self.warmup_epochs})"
        delta = self.get_delta(epoch)
        if self.is_transitioning(epoch):
            poles = self.pole_exploration_schedule.get(epoch) if self.force_pole_exploration \
                else None
            info = f", exploring {len(poles)} poles" if poles else ""
            return f"transitioning (delta={delta:.3e}{info})"
        return f"converged (delta={delta:.3e})"

    def apply(self, epoch):
        """Context manager kept for legacy code: records ``current_epoch``; zp_ref has no
        global gradient mode to switch."""
        @contextlib.contextmanager
        def _ctx():
            self.current_epoch = epoch
            yield self
        return _ctx()

    def update_detected_poles(self, new_poles, epoch) -> None:
        """Add poles farther than pole_exploration_radius from the known ones and
        schedule their neighbourhoods for the next pole_exploration_epochs epochs (within
        the transition)."""
        if not self.force_pole_exploration:
            return
        r = self.pole_exploration_radius
        for pole in new_poles:
            if any(abs(pole - p) < r for p in self.detected_poles):
                continue
            self.detected_poles.append(pole)
            last = min(epoch + 1 + self.pole_exploration_epochs,
                       self.warmup_epochs + self.transition_epochs)
            for e in range(epoch + 1, last):
                self.pole_exploration_schedule.setdefault(e, []).append((pole - r, pole + r))

    def get_exploration_regions(self, epoch) -> list:
        return self.pole_exploration_schedule.get(epoch, [])


def create_default_schedule(aggressive=False, warmup_epochs=0,
                            force_exploration=True) -> HybridGradientSchedule:
    """The legacy default (or aggressive) schedule.

    Parameters
    ----------
    aggressive, force_exploration : bool, default False, True
    warmup_epochs : int, default 0

    Returns
    -------
    HybridGradientSchedule
    """
    if aggressive:
        return HybridGradientSchedule(
            warmup_epochs=warmup_epochs, transition_epochs=20, delta_init=1e-1,
            delta_final=1e-8, schedule_type=ScheduleType.EXPONENTIAL, enable=True,
            saturating_bound=0.1, force_pole_exploration=force_exploration,
            pole_exploration_radius=0.1, pole_exploration_epochs=10, adaptive_delta=True,
            min_delta=1e-10)
    return HybridGradientSchedule(
        warmup_epochs=warmup_epochs, transition_epochs=20, delta_init=1e-2,
        delta_final=1e-6, schedule_type=ScheduleType.EXPONENTIAL, enable=True,
        saturating_bound=1.0, force_pole_exploration=force_exploration,
        pole_exploration_radius=0.05, pole_exploration_epochs=5, adaptive_delta=True,
        min_delta=1e-8)
