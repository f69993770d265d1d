"""Importance weights and risk weights: golden parity, semantics, errors."""
import warnings

import numpy as np
import pytest

import naive
from zp_ref.weighting import (ema_update, importance_weights, sampling_weights,
                              singularity_prob)

BACKENDS = ["numpy", "cpu", "cuda"]
RTOL = 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_importance_weights(golden, backend):
    for case in golden["importance_weights"]:
        w = importance_weights(np.array(case["q"]), **case["config"], backend=backend)
        np.testing.assert_allclose(w, case["weights"], rtol=RTOL, atol=0)


def test_golden_risk_weights(golden):
    for case in golden["singularity_risk"]:
        c = case["config"]
        q = np.array(case["q"])
        # zeroproofml 0.6.1's positional order: (q, tau_train, beta), (previous, current,
        # gamma), (probabilities, bottom_mask)
        prob = singularity_prob(q, c["tau_train"], c["beta"])
        ema = ema_update(case["prev_prob"], prob, c["gamma"])
        bottom = (np.arange(q.size) % case["bottom_mask_every"] == 0).astype(float)
        w = sampling_weights(ema, bottom, alpha=c["alpha"], s_min=c["s_min"])
        np.testing.assert_allclose(prob, case["prob"], rtol=RTOL, atol=0)
        np.testing.assert_allclose(ema, case["ema"], rtol=RTOL, atol=0)
        np.testing.assert_allclose(w, case["weights"], rtol=RTOL, atol=0)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0, 1.7, 2.0, 3.0])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.5])
def test_every_power_specialisation_matches_naive(rng, p, temperature):
    q = np.concatenate([rng.standard_normal(700) * 10.0 ** rng.integers(-8, 2, 700),
                        [0.0, np.inf, -np.inf, 1e-300]])
    want = naive.importance_weights(q.tolist(), p, 1e-6, 1e3, temperature)
    for backend in ("numpy", "cpu"):
        w = importance_weights(q, weight_power=p, min_q_abs=1e-6, max_weight=1e3,
                               temperature=temperature, backend=backend)
        np.testing.assert_allclose(w, want, rtol=RTOL, atol=0)


def test_large_pool_cpu_equals_oracle_and_sums_to_one(rng):
    q = rng.standard_normal(300_001)
    w_cpu = importance_weights(q, backend="cpu")
    np.testing.assert_allclose(w_cpu, importance_weights(q, backend="numpy"), rtol=RTOL)
    assert abs(w_cpu.sum() - 1.0) < 1e-12


def test_weights_do_not_increase_with_abs_q(rng):
    q = np.sort(np.abs(rng.standard_normal(5000)) * 10.0 ** rng.integers(-7, 1, 5000))
    for T in (0.3, 1.0, 4.0):
        w = importance_weights(q, temperature=T, backend="cpu")
        assert np.all(np.diff(w) <= 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_q_gets_zero_weight(backend):
    w = importance_weights(np.array([np.inf, 1.0, -np.inf, 0.5]), backend=backend)
    assert w[0] == 0.0 and w[2] == 0.0 and w[1] > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_is_refused_naming_count_and_first_index(backend):
    q = np.array([1.0, 2.0, np.nan, 3.0, np.nan])
    with pytest.raises(ValueError, match=r"2 NaN value\(s\), first at index 2"):
        importance_weights(q, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_policy_omit_gives_zero_and_reports_the_count(backend):
    q = np.array([1.0, np.nan, 2.0, np.nan, np.nan])
    with pytest.warns(RuntimeWarning, match="3 NaN"):
        w = importance_weights(q, nan_policy="omit", backend=backend)
    np.testing.assert_allclose(w, [0.8, 0, 0.2, 0, 0], rtol=RTOL)


def test_nan_in_a_large_pool_is_found_in_its_chunk(rng):
    q = rng.standard_normal(200_000)
    q[[70_000, 150_001]] = np.nan
    with pytest.raises(ValueError, match=r"2 NaN value\(s\), first at index 70000"):
        importance_weights(q, backend="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = importance_weights(q, nan_policy="omit", backend="cpu")
        ref = importance_weights(q, nan_policy="omit", backend="numpy")
    assert w[70_000] == 0.0 and w[150_001] == 0.0
    np.testing.assert_allclose(w, ref, rtol=RTOL)


def test_normalize_false_gives_the_raw_clipped_weights():
    w = importance_weights(np.array([0.1, 1e-9, 2.0]), normalize=False, backend="cpu")
    np.testing.assert_allclose(w, [100.0, 100.0, 0.25], rtol=RTOL)


def test_all_infinite_pool_cannot_be_normalised():
    with pytest.raises(ValueError, match="every weight is 0"):
        importance_weights(np.array([np.inf, -np.inf]))
    assert np.array_equal(importance_weights(np.array([np.inf]), normalize=False), [0.0])


def test_out_is_filled_in_place_and_q_untouched(rng):
    q = rng.standard_normal(1000)
    q_before = q.copy()
    out = np.empty(1000)
    for backend in ("numpy", "cpu"):
        res = importance_weights(q, out=out, backend=backend)
        assert res is out
        np.testing.assert_allclose(out, importance_weights(q, backend="numpy"), rtol=RTOL)
    assert np.array_equal(q, q_before)


@pytest.mark.parametrize("out, exc", [(np.empty(3, np.float32), TypeError),
                                      (np.empty(4), TypeError), ([0.0, 0.0, 0.0], TypeError)])
def test_bad_out_is_refused(out, exc):
    with pytest.raises(exc, match="out must"):
        importance_weights(np.ones(3), out=out)


def test_out_sharing_memory_with_q_is_refused():
    q = np.ones(3)
    with pytest.raises(ValueError, match="out must not share memory"):
        importance_weights(q, out=q)


@pytest.mark.parametrize("field, value", [
    ("weight_power", -1.0), ("weight_power", np.nan), ("min_q_abs", 0.0), ("min_q_abs", -1e-3),
    ("max_weight", 0.0), ("max_weight", np.inf), ("temperature", 0.0), ("temperature", -2.0)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        importance_weights(np.ones(3), **{field: value})


@pytest.mark.parametrize("q, exc, pattern", [
    (np.array(["a", "b"]), TypeError, "q must hold real numbers"),
    (np.array([True, False]), TypeError, "booleans"),
    (np.array([1 + 1j]), TypeError, "q must hold real numbers"),
    (np.ones((2, 2)), ValueError, r"q must be \(N,\) or \(N, 1\)"),
    (np.array([]), ValueError, "must not be empty"),
])
def test_bad_q_is_refused(q, exc, pattern):
    with pytest.raises(exc, match=pattern):
        importance_weights(q)


def test_bad_nan_policy_and_backend():
    with pytest.raises(ValueError, match="nan_policy"):
        importance_weights(np.ones(2), nan_policy="ignore")
    with pytest.raises(ValueError, match="backend"):
        importance_weights(np.ones(2), backend="tpu")


def test_risk_weight_errors():
    with pytest.raises(ValueError, match="beta"):
        singularity_prob(np.ones(2), tau_train=0.1, beta=0.0)
    with pytest.raises(ValueError, match="gamma"):
        ema_update(0.5, np.ones(2), gamma=1.5)
    with pytest.raises(ValueError, match="bottom_mask"):
        sampling_weights(np.ones(2), np.ones(3), alpha=1.0, s_min=0.1)
    with pytest.raises(ValueError, match="NaN"):
        singularity_prob(np.array([np.nan]), tau_train=0.1, beta=1.0)


def test_singularity_prob_is_stable_far_from_the_threshold():
    p = singularity_prob(np.array([1e6, 0.0]), tau_train=1.0, beta=1e-3)
    assert p[0] == 0.0 and p[1] == 1.0 and np.all(np.isfinite(p))


def test_risk_defaults_are_zeroproofml_0_6_1s():
    """beta=0.1, gamma=0.1, alpha=1.0, s_min=0.1, bottom_mask=None (all zeros)."""
    q = np.array([0.0, 0.05, -0.3, 2.0])
    np.testing.assert_allclose(singularity_prob(q, 0.01),
                               singularity_prob(q, 0.01, beta=0.1), rtol=0)
    prev, cur = np.array([0.2, 0.4, 0.0, 1.0]), np.array([1.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(ema_update(prev, cur), 0.1 * cur + 0.9 * prev, rtol=1e-15)
    np.testing.assert_allclose(sampling_weights(cur), np.maximum(0.1, 1.0 + cur), rtol=1e-15)


def test_ema_update_order_is_previous_then_current():
    """ema_update(previous, current): the copied zeroproofml call gives its numbers."""
    prev, cur = np.zeros(3), np.ones(3)
    np.testing.assert_array_equal(ema_update(prev, cur, gamma=0.1), np.full(3, 0.1))
    np.testing.assert_array_equal(ema_update(prev, cur, 0.25), np.full(3, 0.25))


def test_bottom_mask_accepts_booleans():
    p = np.array([0.2, 0.9])
    np.testing.assert_array_equal(sampling_weights(p, np.array([False, True])),
                                  sampling_weights(p, np.array([0.0, 1.0])))


def test_q_of_shape_n_by_1_is_squeezed_and_other_2d_refused():
    q = np.array([[0.1], [0.0], [3.0]])
    np.testing.assert_array_equal(singularity_prob(q, 0.05), singularity_prob(q[:, 0], 0.05))
    np.testing.assert_array_equal(importance_weights(q), importance_weights(q[:, 0]))
    with pytest.raises(ValueError, match=r"q_values must be \(N,\) or \(N, 1\).*\(3, 2\)"):
        singularity_prob(np.ones((3, 2)), 0.05)


@pytest.mark.parametrize("backend", ["numpy", "cpu", "cuda"])
def test_zero_total_says_whether_q_was_finite(backend):
    """A zero total is explained by its cause: finite q whose weights all underflow
    (|q| ** -p below the smallest float64) is not reported as "no finite value"."""
    with pytest.raises(ValueError, match="underflowed to 0") as finite:
        importance_weights(np.full(4, 1e300), weight_power=2.0, backend=backend)
    assert "no finite value" not in str(finite.value)
    with pytest.raises(ValueError, match="q holds no finite value"):
        importance_weights(np.array([np.inf, -np.inf]), backend=backend)
