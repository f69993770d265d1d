"""Reliability sweep 3 (issue 21), files, NaN and kernels: NaN Q found whatever the
weight formula (weight_power=0 included) on every backend and path; the CUDA kernel's
a**-p when a**p underflows; clear messages for overflowing band weights and an
overflowing --coeffs bound; atomic writes of every file the CLI, the demo and the
study write; save_state keeps the umask and the mode of the file it replaces."""
import json
import os
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest

from zp_ref.draw_table import DrawTable
from zp_ref.sampling import sample_indices
from zp_ref.sampling_from_q import sample_from_q
from zp_ref.weighting import _importance_weights_numpy, importance_weights

#: Large enough for several 2**16-entry chunks and the parallel kernels (auto: cpu).
N_CPU = 300_007
#: Under the CUDA simulator inputs stay small.
N_CUDA = 1500
NAN_AT = (5, 1200)
POWERS = (0.0, 0.5, 2.0)


def pool_with_nan(n):
    q = np.linspace(-1.0, 1.0, n) + 1e-3
    q[list(NAN_AT)] = np.nan
    return q


def cases():
    return [(p, b) for p in POWERS for b in ("numpy", "cpu", "auto", "cuda")]


def size_for(backend):
    return N_CUDA if backend == "cuda" else N_CPU


# ------------------------------------------------------------------ NaN, every backend
@pytest.mark.parametrize("p, backend", cases())
@pytest.mark.parametrize("normalize", [False, True])
def test_nan_raises_whatever_the_power(p, backend, normalize):
    """nan_policy="raise": two NaNs are refused with their count and first index for
    every power, weight_power=0 (NaN**0 == 1) included."""
    q = pool_with_nan(size_for(backend))
    with pytest.raises(ValueError, match=r"q holds 2 NaN value\(s\), first at index 5"):
        importance_weights(q, weight_power=p, normalize=normalize, backend=backend)


@pytest.mark.parametrize("p, backend", cases())
def test_nan_omitted_gets_weight_zero(p, backend):
    """nan_policy="omit": a NaN weighs exactly 0 and the rest equals the oracle on q with
    the NaNs replaced by +inf (rtol 1e-12; bit for bit for p in 0, 1/2, 2)."""
    q = pool_with_nan(size_for(backend))
    with pytest.warns(RuntimeWarning, match="2 NaN"):
        w = importance_weights(q, weight_power=p, normalize=False, nan_policy="omit",
                               backend=backend)
    expected = _importance_weights_numpy(np.where(np.isnan(q), np.inf, q), p, 1e-6, 100.0,
                                         1.0, normalize=False)
    assert w[list(NAN_AT)].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(w, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("p, backend", cases())
def test_sample_from_q_nan(p, backend):
    """sample_from_q refuses NaN under "raise"; under "omit" it never draws a NaN entry
    and equals sample_indices of the omitted weights on the same backend."""
    q = pool_with_nan(size_for(backend))
    n = 300 if backend == "cuda" else 50_000
    with pytest.raises(ValueError, match=r"q holds 2 NaN value\(s\), first at index 5"):
        sample_from_q(q, n, seed=3, weight_power=p, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        idx = sample_from_q(q, n, seed=3, weight_power=p, nan_policy="omit", backend=backend)
        w = importance_weights(q, weight_power=p, normalize=False, nan_policy="omit",
                               backend=backend)
    assert not np.isin(list(NAN_AT), idx).any()
    np.testing.assert_array_equal(idx, sample_indices(w, n, seed=3, backend=backend))


@pytest.mark.parametrize("backend", ["numpy", "cpu", "cuda"])
def test_draw_table_refuses_nan_weights_and_omits(backend):
    """DrawTable refuses NaN weights on every backend; fed the omitted weights of a
    weight_power=0 pool it never draws a NaN entry."""
    q = pool_with_nan(size_for(backend))
    w = np.ones_like(q)
    w[list(NAN_AT)] = np.nan
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\), first at index 5"):
        DrawTable(w, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        w0 = importance_weights(q, weight_power=0.0, normalize=False, nan_policy="omit",
                                backend=backend)
    idx = DrawTable(w0, backend=backend).sample(2000, seed=1)
    assert not np.isin(list(NAN_AT), idx).any()


@pytest.mark.parametrize("p", POWERS)
def test_dask_draws_find_nan_whatever_the_power(p):
    """The Dask weights and draws (chunks read q on cpu) refuse NaN with
    weight_power=0 too, normalised or not; under "omit" the draws are the in-memory
    ones and skip the NaNs."""
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    from zp_ref.bridges import dask as db
    q = pool_with_nan(N_CPU)
    qd = da.from_array(q, chunks=(70_000,))
    with dask.config.set(scheduler="synchronous"):
        for normalize in (False, True):
            with pytest.raises(ValueError, match=r"q holds 2 NaN value\(s\), first at index 5"):
                db.sample_indices(db.importance_weights(qd, weight_power=p,
                                                        normalize=normalize), 100, seed=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            wd = db.importance_weights(qd, weight_power=p, normalize=False, nan_policy="omit")
            idx = db.sample_indices(wd, 50_000, seed=2)
            w = importance_weights(q, weight_power=p, normalize=False, nan_policy="omit",
                                   backend="cpu")
    assert not np.isin(list(NAN_AT), idx).any()
    np.testing.assert_array_equal(idx, sample_indices(w, 50_000, seed=2, backend="cpu"))


# ------------------------------------------------------------------ a**p underflowing
@pytest.mark.parametrize("p", [2.0, 1.0, 0.5, 3.0, 2.5])
def test_cuda_weights_when_a_power_underflows(p):
    """min_q_abs=1e-300: |q|**p underflows to 0, 1/0 is inf, capped at max_weight, on
    every backend (the CUDA simulator raised ZeroDivisionError): the same weights and
    the same draws as numpy, bit for bit."""
    q = np.array([0.0, 1e-200, -1e-170, 1e-3, 0.5, -2.0, np.inf, 1e300] * 40)
    kw = dict(weight_power=p, min_q_abs=1e-300, normalize=False)
    expected = importance_weights(q, backend="numpy", **kw)
    assert expected[0] == 100.0 and expected[6] == 0.0
    for backend in ("cpu", "cuda"):
        with warnings.catch_warnings():      # the simulator's NumPy scalars: 1e300**p
            warnings.simplefilter("ignore", RuntimeWarning)
            w = importance_weights(q, backend=backend, **kw)
            idx = sample_from_q(q, 200, seed=9, weight_power=p, min_q_abs=1e-300,
                                backend=backend)
        np.testing.assert_array_equal(w, expected)
        np.testing.assert_array_equal(idx, sample_indices(expected, 200, seed=9,
                                                          backend=backend))
