"""growth="poles" (zp_ref.model_driven_growth): the target's poles found from its labels
(sign changes of y with large |y| at both ends), cut by equal parts at every refresh, and
new points at log-uniform distances around them."""
import numpy as np
import pytest
from scipy import stats

from zp_ref.model_driven import ModelDrivenConfig, ModelDrivenLearner, run_refresh
from zp_ref.model_driven_growth import (BISECT_POINTS, LADDER_RANGE, at_brackets,
                                        pole_brackets)
from zp_ref.rng import uniforms

POLE, ZERO = 0.23713, 0.61


def target(x):
    """A simple pole at POLE and a zero at ZERO (both sign changes of y)."""
    return (x - ZERO) / (x - POLE)


def midpoints(n=2000):
    return (np.arange(n) + 0.5) / n * 2.0 - 1.0


def test_a_pole_is_bracketed_by_its_two_neighbours_and_a_zero_is_not():
    x = midpoints()
    a, b = pole_brackets(x[:, None], target(x), max_brackets=5, separation=0.0)
    below = x[x < POLE].max()
    np.testing.assert_array_equal(np.sort(np.concatenate([a, b])[:, 0]),
                                  [below, x[x > POLE].min()])


def test_brackets_come_tightest_first_and_keep_their_separation():
    x = midpoints()
    poles = np.array([-0.7003, -0.1, 0.40017])
    y = 1.0 / np.prod(x[:, None] - poles[None, :], axis=1)
    a, b = pole_brackets(x[:, None], y, max_brackets=5, separation=0.0)
    assert a.shape == (3, 1)
    centre = 0.5 * (a + b)[:, 0]
    gap = np.abs(centre[:, None] - poles[None, :]).min(axis=0)   # each pole is bracketed
    assert (gap < 1e-3).all()
    score = np.minimum(np.abs(1.0 / np.prod(a - poles, axis=1)),
                       np.abs(1.0 / np.prod(b - poles, axis=1)))
    assert (np.diff(score) <= 0).all()                            # the tightest first
    a1, _ = pole_brackets(x[:, None], y, max_brackets=1, separation=0.0)
    np.testing.assert_array_equal(a1, a[:1])
    far, _ = pole_brackets(x[:, None], y, max_brackets=5, separation=0.55)
    c = far[:, 0]              # the poles are 0.6, 0.5 and 1.1 apart: two can be taken
    assert far.shape[0] == 2 and np.abs(c[0] - c[1]) >= 0.55


def test_a_pole_curve_in_2d_is_bracketed_across_the_curve():
    g = (np.arange(60) + 0.5) / 60 * 2 - 1
    x = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    line = x[:, 0] + 0.5 * x[:, 1] - 0.1013
    a, b = pole_brackets(x, 1.0 / line, max_brackets=8, separation=0.2)
    assert a.shape == (8, 2)
    side = lambda p: np.sign(p[:, 0] + 0.5 * p[:, 1] - 0.1013)
    assert (side(a) * side(b) < 0).all()
    c = 0.5 * (a + b)
    d = np.linalg.norm(c[:, None] - c[None, :], axis=2) + 10 * np.eye(8)
    assert d.min() >= 0.2


def test_bracket_points_cut_the_bracket_then_climb_a_log_uniform_ladder():
    a, b = np.array([[0.1]]), np.array([[0.3]])
    n, h = 2004, 0.01
    u = uniforms(3, 0, 2 * n, backend="numpy").reshape(n, 2)
    p = at_brackets(a, b, n, h, u)[:, 0]
    np.testing.assert_allclose(p[:BISECT_POINTS], 0.1 + 0.2 * np.arange(1, 5) / 5, rtol=1e-15)
    r = p[BISECT_POINTS:] - 0.2
    lo, hi = LADDER_RANGE[0] * h, LADDER_RANGE[1] * h
    assert (np.abs(r) >= lo * (1 - 1e-12)).all() and (np.abs(r) <= hi * (1 + 1e-12)).all()
    s = (np.log(np.abs(r)) - np.log(lo)) / (np.log(hi) - np.log(lo))
    assert stats.kstest(s, "uniform").pvalue > 1e-3
    assert stats.binomtest(int((r > 0).sum()), r.size).pvalue > 1e-3   # both sides


def test_a_resolved_bracket_gets_only_its_ladder_and_shares_are_even():
    a = np.array([[0.0], [0.5]])
    b = np.array([[1e-15], [0.6]])                 # the first is resolved at h = 0.01
    u = uniforms(4, 0, 14, backend="numpy").reshape(7, 2)
    p = at_brackets(a, b, 7, 0.01, u)[:, 0]
    assert (np.abs(p[:4]) >= LADDER_RANGE[0] * 0.01 * 0.99).all()   # 4 ladder points
    np.testing.assert_allclose(p[4:], [0.52, 0.54, 0.56], rtol=1e-15)


def _pole_refreshes(epochs, budget=64, seed=0):
    learner = ModelDrivenLearner(midpoints(), config=ModelDrivenConfig(
        label_budget=budget, growth="poles", loss_warmup=0), seed=seed, batch_size=64,
        has_loss=True, has_labels=True)

    def signals(rows):
        x = learner.x_pool[rows, 0]
        return {"q": x - 0.9, "grad_norm": np.ones_like(x), "loss": np.abs(target(x)),
                "y": target(x)}
    for e in range(epochs):
        run_refresh(learner, e, signals=signals, labels=lambda p: None)
    return learner


def test_each_refresh_cuts_the_pole_bracket_fivefold():
    """Half the budget goes to the bracket (the other half to high-loss points); the
    pool point nearest the pole is at least 5^k times nearer after k refreshes."""
    h = 2.0 / 2000
    for k in (1, 3, 6):
        x = _pole_refreshes(k).x_pool[:, 0]
        assert np.abs(x - POLE).min() <= h / (BISECT_POINTS + 1) ** k * 1.0000001
        below, above = x[x < POLE].max(), x[x > POLE].min()
        assert above - below <= h / (BISECT_POINTS + 1) ** k * 1.0000001


def test_pole_growth_is_a_pure_function_of_seed_and_epoch():
    one, two = _pole_refreshes(3), _pole_refreshes(3)
    np.testing.assert_array_equal(one.x_pool, two.x_pool)
    assert not np.array_equal(one.x_pool, _pole_refreshes(3, seed=1).x_pool)
    assert one.probabilities.min() >= 0.5 / one.pool_size * (1 - 1e-12)


def test_pole_growth_needs_the_labels_signal():
    learner = ModelDrivenLearner(midpoints(), config=ModelDrivenConfig(
        label_budget=8, growth="poles"), batch_size=8, has_labels=True)
    assert learner.needs_y
    with pytest.raises(ValueError, match="needs 'y'"):
        run_refresh(learner, 0, signals=lambda rows: {"q": learner.x_pool[rows, 0],
                                                      "grad_norm": np.ones(2000)})
    bad = lambda rows: {"q": np.ones(2000), "grad_norm": np.ones(2000),
                        "y": np.full(2000, np.nan)}
    with pytest.raises(ValueError, match="y_pool"):
        run_refresh(learner, 0, signals=bad)
    assert learner.refresh_count == 0 and learner.pool_size == 2000


def test_without_a_sign_change_pole_growth_draws_what_model_growth_draws():
    """y without a sign change (no pole of odd order): the new points are those of
    growth='model' without refined cells (all around the highest-loss points)."""
    got = {}
    for growth in ("poles", "model"):
        learner = ModelDrivenLearner(midpoints(), config=ModelDrivenConfig(
            label_budget=32, growth=growth, loss_warmup=0), batch_size=8, has_loss=True,
            has_labels=True)

        def signals(rows):
            x = learner.x_pool[rows, 0]
            out = {"q": x - 0.9, "grad_norm": np.ones_like(x),
                   "loss": 1.0 / (np.abs(x + 0.5) + 1e-3)}
            return {**out, "y": 1.0 + x ** 2} if learner.needs_y else out
        run_refresh(learner, 0, signals=signals, labels=lambda p: None)
        got[growth] = learner.x_pool[2000:]
    assert got["poles"].shape == (32, 1)
    np.testing.assert_array_equal(got["poles"], got["model"])


@pytest.mark.parametrize("d, n, poles, max_brackets, separation", [
    (1, 300, (-0.41, 0.13, 0.77), 5, 0.0), (1, 300, (-0.41, 0.13, 0.77), 2, 0.6),
    (2, 400, (0.1,), 8, 0.05), (2, 400, (-0.3, 0.45), 30, 0.0), (3, 300, (0.2,), 6, 0.1)])
def test_pole_brackets_equal_the_brute_force_reference(d, n, poles, max_brackets,
                                                       separation, monkeypatch):
    """The fast path (d > 1: neighbours of the rows of largest |y| first, more when too
    few brackets come out) takes the same brackets as tests/naive.py's brute force."""
    import zp_ref.model_driven_growth as growth
    import naive
    monkeypatch.setattr(growth, "FIRST_ROWS", 8)         # several passes on a small pool
    x = uniforms(11 + d, 0, n * d, backend="numpy").reshape(n, d) * 2.0 - 1.0
    s = x.sum(axis=1) / np.sqrt(d)
    y = 1.0 / np.prod(s[:, None] - np.array(poles)[None, :], axis=1)
    a, b = growth.pole_brackets(x, y, max_brackets, separation)
    ra, rb = naive.pole_brackets(x.tolist(), y.tolist(), max_brackets, separation)
    assert a.shape[0] >= 1
    np.testing.assert_array_equal(a, np.array(ra).reshape(-1, d))
    np.testing.assert_array_equal(b, np.array(rb).reshape(-1, d))
