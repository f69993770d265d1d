"""PoleDistance: the distance to the nearest pole of the model's Q or of the labels, as a
curriculum's Q (zp_ref.bridges.torch_poles)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from zp_ref.bridges.torch import CurriculumBatchSampler  # noqa: E402
from zp_ref.bridges.torch_poles import PoleDistance  # noqa: E402
from zp_ref.curriculum import BandCurriculum  # noqa: E402
from zp_ref.model_driven_growth import bracket_centres, distance_to, pool_geometry  # noqa: E402

POLE, MODEL_POLE = 0.3, -0.5


def _pool(n=2001):
    x = np.linspace(-1.0, 1.0, n)
    return x, np.exp(x / 2) / (x - POLE + 1e-7)


def _linear_q(root, scale=1.0):
    return lambda x: scale * (x.reshape(-1) - root)


def test_model_term_is_the_distance_to_the_model_pole_whatever_its_scale():
    x = torch.linspace(-1.0, 1.0, 257, dtype=torch.float64)
    ref = np.abs(x.numpy() - MODEL_POLE)
    for scale in (1e-3, 1.0, 1e3):
        got = PoleDistance(_linear_q(MODEL_POLE, scale))(x).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)


def test_model_term_takes_its_gradient_under_no_grad():
    x = torch.linspace(-1.0, 1.0, 33, dtype=torch.float64)
    with torch.no_grad():
        got = PoleDistance(lambda t: (t.reshape(-1) - 0.25) ** 2 + 0.0)(x).numpy()
    # |q| / |q'| for q = (x - a)^2 is |x - a| / 2
    np.testing.assert_allclose(got, np.abs(x.numpy() - 0.25) / 2, rtol=1e-12, atol=1e-15)


def test_labels_term_is_the_distance_to_the_bracket_centre():
    x, y = _pool()
    xs, _, h = pool_geometry(x, "x")
    centres = bracket_centres(xs, y, h)
    assert centres.shape == (1, 1)
    assert abs(centres[0, 0] - POLE) <= h          # the sign change brackets the pole
    got = PoleDistance(x_pool=x, y_pool=y)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, np.abs(x - centres[0, 0]))
    np.testing.assert_array_equal(distance_to(centres, xs), got)


def test_union_is_the_smaller_distance_with_the_floor():
    x, y = _pool()
    labels = PoleDistance(x_pool=x, y_pool=y)(torch.from_numpy(x)).numpy()
    model = np.abs(x - MODEL_POLE)
    got = PoleDistance(_linear_q(MODEL_POLE), x, y, floor=1e-3)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, np.maximum(np.minimum(model, labels), 1e-3),
                               rtol=1e-12, atol=1e-15)
    assert got.min() == 1e-3


def test_no_pole_in_the_labels_leaves_the_model_term():
    x = np.linspace(-1.0, 1.0, 501)
    y = np.exp(x)                                  # no sign change: no bracket
    dist = PoleDistance(_linear_q(MODEL_POLE), x, y)
    assert dist.centres.shape == (0, 1)
    np.testing.assert_allclose(dist(torch.from_numpy(x)).numpy(), np.abs(x - MODEL_POLE),
                               rtol=1e-12, atol=1e-15)
    assert np.isinf(PoleDistance(x_pool=x, y_pool=y)(torch.from_numpy(x)).numpy()).all()


def test_curriculum_on_pole_distance_draws_what_the_array_draws():
    x, y = _pool(4096)
    dist = PoleDistance(_linear_q(MODEL_POLE), x, y, floor=1e-6)
    q = dist(torch.from_numpy(x)).numpy()

    def batches(**source):
        s = CurriculumBatchSampler(batch_size=64, num_batches=5, seed=3,
                                   curriculum=BandCurriculum(seed=3, backend="numpy"),
                                   **source)
        out = []
        for epoch in range(3):
            s.set_epoch(epoch)
            out.append(np.array(s.batches()))
            s.update()
        return out
    for a, b in zip(batches(x_pool=torch.from_numpy(x), q_fn=dist, refresh_every=1),
                    batches(q_pool=q)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((), {}, ValueError, "needs q_fn"),
    ((None, np.zeros(4)), {}, ValueError, "x_pool and y_pool must be given together"),
    (("q",), {}, TypeError, "q_fn must be callable"),
    ((_linear_q(0.0),), {"floor": -1.0}, ValueError, r"floor must be in \[0.0, inf\], got -1.0"),
    ((_linear_q(0.0),), {"floor": float("nan")}, ValueError, "floor must be finite, got nan"),
    ((None, np.linspace(0, 1, 5), np.ones(4)), {}, ValueError,
     r"y_pool must hold one finite label per row of x_pool \(shape \(5,\) or \(5, 1\)\)"),
    ((None, np.linspace(0, 1, 5), [1, 2, np.nan, 4, 5]), {}, ValueError,
     r"y_pool must be finite: 1 non-finite value\(s\), first at index 2"),
])
def test_bad_arguments_are_refused_by_name(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        PoleDistance(*args, **kwargs)


def test_a_q_head_without_gradient_is_refused():
    x = torch.linspace(-1.0, 1.0, 9, dtype=torch.float64)
    with pytest.raises(ValueError, match="no gradient with respect to x"):
        PoleDistance(lambda t: torch.ones(t.shape[0], dtype=torch.float64))(x)
    with pytest.raises(ValueError, match=r"q_fn must return shape \(9,\) or \(9, 1\), got \(1,\)"):
        PoleDistance(lambda t: t.sum().reshape(1))(x)


def test_the_pole_curricula_of_the_study_band_on_the_model_and_the_labels():
    from zp_ref.apps.study import StudyConfig, _build_model
    from zp_ref.apps.study_arms import CURRICULUM_FAR_FLOOR, POLE_Q_METHODS, make_source
    from zp_ref.apps.study_model import targets
    from zp_ref.curriculum import default_stages
    target, cfg = targets()["rational_1d"], StudyConfig.quick()
    x = (np.arange(512)[:, None] + 0.5) / 256 - 1.0        # midpoints of [-1, 1]
    y = target.evaluate(x)[0]
    model = _build_model(target, "adam", 0)
    got = {m: make_source(m, target, x, y, None, cfg, 0, model).sampler
           for m in POLE_Q_METHODS}
    dist = got["curriculum_poles"].q_fn
    assert isinstance(dist, PoleDistance) and dist.floor == cfg.q_floor
    # the labels' centres: one per pole of (x + 0.375)(x - 0.625), within a spacing (2/512)
    np.testing.assert_allclose(np.sort(dist.centres[:, 0]), [-0.375, 0.625], atol=2 / 512)
    np.testing.assert_array_equal(got["curriculum_poles"].curriculum.stages, default_stages(5))
    np.testing.assert_array_equal(got["curriculum_poles_floor"].curriculum.stages,
                                  default_stages(5, CURRICULUM_FAR_FLOOR))
