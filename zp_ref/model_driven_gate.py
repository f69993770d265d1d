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

__all__ = ["loss_cap_level", "loss_signal_weights", "variance_speedup", "check_gate_loss",
           "gate_state", "encode_gate", "decode_gate", "GATE_FIELDS"]

#: Entries the gate adds at the end of ``ModelDrivenLearner.decisions()`` (gate > 0).
GATE_FIELDS = 2


def loss_cap_level(t: np.ndarray, loss_cap: float) -> float:
    """The level c at which ``min(t, c)`` gives no row more than ``loss_cap / N`` of the
    total: the water-filling solution of ``c = loss_cap / N * sum(min(t, c))``; inf when
    no row needs capping. t (N,) is >= 0 and may hold +inf (a row at the level). At
    most ``N / loss_cap`` rows can be at the level, so only the ``floor(N / loss_cap) +
    1`` largest finite rows are sorted. With fewer than ``N / loss_cap`` positive rows no
    level meets the bound and the level is 0 (:func:`loss_signal_weights` then shares
    the mass equally between the positive rows)."""
    n = t.size
    infinite = np.isinf(t)
    m = int(infinite.sum())
    f = t[~infinite] if m else t
    if m == 0 and t.max() * n <= loss_cap * t.sum():
        return np.inf
    k = min(f.size, int(n // loss_cap) + 1)
    part = np.partition(f, f.size - k) if k else f
    top = np.sort(part[f.size - k:])[::-1]                 # the k largest, descending
    low = part[:f.size - k]
    rest = low.sum() + np.concatenate((np.cumsum(top[::-1])[::-1], [0.0]))   # (k+1,)
    j = np.arange(k + 1)
    room = 1.0 - loss_cap * (m + j) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.where(room > 0, loss_cap / n * rest / room, np.inf)
    below = np.concatenate((top, [low.max() if low.size else 0.0]))
    above = np.concatenate(([np.inf], top))
    ok = (room > 0) & (level >= below) & (level <= above)
    return float(level[np.argmax(ok)]) if ok.any() else 0.0


def loss_signal_weights(loss: np.ndarray, loss_power: float, loss_cap: float) -> np.ndarray:
    """RAD's loss distribution (N,), sums to 1: ``t = loss**loss_power`` capped at the
    level of :func:`loss_cap_level`, so that no row gets more than ``loss_cap / N`` (an
    infinite t is at the level). With fewer than ``N / loss_cap`` rows of positive t,
    those rows share the mass equally; t = 0 everywhere is uniform."""
    with np.errstate(over="ignore"):
        t = loss if loss_power == 1 else loss ** loss_power
    top = t.max()
    if top == 0:
        return np.full(t.size, 1.0 / t.size)
    if 0 < top < 1e300:                                     # the common case
        total = t.sum()
        if top * t.size <= loss_cap * total:               # no row needs the cap
            return t / total
    else:                                                   # no overflow in the sums
        finite = np.isfinite(t)
        t = np.where(finite, t / t[finite].max(initial=1.0), np.inf)
    level = loss_cap_level(t, loss_cap)
    w = (t > 0).astype(np.float64) if level == 0.0 else np.minimum(t, level)
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
