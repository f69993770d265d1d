"""The study's growing label curricula (zp_ref.apps.study_arms.LabelGrowSource):
``curriculum_labels_grow`` adds its label budget at the labels' pole brackets every epoch,
``curriculum_labels_grow_uniform`` (its control) the uniform_grow arm's points."""
import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")

from zp_ref.apps.study import StudyConfig  # noqa: E402
from zp_ref.apps.study_arms import LABEL_GROW_START, GROW_STREAM, make_source  # noqa: E402
from zp_ref.apps.study_model import targets, true_poles  # noqa: E402
from zp_ref.model_driven_growth import (at_brackets, pole_brackets,  # noqa: E402
                                         pool_geometry)
from zp_ref.rng import uniforms  # noqa: E402

#: label_budget 64, 6 epochs of 40 batches of 128, uniform inside the bands (as the study's
#: curricula since the tenth run)
CFG = dataclasses.replace(StudyConfig.quick(), curriculum_within="uniform")


def _pool(n=512):
    target = targets()["rational_1d"]
    x = ((np.arange(n) + 0.5) / n * 2.0 - 1.0)[:, None]
    return target, x, target.evaluate(x)[0]


def _epochs(source, n):
    batches = []
    for epoch in range(n):
        batches.append(source.epoch_batches(epoch))
        source.end_epoch()
    return batches


def test_the_control_grows_exactly_the_uniform_growth_arms_points():
    """curriculum_labels_grow_uniform's pool after 3 epochs equals uniform_grow's (same
    seed, same budget), row for row."""
    target, x, y = _pool()
    ours = make_source("curriculum_labels_grow_uniform", target, x, y, None, CFG, 3, None)
    ref = make_source("uniform_grow", target, x, y, None, CFG, 3, None)
    _epochs(ours, 3)
    for epoch in range(3):
        ref.epoch_batches(epoch)
    assert ours.pool()[0].shape[0] == x.shape[0] + 3 * CFG.label_budget
    np.testing.assert_array_equal(ours.pool()[0].numpy(), ref.pool()[0].numpy())
    np.testing.assert_array_equal(ours.pool()[1].numpy(), ref.pool()[1].numpy())


def test_the_growing_curriculum_adds_its_budget_at_the_labels_pole_brackets():
    """Each epoch's new rows are at_brackets over pole_brackets of the pool before it
    (budget // 16 brackets, 4 spacings of the initial pool apart; uniforms of GROW_STREAM
    from LABEL_GROW_START), every bracket's centre is within a spacing of a true pole, and
    the curriculum draws from the grown pool, new rows included once it reaches the near
    bands."""
    target, x, y = _pool()
    source = make_source("curriculum_labels_grow", target, x, y, None, CFG, 5, None)
    h, n, poles = pool_geometry(x, "x")[2], CFG.label_budget, true_poles(target)
    px, py = x, y
    for epoch in range(CFG.epochs):
        batches = source.epoch_batches(epoch)
        source.end_epoch()
        a, b = pole_brackets(px, py, n // 16, 4 * h)
        assert a.shape[0] > 0 and np.all(np.abs(0.5 * (a + b) - poles[None, :]).min(axis=1)
                                          <= h)
        u = uniforms(5, GROW_STREAM, 2 * n, start=LABEL_GROW_START + 2 * epoch * n,
                     backend="numpy").reshape(n, 2)
        expected = np.clip(at_brackets(a, b, n, h, u), *target.bounds[0])
        gx, gy = (t.numpy() for t in source.pool())
        np.testing.assert_array_equal(gx[px.shape[0]:], expected)
        np.testing.assert_array_equal(gy[px.shape[0]:], target.evaluate(expected)[0])
        px, py = gx, gy
        drawn = np.concatenate(batches)
        assert drawn.max() < gx.shape[0]
    assert (drawn >= x.shape[0]).any()      # the last (near) stage draws new rows


class _EvenPole:
    """A target whose pole at 0.2 has even order: its labels never change sign."""
    dim, bounds = 1, ((-1.0, 1.0),)

    @staticmethod
    def evaluate(x):
        q = (np.asarray(x)[:, 0] - 0.2) ** 2
        return 1.0 / q, q


def test_without_a_bracket_the_growing_curriculum_adds_the_controls_uniform_points():
    _, x, _ = _pool()
    y = _EvenPole.evaluate(x)[0]
    ours = make_source("curriculum_labels_grow", _EvenPole, x, y, None, CFG, 2, None)
    ref = make_source("curriculum_labels_grow_uniform", _EvenPole, x, y, None, CFG, 2, None)
    _epochs(ours, 2)
    _epochs(ref, 2)
    np.testing.assert_array_equal(ours.pool()[0].numpy(), ref.pool()[0].numpy())
