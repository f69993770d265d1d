"""Active refinement: a 2**d-tree over a box that localises the zeros of Q (the poles
of P/Q) and draws new points near them. See docs/refinement.md.

Geometry. The box has ``n0[a]`` initial cells on axis ``a``; a cell of level ``l`` is
split in half along every axis into ``2**d`` children of level ``l + 1``. All corners
live on one integer lattice: ``M[a] = n0[a] * 2**(L + 1)`` steps per axis
(``L = max_refinement_level``; the extra factor 2 holds the centres of level-L cells),
lattice index ``k`` lies at ``lo + (hi - lo) * (k / M)`` (``hi`` itself at ``k = M``), and
a point's key is its row-major packed index ``sum_a k[a] * stride[a]``. A cell is
evaluated at its ``2**d`` corners and its centre; a point shared by neighbouring cells is
evaluated once.

The ``_NumpyEngine`` below is the oracle: plain level-by-level array code. The ``cpu``
engine (Numba, :mod:`zp_ref.kernels.cpu_refinement`) and the ``cuda`` engine
(:mod:`zp_ref.kernels.gpu_refinement`) build the same leaves.
"""
from __future__ import annotations

import itertools
import math
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

import numpy as np

from ._validation import as_float_array, check_choice, check_count, check_real, check_seed
from .backends import resolve_backend
from .rational import Polynomial, Rational, horner_numpy, terms_numpy

__all__ = ["ActiveSampler", "ActiveSamplerConfig", "CRITERIA", "EnclosureOverflowWarning",
           "WEIGHTINGS"]

CRITERIA = ("abs", "sign", "abs_or_sign", "interval")
WEIGHTINGS = ("volume", "leaf", "importance")
CRIT_ABS, CRIT_SIGN, CRIT_ABS_OR_SIGN, CRIT_INTERVAL = range(4)
STATE_VERSION = 1
#: dtype of point ids in the tree (max_grid_points < 2**31).
ID = np.int32
#: Inflation of a cell's half-width so that [c - r, c + r] covers [lo, hi] despite rounding.
RADIUS_INFLATE = 1.0 + 2.0 ** -50
UNIT_ROUNDOFF = 2.0 ** -53


class EnclosureOverflowWarning(RuntimeWarning):
    """``criterion="interval"``: refinement stopped with flagged leaves whose certified
    enclosure overflowed float64 (inf or NaN). Such a leaf may or may not hold a zero of Q;
    it is flagged (and in ``pole_estimates()``) because nothing excludes one."""


# ------------------------------------------------------------------------ configuration
@dataclass
class ActiveSamplerConfig:
    """Configuration of :class:`ActiveSampler` (the anchor's fields plus ``criterion``).

    initial_grid_size: cells per axis at level 0 (an int, or one int per axis).
    grid_bounds: one (lo, hi) for every axis, or one pair per axis.
    refinement_threshold: |Q| below which ``abs`` flags a cell (also "near pole" in stats);
        ``abs_or_sign`` scales it by 4**-level (see :func:`small_q_cutoffs`).
    max_refinement_level: deepest level a cell may reach (0 = no splitting).
    refinement_ratio, min_points_per_region: accepted and validated for compatibility
        with the anchor; the tree always halves every axis (see docs/refinement.md).
    adapt_frequency: epochs between refinements for callers (:meth:`ActiveSampler.should_adapt`).
    max_grid_points: cap on the number of evaluated points.
    criterion: "abs", "sign", "abs_or_sign" (default) or "interval".
    """
    initial_grid_size: object = 100
    grid_bounds: object = (-3.0, 3.0)
    refinement_threshold: float = 0.1
    max_refinement_level: int = 5
    refinement_ratio: int = 3
    adapt_frequency: int = 10
    min_points_per_region: int = 5
    max_grid_points: int = 10000
    criterion: str = "abs_or_sign"

    def to_dict(self) -> dict:
        out = asdict(self)
        for k in ("initial_grid_size", "grid_bounds"):
            v = out[k]
            out[k] = [list(p) if isinstance(p, (tuple, list)) else p for p in v] \
                if isinstance(v, (tuple, list)) else v
        return out


def _per_axis_ints(value, d):
    if not isinstance(value, (tuple, list, np.ndarray)):
        vals = [value] * d                                  # a scalar: checked below
    elif len(value) == d:
        vals = list(value)
    else:
        raise ValueError(f"initial_grid_size must be an int or {d} ints (one per axis), "
                         f"got {value!r}")
    return np.array([check_count(v, "initial_grid_size", minimum=1) for v in vals], np.int64)


def _per_axis_bounds(value, d):
    try:
        arr = np.array(value, dtype=object)
    except Exception:  # ragged nested sequences
        arr = None
    if arr is not None and arr.shape == (2,):
        pairs = [tuple(value)] * d
    elif arr is not None and arr.shape == (d, 2):
        pairs = [tuple(p) for p in value]
    else:
        raise ValueError(f"grid_bounds must be one (lo, hi) pair or {d} pairs (one per axis), "
                         f"got {value!r}")
    lo = np.array([check_real(p[0], f"grid_bounds[{a}][0]") for a, p in enumerate(pairs)])
    hi = np.array([check_real(p[1], f"grid_bounds[{a}][1]") for a, p in enumerate(pairs)])
    for a in range(d):
        if not lo[a] < hi[a] or not np.isfinite(hi[a] - lo[a]):
            raise ValueError(f"grid_bounds on axis {a} must satisfy lo < hi with a finite "
                             f"width, got ({lo[a]}, {hi[a]})")
    return lo, hi


class _Lattice:
    """Validated geometry of a configuration in ``d`` dimensions (see module docstring)."""

    def __init__(self, config: ActiveSamplerConfig, d: int):
        if not isinstance(config, ActiveSamplerConfig):
            raise TypeError(f"config must be an ActiveSamplerConfig or None, got "
                            f"{type(config).__name__}")
        self.d = d
        self.n0 = _per_axis_ints(config.initial_grid_size, d)
        self.lo, self.hi = _per_axis_bounds(config.grid_bounds, d)
        self.width = self.hi - self.lo
        self.threshold = check_real(config.refinement_threshold, "refinement_threshold",
                                    low=0.0, low_open=True)
        self.L = check_count(config.max_refinement_level, "max_refinement_level")
        check_count(config.refinement_ratio, "refinement_ratio", minimum=1)
        check_count(config.adapt_frequency, "adapt_frequency", minimum=1)
        check_count(config.min_points_per_region, "min_points_per_region")
        self.max_points = check_count(config.max_grid_points, "max_grid_points", minimum=1)
        if self.max_points >= 2 ** 31:
            raise ValueError(f"max_grid_points must be < 2**31, got {self.max_points}")
        self.criterion = check_choice(config.criterion, "criterion", CRITERIA)
        self.crit_code = CRITERIA.index(self.criterion)
        self.small_cut = small_q_cutoffs(self.threshold, self.L, self.crit_code)
        bits = [int(n).bit_length() + self.L + 1 for n in self.n0]
        if max(bits) > 52 or sum(int(m + 1).bit_length() for m in self.n0 << (self.L + 1)) > 62:
            raise ValueError(
                f"max_refinement_level={self.L} with initial_grid_size={self.n0.tolist()} in "
                f"{d} dimensions needs a lattice of {sum(bits)} bits; at most 62 bits "
                f"(52 per axis) are supported: lower max_refinement_level")
        self.M = self.n0 << (self.L + 1)
        self.strides = np.ones(d, np.int64)
        for a in range(d - 2, -1, -1):
            self.strides[a] = self.strides[a + 1] * (self.M[a + 1] + 1)
        n_initial = int(np.prod(self.n0 + 1) + np.prod(self.n0))
        if n_initial > self.max_points:
            raise ValueError(f"the initial grid (initial_grid_size={self.n0.tolist()}) has "
                             f"{n_initial} points (corners and centres), more than "
                             f"max_grid_points={self.max_points}")
        self.tables = _split_tables(d)

    def cell_units(self, level):
        """Width of a level-``level`` cell in lattice steps."""
        return np.int64(1) << (self.L + 1 - np.asarray(level, np.int64))

    def key(self, k: np.ndarray) -> np.ndarray:
        """Packed key of lattice indices k (..., d)."""
        return (k * self.strides).sum(axis=-1)

    def decode(self, keys: np.ndarray) -> np.ndarray:
        """Lattice indices (n, d) of packed keys (n,)."""
        return (keys[:, None] // self.strides) % (self.M + 1)

    def coords(self, k: np.ndarray) -> np.ndarray:
        """Coordinates of lattice indices k (..., d): lo + width * (k / M), hi at k = M."""
        x = self.lo + self.width * (k / self.M)
        return np.where(k == self.M, self.hi, x)


def small_q_cutoffs(threshold: float, L: int, crit_code: int) -> np.ndarray:
    """Per level l = 0..L, the |Q| below which a cell of level l counts as "small": the
    threshold itself for ``abs``; ``threshold * 4**-l`` for ``abs_or_sign``, so that its
    small-|Q| part follows zeros without a sign change (|Q| ~ g (x - x0)**2 near a double
    root shrinks as fast) instead of refining the whole region |Q| < threshold to the
    deepest level (docs/refinement.md). Exact powers of two: every engine reads this table."""
    levels = np.arange(L + 1)
    scale = 2 * levels if crit_code == CRIT_ABS_OR_SIGN else 0 * levels
    return np.ldexp(np.float64(threshold), -scale)


def _split_tables(d: int) -> dict:
    """Index tables of one split. The 3**d points of a parent's half-step lattice are
    numbered row-major (``offsets``, entries 0/1/2 half-widths); corner ``j`` of a cell
    has offset bit ``(j >> a) & 1`` on axis ``a``."""
    offsets = np.array(list(itertools.product(range(3), repeat=d)), np.int64)
    bits = np.array([[(c >> a) & 1 for a in range(d)] for c in range(2 ** d)], np.int64)
    index = {tuple(p): i for i, p in enumerate(offsets.tolist())}
    corner_pos = np.array([index[tuple((2 * bits[j]).tolist())] for j in range(2 ** d)], np.int64)
    centre_pos = index[(1,) * d]
    face_pos = np.array([i for i in range(len(offsets))
                         if i not in set(corner_pos.tolist()) and i != centre_pos], np.int64)
    child_corner_pos = np.array([[index[tuple(np.add(bc, bj).tolist())] for bj in bits.tolist()]
                                 for bc in bits.tolist()], np.int64)
    return {"offsets": offsets, "bits": bits, "corner_pos": corner_pos,
            "centre_pos": centre_pos, "face_pos": face_pos, "child_corner_pos": child_corner_pos}


# ------------------------------------------------------------------------ Q specification
class _QSpec:
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


class _IntervalTables:
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


def _empty_interval_args(d: int):
    """Placeholder tables for the non-interval criteria (kernels need typed arrays)."""
    z1 = np.zeros(1, np.int64)
    z2 = np.zeros((1, d), np.int64)
    return (z2, np.zeros(1), np.zeros(d, np.int64), z1, z1, np.zeros(1), z2, z2, 0.0)


# ------------------------------------------------------------------------ the tree
class _Tree:
    """Nodes (cells) and points in growable arrays; rows ``[0, n)`` / ``[0, n_points)`` are
    valid (rows beyond are uninitialised).

    Node arrays: ``lo`` lattice index of the lower corner (N, d) int64, ``level`` (N,)
    int8, ``corner`` point ids of the 2**d corners (N, 2**d) and ``centre`` point id (N,)
    (int32: ``max_grid_points`` < 2**31 bounds the ids),
    ``alive`` (a leaf), ``flag`` (criterion holds), ``exhausted`` (interval enclosure
    dominated by rounding: flagged but not split). Point arrays: ``key`` packed lattice
    key, ``value`` Q (NaN while pending).
    """

    def __init__(self, d: int, capacity: int = 16):
        self.d = d
        self.n = 0
        self.n_points = 0
        self.n_leaves = 0
        self._alloc_nodes(capacity)
        self._alloc_points(capacity)

    def _alloc_nodes(self, cap):
        d, old = self.d, getattr(self, "lo", None)
        new = {"lo": np.empty((cap, d), np.int64), "level": np.empty(cap, np.int8),
               "corner": np.empty((cap, 2 ** d), ID), "centre": np.empty(cap, ID),
               "alive": np.empty(cap, np.bool_), "flag": np.empty(cap, np.bool_),
               "exhausted": np.empty(cap, np.bool_)}
        if old is not None:
            for name, arr in new.items():
                arr[:self.n] = getattr(self, name)[:self.n]
        self.__dict__.update(new)

    def _alloc_points(self, cap):
        key = np.empty(cap, np.int64)
        value = np.empty(cap)
        if hasattr(self, "key"):
            key[:self.n_points] = self.key[:self.n_points]
            value[:self.n_points] = self.value[:self.n_points]
        self.key, self.value = key, value

    def reserve(self, extra_nodes: int, extra_points: int) -> None:
        if self.n + extra_nodes > self.level.size:
            self._alloc_nodes(max(2 * self.level.size, self.n + extra_nodes))
        if self.n_points + extra_points > self.key.size:
            self._alloc_points(max(2 * self.key.size, self.n_points + extra_points))

    def leaf_ids(self) -> np.ndarray:
        return np.flatnonzero(self.alive[:self.n])


def initial_capacity(lat: _Lattice) -> int:
    """Rows to reserve up front: every node owns its centre point, so nodes <= points <=
    max_grid_points; np.empty only maps the memory, pages are touched when used, and
    a tree under 2**22 points never copies its arrays to grow."""
    return min(lat.max_points, 1 << 22)


def _initial_tree(lat: _Lattice) -> _Tree:
    """Level-0 cells (row-major), their (n0 + 1)**d vertices and n0**d centres."""
    d, tab = lat.d, lat.tables
    tree = _Tree(d, initial_capacity(lat))
    cells = np.array(list(itertools.product(*(range(int(n)) for n in lat.n0))),
                     np.int64).reshape(-1, d)
    verts = np.array(list(itertools.product(*(range(int(n) + 1) for n in lat.n0))),
                     np.int64).reshape(-1, d)
    unit = lat.cell_units(0)
    vstrides = np.array([int(np.prod(lat.n0[a + 1:] + 1)) for a in range(d)], np.int64)
    m, nv = cells.shape[0], verts.shape[0]
    tree.reserve(m, nv + m)
    tree.n, tree.n_points, tree.n_leaves = m, nv + m, m
    tree.key[:nv] = lat.key(verts * unit)
    tree.key[nv:nv + m] = lat.key(cells * unit + unit // 2)
    tree.lo[:m] = cells * unit
    tree.value[:nv + m] = np.nan
    tree.level[:m] = 0
    tree.corner[:m] = ((cells[:, None, :] + tab["bits"][None]) * vstrides).sum(axis=-1)
    tree.centre[:m] = nv + np.arange(m)
    tree.alive[:m], tree.flag[:m], tree.exhausted[:m] = True, False, False
    return tree


# ------------------------------------------------------------------------ shared host steps
def face_keys(lat: _Lattice, lo: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Keys of the non-corner, non-centre half-step points of cells (S, F)."""
    half = lat.cell_units(level) // 2
    tab = lat.tables
    pos = lo[:, None, :] + tab["offsets"][tab["face_pos"]][None] * half[:, None, None]
    return lat.key(pos)


def cell_values(tree: _Tree, nodes: np.ndarray) -> np.ndarray:
    """Q at the corners and the centre of cells, (m, 2**d + 1), centre last."""
    ids = np.concatenate([tree.corner[nodes], tree.centre[nodes][:, None]], axis=1)
    return tree.value[ids]


def sign_change(vals: np.ndarray) -> np.ndarray:
    """Per row of values (m, k): Q takes both signs, or is exactly 0."""
    return ((vals > 0).any(axis=1) & (vals < 0).any(axis=1)) | (vals == 0).any(axis=1)


def urgency_order(lat: _Lattice, tree: _Tree, cand: np.ndarray) -> np.ndarray:
    """Candidates sorted most urgent first: sign change, then smaller min |Q|, then lower
    level, then position (packed key of the lower corner)."""
    vals = cell_values(tree, cand)
    sign = sign_change(vals)
    min_abs = np.abs(vals).min(axis=1)
    return cand[np.lexsort((lat.key(tree.lo[cand]), tree.level[cand], min_abs, ~sign))]


def select_under_cap(lat: _Lattice, tree: _Tree, cand: np.ndarray, exists) -> tuple:
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


# ------------------------------------------------------------------------ host engines
class _HostEngine:
    """One round on host-resident arrays (numpy and cpu engines share this driver):
    flagged leaves -> (cap) -> children and new points -> values -> flags."""

    def __init__(self, lat: _Lattice, tree: _Tree, qspec: _QSpec):
        self.lat, self.tree, self.qspec = lat, tree, qspec
        self.interval = _IntervalTables(qspec.poly) if lat.crit_code == CRIT_INTERVAL else None
        self.rebuild_index()

    def host_tree(self) -> _Tree:
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

    def round(self, qspec: _QSpec, select) -> dict:
        t = self.tree
        cand = self.candidates()
        sel, capped = select(cand) if cand.size else (cand, False)
        c0, n_children, p0, n_new = (t.n, 0, t.n_points, 0)
        if sel.size:
            c0, n_children, p0, n_new = self.split(sel)
            try:
                if qspec.poly is not None:
                    self.evaluate(p0, p0 + n_new)
                elif qspec.func is not None:
                    self.set_values(p0, call_q(qspec.func, self.point_coords(p0, p0 + n_new)))
                else:                                   # pending until refine_grid
                    self.set_values(p0, np.full(n_new, np.nan))
            except BaseException:
                self.rollback(sel, c0, p0)
                raise
            self.commit(sel)
            self.update_flags(c0, c0 + n_children)
            t.n_leaves += n_children - sel.size
        return {"n_candidates": int(cand.size), "n_refined": int(sel.size),
                "n_deferred": int(cand.size - sel.size), "capped": bool(capped),
                "n_new_points": int(n_new),
                "n_evaluated": int(n_new) if qspec.kind != "none" else 0,
                "n_points": int(t.n_points), "n_leaves": int(t.n_leaves)}


class _NumpyEngine(_HostEngine):
    """The oracle: readable level-by-level array code."""

    name = "numpy"

    # -- point index: sorted keys and their ids
    def rebuild_index(self) -> None:
        keys = self.tree.key[:self.tree.n_points]
        order = np.argsort(keys, kind="stable")
        self.sorted_keys, self.sorted_ids = keys[order], order

    def lookup(self, keys: np.ndarray):
        """(found bool, id int64) of keys in the point index (id -1 when not found)."""
        pos = np.minimum(np.searchsorted(self.sorted_keys, keys), self.sorted_keys.size - 1)
        found = self.sorted_keys[pos] == keys
        return found, np.where(found, self.sorted_ids[pos], -1)

    def exists(self, keys):
        return self.lookup(keys)[0]

    def candidates(self) -> np.ndarray:
        """Leaves whose criterion holds, not rounding-dominated, below the deepest level."""
        t = self.tree
        n = t.n
        return np.flatnonzero(t.alive[:n] & t.flag[:n] & ~t.exhausted[:n]
                              & (t.level[:n] < self.lat.L))

    def split(self, sel: np.ndarray) -> tuple:
        """Split cells ``sel``; children and new points (values NaN) are appended.
        Returns (first child, number of children, first new point, number of new points)."""
        lat, t, tab = self.lat, self.tree, self.lat.tables
        d, nc = lat.d, 2 ** lat.d
        S = sel.size
        lo, level = t.lo[sel], t.level[sel]
        half = lat.cell_units(level) // 2                                # child width (S,)
        # ids of the 3**d half-step points of every parent
        ids = np.empty((S, 3 ** d), np.int64)
        ids[:, tab["corner_pos"]] = t.corner[sel]
        ids[:, tab["centre_pos"]] = t.centre[sel]
        fkeys = face_keys(lat, lo, level)
        found, fid = self.lookup(fkeys)
        new_face_keys = np.unique(fkeys[~found])
        p0 = t.n_points
        fid[~found] = p0 + np.searchsorted(new_face_keys, fkeys[~found])
        ids[:, tab["face_pos"]] = fid
        # children: lower corners, corner ids, fresh centres
        child_lo = lo[:, None, :] + tab["bits"][None] * half[:, None, None]          # (S, nc, d)
        child_corner = ids[:, tab["child_corner_pos"]]                              # (S, nc, nc)
        centre_keys = lat.key(child_lo + (half // 2)[:, None, None])                 # (S, nc)
        n_new = new_face_keys.size + S * nc
        t.reserve(S * nc, n_new)
        c0 = t.n
        t.lo[c0:c0 + S * nc] = child_lo.reshape(-1, d)
        t.level[c0:c0 + S * nc] = np.repeat(level + 1, nc)
        t.corner[c0:c0 + S * nc] = child_corner.reshape(-1, nc)
        t.centre[c0:c0 + S * nc] = p0 + new_face_keys.size + np.arange(S * nc)
        t.alive[c0:c0 + S * nc] = True
        t.flag[c0:c0 + S * nc] = False
        t.exhausted[c0:c0 + S * nc] = False
        t.key[p0:p0 + n_new] = np.concatenate([new_face_keys, centre_keys.ravel()])
        t.n += S * nc
        t.n_points += n_new
        return c0, S * nc, p0, n_new

    def commit(self, sel: np.ndarray) -> None:
        self.tree.alive[sel] = False
        self.rebuild_index()

    def rollback(self, sel, c0, p0) -> None:
        self.tree.n, self.tree.n_points = c0, p0

    def evaluate(self, p0: int, p1: int) -> None:
        x = self.point_coords(p0, p1)
        poly = self.qspec.poly
        with np.errstate(over="ignore", invalid="ignore"):   # inf / NaN, as the kernels
            if poly.dim == 1:
                self.tree.value[p0:p1] = horner_numpy(poly.coefficients, x[:, 0])
            else:
                self.tree.value[p0:p1] = terms_numpy(*poly.kernel_arrays(), x)

    def update_flags(self, c0: int, c1: int) -> None:
        """flag / exhausted of nodes [c0, c1) from their values (or the enclosure)."""
        lat, t = self.lat, self.tree
        nodes = np.arange(c0, c1)
        vals = cell_values(t, nodes)
        pending = np.isnan(vals).any(axis=1)
        sign = sign_change(vals)
        small = np.abs(vals).min(axis=1) < lat.small_cut[t.level[nodes]]
        exhausted = np.zeros(nodes.size, np.bool_)
        if lat.crit_code == CRIT_ABS:
            flag = small
        elif lat.crit_code == CRIT_SIGN:
            flag = sign
        elif lat.crit_code == CRIT_ABS_OR_SIGN:
            flag = sign | small
        else:   # certified: values play no part (an overflowed value is not "pending")
            pending[:] = False
            flag, exhausted = self._enclosure(nodes)
        t.flag[c0:c1] = flag & ~pending
        t.exhausted[c0:c1] = exhausted & ~pending

    def _enclosure(self, nodes):
        """Certified Taylor-form test (see _IntervalTables): (may hold a zero, split no more)."""
        lo_k = self.tree.lo[nodes]
        return interval_flags(*enclosure(self.lat, self.interval, lo_k,
                                         self.tree.level[nodes]))


def enclosure(lat: _Lattice, it: _IntervalTables, lo_k: np.ndarray, level: np.ndarray) -> tuple:
    """(|A_0|, R, E, floor) of the Taylor form of Q over cells (lower corners ``lo_k``
    (m, d) on the lattice, levels (m,)), each (m,); see _IntervalTables. ``floor`` is the
    larger of B and of the largest Taylor product |w mult c**cexp|, both with every |c_a|
    and |c_a| + r_a replaced by min |x_a| over the cell: rounding is monotone, so when the
    floor overflows the enclosure of every sub-cell overflows too. Overflow gives inf /
    NaN entries (no floating-point warnings)."""
    xlo = lat.coords(lo_k)
    xhi = lat.coords(lo_k + lat.cell_units(level)[:, None])
    c = 0.5 * (xlo + xhi)
    r = np.maximum(xhi - c, c - xlo) * RADIUS_INFLATE
    s = np.abs(c) + r
    m = np.where((xlo <= 0) & (0 <= xhi), 0.0, np.minimum(np.abs(xlo), np.abs(xhi)))
    n = lo_k.shape[0]

    def powers(base):
        out = []
        for a in range(lat.d):
            p = np.empty((int(it.emax[a]) + 1, n))
            p[0] = 1.0
            for j in range(1, p.shape[0]):
                p[j] = p[j - 1] * base[:, a]
            out.append(p)
        return out

    def bound(pw):
        total = np.zeros(n)
        for t in range(it.w.size):
            prod = np.full(n, abs(it.w[t]))
            for a in range(lat.d):
                prod = prod * pw[a][it.exps[t, a]]
            total = total + prod
        return total

    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        cpow, rpow = powers(c), powers(r)
        taylor = np.zeros((it.size, n))
        for z in range(it.term.size):
            prod = np.full(n, it.w[it.term[z]] * it.mult[z])
            for a in range(lat.d):
                prod = prod * cpow[a][it.cexp[z, a]]
            taylor[it.flat[z]] = taylor[it.flat[z]] + prod
        R = np.zeros(n)
        for f in range(1, it.size):
            prod = np.abs(taylor[f])
            for a in range(lat.d):
                prod = prod * rpow[a][it.bexp[f, a]]
            R = R + prod
        E = it.err_factor * bound(powers(s))
        mpow = powers(m)
        floor = bound(mpow)
        for z in range(it.term.size):
            prod = np.full(n, abs(it.w[it.term[z]] * it.mult[z]))
            for a in range(lat.d):
                prod = prod * mpow[a][it.cexp[z, a]]
            floor = np.maximum(floor, prod)
    return np.abs(taylor[0]), R, E, floor


def interval_flags(a0, R, E, floor) -> tuple:
    """(flag, exhausted) of the certified criterion from the enclosure terms. Flag when
    ``|A_0| <= R + E`` or when any term is inf/NaN (overflow: the enclosure proves
    nothing, so the cell may hold a zero). Exhausted (flagged, not split further) when
    rounding dominates (``R <= E``), or when the enclosure overflowed and so does its
    ``floor``: no sub-cell's enclosure can be finite."""
    finite = np.isfinite(a0) & np.isfinite(R) & np.isfinite(E)
    contains = ~finite | (a0 <= R + E)
    exhausted = np.where(finite, contains & (R <= E), ~np.isfinite(floor))
    return contains, exhausted


def _make_engine(backend: str, lat, tree, qspec):
    if backend == "numpy":
        return _NumpyEngine(lat, tree, qspec)
    if backend == "cpu":
        from .kernels.cpu_refinement import CpuEngine
        return CpuEngine(lat, tree, qspec)
    from .kernels.gpu_refinement import CudaEngine
    return CudaEngine(lat, tree, qspec)


# ------------------------------------------------------------------------ the sampler
class ActiveSampler:
    """Adaptive 2**d-tree over a box, refined where Q has (or may have) a zero.

    q: a :class:`Polynomial` / :class:`Rational` (its denominator is refined; evaluated
    inside the kernels), a vectorised callable (n, d) -> (n,) (called once per round on
    the new points), or None (values come through :meth:`refine_grid`).
    The initial grid is evaluated at construction when q is given. A q callable must not
    call refine(), refine_grid() or load_state_dict() of the sampler that calls it: that
    raises RuntimeError and changes nothing.
    """

    #: The method running on this sampler, or None (guards against re-entry from q).
    _running = None

    def __init__(self, config=None, *, q=None, input_dim=1, backend="auto"):
        config = ActiveSamplerConfig() if config is None else config
        d = check_count(input_dim, "input_dim", minimum=1)
        if d > 6:
            raise ValueError(f"input_dim must be in 1..6, got {d}")
        lat = _Lattice(config, d)
        qspec = _QSpec(q, d)
        if lat.crit_code == CRIT_INTERVAL and qspec.poly is None:
            raise ValueError("criterion='interval' needs q to be a zp_ref.Polynomial or "
                             f"zp_ref.Rational, got {qspec.kind}")
        self._backend_request = backend
        self.backend = resolve_backend(backend, lat.max_points)
        self.config, self.input_dim, self._lat, self._qspec = config, d, lat, qspec
        self.refinement_history = []
        self.n_evaluations = 0
        tree = _initial_tree(lat)
        if qspec.func is not None:
            values = call_q(qspec.func, lat.coords(lat.decode(tree.key[:tree.n_points])))
        self._engine = _make_engine(self.backend, lat, tree, qspec)
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

    # ------------------------------------------------------------------ refinement
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
        """Run rounds until no leaf is flagged and splittable (or ``max_rounds``); returns
        the sampler. With ``criterion="interval"``, warns once
        (:class:`EnclosureOverflowWarning`) when it stops with flagged leaves whose
        enclosure overflowed."""
        if max_rounds is not None:
            max_rounds = check_count(max_rounds, "max_rounds")
        if self._qspec.kind == "none":
            raise ValueError("refine() needs q (a Polynomial, Rational or callable); this "
                             "sampler has none: pass q= or use refine_grid(q_values)")
        with self._exclusive("refine()"):
            done = 0
            while max_rounds is None or done < max_rounds:
                info = self._round()
                done += 1
                if info["n_refined"] == 0:
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

    def refine_grid(self, q_values) -> "ActiveSampler":
        """Anchor-compatible round: ``q_values`` (N,) are Q at :meth:`get_current_grid`
        (the same order); they replace the stored values, every leaf is re-tested and
        flagged leaves are split once. New points are evaluated with q when the sampler
        has one, otherwise they stay pending until the next call."""
        with self._exclusive("refine_grid()"):
            return self._refine_grid(q_values)

    def _refine_grid(self, q_values) -> "ActiveSampler":
        order = self._engine.sorted_point_ids()
        vals = as_float_array(q_values, "q_values", finite=True)
        if vals.size != order.size:
            raise ValueError(f"q_values must have one value per grid point: expected "
                             f"{order.size}, got {vals.size}")
        tree = self._engine.host_tree()
        previous = tree.value[order].copy()
        self._engine.set_values_at(order, vals)
        self._engine.update_flags(0, self._engine.tree_size())
        try:
            self._round()
        except BaseException:          # a callable q failed: restore the old values
            self._engine.set_values_at(order, previous)
            self._engine.update_flags(0, self._engine.tree_size())
            raise
        self.n_evaluations += vals.size
        return self

    def _round(self) -> dict:
        eng, lat = self._engine, self._lat
        info = eng.round(self._qspec, lambda cand: select_under_cap(
            lat, eng.host_tree(), cand, eng.exists))
        self.n_evaluations += info.pop("n_evaluated")
        info = {"round": len(self.refinement_history), **info,
                "n_evaluations": int(self.n_evaluations)}
        self.refinement_history.append(info)
        return info

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
        """(centres, half_widths), both (m, d): the flagged leaves (criterion holds, not
        split further because of max_refinement_level, the cap or rounding); in 1-D runs
        of adjacent flagged leaves are merged into one interval."""
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

        Leaf masses: "volume" (uniform over the box), "leaf" (every leaf equal), or
        "importance" (volume times ``importance_weights(q_center)`` with its defaults).
        Returns x (n, d), and the leaf index per point (into :meth:`leaves`) with
        ``return_leaf=True``.
        """
        from .rng import STREAMS, uniforms
        from .sampling import sample_indices
        from .weighting import importance_weights

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
        engine = _make_engine(backend, lat, tree, qspec)
        engine.update_flags(0, tree.n)
        self.config, self.input_dim, self._lat, self._qspec = config, d, lat, qspec
        self.backend, self._engine = backend, engine
        self.n_evaluations, self.refinement_history = n_eval, history

    @classmethod
    def from_state_dict(cls, state, *, q=None, backend=None) -> "ActiveSampler":
        """Build a sampler from a :meth:`state_dict`; pass ``q`` when the state was made
        with a callable (otherwise the sampler loads without one, refine_grid only)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        obj = cls.__new__(cls)
        obj._backend_request = state.get("backend", "auto") if backend is None else backend
        obj._qspec = _QSpec(q, int(state.get("input_dim", 1))) if q is not None else None
        obj.load_state_dict(state)
        return obj


def _mean_abs(values: np.ndarray) -> float:
    """Mean of |values| (0 for none; inf when Q overflowed somewhere, without a warning)."""
    with np.errstate(over="ignore"):
        return float(np.abs(values).mean()) if values.size else 0.0


def _parse_state(state, current_qspec):
    """Validate a state dict; returns the pieces of a sampler without touching one."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
    required = ("version", "config", "input_dim", "q", "point_keys", "point_values",
                "leaf_lo", "leaf_level", "n_evaluations", "history")
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(f"state is missing {missing}")
    if state["version"] != STATE_VERSION:
        raise ValueError(f"state version must be {STATE_VERSION}, got {state['version']!r}")
    cfg = state["config"]
    names = {f.name for f in fields(ActiveSamplerConfig)}
    if not isinstance(cfg, dict) or set(cfg) != names:
        raise ValueError(f"state['config'] must have exactly the fields {sorted(names)}")
    config = ActiveSamplerConfig(**{k: (tuple(tuple(p) if isinstance(p, list) else p for p in v)
                                        if isinstance(v, list) else v) for k, v in cfg.items()})
    d = check_count(state["input_dim"], "input_dim", minimum=1)
    if d > 6:
        raise ValueError(f"input_dim must be in 1..6, got {d}")
    lat = _Lattice(config, d)
    qstate = state["q"]
    kind = qstate.get("kind") if isinstance(qstate, dict) else None
    if kind in ("polynomial", "rational"):
        qpoly = Polynomial.from_terms(qstate["q_exponents"], qstate["q_coefficients"])
        q = qpoly if kind == "polynomial" else Rational(
            Polynomial.from_terms(qstate["p_exponents"], qstate["p_coefficients"]), qpoly)
        qspec = _QSpec(q, d)
    elif kind in ("callable", "none"):
        qspec = current_qspec if (current_qspec is not None and current_qspec.func is not None) \
            else _QSpec(None, d)
    else:
        raise ValueError(f"state['q']['kind'] must be polynomial, rational, callable or none, "
                         f"got {kind!r}")
    if lat.crit_code == CRIT_INTERVAL and qspec.poly is None:
        raise ValueError("criterion='interval' in the state needs a polynomial q")
    keys = np.asarray(state["point_keys"])
    vals = np.asarray(state["point_values"])
    if keys.dtype.kind not in "iu" or keys.ndim != 1 or vals.shape != keys.shape \
            or vals.dtype.kind != "f":
        raise ValueError("state point_keys must be integer (N,) and point_values float (N,)")
    keys = keys.astype(np.int64)
    total = int(np.prod(lat.M + 1))
    if keys.size == 0 or (np.diff(keys) <= 0).any() or keys[0] < 0 or keys[-1] >= total:
        raise ValueError("state point_keys must be strictly increasing lattice keys")
    lo = np.asarray(state["leaf_lo"])
    level = np.asarray(state["leaf_level"])
    if lo.dtype.kind not in "iu" or level.dtype.kind not in "iu" or lo.ndim != 2 \
            or lo.shape[1] != d or level.shape != (lo.shape[0],) or lo.shape[0] == 0:
        raise ValueError(f"state leaf_lo must be integer (m, {d}) and leaf_level integer (m,)")
    lo, level = lo.astype(np.int64), level.astype(np.int64)
    _check_partition(lat, lo, level)
    tree = _Tree(d, max(initial_capacity(lat), keys.size))
    m = lo.shape[0]
    tree.n, tree.n_points, tree.n_leaves = m, keys.size, m
    tree.key[:keys.size], tree.value[:keys.size] = keys, vals
    tree.lo[:m], tree.level[:m], tree.alive[:m] = lo, level, True
    tree.flag[:m], tree.exhausted[:m] = False, False
    unit = lat.cell_units(level)
    tab = lat.tables
    corner_keys = lat.key(lo[:, None, :] + tab["bits"][None] * unit[:, None, None])
    centre_keys = lat.key(lo + (unit // 2)[:, None])
    for name, want in (("corner", corner_keys), ("centre", centre_keys)):
        pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
        if (keys[pos] != want).any():
            raise ValueError(f"state point_keys lack a {name} of {int((keys[pos] != want).sum())} "
                             f"leaf/leaves")
        getattr(tree, name)[:m] = pos
    n_eval = check_count(state["n_evaluations"], "n_evaluations")
    history = state["history"]
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ValueError("state history must be a list of dicts")
    return config, d, qspec, lat, tree, n_eval, [dict(h) for h in history]


def _check_partition(lat: _Lattice, lo: np.ndarray, level: np.ndarray) -> None:
    """Leaves must be aligned dyadic cells inside the box that tile it exactly."""
    if (level < 0).any() or (level > lat.L).any():
        raise ValueError(f"state leaf_level must be in [0, {lat.L}]")
    unit = lat.cell_units(level)[:, None]
    if (lo < 0).any() or (lo % unit != 0).any() or (lo + unit > lat.M).any():
        raise ValueError("state leaf_lo must be aligned cells inside the box")
    # volumes in units of a level-L cell must add up to the box
    vol = np.ldexp(1.0, lat.d * (lat.L - level))
    if vol.sum() != float(np.prod(lat.n0)) * 2.0 ** (lat.d * lat.L):
        raise ValueError("state leaves do not cover the box exactly (volumes do not add up)")
    # no leaf may lie inside another: check every ancestor of every leaf
    keys_by_level = {int(l): np.sort(lat.key(lo[level == l])) for l in np.unique(level)}
    for l, ks in keys_by_level.items():
        if l == 0:
            continue
        for up in range(l):
            if up not in keys_by_level:
                continue
            w = lat.cell_units(up)
            anc = lat.key((lo[level == l] // w) * w)
            pos = np.minimum(np.searchsorted(keys_by_level[up], anc), keys_by_level[up].size - 1)
            if (keys_by_level[up][pos] == anc).any():
                raise ValueError("state leaves overlap (a leaf lies inside another leaf)")
