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
from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np

try:
    import torch  # noqa: F401  (zp_ref.apps.study_model imports it from here)
    from torch.utils.data import Sampler
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("zp_ref.bridges.torch needs PyTorch; install it with "
                      "`pip install zp_ref[torch]` (or `pip install torch`)") from exc

from ..checks import check_count, check_real
from ..rng import call_seed
from ..state import STATE_VERSION, check_state, config_fields
from .torch_curriculum import CurriculumBatchSampler
from .torch_loader import EpochLoader
from .torch_pool import (Q_KEYWORDS, PoolQ, PoolWeights, as_tensor, evaluate_q_fn, indices_array,
                         like_indices, sampler_config, sharded_total, to_numpy)

__all__ = ["as_tensor", "to_numpy", "evaluate_q_fn", "ImportanceWeightedSampler",
           "HybridBatchSampler", "CurriculumBatchSampler", "EpochLoader"]


# ------------------------------------------------------------------ samplers
class ImportanceWeightedSampler(PoolWeights, Sampler):
    """``Sampler[int]`` drawing ``num_samples`` pool indices per epoch by ``1/|Q|**p``
    weights.

    Epoch e's global draw is ``sample_indices(w, total_size, seed=derive_seed(seed, e))``
    with ``w = importance_weights(Q, **config)``; with one replica it is exactly call e of
    ``ImportanceSampler(config, seed=seed).sample_batch(x_pool, q_pool, num_samples)``
    (epoch 0 = its first call). Use as ``DataLoader(ds, sampler=s, batch_size=B)``.

    Parameters
    ----------
    num_samples : int
        Indices per epoch (>= 1), before sharding.
    config : ImportanceSamplerConfig or None, default None
        The weights (None: the defaults).
    seed : int, default 0
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Computes weights and draws (every backend gives the same indices; ``"numpy"`` is
        often fastest for pools below ~10**5).
    """
    __doc__ += "\n    " + Q_KEYWORDS + "\n"

    def __init__(self, q_pool=None, num_samples=None, *, x_pool=None, q_fn=None,
                 refresh_every=None, q_batch_size=65536, config=None, seed=0, backend="auto",
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
        return like_indices(1.0 / (w.size * w[indices_array(indices, w.size)]), indices)

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


class HybridBatchSampler(PoolWeights, Sampler):
    """Batch sampler: ``num_batches`` batches of ``batch_size`` hybrid draws per epoch.

    Batch b of epoch e's global draw (``total_size`` batches, = ``num_batches`` with one
    replica) is ``hybrid_indices(w, batch_size, ratio=ratio,
    seed=derive_seed(seed, e * total_size + b))``: ``floor(batch_size * ratio)``
    importance draws and the rest uniform, shuffled; with one replica it is call
    ``e * num_batches + b`` of ``ImportanceSampler(config, seed=seed).hybrid_sample``.
    Use as ``DataLoader(ds, batch_sampler=s)``.

    Parameters
    ----------
    batch_size, num_batches : int
        Batch size and batches per epoch (>= 1).
    config : ImportanceSamplerConfig or None, default None
    ratio : float or None, default None
        Importance share in [0, 1] (None: ``config.importance_batch_ratio``; 0: uniform).
    seed : int, default 0
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Computes the weights.
    """
    __doc__ += "\n    " + Q_KEYWORDS + "\n"

    def __init__(self, q_pool=None, batch_size=None, num_batches=None, *, x_pool=None,
                 q_fn=None, refresh_every=None, q_batch_size=65536, config=None, ratio=None,
                 seed=0, backend="auto", num_replicas=None, rank=None, drop_last=False):
        batch_size = check_count(batch_size, "batch_size", minimum=1)
        num_batches = check_count(num_batches, "num_batches", minimum=1)
        ratio = sampler_config(config).importance_batch_ratio if ratio is None else ratio
        ratio = check_real(ratio, "ratio", low=0.0, high=1.0)
        self._init_weights(q_pool, config, seed, backend, x_pool, q_fn, refresh_every,
                           q_batch_size)
        self._init_shards(num_replicas, rank, drop_last, num_batches, "num_batches")
        self.seeds_per_epoch = self.total_size          # batch b of epoch e: e * total + b
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
        m = self.ratio * w[indices_array(indices, w.size)] + (1.0 - self.ratio) / w.size
        return like_indices(1.0 / (w.size * m), indices)
