"""Property tests (hypothesis, derandomized so CI is deterministic).

weights: non-increasing in |q| and summing to 1; draws: in range, never on a zero
weight, identical on every backend; stratified counts: the largest-remainder targets;
refinement: the leaves partition the box; state round trips: the same future draws.
"""
import json
import math

import numpy as np
import pytest

pytest.importorskip("hypothesis")     # the test extra; skip cleanly without it
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zp_ref import (BandCurriculum, ImportanceSampler, ImportanceSamplerConfig, band_of,
                    importance_weights, largest_remainder, sample_indices, stratified_sample,
                    uniforms)
from zp_ref import state as zstate
from zp_ref import testing
from zp_ref.bands import effective_mix
from zp_ref.rational import Polynomial
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FAST = settings(max_examples=40, **SETTINGS)
SLOW = settings(max_examples=12, **SETTINGS)
CUDA = settings(max_examples=4, **SETTINGS)

SEEDS = testing.seeds()


def q_arrays(min_size=1, max_size=200):
    """Q pools of zp_ref.testing; the tests below make an all-infinite pool finite."""
    return testing.q_pools(min_size, max_size, finite_entry=False)


@st.composite
def weight_configs(draw):
    return dict(weight_power=draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0]) | st.floats(0, 4)),
                min_q_abs=draw(st.floats(1e-9, 1.0)),
                max_weight=draw(st.floats(1e-3, 1e8)),
                temperature=draw(st.sampled_from([1.0, 0.5, 2.0]) | st.floats(0.1, 5.0)))


weight_vectors = testing.weight_vectors


# ------------------------------------------------------------------ weights
@FAST
@given(q=q_arrays(), cfg=weight_configs())
def test_weights_non_increasing_in_abs_q_and_normalised(q, cfg):
    if not np.isfinite(q).any():
        q[0] = 1.0
    w = importance_weights(q, **cfg, backend="numpy")
    order = np.argsort(np.abs(q), kind="stable")
    assert (np.diff(w[order]) <= 0).all()                   # exact: every step is monotone
    assert math.isclose(math.fsum(w), 1.0, rel_tol=0, abs_tol=1e-12)
    assert (w[np.isinf(q)] == 0).all() and (w[np.isfinite(q)] > 0).all()


@FAST
@given(q=q_arrays(), cfg=weight_configs(), normalize=st.booleans())
def test_weights_numpy_and_cpu_agree(q, cfg, normalize):
    if not np.isfinite(q).any():
        q[0] = 1.0
    a = importance_weights(q, **cfg, normalize=normalize, backend="numpy")
    b = importance_weights(q, **cfg, normalize=normalize, backend="cpu")
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=0)


@CUDA
@given(q=q_arrays(max_size=64), cfg=weight_configs())
def test_weights_cuda_simulator_agrees(q, cfg):
    if not np.isfinite(q).any():
        q[0] = 1.0
    np.testing.assert_allclose(importance_weights(q, **cfg, backend="cuda"),
                               importance_weights(q, **cfg, backend="numpy"), rtol=1e-12, atol=0)


# ------------------------------------------------------------------ draws
@FAST
@given(w=weight_vectors(), n=st.integers(0, 300), seed=SEEDS)
def test_draws_in_range_never_zero_weight_and_backends_equal(w, n, seed):
    idx = sample_indices(w, n, seed=seed, backend="numpy")
    assert idx.dtype == np.int64 and idx.shape == (n,)
    assert ((idx >= 0) & (idx < w.size)).all()
    assert (w[idx] > 0).all()
    assert sample_indices(w, n, seed=seed, backend="cpu").tolist() == idx.tolist()


@FAST
@given(w=weight_vectors(), data=st.data(), seed=SEEDS)
def test_draws_without_replacement_distinct_positive_and_backends_equal(w, data, seed):
    n = data.draw(st.integers(0, int((w > 0).sum())))
    idx = sample_indices(w, n, seed=seed, replace=False, backend="numpy")
    assert len(set(idx.tolist())) == n and (w[idx] > 0).all()
    assert sample_indices(w, n, seed=seed, replace=False, backend="cpu").tolist() == idx.tolist()


@CUDA
@given(w=weight_vectors(max_size=48), n=st.integers(0, 48), seed=SEEDS)
def test_draws_cuda_simulator_equal(w, n, seed):
    assert sample_indices(w, n, seed=seed, backend="cuda").tolist() == \
        sample_indices(w, n, seed=seed, backend="numpy").tolist()


@FAST
@given(seed=SEEDS, stream=st.integers(0, 2**64 - 1), n=st.integers(0, 500),
       start=st.integers(0, 2**63))
def test_uniforms_in_unit_interval_and_backends_bit_equal(seed, stream, n, start):
    a = uniforms(seed, stream, n, start=start, backend="numpy")
    assert ((a >= 0) & (a < 1)).all()
    assert a.tobytes() == uniforms(seed, stream, n, start=start, backend="cpu").tobytes()


# ------------------------------------------------------------------ stratified counts
EDGES = np.array([1e-5, 1e-4, 1e-3, 1e-2])
BAND_VALUES = [3e-6, 5e-5, 5e-4, 5e-3, 0.5]          # one value inside each band


@st.composite
def pools_and_mixes(draw):
    n_pool = draw(st.integers(1, 120))
    bands = draw(st.lists(st.integers(0, 4), min_size=n_pool, max_size=n_pool))
    signs = draw(st.lists(st.sampled_from([1.0, -1.0]), min_size=n_pool, max_size=n_pool))
    q = np.array([s * BAND_VALUES[b] for s, b in zip(signs, bands)])
    raw = draw(st.lists(st.sampled_from([0, 0, 1, 2, 3, 5]), min_size=5, max_size=5))
    if sum(raw) == 0:
        raw[draw(st.integers(0, 4))] = 1
    mix = np.array(raw, dtype=np.float64) / sum(raw)
    return q, mix


@FAST
@given(pm=pools_and_mixes(), n=st.integers(0, 400), seed=SEEDS,
       within=st.sampled_from(["uniform", "importance"]))
def test_stratified_counts_are_largest_remainder_targets(pm, n, seed, within):
    q, mix = pm
    idx, info = stratified_sample(q, n, edges=EDGES, mix=mix, seed=seed, within=within,
                                  backend="numpy")
    members = np.bincount(band_of(q, EDGES), minlength=5)
    assert info["target"] == largest_remainder(n, mix).tolist()
    expected = largest_remainder(n, effective_mix(mix, members)) if n else np.zeros(5, int)
    assert info["achieved"] == expected.tolist()
    if (members[mix > 0] > 0).all():                 # nothing to redistribute
        assert info["achieved"] == info["target"]
        assert info["redistributed"] == [0] * 5
    got = band_of(q[idx], EDGES)
    assert np.bincount(got, minlength=5).tolist() == info["achieved"]
    assert (np.diff(got) >= 0).all()                  # band-major order
    idx_cpu, info_cpu = stratified_sample(q, n, edges=EDGES, mix=mix, seed=seed, within=within,
                                          backend="cpu")
    assert idx_cpu.tolist() == idx.tolist() and info_cpu == info


# ------------------------------------------------------------------ refinement leaves
@st.composite
def trees(draw):
    d = draw(st.sampled_from([1, 1, 2]))
    roots = draw(st.lists(st.floats(-0.95, 0.95), min_size=1, max_size=3))
    if d == 1:
        q = Polynomial.from_roots(roots)
    else:  # a circle of radius r around (c, 0)
        r, c = draw(st.floats(0.1, 0.8)), draw(st.floats(-0.5, 0.5))
        q = Polynomial.from_terms(np.array([[2, 0], [1, 0], [0, 2], [0, 0]]),
                                  np.array([1.0, -2 * c, 1.0, c * c - r * r]))
    cfg = ActiveSamplerConfig(
        initial_grid_size=draw(st.integers(1, 5)), grid_bounds=(-1.0, 1.0),
        max_refinement_level=draw(st.integers(0, 6 if d == 1 else 4)),
        max_grid_points=draw(st.integers(200, 2000)),
        refinement_threshold=draw(st.floats(1e-3, 0.5)),
        criterion=draw(st.sampled_from(["abs", "sign", "abs_or_sign", "interval"])))
    return ActiveSampler(cfg, q=q, input_dim=d, backend="numpy"), d


@SLOW
@given(tree=trees(), rounds=st.integers(0, 6), seed=SEEDS)
def test_leaves_partition_the_box(tree, rounds, seed):
    s, d = tree
    s.refine(max_rounds=rounds)
    leaves = s.leaves()
    lo, hi = leaves["lo"], leaves["hi"]
    assert ((lo >= -1.0) & (hi <= 1.0) & (lo < hi)).all()
    assert math.fsum(np.prod(hi - lo, axis=1)) == 2.0 ** d        # dyadic: exact
    # every probe point (random and leaf centres) lies in exactly one half-open leaf
    probe = np.concatenate([uniforms(seed, 16, 400 * d).reshape(-1, d) * 2 - 1,
                            0.5 * (lo + hi)])
    inside = ((probe[:, None, :] >= lo[None]) & (probe[:, None, :] < hi[None])).all(axis=2)
    assert (inside.sum(axis=1) == 1).all()
    # cpu builds the same leaves
    c = ActiveSampler(s.config, q=s.q, input_dim=d, backend="cpu").refine(max_rounds=rounds)
    for key in ("lo", "hi", "level"):
        assert c.leaves()[key].tobytes() == leaves[key].tobytes()


# ------------------------------------------------------------------ state round trips
def through_json(state):
    """state -> the JSON + arrays encoding save_state writes -> state."""
    arrays = {}
    text = json.dumps(zstate.to_jsonable(state, arrays))
    return zstate.from_jsonable(json.loads(text), {k: v.copy() for k, v in arrays.items()})


@FAST
@given(seed=SEEDS, before=st.integers(0, 4), q=q_arrays(min_size=2, max_size=60),
       sizes=st.lists(st.integers(0, 40), min_size=1, max_size=4), hybrid=st.booleans())
def test_importance_sampler_round_trip_reproduces_future_batches(seed, before, q, sizes, hybrid):
    if not np.isfinite(q).any():
        q[0] = 1.0
    x = np.arange(q.size)
    s = ImportanceSampler(ImportanceSamplerConfig(max_weight=1e9), seed=seed, backend="numpy")
    for _ in range(before):
        s.sample_batch(x, q, 3)
    clone = ImportanceSampler.from_state_dict(through_json(s.state_dict()))
    draw = (lambda o, b: o.hybrid_sample(x, q, b)[1]) if hybrid else \
        (lambda o, b: o.sample_batch(x, q, b)[1])
    for b in sizes:
        assert draw(clone, b).tolist() == draw(s, b).tolist()
    assert clone.get_statistics() == s.get_statistics()


@SLOW
@given(seed=SEEDS, epochs=st.lists(st.integers(0, 3), min_size=1, max_size=4),
       pm=pools_and_mixes(), advance=st.sampled_from(["epochs", "adaptive"]))
def test_band_curriculum_round_trip_reproduces_future_batches(seed, epochs, pm, advance):
    q, _ = pm
    c = BandCurriculum(seed=seed, advance=advance, epochs_per_stage=1, min_epochs=1,
                       backend="numpy")
    c.sample(q, 5, 0)
    c.update(0, coverage=0.9, loss=0.1)
    clone = BandCurriculum.from_state_dict(through_json(c.state_dict()))
    epoch = 0
    for step in epochs:
        epoch += step
        a, b = c.sample(q, 7, epoch), clone.sample(q, 7, epoch)
        assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
        assert c.update(epoch, coverage=0.9, loss=0.1) == clone.update(epoch, coverage=0.9,
                                                                        loss=0.1)


@SLOW
@given(tree=trees(), rounds=st.integers(0, 3), seed=SEEDS)
def test_active_sampler_round_trip_reproduces_refinement_and_samples(tree, rounds, seed):
    s, d = tree
    s.refine(max_rounds=rounds)
    clone = ActiveSampler.from_state_dict(through_json(s.state_dict()))
    s.refine(max_rounds=1)
    clone.refine(max_rounds=1)
    for key in ("lo", "hi", "level"):
        assert clone.leaves()[key].tobytes() == s.leaves()[key].tobytes()
    assert clone.sample(20, seed=seed).tobytes() == s.sample(20, seed=seed).tobytes()
    assert clone.n_evaluations == s.n_evaluations


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
@CUDA
@given(seed=SEEDS, q=q_arrays(min_size=2, max_size=40))
def test_stratified_cpu_and_cuda_equal_numpy(backend, seed, q):
    q = np.where(np.isfinite(q), q, 1.0)
    mix = [0.2] * 5
    a = stratified_sample(q, 25, mix=mix, seed=seed, within="importance", backend="numpy")
    b = stratified_sample(q, 25, mix=mix, seed=seed, within="importance", backend=backend)
    assert a[0].tolist() == b[0].tolist() and a[1] == b[1]
