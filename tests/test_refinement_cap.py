"""Capped trees (``max_grid_points`` binds): the cpu engine's kernel selection
(zp_ref.kernels.cpu_cap) against the NumPy oracle, the cuda engine and tests/naive.py's
plain-Python capped refinement; its peak memory against the stated bound; a cap the
machine cannot hold refused up front."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import naive
from zp_ref import Polynomial
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig, engine

ROOT = Path(__file__).resolve().parents[1]


def sphere(d: int, r2: float) -> Polynomial:
    """|x|^2 - r2 in d variables."""
    e = np.vstack([2 * np.eye(d, dtype=np.int64), np.zeros((1, d), np.int64)])
    return Polynomial.from_terms(e, np.r_[np.ones(d), -r2])


def sphere_scalar(r2):
    return lambda p: sum(v * v for v in p) - r2


def tree_of(sampler):
    """(sorted leaves, points sorted by key, their values, history counts)."""
    state = sampler.state_dict()
    leaves = sorted((tuple(int(k) for k in lo), int(level))
                    for lo, level in zip(state["leaf_lo"], state["leaf_level"]))
    history = [(h["n_candidates"], h["n_refined"], h["capped"], h["n_new_points"])
               for h in sampler.refinement_history]
    return leaves, sampler.get_current_grid(), sampler.grid_values(), history


def build(d, cap, backend, criterion="sign", level=4, n0=3, r2=0.5):
    config = ActiveSamplerConfig(initial_grid_size=n0, grid_bounds=(-1.0, 1.0),
                                 max_refinement_level=level, criterion=criterion,
                                 refinement_threshold=0.05, max_grid_points=cap)
    return ActiveSampler(config, q=sphere(d, r2), input_dim=d, backend=backend).refine()


def assert_same_tree(a, b):
    assert a[0] == b[0]                             # leaves, exactly
    assert np.array_equal(a[1], b[1])               # points
    assert np.array_equal(a[2], b[2])               # bit-identical values
    assert a[3] == b[3]                             # same rounds, same counts


# grid 4 on [-1, 1] puts lattice points on the sphere |x|^2 = 0.5 (exact zeros) and the
# symmetry gives many cells equal min |Q|: the order's ties are broken by level, then key
# (the cuda simulator is slow: it builds the trees of every other cap)
@pytest.mark.parametrize("d, n0, level, caps", [
    (2, 4, 6, [60, 97, 150, 233, 400, 611, 900]),
    (3, 4, 4, [250, 400, 777, 1200, 2500, 4001]),
])
@pytest.mark.parametrize("criterion", ["sign", "abs_or_sign"])
def test_capped_trees_are_identical_on_numpy_cpu_and_cuda(d, n0, level, caps, criterion):
    n_capped = 0
    for j, cap in enumerate(caps):
        want = build(d, cap, "numpy", criterion, level, n0)
        n_capped += want.get_statistics()["capped_rounds"] > 0
        assert want.n_evaluations <= cap
        for backend in ("cpu", "cuda") if j % 2 == 0 and cap < 1000 else ("cpu",):
            assert_same_tree(tree_of(build(d, cap, backend, criterion, level, n0)),
                             tree_of(want))
    assert n_capped == len(caps)                    # the cap bound in every case


@pytest.mark.parametrize("engine_name", ["numpy", "cpu", "cuda"])
@pytest.mark.parametrize("d, n0, level, cap", [(2, 3, 5, 180), (2, 4, 6, 333), (3, 2, 3, 300),
                                               (3, 3, 3, 650)])
def test_capped_trees_equal_the_plain_python_capped_refinement(d, n0, level, cap, engine_name):
    sampler = build(d, cap, engine_name, "abs_or_sign", level, n0, r2=0.4)
    tree = naive.NaiveTree(sphere_scalar(0.4), [(-1.0, 1.0)] * d, [n0] * d, level,
                           "abs_or_sign", 0.05)
    leaves = naive.refine_capped(tree, cap)
    keys = sorted(tree.values)
    got = tree_of(sampler)
    assert sampler.get_statistics()["capped_rounds"] >= 1
    assert got[0] == leaves
    assert np.array_equal(got[1], np.array([tree.coords(k) for k in keys]))
    assert np.array_equal(got[2], np.array([tree.values[k] for k in keys]))


_RSS_SCRIPT = """
import json, resource, sys
import numpy as np
from zp_ref import Polynomial
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
d = 6
e = np.vstack([2 * np.eye(d, dtype=np.int64), np.zeros((1, d), np.int64)])
q = Polynomial.from_terms(e, np.r_[np.ones(d), -0.5])
def run(cap):
    config = ActiveSamplerConfig(initial_grid_size=4, grid_bounds=(-1.0, 1.0),
                                 max_refinement_level=3, criterion="sign",
                                 max_grid_points=cap)
    s = ActiveSampler(config, q=q, input_dim=d, backend="cpu").refine()
    return s.get_statistics()["capped_rounds"]
run(30_000)                                         # compile / load the kernels
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out = []
for cap in json.loads(sys.argv[1]):
    capped = run(cap)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.append([cap, peak - base, capped])
print(json.dumps(out))
"""


def test_peak_memory_of_a_capped_6d_tree_stays_under_the_stated_bound():
    """6-D sphere, grid 4, level 3: the cap binds; the growth of the peak resident set
    over a warm process stays under max_grid_points * peak_bytes_per_point(6) +
    PEAK_FIXED_BYTES."""
    caps = [200_000, 600_000]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, json.dumps(caps)], env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    for cap, grown, capped in rows:
        assert capped >= 1
        bound = cap * engine.peak_bytes_per_point(6) + engine.PEAK_FIXED_BYTES
        assert grown <= bound, (cap, grown, bound)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_a_cap_the_machine_cannot_hold_is_refused_up_front(monkeypatch, backend):
    monkeypatch.setattr(engine, "physical_memory_bytes", lambda: 1 << 30)   # 1 GiB
    per = engine.peak_bytes_per_point(6)
    largest = ((1 << 30) - engine.PEAK_FIXED_BYTES) // per
    config = ActiveSamplerConfig(initial_grid_size=2, grid_bounds=(-1.0, 1.0),
                                 max_refinement_level=3, max_grid_points=largest + 1)
    with pytest.raises(ValueError, match=rf"max_grid_points={largest + 1} .* use "
                                         rf"max_grid_points <= {largest}"):
        ActiveSampler(config, q=sphere(6, 0.5), input_dim=6, backend=backend)
    config = ActiveSamplerConfig(initial_grid_size=2, grid_bounds=(-1.0, 1.0),
                                 max_refinement_level=3, max_grid_points=largest)
    ActiveSampler(config, q=sphere(6, 0.5), input_dim=6, backend=backend)   # accepted


@pytest.mark.parametrize("n_take", [1, 7, 40, 10 ** 6])
def test_kernel_urgency_order_is_a_prefix_of_the_oracle_order(n_take):
    """Values drawn from a few levels (many ties), with exact zeros, both signs and NaN:
    the kernel's order (from the urgency keys the cpu engine's cell_flags stores) is the
    oracle's lexsort order, cut after >= n_take cells."""
    from zp_ref.kernels.cpu_cap import urgency_order
    from zp_ref.refinement.cpu import CpuEngine
    from zp_ref.refinement.tree import Lattice, initial_tree
    from zp_ref.rng import uniforms

    config = ActiveSamplerConfig(initial_grid_size=[9, 7], grid_bounds=(-1.0, 1.0),
                                 max_refinement_level=3)
    lat = Lattice(config, 2)
    tree = initial_tree(lat)
    u = uniforms(5, 0, tree.n_points, backend="numpy")
    levels = np.array([-0.5, 0.0, 0.25, 0.5, 1.0, np.nan, -np.inf, 3.0])
    tree.value[:tree.n_points] = levels[(u * levels.size).astype(np.int64)]
    eng = CpuEngine(lat, tree, engine.QSpec(None, 2))
    eng.update_flags(0, tree.n)
    cand = np.arange(tree.n)
    want = engine.urgency_order(lat, tree, cand)
    got = urgency_order(cand, tree.lo, tree.level, eng.urgency, lat.strides, n_take)
    assert got.size >= min(n_take, cand.size)
    assert np.array_equal(got, want[:got.size])


@pytest.mark.parametrize("n_take", [1, 500, 10 ** 6])
def test_kernel_urgency_order_breaks_long_ties_by_level_then_key(n_take):
    """Cells of three levels with keys in every bit range and only two urgency values
    (long runs of ties, as a symmetric Q gives): the radix sort's order equals NumPy's
    lexsort on (urgency, level, key)."""
    from zp_ref.kernels.cpu_cap import urgency_order
    from zp_ref.kernels.cpu_refinement import NO_SIGN_BIT
    from zp_ref.rng import uniforms

    n = 5000
    u = uniforms(11, 0, 3 * n, backend="numpy").reshape(3, n)
    lo = np.stack([(u[0] * 2.0 ** 40).astype(np.int64), (u[1] * 2.0 ** 20).astype(np.int64)],
                  axis=1)
    strides = np.array([2 ** 21, 1], np.int64)
    level = (u[2] * 3).astype(np.int8)
    urgency = np.where(u[1] < 0.5, np.uint64(0), NO_SIGN_BIT | np.float64(0.25).view(
        np.uint64))
    cand = np.arange(n)[::-1].copy()
    want = cand[np.lexsort(((lo[cand] * strides).sum(1), level[cand], urgency[cand]))]
    got = urgency_order(cand, lo, level, urgency, strides, n_take)
    assert got.size >= min(n_take, n)
    assert np.array_equal(got, want[:got.size])
