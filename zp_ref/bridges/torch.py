"""PyTorch adapter: zero-copy tensors and zp_ref draws as DataLoader samplers.

Only this module, the training study (:mod:`zp_ref.apps.study`) and
:mod:`zp_ref.compat.legacy` import torch; ``import zp_ref`` does not.
Samplers follow ``DistributedSampler``: ``set_epoch(e)`` selects epoch e's draw, which is
a pure function of (seed, epoch, the pool's Q, and for the curriculum its state when the
epoch's draw is fixed); iterating the same epoch again replays it. The draw is made in
the main process (``DataLoader`` iterates samplers there and sends indices to workers),
so ``num_workers > 0`` fetches the same items as ``num_workers=0``.

Q comes either as values (``q_pool``) or from the model (``q_fn`` with ``x_pool``):
``q_fn`` is evaluated on the pool in chunks under ``torch.no_grad()`` at construction and
at ``set_epoch(e)`` every ``refresh_every`` epochs. ``num_replicas``/``rank`` shard every
epoch's global draw: rank r yields ``global[r::num_replicas]`` (see docs/torch.md).
"""
from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np

try:
    import torch
    from torch.utils.data import Sampler
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("zp_ref.bridges.torch needs PyTorch; install it with "
                      "`pip install zp_ref[torch]` (or `pip install torch`)") from exc

from ..checks import as_float_array, check_backend, check_count, check_q, check_real, check_seed
from ..rng import call_seed
from ..state import STATE_VERSION, check_state, config_fields
from ..tensors import float_like, squeeze_q
from ..tensors import to_numpy as host_array

__all__ = ["as_tensor", "to_numpy", "evaluate_q_fn", "ImportanceWeightedSampler",
           "HybridBatchSampler", "CurriculumBatchSampler", "EpochLoader"]


# ------------------------------------------------------------------ tensors
def as_tensor(a, device=None) -> "torch.Tensor":
    """A tensor sharing memory with ``a`` where possible.

    NumPy array: ``torch.from_numpy(a)`` (zero-copy, CPU). Object with
    ``__cuda_array_interface__`` (a numba.cuda device array, CuPy, ...):
    ``torch.as_tensor(a, device="cuda")`` (zero-copy on its GPU). A tensor is returned
    as is. ``device``: where the result must live; moving to another device copies.
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
    GPU tensor; a NumPy array is returned as is."""
    if isinstance(t, np.ndarray):
        return t
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor or a NumPy array, got {type(t).__name__}")
    return t.detach().cpu().numpy()


def _q_array(q, name: str, size: int | None = None) -> np.ndarray:
    """q (tensor or array, (N,) or (N, 1)) as float64 (N,); N == size when given."""
    q = as_float_array(host_array(squeeze_q(q, name)), name)
    if size is not None and q.size != size:
        raise ValueError(f"{name} must have one value per pool entry ({size}), got {q.size}")
    return q


def _indices_array(indices, size: int) -> np.ndarray:
    idx = np.asarray(host_array(indices))
    if idx.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        raise ValueError(f"indices must lie in [0, {size}), got range "
                         f"[{idx.min()}, {idx.max()}]")
    return idx


def _like(values: np.ndarray, indices):
    """``values`` as a float64 tensor on the device of ``indices`` when that is a tensor."""
    return float_like(values, indices) if isinstance(indices, torch.Tensor) else values


def _config(config):
    from ..sampling import ImportanceSamplerConfig
    if config is None:
        return ImportanceSamplerConfig()
    if not isinstance(config, ImportanceSamplerConfig):
        raise TypeError(f"config must be an ImportanceSamplerConfig or None, got "
                        f"{type(config).__name__}")
    return config


def _pool_tensor(x_pool) -> "torch.Tensor":
    """x_pool (tensor, or NumPy array viewed zero-copy) with at least one row."""
    if x_pool is None:
        raise ValueError("x_pool is required with q_fn: q_fn is evaluated on the pool's "
                         "inputs, e.g. x_pool=x_train (a tensor (N, ...) or NumPy array)")
    x = as_tensor(x_pool) if not isinstance(x_pool, torch.Tensor) else x_pool
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
    return _q_array(out.reshape(rows), "q_fn output")


def evaluate_q_fn(q_fn, x_pool, batch_size: int = 65536) -> np.ndarray:
    """Q of the pool from a callable: ``q_fn(x_pool[i:i + batch_size])`` for each chunk,
    under ``torch.no_grad()`` on ``x_pool``'s device, each output ((n,) or (n, 1),
    tensor or array) detached and concatenated. Returns float64 (N,) on the host."""
    if not callable(q_fn):
        raise TypeError(f"q_fn must be callable (x -> Q(x)), got {type(q_fn).__name__}")
    x = _pool_tensor(x_pool)
    batch_size = check_count(batch_size, "q_batch_size", minimum=1)
    n = x.shape[0]
    with torch.no_grad():
        parts = [_q_chunk(q_fn(x[i:i + batch_size]), min(batch_size, n - i), i)
                 for i in range(0, n, batch_size)]
    return np.concatenate(parts)


def _replicas(num_replicas, rank) -> tuple:
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
    """Size of an epoch's global draw so every rank gets the same share: ``count``
    rounded up to a multiple of ``num_replicas`` (extra draws of the same stream), or
    down with ``drop_last``."""
    if not isinstance(drop_last, (bool, np.bool_)):
        raise TypeError(f"drop_last must be True or False, got {drop_last!r}")
    if drop_last:
        if count < num_replicas:
            raise ValueError(f"{name} ({count}) must be >= num_replicas ({num_replicas}) with "
                             f"drop_last=True, or every rank would get nothing")
        return count // num_replicas * num_replicas
    return -(-count // num_replicas) * num_replicas


class _PoolQ:
    """Shared part of the samplers: the pool's Q (given, or from ``q_fn`` on ``x_pool``),
    the epoch, and the shard of this rank."""

    def _init_q(self, q_pool, x_pool, q_fn, refresh_every, q_batch_size):
        self.epoch = 0
        if q_fn is None:
            if q_pool is None:
                raise ValueError("give q_pool (Q values of the pool) or q_fn with x_pool "
                                 "(a callable evaluated on the pool, e.g. the model's Q head)")
            if x_pool is not None:
                raise ValueError("x_pool is only used with q_fn; with q_pool it is not needed")
            self.q_fn = self.x_pool = None
            q = _q_array(q_pool, "q_pool")
        else:
            if q_pool is not None:
                raise ValueError("give either q_pool or q_fn, not both (q_fn computes the "
                                 "pool's Q from x_pool)")
            self.q_fn, self.x_pool = q_fn, _pool_tensor(x_pool)
            self.q_batch_size = check_count(q_batch_size, "q_batch_size", minimum=1)
            q = evaluate_q_fn(q_fn, self.x_pool, self.q_batch_size)
        self.refresh_every = check_count(refresh_every, "refresh_every", minimum=1)
        self.q_epoch = 0 if q_fn is not None else None   # epoch of the last q_fn call
        self.q_evaluations = int(q_fn is not None)
        return q

    def _init_shards(self, num_replicas, rank, drop_last, count, name):
        self.num_replicas, self.rank = _replicas(num_replicas, rank)
        self.total_size = sharded_total(count, self.num_replicas, drop_last, name)
        self.drop_last = bool(drop_last)

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


class _PoolWeights(_PoolQ):
    """Shared part of the importance-based samplers: config, seed, backend and the
    normalised weights of the current Q."""

    def _init_weights(self, q_pool, config, seed, backend, x_pool, q_fn, refresh_every,
                      q_batch_size):
        self.config = _config(config)
        self.seed = check_seed(seed)
        self.backend = check_backend(backend)
        q = self._init_q(q_pool, x_pool, q_fn, refresh_every, q_batch_size)
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
        """Select the draws of ``epoch`` (a non-negative int) for the next iteration;
        with ``q_fn``, re-evaluate Q first when ``epoch`` is a multiple of
        ``refresh_every`` (and Q was not already evaluated for it)."""
        epoch = check_count(epoch, "epoch")
        self._advance_q(epoch)
        self.epoch = epoch

    def update_q(self, q) -> None:
        """Replace the pool's Q values (tensor or array, (N,) or (N, 1), same N), e.g. the
        model's own Q head; the weights change from the next draw."""
        q = _q_array(q, "q", self.pool_size)
        weights = self._compute(q)     # validates (NaN refused) before anything changes
        self._q, self._weights = q, weights


# ------------------------------------------------------------------ samplers
_Q_KEYWORDS = """``q_pool``: Q values of the pool (tensor or array, (N,) or (N, 1)); or ``q_fn``
    with ``x_pool``: Q from a callable (the model's Q head), see :func:`evaluate_q_fn`,
    evaluated at construction and at ``set_epoch(e)`` when ``e % refresh_every == 0``.
    ``num_replicas``/``rank`` (default: the process group's, else 1/0): rank r yields
    ``global[r::num_replicas]`` of the epoch's global draw of ``total_size`` items, the
    count rounded up to a multiple of ``num_replicas`` by further draws of the same
    stream (``drop_last=True``: rounded down), so every rank has the same length and the
    union of the shards is the draw of one process asked for ``total_size`` items."""


class ImportanceWeightedSampler(_PoolWeights, Sampler):
    """``Sampler[int]`` drawing ``num_samples`` pool indices per epoch by 1/|Q|^p weights.

    Epoch e's global draw is ``sample_indices(w, total_size, seed=derive_seed(seed, e))``
    with ``w = importance_weights(Q, **config)``; with one replica it is exactly call e of
    ``ImportanceSampler(config, seed=seed).sample_batch(x_pool, q_pool, num_samples)``
    (epoch 0 = its first call). Use as ``DataLoader(ds, sampler=s, batch_size=B)``.
    ``backend`` computes weights and draws (every backend gives the same indices;
    ``"numpy"`` is often fastest for pools below ~10**5).
    """
    __doc__ += "\n    " + _Q_KEYWORDS + "\n"

    def __init__(self, q_pool=None, num_samples=None, *, x_pool=None, q_fn=None,
                 refresh_every=1, q_batch_size=65536, config=None, seed=0, backend="auto",
                 num_replicas=None, rank=None, drop_last=False):
        num_samples = check_count(num_samples, "num_samples", minimum=1)
        self._init_weights(q_pool, config, seed, backend, x_pool, q_fn, refresh_every,
                           q_batch_size)
        self._init_shards(num_replicas, rank, drop_last, num_samples, "num_samples")
        self.num_samples = num_samples
        self.likelihood_ratios = None

    def __len__(self) -> int:
        return self._shard_len()

    def global_indices(self) -> np.ndarray:
        """The epoch's draw over all ranks, int64 (total_size,)."""
        from ..sampling import sample_indices
        return sample_indices(self._weights, self.total_size,
                              seed=call_seed(self.seed, self.epoch), backend=self.backend)

    def indices(self) -> np.ndarray:
        """This rank's indices of the current epoch, int64 (len(self),); sets
        ``likelihood_ratios`` (float64, ``1 / (N * pi_i)`` in draw order)."""
        w = self._weights
        idx = self._shard(self.global_indices())
        self._epoch_weights = w
        self.likelihood_ratios = 1.0 / (w.size * w[idx])
        return idx

    def __iter__(self):
        return iter(self.indices().tolist())

    def likelihood_ratio(self, indices):
        """``1 / (N * pi_i)`` for pool indices drawn in the last epoch started (array or
        tensor in, the same kind out): weight a per-sample loss by it for an unbiased
        estimate of the uniform mean."""
        w = self._epoch_weights
        return _like(1.0 / (w.size * w[_indices_array(indices, w.size)]), indices)

    def state_dict(self) -> dict:
        """Config, seed, epoch, size, backend and the current Q values (not ``q_fn``
        nor the sharding, which belong to the run that loads it)."""
        return {"version": STATE_VERSION, "config": asdict(self.config), "seed": self.seed,
                "epoch": self.epoch,
                "num_samples": self.num_samples, "backend": self.backend,
                "q_pool": self._q.copy()}

    def load_state_dict(self, state) -> None:
        """Restore ``state`` (validated first); this sampler keeps its ``q_fn``,
        ``x_pool``, ``refresh_every`` and sharding."""
        other = type(self).from_state_dict(state, num_replicas=self.num_replicas,
                                           rank=self.rank, drop_last=self.drop_last)
        if self.q_fn is not None:
            other.q_fn, other.x_pool, other.q_batch_size = self.q_fn, self.x_pool, self.q_batch_size
            other.q_epoch, other.q_evaluations = other.epoch, self.q_evaluations
        other.refresh_every = self.refresh_every
        self.__dict__.update(other.__dict__)

    @classmethod
    def from_state_dict(cls, state, *, num_replicas=None, rank=None,
                        drop_last=False) -> "ImportanceWeightedSampler":
        from ..sampling import REMOVED_FIELDS, ImportanceSamplerConfig
        if isinstance(state, dict) and "version" not in state:
            state = {**state, "version": STATE_VERSION}   # written before states had one
        check_state(state, cls.__name__, ("config", "seed", "epoch", "num_samples", "backend",
                                          "q_pool"))
        config = config_fields(state["config"], cls.__name__,
                               [f.name for f in fields(ImportanceSamplerConfig)],
                               removed=REMOVED_FIELDS)
        obj = cls(state["q_pool"], state["num_samples"],
                  config=ImportanceSamplerConfig(**config), seed=state["seed"],
                  backend=state["backend"], num_replicas=num_replicas, rank=rank,
                  drop_last=drop_last)
        obj.set_epoch(state["epoch"])
        return obj


class HybridBatchSampler(_PoolWeights, Sampler):
    """Batch sampler: ``num_batches`` batches of ``batch_size`` hybrid draws per epoch.

    Batch b of epoch e's global draw (``total_size`` batches, = ``num_batches`` with one
    replica) is ``hybrid_indices(w, batch_size, ratio=ratio,
    seed=derive_seed(seed, e * total_size + b))``: ``floor(batch_size * ratio)``
    importance draws and the rest uniform, shuffled; with one replica it is call
    ``e * num_batches + b`` of ``ImportanceSampler(config, seed=seed).hybrid_sample``.
    ``ratio`` defaults to ``config.importance_batch_ratio``; ``ratio=0`` gives uniform
    batches. Use as ``DataLoader(ds, batch_sampler=s)``. ``backend`` computes the weights.
    """
    __doc__ += "\n    " + _Q_KEYWORDS + "\n"

    def __init__(self, q_pool=None, batch_size=None, num_batches=None, *, x_pool=None,
                 q_fn=None, refresh_every=1, q_batch_size=65536, config=None, ratio=None,
                 seed=0, backend="auto", num_replicas=None, rank=None, drop_last=False):
        batch_size = check_count(batch_size, "batch_size", minimum=1)
        num_batches = check_count(num_batches, "num_batches", minimum=1)
        config = _config(config)
        ratio = config.importance_batch_ratio if ratio is None else ratio
        ratio = check_real(ratio, "ratio", low=0.0, high=1.0)
        self._init_weights(q_pool, config, seed, backend, x_pool, q_fn, refresh_every,
                           q_batch_size)
        self._init_shards(num_replicas, rank, drop_last, num_batches, "num_batches")
        self.batch_size, self.num_batches, self.ratio = batch_size, num_batches, ratio

    def __len__(self) -> int:
        return self._shard_len()

    def global_batches(self) -> list:
        """The epoch's batches over all ranks: ``total_size`` int64 arrays (batch_size,).

        Each equals ``hybrid_indices(...)[0]`` (tested); the prefix sums of the weights
        are built once per epoch instead of once per batch (the contract's definition:
        importance draw j = ``searchsorted(C, u(s, 0, j) * C[-1], "right")`` clamped to
        the last positive weight, uniform draw j = ``floor(u(s, 2, j) * N)``, order
        ``argsort(u(s, 3, 0..B-1), stable)`` applied to importance-then-uniform).
        """
        from ..rng import STREAMS, uniforms
        from ..sampling import prefix_sums, uniform_indices
        w = self._weights
        c = prefix_sums(w)
        last_positive = np.flatnonzero(w)[-1]
        n_imp = int(np.floor(self.batch_size * self.ratio))
        first = self.epoch * self.total_size
        out = []
        for b in range(self.total_size):
            s = call_seed(self.seed, first + b)
            u = uniforms(s, STREAMS["importance"], n_imp, backend="numpy")
            imp = np.minimum(np.searchsorted(c, u * c[-1], side="right"), last_positive)
            uni = uniform_indices(w.size, self.batch_size - n_imp, seed=s, backend="numpy")
            order = np.argsort(uniforms(s, STREAMS["shuffle"], self.batch_size,
                                        backend="numpy"), kind="stable")
            out.append(np.concatenate((imp, uni)).astype(np.int64)[order])
        self._epoch_weights = w
        return out

    def batches(self) -> list:
        """This rank's batches of the current epoch (``global_batches()[rank::R]``)."""
        return self._shard(self.global_batches())

    def __iter__(self):
        return iter([b.tolist() for b in self.batches()])

    def likelihood_ratio(self, indices):
        """``1 / (N * m_i)``, ``m_i = ratio * pi_i + (1 - ratio) / N``, for pool indices of
        the last epoch started (array or tensor in, the same kind out)."""
        w = self._epoch_weights
        m = self.ratio * w[_indices_array(indices, w.size)] + (1.0 - self.ratio) / w.size
        return _like(1.0 / (w.size * m), indices)


class CurriculumBatchSampler(_PoolQ, Sampler):
    """Batch sampler over |Q| bands driven by a :class:`zp_ref.curriculum.BandCurriculum`.

    Epoch e's global draw is ``total_size`` (= ``num_batches`` with one replica) calls
    ``curriculum.sample(Q, batch_size, e)`` (band-major, the mix of the curriculum's
    stage at e). The draw is made once, the first time the epoch is iterated (or
    :meth:`batches` called) after ``set_epoch(e)``, and replayed by every later
    iteration of that epoch: a pure function of (seed, e, the curriculum's state then,
    Q). The curriculum advances only through those draws and :meth:`update` (call it at
    the end of an epoch to let an adaptive curriculum advance); ``update_q`` after the
    draw takes effect from the next epoch. ``curriculum=None`` builds
    ``BandCurriculum(seed=seed)`` (default stages and edges); ``seed`` is only accepted
    then. With several replicas every rank must hold the same curriculum (same
    construction, same ``update`` arguments, e.g. all-reduced coverage and loss).
    """
    __doc__ += "\n    " + _Q_KEYWORDS + "\n"

    def __init__(self, q_pool=None, batch_size=None, num_batches=None, *, curriculum=None,
                 seed=None, x_pool=None, q_fn=None, refresh_every=1, q_batch_size=65536,
                 num_replicas=None, rank=None, drop_last=False):
        from ..curriculum import BandCurriculum
        batch_size = check_count(batch_size, "batch_size", minimum=1)
        num_batches = check_count(num_batches, "num_batches", minimum=1)
        if curriculum is None:
            curriculum = BandCurriculum(seed=0 if seed is None else check_seed(seed))
        elif not isinstance(curriculum, BandCurriculum):
            raise TypeError(f"curriculum must be a BandCurriculum or None, got "
                            f"{type(curriculum).__name__}")
        elif seed is not None:
            raise ValueError(f"seed={seed!r} is only used when curriculum is None; the given "
                             f"curriculum draws with its own seed ({curriculum.seed})")
        q = check_q(self._init_q(q_pool, x_pool, q_fn, refresh_every, q_batch_size),
                     "q_pool" if q_fn is None else "q_fn output")
        self._init_shards(num_replicas, rank, drop_last, num_batches, "num_batches")
        self.curriculum, self._q = curriculum, q
        self.batch_size, self.num_batches = batch_size, num_batches
        self.epoch = curriculum.current_epoch
        if self.q_fn is not None:
            self.q_epoch = self.epoch
        self._draw = None                  # (batches, band counts) of self.epoch, once made
        self.last_band_counts = None

    def __len__(self) -> int:
        return self._shard_len()

    def set_epoch(self, epoch) -> None:
        """Select the epoch of the next iteration (never below the curriculum's); with
        ``q_fn``, re-evaluate Q first every ``refresh_every`` epochs. Setting the epoch
        whose draw is already made keeps that draw."""
        epoch = check_count(epoch, "epoch")
        if epoch < self.curriculum.current_epoch:
            raise ValueError(f"epoch must not decrease: got {epoch}, the curriculum is at "
                             f"epoch {self.curriculum.current_epoch}")
        self._advance_q(epoch)
        if epoch != self.epoch:
            self._draw = None
        self.epoch = epoch

    def update_q(self, q) -> None:
        """Replace the pool's Q values (tensor or array, (N,) or (N, 1), same N), used
        from the next draw (this epoch's if it is not made yet)."""
        q = _q_array(q, "q", self.pool_size)
        self._q = check_q(q, "q")

    def update(self, coverage=None, loss=None) -> dict:
        """``curriculum.update(epoch, coverage, loss)`` for the current epoch."""
        return self.curriculum.update(self.epoch, coverage=coverage, loss=loss)

    def _epoch_draw(self) -> tuple:
        if self._draw is None:
            draws = [self.curriculum.sample(self._q, self.batch_size, self.epoch)
                     for _ in range(self.total_size)]
            self._draw = ([idx for idx, _ in draws], np.stack([c for _, c in draws]))
        return self._draw

    def global_batches(self) -> list:
        """The epoch's batches over all ranks: ``total_size`` int64 arrays (batch_size,)."""
        return list(self._epoch_draw()[0])

    def batches(self) -> list:
        """This rank's batches of the current epoch (int64 (batch_size,) each); sets
        ``last_band_counts`` (int64 (len(self), K+1))."""
        batches, counts = self._epoch_draw()
        self.last_band_counts = self._shard(counts)
        return self._shard(batches)

    def __iter__(self):
        return iter([b.tolist() for b in self.batches()])


# ------------------------------------------------------------------ loops without an epoch hook
class EpochLoader:
    """An iterable over ``loader`` that calls its zp_ref sampler's ``set_epoch`` at the
    start of every pass, for training loops with no epoch hook (zeroproofml's
    ``SCMTrainer.fit`` iterates its ``train_loader`` once per epoch and nothing more).

    ``loader``: a DataLoader whose ``batch_sampler`` or ``sampler`` has ``set_epoch``.
    ``epoch``: a callable giving the epoch of the pass about to start (e.g.
    ``lambda: trainer.current_epoch``, right on resume), or None to number the passes
    ``start_epoch, start_epoch + 1, ...``. ``len()`` is the loader's.
    """

    def __init__(self, loader, epoch=None, *, start_epoch=0):
        self.sampler = next((s for s in (getattr(loader, "batch_sampler", None),
                                         getattr(loader, "sampler", None))
                             if callable(getattr(s, "set_epoch", None))), None)
        if self.sampler is None:
            raise TypeError(f"loader must be a DataLoader whose sampler or batch_sampler has "
                            f"set_epoch (a zp_ref.torch_bridge sampler), got "
                            f"{type(loader).__name__}")
        if epoch is not None and not callable(epoch):
            raise TypeError(f"epoch must be a callable returning the epoch or None, got "
                            f"{type(epoch).__name__}")
        self.loader, self.epoch_fn = loader, epoch
        self.next_epoch = check_count(start_epoch, "start_epoch")

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        epoch = self.next_epoch if self.epoch_fn is None else self.epoch_fn()
        self.sampler.set_epoch(epoch)
        self.next_epoch = self.sampler.epoch + 1
        return iter(self.loader)
