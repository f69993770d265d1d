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

from .cpu_refinement import NO_SIGN_BIT, insert_or_get, lattice_key, table_has

#: Bits per digit of the radix sort of the urgency order.
RADIX_BITS = 11


@njit(cache=True)
def stable_sort_by(keys, order):
    """``order`` re-sorted stably by ``keys`` (int64 >= 0, one per entry of order, in
    order's order): an LSD radix sort in RADIX_BITS-bit digits, skipping the digits that
    every key shares. Returns the new order; ``keys`` and ``order`` are overwritten."""
    m = order.size
    k, idx = keys, order
    k2, idx2 = np.empty_like(k), np.empty_like(idx)
    common_or, common_and = np.int64(0), np.int64(-1)
    for j in range(m):
        common_or |= k[j]
        common_and &= k[j]
    varying = common_or ^ common_and
    count = np.empty(1 << RADIX_BITS, np.int64)
    mask = (1 << RADIX_BITS) - 1
    for shift in range(0, 63, RADIX_BITS):
        if (varying >> shift) & mask == 0:
            continue
        count[:] = 0
        for j in range(m):
            count[(k[j] >> shift) & mask] += 1
        total = 0
        for b in range(count.size):
            c = count[b]
            count[b] = total
            total += c
        for j in range(m):
            b = (k[j] >> shift) & mask
            p = count[b]
            count[b] = p + 1
            k2[p] = k[j]
            idx2[p] = idx[j]
        k, k2 = k2, k
        idx, idx2 = idx2, idx
    return idx


@njit(cache=True)
def urgency_order(cand, lo, level, urgency, strides, n_take):
    """The ``n_take`` most urgent of cand (at least; all when n_take >= cand.size), most
    urgent first: sign change (or an exact 0) first, then smaller min |Q| over the
    corners and centre (NaN last), then lower level, then the packed key of the lower
    corner (unique among leaves, so the order is total).

    ``urgency[i]`` is cell i's pair (no sign change, min |Q|) packed into one uint64
    (``cpu_refinement.urgency_key``, stored by ``cell_flags``), so no value is read
    here. The cells up to the n_take-th smallest of these (ties included: a symmetric Q
    gives long runs of equal min |Q|) are radix-sorted, least significant field first:
    key, level, min |Q| (its 63 bits), sign. O(candidates) memory and time, whatever
    the ties."""
    n = cand.size
    primary = urgency[cand]
    if n_take < n:
        last = np.partition(primary, n_take - 1)[n_take - 1]
        pick = np.flatnonzero(primary <= last)
    else:
        pick = np.arange(n)
    m = pick.size
    field = np.empty(m, np.int64)
    order = np.arange(m)
    for r in range(m):
        field[r] = lattice_key(lo, cand[pick[r]], strides)
    order = stable_sort_by(field, order)
    for r in range(m):
        field[r] = level[cand[pick[order[r]]]]
    order = stable_sort_by(field, order)
    for r in range(m):
        field[r] = np.int64(primary[pick[order[r]]] & ~NO_SIGN_BIT)
    order = stable_sort_by(field, order)
    for r in range(m):
        field[r] = 1 if primary[pick[order[r]]] & NO_SIGN_BIT else 0
    order = stable_sort_by(field, order)
    return cand[pick[order]]


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


@njit(cache=True)
def existing_face_keys(cells, lo, level, strides, L, offsets, face_pos, split_before, pkey,
                       n_points, query, qshift, known, kshift):
    """Insert into ``known`` (key -> point id) the face keys of ``cells`` (those of levels
    with ``split_before``) that are points among pkey[:n_points]: the face keys go into
    the empty table ``query``, then one pass over the points looks each point up there.
    O(cells x F + points) time with tables of cells x F keys: far cheaper than a table of
    every point when the walk reaches few cells (a round the cap nearly closes). Both
    tables need more than 2 * cells.size * F slots."""
    d = lo.shape[1]
    n_face = face_pos.size
    n_query = 0
    for s in range(cells.size):
        i = cells[s]
        if not split_before[level[i]]:
            continue
        half = np.int64(1) << (L - level[i])
        base = lattice_key(lo, i, strides)
        for f in range(n_face):
            key = base
            for a in range(d):
                key += offsets[face_pos[f], a] * half * strides[a]
            if insert_or_get(query, key, n_query, qshift) == n_query:
                n_query += 1
    if n_query == 0:
        return
    for p in range(n_points):
        if table_has(query, pkey[p], qshift):
            insert_or_get(known, pkey[p], p, kshift)
