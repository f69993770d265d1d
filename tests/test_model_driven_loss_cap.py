"""The loss signal's cap (ModelDrivenConfig.loss_cap, zp_ref.model_driven_gate): no pool
row gets more than ``loss_cap / N`` of the loss mass, whatever the tail of the loss; the
level is the water-filling solution, checked against a bisection written here; the
full and the partial refresh (sum trees) give the same capped distribution."""
import numpy as np
import pytest

from zp_ref.model_driven import ModelDrivenConfig, ModelDrivenLearner, run_refresh
from zp_ref.model_driven_gate import loss_cap_level, loss_signal_weights

pytestmark = pytest.mark.filterwarnings("ignore:model-driven refresh changed nothing")


def bisected_level(t, cap, iterations=200):
    """The level c > 0 with c = cap / N * sum(min(t, c)), by bisection on
    g(c) = c - cap / N * sum(min(t, c)) (g < 0 below the level, > 0 above it)."""
    n, lo, hi = t.size, 0.0, float(t[np.isfinite(t)].max(initial=1.0)) * 2 + 1.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mid - cap / n * np.minimum(t, mid).sum() < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def heavy_tailed(n, tail, seed):
    return np.random.default_rng(seed).pareto(tail, n)


@pytest.mark.parametrize("n,tail,cap", [(1000, 0.3, 10.0), (5000, 0.5, 100.0),
                                        (32768, 1.0, 100.0), (777, 0.2, 2.0)])
def test_the_level_solves_the_water_filling_equation(n, tail, cap):
    """On heavy-tailed losses (Pareto tails 0.2-1, seeds fixed) the level equals the
    bisection's (rtol 1e-10), and the largest share is exactly cap / N (rtol 1e-12)."""
    t = heavy_tailed(n, tail, seed=n)
    level = loss_cap_level(t, cap)
    assert np.isfinite(level)
    assert level == pytest.approx(bisected_level(t, cap), rel=1e-10)
    w = loss_signal_weights(t, 1.0, cap)
    assert w.max() == pytest.approx(cap / n, rel=1e-12)
    assert w.sum() == pytest.approx(1.0, rel=1e-12)


def test_the_naive_clip_would_let_one_row_take_most_of_the_mass():
    """The property the level exists for: min(t, cap * mean(t)) gives the largest row of
    this loss 78 % of the mass (2.5e4 times its uniform share); the level gives it
    exactly cap / N."""
    t = np.ones(32768)
    t[0] = 1e8
    naive = np.minimum(t, 100.0 * t.mean())
    assert naive[0] / naive.sum() > 0.75
    assert loss_signal_weights(t, 1.0, 100.0)[0] == pytest.approx(100.0 / 32768, rel=1e-12)


def test_an_uncapped_loss_is_its_own_distribution_bit_for_bit():
    """No row above cap / N of the mass: the weights are t / sum(t) exactly (the level
    is inf), so the study's runs, whose loss never reached the cap, are unchanged."""
    t = np.random.default_rng(3).random(4096) + 0.5
    assert loss_cap_level(t, 100.0) == np.inf
    np.testing.assert_array_equal(loss_signal_weights(t, 1.0, 100.0), t / t.sum())


def test_infinite_rows_sit_at_the_level_and_order_is_kept():
    """Three infinite rows among Pareto losses: each gets exactly cap / N, the finite
    rows keep their order (the weights are a non-decreasing function of t)."""
    t = heavy_tailed(3000, 0.7, seed=5)
    t[[4, 40, 400]] = np.inf
    w = loss_signal_weights(t, 1.0, 100.0)
    np.testing.assert_allclose(w[[4, 40, 400]], 100.0 / 3000, rtol=1e-12)
    finite = np.isfinite(t)
    order = np.argsort(t[finite], kind="stable")
    assert np.all(np.diff(w[finite][order]) >= 0)


def test_too_few_positive_rows_share_the_mass_equally():
    """Fewer than N / cap rows with a positive loss: no level meets the bound, and those
    rows share the loss mass equally (t = [5, 1, 0, ...], N = 1000, cap 100)."""
    t = np.zeros(1000)
    t[[2, 9]] = [5.0, 1.0]
    assert loss_cap_level(t, 100.0) == 0.0
    w = loss_signal_weights(t, 1.0, 100.0)
    np.testing.assert_array_equal(np.flatnonzero(w), [2, 9])
    np.testing.assert_allclose(w[[2, 9]], 0.5, rtol=1e-15)


def learner_with(refresh_rows, loss):
    x = np.linspace(-1.0, 1.0, loss.size)
    cfg = ModelDrivenConfig(refresh_rows=refresh_rows, loss_warmup=0)
    lr = ModelDrivenLearner(x, config=cfg, batch_size=64, has_loss=True)
    run_refresh(lr, 0, signals=lambda rows: {"q": x[rows] - 0.3,
                                             "grad_norm": np.ones_like(x[rows]),
                                             "loss": loss[rows]})
    return lr


def test_full_and_partial_refresh_cap_the_loss_alike():
    """A squared error peaked at a pole the model lacks (1 / (x + 0.5)^4 on 4001 points,
    where the naive clip binds): the sum-tree mixture (refresh_rows > 0) gives the same
    pi as the full refresh (rtol 1e-12), and the loss share of its largest row is
    cap / N."""
    x = np.linspace(-1.0, 1.0, 4001)
    loss = 1.0 / ((x + 0.5) ** 4 + 1e-12)
    full, part = learner_with(0, loss), learner_with(256, loss)
    np.testing.assert_allclose(part.weights, full.weights, rtol=1e-12)
    assert loss_signal_weights(loss, 1.0, 100.0).max() == pytest.approx(100.0 / 4001,
                                                                         rel=1e-12)
