"""The torch samplers' shared parts: tensors in and out, Q from values or from the model
(``q_fn`` on ``x_pool``), the epoch and its bounds, the shard of this rank and the
importance weights (:class:`PoolQ`, :class:`PoolWeights`). See :mod:`zp_ref.bridges.torch`.
"""
from __future__ import annotations

import numpy as np
import torch

from ..checks import as_float_array, check_backend, check_count, check_seed
from ..tensors import float_like, host_pool, host_tensor, q_to_numpy
from ..tensors import to_numpy as host_array

__all__ = ["as_tensor", "to_numpy", "evaluate_q_fn", "sharded_total", "PoolQ", "PoolWeights",
           "q_array", "indices_array", "like_indices", "sampler_config", "refresh_default",
           "replicas", "EPOCH_LIMIT", "Q_KEYWORDS"]

#: Epochs below this bound: epoch e's draws use ``derive_seed(seed, e * k + b)``, an
#: index that must stay below 2**64 (k = 1 but for the hybrid sampler, k = total_size).
EPOCH_LIMIT = 2**64


Q_KEYWORDS = """q_pool : torch.Tensor or numpy.ndarray, shape (N,) or (N, 1), optional
        Q values of the pool. The sampler keeps a copy: the caller's later writes to
        that buffer change nothing. Or give ``q_fn`` with ``x_pool``.
    x_pool : torch.Tensor or numpy.ndarray, shape (N, ...), optional
        The pool's inputs, for ``q_fn``.
    q_fn : callable, optional
        Q from a callable (the model's Q head), see :func:`evaluate_q_fn`, evaluated at
        construction and at ``set_epoch(e)`` when ``e % refresh_every == 0``.
        ``cls.from_model(q_fn, x_pool, <sizes>, ...)`` is this form with the sizes in
        position. ``set_epoch(e)`` accepts ``0 <= e <= max_epoch`` (the seed indices
        of epoch e stay below 2**64).
    refresh_every : int or None, default None
        None takes ``config.resample_frequency`` when ``config`` is given, else 1.
    q_batch_size : int, default 65536
        Rows per ``q_fn`` call.
    num_replicas, rank : int or None, default None
        Default: the process group's, else 1 and 0. Rank r yields
        ``global[r::num_replicas]`` of the epoch's global draw of ``total_size`` items,
        the count rounded up to a multiple of ``num_replicas`` by further draws of the
        same stream, so every rank has the same length and the union of the shards is
        the draw of one process asked for ``total_size`` items.
    drop_last : bool, default False
        Round ``total_size`` down instead of up."""


def as_tensor(a, device=None) -> "torch.Tensor":
    """A tensor sharing memory with ``a`` where possible.

    NumPy array: ``torch.from_numpy(a)`` (zero-copy, CPU). Object with
    ``__cuda_array_interface__`` (a numba.cuda device array, CuPy, ...):
    ``torch.as_tensor(a, device="cuda")`` (zero-copy on its GPU). A tensor is returned
    as is.

    Parameters
    ----------
    a : numpy.ndarray, torch.Tensor or CUDA array
    device : str, torch.device or None, default None
        Where the result must live; moving to another device copies.

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``a``.
    """
    if isinstance(a, torch.Tensor):
        t = a
    elif hasattr(a, "__cuda_array_interface__"):
        if not torch.cuda.is_available():
            raise ValueError(f"a is a CUDA device array ({type(a).__name__}) but this torch "
                             f"build sees no CUDA device (torch.cuda.is_available() is False); "
                             f"copy it to the host first (a.copy_to_host())")
        t = torch.as_tensor(a, device="cuda")
    elif isinstance(a, np.ndarray):
        if a.dtype.kind not in "biufc" or not a.dtype.isnative:
            raise TypeError(f"a must be a NumPy array of native-order bool, int, float or "
                            f"complex values, got dtype {a.dtype}")
        t = torch.from_numpy(a)
    else:
        raise TypeError(f"a must be a NumPy array, a CUDA device array "
                        f"(__cuda_array_interface__) or a torch.Tensor, got {type(a).__name__}")
    return t if device is None else t.to(device)


def to_numpy(t) -> np.ndarray:
    """A NumPy view of a CPU tensor (zero-copy; detached from autograd), a host copy of a
    GPU tensor; a NumPy array is returned as is.

    Negative/conjugate bits are resolved and meta tensors refused
    (:func:`zp_ref.tensors.to_numpy` rules).

    Parameters
    ----------
    t : torch.Tensor or numpy.ndarray

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``t``.
    """
    if isinstance(t, np.ndarray):
        return t
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor or a NumPy array, got {type(t).__name__}")
    return host_tensor(t, "t").numpy()


def q_array(q, name: str, size: int | None = None, *, copy: bool = True) -> np.ndarray:
    """q (tensor or array, (N,) or (N, 1)) as float64 (N,), N == size when given; a
    copy (``copy=True``): the caller's later writes to its buffer change nothing here."""
    q = as_float_array(q_to_numpy(q, name), name)
    if size is not None and q.size != size:
        raise ValueError(f"{name} must have one value per pool entry ({size}), got {q.size}")
    return q.copy() if copy else q


def indices_array(indices, size: int) -> np.ndarray:
    """Pool indices (array, list or tensor) as an integer array in [0, size)."""
    idx = np.asarray(host_array(indices, "indices"))
    if idx.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        raise ValueError(f"indices must lie in [0, {size}), got range "
                         f"[{idx.min()}, {idx.max()}]")
    return idx


def like_indices(values: np.ndarray, indices):
    """``values`` as a float64 tensor on the device of ``indices`` when that is a tensor."""
    return float_like(values, indices) if isinstance(indices, torch.Tensor) else values


def sampler_config(config):
    """``config`` (an ImportanceSamplerConfig or None: the default one)."""
    from ..sampling import ImportanceSamplerConfig
    if config is None:
        return ImportanceSamplerConfig()
    if not isinstance(config, ImportanceSamplerConfig):
        raise TypeError(f"config must be an ImportanceSamplerConfig or None, got "
                        f"{type(config).__name__}")
    return config


def refresh_default(refresh_every, config) -> int:
    """``refresh_every``; None: ``config.resample_frequency`` when a config is given,
    else 1 (refresh at every epoch)."""
    if refresh_every is None:
        return 1 if config is None else sampler_config(config).resample_frequency
    return check_count(refresh_every, "refresh_every", minimum=1)


def pool_tensor(x_pool) -> "torch.Tensor":
    """x_pool (tensor, or NumPy array viewed zero-copy; a big-endian or reversed array is
    copied to native, positive strides) with at least one row."""
    if x_pool is None:
        raise ValueError("x_pool is required with q_fn: q_fn is evaluated on the pool's "
                         "inputs, e.g. x_pool=x_train (a tensor (N, ...) or NumPy array)")
    if isinstance(x_pool, np.ndarray):
        x_np = host_pool(x_pool, "x_pool")
        if any(s < 0 for s in x_np.strides):
            x_np = x_np.copy()
        x = torch.from_numpy(x_np)
    elif isinstance(x_pool, torch.Tensor) or hasattr(x_pool, "__cuda_array_interface__"):
        x = as_tensor(x_pool)
    else:
        raise TypeError(f"x_pool must be a torch.Tensor or a NumPy array (N, ...), got "
                        f"{type(x_pool).__name__}; convert it with torch.as_tensor(x_pool)")
    if x.is_meta:
        raise TypeError(f"x_pool is a meta tensor (shape {tuple(x.shape)}, no data); pass a "
                        f"tensor with values")
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"x_pool must have at least one row (shape (N, ...), N >= 1), got "
                         f"shape {tuple(x.shape)}")
    return x


def _q_chunk(out, rows: int, start: int) -> np.ndarray:
    """One chunk of q_fn's output as float64 (rows,): shape (rows,) or (rows, 1)."""
    if not isinstance(out, (torch.Tensor, np.ndarray)):
        raise TypeError(f"q_fn must return a torch.Tensor or NumPy array, got "
                        f"{type(out).__name__}")
    shape = tuple(out.shape)
    if shape not in ((rows,), (rows, 1)):
        raise ValueError(f"q_fn must return shape ({rows},) or ({rows}, 1) for x_pool rows "
                         f"{start}..{start + rows - 1}, got {shape}")
    return q_array(out.reshape(rows), "q_fn output", copy=False)


def evaluate_q_fn(q_fn, x_pool, batch_size: int = 65536) -> np.ndarray:
    """Q of the pool from a callable, chunk by chunk.

    ``q_fn(x_pool[i:i + batch_size])`` for each chunk, under ``torch.no_grad()`` on
    ``x_pool``'s device, each output detached and concatenated.

    Parameters
    ----------
    q_fn : callable
        ``q_fn(x) -> (n,) or (n, 1)`` tensor or array (the model's Q head).
    x_pool : torch.Tensor or numpy.ndarray, shape (N, ...)
        At least one row.
    batch_size : int, default 65536
        Rows per call.

    Returns
    -------
    numpy.ndarray
        float64, shape (N,), on the host.
    """
    if not callable(q_fn):
        raise TypeError(f"q_fn must be callable (x -> Q(x)), got {type(q_fn).__name__}")
    x = pool_tensor(x_pool)
    batch_size = check_count(batch_size, "q_batch_size", minimum=1)
    n = x.shape[0]
    with torch.no_grad():
        parts = [_q_chunk(q_fn(x[i:i + batch_size]), min(batch_size, n - i), i)
                 for i in range(0, n, batch_size)]
    return np.concatenate(parts)
def replicas(num_replicas, rank) -> tuple:
    """(num_replicas, rank), defaulting to the process group's world size and rank when
    ``torch.distributed`` is initialised, else 1 and 0 (as ``DistributedSampler``)."""
    dist = torch.distributed
    ready = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if ready else 1
    if rank is None:
        rank = dist.get_rank() if ready else 0
    num_replicas = check_count(num_replicas, "num_replicas", minimum=1)
    rank = check_count(rank, "rank")
    if rank >= num_replicas:
        raise ValueError(f"rank must be in [0, {num_replicas - 1}] (num_replicas = "
                         f"{num_replicas}), got {rank}")
    return num_replicas, rank


def sharded_total(count: int, num_replicas: int, drop_last: bool, name: str) -> int:
    """Size of an epoch's global draw so every rank gets the same share.

    Parameters
    ----------
    count : int
        Draws (or batches) one process would make.
    num_replicas : int
        Number of ranks; ``count >= num_replicas`` with ``drop_last``.
    drop_last : bool
        Round down instead of up.
    name : str
        The argument named in errors.

    Returns
    -------
    int
        ``count`` rounded up to a multiple of ``num_replicas`` (extra draws of the same
        stream), or down with ``drop_last``.
    """
    if not isinstance(drop_last, (bool, np.bool_)):
        raise TypeError(f"drop_last must be True or False, got {drop_last!r}")
    if drop_last:
        if count < num_replicas:
            raise ValueError(f"{name} ({count}) must be >= num_replicas ({num_replicas}) with "
                             f"drop_last=True, or every rank would get nothing")
        return count // num_replicas * num_replicas
    return -(-count // num_replicas) * num_replicas


class PoolQ:
    """Shared part of the samplers: the pool's Q (given, or from ``q_fn`` on ``x_pool``),
    the epoch, and the shard of this rank."""

    def _init_q(self, q_pool, x_pool, q_fn, refresh_every, q_batch_size, config=None):
        """The pool's Q (a copy of q_pool, or q_fn on x_pool); ``refresh_every=None``:
        ``config.resample_frequency`` when a config is given, else 1."""
        self.refresh_every = refresh_default(refresh_every, config)
        self.epoch = 0
        if q_fn is None:
            if q_pool is None:
                raise ValueError("give q_pool (Q values of the pool) or q_fn with x_pool "
                                 "(a callable evaluated on the pool, e.g. the model's Q head)")
            if x_pool is not None:
                raise ValueError("x_pool is only used with q_fn; with q_pool it is not needed")
            self.q_fn = self.x_pool = None
            q = q_array(q_pool, "q_pool")
        else:
            if q_pool is not None:
                raise ValueError("give either q_pool or q_fn, not both (q_fn computes the "
                                 "pool's Q from x_pool)")
            self.q_fn, self.x_pool = q_fn, pool_tensor(x_pool)
            self.q_batch_size = check_count(q_batch_size, "q_batch_size", minimum=1)
            q = evaluate_q_fn(q_fn, self.x_pool, self.q_batch_size)
        self.q_epoch = 0 if q_fn is not None else None   # epoch of the last q_fn call
        self.q_evaluations = int(q_fn is not None)
        return q

    def _init_shards(self, num_replicas, rank, drop_last, count, name):
        self.num_replicas, self.rank = replicas(num_replicas, rank)
        self.total_size = sharded_total(count, self.num_replicas, drop_last, name)
        self.drop_last = bool(drop_last)

    @classmethod
    def from_model(cls, q_fn, x_pool, *sizes, **kwargs):
        """The sampler of Q from the model: ``cls.from_model(model.q, x_train, <sizes>,
        ...)`` is ``cls(None, <sizes>, q_fn=model.q, x_pool=x_train, ...)``."""
        return cls(None, *sizes, q_fn=q_fn, x_pool=x_pool, **kwargs)

    #: derive_seed indices per epoch (the hybrid sampler: one per batch of the epoch)
    seeds_per_epoch = 1

    @property
    def max_epoch(self) -> int:
        """The largest epoch ``set_epoch`` accepts: ``2**64 // seeds_per_epoch - 1``, so
        every seed index of the epoch is a valid ``derive_seed`` index (below 2**64)."""
        return EPOCH_LIMIT // self.seeds_per_epoch - 1

    def _check_epoch(self, epoch) -> int:
        epoch = check_count(epoch, "epoch")
        if epoch > self.max_epoch:
            raise ValueError(f"epoch must be in [0, {self.max_epoch}] (epoch e draws with "
                             f"derive_seed(seed, {'e' if self.seeds_per_epoch == 1 else 'e * %d + b' % self.seeds_per_epoch}), "
                             f"whose index must be below 2**64), got {epoch}")
        return epoch

    @property
    def pool_size(self) -> int:
        return self._q.size

    @property
    def q_pool(self) -> np.ndarray:
        """The pool's current Q values, float64 (N,) (a copy)."""
        return self._q.copy()

    def refresh_q(self) -> None:
        """Evaluate ``q_fn`` on the pool now and use it from the next draw."""
        if self.q_fn is None:
            raise ValueError("refresh_q needs q_fn (the sampler was built from q_pool values; "
                             "use update_q(q) to replace them)")
        self.update_q(evaluate_q_fn(self.q_fn, self.x_pool, self.q_batch_size))
        self.q_evaluations += 1

    def _advance_q(self, epoch: int) -> None:
        """At set_epoch(epoch): refresh from q_fn every refresh_every epochs."""
        if self.q_fn is not None and epoch % self.refresh_every == 0 and epoch != self.q_epoch:
            self.refresh_q()
            self.q_epoch = epoch

    def _shard(self, draws):
        """This rank's share of the epoch's global draw: draws[rank::num_replicas]."""
        return draws[self.rank::self.num_replicas]

    def _shard_len(self) -> int:
        return self.total_size // self.num_replicas


class PoolWeights(PoolQ):
    """Shared part of the importance-based samplers: config, seed, backend and the
    normalised weights of the current Q."""

    def _init_weights(self, q_pool, config, seed, backend, x_pool, q_fn, refresh_every,
                      q_batch_size):
        self.config = sampler_config(config)
        self.seed = check_seed(seed)
        self.backend = check_backend(backend)
        q = self._init_q(q_pool, x_pool, q_fn, refresh_every, q_batch_size, config)
        self._weights = self._compute(q)
        self._q = q
        self._epoch_weights = self._weights

    def _compute(self, q) -> np.ndarray:
        from ..weighting import importance_weights
        return importance_weights(q, **self.config.weight_kwargs(), backend=self.backend)

    @property
    def weights(self) -> np.ndarray:
        """Normalised importance weights of the current Q, float64 (N,)."""
        return self._weights

    def set_epoch(self, epoch) -> None:
        """Select the draws of ``epoch`` (an int in [0, max_epoch]) for the next iteration;
        with ``q_fn``, re-evaluate Q first when ``epoch`` is a multiple of
        ``refresh_every`` (and Q was not already evaluated for it)."""
        epoch = self._check_epoch(epoch)
        self._advance_q(epoch)
        self.epoch = epoch

    def update_q(self, q) -> None:
        """Replace the pool's Q values (tensor or array, (N,) or (N, 1), same N), e.g. the
        model's own Q head; the weights change from the next draw."""
        q = q_array(q, "q", self.pool_size)
        weights = self._compute(q)     # validates (NaN refused) before anything changes
        self._q, self._weights = q, weights


