"""Numba CPU kernels of ``sample_from_q``: weighted draws straight from Q values.

The weights ``w_i = importance_weight(q_i)`` (:mod:`.cpu_weights`) are never stored.
A group of four PREFIX_BLOCK blocks at a time, they are written into a small scratch
array that stays in L1 (the vectorised ``fill_weights`` loop) and summed there. A
read-only pass over q keeps only the block totals; the draws are then grouped by block
(``group_draws``) and every group that holds a draw recomputes its weights, their
``local_prefix_sums`` and resolves its draws (``resolve_group``, both of
:mod:`.cpu_sampling`).
Same weights, same adds in the same order: the indices of
``sample_with_replacement_cpu(importance_weights_cpu(q))``, bit for bit.

``params`` is the tuple ``(p, power_mode(p), min_q_abs, max_weight, 1 / temperature)``.
A NaN in q has a NaN weight for every power (``importance_weight`` selects it), so it
makes the block totals and their ends NaN: the caller tests ``ends[-1]`` and, when it
omits NaNs, maps them to inf (weight 0) and sums again. No NaN branch in the kernels:
one keeps LLVM from vectorising the weight loop.
"""
import numpy as np
from numba import njit, prange

from .cache_loading import load_cached_without_compiler
from .cpu_sampling import (_GROUP, PREFIX_BLOCK, group_draws, guide_table, local_prefix_sums,
                           resolve_group)
from .cpu_weights import fill_weights, importance_weight

#: Pool entries per group of blocks (the scratch size).
GROUP_SIZE = _GROUP * PREFIX_BLOCK


@njit(cache=True, inline="always")
def group_weights(q, b0, params, scratch):
    """scratch[:size] = the weights of blocks b0 .. b0 + 3 (vectorised); returns size,
    the entries of the group (< GROUP_SIZE only for the last group)."""
    p, mode, min_q_abs, max_weight, inv_temperature = params
    lo = b0 * PREFIX_BLOCK
    size = min(q.size, lo + GROUP_SIZE) - lo
    fill_weights(q, lo, lo + size, scratch, 0, p, mode, min_q_abs, max_weight, inv_temperature)
    return size


@njit(cache=True, inline="always")
def group_block_totals(scratch, size, totals, b0):
    """totals[b0 + r] = sequential sum of scratch[r * PREFIX_BLOCK:(r + 1) * PREFIX_BLOCK]
    (cpu_sampling.block_totals' order): four chains side by side for a full group."""
    B = PREFIX_BLOCK
    if size == GROUP_SIZE:
        s0 = s1 = s2 = s3 = 0.0
        for k in range(B):
            s0 += scratch[k]
            s1 += scratch[B + k]
            s2 += scratch[2 * B + k]
            s3 += scratch[3 * B + k]
        totals[b0] = s0
        totals[b0 + 1] = s1
        totals[b0 + 2] = s2
        totals[b0 + 3] = s3
        return
    for r in range((size + B - 1) // B):
        s = 0.0
        for k in range(r * B, min(size, (r + 1) * B)):
            s += scratch[k]
        totals[b0 + r] = s


@njit(parallel=True, cache=True)
def block_totals_from_q(q, params, totals, parts):
    """totals[b] = sequential sum of the weights of block b, one read of q; ``parts``
    contiguous runs of groups run in parallel."""
    n_groups = (totals.size + _GROUP - 1) // _GROUP
    for part in prange(parts):
        scratch = np.empty(GROUP_SIZE)
        for g in range(part * n_groups // parts, (part + 1) * n_groups // parts):
            b0 = g * _GROUP
            group_block_totals(scratch, group_weights(q, b0, params, scratch), totals, b0)


@njit(parallel=True, cache=True)
def resolve_draws_from_q(key, total, q, params, offsets, starts, grouped, out, parts):
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
            size = group_weights(q, b0, params, scratch)
            count = local_prefix_sums(scratch[:size], 0, min(_GROUP, nb - b0), local)
            resolve_group(key, total, n, offsets, starts, grouped, out, b0, count, local)


@njit(cache=True, error_model="numpy")
def last_positive_weight(q, params):
    """The last index whose weight is > 0 (-1 when none). NumPy's error model, as in the
    parallel kernels: 1 / a**p with a**p underflowing to 0 is inf (then capped), not
    a ZeroDivisionError."""
    p, mode, min_q_abs, max_weight, inv_temperature = params
    for i in range(q.size - 1, -1, -1):
        if importance_weight(q[i], p, mode, min_q_abs, max_weight, inv_temperature) > 0.0:
            return i                      # a NaN weight fails the test: weight 0 or refused
    return -1


def parts_for(n_blocks: int) -> int:
    """Contiguous runs of block groups handed to the threads (load balance)."""
    return max(1, min(64, (n_blocks + _GROUP - 1) // _GROUP))


def block_ends_from_q(q, params) -> np.ndarray:
    """Block ends (float64 (nb,)): np.add.accumulate of the block totals of the
    weights, as cpu_sampling.checked_block_ends computes them from stored weights."""
    totals = np.empty((q.size + PREFIX_BLOCK - 1) // PREFIX_BLOCK)
    block_totals_from_q(q, params, totals, parts_for(totals.size))
    return np.add.accumulate(totals)


def draws_from_q_cpu(q, params, ends, n, key) -> np.ndarray:
    """int64 (n,): the draws of stream ``key`` given the checked block ends."""
    out = np.empty(n, dtype=np.int64)
    if n == 0:
        return out
    nb = ends.size
    offsets = np.concatenate(([0.0], ends[:-1]))
    starts, grouped = group_draws(key, ends, guide_table(ends), n)
    resolve_draws_from_q(key, ends[-1], q, params, offsets, starts, grouped, out, parts_for(nb))
    corner = grouped[starts[nb]:]
    if corner.size:                       # t rounded up to the total: last positive weight
        out[corner] = last_positive_weight(q, params)
    return out


load_cached_without_compiler(globals())   # cache loads skip Numba's compiler setup
