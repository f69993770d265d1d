"""The refinement tree as arrays: the lattice of a configuration, the split tables,
the growable node/point arrays, the initial tree, and the state's tree part (validated,
with the partition check).

Geometry. The box has ``n0[a]`` initial cells on axis ``a``; a cell of level ``l`` is
split in half along every axis into ``2**d`` children of level ``l + 1``. All corners
live on one integer lattice: ``M[a] = n0[a] * 2**(L + 1)`` steps per axis
(``L = max_refinement_level``; the extra factor 2 holds the centres of level-L cells),
lattice index ``k`` lies at ``lo + (hi - lo) * (k / M)`` (``hi`` itself at ``k = M``), and
a point's key is its row-major packed index ``sum_a k[a] * stride[a]``. A cell is
evaluated at its ``2**d`` corners and its centre; a point shared by neighbouring cells is
evaluated once.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..kernels.common import CRIT_ABS_OR_SIGN
from .config import CRITERIA, ActiveSamplerConfig, per_axis_bounds, per_axis_ints

#: dtype of point ids in the tree (max_grid_points < 2**31).
ID = np.int32


class Lattice:
    """Geometry of a (validated) configuration in ``d`` dimensions (see module docstring);
    checks the per-axis lengths against ``d`` and the lattice and initial grid sizes."""

    def __init__(self, config: ActiveSamplerConfig, d: int):
        if not isinstance(config, ActiveSamplerConfig):
            raise TypeError(f"config must be an ActiveSamplerConfig or None, got "
                            f"{type(config).__name__}")
        self.d = d
        self.n0 = per_axis_ints(config.initial_grid_size, d)
        self.lo, self.hi = per_axis_bounds(config.grid_bounds, d)
        self.width = self.hi - self.lo
        self.threshold = float(config.refinement_threshold)     # validated by the config
        self.L = int(config.max_refinement_level)
        self.max_points = int(config.max_grid_points)
        self.criterion = config.criterion
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
        self.tables = split_tables(d)

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


def split_tables(d: int) -> dict:
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


# ------------------------------------------------------------------------ the tree
class Tree:
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


def initial_capacity(lat: Lattice) -> int:
    """Rows to reserve up front: every node owns its centre point, so nodes <= points <=
    max_grid_points; np.empty only maps the memory (``check_cap_fits`` keeps it within
    the physical memory), pages are touched when used, and the arrays never grow."""
    return lat.max_points


def initial_tree(lat: Lattice) -> Tree:
    """Level-0 cells (row-major), their (n0 + 1)**d vertices and n0**d centres."""
    d, tab = lat.d, lat.tables
    tree = Tree(d, initial_capacity(lat))
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
def face_keys(lat: Lattice, lo: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Keys of the non-corner, non-centre half-step points of cells (S, F)."""
    half = lat.cell_units(level) // 2
    tab = lat.tables
    pos = lo[:, None, :] + tab["offsets"][tab["face_pos"]][None] * half[:, None, None]
    return lat.key(pos)


def cell_values(tree: Tree, nodes: np.ndarray) -> np.ndarray:
    """Q at the corners and the centre of cells, (m, 2**d + 1), centre last."""
    ids = np.concatenate([tree.corner[nodes], tree.centre[nodes][:, None]], axis=1)
    return tree.value[ids]


def sign_change(vals: np.ndarray) -> np.ndarray:
    """Per row of values (m, k): Q takes both signs, or is exactly 0."""
    return ((vals > 0).any(axis=1) & (vals < 0).any(axis=1)) | (vals == 0).any(axis=1)


def check_partition(lat: Lattice, lo: np.ndarray, level: np.ndarray) -> None:
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


def tree_from_state(lat: Lattice, state: dict) -> Tree:
    """The tree of a state dict's ``point_keys``/``point_values``/``leaf_lo``/``leaf_level``
    (validated: strictly increasing lattice keys, aligned leaves that tile the box, every
    corner and centre present). Flags are left for the engine to compute."""
    d = lat.d
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
    check_partition(lat, lo, level)
    tree = Tree(d, max(initial_capacity(lat), keys.size))
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
    return tree
