"""Repeated weighted draws from fixed weights, the setup done once.

``DrawTable(w).sample(n, seed=s)`` returns ``sample_indices(w, n, seed=s)`` (with
replacement) on the same backend. The table keeps what every call of
``sample_indices`` would rebuild: the block ends of the prefix sums (the pass over
all N weights), the guide table over them and the last positive index, so a call
only locates, groups and resolves its draws. Like scipy's ``DiscreteGuideTable``, it
copies what it needs: changing ``w`` afterwards does not change its draws.
"""
from __future__ import annotations

import numpy as np

from ._validation import check_seed
from .backends import resolve_backend
from .kernels import threads_for
from .rng import STREAMS, check_draw_count, key_of
from .sampling import check_weight_values, check_weights, draws_from_prefix_sums, prefix_sums
from .tensors import index_like, promoted_ref, q_to_numpy


class DrawTable:
    """Weighted draws with replacement from fixed weights.

    Memory: 8 bytes per entry (numpy: the prefix sums; cpu and cuda: a copy of the
    weights, on the device for cuda) plus, on cpu, 32 bytes per block of
    PREFIX_BLOCK entries (block ends, offsets, guide table).

    Parameters
    ----------
    weights : array_like or torch.Tensor, shape (N,)
        Finite weights >= 0 with a positive total (the errors of ``sample_indices``).
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.
    """

    def __init__(self, weights, *, backend="auto"):
        w = check_weights(q_to_numpy(weights, "weights"))      # as sample_indices reads them
        self._ref = promoted_ref(weights)     # tensor weights: draws as int64 tensors there
        self.backend = resolve_backend(backend, w.size)
        self.size = w.size
        if self.backend == "numpy":
            check_weight_values(w)
            self._prefix = prefix_sums(w)
            self.total = float(self._prefix[-1])
            self._last_positive = int(np.flatnonzero(w)[-1])
        elif self.backend == "cpu":
            self._init_cpu(w)
        else:
            self._init_cuda(w)

    def _init_cpu(self, w):
        from .kernels.cpu_draw_table import last_positive
        from .kernels.cpu_sampling import checked_block_ends, guide_table
        with threads_for(w.size):
            self._ends = checked_block_ends(w)
        self._w = w.copy()
        self._offsets = np.concatenate(([0.0], self._ends[:-1]))
        self._guide = guide_table(self._ends)
        self.total = float(self._ends[-1])
        self._last_positive = last_positive(w)

    def _init_cuda(self, w):
        from numba import cuda

        from .kernels.gpu_sampling import prefix_ends_device
        self._w_dev = cuda.to_device(w)
        self._ends, self.total, _, self._last_positive = prefix_ends_device(self._w_dev, w)

    def sample(self, n, *, seed) -> np.ndarray:
        """``n`` indices drawn with probability proportional to the weights.

        Parameters
        ----------
        n : int
            Number of draws, >= 0.
        seed : int
            Seed in [0, 2**64).

        Returns
        -------
        numpy.ndarray
            int64, shape (n,), equal to ``sample_indices(weights, n, seed=seed)`` (an int64
            tensor on the weights' device when the table was built from a tensor).
        """
        idx = self._sample(n, seed)
        return idx if self._ref is None else index_like(idx, self._ref)

    def _sample(self, n, seed) -> np.ndarray:
        n = check_draw_count(n, "n")
        seed = check_seed(seed)
        if self.backend == "numpy":
            return draws_from_prefix_sums(self._prefix, self._last_positive, n, seed)
        key = key_of(seed, STREAMS["importance"])
        if n == 0:
            return np.empty(0, dtype=np.int64)
        if self.backend == "cpu":
            return self._sample_cpu(n, key)
        return self._sample_cuda(n, key)

    def _sample_cpu(self, n, key):
        from .kernels.cpu_sampling import group_draws, resolve_draws
        out = np.empty(n, dtype=np.int64)
        nb = self._ends.size
        with threads_for(self.size + n):
            starts, grouped = group_draws(key, self._ends, self._guide, n)
            resolve_draws(key, self.total, self._w, self._offsets, starts, grouped, out,
                          min(nb, 64))
        out[grouped[starts[nb]:]] = self._last_positive   # t rounded up to the total
        return out

    def _sample_cuda(self, n, key):
        from numba import cuda

        from .kernels.gpu_sampling import RESOLVE_THREADS, group_draws_device, resolve_draws
        out = cuda.device_array(n, dtype=np.int64)
        starts, grouped = group_draws_device(key, self.total, self._ends, n)
        resolve_draws[self._ends.size + 1, RESOLVE_THREADS](
            key, self.total, self._w_dev, self._ends, starts, grouped,
            np.int64(self._last_positive), out)
        return out.copy_to_host()
