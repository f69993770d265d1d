"""The partial refresh of the model-driven learner (``refresh_rows = M > 0``): the
signals' distributions kept as sum trees (:mod:`zp_ref.sum_tree`), so a refresh that
is told M rows costs O(M log N), not O(N).

For each signal k (Q: ``importance_weights`` of the distance, unnormalised; loss:
``min(t, c)`` with ``t = loss**loss_power`` and c the water-filling level of
:func:`zp_ref.model_driven_gate.loss_cap_level` over a sum tree of t) the tree's leaves
are the signal's unnormalised weights, and
``pi = sum_k a_k w_k / W_k`` with ``a_k = share_k / sum(shares)`` and ``W_k`` the
tree's total (a signal of total 0 is uniform); a max tree over the raw t gives the
cap's check without a pass over N. An importance draw picks signal k by
``u(call_seed(s, 1), 0, j) * sum(shares)`` against the cumulative shares, then leaf i
of k's tree by :func:`zp_ref.sum_tree.tree_draws` with ``u(s, 0, j)``. Every leaf is a
function of the current signals alone, so the draws are a pure function of the seed,
the epoch and the signals the learner holds.
"""
from __future__ import annotations

import numpy as np

from .kernels.cpu_sum_tree import mixture_pi_cpu, mixture_rows_at_least_cpu
from .model_driven_gate import loss_cap_level
from .rng import STREAMS, call_seed, uniforms
from .sum_tree import tree_build, tree_draws, tree_leaves, tree_update
from .weighting import importance_weights

__all__ = ["SignalMixture", "q_distance", "largest_rows", "sorted_union", "SUBSAMPLE"]

#: Rows of the strided subsample whose quantile gives the top-rows threshold.
SUBSAMPLE = 16384
#: Relative margin between the tree's total of t and NumPy's sum of it, for the cap's
#: check: both are pairwise sums of non-negative terms, each within about 60 units of
#: rounding (6e-15 relative) of the exact sum for fewer than 2**40 terms.
SUM_MARGIN = 1e-12


def q_distance(q, grad_norm, spacing: float) -> np.ndarray:
    """``|q| / |grad q| / h`` (n,), 0 where q = g = 0, inf where only g = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.divide(np.abs(q), grad_norm)
    d[np.isnan(d)] = 0.0
    d *= 1.0 / spacing
    return d


class SignalMixture:
    """Sum trees of the Q and loss signals over a pool of N rows.

    Parameters
    ----------
    config : ModelDrivenConfig
    spacing : float
        The pool spacing h (distance units).
    shares : dict
        Signal name ("q", "loss") -> share > 0 of the non-uniform mass.
    """

    def __init__(self, config, spacing: float, shares: dict):
        self.config, self.spacing = config, float(spacing)
        self.names = sorted(shares)
        self.shares = np.array([shares[k] for k in self.names], dtype=np.float64)
        self.trees, self.maxima, self._pi = {}, {}, None

    # ------------------------------------------------------------------ leaves
    def _q_leaves(self, q, g) -> np.ndarray:
        c = self.config
        return importance_weights(q_distance(q, g, self.spacing), weight_power=c.q_power,
                                  min_q_abs=c.distance_clip,
                                  max_weight=c.distance_clip ** -c.q_power, normalize=False)

    def _t(self, loss) -> np.ndarray:
        with np.errstate(over="ignore"):
            return loss if self.config.loss_power == 1 else loss ** self.config.loss_power

    def _cap(self) -> float:
        """The loss cap's level over the raw leaves (inf: no row is capped). The check
        ``max t * N <= loss_cap * sum t`` that opens :func:`loss_cap_level` is read off
        the trees first when it holds with :data:`SUM_MARGIN` to spare (the same answer)."""
        cap, top, total = self.config.loss_cap, self.maxima["raw"][1], self.trees["raw"][1]
        if top * self.n <= cap * total * (1.0 - SUM_MARGIN):
            return np.inf
        return loss_cap_level(tree_leaves(self.trees["raw"], self.n), cap)

    def _set_level(self) -> None:
        """``level`` and ``loss_exact`` from the raw leaves alone: exact when t is
        finite below 1e300 with a total in (0, inf) and a level > 0 (else the loss's
        leaves are ``loss_weights()``: the positive rows share equally)."""
        raw = self.trees["raw"]
        self.loss_exact = bool(0 < raw[1] < np.inf and self.maxima["raw"][1] < 1e300)
        self.level = self._cap() if self.loss_exact else 0.0
        self.loss_exact = self.level > 0

    def build(self, signals: dict, loss_weights) -> None:
        """All leaves from the full signals (N,); ``loss_weights()`` gives the loss's
        weights when t is not all finite below 1e300 with a positive total."""
        self.n, self._pi = signals["q" if "q" in self.names else "loss"].size, None
        if "q" in self.names:
            self.trees["q"] = tree_build(self._q_leaves(signals["q"], signals["grad_norm"]))
        if "loss" in self.names:
            t = self._t(signals["loss"])
            self.trees["raw"] = tree_build(t)
            self.maxima["raw"] = tree_build(t, "max")
            self._set_level()
            self.trees["loss"] = tree_build(np.minimum(t, self.level) if self.loss_exact
                                            else loss_weights())

    def update(self, rows: np.ndarray, told: dict, signals: dict, loss_weights) -> None:
        """Rows ``rows`` (sorted int64) were told ``told`` (their new values); ``signals``
        are the full arrays, already updated."""
        self._pi = None
        if "q" in self.names:
            tree_update(self.trees["q"], rows, self._q_leaves(told["q"], told["grad_norm"]))
        if "loss" not in self.names:
            return
        t_rows = self._t(told["loss"])
        if not (self.loss_exact and np.isfinite(t_rows).all() and t_rows.max() < 1e300):
            return self.build(signals, loss_weights)
        cap_old = self.level
        tree_update(self.trees["raw"], rows, t_rows)
        tree_update(self.maxima["raw"], rows, t_rows, op="max")
        if not 0 < self.trees["raw"][1] < np.inf:
            return self.build(signals, loss_weights)
        cap = self.level = self._cap()
        if cap == 0.0:
            return self.build(signals, loss_weights)
        t = tree_leaves(self.trees["raw"], self.n)
        moved = rows if cap == cap_old else sorted_union(
            rows, np.flatnonzero(t > min(cap, cap_old)))      # capped before or after
        tree_update(self.trees["loss"], moved, np.minimum(t[moved], cap))

    # ------------------------------------------------------------------ pi and draws
    def _coefficients(self) -> list:
        """(a_k / W_k, or None for a uniform signal) per signal."""
        a = self.shares / self.shares.sum()
        return [(a[j] / self.trees[k][1]) if self.trees[k][1] > 0 else None
                for j, k in enumerate(self.names)]

    def _terms(self) -> tuple:
        """Per signal: its leaves, the factor c_k = a_k / W_k and the constant a_k / N;
        pi_i adds ``c_k * leaves_k[i]`` then the constant, a signal of total 0 giving
        c_k = 0 (uniform) and a tree signal the constant 0 (so x + 0 = x: pi_at's sums)."""
        a, factors = self.shares / self.shares.sum(), self._coefficients()
        coefs = [0.0 if c is None else c for c in factors]
        consts = [a[j] / self.n if c is None else 0.0 for j, c in enumerate(factors)]
        return (tuple(tree_leaves(self.trees[k], self.n) for k in self.names),
                np.array(coefs), np.array(consts))

    def pi_at(self, idx) -> np.ndarray:
        """pi at pool indices ``idx`` (int array, or slice(None) for all; float64)."""
        every = isinstance(idx, slice)
        rows = np.zeros(0, np.int64) if every else np.ascontiguousarray(idx, dtype=np.int64)
        out = np.empty(self.n if every else rows.shape)
        mixture_pi_cpu(*self._terms(), rows.ravel(), every, out.reshape(-1))
        return out

    def largest(self, k: int) -> np.ndarray:
        """:func:`largest_rows` of pi, without building pi: the subsample threshold from
        pi at the strided rows, then one pass over the leaves for the rows above it (a
        descent of max trees would skip little: the pool's rows are in no spatial order)."""
        n = self.n
        if k <= 0:
            return np.zeros(0, np.int64)
        sub = self.pi_at(np.arange(0, n, max(1, n // SUBSAMPLE)))
        j = max(0, int(sub.size * (1.0 - 2.0 * k / n)) - 1)
        out = np.empty(n, dtype=np.int64)
        cand = out[:mixture_rows_at_least_cpu(*self._terms(), np.partition(sub, j)[j], out)]
        if cand.size < k:
            cand = np.arange(n)
        return cand[np.argpartition(self.pi_at(cand), cand.size - k)[cand.size - k:]]

    def pi(self) -> np.ndarray:
        """pi (N,), computed once per change."""
        if self._pi is None:
            self._pi = self.pi_at(slice(None))
        return self._pi

    def draws(self, n: int, seed: int) -> np.ndarray:
        """n importance draws (int64) of seed s, as the module docstring defines."""
        pick = uniforms(call_seed(seed, 1), STREAMS["importance"], n) * self.shares.sum()
        which = np.minimum(np.searchsorted(np.cumsum(self.shares), pick, side="right"),
                           len(self.names) - 1)
        u = uniforms(seed, STREAMS["importance"], n)
        out = np.empty(n, dtype=np.int64)
        for j, k in enumerate(self.names):
            sel = which == j
            tree = self.trees[k]
            out[sel] = (tree_draws(tree, u[sel]) if tree[1] > 0 else
                        np.minimum((u[sel] * self.n).astype(np.int64), self.n - 1))
        return out

    # ------------------------------------------------------------------ DDP
    def leaves(self) -> np.ndarray:
        """Every tree's leaves, concatenated in a fixed order (float64)."""
        return np.concatenate([tree_leaves(self.trees[k], self.n) for k in sorted(self.trees)])

    def set_leaves(self, vec) -> None:
        """Rebuild the trees from :meth:`leaves` (e.g. rank 0's)."""
        vec = np.asarray(vec, dtype=np.float64)
        for j, k in enumerate(sorted(self.trees)):
            self.trees[k] = tree_build(vec[j * self.n:(j + 1) * self.n])
            if k == "raw":
                self.maxima[k] = tree_build(vec[j * self.n:(j + 1) * self.n], "max")
        if "loss" in self.names:           # rank 0's level: a function of its raw leaves
            self._set_level()
        self._pi = None


def largest_rows(w: np.ndarray, k: int) -> np.ndarray:
    """Indices of k largest entries of w (those argpartition picks), found among the
    entries above a threshold read off a strided subsample (one pass over w)."""
    n = w.size
    if k <= 0:
        return np.zeros(0, np.int64)
    sub = w[::max(1, n // SUBSAMPLE)]
    j = max(0, int(sub.size * (1.0 - 2.0 * k / n)) - 1)
    cand = np.flatnonzero(w >= np.partition(sub, j)[j])      # np.sort(sub)[j]
    if cand.size < k:
        cand = np.arange(n)
    return cand[np.argpartition(w[cand], cand.size - k)[cand.size - k:]]


def sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.union1d(a, b)`` as int64 (sorted, distinct) by one sort of both (2 x 2,048
    rows: 0.09 ms against union1d's 0.32 ms, NumPy 2.x)."""
    rows = np.sort(np.concatenate((a, b)).astype(np.int64))
    return rows[np.concatenate((rows[:1] == rows[:1], rows[1:] != rows[:-1]))]
