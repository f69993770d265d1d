"""q_signal="labels" (zp_ref.model_driven_growth.pole_distances): the model-driven learner's
distance signal taken from the poles the labels show (sign changes of y with large |y|
at both ends) instead of the model's Q."""
import numpy as np
import pytest

from zp_ref.model_driven import ModelDrivenConfig, ModelDrivenLearner, run_refresh
from zp_ref.model_driven_growth import SIGNAL_BRACKETS, pole_brackets, pole_distances

POLE, ZERO = 0.23713, 0.61


def midpoints(n=2000):
    return (np.arange(n) + 0.5) / n * 2.0 - 1.0


def refreshed(x, y, **config):
    learner = ModelDrivenLearner(x, config=ModelDrivenConfig(loss_power=None, **config),
                                 batch_size=64)
    run_refresh(learner, 0, signals=lambda r: {"q": np.ones(len(y))[r], "y": y[r]})
    return learner


def test_pole_distances_are_the_distance_to_the_nearest_bracket_centre_in_spacings():
    x = midpoints()[:, None]
    poles = np.array([-0.7003, 0.40017])
    y = (x[:, 0] - ZERO) / np.prod(x - poles[None, :], axis=1)
    h = 2.0 / x.shape[0]
    a, b = pole_brackets(x, y, SIGNAL_BRACKETS, 4 * h)
    centres = 0.5 * (a + b)[:, 0]
    assert centres.size == 2                     # the two poles, not the zero at 0.61
    expected = np.abs(x[:, 0, None] - centres[None, :]).min(axis=1) / h
    np.testing.assert_allclose(pole_distances(x, y, h), expected, rtol=1e-12, atol=0)


def test_without_a_pole_every_distance_is_inf_and_the_weights_are_uniform():
    x = midpoints(500)
    y = x - ZERO                                 # a sign change at a zero only
    assert np.isinf(pole_distances(x[:, None], y, 2.0 / 500)).all()
    np.testing.assert_array_equal(refreshed(x, y, q_signal="labels").weights,
                                  np.full(500, 1 / 500))


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_label_weights_are_the_clipped_inverse_distance_and_ignore_the_models_q(power):
    x = midpoints()
    y = (x - ZERO) / (x - POLE)
    learner = refreshed(x, y, q_signal="labels", q_power=power)
    d = pole_distances(x[:, None], y, learner.spacing)
    w = np.maximum(d, 1.0) ** -power
    np.testing.assert_allclose(learner.weights, w / w.sum(), rtol=1e-12, atol=0)
    assert not learner.needs_grad and learner.needs_y
    other = ModelDrivenLearner(x, config=learner.config, batch_size=64)
    run_refresh(other, 0, signals=lambda r: {"q": (1e3 * x - 7.0)[r], "y": y[r]})
    np.testing.assert_array_equal(other.weights, learner.weights)


def test_label_signal_needs_the_labels():
    x = midpoints(100)
    learner = ModelDrivenLearner(x, config=ModelDrivenConfig(q_signal="labels",
                                                             loss_power=None), batch_size=8)
    with pytest.raises(ValueError, match="needs 'y'"):
        run_refresh(learner, 0, signals=lambda r: {"q": np.ones(100)[r]})


def test_label_bands_put_the_nearest_pool_fraction_at_the_data_pole():
    x = midpoints()
    y = (x - ZERO) / (x - POLE)
    learner = refreshed(x, y, q_signal="labels", schedule="bands")
    near = x[learner.band_ids() == 0]
    assert near.size == 2 and np.abs(near - POLE).max() < 2 * learner.spacing


def test_label_distance_of_the_study_arm_is_in_units_of_x_and_floored():
    pytest.importorskip("torch")                 # zp_ref.apps.study_arms imports the bridge
    from zp_ref.apps.study_arms import label_distance
    x = midpoints()
    y = (x - ZERO) / (x - POLE)
    d = label_distance(x, y, 1e-6)
    h = 2.0 / x.size
    np.testing.assert_allclose(d, np.maximum(pole_distances(x[:, None], y, h) * h, 1e-6),
                               rtol=1e-12, atol=0)
    assert d.min() == pytest.approx(abs(x[np.argmin(np.abs(x - POLE))] - x[
        np.argsort(np.abs(x - POLE))[1]]) / 2, rel=1e-9)


def test_the_torch_sampler_refuses_the_label_signal_without_y_pool():
    torch = pytest.importorskip("torch")
    from zp_ref.bridges.torch_model import ModelDrivenSampler
    x = torch.from_numpy(midpoints(100)[:, None])
    with pytest.raises(ValueError, match="one label per pool row.*got y_pool of shape None"):
        ModelDrivenSampler(x, 8, 2, q_fn=lambda t: t[:, 0],
                           config=ModelDrivenConfig(q_signal="labels", loss_power=None))


def test_label_pole_distance_is_in_units_of_x_and_checks_its_inputs():
    from zp_ref.model_driven_growth import label_pole_distance
    x = midpoints()
    y = (x - ZERO) / (x - POLE)
    np.testing.assert_allclose(label_pole_distance(x, y),
                               pole_distances(x[:, None], y, 2.0 / x.size) * (2.0 / x.size),
                               rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match=r"y must hold one finite label per row of x "
                       r"\(shape \(2000,\) or \(2000, 1\)\), got shape \(1999,\)"):
        label_pole_distance(x, y[:-1])
    with pytest.raises(ValueError, match="positive width"):
        label_pole_distance(np.ones(10), np.arange(10.0))
    with pytest.raises(ValueError, match="y"):
        label_pole_distance(x, np.where(x > 0, np.nan, y))


def test_the_floored_label_curriculum_keeps_half_of_every_stage_on_the_far_band():
    pytest.importorskip("torch")
    from zp_ref.apps.study import StudyConfig
    from zp_ref.apps.study_arms import CURRICULUM_FAR_FLOOR, make_source
    from zp_ref.apps.study_model import targets
    from zp_ref.curriculum import default_stages
    target, cfg = targets()["rational_1d"], StudyConfig.quick()
    x = midpoints(512)[:, None]
    y = target.evaluate(x)[0]
    got = {m: make_source(m, target, x, y, None, cfg, 0, None).sampler.curriculum.stages
           for m in ("curriculum_labels", "curriculum_labels_floor",
                     "curriculum_labels_floor70")}
    np.testing.assert_array_equal(got["curriculum_labels"], default_stages(5))
    np.testing.assert_array_equal(got["curriculum_labels_floor"],
                                  default_stages(5, CURRICULUM_FAR_FLOOR))
    np.testing.assert_array_equal(got["curriculum_labels_floor70"], default_stages(5, 0.7))
    assert CURRICULUM_FAR_FLOOR == 0.5


def test_the_recommended_label_curriculum_falls_back_to_uniform_without_a_sign_change():
    """The fixed-pool recommendation (docs/torch.md: label_pole_distance as the Q of
    BandCurriculum(default_stages(5, 0.7), within="uniform")) on a target whose pole has
    even order: no bracket, every row in the far band, and 6 epochs x 10 batches of 100
    draws spread uniformly over the pool (chi-square over 10 equal index bins, seed 0,
    p > 1e-3), with no band other than the far one drawn."""
    from scipy.stats import chisquare

    from zp_ref.bands import default_stages
    from zp_ref.curriculum import BandCurriculum
    from zp_ref.model_driven_growth import label_pole_distance
    x = midpoints()
    q = label_pole_distance(x, 1.0 / (x - POLE) ** 2)
    assert np.isinf(q).all()
    cur = BandCurriculum(default_stages(5, 0.7), epochs_per_stage=2, within="uniform", seed=0)
    draws = []
    for epoch in range(6):
        for _ in range(10):
            idx, counts = cur.sample(q, 100, epoch)
            assert counts.tolist() == [0, 0, 0, 0, 100]
            draws.append(idx)
    assert cur.current_stage == 2
    hist = np.bincount(np.concatenate(draws) * 10 // x.size, minlength=10)
    assert chisquare(hist).pvalue > 1e-3
