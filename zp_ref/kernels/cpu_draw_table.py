"""Numba CPU kernels of :class:`zp_ref.draw_table.DrawTable`: the local prefix sums of
every PREFIX_BLOCK block, built once, then draws resolved against them.

``build_local_prefix_sums`` stores what ``cpu_sampling.resolve_draws`` recomputes on
every call (``local_prefix_sums``), so a draw compares the same
``offsets[b] + local[b, i]`` with the same target: the indices of
``sample_with_replacement_cpu``, bit for bit.
"""
from numba import njit, prange

from .cpu_sampling import _GROUP, local_prefix_sums, resolve_group


@njit(parallel=True, cache=True)
def build_local_prefix_sums(w, local, parts):
    """local[b] (float64 (nb, PREFIX_BLOCK)) = sequential prefix sums of block b of w,
    +inf past the end of a short last block."""
    nb = local.shape[0]
    n_groups = (nb + _GROUP - 1) // _GROUP
    for part in prange(parts):
        for g in range(part * n_groups // parts, (part + 1) * n_groups // parts):
            b0 = g * _GROUP
            local_prefix_sums(w, b0, nb, local[b0:b0 + _GROUP])


@njit(parallel=True, cache=True)
def resolve_draws_from_table(key, total, n_pool, offsets, local, starts, grouped, out, parts):
    """``cpu_sampling.resolve_draws`` with the stored local prefix sums."""
    nb = offsets.size
    n_groups = (nb + _GROUP - 1) // _GROUP
    for part in prange(parts):
        for g in range(part * n_groups // parts, (part + 1) * n_groups // parts):
            b0 = g * _GROUP
            if starts[b0] == starts[min(nb, b0 + _GROUP)]:
                continue
            resolve_group(key, total, n_pool, offsets, starts, grouped, out, b0,
                          min(_GROUP, nb - b0), local[b0:b0 + _GROUP])


@njit(cache=True)
def last_positive(w):
    """The last index with w > 0 (-1 when none): a backward scan that stops there."""
    for i in range(w.size - 1, -1, -1):
        if w[i] > 0.0:
            return i
    return -1
