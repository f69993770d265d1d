"""The training study's model and targets: a learnable rational model ``P(x) / Q(x)``
with ``Q = 1 + sum_k phi_k m_k(x)`` (torch, float64), the targets with known poles, the
training loss and the exact least-squares optimum of the draws (see
:mod:`zp_ref.apps.study`, docs/training_study.md). Needs torch.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from ..bridges.torch import torch
from ..checks import check_count, check_real
from ..rational import Polynomial
from ..rng import STREAMS, uniforms

__all__ = ["RationalModel", "Target", "targets", "monomial_exponents", "batch_loss",
           "true_poles", "pole_distance", "real_poles_1d", "draw_optimum", "model_errors"]

#: Stream of the model's initial parameters.
INIT_STREAM = STREAMS["model_init"]

# ------------------------------------------------------------------ the model
def monomial_exponents(dim: int, degree: int, *, constant: bool = True) -> np.ndarray:
    """All exponents of total degree <= ``degree`` in ``dim`` variables, int64 (k, dim),
    by total degree then lexicographically (the constant first when included)."""
    rows = [e for e in itertools.product(range(degree + 1), repeat=dim) if sum(e) <= degree]
    rows.sort(key=lambda e: (sum(e), tuple(-v for v in e)))
    rows = rows if constant else rows[1:]
    return np.array(rows, dtype=np.int64).reshape(len(rows), dim)


class RationalModel(torch.nn.Module):
    """``y = P(x) / Q(x)`` with ``P = sum_j p_j m_j(x)`` (total degree <= deg_p) and
    ``Q = 1 + sum_k phi_k m_k(x)`` (1 <= total degree <= deg_q), float64.

    Initialisation (from ``zp_ref.rng`` stream 17 under ``seed``): ``p_j`` uniform in
    ``[-init_scale, init_scale]``, ``phi_k`` in ``[-init_scale/10, init_scale/10]``.
    x: (n, dim) tensor; :meth:`features` turns it into monomial tables so a fixed pool
    can be featurised once and indexed per batch.
    """

    def __init__(self, dim: int, deg_p: int, deg_q: int, *, seed=0, init_scale=0.1):
        super().__init__()
        self.dim = check_count(dim, "dim", minimum=1)
        deg_p = check_count(deg_p, "deg_p")
        deg_q = check_count(deg_q, "deg_q", minimum=1)
        init_scale = check_real(init_scale, "init_scale", low=0.0)
        self.register_buffer("p_exponents", torch.from_numpy(monomial_exponents(dim, deg_p)))
        self.register_buffer("q_exponents",
                             torch.from_numpy(monomial_exponents(dim, deg_q, constant=False)))
        kp, kq = self.p_exponents.shape[0], self.q_exponents.shape[0]
        u = uniforms(seed, INIT_STREAM, kp + kq, backend="numpy") * 2.0 - 1.0
        self.p = torch.nn.Parameter(torch.from_numpy(u[:kp] * init_scale))
        self.phi = torch.nn.Parameter(torch.from_numpy(u[kp:] * init_scale / 10))

    @staticmethod
    def _monomials(x, exponents):
        return torch.prod(x[:, None, :] ** exponents[None, :, :].to(x.dtype), dim=2)

    def features(self, x):
        """(monomials of P (n, kp), monomials of Q without the constant (n, kq))."""
        return self._monomials(x, self.p_exponents), self._monomials(x, self.q_exponents)

    def from_features(self, fp, fq):
        """(y (n,), Q (n,)) from :meth:`features`."""
        q = 1.0 + fq @ self.phi
        return (fp @ self.p) / q, q

    def forward(self, x):
        return self.from_features(*self.features(x))[0]

    def predict(self, x):
        """The model's value P(x) / Q(x), (n,) (the same as calling the model)."""
        return self.forward(x)

    def sample_loss(self, x, y):
        """Per-point linearized loss (Q y - P)^2 / (1 + y^2), (n,); its batch mean is
        :func:`batch_loss`'s ``"linearized"``."""
        fp, fq = self.features(x)
        return ((1.0 + fq @ self.phi) * y - fp @ self.p) ** 2 / (1.0 + y * y)

    def q(self, x):
        """The denominator Q(x), (n,)."""
        return self.from_features(*self.features(x))[1]

    def q_polynomial(self) -> Polynomial:
        """The current denominator as a :class:`zp_ref.Polynomial` (detached)."""
        exps = np.vstack([np.zeros((1, self.dim), np.int64), self.q_exponents.numpy()])
        coeffs = np.concatenate(([1.0], self.phi.detach().numpy()))
        return Polynomial.from_terms(exps, coeffs)


# ------------------------------------------------------------------ targets
def _gradient(poly: Polynomial) -> list:
    """The partial derivatives of ``poly``, one Polynomial per axis."""
    e, c = poly.exponents, poly.coefficients
    out = []
    for a in range(poly.dim):
        keep = e[:, a] > 0
        if not keep.any():
            out.append(Polynomial.from_terms(np.zeros((1, poly.dim), np.int64), [0.0]))
            continue
        de = e[keep].copy()
        de[:, a] -= 1
        out.append(Polynomial.from_terms(de, c[keep] * e[keep, a]))
    return out


@dataclasses.dataclass(frozen=True)
class Target:
    """``f = g / Q`` on a box: ``g`` a smooth non-polynomial numerator (so no model of
    the family is exact and the fit must trade accuracy between regions), ``Q`` a
    Polynomial normalised so that Q(0) = 1 (the model's form).

    ``numerator(x)``: (n, dim) -> (n,), non-zero on the pole set. ``pole_points(u)`` maps
    uniforms u (n,) in [0, 1) to points (n, dim) on Q = 0. ``model_degrees`` = (deg_p,
    deg_q) of the model fitted to it.
    """
    name: str
    description: str
    numerator: object
    q: Polynomial
    bounds: tuple
    pole_points: object
    model_degrees: tuple

    @property
    def dim(self) -> int:
        return self.q.dim

    def evaluate(self, x: np.ndarray):
        """(y, Q) at points x (n, dim)."""
        q = self.q(x if self.dim > 1 else x[:, 0])
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.numerator(x) / q, q

    def q_gradient(self, x: np.ndarray) -> np.ndarray:
        """grad Q at x, (n, dim)."""
        xs = x if self.dim > 1 else x[:, 0]
        return np.stack([g(xs) for g in _gradient(self.q)], axis=1)

    def config(self) -> dict:
        return {"description": self.description, "dim": self.dim,
                "bounds": [list(b) for b in self.bounds],
                "model_degrees": list(self.model_degrees)}


POLES_1D = (-0.375, 0.625)


def _rational_1d() -> Target:
    q = Polynomial.from_roots(POLES_1D)
    q = Polynomial(q.coeffs / q.coeffs[0])
    return Target(
        "rational_1d", "exp(0.5x) / Q, Q = (x + 0.375)(x - 0.625) scaled to "
        "Q(0) = 1; poles at -0.375 and 0.625; x in [-1, 1]",
        lambda x: np.exp(0.5 * x[:, 0]), q, ((-1.0, 1.0),),
        lambda u: np.asarray(POLES_1D)[(u >= 0.5).astype(np.int64)][:, None], (3, 3))


def _rational_2d() -> Target:
    from ..problems import CIRCLE_CENTRE, CIRCLE_RADIUS, get
    circle = get("circle_2d").q
    c0 = circle.coefficients[np.flatnonzero((circle.exponents == 0).all(axis=1))[0]]
    q = Polynomial.from_terms(circle.exponents, circle.coefficients / c0)
    (cx, cy), r = CIRCLE_CENTRE, CIRCLE_RADIUS

    def on_circle(u):
        t = 2.0 * np.pi * u
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)

    return Target(
        "rational_2d", "exp(0.5x) cos(1.5y) / Q, Q = the catalogue's circle_2d "
        "((x - 0.125)^2 + (y + 0.0625)^2 - 0.75^2) scaled to Q(0) = 1; (x, y) in [-1, 1]^2",
        lambda x: np.exp(0.5 * x[:, 0]) * np.cos(1.5 * x[:, 1]), q,
        ((-1.0, 1.0), (-1.0, 1.0)), on_circle, (3, 3))


POLES_THREE = (-0.7, 0.05, 0.6)
POLE_SPURIOUS, COMPLEX_SPURIOUS = 0.4, (-0.55, 0.1)


def _one_d(name: str, description: str, q: Polynomial, poles: tuple) -> Target:
    """A 1-D target exp(x/2) / Q on [-1, 1], Q scaled to Q(0) = 1, real poles ``poles``."""
    q = Polynomial(q.coeffs / q.coeffs[0])
    p = np.asarray(poles, dtype=np.float64)
    return Target(name, description, lambda x: np.exp(0.5 * x[:, 0]), q, ((-1.0, 1.0),),
                  lambda u: p[np.minimum((u * p.size).astype(np.int64), p.size - 1)][:, None],
                  (3, 3))


def _three_poles_1d() -> Target:
    return _one_d("three_poles_1d", "exp(0.5x) / Q, Q = (x + 0.7)(x - 0.05)(x - 0.6) scaled "
                  "to Q(0) = 1; three poles, all absent from the initial model; x in [-1, 1]",
                  Polynomial.from_roots(POLES_THREE), POLES_THREE)


def _spurious_1d() -> Target:
    (re, im) = COMPLEX_SPURIOUS
    q = Polynomial(np.convolve([-POLE_SPURIOUS, 1.0], [re * re + im * im, -2.0 * re, 1.0]))
    return _one_d("spurious_1d", "exp(0.5x) / Q, Q = (x - 0.4)((x + 0.55)^2 + 0.1^2) scaled "
                  "to Q(0) = 1; one real pole at 0.4 and a complex pair at -0.55 +- 0.1i "
                  "(a peak the model first fits with a spurious real pole); x in [-1, 1]",
                  q, (POLE_SPURIOUS,))


def targets() -> dict:
    """The study's targets by name."""
    return {t.name: t for t in (_rational_1d(), _rational_2d(), _three_poles_1d(),
                                _spurious_1d())}


def true_poles(target: Target) -> np.ndarray:
    """The real poles of a 1-D target in its box, sorted (float64 (k,))."""
    r = np.roots(target.q.coeffs[::-1])
    lo, hi = target.bounds[0]
    r = r[(np.abs(r.imag) < 1e-12) & (r.real >= lo) & (r.real <= hi)].real
    return np.sort(r)


def batch_loss(model: RationalModel, fp, fq, y, kind: str):
    """The training loss of a batch (see ``LOSSES``)."""
    if kind == "mse":
        return torch.mean((model.from_features(fp, fq)[0] - y) ** 2)
    q = 1.0 + fq @ model.phi
    return torch.mean((q * y - fp @ model.p) ** 2 / (1.0 + y * y))


def model_errors(model, x, y) -> tuple:
    """(mean squared error, median |relative error|) of ``model.predict`` on (x, y)."""
    with torch.no_grad():
        pred = model.predict(torch.from_numpy(x)).numpy()
    return float(np.mean((pred - y) ** 2)), float(np.median(np.abs(pred - y) / np.abs(y)))


def pole_distance(model, points: np.ndarray) -> float:
    """Mean first-order distance ``|Q_model| / |grad Q_model|`` from true pole points
    (n, dim) to the model's pole set (``model.q(x) -> (n,)``; the gradient by autograd,
    exact for polynomial Q)."""
    x = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float64)).requires_grad_()
    q = model.q(x)
    (g,) = torch.autograd.grad(q.sum(), x)
    q, g = q.detach().numpy(), g.numpy()
    return float(np.mean(np.abs(q) / np.maximum(np.linalg.norm(g, axis=1), 1e-300)))


def real_poles_1d(model, bounds: tuple, n: int = 8193) -> np.ndarray:
    """The model's real poles in the 1-D box ``bounds`` ((lo, hi),): sign changes of
    ``model.q`` between neighbours of an n-point grid, located by linear interpolation
    (float64 (k,), sorted). A pole pair closer than the grid step (2/n here) is missed."""
    (lo, hi), = bounds
    x = np.linspace(lo, hi, n)
    with torch.no_grad():
        q = model.q(torch.from_numpy(x[:, None])).numpy().reshape(-1)
    i = np.flatnonzero(np.sign(q[:-1]) * np.sign(q[1:]) < 0)
    return x[i] + (x[i + 1] - x[i]) * q[i] / (q[i] - q[i + 1])


def draw_optimum(model: RationalModel, fp, fq, y: np.ndarray, counts: np.ndarray) -> None:
    """Set ``model`` to the exact minimiser of the linearized loss over the draws whose
    per-pool-entry counts are ``counts`` (a weighted linear least-squares problem in
    (p, phi)): where training with those draws would converge given unlimited steps."""
    s = np.sqrt(counts / (1.0 + y * y))
    a = np.hstack([fp.numpy(), -fq.numpy() * y[:, None]]) * s[:, None]
    solution = np.linalg.lstsq(a, y * s, rcond=None)[0]
    kp = fp.shape[1]
    with torch.no_grad():
        model.p.copy_(torch.from_numpy(solution[:kp]))
        model.phi.copy_(torch.from_numpy(solution[kp:]))
