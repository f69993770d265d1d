"""Numba CPU kernels of ``sample_from_q``: weighted draws straight from Q values.

The weights ``w_i = importance_weight(q_i)`` (:mod:`.cpu_weights`) are never stored.
A group of four PREFIX_BLOCK blocks at a time, they are written into a small scratch
array that stays in L1 (the vectorised ``fill_weights`` loop) and summed there by
``local_prefix_sums`` of :mod:`.cpu_sampling`. A read-only pass over q keeps only the
block totals; the draws are then grouped by block (``group_draws``) and every group
that holds a draw recomputes its weights and resolves its draws (``resolve_group``).
Same weights, same adds in the same order: the indices of
``sample_with_replacement_cpu(importance_weights_cpu(q))``, bit for bit.

``params`` is the tuple ``(p, power_mode(p), min_q_abs, max_weight, 1 / temperature)``;
``zero_nan`` gives NaN inputs weight 0 (the slow path, only when q holds a NaN).
"""
import numpy as np
from numba import njit, prange

from .cpu_sampling import (_GROUP, PREFIX_BLOCK, group_draws, guide_table, local_prefix_sums,
                           resolve_group)
from .cpu_weights import fill_weights, importance_weight

#: Pool entries per group of blocks (the scratch size).
GROUP_SIZE = _GROUP * PREFIX_BLOCK


@njit(cache=True, inline="always")
def group_prefix_sums(q, b0, nb, params, zero_nan, scratch, local):
    """local[r] = prefix sums of the weights of block b0 + r, r < count (short blocks
    padded with +inf); returns count, the blocks in the group."""
    p, mode, min_q_abs, max_weight, inv_temperature = params
    lo = b0 * PREFIX_BLOCK
    size = min(q.size, lo + GROUP_SIZE) - lo
    fill_weights(q, lo, lo + size, scratch, 0, p, mode, min_q_abs, max_weight, inv_temperature)
    if zero_nan:
        for k in range(size):
            if scratch[k] != scratch[k]:
                scratch[k] = 0.0
    return local_prefix_sums(scratch[:size], 0, min(_GROUP, nb - b0), local)


@njit(parallel=True, cache=True)
def block_totals_from_q(q, params, zero_nan, totals, parts):
    """totals[b] = sequential sum of the weights of block b (= its last local prefix
    sum), one read of q; ``parts`` contiguous runs of groups run in parallel."""
    n, nb = q.size, totals.size
    n_groups = (nb + _GROUP - 1) // _GROUP
    for part in prange(parts):
        scratch = np.empty(GROUP_SIZE)
        local = np.empty((_GROUP, PREFIX_BLOCK))
        for g in range(part * n_groups // parts, (part + 1) * n_groups // parts):
            b0 = g * _GROUP
            for r in range(group_prefix_sums(q, b0, nb, params, zero_nan, scratch, local)):
                b = b0 + r
                totals[b] = local[r, min(n, (b + 1) * PREFIX_BLOCK) - b * PREFIX_BLOCK - 1]


@njit(parallel=True, cache=True)
def resolve_draws_from_q(key, total, q, params, zero_nan, offsets, starts, grouped, out, parts):
    """``resolve_draws`` of cpu_sampling with the weights recomputed from q, only in
    the groups of blocks that hold a draw."""
    n, nb = q.size, offsets.size
    n_groups = (nb + _GROUP - 1) // _GROUP
    for part in prange(parts):
        scratch = np.empty(GROUP_SIZE)
        local = np.empty((_GROUP, PREFIX_BLOCK))
        for g in range(part * n_groups // parts, (part + 1) * n_groups // parts):
            b0 = g * _GROUP
            if starts[b0] == starts[min(nb, b0 + _GROUP)]:
                continue
            count = group_prefix_sums(q, b0, nb, params, zero_nan, scratch, local)
            resolve_group(key, total, n, offsets, starts, grouped, out, b0, count, local)


@njit(cache=True)
def last_positive_weight(q, params):
    """The last index whose weight is > 0 (-1 when none)."""
    p, mode, min_q_abs, max_weight, inv_temperature = params
    for i in range(q.size - 1, -1, -1):
        if importance_weight(q[i], p, mode, min_q_abs, max_weight, inv_temperature) > 0.0:
            return i                      # a NaN weight fails the test: weight 0 or refused
    return -1


def parts_for(n_blocks: int) -> int:
    """Contiguous runs of block groups handed to the threads (load balance)."""
    return max(1, min(64, (n_blocks + _GROUP - 1) // _GROUP))


def block_ends_from_q(q, params, zero_nan) -> np.ndarray:
    """Block ends (float64 (nb,)): np.add.accumulate of the block totals of the
    weights, as cpu_sampling.checked_block_ends computes them from stored weights."""
    totals = np.empty((q.size + PREFIX_BLOCK - 1) // PREFIX_BLOCK)
    block_totals_from_q(q, params, zero_nan, totals, parts_for(totals.size))
    return np.add.accumulate(totals)


def draws_from_q_cpu(q, params, zero_nan, ends, n, key) -> np.ndarray:
    """int64 (n,): the draws of stream ``key`` given the checked block ends."""
    out = np.empty(n, dtype=np.int64)
    if n == 0:
        return out
    nb = ends.size
    offsets = np.concatenate(([0.0], ends[:-1]))
    starts, grouped = group_draws(key, ends, guide_table(ends), n)
    resolve_draws_from_q(key, ends[-1], q, params, zero_nan, offsets, starts, grouped, out,
                         parts_for(nb))
    corner = grouped[starts[nb]:]
    if corner.size:                       # t rounded up to the total: last positive weight
        out[corner] = last_positive_weight(q, params)
    return out
