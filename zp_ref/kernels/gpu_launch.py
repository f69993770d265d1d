"""The one CUDA launch policy of zp_ref's ``gpu_*`` kernels, and device-array views
(imported only for backend="cuda").

Two shapes: a grid-stride loop over ``n`` items (``grid_stride_shape``: no more blocks
than the device holds at once) and one thread per item (``one_per_item_shape``), both
with ``device_shape()``'s threads per block. Under the simulator, where every thread is
a Python thread, blocks are small and few (the results never depend on the shape).
"""
import functools

import numpy as np
from numba import cuda

from .common import cuda_simulated

#: Threads per block on a real device, and under the simulator.
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


def one_per_item_shape(n: int) -> tuple:
    """(blocks, threads) that give each of ``n`` items its own thread (at least one block)."""
    threads = device_shape()[0]
    return max(1, -(-n // threads)), threads


def as_device(a, name: str):
    """``a`` as a numba device array: a numba device array itself, or a zero-copy view
    of any object with ``__cuda_array_interface__`` (e.g. a torch CUDA tensor)."""
    if isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a device array, got a host numpy.ndarray; "
                        f"use the host entry point or numba.cuda.to_device")
    if cuda_simulated() or hasattr(a, "copy_to_host"):
        return a
    return cuda.as_cuda_array(a)
