"""The batch shuffle (zp_ref.shuffle): the Numba counting sort gives NumPy's stable
argsort exactly, ties in index order included, and bad input is refused."""
import numpy as np
import pytest

from zp_ref.rng import uniforms
from zp_ref.shuffle import shuffle_order


def rows_of_uniforms():
    u = uniforms(5, 3, 100 * 256).reshape(100, 256)
    ties = np.floor(uniforms(6, 3, 40 * 256) * 7).reshape(40, 256) / 7   # 7 values a row
    edge = np.array([[0.0, 1.0 - 2.0 ** -53, 0.5, 0.0, 1.0 - 2.0 ** -53, 0.5 - 2.0 ** -54]])
    return [u, ties, np.zeros((3, 64)), np.full((2, 9), 1.0 - 2.0 ** -53), edge,
            uniforms(7, 3, 100_000), uniforms(8, 3, 1).reshape(1, 1), np.zeros((4, 0))]


@pytest.mark.parametrize("case", range(8), ids=["uniform", "ties", "zeros", "near_one",
                                                "edges", "one_long_row", "one", "empty"])
def test_the_kernel_gives_numpys_stable_argsort(case):
    u = rows_of_uniforms()[case]
    got = shuffle_order(u)
    assert got.dtype == np.int64 and got.shape == u.shape
    np.testing.assert_array_equal(got, np.argsort(u, axis=-1, kind="stable"))
    np.testing.assert_array_equal(got, shuffle_order(u, backend="numpy"))


@pytest.mark.parametrize("u, match", [(np.array([0.2, 1.0]), r"\[0, 1\), got range"),
                                      (np.array([-0.1, 0.5]), r"\[0, 1\), got range"),
                                      (np.float64(0.5), "at least one axis")])
def test_values_outside_the_unit_interval_are_refused(u, match):
    with pytest.raises(ValueError, match=match):
        shuffle_order(u)


def test_an_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be 'numpy' or 'cpu', got 'cuda'"):
        shuffle_order(np.zeros(3), backend="cuda")
