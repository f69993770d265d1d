"""Numba kernels of the sum tree (the NumPy spec is :mod:`zp_ref.sum_tree`): leaf
updates with their ancestors recomputed from their children, and draws by descent."""
import numpy as np
from numba import njit


@njit(cache=True)
def tree_update_cpu(tree, rows, values):
    """Set leaves ``rows`` (sorted, distinct) to ``values``; recompute each ancestor
    once per level as ``tree[2k] + tree[2k+1]`` (the same sums as the NumPy spec)."""
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
                tree[p] = tree[2 * p] + tree[2 * p + 1]
                nodes[out] = p
                out += 1
                last = p
        m = out


@njit(cache=True)
def tree_draws_cpu(tree, u, out):
    """``out[j]``: the leaf reached by ``t = u[j] * tree[1]`` (the NumPy spec's descent),
    all draws one level at a time (their loads are independent, as the spec's gathers)."""
    size = tree.size // 2
    n = u.size
    t = u * tree[1]
    for j in range(n):
        out[j] = 1
    level = size
    while level > 1:
        for j in range(n):
            node = out[j]
            left, right = tree[2 * node], tree[2 * node + 1]
            if (t[j] >= left and right > 0) or left == 0:
                t[j] -= left
                out[j] = 2 * node + 1
            else:
                out[j] = 2 * node
        level //= 2
    for j in range(n):
        out[j] -= size


@njit(cache=True)
def add_scaled_cpu(out, coef, x):
    """``out += coef * x`` in one pass (each product rounded, then the sum: NumPy's)."""
    for i in range(out.size):
        out[i] += coef * x[i]


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
