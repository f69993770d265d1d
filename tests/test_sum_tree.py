"""The sum tree (zp_ref.sum_tree): every node is the sum of its children, an update
gives the tree a rebuild gives, draws never reach a zero weight and follow the weights,
and the Numba kernels give the NumPy spec's trees and indices."""
import numpy as np
import pytest
from scipy import stats

from zp_ref.rng import uniforms
from zp_ref.sum_tree import tree_build, tree_draws, tree_leaves, tree_update

BACKENDS = ("numpy", "cpu")


def weights(n, seed=0):
    w = uniforms(seed, 16, n) ** 3
    w[::7] = 0.0                                   # zero weights among them
    return w


@pytest.mark.parametrize("n", [1, 3, 8, 1000])
def test_every_node_is_the_sum_of_its_children(n):
    w = weights(n)
    tree = tree_build(w)
    size = tree.size // 2
    assert size >= n and size & (size - 1) == 0 and (size == 1 or size < 2 * n)
    np.testing.assert_array_equal(tree_leaves(tree, n), w)
    assert (tree[size + n:] == 0).all()
    k = np.arange(1, size)
    np.testing.assert_array_equal(tree[k], tree[2 * k] + tree[2 * k + 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_update_gives_the_rebuilt_tree_exactly(backend):
    n = 1000
    w = weights(n)
    tree = tree_build(w)
    for seed in range(5):
        rows = np.unique((uniforms(seed, 17, 50) * n).astype(np.int64))
        values = uniforms(seed, 18, rows.size)
        values[:3] = 0.0
        tree_update(tree, rows, values, backend=backend)
        w[rows] = values
        np.testing.assert_array_equal(tree, tree_build(w))


@pytest.mark.parametrize("n", [1, 5, 1000])
def test_draws_are_the_same_on_both_backends_and_never_hit_a_zero_weight(n):
    w = weights(n) if n > 1 else np.ones(1)
    tree = tree_build(w)
    u = np.concatenate((uniforms(3, 0, 5000), [0.0, 1.0 - 2.0 ** -53]))
    a, b = (tree_draws(tree, u, backend=bk) for bk in BACKENDS)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64 and (w[a] > 0).all()


def test_a_draw_falls_in_its_interval_of_the_cumulative_weights():
    """Leaf i is drawn for t = u * total in [C_{i-1}, C_i) (C the cumulative sums): every
    t farther than 1e-9 * total from the ends of its interval draws searchsorted's index."""
    w = weights(300)
    tree = tree_build(w)
    u = uniforms(4, 0, 4000)
    idx = tree_draws(tree, u)
    c = np.cumsum(w)
    t = u * tree[1]
    want = np.searchsorted(c, t, side="right")
    margin = 1e-9 * c[-1]
    clear = (np.abs(t - c[want]) > margin) & (np.abs(t - (c[want] - w[want])) > margin)
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(idx[clear], want[clear])


def test_draws_follow_the_weights():
    """Chi-square goodness of fit of 20,000 draws over 40 weights (fixed seed)."""
    w = weights(40)
    counts = np.bincount(tree_draws(tree_build(w), uniforms(5, 0, 20000)), minlength=40)
    pos = w > 0
    assert (counts[~pos] == 0).all()
    assert stats.chisquare(counts[pos], w[pos] / w.sum() * 20000).pvalue > 1e-3


# ------------------------------------------------------------------ the mixture's passes
def mixture(q_constant=False):
    from zp_ref.model_driven_config import ModelDrivenConfig
    from zp_ref.model_driven_mixture import SignalMixture
    n = 5000
    x = uniforms(2, 16, n) * 2 - 1
    q = np.ones(n) if q_constant else x - 0.3
    signals = {"q": q, "grad_norm": np.zeros(n) if q_constant else np.ones(n),
               "loss": 1.0 / (np.abs(x + 0.5) + 1e-3)}
    m = SignalMixture(ModelDrivenConfig(), 2.0 / n, {"q": 1.0, "loss": 2.0})
    m.build(signals, loss_weights=None)
    return m


@pytest.mark.parametrize("q_constant", [False, True], ids=["q", "q_without_zero"])
def test_the_mixtures_pi_is_the_numpy_sum_and_its_top_rows_are_largest_rows(q_constant):
    """pi (Numba passes) equals the NumPy expression 0 + a_loss l_loss / W_loss + (a_q
    l_q / W_q or a_q / N) exactly; largest(k) is largest_rows(pi, k) (the same rows)."""
    from zp_ref.model_driven_mixture import largest_rows
    m = mixture(q_constant)
    lo, lq = (tree_leaves(m.trees[k], m.n) for k in ("loss", "q"))
    want = np.zeros(m.n) + (2.0 / 3.0) / m.trees["loss"][1] * lo
    want = want + (1.0 / 3.0 / m.n if q_constant else (1.0 / 3.0) / m.trees["q"][1] * lq)
    assert (m.trees["q"][1] == 0) == q_constant
    np.testing.assert_array_equal(m.pi(), want)
    idx = np.arange(0, m.n, 3)
    np.testing.assert_array_equal(m.pi_at(idx), want[idx])
    for k in (1, 10, 100, 2500):
        assert set(m.largest(k).tolist()) == set(largest_rows(want, k).tolist())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_max_tree_holds_the_largest_leaf_below_every_node_after_updates(backend):
    n = 1000
    w = weights(n)
    tree = tree_build(w, "max")
    size = tree.size // 2
    k = np.arange(1, size)
    np.testing.assert_array_equal(tree[k], np.maximum(tree[2 * k], tree[2 * k + 1]))
    for seed in range(5):
        rows = np.unique((uniforms(seed, 17, 50) * n).astype(np.int64))
        values = uniforms(seed, 18, rows.size) * 2.0      # some above the old maximum
        values[:3] = 0.0
        tree_update(tree, rows, values, op="max", backend=backend)
        w[rows] = values
        np.testing.assert_array_equal(tree, tree_build(w, "max"))
        assert tree[1] == w.max()


def test_an_unknown_tree_operation_is_refused():
    with pytest.raises(ValueError, match="op must be 'sum' or 'max', got 'min'"):
        tree_build(np.ones(4), "min")


def test_sorted_union_is_numpys_union1d():
    from zp_ref.model_driven_mixture import sorted_union
    a = (uniforms(1, 17, 2048) * 10**6).astype(np.int64)          # unsorted, repeats
    b = (np.arange(999_000, 1_001_048) % 10**6).astype(np.int64)  # a wrapping sweep
    for x, y in ((a, b), (a, a[:0]), (a[:0], a[:0]), (b, b)):
        got = sorted_union(x, y)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, np.union1d(x, y))


@pytest.mark.parametrize("spread", [0.0, 1e-3, 0.5, 3.0])
def test_the_caps_check_read_off_the_trees_gives_loss_cap_level(spread):
    """SignalMixture._cap: with the max tree's top and the tree's total, the level is
    loss_cap_level's, on loss signals from flat (no row capped) to heavy-tailed (capped),
    and at the boundary where max t * N equals loss_cap * sum t to the last bits."""
    from zp_ref.model_driven_config import ModelDrivenConfig
    from zp_ref.model_driven_gate import loss_cap_level
    from zp_ref.model_driven_mixture import SignalMixture
    n = 4096
    cfg = ModelDrivenConfig()
    t = np.exp(spread * 8.0 * (uniforms(9, 16, n) - 0.5))
    cases = [t]
    bound = t.copy()                         # one row at exactly loss_cap / N of the total
    bound[0] = 0.0
    bound[0] = cfg.loss_cap * bound.sum() / (n - cfg.loss_cap)
    cases += [bound, bound * (1 + 1e-13), bound * (1 - 1e-13)]
    for loss in cases:
        m = SignalMixture(cfg, 1.0 / n, {"loss": 1.0})
        m.build({"loss": loss}, loss_weights=None)
        assert m._cap() == loss_cap_level(loss, cfg.loss_cap)
