"""Polynomial / Rational evaluation on numpy, cpu and cuda (simulator), and the
problem catalogue."""
import numpy as np
import pytest
from numpy.polynomial import polynomial as npoly

from zp_ref import problems
from zp_ref.rational import Polynomial, Rational

BACKENDS = ["numpy", "cpu", "cuda"]


def _points(rng, n, d):
    x = rng.uniform(-1.5, 1.5, (n, d))
    return x[:, 0] if d == 1 else x


@pytest.mark.parametrize("backend", BACKENDS)
def test_horner_matches_numpy_polyval(backend, rng):
    c = rng.normal(size=9)
    x = rng.uniform(-3, 3, 200)
    got = Polynomial(c).evaluate(x, backend=backend)
    np.testing.assert_allclose(got, npoly.polyval(x, c), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", problems.names())
def test_backends_bit_identical(name, rng):
    q = problems.get(name).q
    x = _points(rng, 150, q.dim)
    ref = q.evaluate(x, backend="numpy")
    assert np.array_equal(ref, q.evaluate(x, backend="cpu"))
    assert np.array_equal(ref, q.evaluate(x, backend="cuda"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_terms_match_formula(backend, rng):
    exps = np.array([[0, 0, 0], [2, 1, 0], [0, 3, 1], [1, 1, 1], [4, 0, 2]])
    coef = np.array([0.5, -1.25, 2.0, 3.5, -0.75])
    q = Polynomial.from_terms(exps, coef)
    x = rng.uniform(-1, 1, (120, 3))
    want = sum(c * np.prod(x ** e, axis=1) for e, c in zip(exps, coef))
    np.testing.assert_allclose(q.evaluate(x, backend=backend), want, rtol=1e-12, atol=1e-14)
    assert q.dim == 3 and q.degree == 6
    assert q.max_exponents.tolist() == [4, 3, 2]


def test_from_roots_and_degree():
    roots = [-2.5, -0.5, 1.0, 2.25]
    q = Polynomial.from_roots(roots)
    np.testing.assert_allclose(q.coeffs, npoly.polyfromroots(roots), rtol=1e-14)
    assert q.degree == 4 and q.dim == 1
    assert np.abs(q(np.array(roots))).max() < 1e-12
    assert Polynomial.from_roots([]).coeffs.tolist() == [1.0]
    assert Polynomial([1.0, 2.0, 0.0]).degree == 1          # zero leading term ignored


def test_one_variable_terms_become_dense():
    q = Polynomial.from_terms([[3], [0]], [2.0, -1.0])
    assert q.coeffs.tolist() == [-1.0, 0.0, 0.0, 2.0]
    assert q(2.0) == 15.0                                    # scalar in, float out
    assert q.evaluate(np.array([[2.0], [0.0]])).tolist() == [15.0, -1.0]


def test_product(rng):
    a = Polynomial.from_terms([[1, 0], [0, 2], [0, 0]], [1.0, -2.0, 0.5])
    b = Polynomial.from_terms([[1, 1], [0, 0]], [3.0, -1.0])
    x = rng.uniform(-1, 1, (50, 2))
    np.testing.assert_allclose((a * b)(x), a(x) * b(x), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="variables"):
        a * Polynomial([1.0, 2.0])


def test_rational():
    p, q = Polynomial([1.0, 1.0]), Polynomial.from_roots([0.5])
    r = Rational(p, q)
    out = r(np.array([0.0, 0.5, 1.5]))
    assert out[0] == -2.0 and np.isinf(out[1]) and out[2] == 2.5
    assert r.q is q and r.dim == 1
    for backend in BACKENDS:
        assert np.array_equal(r.evaluate(np.array([0.0, 1.5]), backend=backend), [-2.0, 2.5])


@pytest.mark.parametrize("make, exc, match", [
    (lambda: Polynomial([1.0, np.nan]), ValueError, "coeffs must be finite"),
    (lambda: Polynomial([]), ValueError, "coeffs must not be empty"),
    (lambda: Polynomial([[1.0, 2.0]]), ValueError, "coeffs must be a 1-D"),
    (lambda: Polynomial(["a"]), TypeError, "coeffs must hold real numbers"),
    (lambda: Polynomial([1 + 2j]), TypeError, "coeffs"),
    (lambda: Polynomial.from_roots([np.inf]), ValueError, "roots must be finite"),
    (lambda: Polynomial.from_terms([[1, -1]], [1.0]), ValueError, "exponents must be >= 0"),
    (lambda: Polynomial.from_terms([[1.0, 2.0]], [1.0]), TypeError,
     "exponents must be an integer"),
    (lambda: Polynomial.from_terms([1, 2], [1.0, 2.0]), ValueError,
     "exponents must be a non-empty 2-D"),
    (lambda: Polynomial.from_terms([[1, 2], [1, 2]], [1.0, 2.0]), ValueError, "unique rows"),
    (lambda: Polynomial.from_terms([[1, 2]], [1.0, 2.0]), ValueError, "one entry per exponent row"),
    (lambda: Polynomial.from_terms([[1, 2]], [np.inf]), ValueError, "coeffs must be finite"),
    (lambda: Rational(Polynomial([1.0]), "q"), TypeError, "q must be a zp_ref.Polynomial"),
    (lambda: Rational(Polynomial([1.0]), Polynomial.from_terms([[1, 1]], [1.0])), ValueError,
     "same dim"),
])
def test_bad_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_points_and_backend():
    q2 = Polynomial.from_terms([[1, 1]], [1.0])
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        q2(np.zeros(3))
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        q2(np.zeros((3, 3)))
    with pytest.raises(TypeError, match="x must hold real numbers"):
        Polynomial([1.0])(np.array(["a"]))
    with pytest.raises(ValueError, match="backend must be one of"):
        Polynomial([1.0]).evaluate(np.zeros(2), backend="gpu")
    with pytest.raises(ValueError, match="coeffs exists for 1-D"):
        q2.coeffs
    assert Polynomial([1.0, 1.0])(np.empty(0)).shape == (0,)


def test_cuda_refuses_too_high_degree():
    from zp_ref.kernels.gpu_poly import MAX_AXIS_DEGREE
    q = Polynomial.from_terms([[MAX_AXIS_DEGREE + 1, 0]], [1.0])
    with pytest.raises(ValueError, match="degree <= 32"):
        q.evaluate(np.zeros((2, 2)), backend="cuda")


# ---------------------------------------------------------------- problem catalogue
def test_catalogue_names_and_lookup():
    assert problems.names() == ["simple_roots_1d", "double_root_1d", "close_pair_1d",
                                "circle_2d", "sphere_plane_3d", "bivariate_deg6_2d"]
    with pytest.raises(ValueError, match="name must be one of"):
        problems.get("nope")
    for name in problems.names():
        pr = problems.get(name)
        assert pr.name == name and pr.description and len(pr.bounds) == pr.dim == pr.q.dim


def test_one_dimensional_problems_vanish_at_their_roots():
    for name in ("simple_roots_1d", "double_root_1d", "close_pair_1d"):
        pr = problems.get(name)
        roots = np.array(pr.poles["roots"])
        lo, hi = pr.bounds[0]
        assert ((roots > lo) & (roots < hi)).all()
        scale = Polynomial(np.abs(pr.q.coeffs))(np.abs(roots))   # sum |c_i| |x|^i
        assert (np.abs(pr.q(roots)) <= 1e-14 * scale).all()
    q = problems.get("simple_roots_1d").q
    assert q.degree == 8
    x = np.linspace(-3, 3, 100001)
    assert int((np.diff(np.sign(q(x))) != 0).sum()) == 8      # eight simple real roots


def test_surface_problems_vanish_on_their_surfaces(rng):
    pr = problems.get("circle_2d")
    t = rng.uniform(0, 2 * np.pi, 100)
    c, r = np.array(pr.poles["centre"]), pr.poles["radius"]
    assert np.abs(pr.q(c + r * np.c_[np.cos(t), np.sin(t)])).max() < 1e-14
    pr = problems.get("sphere_plane_3d")
    u = rng.normal(size=(100, 3))
    on_sphere = pr.poles["radius"] * u / np.linalg.norm(u, axis=1, keepdims=True)
    assert np.abs(pr.q(on_sphere)).max() < 1e-14
    n, off = np.array(pr.poles["normal"]), pr.poles["offset"]
    xy = rng.uniform(-1, 1, (100, 2))
    on_plane = np.c_[xy, (off - xy @ n[:2]) / n[2]]
    assert np.abs(pr.q(on_plane)).max() < 1e-14
    pr = problems.get("bivariate_deg6_2d")
    assert pr.q.degree == 6 and pr.q(np.array([[0.75, 0.0]]))[0] == 0.0
