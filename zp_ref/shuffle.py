"""The order that shuffles a batch: the stable argsort of its uniforms.

Every sampler that mixes importance and uniform draws in one batch puts them in the
order ``argsort(u, kind="stable")`` of the uniforms ``u = u(s, 3, .)`` of the batch's
seed (``zp_ref.rng`` stream "shuffle"). :func:`shuffle_order` is that argsort, row by
row; its Numba kernel sorts a row of B uniforms in O(B) (a counting sort on the leading
digits) instead of O(B log B) comparisons, and gives the same permutation.
"""
from __future__ import annotations

import numpy as np

from .kernels.cpu_shuffle import rows_order_cpu

__all__ = ["shuffle_order"]


def shuffle_order(u: np.ndarray, *, backend: str = "cpu") -> np.ndarray:
    """``np.argsort(u, axis=-1, kind="stable")`` for uniforms in [0, 1), row by row.

    Parameters
    ----------
    u : array_like, shape (..., B)
        Uniforms in [0, 1), e.g. ``u(s, 3, .)`` of a batch (at least one axis).
    backend : {"cpu", "numpy"}, default "cpu"
        "numpy": the spec (NumPy's stable argsort); "cpu": the Numba counting sort.
        Both give the same permutation, ties kept in index order.

    Returns
    -------
    numpy.ndarray
        int64, u's shape: the order of each row along the last axis.
    """
    u = np.asarray(u, dtype=np.float64)
    if backend == "numpy":
        return np.argsort(u, axis=-1, kind="stable")
    if backend != "cpu":
        raise ValueError(f"backend must be 'numpy' or 'cpu', got {backend!r}")
    if u.ndim == 0:
        raise ValueError("u must have at least one axis (a batch of uniforms)")
    if u.size and not (u.min() >= 0.0 and u.max() < 1.0):
        raise ValueError(f"u must lie in [0, 1), got range [{u.min()}, {u.max()}]")
    out = np.empty(u.shape, dtype=np.int64)
    if u.size:
        rows_order_cpu(np.ascontiguousarray(u).reshape(-1, u.shape[-1]),
                       out.reshape(-1, u.shape[-1]))
    return out
