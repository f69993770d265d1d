"""numba.cuda kernels (zp_ref.kernels.gpu_*) against the NumPy oracle: identical
uniforms and indices, weights to rtol 1e-12, identical errors. Under the CUDA
simulator (no GPU) inputs stay small: N <= 2000, n <= 500."""
import numpy as np
import pytest
from numba import cuda

from zp_ref.kernels import gpu_rng, gpu_sampling, gpu_weights
from zp_ref.rng import STREAMS, key_of, uniform_numpy, uniforms
from zp_ref.sampling import sample_indices
from zp_ref.weighting import _importance_weights_numpy, importance_weights

RTOL = 1e-12
KEY0 = STREAMS["importance"]
KEY1 = STREAMS["without_replacement"]


def oracle_weights(q, p, min_q_abs, max_weight, temperature, normalize=True):
    return _importance_weights_numpy(np.where(np.isnan(q), np.inf, q), p, min_q_abs,
                                     max_weight, temperature, normalize)


def skewed(n, rng, zero_fraction=0.0):
    """Positive weights spread over several decades, some zeros."""
    w = rng.random(n) ** 6
    w[rng.random(n) < zero_fraction] = 0.0
    w[n // 2] = 1.0                       # at least one positive weight
    return w


# ------------------------------------------------------------------ uniforms
@pytest.mark.parametrize("seed,start,n", [(0, 0, 257), (2**64 - 1, 2**64 - 300, 300),
                                          (12345, 10**12, 100)])
def test_uniforms_identical_to_numpy(seed, start, n):
    key = key_of(seed, 2)
    expected = uniform_numpy(key, np.arange(n, dtype=np.uint64) + np.uint64(start))
    got = gpu_rng.uniforms_gpu(key, start, n)
    assert got.dtype == np.float64 and got.shape == (n,)
    assert np.array_equal(got, expected)
    assert np.array_equal(uniforms(seed, 2, n, start=start, backend="cuda"), expected)


def test_uniforms_empty():
    assert gpu_rng.uniforms_gpu(key_of(1, 0), 0, 0).shape == (0,)


# ------------------------------------------------------------------ weights
def test_weights_golden(golden):
    for case in golden["importance_weights"]:
        c = case["config"]
        got = importance_weights(np.array(case["q"]), weight_power=c["weight_power"],
                                 min_q_abs=c["min_q_abs"], max_weight=c["max_weight"],
                                 temperature=c["temperature"], backend="cuda")
        np.testing.assert_allclose(got, case["weights"], rtol=RTOL, atol=0)


@pytest.mark.parametrize("p,temperature", [(2.0, 1.0), (1.0, 1.0), (0.5, 1.0), (0.0, 1.0),
                                           (3.0, 1.0), (2.5, 1.0), (2.0, 0.5), (1.5, 3.0)])
def test_weights_every_specialisation(p, temperature, rng):
    q = rng.normal(size=1500) * 10.0 ** rng.uniform(-8, 1, 1500)
    q[[3, 70]] = [np.inf, -np.inf]
    q[[5, 6]] = [0.0, -0.0]
    w, total, n_nan = gpu_weights.importance_weights_gpu(q, p, 1e-6, 100.0, temperature, True)
    np.testing.assert_allclose(w, oracle_weights(q, p, 1e-6, 100.0, temperature),
                               rtol=RTOL, atol=0)
    unnormalised = oracle_weights(q, p, 1e-6, 100.0, temperature, normalize=False)
    np.testing.assert_allclose(total, unnormalised.sum(), rtol=RTOL)
    assert n_nan == 0 and w[3] == 0.0 and w[70] == 0.0


def test_weights_nan_counted_and_zero(rng):
    q = rng.normal(size=777)
    q[[0, 100, 776]] = np.nan
    w, total, n_nan = gpu_weights.importance_weights_gpu(q, 2.0, 1e-6, 100.0, 1.0, False)
    assert n_nan == 3 and w[0] == w[100] == w[776] == 0.0
    np.testing.assert_allclose(w, oracle_weights(q, 2.0, 1e-6, 100.0, 1.0, False), rtol=RTOL)
    np.testing.assert_allclose(total, w.sum(), rtol=RTOL)
    with pytest.warns(RuntimeWarning, match="3 NaN"):
        omitted = importance_weights(q, nan_policy="omit", backend="cuda")
    np.testing.assert_allclose(omitted, oracle_weights(q, 2.0, 1e-6, 100.0, 1.0), rtol=RTOL)
    with pytest.raises(ValueError, match="3 NaN value"):
        importance_weights(q, backend="cuda")


def test_weights_device_entry_point(rng):
    q = rng.normal(size=600)
    q_dev, out_dev = cuda.to_device(q), cuda.device_array(600)
    stats = cuda.device_array(2)
    total, n_nan = gpu_weights.importance_weights_device(q_dev, 2.0, 1e-3, 50.0, 1.0, True,
                                                         out_dev, stats)
    np.testing.assert_allclose(out_dev.copy_to_host(), oracle_weights(q, 2.0, 1e-3, 50.0, 1.0),
                               rtol=RTOL)
    assert np.array_equal(stats.copy_to_host(), [total, 0.0]) and n_nan == 0
    with pytest.raises(TypeError, match="q_dev must be a device array"):
        gpu_weights.importance_weights_device(q, 2.0, 1e-3, 50.0, 1.0, True, out_dev)
    with pytest.raises(TypeError, match="float64 device arrays of one shape"):
        gpu_weights.importance_weights_device(q_dev, 2.0, 1e-3, 50.0, 1.0, True,
                                              cuda.device_array(5))


# ------------------------------------------------------------------ with replacement
@pytest.mark.parametrize("N,n,seed,zeros", [(2000, 500, 0, 0.0), (1537, 400, 1, 0.5),
                                            (511, 300, 2**63 + 5, 0.2), (1, 7, 3, 0.0),
                                            (1024, 0, 4, 0.0)])
def test_with_replacement_identical(N, n, seed, zeros, rng):
    w = skewed(N, rng, zeros)
    expected = sample_indices(w, n, seed=seed, backend="numpy")
    got = sample_indices(w, n, seed=seed, backend="cuda")
    assert got.dtype == np.int64 and np.array_equal(got, expected)
    assert np.all(w[got] > 0)


def test_with_replacement_dynamic_range_1e12(rng):
    """Weights from 1 to 1e12 (and zeros between blocks): identical indices."""
    w = 10.0 ** rng.uniform(0, 12, 1800)
    w[600:1200] = 0.0                     # whole empty prefix blocks in the middle
    for seed in (5, 6):
        got = gpu_sampling.sample_with_replacement_gpu(w, 500, key_of(seed, KEY0))
        assert np.array_equal(got, sample_indices(w, 500, seed=seed, backend="numpy"))
        assert not np.any((got >= 600) & (got < 1200))


def test_with_replacement_device_entry_point(rng):
    w = skewed(900, rng, 0.3)
    out = cuda.device_array(200, dtype=np.int64)
    res = gpu_sampling.sample_with_replacement_device(cuda.to_device(w), 200, key_of(9, KEY0),
                                                      out_dev=out)
    assert res is out
    assert np.array_equal(out.copy_to_host(), sample_indices(w, 200, seed=9, backend="numpy"))


def test_block_ends_equal_sequential_accumulate(rng):
    """The device scan adds the block totals in index order: bit-identical ends."""
    w = rng.random(3 * gpu_sampling.PREFIX_BLOCK + 17) * 10.0 ** rng.uniform(-8, 8)
    ends, total, n_positive, last = gpu_sampling.prefix_ends_device(cuda.to_device(w))
    nb = ends.size
    padded = np.zeros(nb * gpu_sampling.PREFIX_BLOCK)
    padded[:w.size] = w
    expected = np.add.accumulate(np.cumsum(padded.reshape(nb, -1), axis=1)[:, -1])
    assert np.array_equal(ends.copy_to_host(), expected) and total == expected[-1]
    assert n_positive == np.count_nonzero(w) and last == np.flatnonzero(w)[-1]


# ------------------------------------------------------------------ without replacement
@pytest.mark.parametrize("N,n,seed,zeros", [(2000, 300, 0, 0.3), (700, 500, 11, 0.0),
                                            (300, 150, 12, 0.5)])
def test_without_replacement_identical(N, n, seed, zeros, rng):
    w = skewed(N, rng, zeros)
    n = min(n, int(np.count_nonzero(w)))
    expected = sample_indices(w, n, seed=seed, replace=False, backend="numpy")
    got = sample_indices(w, n, seed=seed, replace=False, backend="cuda")
    assert got.dtype == np.int64 and np.array_equal(got, expected)


def test_without_replacement_all_positive_is_a_permutation(rng):
    w = skewed(200, rng, 0.4)
    n = int(np.count_nonzero(w))
    got = gpu_sampling.sample_without_replacement_gpu(w, n, key_of(3, KEY1))
    assert np.array_equal(got, sample_indices(w, n, seed=3, replace=False, backend="numpy"))
    assert np.array_equal(np.sort(got), np.flatnonzero(w))


@pytest.mark.parametrize("n", [1, 4, 9, 40])
def test_smallest_keys_ties_to_lower_index(n, rng):
    """The selection with exact ties (many equal keys): ordered by (key, index)."""
    bits = rng.integers(0, 6, 120).astype(np.uint64) << np.uint64(40)
    bits[::7] = np.uint64(2**64 - 1)
    got = gpu_sampling.smallest_keys(cuda.to_device(bits), n)
    assert np.array_equal(got, np.lexsort((np.arange(bits.size), bits))[:n])


# ------------------------------------------------------------------ errors
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # simulator's sums
@pytest.mark.parametrize("w,replace", [
    ([1.0, -2.0, 3.0], True), ([1.0, np.nan, 3.0], True), ([1.0, np.inf], True),
    ([0.0, 0.0, 0.0], True), ([1.7e308, 1.7e308], True), ([1.0, -1.0], False),
    ([0.0, 0.0], False)])
def test_errors_identical_to_cpu(w, replace):
    w = np.array(w)
    with pytest.raises(ValueError) as cpu_error:
        sample_indices(w, 2, seed=0, replace=replace, backend="cpu")
    with pytest.raises(ValueError) as cuda_error:
        sample_indices(w, 2, seed=0, replace=replace, backend="cuda")
    assert str(cuda_error.value) == str(cpu_error.value)


def test_device_entry_points_raise_the_same_errors():
    w = np.array([1.0, 2.0, -0.5, 1.0])
    with pytest.raises(ValueError) as cpu_error:
        sample_indices(w, 3, seed=0, backend="cpu")
    with pytest.raises(ValueError) as dev_error:
        gpu_sampling.sample_with_replacement_device(cuda.to_device(w), 3, key_of(0, KEY0))
    assert str(dev_error.value) == str(cpu_error.value)
    with pytest.raises(ValueError, match="n=4 draws without replacement need at least n "
                                         "positive weights; weights has 3"):
        gpu_sampling.sample_without_replacement_device(
            cuda.to_device(np.array([1.0, 0.0, 2.0, 3.0])), 4, key_of(0, KEY1))


def test_device_entry_points_refuse_bad_arguments():
    w = np.array([1.0, 2.0])
    for fn in (gpu_sampling.sample_with_replacement_device,
               gpu_sampling.sample_without_replacement_device):
        with pytest.raises(TypeError, match="w_dev must be a device array"):
            fn(w, 1, key_of(0, KEY0))
        with pytest.raises(TypeError, match="w_dev must be a float64 \\(N,\\) device array"):
            fn(cuda.to_device(np.array([1, 2])), 1, key_of(0, KEY0))
        with pytest.raises(ValueError, match="weights must not be empty"):
            fn(cuda.device_array(0), 1, key_of(0, KEY0))
        with pytest.raises(ValueError, match="n must be an integer >= 0, got -1"):
            fn(cuda.to_device(w), -1, key_of(0, KEY0))


def test_prefix_total_on_cuda_sums_on_the_device(rng, monkeypatch):
    """prefix_total(backend="cuda") runs the device kernels (not the CPU's) and gives the
    oracle's bits; bad weights raise the cpu path's errors."""
    from zp_ref.sampling import prefix_sums, prefix_total
    w = rng.random(3 * gpu_sampling.PREFIX_BLOCK + 5) * 10.0 ** rng.uniform(-6, 6)
    calls = []
    real = gpu_sampling.prefix_ends_device
    monkeypatch.setattr(gpu_sampling, "prefix_ends_device",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    assert prefix_total(w, backend="cuda") == prefix_sums(w)[-1]
    assert calls == [1]
    bad = np.array([1.0, -2.0, 3.0])
    with pytest.raises(ValueError) as cpu_error:
        prefix_total(bad, backend="cpu")
    with pytest.raises(ValueError) as dev_error:
        prefix_total(bad, backend="cuda")
    assert str(dev_error.value) == str(cpu_error.value)
