"""Weighted draws: the definition (naive reference), backend parity, statistics,
errors, and the stateful ImportanceSampler."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import naive
from zp_ref.kernels.cpu_sampling import PREFIX_BLOCK
from zp_ref.sampling import (ImportanceSampler, ImportanceSamplerConfig, hybrid_indices,
                             kish_ess, prefix_sums, sample_indices, uniform_indices)
from zp_ref.rng import derive_seed

BACKENDS = ["numpy", "cpu", "cuda"]


def sparse_weights(rng, n, zero_fraction=0.3, dynamic_range=1e12):
    w = 10.0 ** rng.uniform(0, np.log10(dynamic_range), n)
    w[rng.random(n) < zero_fraction] = 0.0
    w[rng.integers(n)] = 1.0
    return w


def test_naive_constant_matches_kernel_constant():
    assert naive.BLOCK == PREFIX_BLOCK


@pytest.mark.parametrize("n_pool", [1, 3, PREFIX_BLOCK - 1, PREFIX_BLOCK, PREFIX_BLOCK + 1, 1700])
def test_oracle_equals_naive_definition(rng, n_pool):
    w = sparse_weights(rng, n_pool)
    assert prefix_sums(w).tolist() == naive.prefix_sums(w.tolist())
    for seed in (0, 99):
        assert sample_indices(w, 200, seed=seed, backend="numpy").tolist() == \
            naive.sample_with_replacement(w.tolist(), 200, seed)
        k = min(20, np.count_nonzero(w))
        assert sample_indices(w, k, seed=seed, replace=False, backend="numpy").tolist() == \
            naive.sample_without_replacement(w.tolist(), k, seed)
        assert uniform_indices(n_pool, 50, seed=seed, backend="numpy").tolist() == \
            naive.uniform_indices(n_pool, 50, seed)


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
@pytest.mark.parametrize("seed", [0, 7, 2**64 - 1])
@pytest.mark.parametrize("n_pool", [1, 5, 513, 1500])
def test_backends_draw_identical_indices(rng, backend, seed, n_pool):
    w = sparse_weights(rng, n_pool)
    n = 300 if backend == "cuda" else 5000
    want = sample_indices(w, n, seed=seed, backend="numpy")
    assert np.array_equal(sample_indices(w, n, seed=seed, backend=backend), want)
    k = min(40, np.count_nonzero(w))
    assert np.array_equal(sample_indices(w, k, seed=seed, replace=False, backend=backend),
                          sample_indices(w, k, seed=seed, replace=False, backend="numpy"))
    assert np.array_equal(uniform_indices(n_pool, 100, seed=seed, backend=backend),
                          uniform_indices(n_pool, 100, seed=seed, backend="numpy"))


def test_cpu_parity_on_large_pools_with_concentrated_mass(rng):
    for w in (sparse_weights(rng, 200_003), np.r_[np.zeros(99_999), 1.0, np.zeros(5)],
              np.r_[1e-300, np.ones(70_000), 1e300]):
        want = sample_indices(w, 50_000, seed=5, backend="numpy")
        assert np.array_equal(sample_indices(w, 50_000, seed=5, backend="cpu"), want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_weights_are_never_drawn(rng, backend):
    w = sparse_weights(rng, 900, zero_fraction=0.8)
    n = 300 if backend == "cuda" else 20_000
    idx = sample_indices(w, n, seed=3, backend=backend)
    assert np.all(w[idx] > 0)
    assert idx.dtype == np.int64 and idx.min() >= 0 and idx.max() < w.size


def test_drawn_frequencies_follow_the_weights_chi_square(rng):
    w = rng.uniform(0.1, 5.0, 50)
    n = 200_000
    counts = np.bincount(sample_indices(w, n, seed=2026, backend="cpu"), minlength=50)
    p = stats.chisquare(counts, n * w / w.sum()).pvalue
    assert p > 1e-3, p


def test_without_replacement_first_pick_follows_the_weights():
    w = np.array([1.0, 2.0, 3.0, 4.0])
    first = [sample_indices(w, 1, seed=s, replace=False, backend="cpu")[0] for s in range(4000)]
    p = stats.chisquare(np.bincount(first, minlength=4), 4000 * w / w.sum()).pvalue
    assert p > 1e-3, p


@pytest.mark.parametrize("scale", [5e-324, 1e-310, 1e300])
def test_without_replacement_first_pick_follows_subnormal_and_huge_weights(scale):
    """Keys log(w) - log(-log(u)) stay finite: weights k * scale (k = 1..4), subnormal
    or huge, give first picks with chi-square p > 1e-3 against k / 10 (seeds 0..3999)."""
    w = np.array([1.0, 2.0, 3.0, 4.0]) * scale
    first = [sample_indices(w, 1, seed=s, replace=False, backend="cpu")[0] for s in range(4000)]
    p = stats.chisquare(np.bincount(first, minlength=4), [400, 800, 1200, 1600]).pvalue
    assert p > 1e-3, p


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_replacement_equal_subnormal_weights_are_a_seeded_permutation(backend):
    """1000 equal weights of 1e-320: the draw is the order of the uniforms (the naive
    reference), a different permutation for every seed, never 0..n-1."""
    w = np.full(1000, 1e-320)
    draws = []
    for seed in (0, 1, 2**64 - 1):
        idx = sample_indices(w, 50, seed=seed, replace=False, backend=backend)
        assert idx.tolist() == naive.sample_without_replacement(w.tolist(), 50, seed)
        assert idx.tolist() != list(range(50))
        draws.append(idx.tolist())
    assert draws[0] != draws[1] != draws[2]


def test_without_replacement_keys_mix_subnormal_and_huge_weights_on_every_backend():
    """Subnormal, tiny, ordinary and huge weights in one pool: identical indices on the
    three backends and the naive reference, for every n up to the positive count."""
    w = np.array([1e-310, 1e308, 0.0, 5e-324, 1.0, 2.0, 1e-320, 3e300, 1e-300, 0.5])
    for seed in (0, 5, 77):
        for n in range(9):
            want = naive.sample_without_replacement(w.tolist(), n, seed)
            for backend in BACKENDS:
                got = sample_indices(w, n, seed=seed, replace=False, backend=backend)
                assert got.tolist() == want, (seed, n, backend)


def test_without_replacement_cpu_shortcut_keeps_every_candidate(rng):
    """Large pools (the cpu kernel skips the log for entries with 1 - u > w e^-t) give
    the oracle's indices at thresholds across the whole key range."""
    for w in (sparse_weights(rng, 300_001, dynamic_range=1e300),
              np.r_[np.full(50_000, 1e-320), np.full(50_000, 1e300)],
              np.full(100_000, 3.0)):
        for n in (1, 1000, int(np.count_nonzero(w)) // 2, int(np.count_nonzero(w))):
            want = sample_indices(w, n, seed=9, replace=False, backend="numpy")
            assert np.array_equal(sample_indices(w, n, seed=9, replace=False, backend="cpu"),
                                  want), n


def test_uniform_draws_are_uniform():
    counts = np.bincount(uniform_indices(37, 370_000, seed=1, backend="cpu"), minlength=37)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_pool_larger_than_two_pow_24_works_on_cpu():
    n_pool = 2**24 + 5
    w = np.zeros(n_pool)
    w[[3, 2**24 + 1, 2**24 + 4]] = [1.0, 2.0, 1.0]
    idx = sample_indices(w, 40_000, seed=8, backend="cpu")
    assert set(np.unique(idx).tolist()) == {3, 2**24 + 1, 2**24 + 4}
    assert np.array_equal(idx, sample_indices(w, 40_000, seed=8, backend="numpy"))


def test_target_rounded_up_to_the_total_takes_the_last_positive_weight():
    # With a subnormal total, u * C[-1] rounds to C[-1] for u near 1: searchsorted would
    # return N, the contract clamps to the last positive weight (index 1 here).
    w = np.array([5e-324, 1e-323, 0.0])
    C = prefix_sums(w)
    u_hi = 1 - 2.0**-53
    assert u_hi * C[-1] == C[-1]
    want = naive.sample_with_replacement(w.tolist(), 2000, 4)
    assert set(want) == {0, 1}
    for backend in ("numpy", "cpu"):
        assert sample_indices(w, 2000, seed=4, backend=backend).tolist() == want


def test_hybrid_batch_composition_shuffle_and_likelihood_ratios(rng):
    w = sparse_weights(rng, 1000, dynamic_range=1e3)
    n, ratio, seed = 101, 0.7, 4
    idx, lr = hybrid_indices(w, n, ratio=ratio, seed=seed, backend="cpu")
    n_imp = int(np.floor(n * ratio))
    parts = np.concatenate([sample_indices(w, n_imp, seed=seed, backend="numpy"),
                            uniform_indices(w.size, n - n_imp, seed=seed, backend="numpy")])
    assert sorted(idx.tolist()) == sorted(parts.tolist())
    assert not np.array_equal(idx, parts)       # the shuffle moved something
    m = ratio * w[idx] / prefix_sums(w)[-1] + (1 - ratio) / w.size
    np.testing.assert_allclose(lr, 1.0 / (w.size * m), rtol=1e-12)
    for backend in ("numpy", "cuda"):
        i2, l2 = hybrid_indices(w, n, ratio=ratio, seed=seed, backend=backend)
        assert np.array_equal(i2, idx)
        np.testing.assert_allclose(l2, lr, rtol=1e-12)


def test_likelihood_ratios_make_the_hybrid_mean_unbiased(rng):
    w = rng.uniform(0.01, 1.0, 200) ** 3
    f = rng.standard_normal(200)
    idx, lr = hybrid_indices(w, 400_000, ratio=0.6, seed=11, backend="cpu")
    estimate = np.mean(lr * f[idx])
    assert abs(estimate - f.mean()) < 0.02, (estimate, f.mean())


def test_kish_ess():
    assert kish_ess(np.ones(10)) == pytest.approx(10.0, rel=1e-15)
    assert kish_ess(np.r_[1.0, np.zeros(9)]) == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("weights, n, kwargs, exc, pattern", [
    (np.array([]), 3, {}, ValueError, "weights must not be empty"),
    (np.zeros(4), 3, {}, ValueError, "sum to 0"),
    (np.array([1.0, -1.0]), 3, {}, ValueError, r"1 negative value\(s\), first at index 1"),
    (np.array([1.0, np.nan]), 3, {}, ValueError, "non-finite"),
    (np.array([1.0, np.inf]), 3, {}, ValueError, "non-finite"),
    (np.array([1e308, 1e308]), 3, {}, ValueError, "overflows"),
    (np.ones(3), -1, {}, ValueError, "n must"),
    (np.ones(3), 2.0, {}, TypeError, "n must"),
    (np.ones(3), 2, {"seed": -3}, ValueError, "seed"),
    (np.ones(3), 2, {"seed": 0.5}, TypeError, "seed"),
    (np.ones(3), 2, {"replace": "yes"}, TypeError, "replace"),
    (np.r_[1.0, 0.0], 2, {"replace": False}, ValueError, "positive weights"),
    (np.ones((2, 2)), 2, {}, ValueError, r"\(N,\) or \(N, 1\)"),
    (["a"], 2, {}, TypeError, "real numbers"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs_are_refused_naming_the_argument(weights, n, kwargs, exc, pattern, backend):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(exc, match=pattern):
        sample_indices(weights, n, backend=backend, **kwargs)


@pytest.mark.parametrize("n", [2**60, 2**63 - 1, 2**64 + 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_draw_counts_beyond_numpys_largest_array_are_refused_on_every_backend(n, backend):
    """n * 8 bytes must fit in 2**63 - 1: every backend raises the same ValueError (the
    numpy oracle used to return an empty array for n near 2**63)."""
    from zp_ref.rng import MAX_DRAWS, uniforms
    assert MAX_DRAWS == 2**60 - 1
    calls = [lambda: sample_indices(np.ones(3), n, seed=0, backend=backend),
             lambda: sample_indices(np.ones(3), n, seed=0, replace=False, backend=backend),
             lambda: uniform_indices(3, n, seed=0, backend=backend),
             lambda: hybrid_indices(np.ones(3), n, ratio=0.5, seed=0, backend=backend),
             lambda: uniforms(0, 0, n, backend=backend)]
    for call in calls:
        with pytest.raises(ValueError, match=rf"n must be at most 2\*\*60 - 1.*got {n}"):
            call()


def test_inputs_are_not_mutated(rng):
    w = sparse_weights(rng, 3000)
    before = w.copy()
    for backend in ("numpy", "cpu"):
        sample_indices(w, 1000, seed=1, backend=backend)
        sample_indices(w, 10, seed=1, replace=False, backend=backend)
        hybrid_indices(w, 100, ratio=0.5, seed=1, backend=backend)
    assert np.array_equal(w, before)


def test_zero_draws_give_an_empty_int64_array():
    for backend in ("numpy", "cpu"):
        idx = sample_indices(np.ones(3), 0, seed=0, backend=backend)
        assert idx.shape == (0,) and idx.dtype == np.int64


def test_same_indices_with_one_or_two_numba_threads(tmp_path):
    code = ("import numpy as np; from zp_ref import sampling, weighting;"
            "q = np.random.default_rng(1).standard_normal(400_000);"
            "w = weighting.importance_weights(q, backend='cpu');"
            "i = sampling.sample_indices(w, 100_000, seed=3, backend='cpu');"
            "print(w.sum().hex(), np.bitwise_xor.reduce(i * np.arange(i.size)))")
    outs = []
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                   capture_output=True, text=True).stdout)
    assert outs[0] == outs[1]


# --- ImportanceSampler ----------------------------------------------------------------

def pool(n=2000):
    x = np.linspace(-3, 3, n)
    return x, (x - 0.5) * (x + 1.25)


def test_sampler_batch_equals_the_functional_api():
    x, q = pool()
    sampler = ImportanceSampler(ImportanceSamplerConfig(weight_power=1.0), seed=21)
    w = sampler.compute_weights(q)
    for c in range(3):
        bx, idx = sampler.sample_batch(x, q, 64)
        assert np.array_equal(idx, sample_indices(w, 64, seed=derive_seed(21, c)))
        assert np.array_equal(bx, x[idx])
    np.testing.assert_allclose(sampler.last_likelihood_ratios, 1.0 / (q.size * w[idx]),
                               rtol=1e-12)


def test_consecutive_batches_differ_and_state_round_trip_reproduces_them():
    x, q = pool()
    a = ImportanceSampler(seed=5)
    first = a.sample_batch(x, q, 128)[1]
    state = a.state_dict()
    nxt = [a.hybrid_sample(x, q, 128)[1], a.sample_batch(x, q, 128)[1]]
    assert not np.array_equal(first, nxt[1])
    b = ImportanceSampler.from_state_dict(state)
    assert np.array_equal(b.hybrid_sample(x, q, 128)[1], nxt[0])
    assert np.array_equal(b.sample_batch(x, q, 128)[1], nxt[1])
    assert b.get_statistics() == a.get_statistics()


def test_sampler_statistics():
    x, q = pool(50)
    s = ImportanceSampler(seed=1)
    assert s.get_statistics()["total_samples"] == 0
    _, i1 = s.sample_batch(x, q, 30)
    _, i2 = s.hybrid_sample(x, q, 20)
    st = s.get_statistics()
    both = np.concatenate([i1, i2])
    counts = np.bincount(both)
    assert st["total_samples"] == 50 and st["batches"] == 2
    assert st["unique_samples"] == np.unique(both).size
    assert st["max_sample_count"] == counts.max()
    assert st["min_sample_count"] == counts[counts > 0].min()
    assert st["mean_q_abs"] == pytest.approx(np.abs(q[both]).mean(), rel=1e-12)
    assert st["min_q_abs"] == np.abs(q[both]).min()
    assert st["kish_ess"] == pytest.approx(kish_ess(s.compute_weights(q)), rel=1e-12)


def test_hybrid_sample_uses_the_importance_batch_ratio():
    x, q = pool()
    s = ImportanceSampler(ImportanceSamplerConfig(importance_batch_ratio=0.25), seed=9)
    _, idx = s.hybrid_sample(x, q, 100)
    want, lr = hybrid_indices(s.compute_weights(q), 100, ratio=0.25, seed=derive_seed(9, 0))
    assert np.array_equal(idx, want)
    np.testing.assert_allclose(s.last_likelihood_ratios, lr, rtol=1e-12)


@pytest.mark.parametrize("field, value, exc", [
    ("weight_power", -2.0, ValueError), ("importance_batch_ratio", 1.5, ValueError),
    ("resample_frequency", 0, ValueError), ("resample_frequency", 2.5, TypeError),
    ("temperature", np.inf, ValueError)])
def test_bad_sampler_config_names_the_field(field, value, exc):
    with pytest.raises(exc, match=field):
        ImportanceSamplerConfig(**{field: value})


def test_resample_ratio_is_gone_from_the_core_config_and_old_states_still_load():
    """``resample_ratio`` had no effect: the core config refuses it (it lives only in
    zp_ref.compat.legacy); a state written with it and without a version field (the
    format before the state protocol) loads, the value dropped, and draws identically."""
    with pytest.raises(TypeError, match="resample_ratio"):
        ImportanceSamplerConfig(resample_ratio=0.5)
    x, q = pool()
    s = ImportanceSampler(seed=3)
    s.sample_batch(x, q, 10)
    state = s.state_dict()
    assert state["version"] == 1
    old = {k: v for k, v in state.items() if k != "version"}
    old["config"] = {**state["config"], "resample_ratio": 0.25}
    back = ImportanceSampler.from_state_dict(old)
    assert back.state_dict().keys() == state.keys()
    assert back.config == s.config
    assert np.array_equal(back.sample_batch(x, q, 10)[1], s.sample_batch(x, q, 10)[1])


def test_bad_state_is_refused_and_leaves_the_sampler_unchanged():
    x, q = pool()
    s = ImportanceSampler(seed=3)
    s.sample_batch(x, q, 10)
    before = s.state_dict()
    bad = dict(before, calls=-1)
    with pytest.raises(ValueError, match="calls"):
        s.load_state_dict(bad)
    with pytest.raises(ValueError, match="keys"):
        s.load_state_dict({"seed": 1})
    after = s.state_dict()
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[k], before[k]) if isinstance(before[k], np.ndarray)
               else after[k] == before[k] for k in before)


def test_pool_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="x_pool must have one entry per q_pool value"):
        ImportanceSampler().sample_batch(np.zeros(3), np.ones(4), 2)


# --- read-only install ------------------------------------------------------------------

#: Imports a read-only copy of zp_ref with HOME unwritable, draws on numpy and cpu, and
#: prints Numba's cache folder. Run as root (whom permission bits do not stop), an audit
#: hook refuses every write under the copy and HOME, as the OS would for a user.
READ_ONLY_PROGRAM = '''
import json, os, sys
ROOTS = tuple(os.path.realpath(p) + os.sep for p in sys.argv[1:3])

def deny_writes(event, args):
    if event == "open" and args[0] is not None and not isinstance(args[0], int):
        path, mode, flags = args
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)) or \\
            bool(mode and any(c in mode for c in "wax+"))
    elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir"):
        path, writing = args[0], True
    else:
        return
    if writing and os.path.realpath(os.fspath(path)).startswith(ROOTS):
        raise PermissionError(13, "Permission denied (read-only install)", path)

if os.geteuid() == 0:
    sys.addaudithook(deny_writes)
sys.path.insert(0, sys.argv[1])
import numpy as np
import numba
import zp_ref
assert zp_ref.__file__.startswith(sys.argv[1])
a = zp_ref.sample_indices(np.ones(5), 3, seed=0, backend="numpy").tolist()
b = zp_ref.uniforms(1, 16, 3, backend="cpu").tolist()
print(json.dumps({"numpy": a, "cpu": b, "cache": numba.config.CACHE_DIR}))
'''


def test_read_only_install_with_unwritable_home_caches_kernels_in_a_private_temp_dir(tmp_path):
    """Neither zp_ref/__pycache__ nor ~/.cache/numba writable: import and draws work on
    numpy and cpu, and Numba caches in <tmp>/zp_ref-numba-cache-<uid> (0700)."""
    import shutil
    import stat
    import tempfile
    from zp_ref.rng import uniforms
    package = tmp_path / "site"
    home = tmp_path / "home"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "..", "zp_ref"), package / "zp_ref",
                    ignore=shutil.ignore_patterns("__pycache__"))
    home.mkdir()
    for path in [home, *package.rglob("*"), package]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH"))}
    env["HOME"] = str(home)
    try:
        proc = subprocess.run([sys.executable, "-c", READ_ONLY_PROGRAM, str(package), str(home)],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    finally:
        for path in [package, *package.rglob("*"), home]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["numpy"] == sample_indices(np.ones(5), 3, seed=0, backend="numpy").tolist()
    assert got["cpu"] == uniforms(1, 16, 3, backend="numpy").tolist()
    uid = os.getuid()
    assert got["cache"] == os.path.join(tempfile.gettempdir(), f"zp_ref-numba-cache-{uid}")
    assert os.stat(got["cache"]).st_mode & 0o077 == 0
    assert any("rng" in f for _, _, files in os.walk(got["cache"]) for f in files)
