"""Importance weights 1/|Q|^p (clipped, tempered) and zeroproofml 0.6 risk weights.

The ``_numpy`` functions are the oracle: plain NumPy, the contract in code.
"""
from __future__ import annotations

import math
import sys
import warnings

import numpy as np

from . import recycled
from .tensors import tensor_io
from ._validation import as_float_array, check_choice, check_real
from .backends import resolve_backend

NAN_POLICIES = ("raise", "omit")


def check_weight_config(weight_power, min_q_abs, max_weight, temperature):
    """Validate the four weight parameters; returns them as floats.

    Weights never exceed ``max_weight ** (1 / temperature)``, so that must be a finite
    float64 (otherwise tempered weights overflow to inf and normalise to NaN)."""
    config = (check_real(weight_power, "weight_power", low=0.0),
              check_real(min_q_abs, "min_q_abs", low=0.0, low_open=True),
              check_real(max_weight, "max_weight", low=0.0, low_open=True),
              check_real(temperature, "temperature", low=0.0, low_open=True))
    if math.log(config[2]) / config[3] > math.log(sys.float_info.max):
        raise ValueError(f"max_weight ** (1 / temperature) = {config[2]} ** (1 / {config[3]}) "
                         f"overflows float64: lower max_weight or raise temperature")
    return config


def _importance_weights_numpy(q, p, min_q_abs, max_weight, temperature, normalize=True):
    """The oracle (q without NaN)."""
    a = np.maximum(np.abs(q), min_q_abs)
    with np.errstate(over="ignore", divide="ignore", under="ignore"):
        w = 1.0 / a**p                        # a**p beyond float64: weight 0 (or the cap)
        w = np.minimum(w, max_weight)
        if temperature != 1.0:
            w = w ** (1.0 / temperature)
    w[np.isinf(q)] = 0.0                      # q = +-inf: infinitely far from a pole
    if normalize:
        w = w / w.sum()
    return w


@tensor_io(q_args=("q",))
def importance_weights(q, *, weight_power=2.0, min_q_abs=1e-6, max_weight=100.0,
                       temperature=1.0, normalize=True, nan_policy="raise",
                       backend="auto", out=None) -> np.ndarray:
    """Importance weights of a pool from its Q values.

    ``a = max(|q|, min_q_abs)``, ``w = a**-p``, ``w = min(w, max_weight)``,
    ``w = w**(1/T)`` when ``T != 1``, then ``w / sum(w)`` when ``normalize``.
    ``q = +-inf`` gives weight 0.

    Parameters
    ----------
    q : array_like or torch.Tensor, shape (N,) or (N, 1)
        Real Q values of the pool (a tensor gives a tensor, docs/compat.md).
    weight_power : float, default 2.0
        p >= 0.
    min_q_abs : float, default 1e-6
        |Q| is clipped below at this value (> 0, units of Q).
    max_weight : float, default 100.0
        Weights are clipped above at this value (> 0), before tempering.
    temperature : float, default 1.0
        T > 0; ``max_weight ** (1 / T)`` must be a finite float64.
    normalize : bool, default True
        Divide by the sum.
    nan_policy : {"raise", "omit"}, default "raise"
        NaN raises ``ValueError``; ``"omit"`` gives it weight 0 and reports the count in a
        ``RuntimeWarning``.
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.
    out : numpy.ndarray or None, default None
        Writeable C-contiguous float64 (N,), not overlapping ``q``: receives the result
        without a new allocation (contents unspecified when the call raises).

    Returns
    -------
    numpy.ndarray
        float64, shape (N,) (``out`` when given; a tensor for a tensor ``q``).
    """
    p, min_q_abs, max_weight, temperature = check_weight_config(
        weight_power, min_q_abs, max_weight, temperature)
    check_choice(nan_policy, "nan_policy", NAN_POLICIES)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be True or False, got {normalize!r}")
    q = as_float_array(q, "q")
    out = _check_out(out, q)
    backend = resolve_backend(backend, q.size)
    if backend == "numpy":
        n_nan = int(np.isnan(q).sum())
        if not n_nan or nan_policy == "raise":
            _check_nan(q, n_nan, nan_policy)
        w = _importance_weights_numpy(np.where(np.isnan(q), np.inf, q), p, min_q_abs,
                                      max_weight, temperature, normalize=False)
        with np.errstate(over="ignore"):      # an infinite total is refused below
            total = w.sum()
    elif backend == "cpu":
        from .kernels import threads_for
        from .kernels.cpu_weights import importance_weights_cpu
        with threads_for(q.size):
            w, total, n_nan = importance_weights_cpu(q, p, min_q_abs, max_weight, temperature,
                                                     recycled.empty(q.size) if out is None else out)
    else:
        from .kernels.gpu_weights import importance_weights_gpu
        w, total, n_nan = importance_weights_gpu(q, p, min_q_abs, max_weight, temperature,
                                                 normalize)
    _check_nan(q, n_nan, nan_policy)
    if normalize:
        check_weight_total(total, q.size, lambda: bool(np.isfinite(q).any()))
        if backend == "cpu":
            from .kernels import threads_for
            from .kernels.cpu_weights import divide_inplace
            with threads_for(w.size):
                divide_inplace(w, total)
        elif backend == "numpy":
            w = w / total
    if out is None or w is out:
        return w
    out[...] = w
    return out


def check_weight_total(total: float, size: int, q_has_finite) -> None:
    """Refuse a total that cannot normalise the weights: 0 (every weight is 0: q holds no
    finite value, or every weight underflowed) or not finite (overflow). ``q_has_finite``
    is a callable, evaluated only on the error path, that says which of the two zeros."""
    if not total > 0.0:
        if q_has_finite():
            raise ValueError("every weight underflowed to 0 (|q| ** -weight_power is below "
                             "float64's smallest positive number for every finite q): lower "
                             "weight_power or raise temperature, or pass normalize=False to "
                             "get the zeros")
        raise ValueError("every weight is 0 (q holds no finite value): the weights cannot "
                         "be normalised; pass normalize=False to get the zeros")
    if not math.isfinite(total):
        raise ValueError(f"the sum of the {size} weights overflows float64 ({total}): "
                         f"lower max_weight (each weight is at most "
                         f"max_weight ** (1 / temperature))")


def _check_nan(q, n_nan, nan_policy):
    if not n_nan:
        return
    if nan_policy == "raise":
        raise ValueError(f"q holds {n_nan} NaN value(s), first at index "
                         f"{int(np.argmax(np.isnan(q)))}; clean them or pass nan_policy='omit'")
    warnings.warn(f"importance_weights: {n_nan} NaN value(s) in q given weight 0 "
                  f"(nan_policy='omit')", RuntimeWarning, stacklevel=3)


def _check_out(out, q):
    if out is None:
        return None
    if not isinstance(out, np.ndarray) or out.dtype != np.float64 or out.shape != q.shape \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise TypeError(f"out must be a writeable C-contiguous float64 array of shape {q.shape}, "
                        f"got {type(out).__name__} "
                        f"{getattr(out, 'dtype', '')} {getattr(out, 'shape', '')}")
    if np.may_share_memory(out, q):
        raise ValueError("out must not share memory with q")
    return out


# --- zeroproofml 0.6.1 "singularity risk" scheme -----------------------------------
# Positional order and defaults are zeroproofml 0.6.1's (zeroproof/training/sampler.py),
# so a call copied from zeroproofml code never runs with its arguments swapped.

@tensor_io(q_args=("q_values",))
def singularity_prob(q_values, tau_train, beta=0.1) -> np.ndarray:
    """Probability that a sample is singular: ``sigmoid((tau_train - |q|) / beta)``.

    Parameters
    ----------
    q_values : array_like or torch.Tensor, shape (N,) or (N, 1)
        Real Q values (a tensor gives a tensor of its dtype and device).
    tau_train : float
        Threshold >= 0, on the scale of |Q|.
    beta : float, default 0.1
        Width > 0 of the sigmoid, on the scale of |Q|.

    Returns
    -------
    numpy.ndarray
        float64, shape (N,), in [0, 1].
    """
    tau_train = check_real(tau_train, "tau_train", low=0.0)
    beta = check_real(beta, "beta", low=0.0, low_open=True)
    q = as_float_array(q_values, "q_values", finite=False)
    if np.isnan(q).any():
        raise ValueError(f"q_values holds {int(np.isnan(q).sum())} NaN value(s), first at "
                         f"index {int(np.argmax(np.isnan(q)))}")
    with np.errstate(over="ignore"):           # a tiny beta: z = +-inf, a 0/1 step
        z = (tau_train - np.abs(q)) / beta
    # numerically stable logistic: never exp of a large positive number
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


@tensor_io(q_args=("previous", "current"))
def ema_update(previous, current, gamma=0.1) -> np.ndarray:
    """Exponential moving average ``gamma * current + (1 - gamma) * previous``.

    Parameters
    ----------
    previous : float or array_like, shape (N,)
        The previous average (a scalar or the shape of ``current``).
    current : array_like, shape (N,)
        The new values.
    gamma : float, default 0.1
        Weight of ``current``, in [0, 1].

    Returns
    -------
    numpy.ndarray
        float64, shape (N,).
    """
    gamma = check_real(gamma, "gamma", low=0.0, high=1.0)
    current = as_float_array(current, "current", finite=True)
    if np.ndim(previous) == 0:
        previous = np.broadcast_to(
            as_float_array(np.atleast_1d(previous), "previous", finite=True), current.shape)
    else:
        previous = as_float_array(previous, "previous", finite=True)
    if previous.shape != current.shape:
        raise ValueError(f"previous must be a scalar or have the shape of current "
                         f"{current.shape}, got {previous.shape}")
    return gamma * current + (1.0 - gamma) * previous


@tensor_io(q_args=("probabilities", "bottom_mask"))
def sampling_weights(probabilities, bottom_mask=None, *, alpha=1.0, s_min=0.1) -> np.ndarray:
    """Risk sampling weights ``max(s_min, 1 + alpha * |probabilities - bottom_mask|)``.

    Parameters
    ----------
    probabilities : array_like, shape (N,)
        Singularity probabilities in [0, 1] (:func:`singularity_prob`).
    bottom_mask : array_like of bool or {0, 1}, shape (N,), or None
        1 (or True) where the target is bottom; None means all zeros.
    alpha : float, default 1.0
        Slope, >= 0.
    s_min : float, default 0.1
        Floor of the weights, >= 0.

    Returns
    -------
    numpy.ndarray
        float64, shape (N,).
    """
    alpha = check_real(alpha, "alpha", low=0.0)
    s_min = check_real(s_min, "s_min", low=0.0)
    prob = as_float_array(probabilities, "probabilities", finite=True)
    if bottom_mask is None:
        bottom = np.zeros_like(prob)
    else:
        if np.asarray(bottom_mask).dtype == np.bool_:
            bottom_mask = np.asarray(bottom_mask, dtype=np.float64)
        bottom = as_float_array(bottom_mask, "bottom_mask", finite=True)
        if bottom.shape != prob.shape:
            raise ValueError(f"bottom_mask must have the shape of probabilities {prob.shape}, "
                             f"got {bottom.shape}")
    return np.maximum(s_min, 1.0 + alpha * np.abs(prob - bottom))
