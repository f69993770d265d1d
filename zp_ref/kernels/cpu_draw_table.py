"""Numba CPU kernel of :class:`zp_ref.draw_table.DrawTable` (its draws reuse
:mod:`.cpu_sampling`'s ``group_draws`` and ``resolve_draws``).

Storing every block's local prefix sums instead of the weights was tried and dropped:
a binary search in a stored 4 KiB row misses the cache at each step, while the
sequential rebuild of the row is streamed (10**6 draws from 10**7 weights: 38 ms
against 23 ms on one thread).
"""
from numba import njit

from .cache_loading import load_cached_without_compiler


@njit(cache=True)
def last_positive(w):
    """The last index with w > 0 (-1 when none): a backward scan that stops there."""
    for i in range(w.size - 1, -1, -1):
        if w[i] > 0.0:
            return i
    return -1


load_cached_without_compiler(globals())   # cache loads skip Numba's compiler setup
