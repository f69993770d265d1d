"""Compiled kernels. ``cpu_*`` modules hold Numba CPU kernels, ``gpu_*`` modules
their numba.cuda twins (imported only when the cuda backend is used); ``common``,
``counter_rng``, ``checks`` and ``gpu_launch`` hold what they share. The NumPy
oracle of each algorithm lives beside its public API (weighting.py, sampling.py,
...), where it doubles as the specification; host drivers that keep state live there
too (zp_ref.refinement.cpu / .cuda).

Kernels are leaves: modules here import only numpy, numba, math, the standard library
and zp_ref.kernels.* (tests/test_imports.py).

Importing this package, before any parallel kernel runs, prepares Numba's threading
layer (docs/sampling.md, "Threads, fork and the threading layer"): TBB, which is both
thread-safe and fork-safe, when the ``tbb`` package is installed; else ``workqueue``
(fork-safe) with calls serialised by a lock, rather than GNU OpenMP, which kills a
forked child. A layer the user chose (``NUMBA_THREADING_LAYER`` or
``NUMBA_THREADING_LAYER_PRIORITY``) is kept, and also serialised if it is workqueue.
"""
import ctypes
import functools
import os
import site
import sys
import threading
from contextlib import contextmanager

from .numba_cache import configure_numba_cache

configure_numba_cache()                       # before any kernel module compiles

import numba  # noqa: E402

#: Work items below which parallel kernels run on the calling thread alone: waking
#: worker threads costs more than the work, and on a busy machine a parallel region
#: can wait milliseconds for a descheduled worker. The one small-work threshold of zp_ref
#: (the refinement runs its serial kernels below it too).
PARALLEL_MIN_WORK = 1 << 18

#: The layers tried when the user chose none: TBB first; workqueue before omp because
#: GNU OpenMP aborts a forked child's first parallel region.
LAYER_PRIORITY = ["tbb", "workqueue", "omp"]

_TBB_NAMES = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}


def _tbb_candidates():
    """Paths where pip puts the ``tbb`` wheel's library: ``<prefix>/lib`` (venv or
    system), the user base, and Windows' ``Library/bin``; the bare name last (the
    loader's own search path)."""
    name = _TBB_NAMES.get(sys.platform, "libtbb.so.12")
    roots = [sys.prefix, sys.base_prefix, site.USER_BASE or ""]
    paths = [os.path.join(r, sub, name) for r in roots if r
             for sub in ("lib", os.path.join("Library", "bin"))]
    return [p for p in paths if os.path.exists(p)] + [name]


def load_tbb() -> bool:
    """Load the TBB runtime (globally, so Numba's tbbpool links to it); True on success."""
    for path in _tbb_candidates():
        try:
            ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
            return True
        except OSError:
            continue
    return False


def _prepare_threading_layer() -> None:
    """Load TBB (so that a user's ``NUMBA_THREADING_LAYER=tbb`` works too) and set
    Numba's layer order, unless the user chose one or Numba's threads already run."""
    from numba.np.ufunc import parallel
    if parallel._is_initialized:          # too late: another library launched them
        return
    load_tbb()
    if {"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & set(os.environ):
        return
    numba.config.THREADING_LAYER_PRIORITY = list(LAYER_PRIORITY)


_prepare_threading_layer()

#: Serialises kernel launches when the active layer is workqueue (not thread-safe).
_launch_lock = threading.RLock()
_layer = None


def threading_layer() -> str:
    """The Numba threading layer of this process (starts Numba's threads if needed)."""
    global _layer
    if _layer is None:
        numba.get_num_threads()           # launches the thread pool: the layer is fixed
        _layer = numba.threading_layer()
    return _layer


@contextmanager
def serialised():
    """Hold the launch lock while the kernels inside run, when the layer is workqueue
    (not thread-safe); otherwise nothing. Re-entrant (an RLock)."""
    serialise = threading_layer() == "workqueue"
    if serialise:
        _launch_lock.acquire()
    try:
        yield
    finally:
        if serialise:
            _launch_lock.release()


def serialised_method(method):
    """Decorator: run ``method`` inside :func:`serialised` (host drivers of kernels)."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with serialised():
            return method(*args, **kwargs)
    return wrapper


@contextmanager
def threads_for(work: int):
    """Run the Numba kernels inside on one thread when ``work`` is small, one caller
    at a time when the layer is workqueue.

    Results never depend on the thread count (every kernel's reduction order is
    fixed), only the speed does."""
    with serialised():
        if work >= PARALLEL_MIN_WORK:
            yield
            return
        previous = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            yield
        finally:
            numba.set_num_threads(previous)
