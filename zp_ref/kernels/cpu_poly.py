"""Numba CPU kernels evaluating polynomials (see :mod:`zp_ref.rational`).

``horner_at`` and ``terms_at`` are the per-point computations; the refinement kernels
call them too. The operation order equals the NumPy oracle's (no fused multiply-add),
so results are bit-identical."""
import numpy as np
from numba import njit, prange

#: Points per chunk of the parallel loops (one powers scratch per chunk).
CHUNK = 4096


@njit(cache=True)
def horner_at(coeffs, x):
    """sum_i coeffs[i] x**i by Horner's rule."""
    acc = coeffs[coeffs.size - 1]
    for i in range(coeffs.size - 2, -1, -1):
        acc = acc * x + coeffs[i]
    return acc


@njit(cache=True)
def fill_powers(pw, a, x, emax):
    """pw[a, j] = x**j for j = 0..emax by repeated multiplication."""
    pw[a, 0] = 1.0
    for j in range(1, emax + 1):
        pw[a, j] = pw[a, j - 1] * x


@njit(cache=True)
def terms_at(exponents, coefficients, pw):
    """sum_t ((c_t * pw[0, e_t0]) * pw[1, e_t1]) * ... in term order."""
    acc = 0.0
    for t in range(coefficients.size):
        prod = coefficients[t]
        for a in range(exponents.shape[1]):
            prod = prod * pw[a, exponents[t, a]]
        acc = acc + prod
    return acc


@njit(parallel=True, cache=True)
def horner_many(coeffs, x, out):
    """out[i] = Q(x[i]) for a dense 1-D polynomial."""
    for i in prange(x.size):
        out[i] = horner_at(coeffs, x[i])


@njit(parallel=True, cache=True)
def terms_many(exponents, coefficients, max_exponents, x, out):
    """out[i] = Q(x[i, :]) for a sparse d-D polynomial; x (n, d)."""
    n, d = x.shape
    width = max_exponents.max() + 1
    for c in prange((n + CHUNK - 1) // CHUNK):
        pw = np.empty((d, width))
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            for a in range(d):
                fill_powers(pw, a, x[i, a], max_exponents[a])
            out[i] = terms_at(exponents, coefficients, pw)
