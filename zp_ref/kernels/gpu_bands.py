"""numba.cuda twins of :mod:`zp_ref.kernels.cpu_bands` (imported only for backend="cuda").

One thread per pool entry (grid-stride loop). The histogram accumulates per block in
shared memory (at most ``MAX_BANDS`` bands) and adds each block's counts to the global
result with one atomic per band.
"""
import numpy as np
from numba import cuda

from .gpu_launch import grid_stride_shape

#: Bands the shared-memory histogram holds (edges: at most MAX_BANDS - 1).
MAX_BANDS = 64


@cuda.jit(device=True, inline=True)
def _band_id(q, edges):
    a = abs(q)
    b = 0
    for k in range(edges.size):
        b += edges[k] < a
    return b


@cuda.jit
def _band_ids_kernel(q, edges, out):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, q.size, stride):
        out[i] = _band_id(q[i], edges)


@cuda.jit
def _band_histogram_kernel(q, edges, counts):
    local = cuda.shared.array(MAX_BANDS, dtype=np.int64)
    t = cuda.threadIdx.x
    for b in range(t, MAX_BANDS, cuda.blockDim.x):
        local[b] = 0
    cuda.syncthreads()
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, q.size, stride):
        cuda.atomic.add(local, _band_id(q[i], edges), 1)
    cuda.syncthreads()
    for b in range(t, counts.size, cuda.blockDim.x):
        if local[b] != 0:
            cuda.atomic.add(counts, b, local[b])


def band_ids_gpu(q: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Band of every entry of ``q`` (N,) on the device; returns int64 (N,) on the host."""
    d_q, d_edges = cuda.to_device(q), cuda.to_device(edges)
    d_out = cuda.device_array(q.size, dtype=np.int64)
    _band_ids_kernel[grid_stride_shape(q.size)](d_q, d_edges, d_out)
    return d_out.copy_to_host()


def band_histogram_gpu(q: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Members per band, int64 (K+1,); ``edges`` (K,) with K < MAX_BANDS."""
    d_q, d_edges = cuda.to_device(q), cuda.to_device(edges)
    d_counts = cuda.to_device(np.zeros(edges.size + 1, dtype=np.int64))
    _band_histogram_kernel[grid_stride_shape(q.size)](d_q, d_edges, d_counts)
    return d_counts.copy_to_host()
