"""Backend selection: ``"numpy"`` (the oracle), ``"cpu"`` (Numba), ``"cuda"``
(numba.cuda), ``"auto"`` (cuda for large inputs when a real GPU is present, else cpu)."""
from __future__ import annotations

import functools

from ._validation import check_backend

#: ``auto`` picks cuda only for inputs at least this large (host<->device copies
#: dominate below it).
AUTO_CUDA_MIN_SIZE = 1 << 20


def cuda_simulated() -> bool:
    """True when numba.cuda runs under its simulator (NUMBA_ENABLE_CUDASIM=1)."""
    from .kernels.common import cuda_simulated as simulated
    return simulated()


@functools.lru_cache(maxsize=1)
def gpu_present() -> bool:
    """True when numba.cuda sees a real GPU (the simulator does not count)."""
    if cuda_simulated():
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
