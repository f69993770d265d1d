"""PyTorch adapter: zero-copy tensors and zp_ref draws as DataLoader samplers.

Only this module (and :mod:`zp_ref.apps.study`) imports torch; ``import zp_ref`` does not.
Every sampler produces its indices in the main process when its epoch starts (in
``__iter__``), so ``DataLoader(..., num_workers > 0)`` fetches exactly the same items.
Epochs follow ``DistributedSampler``: iterating twice without ``set_epoch`` repeats the
same draws (except ``CurriculumBatchSampler``, whose curriculum advances per call).
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

try:
    import torch
    from torch.utils.data import Sampler
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("zp_ref.torch_bridge needs PyTorch; install it with "
                      "`pip install zp_ref[torch]` (or `pip install torch`)") from exc

from ._validation import as_float_array, check_backend, check_count, check_real, check_seed
from .rng import derive_seed

__all__ = ["as_tensor", "to_numpy", "ImportanceWeightedSampler", "HybridBatchSampler",
           "CurriculumBatchSampler"]


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
    """q (tensor or array) as float64 (N,); N == size when given."""
    if isinstance(q, torch.Tensor):
        if q.is_complex() or q.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got torch dtype {q.dtype}")
        q = q.detach().to("cpu", torch.float64).numpy()
    q = as_float_array(q, name)
    if size is not None and q.size != size:
        raise ValueError(f"{name} must have one value per pool entry ({size}), got {q.size}")
    return q


def _indices_array(indices, size: int) -> np.ndarray:
    idx = to_numpy(indices) if isinstance(indices, torch.Tensor) else np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        raise ValueError(f"indices must lie in [0, {size}), got range "
                         f"[{idx.min()}, {idx.max()}]")
    return idx


def _like(values: np.ndarray, indices):
    """``values`` as a float64 tensor on the device of ``indices`` when that is a tensor."""
    if isinstance(indices, torch.Tensor):
        return torch.from_numpy(values).to(indices.device)
    return values


def _config(config):
    from .sampling import ImportanceSamplerConfig
    if config is None:
        return ImportanceSamplerConfig()
    if not isinstance(config, ImportanceSamplerConfig):
        raise TypeError(f"config must be an ImportanceSamplerConfig or None, got "
                        f"{type(config).__name__}")
    return config


class _PoolWeights:
    """Shared part of the importance-based samplers: config, seed, epoch and the
    normalised weights of the current q pool."""

    def __init__(self, q_pool, config, seed, backend):
        self.config = _config(config)
        self.seed = check_seed(seed)
        self.backend = check_backend(backend)
        self.epoch = 0
        q = _q_array(q_pool, "q_pool")
        self._weights = self._compute(q)
        self._q = q
        self._epoch_weights = self._weights

    def _compute(self, q) -> np.ndarray:
        from .weighting import importance_weights
        return importance_weights(q, **self.config.weight_kwargs(), backend=self.backend)

    @property
    def pool_size(self) -> int:
        return self._q.size

    @property
    def weights(self) -> np.ndarray:
        """Normalised importance weights of the current q pool, float64 (N,)."""
        return self._weights

    def set_epoch(self, epoch) -> None:
        """Select the draws of ``epoch`` (a non-negative int) for the next iteration."""
        self.epoch = check_count(epoch, "epoch")

    def update_q(self, q) -> None:
        """Replace the pool's Q values (tensor or array, (N,), same N), e.g. the model's
        own Q head; the weights change from the next epoch started."""
        q = _q_array(q, "q", self.pool_size)
        weights = self._compute(q)     # validates (NaN refused) before anything changes
        self._q, self._weights = q, weights


# ------------------------------------------------------------------ samplers
class ImportanceWeightedSampler(_PoolWeights, Sampler):
    """``Sampler[int]`` drawing ``num_samples`` pool indices per epoch by 1/|Q|^p weights.

    Epoch e yields ``sample_indices(w, num_samples, seed=derive_seed(seed, e))`` with
    ``w = importance_weights(q_pool, **config)``: exactly the indices of call e of
    ``ImportanceSampler(config, seed=seed).sample_batch(x_pool, q_pool, num_samples)``
    (epoch 0 = its first call). Use as ``DataLoader(ds, sampler=s, batch_size=B)``.
    ``backend`` computes weights and draws (every backend gives the same indices;
    ``"numpy"`` is often fastest for pools below ~10**5).
    """

    def __init__(self, q_pool, num_samples, *, config=None, seed=0, backend="auto"):
        num_samples = check_count(num_samples, "num_samples", minimum=1)
        _PoolWeights.__init__(self, q_pool, config, seed, backend)
        self.num_samples = num_samples
        self.likelihood_ratios = None

    def __len__(self) -> int:
        return self.num_samples

    def indices(self) -> np.ndarray:
        """The current epoch's indices, int64 (num_samples,); sets ``likelihood_ratios``
        (float64 (num_samples,), ``1 / (N * pi_i)`` in draw order)."""
        from .sampling import sample_indices
        w = self._weights
        idx = sample_indices(w, self.num_samples, seed=derive_seed(self.seed, self.epoch),
                             backend=self.backend)
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
        return {"config": asdict(self.config), "seed": self.seed, "epoch": self.epoch,
                "num_samples": self.num_samples, "backend": self.backend,
                "q_pool": self._q.copy()}

    def load_state_dict(self, state) -> None:
        other = type(self).from_state_dict(state)
        self.__dict__.update(other.__dict__)

    @classmethod
    def from_state_dict(cls, state) -> "ImportanceWeightedSampler":
        from .sampling import ImportanceSamplerConfig
        keys = {"config", "seed", "epoch", "num_samples", "backend", "q_pool"}
        if not isinstance(state, dict) or set(state) != keys:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state must be a dict with keys {sorted(keys)}, got {got}")
        if not isinstance(state["config"], dict):
            raise TypeError(f"state['config'] must be a dict, got "
                            f"{type(state['config']).__name__}")
        obj = cls(state["q_pool"], state["num_samples"],
                  config=ImportanceSamplerConfig(**state["config"]), seed=state["seed"],
                  backend=state["backend"])
        obj.set_epoch(state["epoch"])
        return obj


class HybridBatchSampler(_PoolWeights, Sampler):
    """Batch sampler: ``num_batches`` batches of ``batch_size`` hybrid draws per epoch.

    Batch b of epoch e is ``hybrid_indices(w, batch_size, ratio=ratio,
    seed=derive_seed(seed, e * num_batches + b))``: ``floor(batch_size * ratio)``
    importance draws and the rest uniform, shuffled; i.e. call ``e * num_batches + b``
    of ``ImportanceSampler(config, seed=seed).hybrid_sample``. ``ratio`` defaults to
    ``config.importance_batch_ratio``; ``ratio=0`` gives uniform batches.
    Use as ``DataLoader(ds, batch_sampler=s)``. ``backend`` computes the weights.
    """

    def __init__(self, q_pool, batch_size, num_batches, *, config=None, ratio=None, seed=0,
                 backend="auto"):
        batch_size = check_count(batch_size, "batch_size", minimum=1)
        num_batches = check_count(num_batches, "num_batches", minimum=1)
        config = _config(config)
        ratio = config.importance_batch_ratio if ratio is None else ratio
        ratio = check_real(ratio, "ratio", low=0.0, high=1.0)
        _PoolWeights.__init__(self, q_pool, config, seed, backend)
        self.batch_size, self.num_batches, self.ratio = batch_size, num_batches, ratio

    def __len__(self) -> int:
        return self.num_batches

    def batches(self) -> list:
        """The current epoch's batches: ``num_batches`` int64 arrays (batch_size,).

        Each equals ``hybrid_indices(...)[0]`` (tested); the prefix sums of the weights
        are built once per epoch instead of once per batch (the contract's definition:
        importance draw j = ``searchsorted(C, u(s, 0, j) * C[-1], "right")`` clamped to
        the last positive weight, uniform draw j = ``floor(u(s, 2, j) * N)``, order
        ``argsort(u(s, 3, 0..B-1), stable)`` applied to importance-then-uniform).
        """
        from .rng import STREAMS, uniforms
        from .sampling import prefix_sums, uniform_indices
        w = self._weights
        c = prefix_sums(w)
        last_positive = np.flatnonzero(w)[-1]
        n_imp = int(np.floor(self.batch_size * self.ratio))
        first = self.epoch * self.num_batches
        out = []
        for b in range(self.num_batches):
            s = derive_seed(self.seed, first + b)
            u = uniforms(s, STREAMS["importance"], n_imp, backend="numpy")
            imp = np.minimum(np.searchsorted(c, u * c[-1], side="right"), last_positive)
            uni = uniform_indices(w.size, self.batch_size - n_imp, seed=s, backend="numpy")
            order = np.argsort(uniforms(s, STREAMS["shuffle"], self.batch_size,
                                        backend="numpy"), kind="stable")
            out.append(np.concatenate((imp, uni)).astype(np.int64)[order])
        self._epoch_weights = w
        return out

    def __iter__(self):
        return iter([b.tolist() for b in self.batches()])

    def likelihood_ratio(self, indices):
        """``1 / (N * m_i)``, ``m_i = ratio * pi_i + (1 - ratio) / N``, for pool indices of
        the last epoch started (array or tensor in, the same kind out)."""
        w = self._epoch_weights
        m = self.ratio * w[_indices_array(indices, w.size)] + (1.0 - self.ratio) / w.size
        return _like(1.0 / (w.size * m), indices)


class CurriculumBatchSampler(Sampler):
    """Batch sampler over |Q| bands driven by a :class:`zp_ref.curriculum.BandCurriculum`.

    Epoch e yields ``num_batches`` batches, each ``curriculum.sample(q_pool, batch_size,
    e)[0]`` (band-major, the mix of the curriculum's stage at e). The curriculum is
    stateful (its call counter seeds the draws), so iterating again draws new batches.
    Call :meth:`update` at the end of an epoch to let an adaptive curriculum advance.
    ``curriculum=None`` builds ``BandCurriculum(seed=seed)`` (default stages and edges);
    ``seed`` is only accepted then.
    """

    def __init__(self, q_pool, batch_size, num_batches, *, curriculum=None, seed=None):
        from .curriculum import BandCurriculum
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
        q = _q_array(q_pool, "q_pool")
        from .bands import _check_q
        _check_q(q, "q_pool")
        self.curriculum, self._q = curriculum, q
        self.batch_size, self.num_batches = batch_size, num_batches
        self.epoch = curriculum.current_epoch
        self.last_band_counts = None

    def __len__(self) -> int:
        return self.num_batches

    @property
    def pool_size(self) -> int:
        return self._q.size

    def set_epoch(self, epoch) -> None:
        """Select the epoch of the next iteration (never below the curriculum's)."""
        epoch = check_count(epoch, "epoch")
        if epoch < self.curriculum.current_epoch:
            raise ValueError(f"epoch must not decrease: got {epoch}, the curriculum is at "
                             f"epoch {self.curriculum.current_epoch}")
        self.epoch = epoch

    def update_q(self, q) -> None:
        """Replace the pool's Q values (tensor or array, (N,), same N)."""
        from .bands import _check_q
        q = _q_array(q, "q", self.pool_size)
        self._q = _check_q(q, "q")

    def update(self, coverage=None, loss=None) -> dict:
        """``curriculum.update(epoch, coverage, loss)`` for the current epoch."""
        return self.curriculum.update(self.epoch, coverage=coverage, loss=loss)

    def batches(self) -> list:
        """The current epoch's batches (int64 (batch_size,) each); sets
        ``last_band_counts`` (int64 (num_batches, K+1))."""
        draws = [self.curriculum.sample(self._q, self.batch_size, self.epoch)
                 for _ in range(self.num_batches)]
        self.last_band_counts = np.stack([c for _, c in draws])
        return [idx for idx, _ in draws]

    def __iter__(self):
        return iter([b.tolist() for b in self.batches()])
