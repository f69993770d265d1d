"""Polynomials Q(x) and rational functions P(x)/Q(x), evaluated on three backends.

A :class:`Polynomial` is a list of terms ``coeffs[t] * prod_a x_a**exponents[t, a]``.
In one dimension it is dense (``Polynomial([c0, c1, ...])``, lowest degree first, as in
``numpy.polynomial``) and is evaluated by Horner's rule; in ``d`` dimensions it is sparse
(``Polynomial.from_terms(exponents, coeffs)``) and is evaluated term by term from
precomputed powers ``x_a**j``. The operation order is fixed and identical on the
``numpy``, ``cpu`` (Numba) and ``cuda`` (numba.cuda, no fused multiply-add) backends, so
the three return the same bits.
"""
from __future__ import annotations

import numbers

import numpy as np

from ._validation import as_float_array
from .backends import resolve_backend

__all__ = ["Polynomial", "Rational"]


#: Largest exponent of one variable: the evaluation precomputes every power up to it.
MAX_EXPONENT = 100_000

class Polynomial:
    """Q(x) = sum_t coeffs[t] * prod_a x_a**exponents[t, a].

    ``Polynomial(coeffs)`` builds the 1-D polynomial ``sum_i coeffs[i] x**i``;
    :meth:`from_roots` and :meth:`from_terms` build the others.
    Attributes: ``dim`` (number of variables), ``degree`` (total degree of the
    non-zero terms), ``exponents`` int64 (k, dim), ``coefficients`` float64 (k,),
    ``coeffs`` (1-D only: dense coefficients, lowest degree first).

    Parameters
    ----------
    coeffs : array_like, shape (k,)
        Finite coefficients of the 1-D polynomial, lowest degree first.
    """

    def __init__(self, coeffs):
        c = as_float_array(coeffs, "coeffs", ndim=1, finite=True)
        self._set_terms(np.arange(c.size, dtype=np.int64)[:, None], c.copy())

    # ------------------------------------------------------------ construction
    @classmethod
    def from_roots(cls, roots) -> "Polynomial":
        """The monic 1-D polynomial prod_i (x - roots[i]) (multiplied out in order).

        Parameters
        ----------
        roots : array_like, shape (k,)
            Finite roots (may be empty: the constant 1).

        Returns
        -------
        Polynomial
        """
        r = as_float_array(roots, "roots", ndim=1, finite=True, allow_empty=True)
        c = np.array([1.0])
        for root in r:
            nxt = np.zeros(c.size + 1)
            nxt[1:] += c                  # x * c(x)
            nxt[:-1] -= root * c          # - root * c(x)
            c = nxt
        return cls(c)

    @classmethod
    def from_terms(cls, exponents, coeffs) -> "Polynomial":
        """Sparse polynomial in d = exponents.shape[1] variables.

        With d == 1 the result is the equivalent dense 1-D polynomial.

        Parameters
        ----------
        exponents : array_like of int, shape (k, d)
            Non-negative, rows unique.
        coeffs : array_like, shape (k,)
            Finite coefficients.

        Returns
        -------
        Polynomial
        """
        e = np.asarray(exponents)
        if e.dtype.kind not in "iu":
            raise TypeError(f"exponents must be an integer array (k, d), got dtype {e.dtype}")
        if e.ndim != 2 or e.shape[0] == 0 or e.shape[1] == 0:
            raise ValueError(f"exponents must be a non-empty 2-D array (k, d), got shape {e.shape}")
        if (e < 0).any():
            row = int(np.argwhere(e < 0)[0][0])
            raise ValueError(f"exponents must be >= 0, row {row} is {e[row].tolist()}")
        if (e > MAX_EXPONENT).any():
            row = int(np.argwhere(e > MAX_EXPONENT)[0][0])
            raise ValueError(f"exponents must be <= {MAX_EXPONENT} (one variable's degree), "
                             f"row {row} is {e[row].tolist()}")
        c = as_float_array(coeffs, "coeffs", ndim=1, finite=True)
        if c.size != e.shape[0]:
            raise ValueError(f"coeffs must have one entry per exponent row: got {c.size} "
                             f"coefficients for {e.shape[0]} rows")
        e = e.astype(np.int64)
        _, first, inverse = np.unique(e, axis=0, return_index=True, return_inverse=True)
        if first.size != e.shape[0]:
            dup = int(np.flatnonzero(np.bincount(inverse.ravel()) > 1)[0])
            rows = np.flatnonzero(inverse.ravel() == dup)
            raise ValueError(f"exponents must have unique rows: rows {rows.tolist()} are "
                             f"all {e[rows[0]].tolist()}")
        if e.shape[1] == 1:
            dense = np.zeros(int(e.max()) + 1)
            dense[e[:, 0]] = c
            return cls(dense)
        poly = cls.__new__(cls)
        poly._set_terms(np.ascontiguousarray(e), c.copy())
        return poly

    def _set_terms(self, exponents: np.ndarray, coefficients: np.ndarray) -> None:
        self.exponents = exponents
        self.coefficients = coefficients
        self.exponents.setflags(write=False)
        self.coefficients.setflags(write=False)
        self.dim = int(exponents.shape[1])
        nz = coefficients != 0
        self.degree = int(exponents[nz].sum(axis=1).max()) if nz.any() else 0
        #: highest exponent of each variable over all terms, int64 (dim,)
        self.max_exponents = exponents.max(axis=0).astype(np.int64)

    @property
    def coeffs(self) -> np.ndarray:
        """Dense coefficients, lowest degree first (1-D polynomials only)."""
        if self.dim != 1:
            raise ValueError(f"coeffs exists for 1-D polynomials only; this one has dim={self.dim}"
                             f" (use exponents and coefficients)")
        return self.coefficients

    def __mul__(self, other: "Polynomial") -> "Polynomial":
        """Product of two polynomials in the same number of variables."""
        if not isinstance(other, Polynomial):
            return NotImplemented
        if other.dim != self.dim:
            raise ValueError(f"cannot multiply polynomials in {self.dim} and {other.dim} variables")
        exps = (self.exponents[:, None, :] + other.exponents[None, :, :]).reshape(-1, self.dim)
        vals = (self.coefficients[:, None] * other.coefficients[None, :]).ravel()
        uniq, inverse = np.unique(exps, axis=0, return_inverse=True)
        coeffs = np.zeros(uniq.shape[0])
        np.add.at(coeffs, inverse.ravel(), vals)
        return Polynomial.from_terms(uniq, coeffs)

    def __repr__(self) -> str:
        if self.dim == 1:
            return f"Polynomial({self.coefficients.tolist()})"
        return (f"Polynomial.from_terms(dim={self.dim}, terms={self.coefficients.size}, "
                f"degree={self.degree})")

    # ------------------------------------------------------------- evaluation
    def __call__(self, x):
        return self.evaluate(x)

    def evaluate(self, x, *, backend="auto"):
        """Q at the points ``x``.

        Parameters
        ----------
        x : float or array_like, shape (n,) or (n, 1) in 1-D, (n, dim) otherwise
            A scalar is accepted in 1-D and gives a float.
        backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
            Where it runs; every backend returns the same values.

        Returns
        -------
        numpy.ndarray
            float64, shape (n,).
        """
        scalar = self.dim == 1 and isinstance(x, (numbers.Real, np.number))
        pts = points_array(np.atleast_1d(x) if scalar else x, self.dim, "x")
        out = evaluate_points(self, pts, resolve_backend(backend, pts.shape[0]))
        return float(out[0]) if scalar else out

    def kernel_arrays(self):
        """(exponents (k, d) int64, coefficients (k,) float64, max_exponents (d,) int64)."""
        return self.exponents, self.coefficients, self.max_exponents


class Rational:
    """R(x) = P(x) / Q(x) for two polynomials in the same variables (``.p``, ``.q``).

    Parameters
    ----------
    p, q : Polynomial
        Numerator and denominator, with the same ``dim``.
    """

    def __init__(self, p: Polynomial, q: Polynomial):
        for name, v in (("p", p), ("q", q)):
            if not isinstance(v, Polynomial):
                raise TypeError(f"{name} must be a zp_ref.Polynomial, got {type(v).__name__}")
        if p.dim != q.dim:
            raise ValueError(f"p and q must have the same dim, got {p.dim} and {q.dim}")
        self.p, self.q, self.dim = p, q, p.dim

    def __call__(self, x):
        return self.evaluate(x)

    def evaluate(self, x, *, backend="auto"):
        """P(x) / Q(x) (IEEE division: +-inf or nan where Q(x) = 0).

        Parameters
        ----------
        x : float or array_like, shape (n,) or (n, 1) in 1-D, (n, dim) otherwise
        backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
            Where it runs; every backend returns the same values.

        Returns
        -------
        numpy.ndarray
            float64, shape (n,).
        """
        num = self.p.evaluate(x, backend=backend)
        den = self.q.evaluate(x, backend=backend)
        with np.errstate(divide="ignore", invalid="ignore"):
            return num / den

    def __repr__(self) -> str:
        return f"Rational({self.p!r}, {self.q!r})"


def points_array(x, dim: int, name: str) -> np.ndarray:
    """Validate points: (n,) or (n, 1) for dim 1, (n, dim) otherwise -> float64 (n, dim)."""
    arr = as_float_array(x, name, ndim=(1, 2), allow_empty=True, finite=False)
    if arr.ndim == 1:
        if dim != 1:
            raise ValueError(f"{name} must have shape (n, {dim}) for a polynomial in {dim} "
                             f"variables, got shape {arr.shape}")
        arr = arr[:, None]
    if arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def horner_numpy(coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Horner's rule, the NumPy oracle: acc = c[n]; acc = acc * x + c[i] for i = n-1..0."""
    acc = np.full(x.shape, coeffs[-1])
    for c in coeffs[-2::-1]:
        acc = acc * x + c
    return acc


def terms_numpy(exponents, coefficients, max_exponents, x: np.ndarray) -> np.ndarray:
    """Sum of monomials from precomputed powers, the NumPy oracle; x (n, d) -> (n,).

    Powers: pw[a][0] = 1, pw[a][j] = pw[a][j-1] * x[:, a]. Each term is
    ((coeff * pw[0][e0]) * pw[1][e1]) * ..., added to the sum in term order.
    """
    n, d = x.shape
    pw = []
    for a in range(d):
        p = np.empty((int(max_exponents[a]) + 1, n))
        p[0] = 1.0
        for j in range(1, p.shape[0]):
            p[j] = p[j - 1] * x[:, a]
        pw.append(p)
    acc = np.zeros(n)
    for t in range(coefficients.size):
        prod = np.full(n, coefficients[t])
        for a in range(d):
            prod = prod * pw[a][exponents[t, a]]
        acc = acc + prod
    return acc


def evaluate_points(poly: Polynomial, pts: np.ndarray, backend: str) -> np.ndarray:
    """Q at validated points ``pts`` (n, dim) on a resolved backend -> float64 (n,)."""
    n = pts.shape[0]
    if backend == "numpy":
        if poly.dim == 1:
            return horner_numpy(poly.coefficients, pts[:, 0])
        return terms_numpy(*poly.kernel_arrays(), pts)
    if backend == "cpu":
        from .kernels import cpu_poly, threads_for
        out = np.empty(n)
        with threads_for(n):
            if poly.dim == 1:
                cpu_poly.horner_many(poly.coefficients, pts[:, 0], out)
            else:
                cpu_poly.terms_many(*poly.kernel_arrays(), pts, out)
        return out
    from .kernels import gpu_poly
    return gpu_poly.evaluate(poly, pts)
