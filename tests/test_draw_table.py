"""DrawTable: repeated draws from fixed weights equal sample_indices for the same seed,
on every backend, with the same errors; the table does not follow later changes of
the weights."""
import numpy as np
import pytest

import zp_ref
from zp_ref.draw_table import DrawTable
from zp_ref.kernels.cpu_sampling import PREFIX_BLOCK
from zp_ref.sampling import prefix_sums, sample_indices
from zp_ref.rng import uniforms

from test_sampling import BACKENDS, sparse_weights  # noqa: E402  (the same inputs)


def sizes_for(backend):
    if backend == "cuda":
        return [1, 3, 513, 1500]
    return [1, 3, 511, 513, 4 * PREFIX_BLOCK + 1, 9 * PREFIX_BLOCK, 50_001]


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_draws_equal_sample_indices(rng, backend):
    n = 200 if backend == "cuda" else 4000
    for size in sizes_for(backend):
        w = sparse_weights(rng, size)
        table = DrawTable(w, backend=backend)
        assert table.size == size and table.backend == backend
        for seed in (0, 1, 2**63 + 5):
            got = table.sample(n, seed=seed)
            assert got.dtype == np.int64 and got.shape == (n,)
            assert np.array_equal(got, sample_indices(w, n, seed=seed, backend=backend)), \
                (size, seed)


@pytest.mark.parametrize("backend", BACKENDS)
def test_total_is_the_last_prefix_sum(rng, backend):
    w = sparse_weights(rng, 1500)
    assert DrawTable(w, backend=backend).total == prefix_sums(w)[-1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_later_changes_of_the_weights_do_not_change_the_draws(rng, backend):
    w = sparse_weights(rng, 1500)
    want = sample_indices(w, 300, seed=3, backend=backend)
    table = DrawTable(w, backend=backend)
    w[:] = 0.0
    w[0] = 1.0
    assert np.array_equal(table.sample(300, seed=3), want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_target_rounded_up_to_the_total_takes_the_last_positive_weight(backend):
    w = np.array([5e-324, 1e-323, 0.0])
    total = prefix_sums(w)[-1]
    assert (uniforms(4, 0, 300, backend="numpy") * total >= total).sum() > 0   # corner hit
    got = DrawTable(w, backend=backend).sample(300, seed=4)
    assert set(got.tolist()) == {0, 1}
    assert np.array_equal(got, sample_indices(w, 300, seed=4, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_draws_give_an_empty_int64_array(backend):
    idx = DrawTable(np.ones(3), backend=backend).sample(0, seed=0)
    assert idx.shape == (0,) and idx.dtype == np.int64


@pytest.mark.parametrize("weights", [
    np.array([]), np.zeros(4), np.array([1.0, -1.0]), np.array([1.0, np.nan]),
    np.array([1.0, np.inf]), np.array([1e308, 1e308]), np.ones((2, 2)), ["a"],
], ids=["empty", "zeros", "negative", "nan", "inf", "overflow", "2-D", "strings"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_weights_raise_the_errors_of_sample_indices(weights, backend):
    with pytest.raises((ValueError, TypeError)) as want:
        sample_indices(weights, 3, seed=0, backend=backend)
    with pytest.raises(want.type) as got:
        DrawTable(weights, backend=backend)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize("n, seed, exc, pattern", [
    (-1, 0, ValueError, "n must"), (2.0, 0, TypeError, "n must"),
    (2, -3, ValueError, "seed"), (2, 0.5, TypeError, "seed"),
])
def test_bad_draw_arguments_are_refused_naming_them(n, seed, exc, pattern):
    table = DrawTable(np.ones(3), backend="cpu")
    with pytest.raises(exc, match=pattern):
        table.sample(n, seed=seed)


def test_a_bad_backend_is_refused_naming_it():
    with pytest.raises(ValueError, match="backend"):
        DrawTable(np.ones(3), backend="gpu")


def test_lazy_export():
    assert zp_ref.DrawTable is DrawTable
