"""sample_from_q: the indices of sample_indices(importance_weights(q, normalize=False))
on every backend, the same errors, and no (N,) array of weights."""
import os
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest

import zp_ref
from zp_ref import recycled
from zp_ref.kernels.cpu_sampling import PREFIX_BLOCK
from zp_ref.sampling import prefix_sums, sample_indices
from zp_ref.sampling_from_q import sample_from_q
from zp_ref.rng import uniforms
from zp_ref.weighting import importance_weights

BACKENDS = ["numpy", "cpu", "cuda"]
CONFIGS = [
    {},                                                     # p = 2, the default
    {"weight_power": 1.0},
    {"weight_power": 0.5},
    {"weight_power": 0.0},
    {"weight_power": 3.0},                                  # integer power
    {"weight_power": 2.5, "min_q_abs": 1e-3},               # general power
    {"temperature": 0.7},
    {"weight_power": 1.0, "temperature": 2.5, "max_weight": 1e6},
    {"weight_power": 4.0, "min_q_abs": 1e-2, "max_weight": 10.0, "temperature": 1.3},
]


def two_step(q, n, seed, backend, replace=True, **config):
    w = importance_weights(q, normalize=False, backend=backend, **config)
    return sample_indices(w, n, seed=seed, replace=replace, backend=backend)


def q_pool(rng, size, decades=8):
    """Q values over `decades` decades around 1 with both signs, some exact zeros and
    some +-inf."""
    q = rng.choice([-1.0, 1.0], size) * 10.0 ** rng.uniform(-decades, 2, size)
    q[rng.random(size) < 0.05] = 0.0
    q[rng.random(size) < 0.05] = np.inf
    q[rng.random(size) < 0.05] = -np.inf
    q[size // 2] = 0.3                    # at least one finite value
    return q


def sizes_for(backend):
    # pools not a multiple of PREFIX_BLOCK, tiny pools, and (cpu/numpy) several groups
    if backend == "cuda":                 # the simulator runs every thread in Python
        return [1, 3, 513, 1500]
    return [1, 2, 3, 511, 513, 2047, 4 * PREFIX_BLOCK + 1, 20_011]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS,
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_indices_equal_the_two_step_call(rng, backend, config):
    n = 200 if backend == "cuda" else 3000
    for size in sizes_for(backend):
        q = q_pool(rng, size)
        for seed in ((0,) if backend == "cuda" else (0, 7)):
            got = sample_from_q(q, n, seed=seed, backend=backend, **config)
            assert got.dtype == np.int64 and got.shape == (n,)
            assert np.array_equal(got, two_step(q, n, seed, backend, **config)), (size, seed)


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_dynamic_range_gives_the_two_step_indices(rng, backend):
    # |q| from 1e-300 to 1e300, p = 1: weights from max_weight down to 1e-300
    size = 1500 if backend == "cuda" else 30_000
    q = rng.choice([-1.0, 1.0], size) * 10.0 ** rng.uniform(-300, 300, size)
    config = {"weight_power": 1.0, "max_weight": 1e200, "min_q_abs": 1e-250}
    n = 200 if backend == "cuda" else 5000
    got = sample_from_q(q, n, seed=3, backend=backend, **config)
    assert np.array_equal(got, two_step(q, n, 3, backend, **config))


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_backend_indices_are_the_oracle_indices_on_clean_pools(rng, backend):
    # integer power p = 2 and T = 1: the weights are exact IEEE ops on every backend
    q = q_pool(rng, 1200)
    assert np.array_equal(sample_from_q(q, 300, seed=5, backend=backend),
                          sample_from_q(q, 300, seed=5, backend="numpy"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_replacement_equals_the_two_step_call(rng, backend):
    q = q_pool(rng, 1500)
    for config in CONFIGS[:3] + CONFIGS[6:7]:
        got = sample_from_q(q, 100, seed=9, replace=False, backend=backend, **config)
        assert np.array_equal(got, two_step(q, 100, 9, backend, replace=False, **config))
        assert np.unique(got).size == 100


@pytest.mark.parametrize("backend", BACKENDS)
def test_target_rounded_up_to_the_total_takes_the_last_positive_weight(backend):
    # T = 0.01: w = (|q|**-2)**100, subnormal weights of 1 and 5 units in the last
    # place, so u * total rounds up to the total for u near 1 (the contract's corner)
    q = np.array([10**1.6166, 10**1.6131, np.inf, -1e300])
    config = {"temperature": 0.01, "max_weight": 1.0}
    w = importance_weights(q, normalize=False, backend="numpy", **config)
    assert w.tolist() == [5e-324, 2.5e-323, 0.0, 0.0]
    total = prefix_sums(w)[-1]
    n = 200
    assert (uniforms(4, 0, n, backend="numpy") * total >= total).sum() > 0   # corner hit
    got = sample_from_q(q, n, seed=4, backend=backend, **config)
    assert set(got.tolist()) == {0, 1}
    assert np.array_equal(got, two_step(q, n, 4, backend, **config))


def test_last_positive_weight_caps_an_underflowing_power_instead_of_raising():
    """1 / a**p with a**p underflowing to 0 is inf, capped at max_weight, in the kernel
    that finds the corner case's index (NumPy's error model; it raised
    ZeroDivisionError under Numba's default one)."""
    from zp_ref.kernels.cpu_sample_from_q import last_positive_weight
    from zp_ref.kernels.cpu_weights import power_mode
    q = np.array([0.5, 1e-300, np.inf])
    assert importance_weights(q, min_q_abs=1e-300, max_weight=1e308, normalize=False,
                              backend="cpu").tolist() == [4.0, 1e308, 0.0]
    assert last_positive_weight(q, (2.0, power_mode(2.0), 1e-300, 1e308, 1.0)) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_draws_give_an_empty_int64_array(backend):
    idx = sample_from_q(np.ones(3), 0, seed=0, backend=backend)
    assert idx.shape == (0,) and idx.dtype == np.int64


@pytest.mark.parametrize("q, n, kwargs", [
    (np.array([1.0, np.nan, 2.0, np.nan]), 3, {}),               # NaN in q
    (np.full(5, np.inf), 3, {}),                                  # every weight 0
    (np.array([np.inf, -np.inf]), 3, {}),
    (np.ones(3), -1, {}),
    (np.ones(3), 2.0, {}),
    (np.ones(3), 2, {"seed": -3}),
    (np.ones(3), 2, {"seed": 0.5}),
    (np.ones(3), 2, {"replace": "yes"}),
    (np.ones(3), 2, {"weight_power": -1.0}),
    (np.ones(3), 2, {"min_q_abs": 0.0}),
    (np.ones(3), 2, {"max_weight": np.inf}),
    (np.ones(3), 2, {"temperature": 0.0}),
    (np.ones(3), 2, {"max_weight": 1e300, "temperature": 0.1}),   # max_weight**(1/T) overflows
    (np.ones(3), 2, {"nan_policy": "drop"}),
    (np.array([]), 2, {}),
    (np.ones((2, 2)), 2, {}),
    (["a"], 2, {}),
    (np.r_[1.0, np.inf], 2, {"replace": False}),                  # one positive weight
    (np.full(4, 1e-308), 3, {"weight_power": 1.0, "max_weight": 1e308, "min_q_abs": 1e-320}),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs_raise_the_errors_of_the_two_step_call(q, n, kwargs, backend):
    kwargs = {"seed": 0, **kwargs}
    seed = kwargs.pop("seed")
    replace = kwargs.pop("replace", True)
    with pytest.raises((ValueError, TypeError)) as want:
        w = importance_weights(q, normalize=False, backend=backend, **kwargs)
        sample_indices(w, n, seed=seed, replace=replace, backend=backend)
    with pytest.raises(want.type) as got:
        sample_from_q(q, n, seed=seed, replace=replace, backend=backend, **kwargs)
    assert str(got.value) == str(want.value)


def test_a_bad_backend_is_refused_naming_it():
    with pytest.raises(ValueError, match="backend"):
        sample_from_q(np.ones(3), 2, seed=0, backend="gpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_omit_gives_the_two_step_indices_and_warns_the_count(rng, backend):
    q = q_pool(rng, 1300)
    q[[5, 700, 1299]] = np.nan
    with pytest.warns(RuntimeWarning, match=r"3 NaN value\(s\)"):
        got = sample_from_q(q, 200, seed=2, nan_policy="omit", backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = two_step(q, 200, 2, backend, nan_policy="omit")
    assert np.array_equal(got, want)
    assert not np.isin(got, [5, 700, 1299]).any()


def test_q_is_not_mutated_and_tensors_are_accepted(rng):
    torch = pytest.importorskip("torch")
    q = q_pool(rng, 3000)
    before = q.copy()
    got = sample_from_q(q, 500, seed=1, backend="cpu")
    assert np.array_equal(q, before, equal_nan=True)
    assert np.array_equal(sample_from_q(torch.from_numpy(q), 500, seed=1, backend="cpu"), got)


def test_lazy_export_is_the_function_even_after_the_module_is_imported():
    import zp_ref.sampling_from_q  # noqa: F401
    assert zp_ref.sample_from_q is sample_from_q


def test_cpu_path_stores_no_array_of_weights():
    # N = 2**21 entries: the weights would take 16 MiB; block totals, ends and the
    # draws' scratch take about 2.5 bytes per entry at most here.
    q = np.linspace(-1.0, 1.0, 2**21)
    n = 10_000
    sample_from_q(q, n, seed=0, backend="cpu")          # compile and fill the scratch
    two_step(q, n, 0, "cpu")
    recycled.release()                                  # the weights are allocated anew
    peaks = []
    for draw in (lambda: sample_from_q(q, n, seed=1, backend="cpu"),
                 lambda: two_step(q, n, 1, "cpu")):
        tracemalloc.start()
        draw()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] >= q.nbytes                          # the two-step call does store them
    assert peaks[0] < q.nbytes // 16, peaks


def test_same_indices_with_one_or_two_numba_threads():
    # 400,000 entries: above kernels.PARALLEL_MIN_WORK, so the parallel kernels split
    code = ("import numpy as np; from zp_ref import sample_from_q, DrawTable;"
            "q = np.random.default_rng(1).standard_normal(400_000);"
            "a = sample_from_q(q, 200_000, seed=3, backend='cpu');"
            "b = DrawTable(np.abs(q), backend='cpu').sample(200_000, seed=4);"
            "print(np.bitwise_xor.reduce(a * np.arange(a.size)),"
            "      np.bitwise_xor.reduce(b * np.arange(b.size)))")
    outs = []
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                   capture_output=True, text=True).stdout)
    assert outs[0] == outs[1] and outs[0].strip()


def test_a_tensor_q_column_gives_the_same_indices_as_a_tensor():
    """Tensor in, tensor out: a torch (N, 1) Q head that requires grad gives the int64
    tensor of the NumPy call's indices."""
    torch = pytest.importorskip("torch")
    head = torch.linspace(-1.0, 1.0, 1001, dtype=torch.float32)[:, None].requires_grad_()
    got = sample_from_q(head, 300, seed=5)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
    q = head.detach().numpy()[:, 0].astype(np.float64)        # float32 values, widened
    np.testing.assert_array_equal(got.numpy(), sample_from_q(q, 300, seed=5))


def test_more_draws_than_any_array_can_hold_are_refused_like_sample_indices():
    """n above the draw-count bound is refused with the same ValueError on every backend."""
    from zp_ref.rng import MAX_DRAWS
    for backend in ("numpy", "cpu"):
        with pytest.raises(ValueError, match="n"):
            sample_from_q(np.ones(10), MAX_DRAWS + 1, seed=0, backend=backend)
