"""The rule that chose ModelDrivenConfig's defaults (zp_ref.apps.study_select), the
study's ``model_driven`` overrides and its ``first_seed`` (fresh seeds)."""
import copy
import dataclasses
import math

import pytest

pytest.importorskip("torch")

from zp_ref.apps.study import StudyConfig, _jobs  # noqa: E402
from zp_ref.apps.study_arms import model_driven_config  # noqa: E402
from zp_ref.apps.study_select import (CANDIDATES, FAR_FIELD_FACTOR, cell_scores,  # noqa: E402
                                      choose, selection_config)


def _cells(*pairs):
    return {f"cell{i}": {"ratio": r, "far_ratio": f} for i, (r, f) in enumerate(pairs)}


def test_choose_takes_the_safe_candidate_with_the_largest_geometric_mean_ratio():
    scores = {"defaults": _cells((1.5, 1.0), (1.5, 1.0)),        # geo 1.5
              "q_power_2": _cells((4.0, 1.0), (1.0, 1.2)),       # geo 2.0, safe
              "floor_0.3": _cells((9.0, 1.0), (0.99, 1.0))}      # geo 2.98, loses one cell
    assert choose(scores) == "q_power_2"


def test_choose_counts_a_far_field_loss_beyond_the_factor_as_unsafe():
    scores = {"defaults": _cells((1.1, 1.0)),
              "q_power_2": _cells((5.0, FAR_FIELD_FACTOR * (1 + 1e-9)))}
    assert choose(scores) == "defaults"
    scores["q_power_2"] = _cells((5.0, FAR_FIELD_FACTOR))     # at the factor: still safe
    assert choose(scores) == "q_power_2"


def test_choose_without_a_safe_candidate_takes_the_least_bad_worst_cell():
    scores = {"defaults": _cells((0.5, 1.0), (3.0, 1.0)),
              "q_power_2": _cells((0.8, 1.0), (1.0, 1.0)),
              "floor_0.3": _cells((0.7, 1.0), (9.0, 1.0))}
    assert choose(scores) == "q_power_2"


def test_choose_breaks_ties_towards_the_earlier_candidate():
    same = _cells((2.0, 1.0))
    assert choose({"q_power_2": same, "defaults": dict(same)}) == "defaults"


def test_choose_refuses_scores_without_a_known_candidate():
    with pytest.raises(ValueError, match="scores must hold candidates"):
        choose({"mine": _cells((2.0, 1.0))})


def _summary(poles, b4):
    return {"runs": [{"pole_distance": p} for p in poles],
            "band_median_rel_err": {"B4": {"mean": b4}}}


def test_cell_scores_is_the_ratio_of_geometric_means_and_of_far_field_means():
    uniform = {"config": {"lr_schedules": ["cosine", "constant"]}, "targets": {"t": {"methods": {
        "uniform": {"schedules": {"cosine": _summary([1e-2, 1e-4], 0.2)}},
        "zeroproofml/uniform": {"schedules": {"constant": _summary([1.0], 0.5)}}}}}}
    cand = {"config": {"lr_schedules": ["cosine", "constant"]}, "targets": {"t": {"methods": {
        "model_driven": {"schedules": {"cosine": _summary([1e-3, 1e-5], 0.3)}},
        "zeroproofml/model_driven": {"schedules": {"constant": _summary([4.0], 0.25)}}}}}}
    cells = cell_scores(uniform, cand)
    assert sorted(cells) == ["t, cosine", "zeroproofml/t, constant"]
    assert math.isclose(cells["t, cosine"]["ratio"], 10.0, rel_tol=1e-12)
    assert math.isclose(cells["t, cosine"]["far_ratio"], 1.5, rel_tol=1e-12)
    assert math.isclose(cells["zeroproofml/t, constant"]["ratio"], 0.25, rel_tol=1e-12)
    assert math.isclose(cells["zeroproofml/t, constant"]["far_ratio"], 0.5, rel_tol=1e-12)


def test_selection_config_puts_one_arm_in_every_cell_with_the_candidate_defaults():
    cfg = selection_config("q_power_2_floor_0.3")
    assert cfg.methods == cfg.constant_methods == cfg.zeroproofml_methods == ("model_driven",)
    md = model_driven_config("model_driven", cfg)
    assert (md.q_power, md.floor) == (2.0, 0.3)
    assert selection_config("uniform").methods == ("uniform",)
    assert set(CANDIDATES) >= {"defaults"} and CANDIDATES["defaults"] == ()
    with pytest.raises(ValueError, match="'uniform' or one of"):
        selection_config("q_power_3")


def test_study_model_driven_overrides_reach_every_model_driven_arm():
    cfg = dataclasses.replace(StudyConfig.full(), model_driven=(("floor", 0.25),)).validate()
    for arm in ("model_driven", "model_driven_refine", "model_driven_grow", "oracle_grow"):
        assert model_driven_config(arm, cfg).floor == 0.25
    assert model_driven_config("model_driven_grow", cfg).label_budget == cfg.label_budget


@pytest.mark.parametrize("bad, error, match", [
    ((("flor", 0.3),), ValueError, r"names no ModelDrivenConfig field: \['flor'\]"),
    ((("floor", 0.0),), ValueError, "floor"),
    (3, TypeError, "model_driven must be"),
])
def test_study_refuses_bad_model_driven_overrides(bad, error, match):
    with pytest.raises(error, match=match):
        dataclasses.replace(StudyConfig.full(), model_driven=bad).validate()


def test_first_seed_runs_the_fresh_seeds_only():
    cfg = dataclasses.replace(StudyConfig.full(), targets=("rational_1d",),
                              methods=("uniform",), constant_methods=("uniform",),
                              zeroproofml_methods=("uniform",))
    seeds = sorted({job[-1] for job in _jobs(cfg, 5, first_seed=5)})
    assert seeds == [5, 6, 7, 8, 9]
    assert sorted({job[-1] for job in _jobs(cfg, 2)}) == [0, 1]


def test_study_command_refuses_a_negative_first_seed_in_one_line():
    from zp_ref.apps.study import study_command
    with pytest.raises(SystemExit) as exc:
        study_command(["--first-seed", "-1"])
    assert exc.value.code == 2


# ------------------------------------------------------------------ the loss signal's question
def _report(pole_distances: dict, b4: dict) -> dict:
    """A one-cell study report (rational_1d, cosine) with the given per-seed pole
    distances and mean B4 error per arm."""
    methods = {arm: {"schedules": {"cosine": {
        "runs": [{"pole_distance": d} for d in pds],
        "band_median_rel_err": {"B4": {"mean": b4[arm]}}}}}
        for arm, pds in pole_distances.items()}
    return {"config": {"lr_schedules": ["cosine"]},
            "targets": {"rational_1d": {"methods": methods}}}


def test_the_squared_error_is_recommended_only_when_safe_and_stronger():
    """judge_loss_signal: sqerr is recommended when it is no farther than uniform, its
    far field within FAR_FIELD_FACTOR of uniform's, and its geometric-mean gain larger
    than the training-loss arm's; a far field beyond the factor or a smaller gain is
    not recommended."""
    from zp_ref.apps.study_select import judge_loss_signal
    pds = {"uniform": [1e-4, 4e-4], "model_driven": [5e-5, 2e-4],           # geo gain 2
           "model_driven_sqerr": [2.5e-5, 1e-4],                             # geo gain 4
           "model_driven_grow": [1e-5, 4e-5], "model_driven_grow_sqerr": [2e-5, 8e-5]}
    b4 = dict.fromkeys(pds, 0.01)
    out = judge_loss_signal(_report(pds, b4))
    assert out["model_driven_sqerr"]["gain"] == pytest.approx(4.0, rel=1e-12)
    assert out["model_driven_sqerr"]["other_gain"] == pytest.approx(2.0, rel=1e-12)
    assert out["model_driven_sqerr"]["recommended"] is True
    assert out["model_driven_grow_sqerr"]["recommended"] is False      # gain 5 < 10
    b4["model_driven_sqerr"] = 0.01 * FAR_FIELD_FACTOR * (1 + 1e-9)
    out = judge_loss_signal(_report(pds, b4))
    assert out["model_driven_sqerr"]["safe"] is False
    assert out["model_driven_sqerr"]["recommended"] is False


def test_the_squared_error_arms_tell_the_sampler_the_prediction_error():
    """model_driven_sqerr's loss_fn is (model.predict(x) - y)^2 (rtol 1e-15); the
    default arm's is the training loss; the growing sqerr arm has the grow arm's budget."""
    import numpy as np
    import torch
    from zp_ref.apps.study_arms import ModelDrivenSource
    from zp_ref.apps.study_model import RationalModel, targets
    cfg = StudyConfig.quick()
    target = targets()["rational_1d"]
    x = np.linspace(-0.9, 0.9, 64)[:, None]
    y = target.evaluate(x)[0]
    model = RationalModel(1, 3, 3, seed=0).double()
    src = ModelDrivenSource("model_driven_sqerr", target, x, y, cfg, 0, model)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():
        got = src.sampler.loss_fn(xt, yt).numpy()
        want = ((model.predict(xt) - yt) ** 2).numpy()
        train = model.sample_loss(xt, yt).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert not np.allclose(got, train)
    assert (model_driven_config("model_driven_grow_sqerr", cfg)
            == model_driven_config("model_driven_grow", cfg))


# ------------------------------------------------------------------ the partial refresh's question
def test_the_partial_refresh_keeps_the_gains_only_when_safe_and_close_to_the_full():
    """judge_partial_refresh: the partial arm keeps the gains when it is safe against
    uniform and its geometric-mean gain is at least PARTIAL_GAIN_FRACTION of the full
    refresh's; a gain just below that fraction, or a far field beyond the factor, does
    not."""
    from zp_ref.apps.study_select import PARTIAL_GAIN_FRACTION, judge_partial_refresh
    pds = {"uniform": [1e-4, 4e-4], "model_driven_sqerr": [2.5e-5, 1e-4]}   # geo gain 4
    b4 = {"uniform": 0.01, "model_driven_sqerr": 0.01, "model_driven_sqerr_partial": 0.01}
    at = 4.0 * PARTIAL_GAIN_FRACTION
    above = at * (1 + 1e-6)
    pds["model_driven_sqerr_partial"] = [1e-4 / above, 4e-4 / above]
    out = judge_partial_refresh(_report(pds, b4))
    assert out["full_gain"] == pytest.approx(4.0, rel=1e-12)
    assert out["gain"] == pytest.approx(above, rel=1e-12)
    assert out["safe"] is True and out["keeps_gains"] is True
    below = at * (1 - 1e-6)
    pds["model_driven_sqerr_partial"] = [1e-4 / below, 4e-4 / below]
    assert judge_partial_refresh(_report(pds, b4))["keeps_gains"] is False
    pds["model_driven_sqerr_partial"] = [2.5e-5, 1e-4]                    # as good as full
    b4["model_driven_sqerr_partial"] = 0.01 * FAR_FIELD_FACTOR * (1 + 1e-9)
    out = judge_partial_refresh(_report(pds, b4))
    assert out["safe"] is False and out["keeps_gains"] is False


def test_the_partial_arm_is_the_squared_error_arm_with_a_partial_refresh():
    """model_driven_sqerr_partial: model_driven_sqerr's config with refresh_rows =
    PARTIAL_REFRESH_ROWS and nothing else changed; it is left out of the study's default
    arms, and the fifth run's config holds the three arms on a pool of 2**18."""
    from zp_ref.apps.study_arms import PARTIAL_REFRESH_ROWS
    from zp_ref.apps.study_select import partial_refresh_config
    cfg = StudyConfig.full()
    full = model_driven_config("model_driven_sqerr", cfg)
    part = model_driven_config("model_driven_sqerr_partial", cfg)
    assert part == dataclasses.replace(full, refresh_rows=PARTIAL_REFRESH_ROWS)
    assert full.refresh_rows == 0 and PARTIAL_REFRESH_ROWS == 4096
    assert "model_driven_sqerr_partial" not in cfg.methods_for("cosine", "adam")
    run = partial_refresh_config()
    assert run.pool_size == 1 << 18
    for schedule, trainer in (("cosine", "adam"), ("constant", "adam"),
                              ("constant", "zeroproofml")):
        assert run.methods_for(schedule, trainer) == (
            "uniform", "model_driven_sqerr", "model_driven_sqerr_partial")


# ------------------------------------------------------------------ the tilt's question
def _tilt_report(arm_pds, b4, b2=1.0, b3=1.0):
    """One cell (rational_1d, cosine) with one arm and its per-seed pole distances,
    and its mean B2, B3 and B4 errors."""
    (arm, pds), = arm_pds.items()
    errs = {"B2": {"mean": b2}, "B3": {"mean": b3}, "B4": {"mean": b4}}
    return {"config": {"lr_schedules": ["cosine"]}, "targets": {"rational_1d": {"methods": {
        arm: {"schedules": {"cosine": {"runs": [{"pole_distance": d} for d in pds],
                                       "band_median_rel_err": errs}}}}}}}


def test_the_tilt_rule_is_the_development_rule_over_the_tilt_candidates():
    """judge_tilt: each candidate's model_driven_sqerr against uniform; the safe one of
    largest geometric gain is chosen (here sqerr_floor_0.3, gain 5), a stronger but
    unsafe one (far field beyond the factor) is not; at_3x lists the cells where pole
    distance, B2 and B3 are all at least 3x uniform's (B2 at 3 exactly counts, 2.999 not)."""
    from zp_ref.apps.study_select import TILT_ARM, TILT_CANDIDATES, judge_tilt
    reports = {"uniform": _tilt_report({"uniform": [1e-4, 4e-4]}, 0.01, b2=0.9, b3=0.9)}
    gains = {"sqerr": 2.0, "sqerr_q_power_2": 8.0, "sqerr_floor_0.3": 5.0,
             "sqerr_q_power_2_floor_0.3": 1.0}
    for name, g in gains.items():
        far = 0.01 * FAR_FIELD_FACTOR * (1 + 1e-9) if name == "sqerr_q_power_2" else 0.01
        b2 = 0.3 if name == "sqerr_floor_0.3" else 0.3 * (1 + 1e-9)
        reports[name] = _tilt_report({TILT_ARM: [1e-4 / g, 4e-4 / g]}, far, b2=b2, b3=0.1)
    out = judge_tilt(reports)
    assert set(out["scores"]) == set(TILT_CANDIDATES)
    assert out["chosen"] == "sqerr_floor_0.3"
    assert out["gains"]["sqerr_q_power_2"] == pytest.approx(8.0, rel=1e-12)
    assert out["safe"] == {"sqerr": True, "sqerr_q_power_2": False, "sqerr_floor_0.3": True,
                           "sqerr_q_power_2_floor_0.3": True}
    assert out["at_3x"] == {"sqerr": [], "sqerr_q_power_2": [],
                            "sqerr_floor_0.3": ["rational_1d, cosine"],
                            "sqerr_q_power_2_floor_0.3": []}


def test_the_tilt_parts_run_one_arm_with_the_candidate_fields_on_fresh_seeds():
    """tilt_config: uniform alone, or model_driven_sqerr with the candidate's fields (and
    refresh_rows 0, the study's base) in every cell; seeds 20-24, after every earlier
    run's; an unknown name is refused."""
    from zp_ref.apps.study_select import TILT_ARM, TILT_CANDIDATES, TILT_SEEDS, tilt_config
    assert TILT_SEEDS == (20, 5)
    assert tilt_config("uniform").methods == ("uniform",)
    for name, fields in TILT_CANDIDATES.items():
        cfg = tilt_config(name, targets=("rational_1d",))
        assert cfg.methods == cfg.constant_methods == cfg.zeroproofml_methods == (TILT_ARM,)
        assert cfg.targets == ("rational_1d",)
        md = model_driven_config(TILT_ARM, cfg)
        assert md.refresh_rows == 0
        assert {k: getattr(md, k) for k in ("q_power", "floor")} == {
            "q_power": 1.0, "floor": 0.5, **dict(fields)}
    with pytest.raises(ValueError, match="name must be 'uniform' or one of"):
        tilt_config("q_power_2")


def test_plot_selection_draws_a_bar_per_candidate_and_cell_hatching_the_unsafe_ones():
    """plot_selection: candidates x cells bars with heights = ratio; exactly the cells
    with ratio < 1 or far_ratio > far_factor are hatched."""
    from zp_ref.apps.study_report import plot_selection
    scores = {"a": _cells((2.0, 1.0), (0.5, 1.0), (3.0, 1.6)),
              "b": _cells((1.5, 1.5), (4.0, 1.0), (1.0, 1.0))}
    fig = plot_selection({"scores": scores})
    bars = [p for p in fig.axes[0].patches]
    assert [round(b.get_height(), 12) for b in bars] == [2.0, 0.5, 3.0, 1.5, 4.0, 1.0]
    assert [bool(b.get_hatch()) for b in bars] == [False, True, True, False, False, False]


# ------------------------------------------------------------------ the SCMTrainer question
def _scm_report(pds: dict, b4: dict) -> dict:
    """Both SCMTrainer cells (constant LR) with the same per-seed pole distances and
    mean B4 error per arm (arm names without the zeroproofml/ prefix)."""
    methods = {f"zeroproofml/{arm}": {"schedules": {"constant": {
        "runs": [{"pole_distance": d} for d in p],
        "band_median_rel_err": {"B4": {"mean": b4[arm]}}}}} for arm, p in pds.items()}
    return {"config": {"lr_schedules": ["cosine", "constant"]},
            "targets": {t: {"methods": methods} for t in ("rational_1d", "rational_2d")}}


def test_the_scm_rule_recommends_the_safe_arm_of_larger_gain_else_uniform():
    """judge_scm: both arms safe -> the larger geometric gain; a far field beyond the
    factor makes an arm unsafe; none safe -> "uniform"; wins counts the seeds closer
    than uniform's same seed (ties are not wins)."""
    from zp_ref.apps.study_select import judge_scm
    pds = {"uniform": [1e-2, 1e-2, 4e-2], "model_driven_sqerr": [5e-3, 1e-2, 2e-2],
           "zeroproofml_adaptive": [2.5e-3, 2.5e-3, 1e-2]}
    b4 = dict.fromkeys(pds, 0.1)
    out = judge_scm(_scm_report(pds, b4))
    sq, ad = out["arms"]["model_driven_sqerr"], out["arms"]["zeroproofml_adaptive"]
    assert sq["gain"] == pytest.approx(4.0 ** (1 / 3), rel=1e-12) and sq["safe"]
    assert ad["gain"] == pytest.approx(4.0, rel=1e-12) and ad["safe"]
    assert out["recommended"] == "zeroproofml_adaptive"
    assert sq["wins"] == {"zeroproofml/rational_1d, constant": 2,
                          "zeroproofml/rational_2d, constant": 2}
    b4["zeroproofml_adaptive"] = 0.1 * FAR_FIELD_FACTOR * (1 + 1e-9)
    assert judge_scm(_scm_report(pds, b4))["recommended"] == "model_driven_sqerr"
    pds["model_driven_sqerr"] = [2e-2, 1e-2, 4e-2]                      # farther: unsafe
    assert judge_scm(_scm_report(pds, b4))["recommended"] == "uniform"


def test_the_scm_run_trains_only_zeroproofmls_models_on_ten_fresh_seeds():
    """scm_config: no run of the study's own model; uniform and SCM_ARMS under SCMTrainer
    at the constant rate on both zeroproofml targets; seeds 25-34."""
    from zp_ref.apps.study_select import SCM_ARMS, SCM_SEEDS, scm_config
    assert SCM_SEEDS == (25, 10) and SCM_ARMS == ("model_driven_sqerr", "zeroproofml_adaptive")
    cfg = scm_config()
    assert cfg.methods == cfg.constant_methods == ()
    assert cfg.zeroproofml_methods == ("uniform",) + SCM_ARMS
    for schedule in cfg.lr_schedules:
        assert cfg.methods_for(schedule, "adam") == ()
    assert cfg.targets == ("rational_1d", "rational_2d")
    assert scm_config(targets=("rational_2d",)).targets == ("rational_2d",)


def test_a_study_whose_arms_skip_a_target_reports_only_the_targets_run(tmp_path):
    """run_study with no arm on some targets (here: no arm at all) writes a report
    without them (it raised KeyError on the first target without runs) and no figure."""
    from zp_ref.apps.study import run_study
    cfg = dataclasses.replace(StudyConfig.quick(), targets=("rational_1d", "three_poles_1d"),
                              methods=(), constant_methods=(), zeroproofml_methods=())
    report = run_study(quick=True, seeds=1, out=tmp_path, progress=False, config=cfg)
    assert report["targets"] == {}
    assert (tmp_path / "study.json").exists() and not (tmp_path / "study.png").exists()


# ------------------------------------------------------------------ the pole-growth question
def _poles_report(pds: dict, bands: dict) -> dict:
    """One cell (rational_1d, cosine) with per-seed pole distances and mean B1, B2, B4
    errors per arm."""
    methods = {arm: {"schedules": {"cosine": {
        "runs": [{"pole_distance": d} for d in p],
        "band_median_rel_err": {b: {"mean": v} for b, v in zip(("B1", "B2", "B4"),
                                                                bands[arm])}}}}
        for arm, p in pds.items()}
    return {"config": {"lr_schedules": ["cosine", "constant"]},
            "targets": {"rational_1d": {"methods": methods}}}


def _judged_one_cell(judge, pds: dict, arm: str, arm_bands: tuple) -> tuple:
    """``judge`` on :func:`_poles_report` with B1, B2, B4 errors 0.9, 0.6, 0.01 for every
    arm but ``arm`` (``arm_bands``); (its output, the bands)."""
    bands = dict({a: (0.9, 0.6, 0.01) for a in pds}, **{arm: arm_bands})
    return judge(_poles_report(pds, bands)), bands


def test_the_pole_growth_rule_is_choose_over_both_growing_arms_with_its_references():
    """judge_poles: choose over POLES_CANDIDATES against uniform; vs_control and
    vs_oracle are the references' geometric-mean pole distance over the arm's; b1_b2 the
    arm's mean B1 and B2 errors."""
    from zp_ref.apps.study_select import POLES_CANDIDATES, judge_poles
    pds = {"uniform": [1e-4, 4e-4], "curriculum": [1e-6, 1e-6],
           "model_driven_grow": [5e-5, 2e-4], "model_driven_grow_poles": [1e-5, 1e-5],
           "uniform_grow": [2e-4, 2e-4]}
    bands = {a: (0.9, 0.6, 0.01) for a in pds}
    bands["model_driven_grow_poles"] = (0.4, 0.1, 0.01)
    out = judge_poles(_poles_report(pds, bands))
    cell = "rational_1d, cosine"
    assert out["chosen"] == "model_driven_grow_poles" and all(out["safe"].values())
    assert out["gains"]["model_driven_grow_poles"] == pytest.approx(20.0, rel=1e-12)
    assert out["vs_control"]["model_driven_grow_poles"][cell] == pytest.approx(20.0, rel=1e-12)
    assert out["vs_oracle"]["model_driven_grow_poles"][cell] == pytest.approx(0.1, rel=1e-12)
    assert out["b1_b2"]["model_driven_grow_poles"][cell] == [0.4, 0.1]
    assert out["vs_oracle"]["model_driven_grow"][cell] == pytest.approx(0.01, rel=1e-12)
    bands["model_driven_grow_poles"] = (0.4, 0.1, 0.01 * FAR_FIELD_FACTOR * (1 + 1e-9))
    assert judge_poles(_poles_report(pds, bands))["chosen"] == "model_driven_grow"
    assert POLES_CANDIDATES == ("model_driven_grow", "model_driven_grow_poles")


def test_the_pole_growth_run_has_its_arms_in_every_cell_on_fresh_seeds():
    """poles_config: POLES_ARMS under both schedules with the study's model, the same
    without the curriculum under SCMTrainer; seeds 35-39; the pole arm is the growing
    arm with growth='poles'."""
    from zp_ref.apps.study_arms import model_driven_config
    from zp_ref.apps.study_select import POLES_ARMS, POLES_SEEDS, poles_config
    assert POLES_SEEDS == (35, 5)
    cfg = poles_config()
    assert cfg.methods == cfg.constant_methods == POLES_ARMS
    assert cfg.zeroproofml_methods == tuple(a for a in POLES_ARMS if a != "curriculum")
    assert cfg.targets == StudyConfig.full().targets
    grow = model_driven_config("model_driven_grow", cfg)
    poles = model_driven_config("model_driven_grow_poles", cfg)
    assert poles == dataclasses.replace(grow, growth="poles") and grow.growth == "model"
    assert poles.label_budget == cfg.label_budget == 256 and poles.refine
    assert model_driven_config("model_driven_grow_poles_sqerr", cfg) == poles


def test_the_pole_arm_is_told_the_training_loss_and_its_sqerr_twin_the_squared_error():
    """model_driven_grow_poles's loss_fn is the model's training loss (as the eighth run
    registered; f2f20e0 told it the squared error by mistake); model_driven_grow_poles_sqerr
    is told (model.predict(x) - y)^2 (rtol 1e-15)."""
    import numpy as np
    import torch
    from zp_ref.apps.study_arms import ModelDrivenSource
    from zp_ref.apps.study_model import RationalModel, targets
    cfg = StudyConfig.quick()
    target = targets()["rational_1d"]
    x = np.linspace(-0.9, 0.9, 64)[:, None]
    y = target.evaluate(x)[0]
    model = RationalModel(1, 3, 3, seed=0).double()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    got = {}
    for arm in ("model_driven_grow_poles", "model_driven_grow_poles_sqerr"):
        src = ModelDrivenSource(arm, target, x, y, cfg, 0, model)
        assert src.config.growth == "poles" and src.sampler.y_fn is not None
        with torch.no_grad():
            got[arm] = src.sampler.loss_fn(xt, yt).numpy()
    with torch.no_grad():
        np.testing.assert_allclose(got["model_driven_grow_poles"],
                                   model.sample_loss(xt, yt).numpy(), rtol=1e-15)
        np.testing.assert_allclose(got["model_driven_grow_poles_sqerr"],
                                   ((model.predict(xt) - yt) ** 2).numpy(), rtol=1e-15)


# ------------------------------------------------------------------ the labels' poles question
def test_the_label_rule_is_choose_over_the_fixed_pool_arms_with_its_references():
    """judge_labels: choose over LABELS_CANDIDATES against uniform, each over the cells
    it ran; vs_oracle the true-Q curriculum's geometric-mean pole distance over the
    arm's; at_3x the cells at 3x in pole distance, B2 and B3."""
    from zp_ref.apps.study_select import LABELS_CANDIDATES, judge_labels
    pds = {"uniform": [1e-4, 4e-4], "curriculum": [1e-6, 1e-6],
           "model_driven_sqerr": [5e-5, 2e-4], "model_driven_sqerr_labels": [4e-5, 1e-4],
           "curriculum_labels": [1e-5, 1e-5]}
    bands = {a: (0.9, 0.6, 0.01) for a in pds}
    bands["curriculum_labels"] = (0.4, 0.1, 0.01)

    def report():
        out = _poles_report(pds, bands)
        for arm in pds:                          # B3: 3x uniform's for curriculum_labels
            out["targets"]["rational_1d"]["methods"][arm]["schedules"]["cosine"][
                "band_median_rel_err"]["B3"] = {"mean": 0.03 if arm == "curriculum_labels"
                                                else 0.09}
        return out
    out = judge_labels(report())
    cell = "rational_1d, cosine"
    assert out["chosen"] == "curriculum_labels" and all(out["safe"].values())
    assert out["gains"]["curriculum_labels"] == pytest.approx(20.0, rel=1e-12)
    assert out["vs_oracle"]["curriculum_labels"][cell] == pytest.approx(0.1, rel=1e-12)
    assert out["b1_b2"]["curriculum_labels"][cell] == [0.4, 0.1]
    assert out["at_3x"] == {"model_driven_sqerr": [], "model_driven_sqerr_labels": [],
                            "curriculum_labels": [cell]}
    bands["curriculum_labels"] = (0.4, 0.1, 0.01 * FAR_FIELD_FACTOR * (1 + 1e-9))
    assert judge_labels(report())["chosen"] == "model_driven_sqerr_labels"
    assert LABELS_CANDIDATES == ("model_driven_sqerr", "model_driven_sqerr_labels",
                                 "curriculum_labels")


def test_the_label_run_has_its_arms_in_every_cell_on_fresh_seeds():
    """labels_config: LABELS_ARMS under both schedules with the study's model, the same
    without the curricula under SCMTrainer; seeds 40-44; the label arm is the fixed-pool
    recommendation with q_signal='labels' and schedule='bands'."""
    from zp_ref.apps.study_arms import SQUARED_ERROR_METHODS, model_driven_config
    from zp_ref.apps.study_select import LABELS_ARMS, LABELS_SEEDS, labels_config
    assert LABELS_SEEDS == (40, 5)
    cfg = labels_config()
    assert cfg.methods == cfg.constant_methods == LABELS_ARMS
    assert cfg.zeroproofml_methods == ("uniform", "model_driven_sqerr",
                                       "model_driven_sqerr_labels")
    assert cfg.targets == StudyConfig.full().targets
    base = model_driven_config("model_driven_sqerr", cfg)
    assert model_driven_config("model_driven_sqerr_labels", cfg) == dataclasses.replace(
        base, q_signal="labels", schedule="bands")
    assert {"model_driven_sqerr", "model_driven_sqerr_labels"} <= set(SQUARED_ERROR_METHODS)


# ------------------------------------------------------------------ uniform within bands
def test_the_within_rule_is_choose_over_the_fixed_pool_arms_and_the_uniform_curricula():
    """judge_within: choose over WITHIN_CANDIDATES against uniform; a curriculum that is
    closer but loses the far field by more than FAR_FIELD_FACTOR is not chosen; the
    recommendation's entries are judge_labels' own."""
    from zp_ref.apps.study_within import WITHIN_CANDIDATES, judge_within
    pds = {"uniform": [1e-4, 4e-4], "curriculum": [1e-6, 1e-6],
           "model_driven_sqerr": [5e-5, 2e-4], "curriculum_labels_floor": [2e-5, 8e-5],
           "curriculum_labels": [1e-5, 1e-5], "curriculum_poles_floor": [1e-4, 4e-4],
           "curriculum_poles": [4e-6, 4e-6]}
    bands = {a: (0.9, 0.6, 0.01) for a in pds}
    bands["curriculum_labels"] = (0.4, 0.1, 0.01 * FAR_FIELD_FACTOR * (1 + 1e-9))
    bands["curriculum_poles"] = (0.3, 0.1, 0.02)
    report = _poles_report(pds, bands)
    for arm in pds:                              # B3: 3x uniform's for curriculum_poles
        report["targets"]["rational_1d"]["methods"][arm]["schedules"]["cosine"][
            "band_median_rel_err"]["B3"] = {"mean": 0.03 if arm == "curriculum_poles"
                                            else 0.09}
    out = judge_within(report)
    cell = "rational_1d, cosine"
    assert out["at_3x"]["curriculum_poles"] == [cell]
    assert out["at_3x"]["curriculum_labels"] == []
    assert out["chosen"] == "curriculum_labels_floor"
    assert out["safe"] == {"model_driven_sqerr": True, "curriculum_labels_floor": True,
                           "curriculum_labels": False, "curriculum_poles_floor": True,
                           "curriculum_poles": False}
    assert out["gains"]["curriculum_labels_floor"] == pytest.approx(5.0, rel=1e-12)
    assert out["gains"]["curriculum_poles_floor"] == pytest.approx(1.0, rel=1e-12)
    assert out["vs_oracle"]["curriculum_poles"][cell] == pytest.approx(0.25, rel=1e-12)
    assert out["b1_b2"]["curriculum_poles"][cell] == [0.3, 0.1]
    assert WITHIN_CANDIDATES == ("model_driven_sqerr", "curriculum_labels_floor",
                                 "curriculum_labels", "curriculum_poles_floor",
                                 "curriculum_poles")


def test_the_within_run_draws_uniformly_inside_the_bands_on_fresh_seeds():
    """within_config: WITHIN_ARMS under both schedules with the study's model only, every
    target, curriculum_within='uniform' and nothing else changed from the full study;
    seeds 45-49, after the ninth run's 40-44."""
    from zp_ref.apps.study_within import WITHIN_ARMS, WITHIN_SEEDS, within_config
    assert WITHIN_SEEDS == (45, 5)
    cfg = within_config()
    assert cfg.methods == cfg.constant_methods == WITHIN_ARMS
    assert cfg.zeroproofml_methods == () and cfg.curriculum_within == "uniform"
    assert dataclasses.replace(cfg, methods=StudyConfig.full().methods,
                               constant_methods=StudyConfig.full().constant_methods,
                               zeroproofml_methods=StudyConfig.full().zeroproofml_methods,
                               curriculum_within="importance") == StudyConfig.full()
    assert within_config(["spurious_1d"]).targets == ("spurious_1d",)


def test_the_replication_runs_the_chosen_arm_and_the_previous_recommendation_on_new_seeds():
    """within_config(arms=REPLICATION_ARMS): the same study as the tenth run's with three
    arms, on seeds 50-54 (after 45-49); judge_replication is choose over the previous
    recommendation and the chosen curriculum, which loses when its far field is above
    FAR_FIELD_FACTOR times uniform's."""
    from zp_ref.apps.study_within import (REPLICATION_ARMS, REPLICATION_SEEDS, WITHIN_ARMS,
                                          judge_replication, within_config)
    assert REPLICATION_SEEDS == (50, 5)
    cfg = within_config(arms=REPLICATION_ARMS)
    assert cfg.methods == cfg.constant_methods == REPLICATION_ARMS
    assert dataclasses.replace(cfg, methods=WITHIN_ARMS,
                               constant_methods=WITHIN_ARMS) == within_config()
    pds = {"uniform": [1e-4, 4e-4], "model_driven_sqerr": [5e-5, 2e-4],
           "curriculum_labels_floor": [2e-5, 8e-5]}
    bands = {a: (0.9, 0.6, 0.01) for a in pds}
    report = _poles_report(pds, bands)
    for arm in pds:
        report["targets"]["rational_1d"]["methods"][arm]["schedules"]["cosine"][
            "band_median_rel_err"]["B3"] = {"mean": 0.09}
    assert judge_replication(report)["chosen"] == "curriculum_labels_floor"
    report["targets"]["rational_1d"]["methods"]["curriculum_labels_floor"]["schedules"][
        "cosine"]["band_median_rel_err"]["B4"] = {"mean": 0.01 * FAR_FIELD_FACTOR * 1.01}
    out = judge_replication(report)
    assert out["chosen"] == "model_driven_sqerr" and out["vs_oracle"] == {
        "model_driven_sqerr": {}, "curriculum_labels_floor": {}}


def test_the_wider_floor_is_recommended_only_when_safe_on_each_seed_set_alone():
    """judge_floor70: curriculum_labels_floor70 against uniform in each of the two reports
    (seeds 55-59, 60-64); recommended only when is_safe holds in both, so a far field
    above FAR_FIELD_FACTOR in one set refuses it."""
    from zp_ref.apps.study_within import (FLOOR70_ARMS, FLOOR70_SEEDS, judge_floor70,
                                          within_config)
    assert FLOOR70_SEEDS == ((55, 5), (60, 5))
    assert within_config(arms=FLOOR70_ARMS).methods == ("uniform", "curriculum_labels_floor70")
    pds = {"uniform": [1e-4, 4e-4], "curriculum_labels_floor70": [5e-5, 2e-4]}
    bands = {a: (0.9, 0.6, 0.01) for a in pds}
    out = judge_floor70([_poles_report(pds, bands), _poles_report(pds, bands)])
    assert out["safe"] == [True, True] and out["recommended"]
    assert out["gains"] == [pytest.approx(2.0, rel=1e-12)] * 2
    worse = dict(bands, curriculum_labels_floor70=(0.9, 0.6, 0.01 * FAR_FIELD_FACTOR * 1.01))
    out = judge_floor70([_poles_report(pds, bands), _poles_report(pds, worse)])
    assert out["safe"] == [True, False] and not out["recommended"]


def test_a_run_on_several_seed_sets_judges_one_report_per_set_from_its_own_folder(
        tmp_path, monkeypatch):
    """_run_judged with ((first, count), ...): one run_study per set into out/seeds_<first>,
    judge() given the reports in that order and judgement.json written; a subset of the
    targets returns {"reports": [...]} and writes no judgement; one (first, count) keeps
    one report in out itself."""
    import json

    from zp_ref.apps import study_select
    calls = []

    def fake_run_study(**kw):
        calls.append((kw["first_seed"], kw["seeds"], str(kw["out"])))
        return {"first": kw["first_seed"]}
    monkeypatch.setattr(study_select, "run_study", fake_run_study)
    judge = lambda reports: {"firsts": [r["first"] for r in reports]}      # noqa: E731
    every = ("a", "b")
    out = study_select._run_judged(tmp_path, ((55, 5), (60, 3)), None, judge, every, None,
                                   False)
    assert out == {"firsts": [55, 60]}
    assert calls == [(55, 5, str(tmp_path / "seeds_55")), (60, 3, str(tmp_path / "seeds_60"))]
    assert json.loads((tmp_path / "judgement.json").read_text()) == out
    (tmp_path / "judgement.json").unlink()
    assert study_select._run_judged(tmp_path, ((55, 5), (60, 3)), None, judge, every, ("a",),
                                    False) == {"reports": [{"first": 55}, {"first": 60}]}
    assert not (tmp_path / "judgement.json").exists()
    calls.clear()
    assert study_select._run_judged(tmp_path, (40, 5), None, lambda r: r, every, ("a",),
                                    False) == {"first": 40}
    assert calls == [(40, 5, str(tmp_path))]


def test_the_cosine_run_recommends_a_curriculum_only_when_safe_on_each_seed_set_alone():
    """cosine_config: the tenth run's study under the cosine decay alone, on seeds 65-74;
    judge_cosine: of the candidates safe on both sets, the larger pooled geometric gain;
    a far field above FAR_FIELD_FACTOR on one set makes a candidate unsafe, and with
    neither safe nothing is chosen."""
    from zp_ref.apps.study_within import (COSINE_ARMS, COSINE_CANDIDATES, COSINE_SEEDS,
                                          cosine_config, judge_cosine, within_config)
    assert COSINE_SEEDS == ((65, 5), (70, 5))
    assert COSINE_CANDIDATES == ("curriculum_labels", "curriculum_poles")
    cfg = cosine_config()
    assert cfg.lr_schedules == ("cosine",) and cfg.curriculum_within == "uniform"
    assert dataclasses.replace(cfg, lr_schedules=("cosine", "constant")) == within_config(
        arms=COSINE_ARMS)
    assert [j[3] for j in _jobs(cfg, 1)] == ["cosine"] * len(_jobs(cfg, 1))
    pds = {"uniform": [1e-4, 4e-4], "curriculum_labels": [1e-5, 4e-5],
           "curriculum_poles": [2e-6, 8e-6], "curriculum_labels_floor70": [5e-5, 2e-4]}
    bands = {a: (0.9, 0.6, 0.01) for a in pds}
    report = _poles_report(pds, bands)
    for arm in pds:
        report["targets"]["rational_1d"]["methods"][arm]["schedules"]["cosine"][
            "band_median_rel_err"]["B3"] = {"mean": 0.3 if arm == "uniform" else 0.09}
    out = judge_cosine([report, report])
    assert out["chosen"] == "curriculum_poles" and all(out["safe"].values())
    assert out["pooled"]["curriculum_poles"] == pytest.approx(50.0, rel=1e-12)
    assert out["gains"]["curriculum_labels_floor70"] == [pytest.approx(2.0, rel=1e-12)] * 2
    assert out["at_3x"]["curriculum_labels"] == [[]] * 2      # B2 0.6 -> 0.6: 1x
    worse = copy.deepcopy(report)
    worse["targets"]["rational_1d"]["methods"]["curriculum_poles"]["schedules"]["cosine"][
        "band_median_rel_err"]["B4"] = {"mean": 0.01 * FAR_FIELD_FACTOR * 1.01}
    out = judge_cosine([report, worse])
    assert not out["safe"]["curriculum_poles"] and out["chosen"] == "curriculum_labels"
    worse["targets"]["rational_1d"]["methods"]["curriculum_labels"]["schedules"]["cosine"][
        "band_median_rel_err"]["B4"] = {"mean": 0.01 * FAR_FIELD_FACTOR * 1.01}
    assert judge_cosine([worse, report])["chosen"] is None


def test_the_scm_labels_run_recommends_the_floored_curriculum_only_when_it_is_safe():
    """scm_labels_config: zeroproofml's models under SCMTrainer only (constant rate), the
    curricula uniform inside the bands, seeds 75-84; judge_scm_labels: recommended exactly
    when curriculum_labels_floor70 is safe; model_driven_sqerr reported beside it."""
    from zp_ref.apps.study_within import (SCM_LABELS_ARMS, SCM_LABELS_SEEDS,
                                          judge_scm_labels, scm_labels_config)
    assert SCM_LABELS_SEEDS == (75, 10)
    cfg = scm_labels_config()
    assert cfg.methods == cfg.constant_methods == () and cfg.curriculum_within == "uniform"
    assert cfg.zeroproofml_methods == SCM_LABELS_ARMS and cfg.zeroproofml_schedules == (
        "constant",)
    assert {j[1] for j in _jobs(cfg, 1)} == {"zeroproofml"} or not _jobs(cfg, 1)
    assert scm_labels_config(targets=("rational_2d",)).targets == ("rational_2d",)
    pds = {"uniform": [1e-2, 1e-2, 4e-2], "model_driven_sqerr": [5e-3, 1e-2, 2e-2],
           "curriculum_labels_floor70": [2.5e-3, 2.5e-3, 1e-2]}
    b4 = dict.fromkeys(pds, 0.1)
    out = judge_scm_labels(_scm_report(pds, b4))
    assert out["recommended"] and set(out["arms"]) == set(SCM_LABELS_ARMS[1:])
    assert out["arms"]["curriculum_labels_floor70"]["gain"] == pytest.approx(4.0, rel=1e-12)
    b4["curriculum_labels_floor70"] = 0.1 * FAR_FIELD_FACTOR * (1 + 1e-9)
    out = judge_scm_labels(_scm_report(pds, b4))
    assert not out["recommended"] and out["arms"]["model_driven_sqerr"]["safe"]


def test_the_growing_label_curriculum_is_recommended_only_when_safe_and_ahead_of_its_control():
    """grow_labels_config: the cosine run's study with GROW_LABELS_ARMS on seeds 85-89;
    judge_grow_labels: recommended exactly when curriculum_labels_grow is safe and at least
    as close as its uniform-growth control in every cell; vs_control, vs_fixed and
    vs_oracle are the references' geometric-mean pole distances over the arm's."""
    from zp_ref.apps.study_within import (GROW_LABELS_ARMS, GROW_LABELS_SEEDS,
                                          cosine_config, grow_labels_config,
                                          judge_grow_labels)
    assert GROW_LABELS_SEEDS == (85, 5)
    assert grow_labels_config() == cosine_config(arms=GROW_LABELS_ARMS)
    pds = {"uniform": [1e-4, 4e-4], "curriculum": [1e-6, 4e-6],
           "curriculum_labels": [4e-6, 1.6e-5], "curriculum_labels_grow": [2e-6, 8e-6],
           "curriculum_labels_grow_uniform": [4e-6, 1.6e-5]}
    out, bands = _judged_one_cell(judge_grow_labels, pds, "curriculum_labels_grow",
                                  (0.3, 0.02, 0.01))
    cell = "rational_1d, cosine"
    assert out["recommended"] and out["safe"]["curriculum_labels_grow"]
    assert out["vs_control"][cell] == pytest.approx(2.0, rel=1e-12)
    assert out["vs_fixed"][cell] == pytest.approx(2.0, rel=1e-12)
    assert out["vs_oracle"][cell] == pytest.approx(0.5, rel=1e-12)
    assert out["b1_b2"]["curriculum_labels_grow"][cell] == [0.3, 0.02]
    pds["curriculum_labels_grow_uniform"] = [1e-6, 4e-6]           # the control is closer
    assert not judge_grow_labels(_poles_report(pds, bands))["recommended"]
    pds["curriculum_labels_grow_uniform"] = [4e-6, 1.6e-5]
    bands["curriculum_labels_grow"] = (0.3, 0.02, 0.01 * FAR_FIELD_FACTOR * 1.01)
    assert not judge_grow_labels(_poles_report(pds, bands))["recommended"]
