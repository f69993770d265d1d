"""Numba CPU kernels for |Q| bands: band ids, band histograms, grouping by band.

Band of q = number of edges strictly below |q| (edges increasing, q without NaN).
"""
import numpy as np
from numba import njit, prange

#: Entries per partial histogram (fixed, so the work split never depends on threads).
HIST_CHUNK = 1 << 16


@njit(cache=True, inline="always")
def band_id(q, edges):
    """Number of edges strictly below |q|: a branch-free count over the (few) edges, so
    random band ids cost no mispredicted branches."""
    a = abs(q)
    b = 0
    for k in range(edges.size):
        b += edges[k] < a
    return b


@njit(parallel=True, cache=True)
def band_ids(q, edges, out):
    """out[i] = band of q[i]; q (N,) float64, edges (K,) float64, out (N,) int64."""
    for i in prange(q.size):
        out[i] = band_id(q[i], edges)


@njit(parallel=True, cache=True)
def band_histogram(q, edges):
    """Members per band, int64 (K+1,): one partial histogram per fixed chunk, then summed."""
    n_chunks = (q.size + HIST_CHUNK - 1) // HIST_CHUNK
    partial = np.zeros((n_chunks, edges.size + 1), dtype=np.int64)
    for c in prange(n_chunks):
        for i in range(c * HIST_CHUNK, min(q.size, (c + 1) * HIST_CHUNK)):
            partial[c, band_id(q[i], edges)] += 1
    return partial.sum(axis=0)


@njit(cache=True)
def group_by_band(bands, n_bands):
    """Counting sort of pool indices by band (stable: ascending index inside a band).

    Returns ``order`` int64 (N,) and ``starts`` int64 (n_bands+1,): the members of band
    b are ``order[starts[b]:starts[b+1]]``.
    """
    starts = np.zeros(n_bands + 1, dtype=np.int64)
    for i in range(bands.size):
        starts[bands[i] + 1] += 1
    for b in range(n_bands):
        starts[b + 1] += starts[b]
    fill = starts[:-1].copy()
    order = np.empty(bands.size, dtype=np.int64)
    for i in range(bands.size):
        b = bands[i]
        order[fill[b]] = i
        fill[b] += 1
    return order, starts
