"""Numba CPU kernels evaluating polynomials (see :mod:`zp_ref.rational`).

``horner_at`` evaluates a 1-D polynomial at one point (Horner). ``terms_block``
evaluates a d-D polynomial on a block of points term by term,
``acc += ((c_t * x0**e_t0) * x1**e_t1) * ...``, so the loop over points vectorises
(SIMD) while every point sees the oracle's operation order (no fused multiply-add):
the results are bit-identical."""
import numpy as np
from numba import njit, prange

#: Points evaluated together by ``terms_block`` (scratch stays in L1/L2).
BLOCK = 128


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
def block_powers(pw, a, x, n, emax):
    """pw[a, j, i] = x[i]**j for i < n, j = 0..emax (repeated multiplication)."""
    for i in range(n):
        pw[a, 0, i] = 1.0
    for j in range(1, emax + 1):
        for i in range(n):
            pw[a, j, i] = pw[a, j - 1, i] * x[i]


@njit(cache=True)
def terms_block(exponents, coefficients, pw, n, acc):
    """acc[i] = sum_t ((c_t * pw[0, e_t0, i]) * pw[1, e_t1, i]) * ... for points i < n,
    from powers pw (d, emax + 1, BLOCK)."""
    d = exponents.shape[1]
    for i in range(n):
        acc[i] = 0.0
    for t in range(coefficients.size):
        c = coefficients[t]
        p0 = pw[0, exponents[t, 0]]
        if d == 1:
            for i in range(n):
                acc[i] = acc[i] + c * p0[i]
        else:
            p1 = pw[1, exponents[t, 1]]
            if d == 2:
                for i in range(n):
                    acc[i] = acc[i] + (c * p0[i]) * p1[i]
            else:
                for i in range(n):
                    prod = (c * p0[i]) * p1[i]
                    for a in range(2, d):
                        prod = prod * pw[a, exponents[t, a], i]
                    acc[i] = acc[i] + prod


@njit(parallel=True, cache=True)
def horner_many(coeffs, x, out):
    """out[i] = Q(x[i]) for a dense 1-D polynomial."""
    for i in prange(x.size):
        out[i] = horner_at(coeffs, x[i])


@njit(parallel=True, cache=True)
def terms_many(exponents, coefficients, max_exponents, x, out):
    """out[i] = Q(x[i, :]) for a sparse d-D polynomial; x (n, d)."""
    n, d = x.shape
    for c in prange((n + BLOCK - 1) // BLOCK):
        pw = np.empty((d, max_exponents.max() + 1, BLOCK))
        xa = np.empty(BLOCK)
        acc = np.empty(BLOCK)
        i0 = c * BLOCK
        m = min(n, i0 + BLOCK) - i0
        for a in range(d):
            for i in range(m):
                xa[i] = x[i0 + i, a]
            block_powers(pw, a, xa, m, max_exponents[a])
        terms_block(exponents, coefficients, pw, m, acc)
        for i in range(m):
            out[i0 + i] = acc[i]
