"""numba.cuda twin of :mod:`zp_ref.kernels.cpu_weights` (imported only for backend="cuda").

One fused grid-stride pass writes the weights and, per CUDA block, the sum of the
weights it wrote and its count of NaN inputs (a shared-memory tree reduction). A
one-block kernel adds those partial sums in block order into ``stats = [total,
n_nan]`` on the device, and the optional normalisation divides by ``stats[0]`` read
on the device: the host sees nothing until the final copy. The grid depends only on
the device, so the total is reproducible run to run (and equals the CPU's to ~1e-15
relative: the summation order differs).
"""
import math

import numpy as np
from numba import cuda

from .cpu_weights import POWER_HALF, POWER_INT, POWER_ONE, POWER_TWO, POWER_ZERO, power_mode
from .gpu_launch import as_device, grid_stride_shape

#: Partial sums the reduction kernel handles per step (its shared array).
REDUCE_WIDTH = 256


@cuda.jit(device=True)
def reduce_in_block(sums, nans, t, s, n_nan):
    """Tree reduction of each thread's (s, n_nan) into sums[0], nans[0] (shared arrays
    of blockDim.x entries, a power of two), in a fixed order."""
    sums[t] = s
    nans[t] = n_nan
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if t < step:
            sums[t] += sums[t + step]
            nans[t] += nans[t + step]
        cuda.syncthreads()
        step //= 2


@cuda.jit(device=True, inline=True)
def importance_weight(q, p, mode, min_q_abs, max_weight, inv_temperature):
    """Clipped, tempered 1/|q|^p; 0 for q = +-inf (q not NaN).

    ``a**p`` underflowing to 0 gives ``w = inf`` (then ``max_weight``), as IEEE
    division does on a device and NumPy does on the host; the select keeps the CUDA
    simulator's Python division from raising ZeroDivisionError. The general power
    takes ``np.float64(p)``: a Python float power that overflows raises there."""
    a = abs(q)
    if a < min_q_abs:
        a = min_q_abs
    if mode == POWER_TWO:
        d = a * a
    elif mode == POWER_ONE:
        d = a
    elif mode == POWER_HALF:
        d = math.sqrt(a)
    elif mode == POWER_ZERO:
        d = 1.0
    elif mode == POWER_INT:
        d = a ** np.int64(p)
    else:
        d = a ** np.float64(p)
    w = 1.0 / d if d > 0.0 else np.inf
    if w > max_weight:
        w = max_weight
    if inv_temperature != 1.0:
        w = w ** inv_temperature
    if a == np.inf:
        w = 0.0
    return w


@cuda.jit(device=True, inline=True)
def weight_or_zero(x, p, mode, min_q_abs, max_weight, inv_temperature):
    """importance_weight of x; 0 for a NaN x."""
    if x != x:
        return 0.0
    return importance_weight(x, p, mode, min_q_abs, max_weight, inv_temperature)


@cuda.jit(cache=True)
def weights_and_block_sums(q, p, mode, min_q_abs, max_weight, inv_temperature, out,
                           block_sums, block_nans):
    """out[i] = weight(q[i]) (0 for NaN); block_sums[b] / block_nans[b] = sum of the
    weights / count of NaN inputs handled by CUDA block b."""
    sums = cuda.shared.array(REDUCE_WIDTH, np.float64)
    nans = cuda.shared.array(REDUCE_WIDTH, np.int64)
    t = cuda.threadIdx.x
    s = 0.0
    n_nan = 0
    for i in range(cuda.grid(1), q.size, cuda.gridsize(1)):
        x = q[i]
        if x != x:
            n_nan += 1
        w = weight_or_zero(x, p, mode, min_q_abs, max_weight, inv_temperature)
        out[i] = w
        s += w
    reduce_in_block(sums, nans, t, s, n_nan)
    if t == 0:
        block_sums[cuda.blockIdx.x] = sums[0]
        block_nans[cuda.blockIdx.x] = nans[0]


@cuda.jit(cache=True)
def reduce_block_sums(block_sums, block_nans, stats):
    """One block: stats[0] = sum of block_sums (fixed order), stats[1] = NaN count."""
    sums = cuda.shared.array(REDUCE_WIDTH, np.float64)
    nans = cuda.shared.array(REDUCE_WIDTH, np.int64)
    t = cuda.threadIdx.x
    s = 0.0
    n_nan = 0
    for b in range(t, block_sums.size, cuda.blockDim.x):
        s += block_sums[b]
        n_nan += block_nans[b]
    reduce_in_block(sums, nans, t, s, n_nan)
    if t == 0:
        stats[0] = sums[0]
        stats[1] = nans[0]


@cuda.jit(cache=True)
def divide_by_total(w, stats):
    """w /= stats[0] when the total is positive (left unchanged otherwise)."""
    total = stats[0]
    if not total > 0.0:
        return
    for i in range(cuda.grid(1), w.size, cuda.gridsize(1)):
        w[i] = w[i] / total


def importance_weights_device(q_dev, p, min_q_abs, max_weight, temperature, normalize,
                              out_dev, stats_dev=None) -> tuple:
    """Weights of the device array ``q_dev`` (float64 (N,)) into ``out_dev`` (float64
    (N,), any object with ``__cuda_array_interface__``), divided by their total when
    ``normalize`` and the total is positive. NaN and +-inf give weight 0.

    Returns (total, n_nan) on the host; ``stats_dev`` (float64 (2,) device array)
    receives [total, n_nan] on the device when given."""
    q_dev, out_dev = as_device(q_dev, "q_dev"), as_device(out_dev, "out_dev")
    if q_dev.dtype != np.float64 or out_dev.dtype != np.float64 or q_dev.ndim != 1 \
            or out_dev.shape != q_dev.shape:
        raise TypeError(f"q_dev and out_dev must be float64 device arrays of one shape (N,), "
                        f"got {q_dev.dtype} {q_dev.shape} and {out_dev.dtype} {out_dev.shape}")
    blocks, threads = grid_stride_shape(q_dev.size)
    block_sums = cuda.device_array(blocks, dtype=np.float64)
    block_nans = cuda.device_array(blocks, dtype=np.int64)
    stats = cuda.device_array(2, dtype=np.float64) if stats_dev is None else stats_dev
    weights_and_block_sums[blocks, threads](q_dev, float(p), np.int64(power_mode(p)),
                                            float(min_q_abs), float(max_weight),
                                            1.0 / float(temperature), out_dev, block_sums,
                                            block_nans)
    reduce_block_sums[1, threads](block_sums, block_nans, stats)
    if normalize:
        divide_by_total[blocks, threads](out_dev, stats)
    total, n_nan = stats.copy_to_host()
    return float(total), int(n_nan)


def importance_weights_gpu(q, p, min_q_abs, max_weight, temperature, normalize) -> tuple:
    """Host entry point: (w float64 (N,), total, n_nan) for the host array ``q``.

    ``w`` is already divided by ``total`` when ``normalize`` and ``total > 0``."""
    q_dev = cuda.to_device(np.ascontiguousarray(q, dtype=np.float64))
    out_dev = cuda.device_array(q_dev.size, dtype=np.float64)
    total, n_nan = importance_weights_device(q_dev, p, min_q_abs, max_weight, temperature,
                                             normalize, out_dev)
    return out_dev.copy_to_host(), total, n_nan

