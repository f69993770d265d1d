"""Numba kernels of the sum tree (the NumPy spec is :mod:`zp_ref.sum_tree`): leaf
updates with their ancestors recomputed from their children (sums, or maxima for a max
tree), draws by descent, and the mixture's pi at rows and its rows above a threshold."""
import numpy as np
from numba import njit


@njit(cache=True)
def tree_update_cpu(tree, rows, values, take_max):
    """Set leaves ``rows`` (sorted, distinct) to ``values``; recompute each ancestor
    once per level as ``tree[2k] + tree[2k+1]`` (the same sums as the NumPy spec), or
    their maximum when ``take_max``."""
    size = tree.size // 2
    nodes = rows + size
    m = nodes.size
    for j in range(m):
        tree[nodes[j]] = values[j]
    while m and nodes[0] > 1:
        last, out = -1, 0
        for j in range(m):                   # parents, sorted and distinct
            p = nodes[j] >> 1
            if p != last:
                a, b = tree[2 * p], tree[2 * p + 1]
                tree[p] = (a if a >= b else b) if take_max else a + b
                nodes[out] = p
                out += 1
                last = p
        m = out


@njit(cache=True)
def tree_draws_cpu(tree, u, out):
    """``out[j]``: the leaf reached by ``t = u[j] * tree[1]`` (the NumPy spec's descent),
    all draws one level at a time (their loads are independent, as the spec's gathers),
    each step a select, not a branch (a branch on a fair coin is mispredicted half the
    time: 4x slower on a smooth tree of 10**6 leaves)."""
    size = tree.size // 2
    n = u.size
    t = u * tree[1]
    for j in range(n):
        out[j] = 1
    level = size
    while level > 1:
        for j in range(n):
            node = out[j]
            left, right, tj = tree[2 * node], tree[2 * node + 1], t[j]
            go = ((tj >= left) & (right > 0)) | (left == 0)
            t[j] = tj - left if go else tj
            out[j] = 2 * node + np.int64(go)
        level //= 2
    for j in range(n):
        out[j] -= size


@njit(cache=True)
def mixture_pi_cpu(leaves, coefs, consts, rows, all_rows, out):
    """``out[j] = pi_i`` for ``i = rows[j]`` (or ``i = j`` when ``all_rows``), pi as in
    :func:`mixture_rows_at_least_cpu` (a term of 0 adds exactly 0)."""
    for j in range(out.size):
        i = j if all_rows else rows[j]
        s = 0.0
        for k in range(len(leaves)):
            s += coefs[k] * leaves[k][i]
            s += consts[k]
        out[j] = s


@njit(cache=True)
def mixture_rows_at_least_cpu(leaves, coefs, consts, threshold, out):
    """Rows i with ``pi_i >= threshold``, ``pi_i = (..((0 + c_0 l_0[i]) + k_0) + ..)``
    over the signals (``c_k l_k[i]`` for a tree signal, ``k_k`` for a uniform one: the
    other term is 0), written to ``out``; returns their count (one pass, no pi array)."""
    count = 0
    for i in range(out.size):
        s = 0.0
        for k in range(len(leaves)):
            s += coefs[k] * leaves[k][i]
            s += consts[k]
        if s >= threshold:
            out[count] = i
            count += 1
    return count
