"""Argument checks of the kernels' own entry points (the device-array functions of
the ``gpu_*`` modules); :mod:`zp_ref._validation` re-exports them, so the API and the
kernels raise the same messages."""
import numbers

import numpy as np


def check_count(n, name: str, *, minimum: int = 0) -> int:
    """An integer count >= minimum (floats and bools are refused)."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {n!r} of type "
                        f"{type(n).__name__}")
    n = int(n)
    if n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n}")
    return n
