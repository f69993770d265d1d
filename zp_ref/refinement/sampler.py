"""ActiveSampler: the refinement tree as a learner in python-adaptive's sense.

``ask()`` opens a round (the flagged leaves are split, under the cap in urgency order)
and returns the new points whose Q is needed; ``tell(values)`` gives their Q and
completes the round (the new cells are tested). ``refine()`` is the runner that loops
ask / evaluate / tell: a Polynomial/Rational Q is evaluated by the engine's kernels at
the pending points (they never leave the device for cuda), a callable once per round
on all of them. ``refine_grid`` (the anchor's API) and IntegratedSampler use the same
pair. See docs/refinement.md.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import fields

import numpy as np

from .._validation import as_float_array, check_choice, check_count, check_seed
from ..backends import resolve_backend
from ..kernels.common import CRIT_INTERVAL
from ..rational import Polynomial, Rational
from ..state import STATE_VERSION, check_is_state_dict, check_state, config_fields
from ..tensors import tensor_io
from .config import REMOVED_FIELDS, WEIGHTINGS, ActiveSamplerConfig
from .engine import Engine, PendingRound, QSpec, call_q, select_under_cap
from .oracle import enclosure
from .tree import Lattice, cell_values, initial_tree, sign_change, tree_from_state



class EnclosureOverflowWarning(RuntimeWarning):
    """``criterion="interval"``: refinement stopped with flagged leaves whose certified
    enclosure overflowed float64 (inf or NaN). Such a leaf may or may not hold a zero of Q;
    it is flagged (and in ``pole_estimates()``) because nothing excludes one."""


def make_engine(backend: str, lat: Lattice, tree, qspec: QSpec) -> Engine:
    """The engine of a resolved backend over ``tree``."""
    if backend == "numpy":
        from .oracle import NumpyEngine
        return NumpyEngine(lat, tree, qspec)
    if backend == "cpu":
        from .cpu import CpuEngine
        return CpuEngine(lat, tree, qspec)
    from .cuda import CudaEngine
    return CudaEngine(lat, tree, qspec)


class ActiveSampler:
    """Adaptive 2**d-tree over a box, refined where Q has (or may have) a zero.

    The initial grid is evaluated at construction when q is given. A q callable must not
    call refine(), refine_grid() or load_state_dict() of the sampler that calls it: that
    raises RuntimeError and changes nothing.

    Parameters
    ----------
    config : ActiveSamplerConfig or None, default None
        The grid, the cap and the criterion (None: the defaults).
    q : Polynomial, Rational, callable or None, default None
        A :class:`Polynomial` / :class:`Rational` (its denominator is refined; evaluated
        inside the kernels), a vectorised callable (n, d) -> (n,) (called once per round on
        the new points), or None (values come through :meth:`tell` or :meth:`refine_grid`).
    input_dim : int, default 1
        d, in 1..6.
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.
    """

    #: The method running on this sampler, or None (guards against re-entry from q).
    _running = None

    def __init__(self, config=None, *, q=None, input_dim=1, backend="auto"):
        config = ActiveSamplerConfig() if config is None else config
        d = check_count(input_dim, "input_dim", minimum=1)
        if d > 6:
            raise ValueError(f"input_dim must be in 1..6, got {d}")
        lat = Lattice(config, d)
        qspec = QSpec(q, d)
        if lat.crit_code == CRIT_INTERVAL and qspec.poly is None:
            raise ValueError("criterion='interval' needs q to be a zp_ref.Polynomial or "
                             f"zp_ref.Rational, got {qspec.kind}")
        self._backend_request = backend
        self.backend = resolve_backend(backend, lat.max_points)
        self.config, self.input_dim, self._lat, self._qspec = config, d, lat, qspec
        self.refinement_history = []
        self.n_evaluations = 0
        self._pending = None
        tree = initial_tree(lat)
        if qspec.func is not None:
            values = call_q(qspec.func, lat.coords(lat.decode(tree.key[:tree.n_points])))
        self._engine = make_engine(self.backend, lat, tree, qspec)
        if qspec.poly is not None:
            self._engine.evaluate(0, tree.n_points)
        elif qspec.func is not None:
            self._engine.set_values(0, values)
        if qspec.kind != "none":
            self.n_evaluations = tree.n_points
            self._engine.update_flags(0, tree.n)

    @property
    def q(self):
        """The Q this sampler refines (Polynomial, Rational, callable or None)."""
        return self._qspec.source

    # ------------------------------------------------------------------ learner
    def ask(self) -> np.ndarray:
        """Open a round and return its new points, (m, d), whose Q :meth:`tell` needs.

        The flagged leaves are split (under ``max_grid_points``, most urgent first);
        until :meth:`tell`, the split cells are no longer leaves and the new points are
        pending (NaN in :meth:`grid_values`). A second ``ask()`` before ``tell`` returns
        the same points; m = 0 when nothing is left to split (``tell`` of an empty array
        then closes the round)."""
        pending = self._open_round()
        return self._engine.point_coords(pending.p0, pending.p0 + pending.n_new)

    def tell(self, values) -> None:
        """Q at the points of :meth:`ask` (m,), in the same order: the round completes
        (the new cells are tested). Wrong length or non-finite values raise ValueError
        and change nothing."""
        pending = self._pending
        if pending is None:
            raise ValueError("tell() needs a pending round: call ask() first (no round is "
                             "open)")
        vals = as_float_array(values, "values", allow_empty=True, finite=True)
        if vals.size != pending.n_new:
            raise ValueError(f"values must have one value per point of ask(): expected "
                             f"{pending.n_new}, got {vals.size}")
        if vals.size:
            self._engine.set_values(pending.p0, vals)
        self._close_round(pending, vals.size)

    def _open_round(self) -> PendingRound:
        """The pending round, opened (and recorded in the history) when there is none."""
        if self._pending is None:
            eng, lat = self._engine, self._lat
            pending = eng.open_round(lambda cand: select_under_cap(
                lat, eng.host_tree(), cand, eng.exists))
            self.refinement_history.append({"round": len(self.refinement_history),
                                            **pending.info,
                                            "n_evaluations": int(self.n_evaluations)})
            self._pending = pending
        return self._pending

    def _close_round(self, pending: PendingRound, n_evaluated: int) -> None:
        """The pending round's points have values: test its new cells."""
        if pending.n_children:
            self._engine.update_flags(pending.c0, pending.c0 + pending.n_children)
        self.n_evaluations += n_evaluated
        self.refinement_history[-1]["n_evaluations"] = int(self.n_evaluations)
        self._pending = None

    def _evaluate_round(self, pending: PendingRound) -> None:
        """The runner's evaluate + tell: kernels for a polynomial Q, else the callable
        once on all pending points (never on none; a failure undoes the round and
        re-raises)."""
        if self._qspec.poly is not None or pending.n_new == 0:
            if pending.n_new:
                self._engine.evaluate(pending.p0, pending.p0 + pending.n_new)
            self._close_round(pending, pending.n_new)
            return
        try:
            values = call_q(self._qspec.func, self.ask())
        except BaseException:
            self._engine.undo_round(pending)
            self.refinement_history.pop()
            self._pending = None
            raise
        self.tell(values)

    # ------------------------------------------------------------------ runners
    @contextmanager
    def _exclusive(self, method: str):
        """Run ``method`` alone on this sampler: a call made while another one is running
        (a q callable that refines its own sampler) is refused before anything changes."""
        if self._running is not None:
            raise RuntimeError(
                f"ActiveSampler.{method} was called while {self._running} is running on the "
                f"same sampler (from inside its q callable?); rounds cannot be nested: call "
                f"it after {self._running} returns, or use another sampler")
        self._running = method
        try:
            yield
        finally:
            self._running = None

    def refine(self, max_rounds=None) -> "ActiveSampler":
        """Run rounds (ask / evaluate / tell) until no leaf is flagged and splittable.

        A round opened by :meth:`ask` is finished first. With ``criterion="interval"``, warns
        once (:class:`EnclosureOverflowWarning`) when it stops with flagged leaves whose
        enclosure overflowed.

        Parameters
        ----------
        max_rounds : int or None, default None
            Stop after this many rounds (None: no limit).

        Returns
        -------
        ActiveSampler
            The sampler itself.
        """
        if max_rounds is not None:
            max_rounds = check_count(max_rounds, "max_rounds")
        if self._qspec.kind == "none":
            raise ValueError("refine() needs q (a Polynomial, Rational or callable); this "
                             "sampler has none: pass q= or use ask()/tell() or "
                             "refine_grid(q_values)")
        with self._exclusive("refine()"):
            done = 0
            while max_rounds is None or done < max_rounds:
                pending = self._open_round()
                self._evaluate_round(pending)
                done += 1
                if pending.info["n_refined"] == 0:
                    break
        n_over = int(self.overflowed_leaves().sum()) if self._may_overflow() else 0
        if n_over:
            warnings.warn(
                f"refinement stopped with {n_over} flagged leaves whose certified enclosure "
                f"of Q overflowed float64 (inf/NaN): each may or may not hold a zero and is "
                f"kept in pole_estimates(); see overflowed_leaves(). Shrink grid_bounds or "
                f"rescale Q so that its terms stay below 1e308", EnclosureOverflowWarning,
                stacklevel=2)
        return self

    def _may_overflow(self) -> bool:
        """criterion="interval" and some cell's enclosure could overflow (a box-wide bound)."""
        lat = self._lat
        return lat.crit_code == CRIT_INTERVAL and self._engine.interval.may_overflow(lat.lo,
                                                                                     lat.hi)

    def overflowed_leaves(self) -> np.ndarray:
        """(m,) bool over :meth:`leaves`: flagged by ``criterion="interval"`` only because
        the enclosure of Q overflowed (inf/NaN); all False for the other criteria."""
        tree, ids = self._leaf_order()
        out = np.zeros(ids.size, np.bool_)
        if self._may_overflow():
            flagged = ids[tree.flag[ids]]
            a0, R, E, _ = enclosure(self._lat, self._engine.interval,
                                    tree.lo[flagged], tree.level[flagged])
            out[tree.flag[ids]] = ~(np.isfinite(a0) & np.isfinite(R) & np.isfinite(E))
        return out

    @tensor_io(q_args=("q_values",), returns=None)
    def refine_grid(self, q_values) -> "ActiveSampler":
        """Anchor-compatible round: ``q_values`` (N,) are Q at :meth:`get_current_grid`
        (the same order, pending points included); they replace the stored values, every
        leaf is re-tested and flagged leaves are split once (:meth:`ask`). New points are
        evaluated with q (and told) when the sampler has one; otherwise the round stays
        pending and its points get their values from the next call (or :meth:`tell`).
        ``q_values`` may be a tensor ((N,) or (N, 1), any device), read as float64."""
        with self._exclusive("refine_grid()"):
            return self._refine_grid(q_values)

    def _refine_grid(self, q_values) -> "ActiveSampler":
        order = self._engine.sorted_point_ids()
        vals = as_float_array(q_values, "q_values", finite=True)
        if vals.size != order.size:
            raise ValueError(f"q_values must have one value per grid point: expected "
                             f"{order.size}, got {vals.size}")
        tree = self._engine.host_tree()
        previous, pending_before = tree.value[order].copy(), self._pending
        self._engine.set_values_at(order, vals)
        self._engine.update_flags(0, self._engine.tree_size())
        self._pending = None                 # a pending round's values came with q_values
        try:
            pending = self._open_round()
            if self._qspec.kind != "none":
                self._evaluate_round(pending)
        except BaseException:          # a callable q failed: restore the old values
            self._engine.set_values_at(order, previous)
            self._engine.update_flags(0, self._engine.tree_size())
            self._pending = pending_before
            raise
        self.n_evaluations += vals.size
        return self

    def should_adapt(self, epoch) -> bool:
        """True every ``adapt_frequency`` epochs (epoch 0 included)."""
        return check_count(epoch, "epoch") % self.config.adapt_frequency == 0

    # ------------------------------------------------------------------ outputs
    def _leaf_order(self) -> tuple:
        tree = self._engine.host_tree()
        ids = tree.leaf_ids()
        return tree, ids[np.argsort(self._lat.key(tree.lo[ids]), kind="stable")]

    def leaves(self) -> dict:
        """Leaves sorted by the packed key of their lower corner: ``lo``, ``hi`` (m, d),
        ``level`` (m,), ``q_center``, ``min_abs_q`` (m,), ``sign_change``, ``flagged`` (m,)."""
        lat = self._lat
        tree, ids = self._leaf_order()
        vals = cell_values(tree, ids)
        lo_k = tree.lo[ids]
        hi_k = lo_k + lat.cell_units(tree.level[ids])[:, None]
        return {
            "lo": lat.coords(lo_k), "hi": lat.coords(hi_k),
            "level": tree.level[ids].astype(np.int64),
            "q_center": tree.value[tree.centre[ids]],
            "min_abs_q": np.abs(vals).min(axis=1),
            "sign_change": sign_change(vals),
            "flagged": tree.flag[ids].copy(),
        }

    def get_current_grid(self) -> np.ndarray:
        """Every point of the tree (evaluated or pending), unique, sorted by key, (N, d)."""
        tree = self._engine.host_tree()
        keys = np.sort(tree.key[:tree.n_points])
        return self._lat.coords(self._lat.decode(keys))

    def grid_values(self) -> np.ndarray:
        """Q at :meth:`get_current_grid` (NaN where pending), (N,)."""
        tree = self._engine.host_tree()
        order = np.argsort(tree.key[:tree.n_points], kind="stable")
        return tree.value[order]

    def pole_estimates(self) -> tuple:
        """The flagged leaves: criterion holds, not split further because of
        max_refinement_level, the cap or rounding; in 1-D runs of adjacent flagged leaves are
        merged into one interval.

        Returns
        -------
        centres, half_widths : numpy.ndarray
            float64, shape (m, d) each.
        """
        lat = self._lat
        tree, ids = self._leaf_order()
        ids = ids[tree.flag[ids]]
        lo_k = tree.lo[ids]
        hi_k = lo_k + lat.cell_units(tree.level[ids])[:, None]
        if lat.d == 1 and ids.size:
            start = np.concatenate(([True], lo_k[1:, 0] != hi_k[:-1, 0]))
            end = np.concatenate((start[1:], [True]))
            lo_k, hi_k = lo_k[start], hi_k[end]
        lo, hi = lat.coords(lo_k), lat.coords(hi_k)
        return 0.5 * (lo + hi), 0.5 * (hi - lo)

    def sample(self, n, *, seed, weighting="volume", return_leaf=False):
        """Draw ``n`` points: a leaf with ``sample_indices`` on the leaf masses (seed
        ``seed``), then coordinate a of point i = lo + (hi - lo) * u(seed, 5, i*d + a).

        Parameters
        ----------
        n : int
        seed : int
        weighting : {"volume", "leaf", "importance"}, default "volume"
            Leaf masses: uniform over the box, every leaf equal, or volume times
            ``importance_weights(q_center)`` with its defaults.
        return_leaf : bool, default False
            Also return the leaf index per point (into :meth:`leaves`).

        Returns
        -------
        x : numpy.ndarray
            float64, shape (n, d).
        leaf : numpy.ndarray
            int64, shape (n,); only with ``return_leaf=True``.
        """
        from ..rng import STREAMS, uniforms
        from ..sampling import sample_indices
        from ..weighting import importance_weights

        n = check_count(n, "n")
        seed = check_seed(seed)
        check_choice(weighting, "weighting", WEIGHTINGS)
        if not isinstance(return_leaf, (bool, np.bool_)):
            raise TypeError(f"return_leaf must be True or False, got {return_leaf!r}")
        leaves = self.leaves()
        d = self.input_dim
        mass = np.ldexp(1.0, -d * leaves["level"])
        if weighting == "leaf":
            mass = np.ones_like(mass)
        elif weighting == "importance":
            if np.isnan(leaves["q_center"]).any():
                raise ValueError("weighting='importance' needs Q at every leaf centre; "
                                 f"{int(np.isnan(leaves['q_center']).sum())} leaves are pending "
                                 "(call refine_grid with their values first)")
            mass = mass * importance_weights(leaves["q_center"], backend=self.backend)
        idx = sample_indices(mass, n, seed=seed, backend=self.backend)
        u = uniforms(seed, STREAMS["leaf_point"], n * d, backend=self.backend).reshape(n, d)
        lo, hi = leaves["lo"][idx], leaves["hi"][idx]
        x = lo + (hi - lo) * u
        return (x, idx) if return_leaf else x

    def get_statistics(self) -> dict:
        """Counts of points, leaves (per level), flagged / near-pole leaves, capped rounds,
        evaluations and |Q| statistics (anchor keys included)."""
        leaves = self.leaves()
        vals = self.grid_values()
        done = vals[~np.isnan(vals)]
        per_level = np.bincount(leaves["level"], minlength=self._lat.L + 1)
        return {
            "total_points": int(vals.size),
            "n_leaves": int(leaves["level"].size),
            "leaves_per_level": per_level.tolist(),
            "max_refinement_level": int(leaves["level"].max()),
            "refinement_events": len(self.refinement_history),
            "flagged_leaves": int(leaves["flagged"].sum()),
            "near_pole_leaves": int((leaves["min_abs_q"] < self._lat.threshold).sum()),
            "near_pole_points": int((np.abs(done) < self._lat.threshold).sum()),
            "capped_rounds": int(sum(h["capped"] for h in self.refinement_history)),
            "n_evaluations": int(self.n_evaluations),
            "mean_q_abs": _mean_abs(done),
            "min_q_abs": float(np.abs(done).min()) if done.size else float("nan"),
        }

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Config, Q (coefficients; a callable is recorded by kind only), the points
        (sorted keys, values) and the leaves (sorted), evaluations and history."""
        tree, ids = self._leaf_order()
        order = np.argsort(tree.key[:tree.n_points], kind="stable")
        qstate = {"kind": self._qspec.kind}
        src = self._qspec.source
        for name, poly in ((("p", src.p), ("q", src.q)) if isinstance(src, Rational) else
                           ((("q", src),) if isinstance(src, Polynomial) else ())):
            qstate[f"{name}_exponents"] = poly.exponents.copy()
            qstate[f"{name}_coefficients"] = poly.coefficients.copy()
        return {
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "input_dim": self.input_dim,
            "backend": self._backend_request,
            "q": qstate,
            "point_keys": tree.key[order].copy(),
            "point_values": tree.value[order].copy(),
            "leaf_lo": tree.lo[ids].copy(),
            "leaf_level": tree.level[ids].astype(np.int64),
            "n_evaluations": int(self.n_evaluations),
            "history": [dict(h) for h in self.refinement_history],
        }

    def load_state_dict(self, state) -> None:
        """Restore a :meth:`state_dict` (validated first; nothing changes on error).
        A callable q cannot be stored: the sampler keeps its own callable."""
        with self._exclusive("load_state_dict()"):
            self._load_state_dict(state)

    def _load_state_dict(self, state) -> None:
        config, d, qspec, lat, tree, n_eval, history = _parse_state(state, self._qspec)
        backend = resolve_backend(self._backend_request, lat.max_points)
        engine = make_engine(backend, lat, tree, qspec)
        engine.update_flags(0, tree.n)
        self.config, self.input_dim, self._lat, self._qspec = config, d, lat, qspec
        self.backend, self._engine = backend, engine
        self.n_evaluations, self.refinement_history = n_eval, history
        self._pending = None

    @classmethod
    def from_state_dict(cls, state, *, q=None, backend=None) -> "ActiveSampler":
        """Build a sampler from a :meth:`state_dict`; pass ``q`` when the state was made
        with a callable (otherwise the sampler loads without one, refine_grid only)."""
        check_is_state_dict(state, "ActiveSampler")
        obj = cls.__new__(cls)
        obj._backend_request = state.get("backend", "auto") if backend is None else backend
        obj._qspec = QSpec(q, int(state.get("input_dim", 1))) if q is not None else None
        obj.load_state_dict(state)
        return obj



def _mean_abs(values: np.ndarray) -> float:
    """Mean of |values| (0 for none; inf when Q overflowed somewhere, without a warning)."""
    with np.errstate(over="ignore"):
        return float(np.abs(values).mean()) if values.size else 0.0


def _parse_state(state, current_qspec):
    """Validate a state dict; returns the pieces of a sampler without touching one."""
    check_state(state, "ActiveSampler", (
        "config", "input_dim", "q", "point_keys", "point_values", "leaf_lo", "leaf_level",
        "n_evaluations", "history"), optional=("backend",))
    cfg = config_fields(state["config"], "ActiveSampler",
                        [f.name for f in fields(ActiveSamplerConfig)], removed=REMOVED_FIELDS)
    config = ActiveSamplerConfig(**{k: (tuple(tuple(p) if isinstance(p, list) else p for p in v)
                                        if isinstance(v, list) else v) for k, v in cfg.items()})
    d = check_count(state["input_dim"], "input_dim", minimum=1)
    if d > 6:
        raise ValueError(f"input_dim must be in 1..6, got {d}")
    lat = Lattice(config, d)
    qstate = state["q"]
    kind = qstate.get("kind") if isinstance(qstate, dict) else None
    if kind in ("polynomial", "rational"):
        qpoly = Polynomial.from_terms(qstate["q_exponents"], qstate["q_coefficients"])
        q = qpoly if kind == "polynomial" else Rational(
            Polynomial.from_terms(qstate["p_exponents"], qstate["p_coefficients"]), qpoly)
        qspec = QSpec(q, d)
    elif kind in ("callable", "none"):
        qspec = current_qspec if (current_qspec is not None and current_qspec.func is not None) \
            else QSpec(None, d)
    else:
        raise ValueError(f"state['q']['kind'] must be polynomial, rational, callable or none, "
                         f"got {kind!r}")
    if lat.crit_code == CRIT_INTERVAL and qspec.poly is None:
        raise ValueError("criterion='interval' in the state needs a polynomial q")
    tree = tree_from_state(lat, state)
    n_eval = check_count(state["n_evaluations"], "n_evaluations")
    history = state["history"]
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ValueError("state history must be a list of dicts")
    return config, d, qspec, lat, tree, n_eval, [dict(h) for h in history]
