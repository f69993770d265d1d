"""The engine contract and the round driver.

An engine holds the tree (on the host, or on the device for cuda) and runs one round
in two halves: ``open_round`` (the splittable flagged leaves, the cap, the split; the
parents stop being leaves and the new points are pending, NaN) and, once the new
points have values, ``update_flags`` on the new cells. :class:`Engine` declares what
the sampler calls; the numpy oracle (:mod:`.oracle`), the Numba driver (:mod:`.cpu`)
and the numba.cuda driver (:mod:`.cuda`) satisfy it. ``open_host_round`` is the host
engines' half-round; ``select_under_cap`` / ``urgency_order`` choose the cells when
the cap binds (the NumPy spec: the numpy and cuda engines call it, the cpu engine runs
:mod:`zp_ref.kernels.cpu_cap`). ``check_cap_fits`` refuses a cap whose memory bound
exceeds the machine.
"""
from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ..kernels.common import CRIT_INTERVAL, UNIT_ROUNDOFF
from ..rational import Polynomial, Rational
from .tree import Lattice, Tree, cell_values, face_keys, sign_change


@dataclass
class PendingRound:
    """A round opened by ``open_round`` and not yet given its values.

    ``c0``/``n_children``: the new cells, rows [c0, c0 + n_children); ``p0``/``n_new``:
    the new (pending) points, rows [p0, p0 + n_new); ``sel``: the split cells (engine
    specific, for ``undo_round``); ``info``: the round's history counts.
    """
    c0: int
    n_children: int
    p0: int
    n_new: int
    sel: object = None
    info: dict = field(default_factory=dict)


class Engine(Protocol):
    """What :class:`~zp_ref.refinement.ActiveSampler` needs from an engine."""

    name: str

    def host_tree(self) -> Tree:
        """The tree with host arrays (a copy for a device engine)."""

    def tree_size(self) -> int:
        """Number of nodes (rows of the node arrays in use)."""

    def exists(self, keys: np.ndarray) -> np.ndarray:
        """bool (n,): which packed keys are points of the tree."""

    def sorted_point_ids(self) -> np.ndarray:
        """Point ids in increasing key order (int64 (n_points,))."""

    def point_coords(self, p0: int, p1: int) -> np.ndarray:
        """Coordinates (p1 - p0, d) of points [p0, p1)."""

    def set_values(self, p0: int, values: np.ndarray) -> None:
        """Q at points [p0, p0 + values.size)."""

    def set_values_at(self, ids: np.ndarray, values: np.ndarray) -> None:
        """Q at the points ``ids``."""

    def evaluate(self, p0: int, p1: int) -> None:
        """Q (the polynomial of the engine's QSpec) at points [p0, p1), in kernels."""

    def update_flags(self, c0: int, c1: int) -> None:
        """flag / exhausted of nodes [c0, c1) from their values (or the enclosure)."""

    def open_round(self, select: Callable) -> PendingRound:
        """Split the splittable flagged leaves (``select(cand) -> (sel, capped)`` when the
        cap may bind); parents retire, new points are pending (NaN)."""

    def undo_round(self, pending: PendingRound) -> None:
        """Forget a pending round: the tree as before ``open_round``."""


# ------------------------------------------------------------------------ Q specification
class QSpec:
    """What the engines need to evaluate Q: a polynomial (kernels) or a host callable."""

    def __init__(self, q, d: int):
        self.source = q
        self.poly = None
        self.func = None
        if isinstance(q, Rational):
            q = q.q
        if isinstance(q, Polynomial):
            if q.dim != d:
                raise ValueError(f"q is a polynomial in {q.dim} variables but input_dim={d}; "
                                 f"pass input_dim={q.dim}")
            self.poly = q
        elif q is not None:
            if not callable(q):
                raise TypeError(f"q must be a zp_ref.Polynomial, a zp_ref.Rational, a callable "
                                f"(n, d) -> (n,) or None, got {type(q).__name__}")
            self.func = q

    @property
    def kind(self) -> str:
        if self.poly is not None:
            return "rational" if isinstance(self.source, Rational) else "polynomial"
        return "callable" if self.func is not None else "none"


def call_q(func, x: np.ndarray) -> np.ndarray:
    """Evaluate a user callable on points x (n, d) and check the result: (n,) finite."""
    n = x.shape[0]
    vals = func(x)
    arr = np.asarray(vals)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"q returned values of dtype {arr.dtype}; it must return real numbers")
    if arr.shape != (n,):
        raise ValueError(f"q must return an array of shape ({n},) for {n} points, got shape "
                         f"{arr.shape}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"q returned {int(bad.sum())} non-finite value(s) for {n} points; "
                         f"first at index {first}, x={x[first].tolist()}, value {arr[first]}")
    return arr


class IntervalTables:
    """Taylor re-expansion tables of a polynomial for the certified criterion.

    For a cell with centre c and half-widths r, Q(c + t) = sum_b A_b t**b with
    A_b = sum_t w_t prod_a C(e_ta, b_a) c_a**(e_ta - b_a). Entry z of the tables adds
    ``w[term[z]] * mult[z] * prod_a c_a**cexp[z, a]`` to A at flat index ``flat[z]``;
    ``bexp[f]`` is the multi-index b of flat index f (row-major, A_0 at f = 0).
    The enclosure is  Q(cell) in A_0 +- (R + E),  R = sum_{b != 0} |A_b| r**b,
    E = 2 gamma_K B with B = sum_t |w_t| prod_a (|c_a| + r_a)**e_ta, gamma_K = K u/(1 - K u)
    and K = 2 (2 n + 2 d + k + T + 4) (n total degree, k terms, T Taylor entries): every
    computed quantity is a sum of at most K-rounding products whose exact absolute values
    add up to at most B (docs/refinement.md).
    """

    def __init__(self, poly: Polynomial):
        e, w, emax = poly.kernel_arrays()
        d = e.shape[1]
        tshape = tuple(int(m) + 1 for m in emax)
        tstrides = np.array([int(np.prod(tshape[a + 1:])) for a in range(d)], np.int64)
        term, flat, mult, cexp = [], [], [], []
        for t in range(w.size):
            for b in itertools.product(*(range(int(x) + 1) for x in e[t])):
                term.append(t)
                flat.append(int(np.dot(b, tstrides)))
                mult.append(float(np.prod([math.comb(int(x), y) for x, y in zip(e[t], b)])))
                cexp.append([int(x) - y for x, y in zip(e[t], b)])
        self.exps, self.w, self.emax = e, w, emax
        self.term = np.array(term, np.int64)
        self.flat = np.array(flat, np.int64)
        self.mult = np.array(mult)
        self.cexp = np.array(cexp, np.int64).reshape(-1, d)
        self.size = int(np.prod(tshape))
        self.bexp = np.array(list(itertools.product(*(range(s) for s in tshape))),
                             np.int64).reshape(-1, d)
        k_ops = 2 * (2 * poly.degree + 2 * d + w.size + self.size + 4)
        gamma = k_ops * UNIT_ROUNDOFF / (1.0 - k_ops * UNIT_ROUNDOFF)
        self.err_factor = 2.0 * gamma

    def kernel_args(self):
        return (self.exps, self.w, self.emax, self.term, self.flat, self.mult, self.cexp,
                self.bexp, self.err_factor)

    def may_overflow(self, lo: np.ndarray, hi: np.ndarray) -> bool:
        """False when no enclosure over a cell of the box [lo, hi] can overflow: with
        M_a = max(|lo_a|, |hi_a|, 1), every |c_a|, r_a <= M_a, so every computed product is
        at most G = sum_t |w_t| prod_a (2 M_a)**e_ta and every sum at most (its number of
        terms) * G, far below float64's 1.8e308 when the count * G < 1e300."""
        m = 2.0 * np.maximum(np.maximum(np.abs(lo), np.abs(hi)), 1.0)
        with np.errstate(over="ignore", invalid="ignore"):
            g = float(np.sum(np.abs(self.w) * np.prod(m ** self.exps, axis=1)))
        return not g * (self.term.size + self.size + self.w.size) < 1e300


def empty_interval_args(d: int):
    """Placeholder tables for the non-interval criteria (kernels need typed arrays)."""
    z1 = np.zeros(1, np.int64)
    z2 = np.zeros((1, d), np.int64)
    return (z2, np.zeros(1), np.zeros(d, np.int64), z1, z1, np.zeros(1), z2, z2, 0.0)



# ------------------------------------------------------------------------ memory bound
#: Bytes of a refinement's peak extra memory beyond its per-point share (scratch of the
#: split batches, hash-table slack; docs/refinement.md).
PEAK_FIXED_BYTES = 32 << 20


def peak_bytes_per_point(d: int) -> int:
    """Bytes per point of ``max_grid_points`` that bound a cpu refinement's peak extra
    memory in d dimensions: 296 + 24 d + 12 * 2**d (docs/refinement.md, "Memory")."""
    return 296 + 24 * d + 12 * 2 ** d


def physical_memory_bytes() -> int:
    """Physical memory of this machine (os.sysconf); 0 when the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


def check_cap_fits(lat: Lattice) -> None:
    """Refuse a ``max_grid_points`` whose memory bound exceeds the physical memory."""
    per_point = peak_bytes_per_point(lat.d)
    need = lat.max_points * per_point + PEAK_FIXED_BYTES
    have = physical_memory_bytes()
    if have and need > have:
        largest = max((have - PEAK_FIXED_BYTES) // per_point, 0)
        raise ValueError(f"max_grid_points={lat.max_points} may need up to {need / 2**30:.1f} "
                         f"GiB in {lat.d}-D ({per_point} bytes per point, docs/refinement.md) "
                         f"but this machine has {have / 2**30:.1f} GiB of physical memory; "
                         f"use max_grid_points <= {largest}")


# ------------------------------------------------------------------------ cap selection
def urgency_order(lat: Lattice, tree: Tree, cand: np.ndarray) -> np.ndarray:
    """Candidates sorted most urgent first: sign change, then smaller min |Q|, then lower
    level, then position (packed key of the lower corner)."""
    vals = cell_values(tree, cand)
    sign = sign_change(vals)
    min_abs = np.abs(vals).min(axis=1)
    return cand[np.lexsort((lat.key(tree.lo[cand]), tree.level[cand], min_abs, ~sign))]


def select_under_cap(lat: Lattice, tree: Tree, cand: np.ndarray, exists) -> tuple:
    """The longest prefix of the urgency order whose new points fit under the cap.

    A cell brings 2**d new centres plus its face points that neither exist nor come
    with a more urgent cell. ``exists(keys) -> bool`` asks the engine about face keys.
    Returns (selected node ids, capped).
    """
    n_new_max = cand.size * (3 ** lat.d - 1)
    if tree.n_points + n_new_max <= lat.max_points:
        return cand, False
    order = urgency_order(lat, tree, cand)
    keys = face_keys(lat, tree.lo[order], tree.level[order])          # (S, F)
    flat = keys.ravel()
    fresh = ~exists(flat)
    first = np.zeros(flat.size, np.bool_)
    _, first_idx = np.unique(flat, return_index=True)                 # first = most urgent
    first[first_idx] = True
    charge = 2 ** lat.d + (fresh & first).reshape(keys.shape).sum(axis=1)
    room = lat.max_points - tree.n_points
    k = int(np.searchsorted(np.cumsum(charge), room, side="right"))
    return order[:k], k < cand.size


# ------------------------------------------------------------------------ the round driver
def open_host_round(engine, select: Callable) -> PendingRound:
    """The first half of a round on a host engine (numpy, cpu): splittable flagged
    leaves -> (cap) -> children and pending points -> parents retire."""
    t = engine.tree
    cand = engine.candidates()
    sel, capped = select(cand) if cand.size else (cand, False)
    c0, n_children, p0, n_new = (t.n, 0, t.n_points, 0)
    if sel.size:
        c0, n_children, p0, n_new = engine.split(sel)
        t.value[p0:p0 + n_new] = np.nan
        engine.commit(sel)
        t.n_leaves += n_children - sel.size
    return PendingRound(c0, n_children, p0, n_new, sel, round_info(
        int(cand.size), int(sel.size), bool(capped), n_new, t.n_points, t.n_leaves))


def round_info(n_candidates: int, n_refined: int, capped: bool, n_new: int, n_points: int,
               n_leaves: int) -> dict:
    """The counts of one round as the sampler's history records them."""
    return {"n_candidates": n_candidates, "n_refined": n_refined,
            "n_deferred": n_candidates - n_refined, "capped": capped,
            "n_new_points": int(n_new), "n_points": int(n_points), "n_leaves": int(n_leaves)}


class HostEngine:
    """The numpy and cpu engines: the tree in host arrays, rounds by ``open_host_round``.
    Subclasses give ``rebuild_index``, ``exists``, ``candidates``, ``split``, ``commit``,
    ``rollback``, ``evaluate`` and ``update_flags``."""

    def __init__(self, lat: Lattice, tree: Tree, qspec: QSpec):
        check_cap_fits(lat)
        self.lat, self.tree, self.qspec = lat, tree, qspec
        self.interval = IntervalTables(qspec.poly) if lat.crit_code == CRIT_INTERVAL else None
        self.rebuild_index()

    def host_tree(self) -> Tree:
        return self.tree

    def tree_size(self) -> int:
        return self.tree.n

    def sorted_point_ids(self) -> np.ndarray:
        return np.argsort(self.tree.key[:self.tree.n_points], kind="stable")

    def set_values_at(self, ids: np.ndarray, values: np.ndarray) -> None:
        self.tree.value[ids] = values

    def point_coords(self, p0: int, p1: int) -> np.ndarray:
        return self.lat.coords(self.lat.decode(self.tree.key[p0:p1]))

    def set_values(self, p0: int, values: np.ndarray) -> None:
        self.tree.value[p0:p0 + values.size] = values

    def open_round(self, select: Callable) -> PendingRound:
        return open_host_round(self, select)

    def undo_round(self, pending: PendingRound) -> None:
        if pending.n_children:
            t = self.tree
            t.alive[pending.sel] = True
            t.n_leaves -= pending.n_children - pending.sel.size
            self.rollback(pending.sel, pending.c0, pending.p0)
