"""Validation at the public boundary: every check raises a message naming the
argument, the value received and what would be accepted."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .kernels.checks import check_count as _check_count
from .tensors import is_tensor, scalar_value, to_numpy

BACKENDS = ("auto", "numpy", "cpu", "cuda")


def check_count(n, name: str, *, minimum: int = 0) -> int:
    """An integer count >= minimum (floats and bools are refused; a 0-d integer tensor
    is its value). The kernels' own check, which gives the same messages."""
    return _check_count(scalar_value(n, name), name, minimum=minimum)


def check_seed(seed, name: str = "seed") -> int:
    """A seed is a non-negative integer below 2**64 (Python or NumPy int or 0-d integer
    tensor, not bool)."""
    seed = scalar_value(seed, name)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer below 2**64, got {seed!r} "
                        f"of type {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"{name} must be in [0, 2**64), got {seed}")
    return seed


def check_real(x, name: str, *, low=None, high=None, low_open=False, high_open=False,
               allow_inf=False) -> float:
    """A finite real scalar (not bool/complex/str; a 0-d tensor is its value) inside the
    stated interval."""
    x = scalar_value(x, name)
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {x!r} of type {type(x).__name__}")
    x = float(x)
    if math.isnan(x) or (math.isinf(x) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {x}")
    lo_s = "(" if low_open else "["
    hi_s = ")" if high_open else "]"
    rng = f"{lo_s}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi_s}"
    if low is not None and (x < low or (low_open and x == low)):
        raise ValueError(f"{name} must be in {rng}, got {x}")
    if high is not None and (x > high or (high_open and x == high)):
        raise ValueError(f"{name} must be in {rng}, got {x}")
    return x


def check_choice(value, name: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_backend(backend) -> str:
    return check_choice(backend, "backend", BACKENDS)


def as_float_array(a, name: str, *, ndim: int | tuple = 1, allow_empty: bool = False,
                   finite: bool = False) -> np.ndarray:
    """Convert ``a`` to a C-contiguous float64 array of the given rank.

    A tensor goes through :func:`zp_ref.tensors.to_numpy`. Refuses strings, objects,
    booleans and complex numbers with a TypeError, and masked arrays (``numpy.ma``:
    zp_ref does not read masks, docs/compat.md); an input that already is contiguous
    float64 is returned without a copy.
    """
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array (numpy.ma), whose mask zp_ref does not "
                        f"read: pass {name}.filled(np.nan) (with nan_policy='omit' where "
                        f"offered, masked entries get weight 0) or {name}.compressed() to "
                        f"drop them")
    if is_tensor(a):
        a = to_numpy(a, name)                # the package's one tensor conversion
    if isinstance(a, np.ndarray):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except (ValueError, TypeError) as exc:   # ragged nested sequences, odd objects
            raise TypeError(f"{name} must be an array of real numbers, got a "
                            f"{type(a).__name__} NumPy cannot convert ({exc})") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype "
                        f"{arr.dtype} ({'booleans' if arr.dtype.kind == 'b' else arr.dtype.kind})")
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in ndims:
        raise ValueError(f"{name} must be a {' or '.join(f'{d}-D' for d in ndims)} array, "
                         f"got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if finite:
        bad = ~np.isfinite(arr)
        if bad.any():
            first = np.argwhere(bad)[0]
            first = int(first[0]) if arr.ndim == 1 else tuple(int(i) for i in first)
            raise ValueError(f"{name} must be finite: {int(bad.sum())} non-finite value(s), "
                             f"first at index {first} ({arr[first]})")
    return arr
