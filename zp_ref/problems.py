"""A small catalogue of named denominators Q with known zero sets (poles of P/Q).

``problems.get(name)`` returns a :class:`Problem`: ``q`` (a :class:`Polynomial`),
``bounds`` (one (lo, hi) pair per axis), ``dim``, ``poles`` (the known zero set, for
tests and plots) and ``description``. ``problems.names()`` lists them. Coefficients are
chosen exactly representable in binary where possible, so the float polynomial has
the stated zeros.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rational import Polynomial

__all__ = ["Problem", "get", "names"]


@dataclass(frozen=True)
class Problem:
    """A catalogue problem: a denominator Q with a known zero set.

    Parameters
    ----------
    name, description : str
        The catalogue name and one line saying what it is.
    q : Polynomial
        The denominator.
    bounds : tuple of (float, float)
        ``((lo, hi), ...)``, one pair per axis (``dim`` pairs).
    poles : dict
        The exact zero set: ``{"kind": "roots" | "circle" | "sphere_plane" | "curves", ...}``.
    """
    name: str
    description: str
    q: Polynomial
    bounds: tuple          # ((lo, hi), ...) one pair per axis
    poles: dict            # {"kind": "roots" | "circle" | "sphere_plane" | "curves", ...}

    @property
    def dim(self) -> int:
        return self.q.dim


def _terms(*pairs) -> Polynomial:
    """Polynomial from (exponent tuple, coefficient) pairs."""
    return Polynomial.from_terms(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))


SIMPLE_ROOTS = (-2.7, -2.1, -1.3, -0.55, 0.2, 0.9, 1.7, 2.6)


def _simple_roots_1d() -> Problem:
    return Problem(
        "simple_roots_1d", "degree 8, eight simple real roots in [-3, 3]",
        Polynomial.from_roots(SIMPLE_ROOTS), ((-3.0, 3.0),),
        {"kind": "roots", "roots": SIMPLE_ROOTS, "multiplicity": (1,) * 8})


def _double_root_1d() -> Problem:
    # (x - 0.5)**2 (x + 1) = x**3 - 0.75 x + 0.25 (exact coefficients)
    return Problem(
        "double_root_1d", "(x - 0.5)^2 (x + 1): a double root (no sign change) and a simple one",
        Polynomial([0.25, -0.75, 0.0, 1.0]), ((-2.0, 2.0),),
        {"kind": "roots", "roots": (0.5, -1.0), "multiplicity": (2, 1)})


def _close_pair_1d() -> Problem:
    roots = (0.25, 0.25 + 1e-6, -1.5)
    return Problem(
        "close_pair_1d", "two simple roots 1e-6 apart near 0.25 and one at -1.5",
        Polynomial.from_roots(roots), ((-2.0, 2.0),),
        {"kind": "roots", "roots": roots, "multiplicity": (1, 1, 1)})


CIRCLE_CENTRE, CIRCLE_RADIUS = (0.125, -0.0625), 0.75


def _circle_2d() -> Problem:
    (cx, cy), r = CIRCLE_CENTRE, CIRCLE_RADIUS
    q = _terms(((2, 0), 1.0), ((1, 0), -2 * cx), ((0, 2), 1.0), ((0, 1), -2 * cy),
               ((0, 0), cx * cx + cy * cy - r * r))
    return Problem(
        "circle_2d", "(x - 0.125)^2 + (y + 0.0625)^2 - 0.75^2: a circle in [-1, 1]^2",
        q, ((-1.0, 1.0), (-1.0, 1.0)),
        {"kind": "circle", "centre": CIRCLE_CENTRE, "radius": CIRCLE_RADIUS})


SPHERE_RADIUS, PLANE_NORMAL, PLANE_OFFSET = 0.625, (1.0, 1.0, 2.0), 0.5


def _sphere_plane_3d() -> Problem:
    sphere = _terms(((2, 0, 0), 1.0), ((0, 2, 0), 1.0), ((0, 0, 2), 1.0),
                    ((0, 0, 0), -SPHERE_RADIUS ** 2))
    (a, b, c) = PLANE_NORMAL
    plane = _terms(((1, 0, 0), a), ((0, 1, 0), b), ((0, 0, 1), c), ((0, 0, 0), -PLANE_OFFSET))
    return Problem(
        "sphere_plane_3d", "(x^2 + y^2 + z^2 - 0.625^2)(x + y + 2z - 0.5): a sphere and a plane",
        sphere * plane, ((-1.0, 1.0),) * 3,
        {"kind": "sphere_plane", "centre": (0.0, 0.0, 0.0), "radius": SPHERE_RADIUS,
         "normal": PLANE_NORMAL, "offset": PLANE_OFFSET})


def _bivariate_deg6_2d() -> Problem:
    circle = _terms(((2, 0), 1.0), ((0, 2), 1.0), ((0, 0), -0.5625))
    parabola = _terms(((2, 0), 1.0), ((0, 1), -1.0), ((0, 0), -0.25))
    hyperbola = _terms(((1, 1), 1.0), ((0, 0), -0.0625))
    factors = ("x^2 + y^2 - 0.5625", "x^2 - y - 0.25", "x y - 0.0625")
    return Problem(
        "bivariate_deg6_2d", "degree 6: a circle, a parabola and a hyperbola in [-1, 1]^2",
        circle * parabola * hyperbola, ((-1.0, 1.0), (-1.0, 1.0)),
        {"kind": "curves", "factors": factors})


_BUILDERS = {
    "simple_roots_1d": _simple_roots_1d,
    "double_root_1d": _double_root_1d,
    "close_pair_1d": _close_pair_1d,
    "circle_2d": _circle_2d,
    "sphere_plane_3d": _sphere_plane_3d,
    "bivariate_deg6_2d": _bivariate_deg6_2d,
}


def names() -> list:
    """Names of the catalogue problems.

    Returns
    -------
    list of str
        In catalogue order.
    """
    return list(_BUILDERS)


def get(name: str) -> Problem:
    """The problem called ``name``.

    Parameters
    ----------
    name : str
        One of :func:`names` (a ValueError lists them otherwise).

    Returns
    -------
    Problem
    """
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ValueError(f"name must be one of {names()}, got {name!r}")
    return _BUILDERS[name]()
