"""ActiveSampler as a learner: ask() / tell(values), and refine() as their runner."""
import numpy as np
import pytest

from zp_ref import problems
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig

PROB = problems.get("circle_2d")
CONFIG = ActiveSamplerConfig(grid_bounds=PROB.bounds, initial_grid_size=3,
                             max_refinement_level=4, max_grid_points=2000)


def snapshot(s):
    return (s.get_current_grid(), s.grid_values(), s.leaves(), s.n_evaluations,
            [dict(h) for h in s.refinement_history])


def same(a, b):
    return (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True)
            and all(np.array_equal(a[2][k], b[2][k], equal_nan=a[2][k].dtype.kind == "f")
                    for k in a[2]) and a[3:] == b[3:])


@pytest.mark.parametrize("backend", ["numpy", "cpu", "cuda"])
def test_ask_tell_loop_builds_the_runner_tree(backend):
    """Looping ask/tell by hand with a callable's values gives refine()'s tree, counts
    and history; a second ask() before tell() returns the same points."""
    runner = ActiveSampler(CONFIG, q=lambda x: PROB.q(x), input_dim=2, backend=backend).refine()
    learner = ActiveSampler(CONFIG, q=lambda x: PROB.q(x), input_dim=2, backend=backend)
    rounds = 0
    while True:
        x = learner.ask()
        assert np.array_equal(learner.ask(), x)
        assert np.isnan(learner.grid_values()).sum() == x.shape[0]      # pending points
        learner.tell(PROB.q(x))
        rounds += 1
        if x.shape[0] == 0:
            break
    assert rounds == len(runner.refinement_history) > 2
    assert same(snapshot(learner), snapshot(runner))


def test_tell_refuses_bad_values_and_changes_nothing():
    s = ActiveSampler(CONFIG, q=PROB.q, input_dim=2, backend="numpy")
    with pytest.raises(ValueError, match="call ask\\(\\) first"):
        s.tell([])
    x = s.ask()
    before = snapshot(s)
    bad_nan = PROB.q(x)
    bad_nan[3] = np.nan
    for values, match in [(PROB.q(x)[:-1], f"expected {x.shape[0]}, got {x.shape[0] - 1}"),
                          (bad_nan, "values must be finite"),
                          (np.ones((x.shape[0], 1)), "values must be a 1-D array")]:
        with pytest.raises(ValueError, match=match):
            s.tell(values)
        assert same(snapshot(s), before)
    s.tell(PROB.q(x))
    assert not np.isnan(s.grid_values()).any()


def test_refine_finishes_a_pending_round_and_a_failing_callable_undoes_it():
    ref = ActiveSampler(CONFIG, q=PROB.q, input_dim=2, backend="cpu").refine()
    s = ActiveSampler(CONFIG, q=PROB.q, input_dim=2, backend="cpu")
    s.ask()
    s.refine()                                           # evaluates the asked points
    assert same(snapshot(s), snapshot(ref))
    calls = []

    def failing(x):
        calls.append(x.shape[0])
        if len(calls) > 1:
            raise RuntimeError("model crashed")
        return PROB.q(x)

    f = ActiveSampler(CONFIG, q=failing, input_dim=2, backend="numpy")
    before = snapshot(f)
    with pytest.raises(RuntimeError, match="model crashed"):
        f.refine()
    assert same(snapshot(f), before)                     # the round was undone
    assert f._pending is None and len(calls) == 2


def test_every_engine_satisfies_the_engine_protocol():
    """The numpy, cpu and cuda engines have every method of the declared Engine
    protocol, with the same parameters, and a name."""
    import inspect

    from zp_ref.refinement.cpu import CpuEngine
    from zp_ref.refinement.cuda import CudaEngine
    from zp_ref.refinement.engine import Engine
    from zp_ref.refinement.oracle import NumpyEngine

    methods = [n for n, v in vars(Engine).items() if inspect.isfunction(v) and n[0] != "_"]
    assert len(methods) == 11 and "open_round" in methods and "undo_round" in methods
    for cls, name in ((NumpyEngine, "numpy"), (CpuEngine, "cpu"), (CudaEngine, "cuda")):
        assert cls.name == name
        for m in methods:
            want = list(inspect.signature(getattr(Engine, m)).parameters)
            assert list(inspect.signature(getattr(cls, m)).parameters) == want, (cls, m)
