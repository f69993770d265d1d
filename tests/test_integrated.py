"""IntegratedSampler / create_integrated_sampler: each strategy equals its documented
definition for a seed, ACTIVE draws inside the refinement tree's leaves, state round
trips continue the same draws, anchor keyword names are honoured."""
import json

import numpy as np
import pytest

from zp_ref import problems
from zp_ref.diagnostics import DiagnosticMonitor, QMinWarning
from zp_ref.integrated import (IntegratedSampler, SamplingStrategy,
                               create_integrated_sampler)
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
from zp_ref.rng import derive_seed
from zp_ref.sampling import ImportanceSampler, ImportanceSamplerConfig, uniform_indices
from zp_ref.state import load_state, read_document, save_state

PROB = problems.get("simple_roots_1d")
X = np.linspace(-3.0, 3.0, 301)
Q = PROB.q(X)


def make(strategy, tmp_path, **kw):
    kw.setdefault("seed", 11)
    kw.setdefault("backend", "numpy")
    kw.setdefault("q", PROB.q)
    kw.setdefault("grid_bounds", PROB.bounds)
    kw.setdefault("grid_size", 24)
    kw.setdefault("auto_export", False)
    return create_integrated_sampler(strategy, export_path=str(tmp_path / "diag"), **kw)


def test_strategy_enum():
    assert [s.value for s in SamplingStrategy] == ["uniform", "importance", "active", "hybrid"]
    with pytest.raises(ValueError, match="strategy must be .* got 'greedy'"):
        create_integrated_sampler("greedy")


def test_uniform_is_uniform_indices_of_the_call_seed(tmp_path):
    s = make("uniform", tmp_path)
    for call in range(3):
        bx, info = s.sample_batch(X, Q, 40, epoch=call)
        expected = uniform_indices(X.size, 40, seed=derive_seed(derive_seed(11, 1), call),
                                   backend="numpy")
        np.testing.assert_array_equal(info["indices"], expected)
        np.testing.assert_array_equal(bx, X[expected])
        assert info["call"] == call and info["strategy"] == "uniform"


@pytest.mark.parametrize("strategy,method", [("importance", "sample_batch"),
                                             ("hybrid", "hybrid_sample")])
def test_importance_and_hybrid_follow_the_importance_sampler(tmp_path, strategy, method):
    s = make(strategy, tmp_path, temperature=2.0, importance_ratio=0.5)
    twin = ImportanceSampler(ImportanceSamplerConfig(temperature=2.0, importance_batch_ratio=0.5),
                             seed=derive_seed(11, 0), backend="numpy")
    for epoch in range(3):
        bx, info = s.sample_batch(X, Q, 32, epoch=epoch)
        tx, tidx = getattr(twin, method)(X, Q, 32)
        np.testing.assert_array_equal(info["indices"], tidx)
        np.testing.assert_array_equal(bx, tx)
    if strategy == "hybrid":
        np.testing.assert_array_equal(info["likelihood_ratios"], twin.last_likelihood_ratios)
        assert info["active_stats"]["refinement_events"] == 1          # epoch 0 only
    assert info["importance_stats"] == twin.get_statistics()


def test_active_draws_inside_leaves_not_grid_points(tmp_path):
    s = make("active", tmp_path, adapt_frequency=2, weighting="leaf")
    twin = ActiveSampler(ActiveSamplerConfig(initial_grid_size=24, grid_bounds=PROB.bounds,
                                             max_refinement_level=5, adapt_frequency=2),
                         q=PROB.q, backend="numpy")
    schedule = [0, 0, 1, 2, 2, 3, 4]
    for call, epoch in enumerate(schedule):
        if epoch % 2 == 0 and (call == 0 or schedule[call - 1] != epoch):
            twin.refine(max_rounds=1)
        bx, info = s.sample_batch(None, None, 64, epoch=epoch)
        tx, tleaf = twin.sample(64, seed=derive_seed(derive_seed(11, 2), call),
                                weighting="leaf", return_leaf=True)
        np.testing.assert_array_equal(bx, tx)
        np.testing.assert_array_equal(info["leaf_indices"], tleaf)
        assert info["indices"] is None and bx.shape == (64, 1)
    assert len(s.active_sampler.refinement_history) == 3                # epochs 0, 2, 4
    leaves = s.active_sampler.leaves()
    lo, hi = leaves["lo"][info["leaf_indices"]], leaves["hi"][info["leaf_indices"]]
    assert ((lo <= bx) & (bx < hi)).all()
    grid = s.active_sampler.get_current_grid()[:, 0]
    assert not np.isin(bx[:, 0], grid).any()
    # the tree is refined at the roots: the finest leaves bracket them
    assert leaves["level"].max() == 3


def test_active_needs_q(tmp_path):
    with pytest.raises(ValueError, match="needs q="):
        make("active", tmp_path, q=None)


def test_seeds_reproduce_and_differ(tmp_path):
    draws = []
    for seed in (5, 5, 6):
        s = make("hybrid", tmp_path, seed=seed)
        draws.append(np.concatenate([s.sample_batch(X, Q, 16, epoch=e)[1]["indices"]
                                     for e in range(3)]))
    np.testing.assert_array_equal(draws[0], draws[1])
    assert (draws[0] != draws[2]).any()


@pytest.mark.parametrize("strategy", ["uniform", "importance", "active", "hybrid"])
def test_state_round_trip_continues_the_same_draws(tmp_path, strategy):
    s = make(strategy, tmp_path, adapt_frequency=2)
    pool = (None, None) if strategy == "active" else (X, Q)
    for epoch in range(3):
        s.sample_batch(*pool, 16, epoch=epoch)
    s.update_diagnostics(epoch=2, metrics={"loss_train": 0.5}, q_values=Q[:10])
    path = save_state(tmp_path / "integrated.json", s)
    loaded = load_state(path, cls=IntegratedSampler)
    for epoch in (3, 4, 4):
        a, ia = s.sample_batch(*pool, 16, epoch=epoch)
        b, ib = loaded.sample_batch(*pool, 16, epoch=epoch)
        np.testing.assert_array_equal(a, b)
        for key in ("indices", "leaf_indices", "likelihood_ratios"):
            if ia.get(key) is not None:
                np.testing.assert_array_equal(ia[key], ib[key])
    assert loaded.get_diagnostics_summary() == s.get_diagnostics_summary()
    assert json.dumps(list(loaded.sampling_history)) == json.dumps(list(s.sampling_history))


def test_state_with_a_callable_q(tmp_path):
    s = make("active", tmp_path, q=lambda x: PROB.q(x[:, 0]), adapt_frequency=1)
    s.sample_batch(None, None, 8, epoch=0)
    state = s.state_dict()
    restored = IntegratedSampler.from_state_dict(state, q=lambda x: PROB.q(x[:, 0]))
    a, _ = s.sample_batch(None, None, 8, epoch=1)                      # refines once more
    b, _ = restored.sample_batch(None, None, 8, epoch=1)
    np.testing.assert_array_equal(a, b)
    s.load_state_dict(state)                                            # keeps its callable
    c, _ = s.sample_batch(None, None, 8, epoch=1)
    np.testing.assert_array_equal(a, c)


def test_anchor_keywords_and_defaults(tmp_path):
    s = create_integrated_sampler("hybrid", weight_power=1.5, export_path=str(tmp_path / "e"),
                                  temperature=0.5, importance_ratio=0.3, grid_size=50,
                                  refinement_threshold=0.2, max_refinement=7,
                                  export_frequency=3, track_gradients=False, track_tags=False,
                                  q=PROB.q, grid_bounds=PROB.bounds)
    ic = s.importance_sampler.config
    assert (ic.weight_power, ic.temperature, ic.importance_batch_ratio) == (1.5, 0.5, 0.3)
    ac = s.active_sampler.config
    assert (ac.initial_grid_size, ac.refinement_threshold, ac.max_refinement_level) == (50, 0.2, 7)
    dc = s.diagnostic_monitor.config
    assert (dc.export_path, dc.export_frequency, dc.track_gradients,
            dc.track_tag_distribution) == (str(tmp_path / "e"), 3, False, False)
    d = create_integrated_sampler()
    assert d.strategy is SamplingStrategy.HYBRID and d.active_sampler is None
    assert (d.importance_sampler.config.weight_power, d.importance_sampler.config.temperature,
            d.importance_sampler.config.importance_batch_ratio) == (2.0, 1.0, 0.7)
    assert (d.diagnostic_monitor.config.export_path, d.diagnostic_monitor.config.export_frequency) \
        == ("diagnostics", 10)
    with pytest.raises(TypeError, match=r"unknown keyword\(s\) \['grid_sise'\]"):
        create_integrated_sampler("uniform", grid_sise=10)


def test_bad_batches_change_nothing(tmp_path):
    s = make("importance", tmp_path)
    with pytest.raises(TypeError, match="batch_size"):
        s.sample_batch(X, Q, 2.5)
    with pytest.raises(ValueError, match="batch_size"):
        s.sample_batch(X, Q, 0)
    with pytest.raises(ValueError, match="x_pool must be"):
        s.sample_batch(X[:-1], Q, 4)
    with pytest.raises(ValueError, match="epoch"):
        s.sample_batch(X, Q, 4, epoch=-1)
    assert s.n_calls == 0 and s.importance_sampler.calls == 0 and not s.sampling_history


def test_diagnostics_and_export_all(tmp_path):
    s = make("hybrid", tmp_path)
    assert not (tmp_path / "diag").exists()
    for epoch in range(3):
        bx, info = s.sample_batch(X, Q, 16, epoch=epoch)
        with pytest.warns(QMinWarning):         # the pool holds the roots: |Q| ~ 1e-14
            s.update_batch_diagnostics(q_values=Q[info["indices"]], indices=info["indices"],
                                       weights=info["likelihood_ratios"], epoch=epoch)
            s.update_diagnostics(epoch=epoch, metrics={"loss_train": 1.0},
                                 q_values=Q[info["indices"]])
    summary = s.get_diagnostics_summary()
    assert summary["n_batches"] == 3 and summary["n_updates"] == 3
    diag, hist = s.export_all(3)
    assert DiagnosticMonitor.load(diag).get_summary() == summary
    body = read_document(hist, "zp_ref.sampling_history/1")
    assert body["epoch"] == 3 and [e["call"] for e in body["entries"]] == [0, 1, 2]
    assert body["entries"][0]["strategy"] == "hybrid" and body["entries"][0]["batch_size"] == 16


# ----------------------------------------------------------------- callable q in saved state
@pytest.mark.parametrize("strategy", ["active", "hybrid"])
def test_callable_q_must_be_passed_again_at_load(tmp_path, strategy):
    """A tree built from a callable q: load_state without q is refused up front (not at a
    later refinement); load_state(path, q=...) continues with exactly the same draws."""
    f = lambda x: PROB.q(x[:, 0])                                     # noqa: E731
    s = make(strategy, tmp_path, q=f, adapt_frequency=1)
    pool = (None, None) if strategy == "active" else (X, Q)
    s.sample_batch(*pool, 8, epoch=0)
    path = save_state(tmp_path / "integrated.json", s)
    with pytest.raises(ValueError, match=r"callable q.*load_state\(path, q=f\)"):
        load_state(path)
    with pytest.raises(ValueError, match="callable q"):
        IntegratedSampler.from_state_dict(s.state_dict())
    loaded = load_state(path, cls=IntegratedSampler, q=f)
    for epoch in (1, 2):
        a, ia = s.sample_batch(*pool, 8, epoch=epoch)
        b, ib = loaded.sample_batch(*pool, 8, epoch=epoch)
        np.testing.assert_array_equal(a, b)
    assert loaded.active_sampler.n_evaluations == s.active_sampler.n_evaluations
    with pytest.raises(TypeError, match="q must be a Polynomial, Rational or callable"):
        IntegratedSampler.from_state_dict(s.state_dict(), q=3)


def test_hybrid_batch_whose_refinement_fails_changes_nothing(tmp_path):
    """HYBRID refines before it draws: a q that raises leaves the importance sampler's
    counter, the call counter and the history untouched, so a retry draws the batch the
    first try would have drawn."""
    broken = {"now": False}

    def flaky(x):
        if broken["now"]:
            raise RuntimeError("model evaluation failed")
        return PROB.q(x[:, 0])
    s = make("hybrid", tmp_path, q=flaky, adapt_frequency=1)
    twin = make("hybrid", tmp_path, q=lambda x: PROB.q(x[:, 0]), adapt_frequency=1)
    s.sample_batch(X, Q, 8, epoch=0)
    twin.sample_batch(X, Q, 8, epoch=0)
    broken["now"] = True
    with pytest.raises(RuntimeError, match="model evaluation failed"):
        s.sample_batch(X, Q, 8, epoch=1)
    broken["now"] = False
    assert s.n_calls == 1 and s.importance_sampler.calls == 1 and len(s.sampling_history) == 1
    a, ia = s.sample_batch(X, Q, 8, epoch=1)
    b, ib = twin.sample_batch(X, Q, 8, epoch=1)
    np.testing.assert_array_equal(ia["indices"], ib["indices"])


@pytest.mark.parametrize("field, value, error, message", [
    ("n_calls", 2**64, ValueError, "n_calls"),
    ("sampling_history", "abc", ValueError, "sampling_history"),
    ("sampling_history", [{1: 2}], ValueError, "sampling_history"),
    ("active", [1], TypeError, "'active' must be a dict or None"),
])
def test_crafted_states_refused_at_load(tmp_path, field, value, error, message):
    """Values that used to load and fail at a later batch are refused by from_state_dict."""
    s = make("hybrid", tmp_path)
    s.sample_batch(X, Q, 8, epoch=0)
    with pytest.raises(error, match=message):
        IntegratedSampler.from_state_dict({**s.state_dict(), field: value})
