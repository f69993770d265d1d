"""Model-driven sampling: a learner over the model's own Q head and per-sample loss.

A training run knows the model, not the true Q. At each refresh the learner asks for
what it needs and is told the answers (python-adaptive style, :meth:`ModelDrivenLearner.ask`
/ :meth:`~ModelDrivenLearner.tell`; :func:`run_refresh` is the runner loop):

- ``signals`` for pool rows ``start:stop``: the model's Q there, optionally
  ``|grad_x Q|`` and the per-sample loss;
- ``q`` at refinement points (``refine=True``): the model's Q, for an
  :class:`~zp_ref.refinement.ActiveSampler` over the data's box;
- ``labels`` for new points (``label_budget > 0``): the runner labels them (``y_fn``)
  and appends them to its pool; their signals are asked for next.

It then holds the epoch's probabilities ``m = (n_imp / B) pi + (1 - n_imp / B) / N``
(the hybrid mixture of :func:`zp_ref.sampling.hybrid_indices`, ``n_imp = floor(B (1 -
floor))``) where ``pi`` mixes the signals' distributions (Q: ``importance_weights`` of
the scale-free distance; loss: RAD; refined cells; bands). Every pool point keeps
``m_i >= floor / N``. No torch (the torch runner is :mod:`zp_ref.bridges.torch_model`).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ._validation import as_float_array, check_count, check_seed
from .model_driven_config import GROWTHS, Q_SIGNALS, SCHEDULES, ModelDrivenConfig
from .model_bands import band_losses, band_weights, next_stage, signal_bands, stage_mix
from .model_driven_gate import (GATE_FIELDS, check_gate_loss, decode_gate, encode_gate,
                                gate_state, loss_signal_weights, variance_speedup)
from .model_driven_growth import (around_rows, at_brackets, in_cells, pole_brackets,
                                  pole_distances, pool_geometry)
from .model_driven_mixture import SignalMixture, largest_rows, q_distance, sorted_union
from .model_driven_runner import Request, run_refresh
from .rng import STREAMS, call_seed, uniforms
from .sampling import sample_indices, uniform_indices
from .shuffle import shuffle_order
from .state import STATE_VERSION, check_state, config_fields
from .weighting import importance_weights

__all__ = ["ModelDrivenConfig", "ModelDrivenLearner", "Request", "run_refresh",
           "Q_SIGNALS", "GROWTHS", "SCHEDULES"]

#: Where each signal comes from (named in errors).
_SOURCE = {"q": "q (q_fn output)", "grad_norm": "grad_norm (|grad_x q_fn|)",
           "loss": "loss (loss_fn output)", "y": "y (the pool's labels, y_pool)"}
#: ``part`` of :func:`zp_ref.rng.call_seed` for the growth draws of refresh epoch e.
GROWTH_PART = 7


class ModelDrivenLearner:
    """The model-driven learner over a pool (ask/tell, no torch).

    ``needs_grad``: the runner tells ``grad_norm`` with every "signals" answer (the
    distance signal). Probabilities ``m`` (N,) sum to 1 with ``m_i >= floor / N``; the
    draw of epoch e is a pure function of (seed, e, what the last refresh was told).

    Parameters
    ----------
    x_pool : numpy.ndarray, shape (N, d), or (N,) for d = 1
    config : ModelDrivenConfig or None, default None
    seed : int, default 0
    batch_size : int
        Indices per batch (>= 1).
    has_loss : bool, default False
        The runner tells ``loss``.
    has_labels : bool, default False
        The runner can label new points (``y_fn``).
    """

    def __init__(self, x_pool, *, config=None, seed=0, batch_size, has_loss=False,
                 has_labels=False):
        config = ModelDrivenConfig() if config is None else config
        if not isinstance(config, ModelDrivenConfig):
            raise TypeError(f"config must be a ModelDrivenConfig or None, got "
                            f"{type(config).__name__}")
        self.config, self.seed = config, check_seed(seed)
        self.batch_size = check_count(batch_size, "batch_size", minimum=1)
        self.has_loss, self.has_labels = bool(has_loss), bool(has_labels)
        if config.label_budget and not self.has_labels:
            raise ValueError(f"label_budget={config.label_budget} needs y_fn (labels for new "
                             f"points) and y_pool; pass them or set label_budget=0")
        if (config.label_budget and config.growth == "model" and not config.refine
                and not (self.has_loss and config.uses_loss)):
            raise ValueError("label_budget > 0 with growth='model' needs loss_fn (new points "
                             "around high-loss points) or refine=True (points in the refined "
                             "cells of the model's Q); or use growth='uniform'")
        check_gate_loss(config, self.has_loss)
        self._x, self.box, self.spacing = pool_geometry(x_pool, "x_pool")
        self.dim = self._x.shape[1]
        self.needs_grad = config.uses_q and config.q_signal == "distance"
        self.needs_y = (config.q_signal == "labels"
                        or bool(config.label_budget) and config.growth == "poles")
        self._pi = np.full(self._x.shape[0], 1.0 / self._x.shape[0])
        self._signals, self._pending = {}, None     # _pending: the open refresh's steps
        self.refresh_count, self.stage, self.stage_refreshes = 0, 0, 0
        self.band_loss, self.last_info = None, {}   # band_loss: mean loss per band
        self._warned_unchanged, self._tree, self._poles = False, None, (0, None)
        self._window = 0                # next row of the refresh_rows sweep
        self._mixture = None            # refresh_rows: the signals' sum trees
        self.gate_open, self.gate_tau = True, None     # variance_gate (model_driven_gate)

    # ------------------------------------------------------------------ pool
    pool_size = property(lambda self: self._x.shape[0], doc="N, the current pool size")
    x_pool = property(lambda self: self._x, doc="The pool inputs, float64 (N, d), grown ones last")
    refresh_rows = property(lambda self: self.config.refresh_rows_for(self.pool_size),
                            doc="M, the rows a refresh evaluates after the first (0: all)")

    @property
    def weights(self) -> np.ndarray:
        """``pi`` (N,): the model-driven distribution (sums to 1), before the floor."""
        return self._pi if self._mixture is None else self._mixture.pi()

    def importance_count(self) -> int:
        """Importance draws per batch, ``floor(batch_size * (1 - floor))`` (0 while the
        variance gate is closed)."""
        return int(math.floor(self.batch_size * (1.0 - self.config.floor))) * self.gate_open

    @property
    def probabilities(self) -> np.ndarray:
        """``m`` (N,): the probability of every pool point in a draw (sums to 1)."""
        r = self.importance_count() / self.batch_size
        return r * self.weights + (1.0 - r) / self.pool_size

    def likelihood_ratio(self, indices) -> np.ndarray:
        """``1 / (N * m_i)`` for pool indices, float64, bounded by 1 / floor."""
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.pool_size):
            raise ValueError(f"indices must lie in [0, {self.pool_size}), got range "
                             f"[{idx.min()}, {idx.max()}]")
        if not self.gate_open:                   # uniform draws: exactly 1
            return np.ones(idx.shape)
        r = self.importance_count() / self.batch_size
        pi = self._pi[idx] if self._mixture is None else self._mixture.pi_at(idx)
        return 1.0 / (self.pool_size * (r * pi + (1.0 - r) / self.pool_size))

    # ------------------------------------------------------------------ draws
    def batches(self, epoch: int, num_batches: int) -> list:
        """The global draw of ``epoch``: ``num_batches`` int64 arrays (batch_size,).

        With s = call_seed(seed, epoch), n_imp importance draws per batch: batch b holds
        ``sample_indices(pi, num_batches * n_imp, seed=s)[b*n_imp:(b+1)*n_imp]`` then
        ``uniform_indices(N, num_batches * n_uni, seed=s)[b*n_uni:(b+1)*n_uni]``, in the
        order ``argsort(u(s, 3, b*B .. b*B+B-1), stable)``. After a refresh that kept
        the signals' sum trees (``refresh_rows > 0``, :mod:`zp_ref.model_driven_mixture`),
        the importance draws are ``SignalMixture.draws(num_batches * n_imp, s)`` instead."""
        epoch = check_count(epoch, "epoch")
        nb = check_count(num_batches, "num_batches", minimum=1)
        B, n_imp = self.batch_size, self.importance_count()
        s = call_seed(self.seed, epoch)
        imp = (sample_indices(self._pi, nb * n_imp, seed=s) if self._mixture is None
               else self._mixture.draws(nb * n_imp, s)).reshape(nb, n_imp)
        uni = uniform_indices(self.pool_size, nb * (B - n_imp), seed=s).reshape(nb, B - n_imp)
        both = np.concatenate((imp, uni), axis=1)
        order = shuffle_order(uniforms(s, STREAMS["shuffle"], nb * B).reshape(nb, B))
        return list(np.take_along_axis(both, order, axis=1).astype(np.int64))

    # ------------------------------------------------------------------ the refresh protocol
    def start_refresh(self, epoch: int) -> None:
        """Open the refresh of ``epoch`` (its growth draws use call_seed(seed, epoch, 7))."""
        if self._pending is not None:
            raise ValueError("a refresh is already open: answer its requests (ask/tell) "
                             "until ask() returns kind 'done'")
        self._epoch = check_count(epoch, "epoch")
        self._n_before = self.pool_size
        self._old_pi, self._told_changed = self._pi, False
        self._pending = ["signals_all"]
        if self.config.refine:
            self._pending.append("refine")
        if self.config.label_budget:
            self._pending += ["labels", "signals_new"]
        self._pending.append("finish")
        self._refiner = self._request = None
        self.last_info = {"n_new": 0, "n_refined_cells": 0, "refine_evaluations": 0}

    def ask(self) -> Request:
        """The next request of the open refresh (the same one until it is told)."""
        if self._pending is None:
            raise ValueError("no refresh is open: call start_refresh(epoch) first")
        if self._request is None:
            self._request = self._next_request()
        return self._request

    def _next_request(self) -> Request:
        while True:
            step = self._pending[0]
            if step == "signals_all":
                return self._rows_request()
            if step == "refine":
                points = self._refine_points()
                if points.shape[0]:
                    return Request("q", points=points)
                self._refiner.tell(np.empty(0))      # nothing left to split: closes the round
                self._pending.pop(0)
                continue
            if step == "labels":
                return Request("labels", points=self._growth_points())
            if step == "signals_new":
                return Request("signals", start=self._n_before, stop=self.pool_size)
            self._finish()
            return Request("done")

    def tell(self, answer=None) -> None:
        """The answer to :meth:`ask`'s request: for "signals" a dict with ``q`` (n,) and,
        as needed, ``grad_norm`` (n,) and ``loss`` (n,); for "q" the values (m,); for
        "labels" None, or the points the runner appended instead (rank 0's under DDP)."""
        req = self.ask()
        if req.kind == "signals":
            self._tell_signals(req, answer)
            self._pending.pop(0)
        elif req.kind == "q":
            self._tell_refine(answer)
        elif req.kind == "labels":         # answer: the points appended (default: asked)
            pts = req.points if answer is None else as_float_array(
                answer, "labelled points", ndim=2, finite=True).reshape(-1, self.dim)
            self._x = np.concatenate((self._x, pts))
            self.last_info["n_new"] = int(pts.shape[0])
            self._tree = None
            self._pending.pop(0)
        else:
            raise ValueError("the refresh is done: nothing to tell (start the next one)")
        self._request = None

    # ------------------------------------------------------------------ signals
    def _tell_signals(self, req, answer) -> None:
        if not isinstance(answer, dict):
            raise TypeError(f"the answer to a 'signals' request must be a dict with 'q' "
                            f"(and 'grad_norm', 'loss' as needed), got {type(answer).__name__}")
        n = req.stop - req.start if req.rows is None else req.rows.size
        got = {}
        names = (("q", self.config.uses_q or self.config.refine), ("grad_norm", self.needs_grad),
                 ("loss", self.has_loss and self.config.uses_loss), ("y", self.needs_y))
        for name, needed in names:
            if not needed:
                continue
            if answer.get(name) is None:
                raise ValueError(f"the 'signals' answer needs {name!r} (pool rows "
                                 f"{req.index()})")
            v = as_float_array(answer[name], _SOURCE[name], finite=name != "loss")
            if name == "loss" and np.isnan(v).any():     # +inf: a point the model misses
                raise ValueError(f"{_SOURCE[name]} holds {int(np.isnan(v).sum())} NaN "
                                 f"value(s), first at position {int(np.argmax(np.isnan(v)))}")
            if v.size != n:
                raise ValueError(f"{name} must have one value per pool row ({n}), got {v.size}")
            if name in ("grad_norm", "loss") and (v < 0).any():
                raise ValueError(f"{name} must be >= 0, got {v.min()} at position "
                                 f"{int(np.argmin(v))} of the rows asked for")
            got[name] = v
        for name, v in got.items():
            old = self._signals.get(name)
            if req.rows is not None:       # the sum trees own their arrays: update in place
                if self._mixture is None:
                    self._signals[name] = old = old.copy()
                self._told_changed |= not np.array_equal(old[req.rows], v)
                old[req.rows] = v
            elif req.start:
                self._signals[name] = np.concatenate((old, v))
            else:
                self._told_changed |= old is None or not np.array_equal(old, v)
                self._signals[name] = v.copy() if self.refresh_rows else v
        self._told = (req.rows, got)
        if req.rows is not None:
            self._window = self._window_next

    def _rows_request(self) -> Request:
        """The rows of this refresh: all of them, or (refresh_rows = M) the M/2 holding
        the most mass of pi and the next M/2 of the round-robin sweep."""
        n, m = self.pool_size, self.refresh_rows
        have = self._signals and all(v.size == n for v in self._signals.values())
        if not m or m >= n or not have or self._loss_starts():
            return Request("signals", start=0, stop=n)
        top = (largest_rows(self._pi, m // 2) if self._mixture is None
               else self._mixture.largest(m // 2))
        sweep = (self._window + np.arange(m - m // 2)) % n
        self._window_next = int((self._window + sweep.size) % n)
        return Request("signals", rows=sorted_union(top, sweep))

    def distance(self) -> np.ndarray:
        """The scale-free signal of the last refresh in units of the pool spacing (N,):
        ``|Q| / |grad Q| / h`` ("distance"), the rank of |Q| (1 = nearest, "quantile") or
        the distance to the labels' poles (inf without any, "labels"; found again only
        when the pool grew)."""
        if self.config.q_signal == "labels":
            if self._poles[0] != self.pool_size:
                self._poles = (self.pool_size, pole_distances(
                    self._x, self._signals["y"], self.spacing, tree=self._kdtree))
            return self._poles[1]
        if self.config.q_signal == "distance" and "grad_norm" in self._signals:
            return q_distance(self._signals["q"], self._signals["grad_norm"], self.spacing)
        q = np.abs(self._signals["q"])
        rank = np.empty(q.size)
        rank[np.argsort(q, kind="stable")] = np.arange(1, q.size + 1)
        return rank

    def _q_weights(self) -> np.ndarray:
        c = self.config
        if c.schedule == "bands":
            return self._band_weights()
        clip = c.distance_clip if c.q_signal == "labels" or self.needs_grad else 1.0
        w = importance_weights(self.distance(), weight_power=c.q_power, min_q_abs=clip,
                               max_weight=clip ** -c.q_power, normalize=False)
        total = w.sum()            # 0: the model's Q has no zero in reach (Q constant)
        return w / total if total > 0 else np.full(w.size, 1.0 / w.size)

    def _loss_on(self) -> bool:
        """The loss signal is told and past its warm-up: this refresh is at least the
        ``loss_warmup``-th (the loss of the model as built says nothing of its error)."""
        c = self.config
        return (self.has_loss and c.uses_loss and "loss" in self._signals
                and self.refresh_count >= c.loss_warmup)

    def _loss_starts(self) -> bool:
        """The first refresh to use the loss after a warm-up (it evaluates every row)."""
        c = self.config
        return (self.has_loss and c.uses_loss and c.loss_warmup > 0
                and self.refresh_count == c.loss_warmup)

    def _loss_weights(self) -> np.ndarray:
        c = self.config
        return loss_signal_weights(self._signals["loss"], c.loss_power, c.loss_cap)

    # ------------------------------------------------------------------ bands
    def band_ids(self) -> np.ndarray:
        """Band of every pool point (0 nearest the model's pole, K the far band)."""
        return signal_bands(self.distance(), self.config.band_edges)

    def _band_weights(self) -> np.ndarray:
        c = self.config
        ids, k = self.band_ids(), len(c.band_edges) + 1
        counts = np.bincount(ids, minlength=k)
        losses = band_losses(ids, counts, self._signals.get("loss"))
        self.stage, self.stage_refreshes = next_stage(
            self.stage, self.stage_refreshes, self.band_loss, losses,
            plateau=c.band_plateau, max_refreshes=c.band_max_refreshes, n_bands=k)
        self.band_loss = losses
        return band_weights(ids, counts, stage_mix(self.stage, k))

    # ------------------------------------------------------------------ refinement
    def _refine_points(self) -> np.ndarray:
        """The points of the next refinement round: the initial grid of a new
        ActiveSampler over the data's box, then each round's new points."""
        from .refinement import ActiveSampler, ActiveSamplerConfig
        c = self.config
        if self._refiner is None:
            cells = max(1, int(round(c.refine_initial_cells ** (1.0 / self.dim))))
            cfg = ActiveSamplerConfig(
                initial_grid_size=cells,
                grid_bounds=[(float(a), float(b)) for a, b in zip(*self.box)],
                max_refinement_level=c.max_refinement_level,
                max_grid_points=max(c.max_grid_points, 2 * (cells + 1) ** self.dim),
                criterion=c.refine_criterion)
            self._refiner = ActiveSampler(cfg, input_dim=self.dim, backend="numpy")
            self._refine_initial = True
            self._q_scale = float(np.median(np.abs(self._signals["q"]))) or 1.0
            return self._refiner.get_current_grid()
        return self._refiner.ask()

    def _tell_refine(self, values) -> None:
        """Q at the refinement points, divided by the pool's median |Q| (so the
        ``abs_or_sign`` threshold is scale-free)."""
        vals = as_float_array(values, "q_fn output at the refinement points",
                              allow_empty=True, finite=True) / self._q_scale
        if self._refine_initial:
            self._refiner.refine_grid(vals)      # the initial grid, and its first split
            self._refine_initial = False
        else:
            self._refiner.tell(vals)
        self.last_info["refine_evaluations"] += int(vals.size)

    def refined_cells(self) -> tuple:
        """(lo, hi), each (m, d): the flagged leaves of the last refinement (none: m = 0)."""
        if self._refiner is None:
            return np.zeros((0, self.dim)), np.zeros((0, self.dim))
        leaves = self._refiner.leaves()
        return leaves["lo"][leaves["flagged"]], leaves["hi"][leaves["flagged"]]

    def _kdtree(self):
        from scipy.spatial import cKDTree
        self._tree = cKDTree(self._x) if self._tree is None else self._tree
        return self._tree

    def _nearest(self, points, k):
        dist, idx = self._kdtree().query(points, k=(k := min(k, self.pool_size)))
        return dist.reshape(len(points), k), idx.reshape(len(points), k)

    def _refine_weights(self) -> np.ndarray | None:
        lo, hi = self.refined_cells()
        self.last_info["n_refined_cells"] = int(lo.shape[0])
        if lo.shape[0] == 0:
            return None
        _, idx = self._nearest(0.5 * (lo + hi), self.config.refine_neighbours)
        w = np.bincount(idx.ravel(), minlength=self.pool_size).astype(np.float64)
        return w / w.sum()

    # ------------------------------------------------------------------ growth
    def _growth_points(self) -> np.ndarray:
        """The refresh's new points, by ``growth`` (:mod:`zp_ref.model_driven_growth`)."""
        c, n, lo, hi = self.config, self.config.label_budget, *self.box
        s = call_seed(self.seed, self._epoch, part=GROWTH_PART)
        u = uniforms(s, STREAMS["model_growth"], n * self.dim).reshape(n, self.dim)
        aims = (None if c.growth == "uniform" else self.refined_cells() if c.growth == "model"
                else pole_brackets(self._x, self._signals["y"], max(1, n // 16),
                                   4 * self.spacing, tree=self._kdtree))
        loss_ok = self._loss_on()
        if aims is None or not (loss_ok or aims[0].shape[0]):
            return lo + (hi - lo) * u      # asked for, or nothing to aim at: uniform in the box
        n_loss = n if aims[0].shape[0] == 0 else int(round(n * c.growth_loss_share)) * loss_ok
        parts = []
        if n_loss:
            centre = sample_indices(self._loss_weights(), n_loss, seed=s)
            dist, _ = self._nearest(self._x[centre], 2)
            radius = np.where(dist[:, -1] > 0, dist[:, -1], self.spacing)
            parts.append(around_rows(self._x, centre, radius, u[:n_loss]))
        if n - n_loss and c.growth == "poles":
            v = uniforms(call_seed(s, 2), STREAMS["model_growth"], 2 * n).reshape(n, 2)
            parts.append(at_brackets(*aims, n - n_loss, self.spacing, v[n_loss:]))
        elif n - n_loss:
            cell = sample_indices(np.ones(aims[0].shape[0]), n - n_loss, seed=call_seed(s, 1))
            parts.append(in_cells(*aims, cell, u[n_loss:]))
        return np.clip(np.concatenate(parts), lo, hi)

    # ------------------------------------------------------------------ the new distribution
    def _mixture_shares(self) -> dict | None:
        """The signals' shares when the refresh keeps sum trees (refresh_rows > 0, the
        distance and loss signals only), else None."""
        c, have = self.config, self._signals
        if not self.refresh_rows or c.schedule != "none" or c.refine or c.label_budget:
            return None
        shares = {}
        if c.uses_q and "q" in have:
            if not (self.needs_grad and "grad_norm" in have):
                return None
            shares["q"] = c.q_share
        if self._loss_on():
            shares["loss"] = c.loss_share
        return shares or None

    def _finish_mixture(self, shares) -> None:
        """The sum trees: the told rows only after a partial refresh, else built."""
        rows, told = self._told
        if rows is not None and self._mixture is not None and \
                self._mixture.names == sorted(shares):
            self._mixture.update(rows, told, self._signals, self._loss_weights)
        else:
            self._mixture = SignalMixture(self.config, self.spacing, shares)
            self._mixture.build(self._signals, self._loss_weights)

    def _finish(self) -> None:
        c = self.config
        shares = self._mixture_shares()
        if shares is not None:             # unchanged: the same signals, told the same
            same = self._mixture is not None and self._mixture.names == sorted(shares)
            self._finish_mixture(shares)
            return self._close(same and not self._told_changed)
        self._mixture = None
        parts = []
        if c.uses_q and "q" in self._signals:
            parts.append((c.q_share, self._q_weights()))
        if self._loss_on():
            parts.append((c.loss_share, self._loss_weights()))
        if c.refine and c.refine_share > 0:
            w = self._refine_weights()
            if w is not None:
                parts.append((c.refine_share, w))
        total = sum(share for share, _ in parts)
        self.set_weights(sum(share * w for share, w in parts) / total if total > 0 else
                         np.full(self.pool_size, 1.0 / self.pool_size))
        self._close(self.pool_size == self._n_before and np.array_equal(self._pi, self._old_pi))

    def _close(self, unchanged: bool) -> None:
        self.gate_open, self.gate_tau = True, None
        if self.config.variance_gate and self._loss_on():   # m with the gate open
            self.gate_open, self.gate_tau = gate_state(variance_speedup(
                self._signals["loss"], self.probabilities), self.config.variance_gate)
        self.last_info.update(gate_open=self.gate_open, gate_tau=self.gate_tau)
        self.refresh_count += 1
        self._pending = None
        self.last_info.update(n_pool=self.pool_size, stage=self.stage)
        self.last_info["changed"] = not unchanged
        if unchanged and self.refresh_count > 1 and not self._warned_unchanged:
            self._warned_unchanged = True
            warnings.warn("model-driven refresh changed nothing: the probabilities equal the "
                          "previous refresh's (is q_fn / loss_fn reading the trained model? "
                          "a frozen model needs no refresh: raise refresh_every); this "
                          "warning is given once", RuntimeWarning, stacklevel=3)

    def abort_refresh(self) -> int:
        """Undo an open refresh (a runner's callable failed): the pool is cut back to its
        size before the refresh and pi is kept. Returns that size (the runner cuts its
        own pool to it)."""
        if self._pending is not None:
            self._x = self._x[:self._n_before]
            self._tree = None
            self._pending = self._request = None
        return self.pool_size

    def set_weights(self, pi) -> None:
        """Replace ``pi`` (N,) (e.g. rank 0's, broadcast under DDP): finite, >= 0, sum 1."""
        pi = as_float_array(pi, "pi", finite=True)
        if pi.size != self.pool_size or (pi < 0).any() or not abs(pi.sum() - 1.0) < 1e-9:
            raise ValueError(f"pi must be {self.pool_size} non-negative values summing to 1, "
                             f"got size {pi.size}, min {pi.min()}, sum {pi.sum()}")
        self._pi, self._mixture = pi, None

    def draw_state(self) -> np.ndarray:
        """What the draws depend on, float64: ``pi``, or the sum trees' leaves after a
        partial-refresh-capable refresh (broadcast under DDP, :meth:`set_draw_state`)."""
        return self._pi if self._mixture is None else self._mixture.leaves()

    def set_draw_state(self, vec) -> None:
        """Replace :meth:`draw_state` by another learner's (rank 0's)."""
        if self._mixture is None:
            return self.set_weights(vec)
        vec = as_float_array(vec, "draw state", finite=True)
        if vec.size != self._mixture.leaves().size or (vec < 0).any():
            raise ValueError(f"the draw state must be {self._mixture.leaves().size} "
                             f"non-negative values, got size {vec.size}")
        self._mixture.set_leaves(vec)

    def decisions(self) -> np.ndarray:
        """The state that steers later refreshes, float64: (stage, stage_refreshes,
        band_loss..., and with variance_gate > 0 gate_open, gate_tau (NaN: none)), broadcast
        with ``pi`` under DDP so every rank decides alike."""
        bl = [] if self.band_loss is None else list(self.band_loss)
        gate = encode_gate(self.gate_open, self.gate_tau) if self.config.variance_gate else []
        return np.array([self.stage, self.stage_refreshes, *bl, *gate], dtype=np.float64)

    def set_decisions(self, vec) -> None:
        vec = np.asarray(vec, dtype=np.float64)
        if self.config.variance_gate:
            self.gate_open, self.gate_tau = decode_gate(vec[-GATE_FIELDS:])
            vec = vec[:-GATE_FIELDS]
        self.stage, self.stage_refreshes = int(vec[0]), int(vec[1])
        self.band_loss = vec[2:].copy() if vec.size > 2 else None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Config, seed, batch size, the pool inputs, pi and the curriculum's state."""
        return {"version": STATE_VERSION, "config": self.config.to_dict(), "seed": self.seed,
                "batch_size": self.batch_size, "x_pool": self._x.copy(),
                "pi": self.weights.copy(),
                "refresh_count": self.refresh_count, "decisions": self.decisions(),
                "warned_unchanged": self._warned_unchanged, "window": self._window,
                "signals": {k: v.copy() for k, v in self._signals.items()}}

    def load_state_dict(self, state) -> None:
        """Restore a :meth:`state_dict` (validated first; nothing changes on error)."""
        check_state(state, type(self).__name__, ("config", "seed", "batch_size", "x_pool", "pi",
                                                 "refresh_count", "decisions"),
                    optional=("warned_unchanged", "window", "signals"))
        saved = {"loss_warmup": 0, "variance_gate": 0.0, **state["config"]} if isinstance(
            state["config"], dict) else state["config"]   # saved before these fields: off
        cfg = config_fields(saved, type(self).__name__,
                            list(ModelDrivenConfig.__dataclass_fields__))
        cfg["band_edges"] = tuple(cfg["band_edges"])
        other = ModelDrivenLearner(state["x_pool"], config=ModelDrivenConfig(**cfg),
                                   seed=state["seed"], batch_size=state["batch_size"],
                                   has_loss=self.has_loss, has_labels=self.has_labels)
        other.box, other.spacing = self.box, self.spacing   # the data's box stays the first one
        other.set_weights(state["pi"])
        other.refresh_count = check_count(state["refresh_count"], "refresh_count")
        other.set_decisions(state["decisions"])
        other._warned_unchanged = bool(state.get("warned_unchanged", False))
        other._window = check_count(state.get("window", 0), "window")
        other._signals = {k: as_float_array(v, f"signals[{k!r}]", allow_empty=True)
                          for k, v in (state.get("signals") or {}).items()}
        shares = other._mixture_shares()
        if shares and all(v.size == other.pool_size for v in other._signals.values()):
            other._signals = {k: v.copy() for k, v in other._signals.items()}
            other._mixture = SignalMixture(other.config, other.spacing, shares)
            other._mixture.build(other._signals, other._loss_weights)
        self.__dict__.update(other.__dict__)
