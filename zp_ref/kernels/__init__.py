"""Compiled kernels. ``cpu_*`` modules hold Numba CPU kernels, ``gpu_*`` modules
their numba.cuda twins (imported only when the cuda backend is used); ``common``,
``counter_rng``, ``checks`` and ``gpu_launch`` hold what they share. The NumPy
oracle of each algorithm lives beside its public API (weighting.py, sampling.py,
...), where it doubles as the specification; host drivers that keep state live there
too (zp_ref.refinement.cpu / .cuda).

Kernels are leaves: modules here import only numpy, numba, math, the standard library
and zp_ref.kernels.* (tests/test_imports.py)."""
from contextlib import contextmanager

#: Work items below which parallel kernels run on the calling thread alone (and the
#: refinement runs its serial kernels): waking worker threads costs more than the work,
#: and on a busy machine a parallel region can wait milliseconds for a descheduled
#: worker. The one small-work threshold of zp_ref.
PARALLEL_MIN_WORK = 1 << 18


@contextmanager
def threads_for(work: int):
    """Run the Numba kernels inside on one thread when ``work`` is small.

    Results never depend on the thread count (every kernel's reduction order is
    fixed), only the speed does."""
    if work >= PARALLEL_MIN_WORK:
        yield
        return
    import numba
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
