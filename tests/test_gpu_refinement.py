"""The cuda refinement engine (under the CUDA simulator in CI): a round's host
synchronisations are a small constant independent of the tree's size, the tree grows
on the device, a callable Q is called once per round, and the leaves are the numpy
oracle's (uncapped, capped, callable Q, 1-D and 2-D)."""
import numpy as np
import pytest

from zp_ref import problems
from zp_ref.kernels.common import cuda_simulated
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig

#: Device-to-host copies of one round of a polynomial Q that splits something: the
#: (points, candidates) counts before the split and the point count after it.
SYNCS_PER_SPLITTING_ROUND = 2
#: The last round (nothing left to split): only the (points, candidates) counts.
SYNCS_PER_FINAL_ROUND = 1


def sampler(name, backend, q=None, **cfg):
    pr = problems.get(name)
    cfg.setdefault("grid_bounds", pr.bounds)
    cfg.setdefault("max_grid_points", 10 ** 6)
    return ActiveSampler(ActiveSamplerConfig(**cfg), q=pr.q if q is None else q,
                         input_dim=pr.dim, backend=backend)


def syncs_per_round(s):
    """Device-to-host copies of each round of ``s.refine()``, and the rounds' history."""
    eng = s._engine
    counts = []
    while True:
        before = eng.sync_count
        s.refine(max_rounds=1)
        counts.append(eng.sync_count - before)
        if s.refinement_history[-1]["n_refined"] == 0:
            return counts, s.refinement_history


def same_leaves(a, b):
    la, lb = a.leaves(), b.leaves()
    assert la.keys() == lb.keys()
    for k in la:
        assert np.array_equal(la[k], lb[k], equal_nan=True), k
    assert np.array_equal(a.get_current_grid(), b.get_current_grid())
    assert a.n_evaluations == b.n_evaluations
    assert a.refinement_history == b.refinement_history


def test_syncs_per_round_are_the_same_constant_for_a_small_and_a_large_tree():
    # (the simulator runs every thread in Python: "large" is what CI can afford)
    small = sampler("circle_2d", "cuda", initial_grid_size=1, max_refinement_level=3)
    large = sampler("circle_2d", "cuda", initial_grid_size=6, max_refinement_level=3)
    c_small, h_small = syncs_per_round(small)
    c_large, h_large = syncs_per_round(large)
    # the large tree is a different size class: many times the leaves and new points
    assert large._engine.tree_size() >= 8 * small._engine.tree_size()
    assert sum(h["n_new_points"] for h in h_large) >= 8 * sum(h["n_new_points"]
                                                              for h in h_small)
    expected = lambda h: [SYNCS_PER_SPLITTING_ROUND] * (len(h) - 1) + [SYNCS_PER_FINAL_ROUND]
    assert c_small == expected(h_small)
    assert c_large == expected(h_large)
    assert all(h["n_refined"] > 0 for h in h_large[:-1])


def test_tree_arrays_grow_by_doubling_on_the_device_without_host_copies():
    s = sampler("circle_2d", "cuda", initial_grid_size=1, max_refinement_level=4)
    eng = s._engine
    cap0 = eng.d_nodes["level"].shape[0]
    counts, history = syncs_per_round(s)
    cap = eng.d_nodes["level"].shape[0]
    assert cap > cap0                                  # it grew during the rounds ...
    assert counts == [SYNCS_PER_SPLITTING_ROUND] * (len(history) - 1) + [SYNCS_PER_FINAL_ROUND]
    assert eng.n <= cap < 2 * max(eng.n, cap0) + 2 ** 2 * history[-2]["n_refined"]
    assert eng.d_key.shape[0] >= eng.n_points
    same_leaves(s, sampler("circle_2d", "numpy", initial_grid_size=1, max_refinement_level=4)
                .refine())


@pytest.mark.parametrize("name, kw", [
    ("bivariate_deg6_2d", dict(initial_grid_size=1, max_refinement_level=4, criterion="sign")),
    ("simple_roots_1d", dict(initial_grid_size=6, max_refinement_level=8, criterion="abs_or_sign")),
    ("circle_2d", dict(initial_grid_size=1, max_refinement_level=3, criterion="interval")),
])
def test_cuda_leaves_are_the_numpy_oracles(name, kw):
    same_leaves(sampler(name, "cuda", **kw).refine(), sampler(name, "numpy", **kw).refine())


def test_a_callable_q_is_called_once_per_splitting_round_with_all_its_points():
    pr = problems.get("circle_2d")
    calls = []

    def q(x):
        calls.append(x.shape[0])
        return pr.q(x)
    kw = dict(initial_grid_size=1, max_refinement_level=3)
    s = sampler("circle_2d", "cuda", q=q, **kw)
    calls.clear()                                       # the initial grid's call
    counts, history = syncs_per_round(s)
    splitting = [h for h in history if h["n_new_points"]]
    assert calls == [h["n_new_points"] for h in splitting]
    # one more copy per splitting round: the new points' keys, for the host call
    assert counts == [SYNCS_PER_SPLITTING_ROUND + 1] * len(splitting) + [SYNCS_PER_FINAL_ROUND]
    same_leaves(s, sampler("circle_2d", "numpy", **kw).refine())


def test_capped_rounds_select_on_the_device_as_the_oracle_with_one_more_count_read():
    kw = dict(initial_grid_size=2, max_refinement_level=3, criterion="sign",
              max_grid_points=400)
    s = sampler("bivariate_deg6_2d", "cuda", **kw)
    counts, history = syncs_per_round(s)
    ref = sampler("bivariate_deg6_2d", "numpy", **kw).refine()
    assert [(h["capped"], h["n_refined"]) for h in ref.refinement_history] == [
        (False, 4), (False, 16), (True, 38), (True, 0)]         # 8 of 46 deferred, then none fit
    same_leaves(s, ref)
    # a capped round reads the prefix length too; no copy of the tree
    assert counts == [2, 2, 3, 2]
    assert s.get_current_grid().shape[0] <= 400


def test_capped_selection_by_radix_sort_matches_the_oracle(monkeypatch):
    """Above gpu_cap.RANK_MAX candidates the urgency order is a radix sort (forced here)."""
    from zp_ref.kernels import gpu_cap
    monkeypatch.setattr(gpu_cap, "RANK_MAX", 0)
    kw = dict(initial_grid_size=2, max_refinement_level=3, criterion="sign",
              max_grid_points=300)
    s = sampler("bivariate_deg6_2d", "cuda", **kw).refine(max_rounds=3)
    ref = sampler("bivariate_deg6_2d", "numpy", **kw).refine(max_rounds=3)
    assert [(h["capped"], h["n_candidates"], h["n_refined"])
            for h in ref.refinement_history][-1] == (True, 46, 22)
    same_leaves(s, ref)


@pytest.mark.skipif(not cuda_simulated(), reason="inspects the CUDA simulator's launches")
def test_no_round_kernel_gets_a_host_array(monkeypatch):
    """A host ndarray passed to a kernel is copied there and back at every launch (a
    hidden synchronisation that sync_count would miss): a polynomial round passes none."""
    from numba.cuda.simulator import kernel as sim_kernel
    s = sampler("circle_2d", "cuda", initial_grid_size=1, max_refinement_level=3)
    host_args = []
    wrap = sim_kernel.wrap_arg

    def recording_wrap_arg(arg, *a, **kw):
        host_args.append(getattr(arg, "shape", None))
        return wrap(arg, *a, **kw)
    monkeypatch.setattr(sim_kernel, "wrap_arg", recording_wrap_arg)
    s.refine()
    assert len(s.refinement_history) == 4 and host_args == []


def test_a_failing_callable_in_a_capped_round_leaves_the_tree_as_before():
    pr = problems.get("bivariate_deg6_2d")
    calls = []

    def q(x):
        calls.append(x.shape[0])
        if len(calls) == 4:                            # the first capped round's call
            raise RuntimeError("q failed")
        return pr.q(x)
    kw = dict(initial_grid_size=2, max_refinement_level=3, criterion="sign",
              max_grid_points=400)
    s = sampler("bivariate_deg6_2d", "cuda", q=q, **kw)
    with pytest.raises(RuntimeError, match="q failed"):
        s.refine()
    same_leaves(s, sampler("bivariate_deg6_2d", "numpy", **kw).refine(max_rounds=2))
    s.refine()
    same_leaves(s, sampler("bivariate_deg6_2d", "numpy", **kw).refine())


def sphere_sampler(d, backend, cap, level):
    """|x|^2 = 0.5 in d dimensions, small enough for the simulator (one level-0 cell from
    4-D on)."""
    from zp_ref import Polynomial
    e = np.vstack([2 * np.eye(d, dtype=np.int64), np.zeros((1, d), np.int64)])
    q = Polynomial.from_terms(e, np.r_[np.ones(d), -0.5])
    config = ActiveSamplerConfig(initial_grid_size=2 if d <= 3 else 1, grid_bounds=(-1.0, 1.0),
                                 max_refinement_level=level, criterion="sign",
                                 max_grid_points=cap)
    return ActiveSampler(config, q=q, input_dim=d, backend=backend)


#: (d, levels of the uncapped tree, levels and cap of the capped one): the cap binds in a
#: round whose walk reaches part of its candidates (in 6-D 19 of 64 cells, one chunk each).
SPHERES = [(1, 3, 3, 12), (2, 3, 3, 90), (3, 3, 3, 700), (4, 2, 2, 500), (5, 1, 2, 2500),
           (6, 1, 2, 2000)]


@pytest.mark.parametrize("d, level, capped_level, cap", SPHERES)
def test_cuda_sphere_trees_are_the_oracles_capped_and_uncapped_in_1_to_6_d(d, level,
                                                                           capped_level, cap):
    for lv, max_points in ((level, 10 ** 6), (capped_level, cap)):
        ref = sphere_sampler(d, "numpy", max_points, lv).refine()
        capped = ref.get_statistics()["capped_rounds"]
        assert capped > 0 if max_points == cap else capped == 0
        assert ref.refinement_history[0]["n_refined"] > 0
        same_leaves(sphere_sampler(d, "cuda", max_points, lv).refine(), ref)


@pytest.mark.parametrize("d, cap", [(2, 90), (6, 2000)])
def test_capped_selection_scratch_stays_under_the_stated_bound(monkeypatch, d, cap):
    """Every device array allocated while the capped selection runs adds up to at most
    gpu_cap.selection_scratch_bytes(max_grid_points): bounded by the cap, not by
    candidates x 3**d (in 6-D the old face-key arrays alone would pass the bound)."""
    from numba import cuda

    from zp_ref.kernels import gpu_cap
    from zp_ref.kernels.gpu_refinement import SCAN_THREADS
    from zp_ref.refinement.cuda import CudaEngine
    allocated, selections = [], []
    device_array = cuda.device_array

    def counting_device_array(shape, dtype=np.float64, *a, **kw):
        arr = device_array(shape, dtype, *a, **kw)
        if allocated:
            allocated[-1] += arr.nbytes
        return arr
    select = CudaEngine._select_under_cap

    def counting_select(self, d_cand, n):
        allocated.append(0)
        selections.append(n)
        return select(self, d_cand, n)
    monkeypatch.setattr(cuda, "device_array", counting_device_array)
    monkeypatch.setattr(CudaEngine, "_select_under_cap", counting_select)
    s = sphere_sampler(d, "cuda", cap, 3 if d <= 3 else 2).refine()
    assert s.get_statistics()["capped_rounds"] > 0 and len(allocated) > 0
    bound = gpu_cap.selection_scratch_bytes(cap, SCAN_THREADS)
    assert max(allocated) <= bound, (allocated, bound)
    old_face_arrays = 8 * 4 * max(selections) * (3 ** d - 2 ** d - 1)
    if d == 6:
        assert old_face_arrays > bound
