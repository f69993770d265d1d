"""Weighted draws straight from Q values, without materialising the weights.

``sample_from_q(q, n, seed=s, ...)`` returns the indices of
``sample_indices(importance_weights(q, normalize=False, ...), n, seed=s)`` on every
backend. The cpu and cuda kernels compute the block totals of the weights in one
read-only pass over q, then recompute the weights only inside the blocks that draws
land in: no (N,) array is written. The oracle is that composition itself.

(The module is not named ``sample_from_q``: importing it would then replace the
function ``zp_ref.sample_from_q`` by the module.)
"""
from __future__ import annotations

import numpy as np

from ._validation import as_float_array, check_choice, check_seed
from .backends import resolve_backend
from .kernels import threads_for
from .kernels.cpu_sampling import check_weight_sums
from .kernels.cpu_weights import power_mode
from .rng import STREAMS, check_draw_count, key_of
from .sampling import sample_indices
from .tensors import tensor_io
from .weighting import NAN_POLICIES, _check_nan, check_weight_config, importance_weights

#: Weights computed from q are finite and >= 0: only their total can fail the checks
#: of sampling (a zero or overflowing total), so those checks see no entries.
_NO_BAD_ENTRIES = np.empty(0)


@tensor_io(q_args=("q",), returns="index")
def sample_from_q(q, n, *, seed, weight_power=2.0, min_q_abs=1e-6, max_weight=100.0,
                  temperature=1.0, replace=True, nan_policy="raise",
                  backend="auto") -> np.ndarray:
    """Draw ``n`` indices of the pool ``q`` in proportion to its importance weights.

    The weights are ``min(max(|q|, min_q_abs)**-p, max_weight)**(1/T)``: exactly
    ``sample_indices(importance_weights(q, normalize=False, ...), n, seed=seed,
    replace=replace)`` on the same backend, with the same errors.

    With replacement the cpu and cuda backends never store the weights: besides the
    output, the extra memory is under 0.2 bytes per entry (block totals, ends, guide
    table and counts, per PREFIX_BLOCK entries) and 12 bytes per draw (plus a copy of
    q on cpu when NaNs are omitted). ``replace=False`` needs a key per entry, so it
    computes the weights first (8 bytes per entry).

    Parameters
    ----------
    q : array_like or torch.Tensor, shape (N,) or (N, 1)
        Real Q values of the pool (``+-inf``: weight 0).
    n : int
        Number of draws, >= 0.
    seed : int
        Seed in [0, 2**64).
    weight_power, min_q_abs, max_weight, temperature : float
        As in :func:`importance_weights` (defaults 2.0, 1e-6, 100.0, 1.0).
    replace : bool, default True
        Draw with replacement.
    nan_policy : {"raise", "omit"}, default "raise"
        As in :func:`importance_weights`.
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.

    Returns
    -------
    numpy.ndarray
        int64, shape (n,) (a tensor on q's device for a tensor q).
    """
    p, min_q_abs, max_weight, temperature = check_weight_config(
        weight_power, min_q_abs, max_weight, temperature)
    config = dict(weight_power=p, min_q_abs=min_q_abs, max_weight=max_weight,
                  temperature=temperature)
    check_choice(nan_policy, "nan_policy", NAN_POLICIES)
    q = as_float_array(q, "q")
    n = check_draw_count(n, "n")
    seed = check_seed(seed)
    if not isinstance(replace, (bool, np.bool_)):
        raise TypeError(f"replace must be True or False, got {replace!r}")
    backend = resolve_backend(backend, q.size)
    if backend == "numpy" or not replace:
        w = importance_weights(q, normalize=False, nan_policy=nan_policy, backend=backend,
                               **config)
        return sample_indices(w, n, seed=seed, replace=replace, backend=backend)
    params = (p, power_mode(p), min_q_abs, max_weight, 1.0 / temperature)
    key = key_of(seed, STREAMS["importance"])
    if backend == "cpu":
        return _sample_from_q_cpu(q, n, key, params, nan_policy)
    return _sample_from_q_cuda(q, n, key, params, nan_policy)


def _sample_from_q_cpu(q, n, key, params, nan_policy):
    from .kernels.cpu_sample_from_q import block_ends_from_q, draws_from_q_cpu
    with threads_for(q.size + n):
        ends = block_ends_from_q(q, params)
        if np.isnan(ends[-1]):              # weights are >= 0: a NaN total is a NaN in q
            nan = np.isnan(q)
            _check_nan(q, int(nan.sum()), nan_policy)
            q = np.where(nan, np.inf, q)     # omitted: weight 0, as the oracle does
            ends = block_ends_from_q(q, params)
        check_weight_sums(_NO_BAD_ENTRIES, 0, ends[-1])
        return draws_from_q_cpu(q, params, ends, n, key)


def _sample_from_q_cuda(q, n, key, params, nan_policy):
    from numba import cuda

    from .kernels.gpu_sample_from_q import block_ends_from_q_device, draws_from_q_device
    q_dev = cuda.to_device(q)
    ends, total, n_nan, last_positive = block_ends_from_q_device(q_dev, params)
    _check_nan(q, n_nan, nan_policy)
    check_weight_sums(_NO_BAD_ENTRIES, 0, total)
    return draws_from_q_device(q_dev, params, ends, total, last_positive, n,
                               key).copy_to_host()
