"""Fresh output arrays whose memory is recycled once no array uses it any more.

A fresh 80 MB array (the weights of 10**7 entries) costs the kernel's zeroing of
every page it faults in, 10-20 ms of CPU time on the 2-core machine, more than the
weight pass itself (docs/benchmarks.md, "Calls after the warm-up"). The default call
``sample_indices(importance_weights(q), B, seed=s)`` allocates the weights and drops
them at every call, so :func:`empty` serves large outputs from buffers that earlier
outputs released.

Safety: the array handed out views its buffer through an owner object (its ``base``);
every view, reshape or slice of it keeps that owner alive, and the buffer goes back to
the pool only when the owner is collected, that is when no array can reach the memory.
A recycled array is an ordinary writeable NumPy array that does not own its data
(``resize`` refuses it). The pool keeps at most :data:`KEEP_BYTES` (oldest dropped
first) and is thread-safe; :func:`release` empties it.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

#: Outputs smaller than this are plain ``np.empty`` (fresh small pages are cheap).
MIN_BYTES = 4 << 20
#: The most bytes the pool keeps for reuse between calls.
KEEP_BYTES = 256 << 20

_lock = threading.RLock()
_free: dict = {}          # (nbytes, dtype) -> [buffers], oldest key first
_kept = 0


class _Owner:
    """Exposes a pooled buffer to NumPy (``__array_interface__``); its collection
    returns the buffer to the pool."""

    __slots__ = ("__array_interface__", "buffer", "__weakref__")

    def __init__(self, buffer):
        self.buffer = buffer
        self.__array_interface__ = buffer.__array_interface__


def empty(n: int, dtype=np.float64) -> np.ndarray:
    """An uninitialised C-contiguous (n,) array of ``dtype``, recycled when large."""
    dtype = np.dtype(dtype)
    nbytes = int(n) * dtype.itemsize
    if nbytes < MIN_BYTES:
        return np.empty(n, dtype=dtype)
    buffer = _take((nbytes, dtype.str))
    if buffer is None:
        buffer = np.empty(n, dtype=dtype)
    owner = _Owner(buffer)
    finalizer = weakref.finalize(owner, _give_back, buffer)
    finalizer.atexit = False
    return np.asarray(owner)


def _take(key):
    global _kept
    with _lock:
        stack = _free.get(key)
        if not stack:
            return None
        buffer = stack.pop()
        if not stack:
            del _free[key]
        _kept -= buffer.nbytes
        return buffer


def _give_back(buffer) -> None:
    global _kept
    key = (buffer.nbytes, buffer.dtype.str)
    with _lock:
        if buffer.nbytes > KEEP_BYTES:
            return
        while _kept + buffer.nbytes > KEEP_BYTES and _free:
            oldest = next(iter(_free))
            _kept -= _free[oldest].pop(0).nbytes
            if not _free[oldest]:
                del _free[oldest]
        _free.setdefault(key, []).append(buffer)
        _kept += buffer.nbytes


def kept_bytes() -> int:
    """Bytes the pool holds now for reuse."""
    return _kept


def release() -> None:
    """Free every buffer the pool holds (arrays in use are not affected)."""
    global _kept
    with _lock:
        _free.clear()
        _kept = 0
