"""One sampler object for the four strategies of ZeroProofML's ``IntegratedSampler``:
uniform, importance, active (points drawn from the refinement tree) and hybrid
(importance + uniform mix), with a DiagnosticMonitor attached.

Seeds: call ``c`` of :meth:`IntegratedSampler.sample_batch` (c = 0, 1, ...) draws
uniform batches with ``uniform_indices(N, B, seed=derive_seed(derive_seed(seed, 1), c))``
and tree points with ``ActiveSampler.sample(B, seed=derive_seed(derive_seed(seed, 2), c))``;
importance and hybrid batches come from an ``ImportanceSampler`` seeded
``derive_seed(seed, 0)`` (its own call counter advances only on its calls).
"""
from __future__ import annotations

import enum
from collections import deque

import numpy as np

from .tensors import pool_io
from ._validation import as_float_array, check_backend, check_choice, check_count, check_seed
from .diagnostics import DiagnosticConfig, DiagnosticMonitor, unique_export_path
from .rng import call_seed, derive_seed
from .state import STATE_VERSION, check_state, write_document

SAMPLING_HISTORY_SCHEMA = "zp_ref.sampling_history/1"
ACTIVE_WEIGHTINGS = ("volume", "leaf", "importance")


class SamplingStrategy(enum.Enum):
    """Available sampling strategies (values as in ZeroProofML)."""
    UNIFORM = "uniform"
    IMPORTANCE = "importance"      # weights 1/|Q|^p
    ACTIVE = "active"              # points drawn inside the refinement tree's leaves
    HYBRID = "hybrid"              # importance_batch_ratio importance + the rest uniform


def _strategy(value) -> SamplingStrategy:
    if isinstance(value, SamplingStrategy):
        return value
    names = [s.value for s in SamplingStrategy]
    if not isinstance(value, str) or value not in names:
        raise ValueError(f"strategy must be a SamplingStrategy or one of {names}, got {value!r}")
    return SamplingStrategy(value)


class IntegratedSampler:
    """Sample batches with one strategy; keep sampling history and diagnostics.

    The tree is refined by one level-synchronous round at the first batch of every
    epoch with ``epoch % active_config.adapt_frequency == 0``.

    Parameters
    ----------
    strategy : SamplingStrategy or str, default SamplingStrategy.HYBRID
        ``"uniform"``, ``"importance"``, ``"active"`` or ``"hybrid"``.
    importance_config : ImportanceSamplerConfig or None, default None
    active_config : ActiveSamplerConfig or None, default None
    diagnostic_config : DiagnosticConfig or None, default None
        The parts' configurations (None: their defaults).
    q : Polynomial, Rational, callable or None, default None
        Builds the refinement tree (a callable maps (n, d) -> (n,)); required for
        ``ACTIVE``, optional for ``HYBRID`` (whose tree is then refined alongside, as in
        the anchor).
    input_dim : int, default 1
        d, in 1..6.
    seed : int, default 0
        Seed in [0, 2**64).
    weighting : str, default "importance"
        How ``ACTIVE`` points are spread over the tree's leaves (``ActiveSampler.sample``).
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.
    """

    def __init__(self, strategy=SamplingStrategy.HYBRID, importance_config=None,
                 active_config=None, diagnostic_config=None, *, q=None, input_dim=1, seed=0,
                 weighting="importance", backend="auto"):
        from .refinement import ActiveSampler
        from .sampling import ImportanceSampler
        self.strategy = _strategy(strategy)
        self.seed = check_seed(seed)
        self.weighting = check_choice(weighting, "weighting", ACTIVE_WEIGHTINGS)
        self.backend = check_backend(backend)
        if self.strategy is SamplingStrategy.ACTIVE and q is None:
            raise ValueError("strategy 'active' needs q= (a Polynomial, Rational or callable "
                             "(n, d) -> (n,)) to build the refinement tree")
        from .refinement import ActiveSamplerConfig
        if active_config is not None and not isinstance(active_config, ActiveSamplerConfig):
            raise TypeError(f"active_config must be an ActiveSamplerConfig or None, got "
                            f"{type(active_config).__name__}")
        self.importance_sampler = ImportanceSampler(importance_config,
                                                    seed=derive_seed(self.seed, 0), backend=backend)
        self.active_sampler = (None if q is None else ActiveSampler(
            active_config, q=q, input_dim=input_dim, backend=backend))
        self.diagnostic_monitor = DiagnosticMonitor(diagnostic_config)
        self.sampling_history = deque(maxlen=self.diagnostic_monitor.config.max_history_length)
        self.n_calls = 0
        self.last_adapt_epoch = None

    # -------------------------------------------------------------- sampling
    @pool_io
    def sample_batch(self, x_pool, q_pool, batch_size, epoch=0):
        """Draw ``batch_size`` samples: ``(batch_x, info)``.

        ``x_pool`` (N,) or (N, d) and ``q_pool`` (N,) are the candidate pool (ignored by
        ``ACTIVE``, which draws new points (B, d) inside the tree's leaves; pass ``None``).
        ``info``: ``strategy``, ``call``, ``indices`` (pool indices, int64 (B,); ``None``
        for ACTIVE), ``leaf_indices`` (ACTIVE: the leaf of each point, into
        ``active_sampler.leaves()``), ``likelihood_ratios`` (HYBRID),
        ``importance_stats`` / ``active_stats``.
        """
        batch_size = check_count(batch_size, "batch_size", minimum=1)
        epoch = check_count(epoch, "epoch")
        if self.strategy is not SamplingStrategy.ACTIVE:
            x_pool, q_pool = self._check_pool(x_pool, q_pool)
        call = self.n_calls
        info = {"strategy": self.strategy.value, "call": call, "indices": None}
        if self.strategy is SamplingStrategy.UNIFORM:
            from .sampling import uniform_indices
            idx = uniform_indices(q_pool.size, batch_size,
                                  seed=call_seed(self.seed, call, part=1),
                                  backend=self.backend)
            batch_x, info["indices"] = x_pool[idx], idx
        elif self.strategy is SamplingStrategy.IMPORTANCE:
            batch_x, info["indices"] = self.importance_sampler.sample_batch(x_pool, q_pool,
                                                                            batch_size)
            info["importance_stats"] = self.importance_sampler.get_statistics()
        elif self.strategy is SamplingStrategy.ACTIVE:
            self._adapt(epoch)
            batch_x, info["leaf_indices"] = self.active_sampler.sample(
                batch_size, seed=call_seed(self.seed, call, part=2),
                weighting=self.weighting, return_leaf=True)
            info["active_stats"] = self.active_sampler.get_statistics()
        else:
            if self.active_sampler is not None:      # first: a failing q changes no draw
                self._adapt(epoch)
                info["active_stats"] = self.active_sampler.get_statistics()
            batch_x, info["indices"] = self.importance_sampler.hybrid_sample(x_pool, q_pool,
                                                                             batch_size)
            info["likelihood_ratios"] = self.importance_sampler.last_likelihood_ratios
            info["importance_stats"] = self.importance_sampler.get_statistics()
        self.n_calls += 1
        self.sampling_history.append({"epoch": epoch, "batch_size": batch_size, **{
            k: v for k, v in info.items()
            if k not in ("indices", "leaf_indices", "likelihood_ratios")}})
        return batch_x, info

    @staticmethod
    def _check_pool(x_pool, q_pool):
        q = as_float_array(q_pool, "q_pool")
        if np.isnan(q).any():
            raise ValueError(f"q_pool holds {int(np.isnan(q).sum())} NaN value(s), first at "
                             f"index {int(np.argmax(np.isnan(q)))}")
        x = np.asarray(x_pool)
        if x.ndim not in (1, 2) or x.shape[0] != q.size:
            raise ValueError(f"x_pool must be (N,) or (N, d) with N = len(q_pool) = {q.size}, "
                             f"got shape {x.shape}")
        return x, q

    def _adapt(self, epoch):
        """One refinement round at the first batch of every adapt_frequency-th epoch."""
        if self.active_sampler.should_adapt(epoch) and epoch != self.last_adapt_epoch:
            self.active_sampler.refine(max_rounds=1)
            self.last_adapt_epoch = epoch

    # -------------------------------------------------------------- diagnostics
    def update_diagnostics(self, **kwargs):
        """``DiagnosticMonitor.update(**kwargs)``."""
        self.diagnostic_monitor.update(**kwargs)

    def update_batch_diagnostics(self, **kwargs):
        """``DiagnosticMonitor.update_batch(**kwargs)``."""
        self.diagnostic_monitor.update_batch(**kwargs)

    def get_diagnostics_summary(self) -> dict:
        return self.diagnostic_monitor.get_summary()

    def export_all(self, epoch):
        """Export the monitor and the last 100 sampling-history entries (a
        ``zp_ref.sampling_history/1`` document). Returns both paths."""
        epoch = check_count(epoch, "epoch")
        diag = self.diagnostic_monitor.export_diagnostics(epoch)
        path = unique_export_path(self.diagnostic_monitor.export_dir, "sampling_history", epoch)
        hist = write_document(path, SAMPLING_HISTORY_SCHEMA,
                              {"epoch": epoch, "entries": list(self.sampling_history)[-100:]})
        return diag, hist

    # -------------------------------------------------------------- state protocol
    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "strategy": self.strategy.value, "seed": self.seed,
                "weighting": self.weighting, "backend": self.backend,
                "n_calls": self.n_calls, "last_adapt_epoch": self.last_adapt_epoch,
                "importance": self.importance_sampler.state_dict(),
                "active": None if self.active_sampler is None else self.active_sampler.state_dict(),
                "monitor": self.diagnostic_monitor.state_dict(),
                "sampling_history": list(self.sampling_history)}

    def load_state_dict(self, state) -> None:
        """Restore everything (validated on a fresh object first; nothing changes on
        error). A callable q is not stored in a state: this sampler's own is kept."""
        q = None if self.active_sampler is None else self.active_sampler.q
        other = type(self).from_state_dict(state, q=q)
        self.__dict__.update(other.__dict__)

    @classmethod
    def from_state_dict(cls, state, *, q=None) -> "IntegratedSampler":
        """Build a sampler from :meth:`state_dict`. A tree built from a callable q needs
        that callable again (``q=``; also ``load_state(path, q=...)``): without it this
        raises ``ValueError`` here rather than failing at a later refinement. A
        Polynomial/Rational q is part of the state."""
        from .refinement import ActiveSampler
        from .sampling import ImportanceSampler
        check_state(state, "IntegratedSampler", (
            "strategy", "seed", "weighting", "backend", "n_calls", "last_adapt_epoch",
            "importance", "active", "monitor", "sampling_history"))
        strategy = _strategy(state["strategy"])
        active = state["active"]
        if active is not None and not isinstance(active, dict):
            raise TypeError(f"IntegratedSampler state: 'active' must be a dict or None, got "
                            f"{type(active).__name__}")
        stored_q = active.get("q") if active is not None else None
        if q is None and isinstance(stored_q, dict) and stored_q.get("kind") == "callable":
            raise ValueError("IntegratedSampler state: the refinement tree was built from a "
                             "callable q, which a state cannot hold; pass it again with "
                             "load_state(path, q=f) or IntegratedSampler.from_state_dict("
                             "state, q=f)")
        if q is not None and not callable(q):
            raise TypeError(f"q must be a Polynomial, Rational or callable, got "
                            f"{type(q).__name__}")
        history = state["sampling_history"]
        if not isinstance(history, list) or not all(
                isinstance(h, dict) and all(isinstance(k, str) for k in h) for h in history):
            raise ValueError("IntegratedSampler state: 'sampling_history' must be a list of "
                             "dicts with str keys")
        obj = cls.__new__(cls)
        obj.strategy = strategy
        obj.seed = check_seed(state["seed"])
        obj.weighting = check_choice(state["weighting"], "weighting", ACTIVE_WEIGHTINGS)
        obj.backend = check_backend(state["backend"])
        obj.importance_sampler = ImportanceSampler.from_state_dict(state["importance"])
        obj.active_sampler = (None if state["active"] is None
                              else ActiveSampler.from_state_dict(state["active"], q=q))
        if strategy is SamplingStrategy.ACTIVE and obj.active_sampler is None:
            raise ValueError("IntegratedSampler state: strategy 'active' needs an 'active' state")
        obj.diagnostic_monitor = DiagnosticMonitor.from_state_dict(state["monitor"])
        obj.sampling_history = deque(history,
                                     maxlen=obj.diagnostic_monitor.config.max_history_length)
        obj.n_calls = check_seed(state["n_calls"], "n_calls")     # a counter below 2**64
        last = state["last_adapt_epoch"]
        obj.last_adapt_epoch = None if last is None else check_count(last, "last_adapt_epoch")
        return obj


#: ``create_integrated_sampler`` keywords: the anchor's (first block) and zp_ref's.
_ANCHOR_KWARGS = ("temperature", "importance_ratio", "grid_size", "refinement_threshold",
                  "max_refinement", "export_frequency", "track_gradients", "track_tags")
_EXTRA_KWARGS = ("seed", "backend", "q", "input_dim", "weighting", "grid_bounds",
                 "max_grid_points", "criterion", "adapt_frequency", "min_q_abs", "max_weight",
                 "max_history_length", "near_pole_threshold", "far_pole_threshold",
                 "auto_export")


def create_integrated_sampler(strategy="hybrid", weight_power=2.0, export_path=None,
                              **kwargs) -> IntegratedSampler:
    """Build an :class:`IntegratedSampler` from the anchor's keyword names.

    Parameters
    ----------
    strategy : SamplingStrategy or str, default "hybrid"
    weight_power : float, default 2.0
    export_path : str or None, default None
        Diagnostics folder; None keeps DiagnosticConfig's default folder.
    **kwargs
        Anchor keywords: ``temperature`` (1.0), ``importance_ratio`` (0.7, the
        importance_batch_ratio), ``grid_size`` (100), ``refinement_threshold`` (0.1),
        ``max_refinement`` (5), ``export_frequency`` (10), ``track_gradients`` (True),
        ``track_tags`` (True). zp_ref keywords: ``seed``, ``backend``, ``q``,
        ``input_dim``, ``weighting`` and the config fields ``grid_bounds``,
        ``max_grid_points``, ``criterion``, ``adapt_frequency``, ``min_q_abs``,
        ``max_weight``, ``max_history_length``, ``near_pole_threshold``,
        ``far_pole_threshold``, ``auto_export``. Unknown keywords raise ``TypeError``.

    Returns
    -------
    IntegratedSampler
    """
    from .refinement import ActiveSamplerConfig
    from .sampling import ImportanceSamplerConfig
    unknown = sorted(set(kwargs) - set(_ANCHOR_KWARGS) - set(_EXTRA_KWARGS))
    if unknown:
        raise TypeError(f"create_integrated_sampler got unknown keyword(s) {unknown}; accepted: "
                        f"{list(_ANCHOR_KWARGS + _EXTRA_KWARGS)}")
    pick = lambda names: {new: kwargs[old] for old, new in names if old in kwargs}  # noqa: E731
    importance = ImportanceSamplerConfig(
        weight_power=weight_power, temperature=kwargs.get("temperature", 1.0),
        importance_batch_ratio=kwargs.get("importance_ratio", 0.7),
        **pick([("min_q_abs", "min_q_abs"), ("max_weight", "max_weight")]))
    active = ActiveSamplerConfig(
        initial_grid_size=kwargs.get("grid_size", 100),
        refinement_threshold=kwargs.get("refinement_threshold", 0.1),
        max_refinement_level=kwargs.get("max_refinement", 5),
        **pick([(k, k) for k in ("grid_bounds", "max_grid_points", "criterion",
                                 "adapt_frequency")]))
    diagnostic = DiagnosticConfig(
        export_frequency=kwargs.get("export_frequency", 10),
        track_gradients=kwargs.get("track_gradients", True),
        track_tag_distribution=kwargs.get("track_tags", True),
        **({} if export_path is None else {"export_path": export_path}),
        **pick([(k, k) for k in ("max_history_length", "near_pole_threshold",
                                 "far_pole_threshold", "auto_export")]))
    return IntegratedSampler(
        _strategy(strategy), importance, active, diagnostic,
        **pick([(k, k) for k in ("seed", "backend", "q", "input_dim", "weighting")]))
