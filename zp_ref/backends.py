"""Backend selection: ``"numpy"`` (the oracle), ``"cpu"`` (Numba), ``"cuda"``
(numba.cuda), ``"auto"`` (cuda for large inputs when a real GPU is present, else cpu)."""
from __future__ import annotations

import ctypes
import functools
import os
import sys

from ._validation import check_backend

#: ``auto`` picks cuda only for inputs at least this large (host<->device copies
#: dominate below it).
AUTO_CUDA_MIN_SIZE = 1 << 20


def cuda_simulated() -> bool:
    """True when numba.cuda runs under its simulator (NUMBA_ENABLE_CUDASIM=1)."""
    from .kernels.common import cuda_simulated as simulated
    return simulated()


#: Where numba.cuda looks for the CUDA driver library (its ``locate_driver_and_loader``):
#: the names on the loader's search path, then fixed folders (and WSL's).
_DRIVER_CANDIDATES = {
    "win32": ("nvcuda.dll",),
    "darwin": ("libcuda.dylib", "/usr/local/cuda/lib/libcuda.dylib"),
}
_LINUX_DRIVERS = ("libcuda.so.1", "libcuda.so", "/usr/lib/libcuda.so", "/usr/lib/libcuda.so.1",
                  "/usr/lib64/libcuda.so", "/usr/lib64/libcuda.so.1",
                  "/usr/lib/wsl/lib/libcuda.so.1")


def cuda_driver_loadable() -> bool:
    """True when a CUDA driver library can be loaded (or ``NUMBA_CUDA_DRIVER`` names
    one), the first thing numba.cuda needs. False settles "no GPU" without importing
    numba.cuda, which costs 0.1-0.2 s of the first call of a process on a machine
    without one (``auto`` asks on its first large input)."""
    if os.environ.get("NUMBA_CUDA_DRIVER"):
        return True                       # numba.cuda decides (also when it is "0")
    loader = getattr(ctypes, "WinDLL", ctypes.CDLL) if sys.platform == "win32" else ctypes.CDLL
    for name in _DRIVER_CANDIDATES.get(sys.platform, _LINUX_DRIVERS):
        try:
            loader(name)
            return True
        except OSError:
            continue
    return False


@functools.lru_cache(maxsize=1)
def gpu_present() -> bool:
    """True when numba.cuda sees a real GPU (the simulator does not count); numba.cuda
    is imported only when a CUDA driver library can be loaded."""
    if cuda_simulated() or not cuda_driver_loadable():
        return False
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:  # numba-cuda missing or driver broken: no GPU for us
        return False


def cuda_usable() -> bool:
    """A real GPU, or the CUDA simulator switched on (tests)."""
    if cuda_simulated():
        return True
    return gpu_present()


def resolve_backend(backend, size: int = 0) -> str:
    """Validate ``backend`` and turn ``"auto"`` into a concrete one."""
    backend = check_backend(backend)
    if backend == "auto":
        return "cuda" if (size >= AUTO_CUDA_MIN_SIZE and gpu_present()) else "cpu"
    if backend == "cuda" and not cuda_usable():
        raise ValueError("backend='cuda' needs a CUDA GPU (numba-cuda and a driver) or "
                         "NUMBA_ENABLE_CUDASIM=1; none was found. Use backend='cpu' or 'auto'.")
    return backend
