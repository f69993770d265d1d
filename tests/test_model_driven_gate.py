"""The variance gate of the model-driven learner (ModelDrivenConfig.variance_gate,
zp_ref.model_driven_gate; Katharopoulos & Fleuret 2018): tau from its formula, uniform
draws while it is closed, unchanged draws while it is open or off, the loss warm-up,
validation, state round trips, the torch sampler's refresh log and the study arm."""
import dataclasses
import hashlib

import numpy as np
import pytest

from zp_ref.model_driven import ModelDrivenConfig, ModelDrivenLearner, run_refresh
from zp_ref.model_driven_gate import variance_speedup
from zp_ref.rng import call_seed
from zp_ref.sampling import uniform_indices

pytestmark = pytest.mark.filterwarnings("ignore:model-driven refresh changed nothing")

#: Every field that steers these draws, written out (the test does not follow later
#: changes of the library's defaults).
FIXED = dict(floor=0.5, q_signal="distance", q_power=1.0, distance_clip=1.0, loss_power=1.0,
             loss_cap=100.0, loss_warmup=1, q_share=1.0, loss_share=1.0, refine_share=1.0,
             refresh_every=1, refresh_rows=0)
X = np.linspace(-1.0, 1.0, 301)
B, NB = 24, 5


def signals(epoch, x=X):
    """The runner's answers at refresh ``epoch``: the model's pole near 0.3, a loss
    peaked at the pole it lacks (-0.5)."""
    def answer(rows):
        xr = x[rows]
        return {"q": xr - 0.3 + 0.01 * epoch, "grad_norm": np.ones(xr.size),
                "loss": 1.0 / (np.abs(xr + 0.5) + 0.02 * (epoch + 1)) ** 2}
    return answer


def learner(x=X, seed=11, **changes):
    cfg = ModelDrivenConfig(**{**FIXED, **changes})
    return ModelDrivenLearner(x, config=cfg, seed=seed, batch_size=B, has_loss=True)


def refreshed(epochs, **changes):
    """A learner after refreshes 0 .. epochs - 1, and its draws of each epoch."""
    lrn, draws = learner(**changes), []
    for e in range(epochs):
        run_refresh(lrn, e, signals=signals(e))
        draws.append(np.stack(lrn.batches(e, NB)))
    return lrn, draws


def test_tau_equals_the_formula_by_hand_on_a_small_pool():
    """tau = sum(loss) / sum(loss / (N m)), summed by hand in Python floats (rtol 1e-12),
    for a given m and for the learner's own m at a refresh."""
    loss = [0.5, 2.0, 0.0, 7.0, 1.25]
    m = [0.1, 0.3, 0.05, 0.4, 0.15]
    by_hand = sum(loss) / sum(g2 / (5 * mi) for g2, mi in zip(loss, m))
    assert variance_speedup(np.array(loss), np.array(m)) == pytest.approx(by_hand, rel=1e-12)
    x = np.linspace(-1.0, 1.0, 7)
    lrn = learner(x=x, variance_gate=0.5)
    for e in range(2):
        run_refresh(lrn, e, signals=signals(e, x))
    t = signals(1, x)(slice(None))["loss"]
    p = lrn.probabilities
    by_hand = sum(t) / sum(ti / (7 * pi) for ti, pi in zip(t.tolist(), p.tolist()))
    assert lrn.gate_tau == pytest.approx(by_hand, rel=1e-12)
    assert lrn.gate_tau > 1.05 and lrn.gate_open       # importance pays here
    assert lrn.last_info["gate_tau"] == lrn.gate_tau and lrn.last_info["gate_open"] is True


def test_tau_is_one_for_a_uniform_mixture():
    """Uniform m: tau == 1 exactly (N = 1024, 1/N exact), within 4 ulp for N = 1000; and
    the learner with floor = 1 (a uniform mixture) reports tau == 1 and an open gate."""
    rng = np.random.default_rng(3)
    assert variance_speedup(rng.random(1024) * 5, np.full(1024, 1 / 1024)) == 1.0
    assert abs(variance_speedup(rng.random(1000), np.full(1000, 1 / 1000)) - 1.0) <= 4e-16
    x = np.linspace(-1.0, 1.0, 1024)
    lrn = learner(x=x, floor=1.0, variance_gate=1.0)
    for e in range(2):
        run_refresh(lrn, e, signals=signals(e, x))
    assert lrn.gate_tau == 1.0 and lrn.gate_open is True


def test_tau_none_without_a_finite_positive_loss():
    """A loss of 0 everywhere, or an infinite one: no estimate (None), the gate stays open."""
    m = np.full(4, 0.25)
    assert variance_speedup(np.zeros(4), m) is None
    assert variance_speedup(np.array([1.0, np.inf, 0.0, 2.0]), m) is None


def test_closed_gate_draws_uniform_indices_with_ratios_exactly_one():
    """tau < variance_gate: the epoch's draws equal those of a floor = 1 learner of the
    same seed (uniform_indices of call_seed(seed, epoch), shuffled within batches), the
    probabilities are 1 / N and every likelihood ratio is exactly 1."""
    closed, got = refreshed(4, variance_gate=50.0)
    uniform, want = refreshed(4, floor=1.0)
    for e in (1, 2, 3):
        assert closed.refresh_count == 4 and closed.gate_open is False
        np.testing.assert_array_equal(got[e], want[e])
        flat = uniform_indices(X.size, NB * B, seed=call_seed(11, e)).reshape(NB, B)
        np.testing.assert_array_equal(np.sort(got[e], axis=1), np.sort(flat, axis=1))
    assert 1.0 < closed.gate_tau < 50.0
    np.testing.assert_array_equal(closed.likelihood_ratio(np.arange(X.size)), np.ones(X.size))
    np.testing.assert_array_equal(closed.probabilities, np.full(X.size, 1.0 / X.size))
    assert closed.importance_count() == 0


def test_open_gate_draws_as_without_the_gate():
    """tau >= variance_gate: draws, probabilities and likelihood ratios are bit-identical
    to variance_gate = 0 at every refresh."""
    gated, got = refreshed(4, variance_gate=1.0)
    plain, want = refreshed(4)
    assert gated.gate_open is True and gated.gate_tau > 1.0
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(gated.probabilities, plain.probabilities)
    idx = np.arange(X.size)
    np.testing.assert_array_equal(gated.likelihood_ratio(idx), plain.likelihood_ratio(idx))


def test_gate_off_keeps_the_draws_from_before_the_gate():
    """variance_gate = 0: the draws of 4 refreshes hash to the value the learner gave
    before the field existed (zp_ref at commit 9906043, the same script), and equal
    those of a config built without naming the field."""
    lrn, draws = refreshed(4, variance_gate=0.0)
    h = hashlib.sha256()
    for d in draws:
        h.update(np.concatenate(list(d)).astype(np.int64).tobytes())
    assert h.hexdigest() == "f48d4a0613fff836a40419d0e61c9ff8aefdf42ff408f109b4f0dbe9c5580089"
    _, unnamed = refreshed(4)
    for a, b in zip(draws, unnamed):
        np.testing.assert_array_equal(a, b)
    assert lrn.gate_tau is None and lrn.gate_open is True    # not even evaluated


def test_gate_waits_for_the_loss_warmup():
    """No loss signal before the loss_warmup-th refresh: the gate is not applied there
    (open, tau None, draws as without it), and closes at the first refresh after."""
    lrn = learner(loss_warmup=2, variance_gate=50.0)
    plain = learner(loss_warmup=2)
    for e in range(3):
        run_refresh(lrn, e, signals=signals(e))
        run_refresh(plain, e, signals=signals(e))
        if e < 2:
            assert lrn.gate_open is True and lrn.gate_tau is None
            np.testing.assert_array_equal(np.stack(lrn.batches(e, NB)),
                                          np.stack(plain.batches(e, NB)))
    assert lrn.gate_open is False and lrn.gate_tau < 50.0


@pytest.mark.parametrize("value, err", [(-0.5, ValueError), (float("nan"), ValueError),
                                        (float("inf"), ValueError), ("1", TypeError),
                                        (True, TypeError)])
def test_variance_gate_is_validated(value, err):
    with pytest.raises(err, match="variance_gate"):
        ModelDrivenConfig(variance_gate=value)


def test_variance_gate_refuses_partial_refreshes_and_a_missing_loss():
    """refresh_rows > 0 and the gate: refused, naming both; no loss signal or no loss_fn:
    refused, naming what is missing."""
    with pytest.raises(ValueError, match="variance_gate=1.0 needs refresh_rows=0.*"
                                         "refresh_rows=64"):
        ModelDrivenConfig(variance_gate=1.0, refresh_rows=64)
    with pytest.raises(ValueError, match="variance_gate=1.0 needs the loss.*loss_power=None"):
        ModelDrivenConfig(variance_gate=1.0, loss_power=None)
    with pytest.raises(ValueError, match="loss_share=0"):
        ModelDrivenConfig(variance_gate=1.0, loss_share=0.0)
    with pytest.raises(ValueError, match="variance_gate=1.0 needs loss_fn"):
        ModelDrivenLearner(X, config=ModelDrivenConfig(variance_gate=1.0), batch_size=B)


def test_state_round_trip_keeps_the_gate():
    """state_dict -> load_state_dict restores a closed gate and its tau (the next draws
    are equal); decisions() carries it to another rank; a state saved without the
    field loads with the gate off."""
    a, _ = refreshed(3, variance_gate=50.0)
    b = learner(variance_gate=50.0)
    b.load_state_dict(a.state_dict())
    assert (b.gate_open, b.gate_tau) == (False, a.gate_tau)
    np.testing.assert_array_equal(np.stack(b.batches(3, NB)), np.stack(a.batches(3, NB)))
    c = learner(variance_gate=50.0)
    c.set_decisions(a.decisions())
    assert (c.gate_open, c.gate_tau) == (False, a.gate_tau)
    d = learner(variance_gate=50.0)                 # before any loss: tau None survives
    e = learner(variance_gate=50.0)
    e.load_state_dict(d.state_dict())
    assert (e.gate_open, e.gate_tau) == (True, None)
    old, _ = refreshed(2)
    state = old.state_dict()
    state["config"] = {k: v for k, v in state["config"].items() if k != "variance_gate"}
    f = learner()
    f.load_state_dict(state)
    assert f.config.variance_gate == 0.0
    np.testing.assert_array_equal(np.stack(f.batches(2, NB)), np.stack(old.batches(2, NB)))


def test_torch_sampler_logs_tau_and_the_gate():
    """ModelDrivenSampler's refresh_log holds gate_tau and gate_open per refresh (None
    and True before the loss warm-up); a closed gate gives ratios of exactly 1."""
    torch = pytest.importorskip("torch")
    from zp_ref.bridges.torch_model import ModelDrivenSampler
    x = torch.from_numpy(X[:, None])
    y = 1.0 / (x[:, 0] + 0.5 + 1e-3)
    phi = torch.tensor([-3.0], dtype=torch.float64)

    def q_fn(xb):
        return 1.0 + phi[0] * xb[:, 0]

    def loss_fn(xb, yb):
        return (q_fn(xb) * yb - 1.0) ** 2

    s = ModelDrivenSampler(x, B, NB, q_fn=q_fn, y_pool=y, loss_fn=loss_fn,
                           config=ModelDrivenConfig(**FIXED, variance_gate=1e6))
    for e in (1, 2):
        s.set_epoch(e)
    log = s.refresh_log
    assert [r["gate_open"] for r in log] == [True, False, False]
    assert log[0]["gate_tau"] is None and 0 < log[1]["gate_tau"] < 1e6
    lr = s.likelihood_ratio(torch.arange(X.size))
    assert torch.equal(lr, torch.ones(X.size, dtype=torch.float64))
    plain = ModelDrivenSampler(x, B, NB, q_fn=q_fn, y_pool=y, loss_fn=loss_fn,
                               config=ModelDrivenConfig(**FIXED))
    assert plain.last_refresh["gate_tau"] is None and plain.last_refresh["gate_open"] is True


def test_study_arm_model_driven_gate():
    """model_driven_gate: model_driven's config with variance_gate = 1.0, run in every
    (schedule, trainer) cell model_driven runs in; the cache key of the other
    model-driven arms does not see the new field at its off value."""
    pytest.importorskip("torch")
    from zp_ref.apps import study
    from zp_ref.apps.study_arms import MODEL_DRIVEN_GATE, model_driven_config
    cfg = study.StudyConfig.full()
    assert MODEL_DRIVEN_GATE == 1.0
    assert model_driven_config("model_driven_gate", cfg) == dataclasses.replace(
        model_driven_config("model_driven", cfg), variance_gate=1.0)
    for schedule in study.LR_SCHEDULES:
        for trainer in study.TRAINERS:
            arms = cfg.methods_for(schedule, trainer)
            assert ("model_driven_gate" in arms) == ("model_driven" in arms), (schedule, trainer)
    assert "model_driven_gate" in cfg.methods_for("constant", "zeroproofml")
    assert "variance_gate" not in study._model_driven_defaults()
