"""numba.cuda twin of :mod:`zp_ref.kernels.cpu_rng` (imported only for backend="cuda").

The kernel calls the ``@njit`` scalars of :mod:`zp_ref.kernels.counter_rng`
(``uniform_at``) as device functions, so the GPU computes the same bits as NumPy and
the CPU.
"""
import numpy as np
from numba import cuda

from .counter_rng import uniform_at
from .gpu_launch import grid_stride_shape


@cuda.jit(cache=True)
def fill_uniforms_kernel(key, start, out):
    """out[i] = u at counter start + i of the stream with ``key`` (uint64 scalars)."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = uniform_at(key, start + np.uint64(i))


def uniforms_device(key, start: int, out) -> None:
    """Fill the float64 device array ``out`` with the uniforms at counters
    ``start .. start + out.size - 1`` of the stream with ``key``."""
    if out.size == 0:
        return
    blocks, threads = grid_stride_shape(out.size)
    fill_uniforms_kernel[blocks, threads](np.uint64(key), np.uint64(start), out)


def uniforms_gpu(key, start: int, n: int) -> np.ndarray:
    """``uniform_at(key, start + i)`` for i < n on the device, float64 (n,) on the host."""
    out = cuda.device_array(n, dtype=np.float64)
    uniforms_device(key, start, out)
    return out.copy_to_host()
