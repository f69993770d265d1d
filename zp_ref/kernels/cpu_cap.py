"""Numba kernels of the cap selection (driven by :mod:`zp_ref.refinement.cpu`).

When splitting every flagged leaf would pass ``max_grid_points``, a round splits the
longest prefix of the urgency order whose new points fit (the NumPy spec is
``zp_ref.refinement.engine.select_under_cap``). ``urgency_order`` sorts the candidates
the walk can reach (a partition, then a sort on one packed key, ties by level and
position; O(candidates) memory); ``fitting_prefix`` walks them in that order and streams
each cell's face keys through the hash tables: a key neither in the tree's table nor
brought by a more urgent cell is charged and remembered in the ``brought`` table, which
never holds more than ``room + F`` keys. So no array over candidates x 3**d face points
is ever built.
"""
import numpy as np
from numba import njit

from .cpu_refinement import insert_or_get, lattice_key, table_has

#: Bit 63 of the primary sort key: set for a cell without a sign change (less urgent).
NO_SIGN_BIT = np.uint64(1) << np.uint64(63)


@njit(cache=True)
def urgency_order(cand, lo, level, corner, centre, value, strides, n_take):
    """The ``n_take`` most urgent of cand (at least; all when n_take >= cand.size), most
    urgent first: sign change (or an exact 0) first, then smaller min |Q| over the
    corners and centre (NaN last), then lower level, then the packed key of the lower
    corner (unique among leaves, so the order is total).

    min |Q| >= 0 (or NaN) orders as its IEEE bits, so (no sign change, min |Q|) packs
    into one uint64 ``primary`` key. The cells up to the n_take-th smallest primary key
    (ties included) are sorted on it; runs of equal keys are then sorted by level and
    key (two stable passes)."""
    n = cand.size
    nc = corner.shape[1]
    min_abs = np.empty(n)
    no_sign = np.empty(n, np.bool_)
    for s in range(n):
        i = cand[s]
        plus, minus, zero, nan = False, False, False, False
        m = np.inf
        for j in range(nc + 1):
            v = value[corner[i, j]] if j < nc else value[centre[i]]
            plus |= v > 0
            minus |= v < 0
            zero |= v == 0
            if v != v:
                nan = True
            elif abs(v) < m:
                m = abs(v)
        min_abs[s] = np.nan if nan else m
        no_sign[s] = not ((plus and minus) or zero)
    primary = min_abs.view(np.uint64)
    for s in range(n):
        primary[s] &= ~NO_SIGN_BIT          # +NaN: above +inf
        if no_sign[s]:
            primary[s] |= NO_SIGN_BIT
    if n_take < n:
        last = np.partition(primary, n_take - 1)[n_take - 1]
        order = np.flatnonzero(primary <= last)
    else:
        order = np.arange(n)
    order = order[np.argsort(primary[order])]
    a = 0
    while a < order.size:
        b = a + 1
        while b < order.size and primary[order[b]] == primary[order[a]]:
            b += 1
        if b - a > 1:
            run = cand[order[a:b]]
            pos = np.empty(b - a, np.int64)
            lev = np.empty(b - a, np.int64)
            for r in range(b - a):
                pos[r] = lattice_key(lo, run[r], strides)
            by_pos = np.argsort(pos)
            for r in range(b - a):
                lev[r] = level[run[by_pos[r]]]
            order[a:b] = order[a:b][by_pos[np.argsort(lev, kind="mergesort")]]
        a = b
    return cand[order]


@njit(cache=True)
def fitting_prefix(order, lo, level, strides, L, offsets, face_pos, nc, split_before, table,
                   shift, brought, bshift, room):
    """Number k of cells of ``order`` (most urgent first) whose new points fit in ``room``:
    each cell costs ``nc`` centres plus its face keys found neither in ``table`` (the
    tree's points; only looked up for levels with ``split_before[level]``, as face points
    only coincide with face points of cells of the same level) nor in ``brought``
    (inserted here by more urgent cells); the walk stops at the first cell that passes
    the room. ``brought`` must be empty, with more than 2 * (room + F) slots. A cell's
    keys are computed, then looked up, then inserted, in three tight loops (lookups in
    flight together)."""
    d = lo.shape[1]
    n_face = face_pos.size
    keys = np.empty(n_face, np.int64)
    fresh = np.ones(n_face, np.bool_)
    step = np.empty((n_face, d), np.int64)
    for f in range(n_face):
        for a in range(d):
            step[f, a] = offsets[face_pos[f], a] * strides[a]
    used = 0
    n_brought = 0
    for s in range(order.size):
        i = order[s]
        half = np.int64(1) << (L - level[i])
        base = lattice_key(lo, i, strides)
        for f in range(n_face):
            key = base
            for a in range(d):
                key += step[f, a] * half
            keys[f] = key
        check = split_before[level[i]]
        if check:
            for f in range(n_face):
                fresh[f] = not table_has(table, keys[f], shift)
        used += nc
        for f in range(n_face):
            if fresh[f] and insert_or_get(brought, keys[f], n_brought, bshift) == n_brought:
                n_brought += 1
                used += 1
        if check:
            fresh[:] = True
        if used > room:
            return s
    return order.size
