"""The model-driven learner's contract (zp_ref.model_driven, NumPy only): the floor, the
bounded likelihood ratios, draws as a pure function of (seed, epoch, what it was told),
scale-free signals, refinement of the model's Q, pool growth, the band curriculum,
state round trips and the errors."""
import warnings

import numpy as np
import pytest
from scipy import stats

from zp_ref.model_bands import next_stage, stage_mix
from zp_ref.model_driven import ModelDrivenConfig, ModelDrivenLearner, run_refresh
from zp_ref.model_driven_config import AUTO_REFRESH_MIN_POOL, AUTO_REFRESH_ROWS
from zp_ref.rng import STREAMS, call_seed, uniforms
from zp_ref.sampling import sample_indices, uniform_indices

MODEL_POLE, TRUE_POLE = 0.3, -0.5
#: Most tests refresh with fixed signals on purpose; the warning has its own test.
pytestmark = pytest.mark.filterwarnings("ignore:model-driven refresh changed nothing")


def pool(n=2000):
    return (np.arange(n) + 0.5) / n * 2.0 - 1.0          # midpoints of [-1, 1], no pole hit


def model_q(x, scale=1.0):
    """A model whose Q has a pole at 0.3 (the data's pole at -0.5 is missing)."""
    return scale * (x - MODEL_POLE) * (1.0 + 0.1 * x)


def model_grad(x, scale=1.0):
    return np.abs(scale * (1.0 + 0.1 * x + 0.1 * (x - MODEL_POLE)))


def target_loss(x):
    """The loss is large where the model lacks the data's pole."""
    return 1.0 / (np.abs(x - TRUE_POLE) + 1e-3)


def signals_of(learner, scale=1.0, loss=True):
    def signals(rows):
        x = learner.x_pool[rows, 0]
        out = {"q": model_q(x, scale), "grad_norm": model_grad(x, scale)}
        if loss:
            out["loss"] = target_loss(x)
        return out
    return signals


def refreshed(config=None, *, n=2000, epochs=1, scale=1.0, seed=0, batch_size=64,
              labels=None, loss=True):
    learner = ModelDrivenLearner(pool(n), config=config, seed=seed, batch_size=batch_size,
                                 has_loss=loss, has_labels=labels is not None)
    for e in range(epochs):
        run_refresh(learner, e, signals=signals_of(learner, scale, loss),
                    q=lambda p: model_q(p[:, 0], scale), labels=labels)
    return learner


CONFIGS = {
    "defaults": ModelDrivenConfig(),
    "quantile": ModelDrivenConfig(q_signal="quantile"),
    "refine": ModelDrivenConfig(refine=True),
    "bands": ModelDrivenConfig(schedule="bands"),
    "tiny_floor": ModelDrivenConfig(floor=0.01, loss_cap=1e6),
}


# ------------------------------------------------------------------ the floor and the ratios
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_point_keeps_the_floor_and_ratios_are_bounded(name):
    cfg = CONFIGS[name]
    learner = refreshed(cfg, epochs=3)
    m, n = learner.probabilities, learner.pool_size
    assert abs(m.sum() - 1.0) < 1e-12
    assert m.min() >= cfg.floor / n * (1 - 1e-12)
    idx = np.concatenate(learner.batches(3, 8))
    lr = learner.likelihood_ratio(idx)
    np.testing.assert_array_equal(lr, 1.0 / (n * m[idx]))
    assert lr.max() <= 1.0 / cfg.floor * (1 + 1e-12)


def test_the_signals_move_mass_to_both_poles():
    """Q's share goes near the model's pole, the loss's near the data's (missing) pole
    (from the second refresh on: the default loss_warmup = 1)."""
    m, x = refreshed(epochs=2).probabilities, pool()
    near = lambda p: m[np.abs(x - p) < 0.01].sum()   # 1 % of the pool each
    assert near(MODEL_POLE) > 0.05 and near(TRUE_POLE) > 0.05


def test_batches_follow_their_definition():
    """Batch b = importance draws of sample_indices(pi) then uniform_indices, shuffled by
    u(s, 3, .): the hybrid mixture with n_imp = floor(B (1 - floor)) per batch."""
    learner = refreshed(ModelDrivenConfig(floor=0.3))
    B, nb, n_imp = 64, 5, int(np.floor(64 * 0.7))
    s = call_seed(0, 4)
    imp = sample_indices(learner.weights, nb * n_imp, seed=s).reshape(nb, n_imp)
    uni = uniform_indices(learner.pool_size, nb * (B - n_imp), seed=s).reshape(nb, -1)
    keys = uniforms(s, STREAMS["shuffle"], nb * B).reshape(nb, B)
    for b, got in enumerate(learner.batches(4, nb)):
        want = np.concatenate((imp[b], uni[b]))[np.argsort(keys[b], kind="stable")]
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.int64


def test_draws_follow_the_probabilities():
    """Chi-square goodness of fit of 500 batches from a 20-point pool (fixed seed)."""
    learner = refreshed(n=20, batch_size=32)
    counts = np.bincount(np.concatenate(learner.batches(0, 500)), minlength=20)
    # within a batch the importance/uniform split is fixed: a stratified draw, whose
    # counts vary less than multinomial ones, so the multinomial test is conservative
    p = stats.chisquare(counts, learner.probabilities * counts.sum()).pvalue
    assert p > 1e-3


def test_same_seed_same_draws_other_seed_other_draws():
    a, b, c = refreshed(seed=5), refreshed(seed=5), refreshed(seed=6)
    for x, y in zip(a.batches(2, 4), b.batches(2, 4)):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a.batches(2, 4), c.batches(2, 4)))
    assert not all(np.array_equal(x, y) for x, y in zip(a.batches(2, 4), a.batches(3, 4)))


# ------------------------------------------------------------------ scale-free
@pytest.mark.parametrize("signal", ["distance", "quantile"])
@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_rescaling_the_model_q_keeps_the_draws(signal, scale):
    """(P, Q) -> (cP, cQ): the distance |Q| / |grad Q| and the rank of |Q| do not move."""
    cfg = ModelDrivenConfig(q_signal=signal, schedule="none")
    a, b = refreshed(cfg), refreshed(cfg, scale=scale)
    np.testing.assert_allclose(b.probabilities, a.probabilities, rtol=1e-12)
    for x, y in zip(a.batches(1, 6), b.batches(1, 6)):
        np.testing.assert_array_equal(x, y)


def test_absolute_q_scale_would_change_the_draws():
    """The guard: with the loss off and no grad, |Q| itself (quantile) is what is used,
    and a different Q (not a rescaling) does change the draws."""
    a = refreshed(ModelDrivenConfig(loss_share=0.0))
    learner = ModelDrivenLearner(pool(), batch_size=64)
    run_refresh(learner, 0, signals=lambda rows: {
        "q": learner.x_pool[rows, 0] + 0.5, "grad_norm": np.ones(2000)})
    assert not np.allclose(learner.probabilities, a.probabilities)


# ------------------------------------------------------------------ refreshes
def test_a_refresh_that_changes_nothing_warns_once():
    learner = ModelDrivenLearner(pool(), batch_size=64, has_loss=True)
    sig = signals_of(learner)
    run_refresh(learner, 0, signals=sig)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_refresh(learner, 1, signals=sig)
        run_refresh(learner, 2, signals=sig)
    msgs = [w for w in caught if "changed nothing" in str(w.message)]
    assert len(msgs) == 1 and issubclass(msgs[0].category, RuntimeWarning)
    assert learner.last_info["changed"] is False


def test_state_round_trip_gives_the_same_draws():
    cfg = ModelDrivenConfig(schedule="bands")
    a = refreshed(cfg, epochs=3)
    b = ModelDrivenLearner(pool(), config=cfg, batch_size=64, has_loss=True)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    assert (b.stage, b.stage_refreshes) == (a.stage, a.stage_refreshes)
    for x, y in zip(a.batches(7, 3), b.batches(7, 3)):
        np.testing.assert_array_equal(x, y)
    run_refresh(a, 3, signals=signals_of(a))
    run_refresh(b, 3, signals=signals_of(b))
    np.testing.assert_array_equal(a.probabilities, b.probabilities)


# ------------------------------------------------------------------ refinement and growth
def test_refinement_finds_the_model_pole_and_boosts_its_neighbours():
    learner = refreshed(ModelDrivenConfig(refine=True, q_share=0.0, loss_share=0.0))
    lo, hi = learner.refined_cells()
    assert lo.shape[0] >= 1 and ((lo[:, 0] <= MODEL_POLE) & (MODEL_POLE <= hi[:, 0])).any()
    assert (hi - lo).max() <= 2.0 / 1024 / 2 ** 10 * 1.0001        # the finest level
    top = np.argsort(learner.weights)[-8:]
    assert np.abs(pool()[top] - MODEL_POLE).max() < 8 * 2.0 / 2000
    assert learner.last_info["n_refined_cells"] == lo.shape[0]


def test_growth_adds_the_budget_near_high_loss_and_refined_cells():
    cfg = ModelDrivenConfig(refine=True, label_budget=40, loss_warmup=0)
    added = []
    learner = refreshed(cfg, epochs=2, labels=lambda p: added.append(p.copy()))
    assert learner.pool_size == 2000 + 2 * 40 and [a.shape for a in added] == [(40, 1)] * 2
    new = np.concatenate(added)[:, 0]
    np.testing.assert_array_equal(learner.x_pool[2000:, 0], new)
    assert (new >= pool()[0]).all() and (new <= pool()[-1]).all()
    near_loss = np.abs(new - TRUE_POLE) < 0.05
    near_model = np.abs(new - MODEL_POLE) < 0.01
    assert near_loss.sum() >= 20 and near_model.sum() >= 20
    assert learner.probabilities.min() >= 0.5 / learner.pool_size * (1 - 1e-12)


def test_uniform_growth_is_uniform_in_the_box_and_deterministic():
    cfg = ModelDrivenConfig(label_budget=4000, growth="uniform")
    got = []
    refreshed(cfg, labels=lambda p: got.append(p.copy()))
    again = []
    refreshed(cfg, labels=lambda p: again.append(p.copy()))
    np.testing.assert_array_equal(got[0], again[0])
    p = stats.kstest((got[0][:, 0] - pool()[0]) / (pool()[-1] - pool()[0]), "uniform").pvalue
    assert p > 1e-3


def test_a_failing_label_call_undoes_the_refresh():
    learner = refreshed(ModelDrivenConfig(label_budget=10), labels=lambda p: None)
    before = learner.probabilities.copy()

    def boom(points):
        raise RuntimeError("simulator down")
    with pytest.raises(RuntimeError, match="simulator down"):
        run_refresh(learner, 1, signals=signals_of(learner), labels=boom)
    assert learner.pool_size == 2010
    np.testing.assert_array_equal(learner.probabilities, before)


# ------------------------------------------------------------------ the band curriculum
def test_every_stage_keeps_the_far_band():
    for stage in range(6):
        mix = stage_mix(stage, 4)
        assert mix[-1] > 0 and abs(mix.sum() - 1) < 1e-15
    np.testing.assert_array_equal(stage_mix(0, 4), [0, 0, 0, 1])
    np.testing.assert_array_equal(stage_mix(9, 4), [0.25] * 4)


def test_stages_advance_on_a_loss_plateau_or_a_refresh_count():
    kw = dict(plateau=0.9, max_refreshes=5, n_bands=4)
    assert next_stage(0, 1, np.ones(4), np.full(4, 0.5), **kw) == (0, 2)   # improving
    assert next_stage(0, 1, np.ones(4), np.full(4, 0.95), **kw) == (1, 0)  # plateau
    assert next_stage(1, 4, None, None, **kw) == (2, 0)                      # max refreshes
    assert next_stage(3, 9, np.ones(4), np.ones(4), **kw) == (3, 10)         # last stage


def test_bands_cannot_lock_onto_the_model_pole():
    """Whatever the stage, the data's pole (where the loss is) keeps mass."""
    x = pool()
    for epochs in (2, 4, 12):     # the loss is used from the second refresh on
        learner = refreshed(ModelDrivenConfig(schedule="bands"), epochs=epochs)
        m = learner.probabilities
        assert m[np.abs(x - TRUE_POLE) < 0.01].sum() > 0.05
        assert m[learner.band_ids() == 3].sum() > 0.4                       # the far band
    assert learner.stage == 3


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("field, value", [
    ("floor", 0.0), ("floor", 1.5), ("q_signal", "abs"), ("q_power", 0.0),
    ("loss_power", -1.0), ("loss_cap", 0.5), ("loss_warmup", -1), ("q_share", -1.0),
    ("refresh_every", 0),
    ("refine_criterion", "interval"), ("label_budget", -1), ("growth", "random"),
    ("schedule", "stages"), ("band_edges", (0.1, 0.01)), ("band_edges", (0.1, 1.0)),
    ("band_plateau", 0.0), ("band_max_refreshes", 0), ("growth_loss_share", 2.0)])
def test_bad_config_fields_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        ModelDrivenConfig(**{field: value})


def test_bad_config_types_are_refused():
    with pytest.raises(TypeError, match="refine"):
        ModelDrivenConfig(refine="yes")
    with pytest.raises(TypeError, match="config"):
        ModelDrivenLearner(pool(), config={"floor": 0.5}, batch_size=8)
    with pytest.raises(ValueError, match="schedule='bands' needs q_signal"):
        ModelDrivenConfig(schedule="bands", q_signal="none")


def test_bad_learner_arguments_are_named():
    with pytest.raises(ValueError, match="label_budget=5 needs y_fn"):
        ModelDrivenLearner(pool(), config=ModelDrivenConfig(label_budget=5), batch_size=8)
    with pytest.raises(ValueError, match="needs loss_fn"):
        ModelDrivenLearner(pool(), config=ModelDrivenConfig(label_budget=5), batch_size=8,
                           has_labels=True)
    with pytest.raises(ValueError, match="x_pool must span"):
        ModelDrivenLearner(np.ones(10), batch_size=8)
    with pytest.raises(ValueError, match="batch_size"):
        ModelDrivenLearner(pool(), batch_size=0)


@pytest.mark.parametrize("answer, match", [
    ({"q": np.ones(5), "grad_norm": np.ones(2000), "loss": np.ones(2000)}, "one value per"),
    ({"q": np.full(2000, np.nan), "grad_norm": np.ones(2000), "loss": np.ones(2000)},
     r"q \(q_fn output\) must be finite"),
    ({"q": np.ones(2000), "grad_norm": np.ones(2000), "loss": -np.ones(2000)}, "loss must be >= 0"),
    ({"q": np.ones(2000), "loss": np.ones(2000)}, "needs 'grad_norm'"),
    ([1, 2, 3], "must be a dict")])
def test_bad_signals_are_refused_and_change_nothing(answer, match):
    learner = ModelDrivenLearner(pool(), batch_size=8, has_loss=True)
    before = learner.probabilities.copy()
    with pytest.raises((ValueError, TypeError), match=match):
        run_refresh(learner, 0, signals=lambda rows: answer)
    np.testing.assert_array_equal(learner.probabilities, before)
    run_refresh(learner, 0, signals=signals_of(learner))      # the learner still works


def test_refresh_rows_evaluates_the_top_mass_and_a_sweep():
    """refresh_rows = M: after a full first refresh, each refresh asks for the M/2 rows
    of most mass and the next M/2 rows of the sweep; every row comes around."""
    cfg = ModelDrivenConfig(refresh_rows=400, loss_warmup=0)
    learner = ModelDrivenLearner(pool(), config=cfg, batch_size=64, has_loss=True)
    asked, full = [], signals_of(learner)

    def signals(rows):
        asked.append(np.arange(2000)[rows])
        return full(rows)
    run_refresh(learner, 0, signals=signals)
    assert asked[0].size == 2000
    seen = set()
    for e in range(1, 11):
        top = set(np.argsort(learner.weights)[-200:].tolist())
        run_refresh(learner, e, signals=signals)
        rows = set(asked[-1].tolist())
        assert top <= rows and len(rows) <= 400
        assert set(range((e - 1) * 200, e * 200)) <= rows      # the sweep's window
        seen |= rows
    assert seen == set(range(2000))
    assert learner.probabilities.min() >= 0.5 / 2000 * (1 - 1e-12)


@pytest.mark.parametrize("n, want", [(AUTO_REFRESH_MIN_POOL - 1, None),
                                     (AUTO_REFRESH_MIN_POOL, AUTO_REFRESH_ROWS)])
def test_refresh_rows_auto_is_partial_from_its_pool_size_on(n, want):
    """refresh_rows="auto" (the default): a pool of AUTO_REFRESH_MIN_POOL - 1 rows is
    evaluated whole at every refresh; one of AUTO_REFRESH_MIN_POOL rows, after a full
    first refresh, on at most AUTO_REFRESH_ROWS rows; the draws then come from the sum
    trees. variance_gate > 0 resolves "auto" to 0; an explicit count is kept."""
    assert ModelDrivenConfig().refresh_rows == "auto"
    learner = ModelDrivenLearner(pool(n), batch_size=64, has_loss=True,
                                 config=ModelDrivenConfig(loss_warmup=0))
    asked, full = [], signals_of(learner)

    def signals(rows):
        asked.append(np.arange(n)[rows].size)
        return full(rows)
    for e in range(3):
        run_refresh(learner, e, signals=signals)
    assert asked[0] == n
    if want is None:
        assert asked == [n, n, n]
    else:                              # the top-mass half and the sweep's half, united
        assert all(want // 2 <= a <= want for a in asked[1:])
    assert (learner._mixture is None) is (want is None)
    assert learner.refresh_rows == (0 if want is None else want)
    gated = ModelDrivenConfig(variance_gate=1.0)
    assert gated.refresh_rows_for(10**6) == 0
    assert ModelDrivenConfig(refresh_rows=400).refresh_rows_for(10) == 400


@pytest.mark.parametrize("bad, match", [("all", "refresh_rows must be 'auto' or a count"),
                                        (-1, "refresh_rows must be an integer >= 0"),
                                        (2.5, "refresh_rows must be an integer >= 0")])
def test_refresh_rows_refuses_what_is_neither_auto_nor_a_count(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ModelDrivenConfig(refresh_rows=bad)


def test_a_model_without_a_pole_gives_a_uniform_q_share():
    """Q constant (grad 0, no zero in reach): every distance is infinite, and the Q share
    is spread uniformly instead of failing."""
    learner = ModelDrivenLearner(pool(), batch_size=64)
    run_refresh(learner, 0, signals=lambda rows: {"q": np.ones(2000),
                                                  "grad_norm": np.zeros(2000)})
    np.testing.assert_allclose(learner.probabilities, 1 / 2000, rtol=1e-12)


def test_an_infinite_loss_gets_the_cap_and_nan_is_refused():
    """A model whose pole sits on a pool point has an infinite loss there: that point
    gets exactly loss_cap / N of the loss mass (the cap's level), the other rows share
    the rest in proportion to their loss; a loss whose sum would overflow is handled the
    same way; NaN is refused."""
    learner = ModelDrivenLearner(pool(), batch_size=64, has_loss=True,
                                 config=ModelDrivenConfig(q_signal="none", loss_warmup=0))
    loss = np.ones(2000)
    loss[7] = np.inf
    run_refresh(learner, 0, signals=lambda rows: {"loss": loss})
    w = learner.weights
    assert w[7] == pytest.approx(100.0 / 2000, rel=1e-12)
    np.testing.assert_allclose(np.delete(w, 7), (1 - 100.0 / 2000) / 1999, rtol=1e-12)
    loss[8] = 1e308                                       # the plain sum would overflow
    run_refresh(learner, 1, signals=lambda rows: {"loss": loss})
    w = learner.weights
    assert w[7] == w[8] == w.max() and w[7] == pytest.approx(100.0 / 2000, rel=1e-9)
    loss[9] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run_refresh(learner, 2, signals=lambda rows: {"loss": loss})


# ------------------------------------------------------------------ partial refreshes (sum trees)
def drifting_signals(learner, epoch):
    """The model's pole moves by 0.01 a refresh, so every partial refresh changes rows."""
    def signals(rows):
        x = learner.x_pool[rows, 0]
        return {"q": x - MODEL_POLE - 0.01 * epoch, "grad_norm": np.ones(x.size),
                "loss": target_loss(x) * (1.0 + 0.1 * epoch)}
    return signals


def partially_refreshed(epochs=6, config=None):
    cfg = ModelDrivenConfig(refresh_rows=400, loss_warmup=0) if config is None else config
    learner = ModelDrivenLearner(pool(), config=cfg, batch_size=64, has_loss=True)
    for e in range(epochs):
        run_refresh(learner, e, signals=drifting_signals(learner, e))
    return learner


def test_a_partial_refresh_gives_the_full_definition_of_pi_on_the_held_signals():
    """After partial refreshes, pi equals (rtol 1e-12) the pi of a full refresh that is
    told the signals the learner now holds, and the trees equal rebuilt ones exactly."""
    part = partially_refreshed()
    held = {k: v.copy() for k, v in part._signals.items()}
    full = ModelDrivenLearner(pool(), batch_size=64, has_loss=True,
                              config=ModelDrivenConfig(loss_warmup=0))
    run_refresh(full, 0, signals=lambda rows: {k: v[rows] for k, v in held.items()})
    np.testing.assert_allclose(part.weights, full.weights, rtol=1e-12)
    rebuilt = ModelDrivenLearner(pool(), config=part.config, batch_size=64, has_loss=True)
    run_refresh(rebuilt, 0, signals=lambda rows: {k: v[rows] for k, v in held.items()})
    for k, tree in part._mixture.trees.items():
        np.testing.assert_array_equal(tree, rebuilt._mixture.trees[k])
    assert [b.tolist() for b in part.batches(9, 4)] == [b.tolist() for b in
                                                       rebuilt.batches(9, 4)]
    idx = np.arange(0, 2000, 7)
    np.testing.assert_array_equal(part.likelihood_ratio(idx),
                                  1.0 / (2000 * part.probabilities[idx]))


def test_partial_refresh_draws_follow_their_definition():
    """Importance draw j of epoch e (s = call_seed(seed, e)): the signal whose cumulative
    share first exceeds u(call_seed(s, 1), 0, j) * (q_share + loss_share) ("loss" before
    "q"), then the leaf of that signal's sum tree reached by u(s, 0, j)."""
    from zp_ref.model_driven_gate import loss_cap_level
    from zp_ref.model_driven_mixture import q_distance
    from zp_ref.sum_tree import tree_build, tree_draws
    from zp_ref.weighting import importance_weights
    learner = partially_refreshed(config=ModelDrivenConfig(refresh_rows=400, loss_share=3.0,
                                                           loss_warmup=0))
    sig = learner._signals
    w_q = importance_weights(q_distance(sig["q"], sig["grad_norm"], learner.spacing),
                             weight_power=1.0, min_q_abs=1.0, max_weight=1.0,
                             normalize=False)
    t = sig["loss"]
    w_loss = np.minimum(t, loss_cap_level(t, 100.0))
    B, nb, n_imp = 64, 5, 32
    s = call_seed(0, 4)
    n = nb * n_imp
    pick = uniforms(call_seed(s, 1), STREAMS["importance"], n) * 4.0
    u = uniforms(s, STREAMS["importance"], n)
    imp = np.where(pick < 3.0, tree_draws(tree_build(w_loss), u, backend="numpy"),
                   tree_draws(tree_build(w_q), u, backend="numpy")).reshape(nb, n_imp)
    uni = uniform_indices(2000, nb * (B - n_imp), seed=s).reshape(nb, -1)
    keys = uniforms(s, STREAMS["shuffle"], nb * B).reshape(nb, B)
    for b, got in enumerate(learner.batches(4, nb)):
        np.testing.assert_array_equal(
            got, np.concatenate((imp[b], uni[b]))[np.argsort(keys[b], kind="stable")])


def test_partial_refresh_draws_follow_the_probabilities():
    """Chi-square of 400 batches over a 40-point pool after partial refreshes (seed fixed)."""
    learner = ModelDrivenLearner(pool(40), batch_size=32, has_loss=True,
                                 config=ModelDrivenConfig(refresh_rows=8, loss_warmup=0))
    for e in range(4):
        run_refresh(learner, e, signals=drifting_signals(learner, e))
    assert learner._mixture is not None
    counts = np.bincount(np.concatenate(learner.batches(1, 400)), minlength=40)
    assert stats.chisquare(counts, learner.probabilities * counts.sum()).pvalue > 1e-3


def test_partial_refresh_state_and_draw_state_round_trips():
    """load_state_dict and set_draw_state (rank 0's, under DDP) give the same draws, and
    the restored learner's later partial refreshes stay identical."""
    a = partially_refreshed(epochs=3)
    b = ModelDrivenLearner(pool(), config=a.config, batch_size=64, has_loss=True)
    b.load_state_dict(a.state_dict())
    for e in (3, 4):
        assert [x.tolist() for x in a.batches(e, 3)] == [x.tolist() for x in b.batches(e, 3)]
        for learner in (a, b):
            run_refresh(learner, e, signals=drifting_signals(learner, e))
    c = partially_refreshed(epochs=1)
    c.set_draw_state(a.draw_state())
    assert [x.tolist() for x in a.batches(7, 3)] == [x.tolist() for x in c.batches(7, 3)]
    with pytest.raises(ValueError, match="draw state"):
        c.set_draw_state(a.draw_state()[:-1])


def test_a_partial_refresh_that_changes_nothing_warns_once_and_an_infinite_loss_is_capped():
    learner = ModelDrivenLearner(pool(), batch_size=64, has_loss=True,
                                 config=ModelDrivenConfig(refresh_rows=400, loss_warmup=0))
    run_refresh(learner, 0, signals=signals_of(learner))
    with pytest.warns(RuntimeWarning, match="changed nothing"):
        run_refresh(learner, 1, signals=signals_of(learner))
    assert learner.last_info["changed"] is False
    loss = target_loss(pool())
    loss[300] = np.inf                      # a row of the next sweep window (200..399)

    def signals(rows):
        return {**signals_of(learner)(rows), "loss": loss[rows]}
    run_refresh(learner, 2, signals=signals)
    assert learner.last_info["changed"] is True
    full = ModelDrivenLearner(pool(), batch_size=64, has_loss=True,
                              config=ModelDrivenConfig(loss_warmup=0))
    held = {k: v.copy() for k, v in learner._signals.items()}
    run_refresh(full, 0, signals=lambda rows: {k: v[rows] for k, v in held.items()})
    np.testing.assert_allclose(learner.weights, full.weights, rtol=1e-12)


# ------------------------------------------------------------------ the loss warm-up
def test_the_first_refresh_ignores_the_loss_of_the_model_as_built():
    """loss_warmup = 1 (default): the refresh made when the sampler is built draws as if
    there were no loss_fn (the loss of an untrained model is the loss of its initial
    output, e.g. y^2 for a model that starts at ~0); the second refresh uses it;
    loss_warmup = 0 uses it from the first. Probabilities compared exactly."""
    without = refreshed(loss=False).probabilities
    first = refreshed().probabilities
    np.testing.assert_array_equal(first, without)
    assert refreshed(ModelDrivenConfig(loss_warmup=0)).probabilities[
        np.abs(pool() - TRUE_POLE) < 0.01].sum() > 0.05
    second = refreshed(epochs=2).probabilities
    assert second[np.abs(pool() - TRUE_POLE) < 0.01].sum() > 0.05
    np.testing.assert_array_equal(second, refreshed(ModelDrivenConfig(loss_warmup=0)).probabilities)


def test_warmup_growth_does_not_aim_at_the_initial_loss():
    """During the warm-up, growth (label_budget, no refine) has no loss to aim at: its
    new points are uniform in the box (the same draws as growth='uniform')."""
    got, want = [], []
    refreshed(ModelDrivenConfig(label_budget=50), labels=lambda p: got.append(p.copy()))
    refreshed(ModelDrivenConfig(label_budget=50, growth="uniform"),
              labels=lambda p: want.append(p.copy()))
    np.testing.assert_array_equal(got[0], want[0])


def test_the_refresh_ending_the_warmup_evaluates_every_row():
    """refresh_rows = M with loss_warmup = 2: refreshes 0 and 2 ask for all rows (the loss
    of refresh 0 is not kept for rows a partial refresh would skip), refreshes 1 and 3
    for at most M."""
    cfg = ModelDrivenConfig(refresh_rows=400, loss_warmup=2)
    learner = ModelDrivenLearner(pool(), config=cfg, batch_size=64, has_loss=True)
    asked, full = [], signals_of(learner)

    def signals(rows):
        asked.append(np.arange(2000)[rows].size)
        return full(rows)
    for e in range(4):
        run_refresh(learner, e, signals=signals)
    assert asked[0] == asked[2] == 2000 and asked[1] <= 400 and asked[3] <= 400


def test_a_state_saved_before_loss_warmup_loads_without_a_warmup():
    """A state dict without the loss_warmup field (saved by an older release) loads with
    loss_warmup = 0, the behaviour it was saved with."""
    learner = refreshed(ModelDrivenConfig(loss_warmup=0))
    state = learner.state_dict()
    del state["config"]["loss_warmup"]
    other = ModelDrivenLearner(pool(), batch_size=64, has_loss=True)
    other.load_state_dict(state)
    assert other.config.loss_warmup == 0
    np.testing.assert_array_equal(other.probabilities, learner.probabilities)


def test_partial_refreshes_draw_what_they_drew_before_the_speedups():
    """Six partial refreshes (refresh_rows=400) of drifting signals, with the loss cap
    binding (loss_cap 100 and 2, levels moving): each refresh's batches and likelihood
    ratios hash to what zp_ref gave at d372ce0 (before the select descents, the counting
    shuffle and the max tree of the raw loss; the same script)."""
    import hashlib
    h = hashlib.sha256()
    for cap in (100.0, 2.0):
        cfg = ModelDrivenConfig(refresh_rows=400, loss_warmup=0, loss_cap=cap)
        learner = ModelDrivenLearner(pool(), config=cfg, batch_size=64, has_loss=True)
        for e in range(6):
            run_refresh(learner, e, signals=drifting_signals(learner, e))
            for b in learner.batches(e, 8):
                h.update(b.tobytes())
            h.update(learner.likelihood_ratio(np.arange(0, 2000, 3)).tobytes())
        assert np.isfinite(learner._mixture.level)       # the cap binds
    assert h.hexdigest() == "1adb6b6cd38b2adffc99cbf40f4f08d2310c197ec161cd1269828fbef1821822"
