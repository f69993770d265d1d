"""numba.cuda twin of :mod:`zp_ref.kernels.cpu_rng`, plus the launch shapes every
``gpu_*`` kernel module of zp_ref shares (imported only for backend="cuda").

The kernels call the ``@njit`` scalars of :mod:`zp_ref.rng` (``uniform_at``) as
device functions, so the GPU computes the same bits as NumPy and the CPU.
"""
import functools

import numpy as np
from numba import cuda

from ..backends import cuda_simulated
from ..rng import uniform_at

#: Threads per block of the grid-stride kernels on a real device (and under the
#: simulator, where every thread is a Python thread, the much smaller count after it).
THREADS, SIM_THREADS = 256, 32
#: Blocks of a grid-stride launch under the simulator.
SIM_BLOCKS = 4


@functools.lru_cache(maxsize=1)
def device_shape() -> tuple:
    """(threads per block, blocks that fill the device) from the current device's
    properties: enough blocks of ``THREADS`` for every SM to hold its maximum."""
    if cuda_simulated():
        return SIM_THREADS, SIM_BLOCKS
    dev = cuda.get_current_device()
    threads = min(THREADS, int(dev.MAX_THREADS_PER_BLOCK))
    per_sm = max(1, int(getattr(dev, "MAX_THREADS_PER_MULTIPROCESSOR", 2048)) // threads)
    return threads, int(dev.MULTIPROCESSOR_COUNT) * per_sm


def grid_stride_shape(n: int) -> tuple:
    """(blocks, threads) for a grid-stride loop over ``n`` items: no more blocks than
    the device holds at once, no block without work."""
    threads, blocks = device_shape()
    return max(1, min(blocks, -(-n // threads))), threads


def as_device(a, name: str):
    """``a`` as a numba device array: a numba device array itself, or a zero-copy view
    of any object with ``__cuda_array_interface__`` (e.g. a torch CUDA tensor)."""
    if isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a device array, got a host numpy.ndarray; "
                        f"use the host entry point or numba.cuda.to_device")
    if cuda_simulated() or hasattr(a, "copy_to_host"):
        return a
    return cuda.as_cuda_array(a)


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
