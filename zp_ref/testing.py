"""Helpers for testing another implementation against zp_ref, in the spirit of
``numpy.testing``.

Assertions (raise ``AssertionError`` with the first difference; bad arguments raise
``TypeError``/``ValueError``):

- :func:`assert_same_indices`: integer indices equal element for element;
- :func:`assert_weights_close`: float64 weights, zeros exactly where the oracle has
  zeros, every entry within ``rtol`` (1e-12 by default) of the oracle;
- :func:`assert_same_tree`: the same set of refinement leaves (corners and levels,
  exactly), in any order.

Hypothesis strategies (hypothesis is optional: it is imported when a strategy is
built, so ``import zp_ref.testing`` works without it): :func:`seeds`,
:func:`q_pools` (Q values with zeros, signed zeros, infinities and a 1e12 dynamic
range) and :func:`weight_vectors` (non-negative weights with zeros and ties).
"""
from __future__ import annotations

import numpy as np

from ._validation import check_count, check_real

#: The tolerance of the weight comparison (float64 on both sides).
WEIGHTS_RTOL = 1e-12
#: Q values that every pool strategy mixes in: zeros, tiny and infinite entries.
SPECIAL_Q = (0.0, -0.0, 1e-300, -1e-12, np.inf, -np.inf)


# ------------------------------------------------------------------ assertions
def _as_array(value, name: str) -> np.ndarray:
    """``value`` (array, list, CPU tensor) as a NumPy array; TypeError otherwise."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be array-like (a NumPy array, a list, a CPU tensor); "
                        f"got {type(value).__name__}: {exc}") from None
    if arr.dtype == object:
        raise TypeError(f"{name} must be numeric; got an object array from {type(value).__name__}")
    return arr


def _first_difference(actual: np.ndarray, desired: np.ndarray, bad: np.ndarray) -> str:
    where = np.flatnonzero(bad.ravel())
    i = int(where[0])
    return (f"{where.size} of {bad.size} entries differ; first at flat index {i}: "
            f"actual {actual.ravel()[i].item()!r}, desired {desired.ravel()[i].item()!r}")


def assert_same_indices(actual, desired, *, err_msg: str = "") -> None:
    """Assert two index arrays are identical: integer dtypes (not bool), the same shape,
    equal element for element (the draws of one seed must match exactly)."""
    a, d = _as_array(actual, "actual"), _as_array(desired, "desired")
    for name, arr in (("actual", a), ("desired", d)):
        if arr.dtype.kind not in "iu":
            raise AssertionError(f"{name} indices have dtype {arr.dtype}; indices are integers "
                                 f"{err_msg}".rstrip())
    if a.shape != d.shape:
        raise AssertionError(f"indices differ in shape: actual {a.shape}, desired {d.shape} "
                             f"{err_msg}".rstrip())
    bad = a.astype(np.int64) != d.astype(np.int64)
    if bad.any():
        raise AssertionError(f"indices differ: {_first_difference(a, d, bad)} {err_msg}".rstrip())


def assert_weights_close(actual, desired, *, rtol: float = WEIGHTS_RTOL, err_msg: str = "") -> None:
    """Assert float64 weights agree: the same shape, zero exactly where ``desired`` is
    zero, ``|actual - desired| <= rtol * |desired|`` everywhere (atol 0). A float32
    port fails here: rtol 1e-12 is far below float32's resolution (1.2e-7)."""
    rtol = check_real(rtol, "rtol", low=0.0)
    a, d = _as_array(actual, "actual"), _as_array(desired, "desired")
    for name, arr in (("actual", a), ("desired", d)):
        if arr.dtype != np.float64:
            raise AssertionError(f"{name} weights have dtype {arr.dtype}; the comparison assumes "
                                 f"float64 on both sides {err_msg}".rstrip())
    if a.shape != d.shape:
        raise AssertionError(f"weights differ in shape: actual {a.shape}, desired {d.shape} "
                             f"{err_msg}".rstrip())
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~((np.abs(a - d) <= rtol * np.abs(d)) | ((a == d) | (np.isnan(a) & np.isnan(d))))
    if bad.any():
        raise AssertionError(f"weights differ beyond rtol={rtol:g}: {_first_difference(a, d, bad)} "
                             f"{err_msg}".rstrip())


def _leaf_table(tree, name: str) -> tuple:
    """(lo, hi, level) of ``tree``: an ``ActiveSampler`` or a mapping with those keys,
    rows sorted by their lower corner."""
    leaves = tree.leaves() if callable(getattr(tree, "leaves", None)) else tree
    try:
        lo, hi, level = (np.asarray(leaves[k]) for k in ("lo", "hi", "level"))
    except (KeyError, TypeError, IndexError):
        raise TypeError(f"{name} must be an ActiveSampler or a mapping with keys 'lo', 'hi', "
                        f"'level'; got {type(tree).__name__}") from None
    lo = lo.reshape(lo.shape[0], -1) if lo.ndim else lo.reshape(0, 1)
    hi = hi.reshape(lo.shape)
    order = np.lexsort(lo.T[::-1]) if lo.size else np.arange(0)
    return lo[order], hi[order], level.reshape(-1)[order]


def assert_same_tree(actual, desired) -> None:
    """Assert two refinement trees have the same leaves: equal counts, and after sorting
    by lower corner the same corners ``lo``, ``hi`` and ``level``, exactly."""
    a, d = _leaf_table(actual, "actual"), _leaf_table(desired, "desired")
    if a[0].shape != d[0].shape:
        raise AssertionError(f"trees differ: actual has {a[0].shape[0]} leaves in "
                             f"{a[0].shape[1]}-D, desired {d[0].shape[0]} in {d[0].shape[1]}-D")
    for key, x, y in zip(("lo", "hi", "level"), a, d):
        bad = x != y
        if bad.any():
            rows = np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))
            raise AssertionError(f"trees differ in '{key}' at {rows.size} of {x.shape[0]} leaves; "
                                 f"first (sorted by lower corner): actual {x[rows[0]].tolist()!r}, "
                                 f"desired {y[rows[0]].tolist()!r}")


# ------------------------------------------------------------------ strategies
def _hypothesis():
    try:
        from hypothesis import strategies as st
    except ImportError:
        raise ImportError("zp_ref.testing's strategies need hypothesis: "
                          "pip install hypothesis (or zp_ref[test])") from None
    return st


def seeds():
    """Strategy: any valid seed, an integer in [0, 2**64 - 1]."""
    return _hypothesis().integers(0, 2**64 - 1)


def q_pools(min_size: int = 1, max_size: int = 200, *, finite_entry: bool = True):
    """Strategy: float64 arrays of Q values of length [min_size, max_size], finite
    values in [-1e6, 1e6] (subnormals included) mixed with :data:`SPECIAL_Q`. With
    ``finite_entry`` at least one entry is finite (the weights are then defined)."""
    min_size = check_count(min_size, "min_size", minimum=1)
    max_size = check_count(max_size, "max_size", minimum=min_size)
    st = _hypothesis()
    value = st.one_of(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False,
                                allow_subnormal=True), st.sampled_from(SPECIAL_Q))

    def as_pool(values):
        q = np.array(values, dtype=np.float64)
        if finite_entry and not np.isfinite(q).any():
            q[0] = 1.0
        return q
    return st.lists(value, min_size=min_size, max_size=max_size).map(as_pool)


def weight_vectors(max_size: int = 300):
    """Strategy: non-negative finite float64 weights of length [1, max_size] with zeros,
    ties and a 1e-12..1e6 dynamic range; at least one entry is positive."""
    max_size = check_count(max_size, "max_size", minimum=1)
    st = _hypothesis()
    magnitude = st.sampled_from([0.0, 0.0, 1e-12, 1e-3, 0.5, 1.0, 1.0, 7.0, 1e6]) | st.floats(0.0, 1e3)

    @st.composite
    def vectors(draw):
        n = draw(st.integers(1, max_size))
        w = np.array(draw(st.lists(magnitude, min_size=n, max_size=n)), dtype=np.float64)
        if not (w > 0).any():
            w[draw(st.integers(0, n - 1))] = draw(st.floats(1e-6, 10.0))
        return w
    return vectors()
