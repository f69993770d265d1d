"""The training study's optional zeroproofml arm: zeroproofml 0.6.1's own models trained
by its ``SCMTrainer`` with its ``implicit_loss`` (see :mod:`zp_ref.apps.study`,
docs/training_study.md). Without zeroproofml, :func:`available` is False and the study
skips these runs.

Models: 1-D targets get ``ProjectiveRationalMultiHead(1, 3, 3)`` fed with ``(x, x)``
(P and Q polynomials of degree 3 in x, Q = 1 + dQ); 2-D targets get
``RRProjectiveRationalModel`` (an MLP front end whose scalar features feed the head).
Their parameters are re-drawn from :mod:`zp_ref.rng` (stream ``model_init``) so that
the runs do not depend on torch's global random state.
"""
from __future__ import annotations

import importlib.util
import math

import numpy as np

from ..bridges.torch import torch
from ..rng import STREAMS, derive_seed, uniforms

__all__ = ["available", "version", "build_model", "fit", "adaptive_sampler"]

INIT_STREAM = STREAMS["model_init"]
#: Hidden layers of the 2-D model's MLP (zeroproofml's default is (64, 64); halved for
#: the 2-core budget of the study).
HIDDEN_2D = (32, 32)


def available() -> bool:
    """True when zeroproofml (0.6.x) can be imported."""
    return importlib.util.find_spec("zeroproofml") is not None


def version() -> str | None:
    """zeroproofml's version string, or None without it."""
    if not available():
        return None
    import zeroproofml
    return str(zeroproofml.__version__)


class _Head1D(torch.nn.Module):
    """zeroproofml's ``ProjectiveRationalMultiHead`` on x itself: (P, Q) of x (n, 1)."""

    def __init__(self, deg_p: int, deg_q: int):
        super().__init__()
        from zeroproofml.layers.projective_rational import ProjectiveRationalMultiHead
        self.head = ProjectiveRationalMultiHead(1, deg_p, deg_q)

    def forward(self, x):
        return self.head(x, x[:, 0])


class ZeroproofmlModel(torch.nn.Module):
    """A zeroproofml network with the study's model interface: ``forward(x) -> (P, Q)``
    (each (n, 1)) as SCMTrainer needs, ``q(x)`` and ``predict(x)`` (n,), and the
    per-point implicit loss ``sample_loss(x, y)`` (n,)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)

    def q(self, x):
        return self.net(x)[1][:, 0]

    def predict(self, x):
        p, q = self.net(x)
        return p[:, 0] / q[:, 0]

    def sample_loss(self, x, y):
        p, q = self.net(x)
        p, q = p[:, 0], q[:, 0]
        return (p - q * y) ** 2 / (q * q + p * p * y * y + 1e-9)


def build_model(dim: int, seed: int) -> ZeroproofmlModel:
    """The zeroproofml model for a ``dim``-D target, float64, parameters from
    ``zp_ref.rng``: every tensor uniform in +-b with b = 1/sqrt(fan_in) for linear
    layers (torch's own bound) and b = sqrt(3) * 0.01 for the rational head (zeroproofml's
    N(0, 0.01^2) in standard deviation)."""
    if dim == 1:
        net = _Head1D(3, 3)
    else:
        from zeroproofml.layers.projective_rational import (ProjectiveRRModelConfig,
                                                            RRProjectiveRationalModel)
        net = RRProjectiveRationalModel(ProjectiveRRModelConfig(
            input_dim=dim, output_dim=1, hidden_dims=HIDDEN_2D, numerator_degree=3,
            denominator_degree=2))
    model = ZeroproofmlModel(net).double()
    with torch.no_grad():
        for i, (name, param) in enumerate(sorted(model.named_parameters())):
            if "rational_head" in name or name.startswith("net.head"):
                bound = math.sqrt(3.0) * 0.01
            else:
                fan_in = param.shape[1] if param.dim() == 2 else _fan_in(model, name)
                bound = 1.0 / math.sqrt(fan_in)
            u = uniforms(derive_seed(seed, i), INIT_STREAM, param.numel(), backend="numpy")
            param.copy_(torch.from_numpy((2.0 * u - 1.0) * bound).reshape(param.shape))
    return model


def _fan_in(model, bias_name: str) -> int:
    weight = dict(model.named_parameters())[bias_name.rsplit(".", 1)[0] + ".weight"]
    return int(weight.shape[1])


def _implicit(outputs, lifted):
    from zeroproofml.losses import implicit_loss
    return implicit_loss(outputs[0], outputs[1], lifted[0], lifted[1])


class _EpochBatches:
    """SCMTrainer's ``train_loader``: each pass asks ``source`` for the epoch's batches
    (the trainer's ``current_epoch``) and yields (x, y) tensors ((b, dim), (b, 1))."""

    def __init__(self, source, trainer_epoch, on_batch):
        self.source, self.trainer_epoch, self.on_batch = source, trainer_epoch, on_batch

    def __iter__(self):
        batches = self.source.epoch_batches(self.trainer_epoch())
        x, y = self.source.pool()
        for idx in batches:
            self.on_batch(idx)
            it = torch.from_numpy(idx)
            yield x[it], y[it][:, None]


def fit(model: ZeroproofmlModel, source, *, epochs: int, lr: float, lr_min: float,
        schedule: str, steps: int, on_batch) -> bool:
    """Train ``model`` with zeroproofml's SCMTrainer (Adam, ``implicit_loss``) on the
    batches of ``source`` for ``epochs`` epochs; ``schedule`` "cosine" (per optimizer
    update, ``lr`` -> ``lr_min`` over ``steps``) or "constant". ``on_batch(idx)`` sees
    every batch's pool indices. Returns True when the loss went non-finite."""
    from zeroproofml.training import SCMTrainer, TrainingConfig
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr_min)
             if schedule == "cosine" else None)
    holder = {}
    loader = _EpochBatches(source, lambda: holder["trainer"].current_epoch, on_batch)
    trainer = SCMTrainer(model, opt, _implicit, loader, scheduler=sched,
                         config=TrainingConfig(learning_rate=lr, max_epochs=epochs,
                                               coverage_patience=epochs + 1))
    holder["trainer"] = trainer
    logs = trainer.fit()
    return not all(math.isfinite(m["loss"]) for m in logs) or not all(
        torch.isfinite(p).all() for p in model.parameters())


def adaptive_sampler(dataset_size: int):
    """zeroproofml 0.6.1's ``AdaptiveSampler`` over a dataset of ``dataset_size`` items
    (zeroproofml's own class when installed, else :mod:`zp_ref.compat.zeroproofml`'s
    drop-in) and the name of the implementation used."""
    data = torch.utils.data.TensorDataset(torch.zeros(dataset_size))
    if available():
        from zeroproofml.training.sampler import AdaptiveSampler
        return AdaptiveSampler(data), f"zeroproofml {version()}"
    from ..compat.zeroproofml import AdaptiveSampler
    return AdaptiveSampler(data), "zp_ref.compat.zeroproofml"


def adaptive_weights(sampler, q_values: np.ndarray) -> np.ndarray:
    """``sampler.update(Q)`` with the model's Q over the pool; its weights, float64 (N,)."""
    sampler.update(torch.from_numpy(np.asarray(q_values, dtype=np.float64)))
    return np.asarray(sampler.weights.detach().cpu().numpy(), dtype=np.float64)
