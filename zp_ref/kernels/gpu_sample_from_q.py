"""numba.cuda twin of :mod:`zp_ref.kernels.cpu_sample_from_q` (imported only for
backend="cuda"): draws straight from Q values, the weights never stored.

``block_totals_from_q`` sums the weights of each PREFIX_BLOCK block sequentially (one
thread per block; NaN inputs weigh 0 and are counted), ``sequential_scan`` of
:mod:`.gpu_sampling` gives the block ends, ``group_draws_device`` buckets the draws,
and ``resolve_draws_from_q`` loads each block's recomputed weights into shared memory
and finishes like ``resolve_draws`` (``block_prefix_sums``,
``resolve_block_draws``). Same weights
(``gpu_weights.weight_or_zero``), same adds in the same order: the indices of
``sample_with_replacement_device`` on the weights of ``importance_weights_device``.
"""
import numpy as np
from numba import cuda

from .gpu_launch import device_shape, grid_stride_shape
from .gpu_sampling import (PREFIX_BLOCK, RESOLVE_THREADS, block_prefix_sums,
                           group_draws_device, resolve_block_draws, sequential_scan)
from .gpu_weights import weight_or_zero


@cuda.jit(cache=True)
def block_totals_from_q(q, p, mode, min_q_abs, max_weight, inv_temperature, totals, counts):
    """totals[b] = sequential sum of the weights of block b; counts[0] += NaN inputs,
    counts[1] = max(counts[1], last index whose weight is > 0)."""
    for b in range(cuda.grid(1), totals.size, cuda.gridsize(1)):
        lo = b * PREFIX_BLOCK
        s = 0.0
        n_nan = 0
        last = -1
        for i in range(lo, min(q.size, lo + PREFIX_BLOCK)):
            x = q[i]
            if x != x:
                n_nan += 1
            w = weight_or_zero(x, p, mode, min_q_abs, max_weight, inv_temperature)
            if w > 0.0:
                last = i
            s += w
        totals[b] = s
        if n_nan:
            cuda.atomic.add(counts, 0, n_nan)
        if last >= 0:
            cuda.atomic.max(counts, 1, last)


@cuda.jit(cache=True)
def resolve_draws_from_q(key, total, q, p, mode, min_q_abs, max_weight, inv_temperature,
                         ends, starts, grouped, last_positive, out):
    """``gpu_sampling.resolve_draws`` with the weights of block b recomputed from q."""
    local = cuda.shared.array((1, PREFIX_BLOCK), np.float64)
    b = cuda.blockIdx.x
    t = cuda.threadIdx.x
    if starts[b] == starts[b + 1]:
        return
    if b == ends.size:
        for a in range(starts[b] + t, starts[b + 1], cuda.blockDim.x):
            out[grouped[a]] = last_positive
        return
    lo = b * PREFIX_BLOCK
    size = min(q.size, lo + PREFIX_BLOCK) - lo
    for i in range(t, PREFIX_BLOCK, cuda.blockDim.x):
        local[0, i] = weight_or_zero(q[lo + i], p, mode, min_q_abs, max_weight,
                                     inv_temperature) if i < size else 0.0
    cuda.syncthreads()
    if t == 0:
        block_prefix_sums(local, size)
    cuda.syncthreads()
    resolve_block_draws(key, total, ends, starts, grouped, out, local, b, size, t,
                        cuda.blockDim.x)


def _scalars(params):
    p, mode, min_q_abs, max_weight, inv_temperature = params
    return float(p), np.int64(mode), float(min_q_abs), float(max_weight), float(inv_temperature)


def block_ends_from_q_device(q_dev, params) -> tuple:
    """Block ends of the weights of the float64 (N,) device array ``q_dev``.

    Returns (ends_dev float64 (nb,), total, n_nan, last_positive)."""
    nb = -(-q_dev.size // PREFIX_BLOCK)
    totals = cuda.device_array(nb, dtype=np.float64)
    ends = cuda.device_array(nb, dtype=np.float64)
    counts = cuda.to_device(np.array([0, -1], dtype=np.int64))
    block_totals_from_q[grid_stride_shape(nb)](q_dev, *_scalars(params), totals, counts)
    sequential_scan[1, device_shape()[0]](totals, ends)
    n_nan, last_positive = (int(c) for c in counts.copy_to_host())
    return ends, float(ends[nb - 1:].copy_to_host()[0]), n_nan, last_positive


def draws_from_q_device(q_dev, params, ends, total, last_positive, n: int, key):
    """int64 (n,) device array: the draws of stream ``key`` given checked block ends."""
    out = cuda.device_array(n, dtype=np.int64)
    if n == 0:
        return out
    key = np.uint64(key)
    starts, grouped = group_draws_device(key, total, ends, n)
    resolve_draws_from_q[ends.size + 1, RESOLVE_THREADS](
        key, total, q_dev, *_scalars(params), ends, starts, grouped, np.int64(last_positive),
        out)
    return out
