"""Seeded draws from weights: with replacement (inverse CDF on blockwise prefix
sums), without replacement (log-space keys in the Efraimidis-Spirakis order), uniform
and hybrid batches.

The ``_numpy`` functions are the oracle: the contract in plain NumPy. Every draw
is a pure function of (weights, n, seed); see docs/sampling.md.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields

import numpy as np

from .tensors import pool_io, tensor_io
from ._validation import as_float_array, check_count, check_real, check_seed
from .backends import resolve_backend
from .kernels import threads_for
from .kernels.common import PREFIX_BLOCK
from .kernels.cpu_sampling import check_weight_sums
from .rng import STREAMS, call_seed, check_draw_count, key_of, uniforms
from .shuffle import shuffle_order
from .state import STATE_VERSION, check_state, config_fields


# --- the oracle -----------------------------------------------------------------------

@tensor_io(other_args=("w",), returns="float64")
def prefix_sums(w: np.ndarray) -> np.ndarray:
    """The prefix sums C that define every weighted draw.

    Blocks of PREFIX_BLOCK entries are summed sequentially (``local``); block ends
    are added sequentially (``ends``); ``C[i] = ends[b-1] + local[i]`` for i in block
    b. So ``C[-1] == ends[-1]`` is the total, C is non-decreasing, and blocks can be
    processed in parallel with bit-identical results.

    Parameters
    ----------
    w : numpy.ndarray, shape (N,)
        Finite weights >= 0.

    Returns
    -------
    numpy.ndarray
        float64, shape (N,); a float64 tensor on w's device for tensor ``w``.
    """
    w = as_float_array(w, "weights", finite=True)
    if (w < 0).any():
        first = int(np.argmax(w < 0))
        raise ValueError(f"weights must be >= 0: {int((w < 0).sum())} negative value(s), "
                         f"first at index {first} ({w[first]})")
    n_blocks = -(-w.size // PREFIX_BLOCK)
    padded = np.zeros(n_blocks * PREFIX_BLOCK)
    padded[:w.size] = w
    local = np.cumsum(padded.reshape(n_blocks, PREFIX_BLOCK), axis=1)  # sequential per row
    ends = np.cumsum(local[:, -1])                                      # sequential
    offsets = np.concatenate(([0.0], ends[:-1]))
    return (offsets[:, None] + local).ravel()[:w.size]


def _with_replacement_numpy(w, n, seed):
    return draws_from_prefix_sums(prefix_sums(w), int(np.flatnonzero(w)[-1]), n, seed)


def draws_from_prefix_sums(C, last_positive, n, seed):
    """The oracle's draws given C = prefix_sums(w) and the last index with w > 0."""
    t = uniforms(seed, STREAMS["importance"], n, backend="numpy") * C[-1]
    idx = np.searchsorted(C, t, side="right")
    # u < 1, but u * C[-1] can round up to C[-1]: such a draw takes the last positive weight
    return np.minimum(idx, last_positive).astype(np.int64)


def without_replacement_keys_numpy(w_positive, u):
    """Keys ``log(w) - log(-log(u))`` (-inf for u = 0) of positive weights: the order of
    the Efraimidis-Spirakis keys log(u) / w, finite for subnormal and huge weights."""
    with np.errstate(divide="ignore"):
        return np.log(w_positive) - np.log(-np.log(u))


def _without_replacement_numpy(w, n, seed):
    positive = np.flatnonzero(w > 0)
    u = uniforms(seed, STREAMS["without_replacement"], w.size, backend="numpy")[positive]
    keys = without_replacement_keys_numpy(w[positive], u)
    order = np.lexsort((positive, -keys))      # largest key first, ties to the lower index
    return positive[order[:n]].astype(np.int64)


def _uniform_numpy(pool_size, n, seed):
    u = uniforms(seed, STREAMS["uniform"], n, backend="numpy")
    return np.minimum(np.floor(u * pool_size), pool_size - 1).astype(np.int64)


# --- public API -------------------------------------------------------------------------

def check_weights(weights, name="weights") -> np.ndarray:
    """Weights as float64 (N,), N >= 1 (value checks happen in the first pass)."""
    return as_float_array(weights, name)


@tensor_io(q_args=("weights",), returns="index")
def sample_indices(weights, n, *, seed, replace=True, backend="auto") -> np.ndarray:
    """Draw ``n`` indices with probability proportional to ``weights``.

    With replacement: ``idx_j = searchsorted(C, u(seed, 0, j) * C[-1], "right")`` with
    C = :func:`prefix_sums`. Without replacement: the ``n`` largest keys
    ``log(w_i) - log(-log(u(seed, 1, i)))`` (the order of the Efraimidis-Spirakis keys
    log(u) / w_i), in decreasing key order, ties to the lower index.
    Zero weights are never drawn.

    Parameters
    ----------
    weights : array_like or torch.Tensor, shape (N,)
        Finite weights >= 0 with a positive total (need not be normalised).
    n : int
        Number of draws, >= 0 (at most the number of positive weights without
        replacement).
    seed : int
        Seed in [0, 2**64).
    replace : bool, default True
        Draw with replacement.
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.

    Returns
    -------
    numpy.ndarray
        int64, shape (n,), indices into ``weights`` (an int64 tensor on the weights'
        device for a tensor).
    """
    w = check_weights(weights)
    n = check_draw_count(n, "n")
    seed = check_seed(seed)
    if not isinstance(replace, (bool, np.bool_)):
        raise TypeError(f"replace must be True or False, got {replace!r}")
    backend = resolve_backend(backend, w.size)
    if not replace:
        return _sample_without_replacement(w, n, seed, backend)
    if backend == "numpy":
        check_weight_values(w)
        return _with_replacement_numpy(w, n, seed)
    key = key_of(seed, STREAMS["importance"])
    if backend == "cpu":
        from .kernels.cpu_sampling import sample_with_replacement_cpu
        with threads_for(w.size + n):
            return sample_with_replacement_cpu(w, n, key)
    from .kernels.gpu_sampling import sample_with_replacement_gpu
    return sample_with_replacement_gpu(w, n, key)


def check_weight_values(w) -> None:
    """The contract's errors for negative, non-finite or all-zero weights (one pass)."""
    with np.errstate(over="ignore"):
        check_weight_sums(w, int((w < 0).sum()), w.sum())


def _sample_without_replacement(w, n, seed, backend):
    check_weight_values(w)
    n_positive = int(np.count_nonzero(w))
    if n > n_positive:
        raise ValueError(f"n={n} draws without replacement need at least n positive weights; "
                         f"weights has {n_positive}")
    if backend == "numpy":
        return _without_replacement_numpy(w, n, seed)
    key = key_of(seed, STREAMS["without_replacement"])
    if backend == "cpu":
        from .kernels.cpu_sampling import sample_without_replacement_cpu
        with threads_for(w.size):
            return sample_without_replacement_cpu(w, n, key)
    from .kernels.gpu_sampling import sample_without_replacement_gpu
    return sample_without_replacement_gpu(w, n, key)


def uniform_indices(pool_size, n, *, seed, backend="auto") -> np.ndarray:
    """Uniform draws: ``floor(u(seed, 2, j) * pool_size)``, clamped to pool_size - 1.

    Parameters
    ----------
    pool_size : int
        N >= 1.
    n : int
        Number of draws, >= 0.
    seed : int
        Seed in [0, 2**64).
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.

    Returns
    -------
    numpy.ndarray
        int64, shape (n,), in [0, pool_size).
    """
    pool_size = check_count(pool_size, "pool_size", minimum=1)
    if pool_size > 2**53:
        raise ValueError(f"pool_size must be at most 2**53 (the index floor(u * pool_size) is "
                         f"computed in float64), got {pool_size}")
    n = check_draw_count(n, "n")
    seed = check_seed(seed)
    backend = resolve_backend(backend, n)
    if backend == "numpy":
        return _uniform_numpy(pool_size, n, seed)
    u = uniforms(seed, STREAMS["uniform"], n, backend=backend)
    return np.minimum(np.floor(u * pool_size), pool_size - 1).astype(np.int64)


@tensor_io(q_args=("weights",), returns="index_float")
def hybrid_indices(weights, n, *, ratio, seed, backend="auto"):
    """A hybrid batch: ``floor(n * ratio)`` importance draws then uniform ones.

    The batch is shuffled by ``argsort(u(seed, 3, 0..n-1))`` (stable). The likelihood
    ratio is ``1 / (N * m_i)`` with ``m_i = ratio * pi_i + (1 - ratio) / N`` and
    ``pi = w / C[-1]``: weighting a per-sample loss by it keeps its mean unbiased for the
    uniform mean.

    Parameters
    ----------
    weights : array_like or torch.Tensor, shape (N,)
        Finite weights >= 0 with a positive total.
    n : int
        Batch size, >= 0.
    ratio : float
        Importance share of the batch, in [0, 1].
    seed : int
        Seed in [0, 2**64).
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.

    Returns
    -------
    idx : numpy.ndarray
        int64, shape (n,).
    likelihood_ratio : numpy.ndarray
        float64, shape (n,). Tensor weights give (int64 tensor, tensor of the weights'
        floating dtype) on their device.
    """
    w = check_weights(weights)
    n = check_draw_count(n, "n")
    ratio = check_real(ratio, "ratio", low=0.0, high=1.0)
    seed = check_seed(seed)
    n_imp = int(np.floor(n * ratio))
    imp = sample_indices(w, n_imp, seed=seed, backend=backend)    # validates w too
    uni = uniform_indices(w.size, n - n_imp, seed=seed, backend=backend)
    shuffle = shuffle_order(uniforms(seed, STREAMS["shuffle"], n, backend="numpy"),
                            backend="numpy" if backend == "numpy" else "cpu")
    idx = np.concatenate((imp, uni))[shuffle]
    total = prefix_total(w, backend)
    m = ratio * (w[idx] / total) + (1.0 - ratio) / w.size
    return idx, 1.0 / (w.size * m)


def prefix_total(w, backend="numpy") -> float:
    """C[-1]: the total of the weights in the order that defines the draws."""
    backend = resolve_backend(backend, w.size)
    if backend == "numpy":
        return float(prefix_sums(w)[-1])
    if backend == "cuda":
        from .kernels.gpu_sampling import prefix_total_gpu
        return prefix_total_gpu(w)
    from .kernels.cpu_sampling import blockwise_total
    with threads_for(w.size):
        return blockwise_total(w)


def kish_ess(weights) -> float:
    """Kish effective sample size ``(sum w)**2 / sum w**2`` (0 for all-zero weights).

    Scale-free: weights beyond 1e+-100 are divided by their maximum first, so neither
    the squares nor their sum overflow or underflow.

    Parameters
    ----------
    weights : array_like, shape (N,)
        Finite weights >= 0.

    Returns
    -------
    float
        The effective sample size, in [0, N].
    """
    w = as_float_array(weights, "weights", finite=True)
    if (w < 0).any():
        raise ValueError(f"weights must be >= 0: {int((w < 0).sum())} negative value(s), "
                         f"first at index {int(np.argmax(w < 0))}")
    top = float(w.max())
    if top > 0 and not 1e-100 <= top <= 1e100:
        w = w / top
    s2 = float(np.dot(w, w))
    return float(w.sum() ** 2 / s2) if s2 > 0 else 0.0


# --- the stateful sampler ----------------------------------------------------------------

def _take(x_pool, idx):
    """``x_pool[idx]``; a list or tuple pool is converted to an array first."""
    if isinstance(x_pool, (list, tuple)):
        x_pool = np.asarray(x_pool)
    try:
        return x_pool[idx]
    except (TypeError, IndexError, KeyError) as exc:
        raise TypeError(f"x_pool must support indexing by an int64 index array (a NumPy "
                        f"array or tensor), got {type(x_pool).__name__}: {exc}") from None


#: The anchor's ImportanceSamplerConfig field that had no effect: gone from the config;
#: states that hold it load (the value is dropped) and zp_ref.compat.legacy accepts it.
REMOVED_FIELDS = ("resample_ratio",)
_STATE_KEYS = ("config", "seed", "calls", "backend", "total_samples", "sample_counts",
               "q_abs_sum", "q_abs_min", "last_ess")


@dataclass
class ImportanceSamplerConfig:
    """Configuration of :class:`ImportanceSampler`.

    The anchor's fields that take effect, with its defaults; its ``resample_ratio`` had
    none: see ``REMOVED_FIELDS``.

    Parameters
    ----------
    weight_power : float, default 2.0
        p in ``w = 1 / |Q|**p``, >= 0.
    min_q_abs : float, default 1e-6
        |Q| is clipped below at this value (units of Q).
    max_weight : float, default 100.0
        Weights are clipped above at this value.
    temperature : float, default 1.0
        ``w -> w**(1/temperature)``.
    resample_frequency : int, default 5
        Epochs between refreshes, >= 1.
    importance_batch_ratio : float, default 0.7
        Importance share of a hybrid batch, in [0, 1].
    """
    weight_power: float = 2.0           # w = 1 / |Q|**weight_power
    min_q_abs: float = 1e-6             # |Q| clipped below at this value
    max_weight: float = 100.0           # weights clipped above at this value
    temperature: float = 1.0            # w -> w**(1/temperature)
    resample_frequency: int = 5         # epochs between refreshes
    importance_batch_ratio: float = 0.7  # importance share of a hybrid batch

    def __post_init__(self):
        from .weighting import check_weight_config
        check_weight_config(self.weight_power, self.min_q_abs, self.max_weight, self.temperature)
        check_count(self.resample_frequency, "resample_frequency", minimum=1)
        check_real(self.importance_batch_ratio, "importance_batch_ratio", low=0.0, high=1.0)

    def weight_kwargs(self) -> dict:
        return dict(weight_power=self.weight_power, min_q_abs=self.min_q_abs,
                    max_weight=self.max_weight, temperature=self.temperature)


class ImportanceSampler:
    """Importance batches from a pool weighted by ``1/|Q|**p``.

    Its state is (seed, number of batches drawn): batch c uses
    ``seed_c = derive_seed(seed, c)``, so ``sample_batch`` returns
    ``sample_indices(compute_weights(q), B, seed=seed_c)`` and ``hybrid_sample``
    returns ``hybrid_indices(compute_weights(q), B, ratio=importance_batch_ratio,
    seed=seed_c)``. ``state_dict``/``load_state_dict`` restore the exact future draws.

    Threads: one sampler may be shared by several threads. A batch call holds the
    sampler's lock from its first check to its record, so each call takes the next
    call number c whole and returns exactly what a single-threaded sampler returns as
    its call c for the same pool; which thread gets which c follows the order in which
    the calls take the lock. ``last_likelihood_ratios`` and the statistics are those of
    the last call of any thread. A call that fails changes nothing.

    Parameters
    ----------
    config : ImportanceSamplerConfig or None, default None
        The weights and the hybrid ratio (None: the defaults).
    seed : int, default 0
        Seed in [0, 2**64).
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.
    """

    def __init__(self, config: ImportanceSamplerConfig | None = None, *, seed=0,
                 backend="auto"):
        if config is None:
            config = ImportanceSamplerConfig()
        if not isinstance(config, ImportanceSamplerConfig):
            raise TypeError(f"config must be an ImportanceSamplerConfig or None, got "
                            f"{type(config).__name__}")
        self.config = config
        self.seed = check_seed(seed)
        self.backend = resolve_backend(backend) if backend != "auto" else "auto"
        self.calls = 0
        self._reset_statistics()
        self.last_likelihood_ratios = None
        self._weights = None
        self._lock = threading.Lock()          # one batch call at a time (threads)

    def _reset_statistics(self):
        self.total_samples = 0
        self.sample_counts = np.zeros(0, dtype=np.int64)
        self._q_abs_sum = 0.0
        self._q_abs_min = np.inf
        self._last_ess = 0.0

    # -- weights and draws --------------------------------------------------------------
    def compute_weights(self, q_values) -> np.ndarray:
        """Normalised importance weights of the pool.

        Parameters
        ----------
        q_values : array_like or torch.Tensor, shape (N,) or (N, 1)

        Returns
        -------
        numpy.ndarray
            float64, shape (N,), summing to 1.
        """
        from .weighting import importance_weights
        return importance_weights(q_values, **self.config.weight_kwargs(), backend=self.backend)

    def _pool_weights(self, q) -> np.ndarray:
        """compute_weights into a buffer kept between batches (fresh pages are slow to
        fault in); valid until the next batch."""
        from .weighting import importance_weights
        if self._weights is None or self._weights.shape != q.shape:
            self._weights = np.empty_like(q)
        return importance_weights(q, **self.config.weight_kwargs(), backend=self.backend,
                                  out=self._weights)

    def next_seed(self) -> int:
        """The seed the next batch will use."""
        return call_seed(self.seed, self.calls)

    @pool_io
    def sample_batch(self, x_pool, q_pool, batch_size):
        """``batch_size`` importance draws with replacement (the next call's seed).

        Parameters
        ----------
        x_pool : array_like, shape (N, ...)
        q_pool : array_like, shape (N,) or (N, 1)
        batch_size : int

        Returns
        -------
        x : array_like, shape (batch_size, ...)
            ``x_pool[idx]``.
        idx : numpy.ndarray
            int64, shape (batch_size,).
        """
        with self._lock:
            q, batch_size = self._check_pool(x_pool, q_pool, batch_size)
            w = self._pool_weights(q)
            idx = sample_indices(w, batch_size, seed=self.next_seed(), backend=self.backend)
            batch_x = _take(x_pool, idx)
            self.last_likelihood_ratios = 1.0 / (w.size * w[idx])
            self._record(q, w, idx)
            return batch_x, idx

    @pool_io
    def hybrid_sample(self, x_pool, q_pool, batch_size):
        """Importance and uniform draws mixed by ``importance_batch_ratio``.

        ``last_likelihood_ratios`` holds the matching ``1 / (N * m_i)``.

        Parameters
        ----------
        x_pool : array_like, shape (N, ...)
        q_pool : array_like, shape (N,) or (N, 1)
        batch_size : int

        Returns
        -------
        x : array_like, shape (batch_size, ...)
            ``x_pool[idx]``.
        idx : numpy.ndarray
            int64, shape (batch_size,).
        """
        with self._lock:
            q, batch_size = self._check_pool(x_pool, q_pool, batch_size)
            w = self._pool_weights(q)
            idx, lr = hybrid_indices(w, batch_size, ratio=self.config.importance_batch_ratio,
                                     seed=self.next_seed(), backend=self.backend)
            batch_x = _take(x_pool, idx)
            self.last_likelihood_ratios = lr
            self._record(q, w, idx)
            return batch_x, idx

    def should_resample(self, epoch) -> bool:
        """True every ``resample_frequency`` epochs (epoch 0 included)."""
        return check_count(epoch, "epoch") % self.config.resample_frequency == 0

    def _check_pool(self, x_pool, q_pool, batch_size):
        q = as_float_array(q_pool, "q_pool")
        batch_size = check_count(batch_size, "batch_size")
        if not hasattr(x_pool, "__len__") or isinstance(x_pool, (str, bytes)) \
                or len(x_pool) != q.size:
            raise ValueError(f"x_pool must have one entry per q_pool value ({q.size}), "
                             f"got {type(x_pool).__name__}"
                             f"{' of length %d' % len(x_pool) if hasattr(x_pool, '__len__') else ''}")
        return q, batch_size

    def _record(self, q, w, idx):
        self.calls += 1
        self.total_samples += idx.size
        if self.sample_counts.size < q.size:
            self.sample_counts = np.concatenate(
                (self.sample_counts, np.zeros(q.size - self.sample_counts.size, np.int64)))
        np.add.at(self.sample_counts, idx, 1)
        if idx.size:
            qa = np.abs(q[idx])
            self._q_abs_sum += float(qa.sum())
            self._q_abs_min = min(self._q_abs_min, float(qa.min()))
        self._last_ess = kish_ess(w)

    # -- reporting and state ------------------------------------------------------------
    def get_statistics(self) -> dict:
        """Totals over every batch drawn so far (zeros before the first one)."""
        drawn = self.sample_counts[self.sample_counts > 0]
        total = self.total_samples
        return {
            "total_samples": total,
            "unique_samples": int(drawn.size),
            "max_sample_count": int(drawn.max()) if drawn.size else 0,
            "min_sample_count": int(drawn.min()) if drawn.size else 0,
            "sample_diversity": drawn.size / max(1, total),
            "kish_ess": self._last_ess,
            "mean_q_abs": self._q_abs_sum / total if total else 0.0,
            "min_q_abs": self._q_abs_min if total else 0.0,
            "batches": self.calls,
        }

    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "config": asdict(self.config), "seed": self.seed,
                "calls": self.calls,
                "backend": self.backend, "total_samples": self.total_samples,
                "sample_counts": self.sample_counts.copy(), "q_abs_sum": self._q_abs_sum,
                "q_abs_min": self._q_abs_min, "last_ess": self._last_ess}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from :meth:`state_dict`; validated before anything changes."""
        if isinstance(state, dict) and "version" not in state:
            state = {**state, "version": STATE_VERSION}   # written before states had one
        check_state(state, "ImportanceSampler", _STATE_KEYS)
        config = ImportanceSamplerConfig(**config_fields(
            state["config"], "ImportanceSampler",
            [f.name for f in fields(ImportanceSamplerConfig)], removed=REMOVED_FIELDS))
        seed = check_seed(state["seed"], "state['seed']")
        calls = check_seed(state["calls"], "state['calls']")
        total = check_seed(state["total_samples"], "state['total_samples']")
        counts = np.asarray(state["sample_counts"])
        if counts.ndim != 1 or counts.dtype.kind not in "iu" or (counts < 0).any() \
                or sum(counts.tolist()) != total or total >= 2**63:   # exact: no int64 wrap
            raise ValueError("state['sample_counts'] must be non-negative integer counts "
                             "summing exactly to state['total_samples'] < 2**63")
        backend = state["backend"]
        if backend != "auto":
            resolve_backend(backend)
        with self._lock:
            self._load_checked(state, config, seed, calls, backend, total, counts)

    def _load_checked(self, state, config, seed, calls, backend, total, counts):
        sums = [float(state[k]) for k in ("q_abs_sum", "q_abs_min", "last_ess")]
        self.config, self.seed, self.calls, self.backend = config, seed, calls, backend
        self.total_samples = total
        self.sample_counts = counts.astype(np.int64)
        self._q_abs_sum, self._q_abs_min, self._last_ess = sums

    @classmethod
    def from_state_dict(cls, state: dict) -> "ImportanceSampler":
        sampler = cls()
        sampler.load_state_dict(state)
        return sampler
