"""CurriculumScheduler (golden parity, anchor bugs fixed) and BandCurriculum."""
import json
import math

import numpy as np
import pytest

from zp_ref.bands import band_of, largest_remainder, stratified_sample
from zp_ref.curriculum import (BandCurriculum, CurriculumConfig, CurriculumScheduler,
                               default_stages)
from zp_ref.rng import derive_seed
from zp_ref.schedule import DeltaSchedule
from zp_ref.state import load_state, save_state

# ``golden``: the fixture of tests/conftest.py (../shared/golden/anchor_v1.json).


def pool(n, seed=0):
    g = np.random.default_rng(seed)
    return g.choice([-1.0, 1.0], n) * 10.0 ** g.uniform(-7, 1, n)


# ====================================================================== CurriculumScheduler
def at(config, stage, epoch, poles=None):
    s = CurriculumScheduler(config, poles)
    s.current_stage, s.current_epoch = stage, epoch
    return s


def test_golden_thresholds(golden):
    n = 0
    for case in golden["curriculum_threshold"]:
        cfg = CurriculumConfig(**case["config"])
        for row in case["rows"]:
            got = at(cfg, row["stage"], row["epoch"]).get_difficulty_threshold()
            assert got == pytest.approx(row["threshold"], rel=1e-12, abs=0)
            n += 1
    assert n == 27


def test_golden_weights(golden):
    for case in golden["curriculum_weights"]:
        q = np.array(case["q_abs"])
        s = at(CurriculumConfig(**case["config"]), case["stage"], case["epoch"])
        w = s.get_sample_weights(np.arange(q.size, dtype=float), q)
        np.testing.assert_allclose(w, case["weights"], rtol=1e-12, atol=0)
        # the anchor looked samples up with x_values.index(x): repeated x broke it
        same_x = s.get_sample_weights(np.zeros(q.size), q)
        np.testing.assert_array_equal(same_x, w)
    assert len(golden["curriculum_weights"]) == 9


def test_weights_classes_and_ratios():
    cfg = CurriculumConfig(n_stages=3, warmup_epochs=0, easy_distance=1.0, hard_distance=0.1,
                           linear_progression=True, initial_easy_ratio=0.75,
                           final_easy_ratio=0.25, use_importance_weights=False)
    q = np.array([0.05, 0.2, 0.9, 2.0, 3.0, 4.0])
    s = at(cfg, 1, 0)                         # threshold 0.55, easy ratio 0.5
    assert s.get_difficulty_threshold() == pytest.approx(0.55, rel=1e-15)
    np.testing.assert_allclose(s.get_sample_weights(np.arange(6.0), q),
                               [0.25, 0.25, 0.125, 0.125, 0.125, 0.125], rtol=1e-15)
    # a class with no member gives its share to the other one
    np.testing.assert_allclose(s.get_sample_weights(np.arange(3.0), q[3:]), [1 / 3] * 3,
                               rtol=1e-15)
    # no pole information: uniform
    assert s.get_sample_weights(np.arange(4.0)).tolist() == [0.25] * 4
    # final_easy_ratio = 1 with every sample hard: the anchor divided 0 by 0
    s = at(CurriculumConfig(warmup_epochs=0, final_easy_ratio=1.0, initial_easy_ratio=1.0), 4, 0)
    np.testing.assert_allclose(s.get_sample_weights(np.arange(3.0), [0.0, 1e-3, 5e-3]).sum(),
                               1.0, rtol=1e-15)


def test_importance_inside_hard_class_never_underflows():
    cfg = CurriculumConfig(warmup_epochs=0, importance_temperature=1e-3)
    s = at(cfg, 0, 0)                          # threshold 1.0: everything below is hard
    q = np.array([0.9, 0.95, 0.99])             # exp(-900) underflows in the anchor's form
    w = s.get_sample_weights(np.arange(3.0), q)
    assert np.isfinite(w).all() and w.sum() == pytest.approx(1.0, rel=1e-15)
    assert w[0] == pytest.approx(1.0, rel=1e-15)


def test_pole_distances():
    cfg = CurriculumConfig(warmup_epochs=0, use_importance_weights=False)
    s = CurriculumScheduler(cfg, pole_locations=[0.0, 2.0])
    x = np.array([0.5, 1.9, -3.0])
    np.testing.assert_allclose(s.distances(x), [0.5, 0.1, 3.0], rtol=1e-15)
    s2 = CurriculumScheduler(cfg, pole_locations=[[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(s2.distances([[3.0, 0.0], [3.0, 3.0]]), [3.0, 1.0], rtol=1e-15)
    with pytest.raises(ValueError, match="do not match pole_locations"):
        s2.distances(x)
    assert CurriculumScheduler(cfg, pole_locations=[]).pole_locations is None


def test_single_stage_exponential_has_no_division_by_zero():
    s = at(CurriculumConfig(n_stages=1, warmup_epochs=0), 0, 3)
    assert s.get_difficulty_threshold() == 1.0


def test_fixed_progression_records_durations():
    s = CurriculumScheduler(CurriculumConfig(n_stages=3, stage_duration=3, adaptive=False))
    advanced = [s.update(e, 0.5, 2.0)["advanced"] for e in range(10)]
    assert advanced == [False, False, False, True, False, False, True, False, False, False]
    assert s.current_stage == 2
    perf = s.stage_performance
    assert [(p["stage"], p["start_epoch"], p["end_epoch"], p["duration"]) for p in perf] == \
           [(0, 0, 3, 3), (1, 3, 6, 3)]


def test_adaptive_progression():
    cfg = CurriculumConfig(n_stages=3, stage_duration=4, min_coverage_for_advance=0.8,
                           max_loss_for_advance=0.5)          # min_stage_epochs = 2
    s = CurriculumScheduler(cfg)
    assert not s.update(0, 0.9, 0.1)["advanced"]              # 0 epochs in stage
    assert not s.update(1, 0.9, 0.1)["advanced"]
    assert not s.update(2, 0.7, 0.1)["advanced"]              # coverage too low
    assert not s.update(3, 0.9, 0.6)["advanced"]              # loss too high
    info = s.update(4, 0.9, 0.5)
    assert info["advanced"] and info["stage"] == 1 and info["epochs_in_stage"] == 0
    assert s.stage_performance[0]["duration"] == 4
    assert CurriculumScheduler(
        CurriculumConfig(n_stages=3, min_epochs=0)).should_advance_stage(0.9, 0.1)
    s.current_stage = 2
    assert not s.should_advance_stage(1.0, 0.0)               # last stage


def test_summary():
    s = CurriculumScheduler(CurriculumConfig(n_stages=2, stage_duration=2, adaptive=False))
    assert s.get_summary()["mean_coverage"] is None
    for e, c in enumerate([0.5, 0.6, 0.7]):
        s.update(e, c, 1.0)
    summary = s.get_summary()
    assert summary["current_stage"] == 1 and summary["total_stages"] == 2
    assert summary["mean_coverage"] == pytest.approx(0.6, rel=1e-15)
    assert summary["coverage_trend"] == pytest.approx(0.1, rel=1e-12)
    assert summary["stage_performance"][0]["duration"] == 2
    json.dumps(summary)


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(n_stages=0), ValueError, "n_stages"),
    (dict(stage_duration=0), ValueError, "stage_duration"),
    (dict(easy_distance=0.001, hard_distance=0.01), ValueError, "easy_distance"),
    (dict(hard_distance=-1.0), ValueError, "hard_distance"),
    (dict(initial_easy_ratio=1.5), ValueError, "initial_easy_ratio"),
    (dict(final_easy_ratio=math.nan), ValueError, "final_easy_ratio"),
    (dict(importance_temperature=0.0), ValueError, "importance_temperature"),
    (dict(adaptive=1), TypeError, "adaptive"),
    (dict(warmup_epochs=2.5), TypeError, "warmup_epochs"),
    (dict(max_loss_for_advance=math.inf), ValueError, "max_loss_for_advance"),
    (dict(min_epochs=-1), ValueError, "min_epochs"),
])
def test_bad_config(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        CurriculumConfig(**kwargs)


def test_bad_calls_change_nothing():
    s = CurriculumScheduler(CurriculumConfig(n_stages=3))
    s.update(5, 0.5, 1.0)
    before = s.state_dict()
    for call, exc, name in [
        (lambda: s.update(4, 0.5, 1.0), ValueError, "epoch must not decrease"),
        (lambda: s.update(6, 1.5, 1.0), ValueError, "coverage"),
        (lambda: s.update(6, 0.5, math.nan), ValueError, "loss"),
        (lambda: s.update(-1, 0.5, 1.0), ValueError, "epoch"),
        (lambda: setattr(s, "current_stage", 3), ValueError, "current_stage"),
        (lambda: setattr(s, "current_epoch", -2), ValueError, "current_epoch"),
        (lambda: s.get_sample_weights([0.0, 1.0], [0.1]), ValueError, "q_values"),
        (lambda: s.get_sample_weights([0.0, 1.0], [0.1, np.nan]), ValueError, "NaN"),
        (lambda: s.get_sample_weights([0.0, np.inf], [0.1, 0.2]), ValueError, "x_values"),
        (lambda: s.get_sample_weights([], []), ValueError, "x_values"),
        (lambda: CurriculumScheduler(config={"n_stages": 3}), TypeError, "config"),
    ]:
        with pytest.raises(exc, match=name):
            call()
    assert s.state_dict() == before


def test_scheduler_state_round_trip(tmp_path):
    s = CurriculumScheduler(CurriculumConfig(n_stages=4, stage_duration=2, min_epochs=1),
                            pole_locations=[0.5, -0.5])
    for e in range(6):
        s.update(e, 0.9 - 0.05 * (e % 2), 0.3)
    t = load_state(save_state(tmp_path / "cur.json", s))
    assert t.state_dict().keys() == s.state_dict().keys()
    assert json.dumps(t.get_summary()) == json.dumps(s.get_summary())
    np.testing.assert_array_equal(t.pole_locations, s.pole_locations)
    x = np.linspace(-1, 1, 11)
    for e in range(6, 12):
        assert t.update(e, 0.9, 0.2) == s.update(e, 0.9, 0.2)
        np.testing.assert_array_equal(t.get_sample_weights(x), s.get_sample_weights(x))
    u = CurriculumScheduler()
    u.load_state_dict(s.state_dict())
    assert u.current_stage == s.current_stage and u.stage_performance == s.stage_performance
    bad = s.state_dict()
    bad["current_stage"] = 9
    with pytest.raises(ValueError, match="current_stage"):
        u.load_state_dict(bad)
    bad = s.state_dict()
    bad["config"]["n_stages"] = 0
    with pytest.raises(ValueError, match="n_stages"):
        u.load_state_dict(bad)
    assert u.get_summary() == s.get_summary()


# ====================================================================== BandCurriculum
def test_default_stages():
    s = default_stages(5)
    np.testing.assert_array_equal(s[0], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(s[1], [0, 0, 0.25, 0.25, 0.5])
    np.testing.assert_allclose(s[2], np.array([5, 4, 3, 2, 1]) / 15, rtol=1e-15)
    np.testing.assert_array_equal(default_stages(2), [[0, 1], [0.5, 0.5], [2 / 3, 1 / 3]])
    np.testing.assert_array_equal(default_stages(3)[1], [0, 0.5, 0.5])
    with pytest.raises(ValueError, match="n_bands"):
        default_stages(1)


def test_epoch_stages_and_exact_counts():
    q = pool(3000, 1)
    cur = BandCurriculum(epochs_per_stage=2, seed=42, within="uniform")
    for epoch in range(7):
        stage = min(epoch // 2, 2)
        assert cur.stage_at(epoch) == stage
        idx, counts = cur.sample(q, 120, epoch)
        expected = largest_remainder(120, default_stages(5)[stage])
        assert counts.dtype == np.int64 and counts.tolist() == expected.tolist()
        assert np.bincount(band_of(q[idx]), minlength=5).tolist() == expected.tolist()
        assert cur.current_stage == stage
    assert [h["end_epoch"] for h in cur.stage_history] == [2, 4]
    assert cur.n_calls == 7


def test_sample_is_stratified_sample_of_call_seed():
    q = pool(2000, 2)
    stages = [[0, 0, 0, 0.5, 0.5], [0.2, 0.2, 0.2, 0.2, 0.2]]
    cur = BandCurriculum(stages, epochs_per_stage=1, seed=7, within="importance",
                         weight_power=1.0)
    for c, epoch in enumerate([0, 0, 1, 5]):
        idx, counts = cur.sample(q, 64, epoch)
        ref, info = stratified_sample(q, 64, mix=stages[min(epoch, 1)],
                                      seed=derive_seed(7, c), within="importance",
                                      weight_power=1.0)
        assert np.array_equal(idx, ref) and cur.last_info == info
        assert cur.last_q_min == np.abs(q[ref]).min()


def test_adaptive_advance():
    cur = BandCurriculum(advance="adaptive", coverage_floor=0.8, loss_ceiling=0.5, min_epochs=2)
    steps = [(0.9, 0.4), (0.7, 0.4), (0.9, 0.4), (0.9, 0.4), (0.9, 0.4), (0.9, 0.6),
             (0.9, 0.4), (0.9, 0.4), (0.9, 0.4), (0.9, 0.4)]
    stages = [cur.update(e, c, l)["stage"] for e, (c, l) in enumerate(steps)]
    assert stages == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert cur.stage_at(100) == 2
    assert [(h["stage"], h["start_epoch"], h["end_epoch"]) for h in cur.stage_history] == \
           [(0, 0, 3), (1, 3, 7)]
    only_loss = BandCurriculum(advance="adaptive", coverage_floor=None, min_epochs=1)
    assert only_loss.update(0, loss=0.1)["advanced"]
    with pytest.raises(ValueError, match="coverage is required"):
        cur.update(11, loss=0.1)


def test_delta_coupling():
    ds = DeltaSchedule(warmup_epochs=1, transition_epochs=4, delta_init=5e-5, delta_final=1e-6,
                       schedule_type="linear")
    cur = BandCurriculum(delta_schedule=ds, within="uniform", epochs_per_stage=100)
    assert cur.edges_at(0).tolist() == [1e-5, 1e-4, 1e-3, 1e-2]
    for epoch in range(1, 7):
        assert cur.edges_at(epoch).tolist() == [ds.get_delta(epoch), 1e-4, 1e-3, 1e-2]
    q = np.concatenate([pool(2000, 3), [2e-5, 3e-5, 4e-5]])
    cur = BandCurriculum([[0.5, 0, 0, 0, 0.5]], delta_schedule=ds, within="uniform")
    idx, counts = cur.sample(q, 100, 1)                 # near band: |q| <= 5e-5
    assert cur.last_info["edges"][0] == 5e-5
    assert (np.abs(q[idx[:50]]) <= 5e-5).all() and counts.tolist() == [50, 0, 0, 0, 50]
    assert cur.update(1)["delta"] == 5e-5


def test_delta_coupling_adaptive_uses_previous_batch_q_min():
    ds = DeltaSchedule(transition_epochs=10, delta_init=4e-5, delta_final=1e-6,
                       adaptive_delta=True)
    cur = BandCurriculum(delta_schedule=ds, within="uniform")
    assert cur.delta_at(3) == ds.get_delta(3)
    cur.sample(pool(500, 4), 50, 3)
    assert cur.delta_at(3) == ds.get_delta(3, q_min=cur.last_q_min)
    with pytest.raises(ValueError, match=r"edges\[1\] = 0.0001"):
        BandCurriculum(delta_schedule=DeltaSchedule(delta_init=1e-2))


def test_band_curriculum_state_round_trip(tmp_path):
    q = pool(1500, 5)
    ds = DeltaSchedule(warmup_epochs=1, transition_epochs=3, delta_init=2e-5, delta_final=1e-7,
                       adaptive_delta=True)
    cur = BandCurriculum(advance="adaptive", min_epochs=1, delta_schedule=ds, seed=2**64 - 1)
    for epoch in range(3):
        cur.sample(q, 32, epoch)
        cur.update(epoch, coverage=0.9, loss=0.1)
    copy = load_state(save_state(tmp_path / "band.json", cur))
    again = BandCurriculum.from_state_dict(cur.state_dict())
    for epoch in range(3, 8):
        a, ca = cur.sample(q, 32, epoch)
        for other in (copy, again):
            b, cb = other.sample(q, 32, epoch)
            assert np.array_equal(a, b) and np.array_equal(ca, cb)
        assert cur.update(epoch, 0.9, 0.1) == copy.update(epoch, 0.9, 0.1) == \
               again.update(epoch, 0.9, 0.1)
    assert copy.get_summary() == cur.get_summary()


def test_band_curriculum_bad_inputs_change_nothing():
    cur = BandCurriculum(within="uniform")
    cur.sample(pool(100), 10, 3)
    before = cur.state_dict()
    for call, exc, name in [
        (lambda: cur.sample(pool(100), 10, 2), ValueError, "epoch must not decrease"),
        (lambda: cur.sample([0.1, np.nan], 10, 4), ValueError, "q_pool"),
        (lambda: cur.sample([], 10, 4), ValueError, "q_pool"),
        (lambda: cur.sample(pool(100), -1, 4), ValueError, "batch_size"),
        (lambda: cur.sample(pool(100), 1.5, 4), TypeError, "batch_size"),
        (lambda: cur.update(4, coverage=2.0), ValueError, "coverage"),
        (lambda: cur.update(4, loss=math.inf), ValueError, "loss"),
        (lambda: cur.load_state_dict({**before, "streak": -1}), ValueError, "streak"),
        (lambda: cur.load_state_dict({**before, "version": 0}), ValueError, "version"),
        (lambda: cur.load_state_dict({**before, "current_stage": 3}), ValueError,
         "current_stage"),
    ]:
        with pytest.raises(exc, match=name):
            call()
    after = cur.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        assert np.array_equal(after[k], before[k]) if isinstance(before[k], np.ndarray) \
            else after[k] == before[k]


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(stages=[]), ValueError, "stages"),
    (dict(stages=[[0.5, 0.5]]), ValueError, r"stages\[0\]"),
    (dict(stages=[[0, 0, 0, 0, 1], [0.2, 0.2, 0.2, 0.2, 0.1]]), ValueError, r"stages\[1\]"),
    (dict(advance="loss"), ValueError, "advance"),
    (dict(epochs_per_stage=0), ValueError, "epochs_per_stage"),
    (dict(coverage_floor=1.1), ValueError, "coverage_floor"),
    (dict(loss_ceiling=math.nan), ValueError, "loss_ceiling"),
    (dict(min_epochs=0), ValueError, "min_epochs"),
    (dict(delta_schedule=0.01), TypeError, "delta_schedule"),
    (dict(within="all"), ValueError, "within"),
    (dict(weight_power=-2.0), ValueError, "weight_power"),
    (dict(seed=2**64), ValueError, "seed"),
    (dict(backend="gpu"), ValueError, "backend"),
    (dict(edges=[1e-3, 1e-4]), ValueError, "edges"),
])
def test_band_curriculum_bad_config(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        BandCurriculum(**kwargs)


def test_default_stages_with_a_far_floor_keep_that_share_on_the_far_band():
    """default_stages(n, f) = f e_far + (1 - f) default_stages(n): rows sum to 1 (rtol
    1e-15), the far band holds >= f in every stage, f = 0 is the old stages exactly."""
    plain = default_stages(5)
    np.testing.assert_array_equal(default_stages(5, 0.0), plain)
    floored = default_stages(5, 0.5)
    far = np.zeros(5)
    far[-1] = 1.0
    np.testing.assert_allclose(floored, 0.5 * far + 0.5 * plain, rtol=1e-15, atol=0)
    np.testing.assert_allclose(floored.sum(axis=1), 1.0, rtol=1e-15)
    assert (floored[:, -1] >= 0.5).all() and plain[-1, -1] == pytest.approx(1 / 15)
    with pytest.raises(ValueError, match="far_floor"):
        default_stages(5, 1.5)
