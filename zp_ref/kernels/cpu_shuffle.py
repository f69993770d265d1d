"""Numba kernel of the batch shuffle (the NumPy spec is :func:`zp_ref.shuffle.shuffle_order`)."""
import numpy as np
from numba import njit


@njit(cache=True)
def rows_order_cpu(u, out):
    """``out[b] = argsort(u[b], stable)`` for every row b of u (m, B) in [0, 1): a
    counting sort by ``min(floor(u * B), B - 1)`` (monotone in u, so the buckets come in
    order and keep the row's order inside), then an insertion pass that moves an entry
    only past strictly larger ones (about one entry per bucket: O(B) per row)."""
    m, width = u.shape
    start = np.empty(width + 1, np.int64)
    for b in range(m):
        row, order = u[b], out[b]
        start[:] = 0
        for i in range(width):
            start[min(int(row[i] * width), width - 1) + 1] += 1
        for k in range(width):
            start[k + 1] += start[k]
        for i in range(width):
            k = min(int(row[i] * width), width - 1)
            order[start[k]] = i
            start[k] += 1
        for i in range(1, width):
            v, key, k = order[i], row[order[i]], i - 1
            while k >= 0 and row[order[k]] > key:
                order[k + 1] = order[k]
                k -= 1
            order[k + 1] = v
