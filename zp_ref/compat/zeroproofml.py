"""zeroproofml 0.6.1's ``AdaptiveSampler`` over zp_ref's risk weights and counter RNG.

``from zp_ref.compat.zeroproofml import AdaptiveSampler, AdaptiveSamplerConfig`` in place
of ``from zeroproof.training import ...``: the constructor, ``update(q_values,
bottom_mask=None)``, ``weights``, ``dataloader(**overrides)``, ``__iter__`` and
``__len__`` are zeroproofml's. Added: ``seed=`` (draw c uses ``derive_seed(seed, c)``,
so the batches are reproducible, also with ``num_workers > 0``), Q of shape (N, 1), and
``q_fn=``/``x_pool=`` with ``set_epoch(e)`` (also on its loaders' sampler), which
updates the weights from the model every ``refresh_every`` epochs, so
``zp_ref.torch_bridge.EpochLoader(risk.dataloader(), lambda: trainer.current_epoch)``
refreshes it under zeroproofml's ``SCMTrainer``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..bridges.torch_pool import evaluate_q_fn, pool_tensor
from ..tensors import q_to_numpy, squeeze_q, to_numpy
from .._validation import check_count, check_real, check_seed
from ..rng import call_seed
from ..sampling import sample_indices
from ..weighting import ema_update, sampling_weights, singularity_prob

__all__ = ["AdaptiveSampler", "AdaptiveSamplerConfig", "RiskWeightedSampler"]


@dataclass
class AdaptiveSamplerConfig:
    """zeroproofml 0.6.1's fields and defaults (validated here).

    Parameters
    ----------
    tau_train, beta : float, default 1e-4, 0.1
        Threshold and width of :func:`zp_ref.singularity_prob`, on the scale of |Q|.
    gamma : float, default 0.1
        EMA weight of the newest probabilities.
    alpha, s_min : float, default 1.0, 0.1
        ``weight = max(s_min, 1 + alpha * |ema - bottom|)``.
    batch_size, num_workers : int, default 32, 0
    drop_last, pin_memory : bool, default False
        Passed to the ``DataLoader`` of :meth:`AdaptiveSampler.dataloader`.
    """

    tau_train: float = 1e-4      # |Q| threshold of the singularity probability
    beta: float = 0.1            # sigmoid width (|Q| units)
    gamma: float = 0.1           # EMA weight of the newest probabilities
    alpha: float = 1.0           # weight = max(s_min, 1 + alpha * |ema - bottom|)
    s_min: float = 0.1
    batch_size: int = 32
    num_workers: int = 0
    drop_last: bool = False
    pin_memory: bool = False

    def __post_init__(self):
        check_real(self.tau_train, "tau_train", low=0.0)
        check_real(self.beta, "beta", low=0.0, low_open=True)
        check_real(self.gamma, "gamma", low=0.0, high=1.0)
        check_real(self.alpha, "alpha", low=0.0)
        check_real(self.s_min, "s_min", low=0.0)
        check_count(self.batch_size, "batch_size", minimum=1)
        check_count(self.num_workers, "num_workers")
        for name in ("drop_last", "pin_memory"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")


class RiskWeightedSampler(Sampler):
    """Indices of one epoch drawn with replacement from fixed weights.

    Iteration c of this sampler yields
    ``sample_indices(weights, num_samples, seed=derive_seed(seed, c))``.

    Parameters
    ----------
    weights : array_like or torch.Tensor, shape (N,)
        Finite weights >= 0 with a positive total.
    num_samples : int
        Draws per epoch.
    seed : int
    first_draw : int, default 0
        c of the first iteration (c counts the sampler's iterations).
    """

    def __init__(self, weights, num_samples: int, *, seed: int, first_draw: int = 0):
        self.weights = np.array(weights, dtype=np.float64)
        self.num_samples = check_count(num_samples, "num_samples")
        self.seed = check_seed(seed)
        self.draws = check_count(first_draw, "first_draw")

    def __iter__(self):
        idx = sample_indices(self.weights, self.num_samples,
                             seed=call_seed(self.seed, self.draws))
        self.draws += 1
        return iter(idx.tolist())

    def __len__(self) -> int:
        return self.num_samples


class AdaptiveSampler:
    """Wrap a dataset with adaptive sampling based on singularity risk (zeroproofml
    0.6.1's class). ``weights`` (float64 tensor (N,)) start at 1; every ``update`` sets
    ``ema = ema_update(ema, singularity_prob(q, tau_train, beta), gamma)`` and
    ``weights = sampling_weights(ema, bottom_mask, alpha=alpha, s_min=s_min)``.

    A loader made by :meth:`dataloader` draws with the weights current at its creation,
    and from the latest weights after each ``set_epoch`` of its sampler.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        N items.
    config : AdaptiveSamplerConfig or None, default None
    seed : int, default 0
    q_fn : callable or None, default None
        Added: the model's Q head; ``set_epoch(e)`` calls
        ``update(evaluate_q_fn(q_fn, x_pool))`` when ``e % refresh_every == 0`` (once per
        epoch); without ``q_fn``, ``set_epoch`` only records the epoch.
    x_pool : torch.Tensor or numpy.ndarray, shape (N, ...), or None
        The dataset's inputs (with ``q_fn``).
    refresh_every : int, default 1
    q_batch_size : int, default 65536
        Rows per ``q_fn`` call.
    """

    def __init__(self, dataset, config: AdaptiveSamplerConfig | None = None, *, seed=0,
                 q_fn=None, x_pool=None, refresh_every=1, q_batch_size=65536):
        if config is not None and not isinstance(config, AdaptiveSamplerConfig):
            raise TypeError(f"config must be an AdaptiveSamplerConfig or None, got "
                            f"{type(config).__name__}")
        self.dataset = dataset
        self.config = config or AdaptiveSamplerConfig()
        self.seed = check_seed(seed)
        n = len(dataset)
        if q_fn is not None and not callable(q_fn):
            raise TypeError(f"q_fn must be callable (x -> Q(x)) or None, got "
                            f"{type(q_fn).__name__}")
        if q_fn is not None:
            x_pool = pool_tensor(x_pool)
            if x_pool.shape[0] != n:
                raise ValueError(f"x_pool must have one row per dataset item ({n}), got "
                                 f"{x_pool.shape[0]}")
        elif x_pool is not None:
            raise ValueError("x_pool is only used with q_fn")
        self.q_fn, self.x_pool = q_fn, x_pool
        self.refresh_every = check_count(refresh_every, "refresh_every", minimum=1)
        self.q_batch_size = check_count(q_batch_size, "q_batch_size", minimum=1)
        self.epoch, self.q_epoch = 0, None
        self._smoothed_prob = np.zeros(n)
        self._weights = np.ones(n)
        self._draws = 0                    # epochs drawn so far, over every loader

    def set_epoch(self, epoch) -> None:
        """Record the epoch about to start; with ``q_fn``, update the weights from the
        model's Q on ``x_pool`` first when ``epoch % refresh_every == 0`` (once per
        epoch). A failing ``q_fn`` changes nothing."""
        epoch = check_count(epoch, "epoch")
        if self.q_fn is not None and epoch % self.refresh_every == 0 and epoch != self.q_epoch:
            self.update(evaluate_q_fn(self.q_fn, self.x_pool, self.q_batch_size))
            self.q_epoch = epoch
        self.epoch = epoch
    @property
    def weights(self) -> torch.Tensor:
        """The current sampling weights, float64 (N,) (a copy)."""
        return torch.from_numpy(self._weights.copy())

    def update(self, q_values, bottom_mask=None) -> None:
        """Update the weights from the model's Q over the whole dataset (N,) or (N, 1),
        ordered as the dataset; ``bottom_mask`` (N,) marks bottom targets."""
        q = q_to_numpy(q_values, "q_values")
        if np.ndim(q) != 1 or len(q) != len(self._weights):
            raise ValueError(f"q_values must hold one Q per dataset item ({len(self._weights)}),"
                             f" got shape {np.shape(q)}")
        if bottom_mask is not None:
            bottom_mask = to_numpy(squeeze_q(bottom_mask, "bottom_mask"))
        c = self.config
        probs = singularity_prob(q, c.tau_train, c.beta)
        smoothed = ema_update(self._smoothed_prob, probs, c.gamma)
        weights = sampling_weights(smoothed, bottom_mask, alpha=c.alpha, s_min=c.s_min)
        self._smoothed_prob, self._weights = smoothed, weights

    def _sampler(self) -> RiskWeightedSampler:
        return _SharedCounterSampler(self)

    def dataloader(self, **overrides) -> DataLoader:
        """A ``DataLoader`` over the dataset drawing with the latest weights (config's
        batch_size, num_workers, drop_last, pin_memory, overridable)."""
        params = {"batch_size": self.config.batch_size, "num_workers": self.config.num_workers,
                  "drop_last": self.config.drop_last, "pin_memory": self.config.pin_memory}
        params.update(overrides)
        return DataLoader(self.dataset, sampler=self._sampler(), **params)

    def __iter__(self):
        return iter(self.dataloader())

    def __len__(self) -> int:
        return len(self.dataset)


class _SharedCounterSampler(RiskWeightedSampler):
    """A RiskWeightedSampler of the owner's weights at creation whose draw counter is
    the owner's, so successive loaders and epochs never repeat a draw."""

    def __init__(self, owner: AdaptiveSampler):
        super().__init__(owner._weights, len(owner.dataset), seed=owner.seed)
        self._owner = owner

    @property
    def epoch(self) -> int:
        return self._owner.epoch

    def set_epoch(self, epoch) -> None:
        """``owner.set_epoch(epoch)``, then draw with the owner's latest weights."""
        self._owner.set_epoch(epoch)
        self.weights = self._owner._weights.copy()

    def __iter__(self):
        self.draws = self._owner._draws
        self._owner._draws += 1
        return super().__iter__()
