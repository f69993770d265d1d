"""A binary sum tree over N weights: O(M log N) updates of M weights, O(log N) draws.

The tree is a float64 array of size 2P (P = the smallest power of two >= N): leaf i at
``P + i`` (leaves N..P-1 are 0), node k holds ``tree[2k] + tree[2k+1]`` and the root
``tree[1]`` is the total. Every node is recomputed from its two children, never by
adding a difference, so the tree is a function of the current leaves alone (no
rounding drift over updates). Used by the model-driven learner's partial refresh
(:mod:`zp_ref.model_driven_mixture`), where a refresh changes M << N weights.

A max tree (``op="max"``) is the same array with each node the larger of its children:
``tree[1]`` is the largest weight, kept up to date by the same O(M log N) updates (the
partial refresh reads the largest loss off it instead of a pass over N).
"""
from __future__ import annotations

import numpy as np

from .kernels.cpu_sum_tree import tree_draws_cpu, tree_update_cpu

__all__ = ["tree_build", "tree_update", "tree_draws", "tree_leaves"]


def _combine(op: str):
    if op not in ("sum", "max"):
        raise ValueError(f"op must be 'sum' or 'max', got {op!r}")
    return np.add if op == "sum" else np.maximum


def tree_build(w: np.ndarray, op: str = "sum") -> np.ndarray:
    """The sum tree of ``w`` (N,) (finite, >= 0): float64 (2P,), ``tree[1]`` the total;
    ``op="max"``: the max tree, ``tree[1]`` the largest weight."""
    combine = _combine(op)
    w = np.asarray(w, dtype=np.float64)
    size = 1 << max(0, int(w.size - 1).bit_length())
    tree = np.zeros(2 * size)
    tree[size:size + w.size] = w
    level = size
    while level > 1:                       # nodes level/2 .. level-1 from their children
        tree[level // 2:level] = combine(tree[level:2 * level:2], tree[level + 1:2 * level:2])
        level //= 2
    return tree


def tree_leaves(tree: np.ndarray, n: int) -> np.ndarray:
    """The N leaves (a view)."""
    return tree[tree.size // 2:tree.size // 2 + n]


def tree_update(tree: np.ndarray, rows: np.ndarray, values: np.ndarray, *,
                op: str = "sum", backend: str = "cpu") -> None:
    """Set leaves ``rows`` (int64, sorted, distinct) to ``values`` (float64) and
    recompute their ancestors in place, level by level (each node once per level), as
    sums or (``op="max"``) maxima. ``backend``: "numpy" (the spec) or "cpu" (Numba),
    the same tree."""
    combine = _combine(op)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    if backend == "cpu":
        return tree_update_cpu(tree, rows, values, op == "max")
    nodes = rows + tree.size // 2
    tree[nodes] = values
    while nodes.size and nodes[0] > 1:
        nodes = nodes >> 1
        nodes = nodes[np.concatenate(([True], nodes[1:] != nodes[:-1]))]   # sorted: distinct
        tree[nodes] = combine(tree[2 * nodes], tree[2 * nodes + 1])


def tree_draws(tree: np.ndarray, u: np.ndarray, *, backend: str = "cpu") -> np.ndarray:
    """Indices drawn by uniforms ``u`` (n,) in [0, 1), int64 (n,).

    With ``t = u * tree[1]``, descend from the root: go left when ``t < left`` (or the
    right child is 0), else subtract ``left`` and go right (or left when ``left`` is 0
    and the right is not). A leaf of weight 0 is never reached while the total is
    positive; leaf i is reached with probability ``w_i / total`` (up to rounding of t).
    ``backend``: "numpy" (the spec) or "cpu" (Numba), the same indices."""
    u = np.ascontiguousarray(u, dtype=np.float64)
    if backend == "cpu":
        out = np.empty(u.size, dtype=np.int64)
        tree_draws_cpu(tree, u, out)
        return out
    size = tree.size // 2
    t = u * tree[1]
    node = np.ones(t.size, dtype=np.int64)
    while size > 1:
        left, right = tree[2 * node], tree[2 * node + 1]
        go_right = ((t >= left) & (right > 0)) | (left == 0)
        t = np.where(go_right, t - left, t)
        node = 2 * node + go_right
        size //= 2
    return node - tree.size // 2
