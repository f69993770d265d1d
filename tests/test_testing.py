"""zp_ref.testing: the assertion helpers pass on equal inputs and fail, naming the first
difference, on unequal ones; the strategies draw what they promise; the module imports
without hypothesis."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zp_ref
from zp_ref import testing
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ assert_same_indices
def test_same_indices_pass_across_integer_dtypes():
    w = zp_ref.importance_weights(np.linspace(-1, 1, 101))
    idx = zp_ref.sample_indices(w, 500, seed=4)
    testing.assert_same_indices(idx.astype(np.int32), idx)
    testing.assert_same_indices(list(idx), idx)


def test_same_indices_fail_naming_the_first_difference():
    a = np.array([3, 1, 4, 1, 5])
    b = a.copy()
    b[[2, 4]] = [0, 0]
    with pytest.raises(AssertionError, match=r"2 of 5 entries differ; first at flat index 2: "
                                             r"actual 4, desired 0"):
        testing.assert_same_indices(a, b)


@pytest.mark.parametrize("bad, message", [(np.array([1.0, 2.0]), "dtype float64"),
                                          (np.array([True, False]), "dtype bool"),
                                          (np.array([1, 2, 3]), r"shape: actual \(3,\)")])
def test_same_indices_refuse_non_integers_and_other_shapes(bad, message):
    with pytest.raises(AssertionError, match=message):
        testing.assert_same_indices(bad, np.array([1, 2]))


def test_same_indices_refuse_non_array_input_with_type_error():
    with pytest.raises(TypeError, match="actual must be numeric"):
        testing.assert_same_indices([object()], np.array([1]))


# ------------------------------------------------------------------ assert_weights_close
def test_weights_close_pass_within_rtol_and_fail_just_outside():
    w = zp_ref.importance_weights(np.linspace(-1, 1, 101))
    testing.assert_weights_close(w * (1 + 0.9e-12), w)
    with pytest.raises(AssertionError, match=r"beyond rtol=1e-12: 101 of 101 entries differ"):
        testing.assert_weights_close(w * (1 + 1.1e-12), w)
    testing.assert_weights_close(w * (1 + 1e-9), w, rtol=2e-9)


def test_weights_close_need_exact_zeros_where_the_oracle_has_zeros():
    desired = np.array([0.0, 0.5, 0.5])
    with pytest.raises(AssertionError, match=r"first at flat index 0: actual 1e-300"):
        testing.assert_weights_close(np.array([1e-300, 0.5, 0.5]), desired)


def test_weights_close_refuse_float32_with_the_reason():
    w = zp_ref.importance_weights(np.linspace(-1, 1, 11))
    with pytest.raises(AssertionError, match="actual weights have dtype float32; the comparison "
                                             "assumes float64"):
        testing.assert_weights_close(w.astype(np.float32), w)


@pytest.mark.parametrize("rtol, exc", [(-1e-12, ValueError), (float("nan"), ValueError),
                                       ("1e-12", TypeError)])
def test_weights_close_validate_rtol(rtol, exc):
    with pytest.raises(exc, match="rtol"):
        testing.assert_weights_close(np.ones(2), np.ones(2), rtol=rtol)


# ------------------------------------------------------------------ assert_same_tree
@pytest.fixture(scope="module")
def tree():
    config = ActiveSamplerConfig(grid_bounds=[(-1.0, 1.0), (-1.0, 1.0)], criterion="sign",
                                 max_refinement_level=6, initial_grid_size=4)
    return ActiveSampler(config, q=lambda x: x[:, 0] ** 2 + x[:, 1] ** 2 - 0.5, input_dim=2).refine()


def test_same_tree_pass_for_the_sampler_and_a_shuffled_mapping(tree):
    leaves = tree.leaves()
    order = np.arange(leaves["level"].size)[::-1]
    shuffled = {k: leaves[k][order] for k in ("lo", "hi", "level")}
    testing.assert_same_tree(shuffled, tree)
    testing.assert_same_tree(tree, leaves)


def test_same_tree_fail_on_a_moved_corner_and_on_a_missing_leaf(tree):
    leaves = {k: v.copy() for k, v in tree.leaves().items()}
    leaves["hi"][3, 1] += 2.0**-40
    with pytest.raises(AssertionError, match=r"trees differ in 'hi' at 1 of \d+ leaves"):
        testing.assert_same_tree(leaves, tree)
    fewer = {k: v[1:] for k, v in tree.leaves().items()}
    with pytest.raises(AssertionError, match=r"trees differ: actual has \d+ leaves in 2-D"):
        testing.assert_same_tree(fewer, tree)


def test_same_tree_refuse_what_is_not_a_tree():
    with pytest.raises(TypeError, match="actual must be an ActiveSampler or a mapping"):
        testing.assert_same_tree({"lo": np.zeros((1, 1))}, {"lo": np.zeros((1, 1))})


# ------------------------------------------------------------------ strategies
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)


@SETTINGS
@given(q=testing.q_pools(max_size=50))
def test_q_pools_are_float64_with_a_finite_entry(q):
    assert q.dtype == np.float64 and 1 <= q.size <= 50 and np.isfinite(q).any()
    assert not np.isnan(q).any()


@SETTINGS
@given(w=testing.weight_vectors(max_size=40))
def test_weight_vectors_are_non_negative_with_a_positive_entry(w):
    assert w.dtype == np.float64 and 1 <= w.size <= 40
    assert np.isfinite(w).all() and (w >= 0).all() and (w > 0).any()


@SETTINGS
@given(seed=testing.seeds())
def test_seeds_are_accepted_by_the_library(seed):
    assert 0 <= seed < 2**64
    assert zp_ref.sample_indices(np.ones(3), 2, seed=seed).shape == (2,)


@pytest.mark.parametrize("kwargs, exc, name", [({"min_size": 0}, ValueError, "min_size"),
                                               ({"max_size": 1.5}, TypeError, "max_size")])
def test_q_pools_validate_sizes(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        testing.q_pools(**kwargs)


def test_the_module_imports_without_hypothesis(tmp_path):
    """With hypothesis blocked, the assertions work and a strategy says what to install."""
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "import numpy as np\nfrom zp_ref import testing\n"
            "testing.assert_same_indices(np.arange(3), np.arange(3))\n"
            "try:\n    testing.seeds()\nexcept ImportError as e:\n    print(e)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install hypothesis" in out.stdout
