"""The three refinement engines (numpy, cpu, cuda under the simulator) against the
plain-Python trees of tests/naive.py, and stratified draws against the plain-Python
draws: identical leaf sets, points, values and indices."""
import numpy as np
import pytest

import naive
from zp_ref import Polynomial, stratified_sample
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig

ENGINES = ["numpy", "cpu", "cuda"]


def q1(x):                      # three simple roots in [-1, 1]
    v = x[:, 0]
    return (v - 0.3) * (v + 0.55) * (v - 0.8)


def q1_scalar(p):
    return (p[0] - 0.3) * (p[0] + 0.55) * (p[0] - 0.8)


def q2(x):                      # a circle of radius sqrt(0.4)
    return x[:, 0] * x[:, 0] + x[:, 1] * x[:, 1] - 0.4


def q2_scalar(p):
    return p[0] * p[0] + p[1] * p[1] - 0.4


def line(x):
    return x[:, 0] - 0.5 * x[:, 1] - 0.1


def line_scalar(p):
    return p[0] - 0.5 * p[1] - 0.1


CASES = {   # name: (vectorised q, scalar q, bounds, n0, max level)
    "1d": (q1, q1_scalar, [(-1.0, 1.0)], [5], 7),
    "2d-circle": (q2, q2_scalar, [(-1.0, 1.0), (-1.0, 1.0)], [4, 5], 3),
    "2d-line": (line, line_scalar, [(-1.0, 1.0), (-0.5, 1.5)], [3, 2], 3),
}


def engine_tree(sampler):
    """(leaves as sorted (lower corner, level) tuples, points sorted, their values)."""
    state = sampler.state_dict()
    leaves = sorted((tuple(int(k) for k in lo), int(level))
                    for lo, level in zip(state["leaf_lo"], state["leaf_level"]))
    return leaves, sampler.get_current_grid(), sampler.grid_values()


def naive_tree(tree, leaves):
    keys = sorted(tree.values)
    return leaves, np.array([tree.coords(k) for k in keys]), np.array([tree.values[k]
                                                                       for k in keys])


def assert_same(got, want):
    assert got[0] == want[0]                                    # leaves, exactly
    assert np.array_equal(got[1], want[1])                      # every point
    assert np.array_equal(got[2], want[2])                      # bit-identical values


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("criterion", ["abs", "sign", "abs_or_sign"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_uncapped_trees_equal_the_recursive_refinement(case, criterion, engine):
    q, q_scalar, bounds, n0, level = CASES[case]
    config = ActiveSamplerConfig(initial_grid_size=n0, grid_bounds=bounds,
                                 max_refinement_level=level, refinement_threshold=0.2,
                                 criterion=criterion, max_grid_points=10 ** 6)
    sampler = ActiveSampler(config, q=q, input_dim=len(bounds), backend=engine).refine()
    tree = naive.NaiveTree(q_scalar, bounds, n0, level, criterion, 0.2)
    want = naive_tree(tree, naive.refine_recursive(tree))
    assert len(want[0]) > 2 * np.prod(n0)                        # the tree did grow
    assert_same(engine_tree(sampler), want)
    assert sampler.n_evaluations == len(tree.values)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case, cap", [("1d", 60), ("2d-circle", 300), ("2d-line", 120)])
def test_capped_trees_follow_the_urgency_order(case, cap, engine):
    q, q_scalar, bounds, n0, level = CASES[case]
    config = ActiveSamplerConfig(initial_grid_size=n0, grid_bounds=bounds,
                                 max_refinement_level=level, refinement_threshold=0.05,
                                 criterion="abs_or_sign", max_grid_points=cap)
    sampler = ActiveSampler(config, q=q, input_dim=len(bounds), backend=engine).refine()
    tree = naive.NaiveTree(q_scalar, bounds, n0, level, "abs_or_sign", 0.05)
    want = naive_tree(tree, naive.refine_capped(tree, cap))
    assert sampler.get_statistics()["capped_rounds"] >= 1          # the cap did bind
    assert len(tree.values) <= cap
    assert_same(engine_tree(sampler), want)


@pytest.mark.parametrize("engine", ENGINES)
def test_polynomial_q_evaluated_in_kernels_equals_plain_horner(engine):
    coeffs = [-0.066, 0.47, 0.15, -1.0]                # a cubic with 3 roots in [-1, 1]
    config = ActiveSamplerConfig(initial_grid_size=4, grid_bounds=(-1.0, 1.0),
                                 max_refinement_level=9, criterion="sign")
    sampler = ActiveSampler(config, q=Polynomial(coeffs), backend=engine).refine()
    tree = naive.NaiveTree(lambda p: naive.horner(coeffs, p[0]), [(-1.0, 1.0)], [4], 9,
                           "sign", 0.1)
    assert_same(engine_tree(sampler), naive_tree(tree, naive.refine_recursive(tree)))


@pytest.mark.parametrize("engine", ENGINES)
def test_ask_tell_rounds_equal_the_recursive_refinement(engine):
    q, q_scalar, bounds, n0, level = CASES["2d-circle"]
    config = ActiveSamplerConfig(initial_grid_size=n0, grid_bounds=bounds,
                                 max_refinement_level=level, criterion="sign")
    sampler = ActiveSampler(config, input_dim=2, backend=engine)
    sampler.refine_grid(q(sampler.get_current_grid()))     # initial values, first round
    while True:
        x = sampler.ask()
        sampler.tell(np.array([q_scalar(tuple(p)) for p in x]))
        if x.shape[0] == 0:
            break
    tree = naive.NaiveTree(q_scalar, bounds, n0, level, "sign", 0.1)
    assert_same(engine_tree(sampler), naive_tree(tree, naive.refine_recursive(tree)))


EDGES = [1e-3, 1e-2, 1e-1]


@pytest.mark.parametrize("backend", ["numpy", "cpu", "cuda"])
@pytest.mark.parametrize("within", ["uniform", "importance"])
@pytest.mark.parametrize("mix", [[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.25, 0.25],
                                 [0.7, 0.1, 0.1, 0.1]])
def test_stratified_draws_equal_the_plain_draws(mix, within, backend):
    rng = np.random.default_rng(7)                 # data only; draws use zp_ref.rng
    q = np.concatenate([rng.uniform(-2e-2, 2e-2, 40), rng.uniform(-2, 2, 60), [np.inf]])
    q[q == 0] = 1.0
    q = q[np.abs(q) > 1e-3] if mix[0] == 0.7 else q      # band 0 empty: redistribution
    for n in (0, 1, 17, 250):
        got = stratified_sample(q, n, edges=EDGES, mix=mix, seed=11, within=within,
                                backend=backend)[0]
        want = naive.stratified_sample(q.tolist(), n, EDGES, mix, 11, within)
        assert got.tolist() == want


def test_naive_stratified_redistributes_an_empty_band():
    """The reference itself: band 0 has no member, so its share goes to the others."""
    q = [0.5, -0.05, 0.005, 3.0]
    assert naive.band_of(q, EDGES) == [3, 2, 1, 3]
    assert naive.redistributed_mix([0.4, 0.2, 0.2, 0.2], [0, 1, 1, 2]) == \
        [0.0, 1 / 3, 1 / 3, 1 / 3]
    assert naive.largest_remainder(10, [0.0, 1 / 3, 1 / 3, 1 / 3]) == [0, 4, 3, 3]
    draws = naive.stratified_sample(q, 9, EDGES, [0.4, 0.2, 0.2, 0.2], 3, "uniform")
    assert sorted(set(naive.band_of([q[i] for i in draws], EDGES))) == [1, 2, 3]
