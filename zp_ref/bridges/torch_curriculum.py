"""``CurriculumBatchSampler``: batches over |Q| bands from a BandCurriculum, as a
DataLoader ``batch_sampler`` (see :mod:`zp_ref.bridges.torch`)."""
from __future__ import annotations

import sys

import numpy as np
from torch.utils.data import Sampler

from ..checks import check_count, check_q, check_seed
from .torch_pool import PoolQ, Q_KEYWORDS, indices_array, like_indices, q_array, sampler_config

__all__ = ["CurriculumBatchSampler"]


class CurriculumBatchSampler(PoolQ, Sampler):
    """Batch sampler over |Q| bands driven by a :class:`zp_ref.curriculum.BandCurriculum`.

    Epoch e's global draw is ``total_size`` (= ``num_batches`` with one replica) calls
    ``curriculum.sample(Q, batch_size, e)`` (band-major, the mix of the curriculum's
    stage at e). The draw is made once, the first time the epoch is iterated (or
    :meth:`batches` called) after ``set_epoch(e)``, and replayed by every later
    iteration of that epoch: a pure function of (seed, e, the curriculum's state then,
    Q). The curriculum advances only through those draws and :meth:`update` (call it at
    the end of an epoch to let an adaptive curriculum advance); ``update_q`` after the
    draw takes effect from the next epoch. :meth:`likelihood_ratio` gives
    ``1 / (N * m_i)`` for the epoch's achieved band mix. With several replicas every
    rank must hold the same curriculum (same construction, same ``update`` arguments,
    e.g. all-reduced coverage and loss).

    Parameters
    ----------
    batch_size, num_batches : int
        Batch size and batches per epoch (>= 1).
    curriculum : BandCurriculum or None, default None
        None builds ``BandCurriculum(seed=seed, weight_power=config.weight_power)``
        (default stages and edges); a given curriculum draws with its own seed.
    seed : int, default 0
        A ``seed`` other than 0 that differs from a given curriculum's is refused.
    config : ImportanceSamplerConfig or None, default None
        Its ``resample_frequency`` is the default of ``refresh_every``, its
        ``weight_power`` the built curriculum's; its other fields do not apply.
    """
    __doc__ += "\n    " + Q_KEYWORDS + "\n"

    def __init__(self, q_pool=None, batch_size=None, num_batches=None, *, curriculum=None,
                 seed=0, config=None, x_pool=None, q_fn=None, refresh_every=None,
                 q_batch_size=65536, num_replicas=None, rank=None, drop_last=False):
        from ..curriculum import BandCurriculum
        batch_size = check_count(batch_size, "batch_size", minimum=1)
        num_batches = check_count(num_batches, "num_batches", minimum=1)
        seed = 0 if seed is None else check_seed(seed)
        weight_config = sampler_config(config)
        if curriculum is None:
            curriculum = BandCurriculum(seed=seed, weight_power=weight_config.weight_power)
        elif not isinstance(curriculum, BandCurriculum):
            raise TypeError(f"curriculum must be a BandCurriculum or None, got "
                            f"{type(curriculum).__name__}")
        elif seed not in (0, curriculum.seed):
            raise ValueError(f"seed={seed!r} is only used when curriculum is None; the given "
                             f"curriculum draws with its own seed ({curriculum.seed})")
        q = check_q(self._init_q(q_pool, x_pool, q_fn, refresh_every, q_batch_size, config),
                     "q_pool" if q_fn is None else "q_fn output")
        self._init_shards(num_replicas, rank, drop_last, num_batches, "num_batches")
        self.curriculum, self._q = curriculum, q
        self.batch_size, self.num_batches = batch_size, num_batches
        self.epoch = curriculum.current_epoch
        if self.q_fn is not None:
            self.q_epoch = self.epoch
        self._draw = None                  # (batches, band counts) of self.epoch, once made
        self._epoch_mix = None             # m_i of the last draw made
        self.last_band_counts = None

    def __len__(self) -> int:
        return self._shard_len()

    def set_epoch(self, epoch) -> None:
        """Select the epoch of the next iteration (never below the curriculum's); with
        ``q_fn``, re-evaluate Q first every ``refresh_every`` epochs. Setting the epoch
        whose draw is already made keeps that draw."""
        epoch = self._check_epoch(epoch)
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
        self._q = check_q(q_array(q, "q", self.pool_size), "q")

    def update(self, coverage=None, loss=None) -> dict:
        """``curriculum.update(epoch, coverage, loss)`` for the current epoch."""
        return self.curriculum.update(self.epoch, coverage=coverage, loss=loss)

    def _epoch_draw(self) -> tuple:
        if self._draw is None:
            draws = [self.curriculum.sample(self._q, self.batch_size, self.epoch)
                     for _ in range(self.total_size)]
            self._draw = ([idx for idx, _ in draws], np.stack([c for _, c in draws]))
            self._epoch_mix = self._draw_probabilities(self._draw[1])
        return self._draw

    def _draw_probabilities(self, counts) -> np.ndarray:
        """m_i of the epoch's draw, float64 (N,): the achieved share of i's band times
        i's probability inside its band (uniform: 1 / band size; importance:
        w_i / band total of ``importance_weights(Q, weight_power, normalize=False,
        max_weight=None)``, as BandCurriculum.sample draws). Band edges: those of the
        epoch's last draw (exact without a delta_schedule)."""
        from ..bands import band_of
        cur = self.curriculum
        bands = band_of(self._q, edges=np.asarray(cur.last_info["edges"]))
        share = counts.sum(axis=0) / counts.sum()
        if cur.within == "uniform":
            inside = np.ones(self._q.size)
        else:
            from ..weighting import importance_weights
            inside = importance_weights(self._q, weight_power=cur.weight_power,
                                        max_weight=sys.float_info.max, normalize=False)
        band_total = np.bincount(bands, weights=inside, minlength=share.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            m = share[bands] * inside / band_total[bands]
        return np.where(np.isfinite(m), m, 0.0)

    def likelihood_ratio(self, indices):
        """``1 / (N * m_i)`` for pool indices of the epoch last drawn (array or tensor in,
        the same kind out), ``m_i`` the probability of drawing i under the epoch's
        achieved band mix (see :meth:`_draw_probabilities`): weight a per-sample loss by
        it for an unbiased estimate of the uniform mean over the pool."""
        if self._draw is None and self._epoch_mix is None:
            raise ValueError("likelihood_ratio needs an epoch's draw: iterate the sampler "
                             "(or call batches()) first")
        m = self._epoch_mix
        with np.errstate(divide="ignore"):
            return like_indices(1.0 / (m.size * m[indices_array(indices, m.size)]), indices)

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
