"""The loss-driven parts of the model-driven learner (:mod:`zp_ref.model_driven`): RAD's
loss weights and the variance gate of Katharopoulos & Fleuret (2018, "Not All Samples
Are Created Equal: Deep Learning with Importance Sampling", ICML).

The gate (``ModelDrivenConfig.variance_gate = g > 0``). At a refresh where the loss
signal is on (after ``loss_warmup``), with the per-point loss ``loss_i`` the refresh was
told and the epoch's model-driven probabilities ``m_i`` (floor included, sum 1), take the
per-point gradient-norm proxy ``G_i = sqrt(loss_i)``: for a squared-error-type loss the
gradient with respect to the model's output is proportional to the residual, which is
K&F's loss-based upper bound. The second moment of the likelihood-ratio-weighted
gradient estimate under m, relative to uniform draws, is

    r = (sum_i G_i^2 / (N m_i)) / (sum_i G_i^2),

and the estimated speed-up is ``tau = 1 / r`` (1 for uniform m; at most
``N sum G^2 / (sum G)^2`` for m proportional to G). ``tau < g``: the draws until the next
refresh are uniform (as if ``floor`` were 1; likelihood ratios exactly 1), else the
model-driven mixture. No loss to judge by (a non-finite loss or a total of 0): no
estimate (tau None) and the mixture stays on. No extra model evaluation: the loss is the
one the refresh already has.
"""
from __future__ import annotations

import numpy as np

__all__ = ["loss_signal_weights", "variance_speedup", "check_gate_loss", "gate_state",
           "encode_gate", "decode_gate", "GATE_FIELDS"]

#: Entries the gate adds at the end of ``ModelDrivenLearner.decisions()`` (gate > 0).
GATE_FIELDS = 2


def loss_signal_weights(loss: np.ndarray, loss_power: float, loss_cap: float) -> np.ndarray:
    """RAD's loss distribution (N,), sums to 1: ``t = loss**loss_power`` clipped at
    ``loss_cap * mean(t)``; an infinite t gets the cap, t = 0 everywhere is uniform."""
    with np.errstate(over="ignore"):
        t = loss if loss_power == 1 else loss ** loss_power
    top = t.max()
    if 0 < top < 1e300:                     # the common case: one pass each
        w = np.minimum(t, loss_cap * t.mean())
        return w / w.sum()
    finite = np.isfinite(t)
    top = t[finite].max() if finite.any() else 0.0
    if not top > 0:
        return np.full(t.size, 1.0 / t.size) if not (~finite).any() else \
            (~finite) / float((~finite).sum())
    r = t / top                             # no overflow in the mean
    w = np.where(finite, np.minimum(r / r[finite].mean(), loss_cap), loss_cap)
    return w / w.sum()


def variance_speedup(loss: np.ndarray, probabilities: np.ndarray) -> float | None:
    """K&F's estimated speed-up ``tau = sum(G^2) / sum(G^2 / (N m))`` with ``G^2 = loss``.

    Parameters
    ----------
    loss : numpy.ndarray, shape (N,)
        The per-point loss (>= 0), the square of the gradient-norm proxy G.
    probabilities : numpy.ndarray, shape (N,)
        The draw probabilities m (> 0, sum 1).

    Returns
    -------
    float or None
        tau (> 0; 1 for uniform m), or None when the loss is not finite or sums to 0.
    """
    loss = np.asarray(loss, dtype=np.float64)
    top = loss.max() if loss.size else 0.0
    if not (np.isfinite(top) and top > 0):
        return None
    t = loss / top                          # no overflow in the sums
    n = t.size
    return float(t.sum() / (t / (n * np.asarray(probabilities, dtype=np.float64))).sum())


def check_gate_loss(config, has_loss: bool) -> None:
    """ValueError when ``config.variance_gate > 0`` and the runner tells no loss."""
    if config.variance_gate and not has_loss:
        raise ValueError(f"variance_gate={config.variance_gate} needs loss_fn (the gate reads "
                         f"the per-sample loss); pass loss_fn or set variance_gate=0")


def gate_state(tau: float | None, threshold: float) -> tuple:
    """(open, tau): the gate is open unless tau is known and below ``threshold``."""
    return (tau is None or tau >= threshold), tau


def encode_gate(gate_open: bool, tau: float | None) -> list:
    """The gate's entries of ``decisions()``: (1.0 or 0.0, tau or NaN when unknown)."""
    return [float(gate_open), np.nan if tau is None else float(tau)]


def decode_gate(vec: np.ndarray) -> tuple:
    """(open, tau) from :func:`encode_gate`'s two entries."""
    return bool(vec[0]), None if np.isnan(vec[1]) else float(vec[1])
