"""Loading cached kernels without initialising Numba's compiler.

Numba's ``FunctionCache.load_overload`` starts with ``target_context.refresh()``,
which imports every typing and lowering registry of Numba (``numba.np.arraymath``
among them, which imports ``scipy.linalg`` to look for BLAS): 0.3-0.4 s of CPU time,
over half the first call of a process with a warm on-disk cache (docs/benchmarks.md,
"The first call"). Running machine code loaded from the cache needs only what the
context sets up when it is created (the C helpers, the math functions), Numba's
runtime (NRT, initialised here) and, for parallel kernels, the thread pool (started by
the cached kernel's own reload hook). :class:`RuntimeOnlyCache` loads with exactly
that; a kernel that is not in the cache is compiled by Numba's compiler as before,
which refreshes the context itself.

:func:`load_cached_without_compiler` switches the dispatchers of one kernel module to
it. Only modules whose kernels call nothing beyond Numba's runtime, its C helpers and
its thread pool opt in (no typed containers, no hashing of strings, no object mode);
tests/test_perf_paths.py loads every opted-in kernel from a warm cache in a fresh
process this way and checks its results. With a Numba whose cache internals differ,
nothing is switched and Numba's own path runs.
"""
from numba.core.caching import FunctionCache
from numba.core.registry import CPUDispatcher

_INTERNALS = ("_load_overload", "_guard_against_spurious_io_errors")


class RuntimeOnlyCache(FunctionCache):
    """``FunctionCache`` whose loads initialise NRT instead of refreshing the whole
    target context."""

    def load_overload(self, sig, target_context):
        from numba.core.runtime.nrt import rtsys
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)


def supported() -> bool:
    """True when this Numba's FunctionCache has the internals RuntimeOnlyCache uses."""
    return all(hasattr(FunctionCache, name) for name in _INTERNALS)


def load_cached_without_compiler(namespace: dict) -> int:
    """Switch the cached CPU dispatchers defined in ``namespace`` (a kernel module's
    ``globals()``) to :class:`RuntimeOnlyCache`; returns how many were switched."""
    if not supported():
        return 0
    module = namespace.get("__name__")
    switched = 0
    for obj in list(namespace.values()):
        if isinstance(obj, CPUDispatcher) and type(obj._cache) is FunctionCache \
                and obj.py_func.__module__ == module:
            obj._cache.__class__ = RuntimeOnlyCache
            switched += 1
    return switched
