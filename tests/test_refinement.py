"""ActiveSampler: pole localisation, geometry of the tree, the cap, backend parity,
sampling from leaves, state, and bad input."""
import warnings

import numpy as np
import pytest

from zp_ref import problems
from zp_ref.rational import Polynomial, Rational
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig, EnclosureOverflowWarning


def sampler(name, *, backend="cpu", q=None, **cfg):
    pr = problems.get(name)
    cfg.setdefault("grid_bounds", pr.bounds)
    cfg.setdefault("max_grid_points", 10 ** 6)
    return ActiveSampler(ActiveSamplerConfig(**cfg), q=pr.q if q is None else q,
                         input_dim=pr.dim, backend=backend)


def same_tree(a, b):
    la, lb = a.leaves(), b.leaves()
    assert la.keys() == lb.keys()
    for k in la:
        assert np.array_equal(la[k], lb[k], equal_nan=True), k
    assert np.array_equal(a.get_current_grid(), b.get_current_grid())
    assert np.array_equal(a.grid_values(), b.grid_values(), equal_nan=True)
    assert a.n_evaluations == b.n_evaluations
    assert a.refinement_history == b.refinement_history


# ---------------------------------------------------------------- pole localisation
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_degree8_roots_bracketed_to_1e_9_within_1000_evaluations(backend):
    s = sampler("simple_roots_1d", backend=backend, initial_grid_size=100,
                max_refinement_level=30, criterion="sign").refine()
    roots = np.array(problems.get("simple_roots_1d").poles["roots"])
    centres, half = s.pole_estimates()
    lo, hi = (centres - half)[:, 0], (centres + half)[:, 0]
    assert s.n_evaluations <= 1000
    assert centres.shape == (8, 1)
    assert (hi - lo).max() <= 1e-9
    assert ((lo <= roots + 1e-12) & (roots - 1e-12 <= hi)).all()          # one root each
    q = problems.get("simple_roots_1d").q
    assert (np.sign(q(lo)) * np.sign(q(hi)) <= 0).all()                  # true brackets
    assert s.n_evaluations == s.get_current_grid().shape[0]              # each point once


def test_interval_encloses_a_double_root_that_sign_misses():
    # a box where 0.5 is no lattice point (on [-2, 2] the sign test would hit Q(0.5) = 0)
    kw = dict(initial_grid_size=64, max_refinement_level=40, grid_bounds=(-2.05, 2.0))
    centres, half = sampler("double_root_1d", criterion="interval", **kw).refine().pole_estimates()
    lo, hi = (centres - half)[:, 0], (centres + half)[:, 0]
    inside = (lo <= 0.5) & (0.5 <= hi)
    assert inside.sum() == 1 and (hi - lo)[inside][0] <= 1e-6           # localised to ~1e-7
    assert ((lo <= -1.0) & (-1.0 <= hi)).sum() == 1
    assert centres.shape[0] == 2
    c_sign, h_sign = sampler("double_root_1d", criterion="sign", **kw).refine().pole_estimates()
    assert not ((c_sign - h_sign <= 0.5) & (0.5 <= c_sign + h_sign)).any()   # no sign change


def test_interval_separates_roots_1e_6_apart():
    s = sampler("close_pair_1d", criterion="interval", initial_grid_size=64,
                max_refinement_level=40).refine()
    centres, half = s.pole_estimates()
    lo, hi = (centres - half)[:, 0], (centres + half)[:, 0]
    for root in problems.get("close_pair_1d").poles["roots"]:
        hit = (lo <= root) & (root <= hi)
        assert hit.sum() == 1 and (hi - lo)[hit][0] < 5e-7
    assert centres.shape[0] == 3                                         # pair separated


def _finest_flagged_centres(s):
    lv = s.leaves()
    keep = lv["flagged"] & (lv["level"] == s.config.max_refinement_level)
    lo, hi = lv["lo"][keep], lv["hi"][keep]
    return 0.5 * (lo + hi), np.linalg.norm(hi - lo, axis=1)


def _covered(points, centres, diag):
    """Every surface point has a finest flagged cell centre within one diagonal."""
    d = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=2)
    return (d.min(axis=1) <= diag.max()).all()


def test_circle_flagged_cells_hug_the_curve_and_cover_it():
    pr = problems.get("circle_2d")
    c0, r = np.array(pr.poles["centre"]), pr.poles["radius"]
    s = sampler("circle_2d", initial_grid_size=4, max_refinement_level=6,
                refinement_threshold=1e-3).refine()
    centres, diag = _finest_flagged_centres(s)
    dist = np.abs(np.linalg.norm(centres - c0, axis=1) - r)
    assert (dist <= diag).all()
    angle = np.arctan2(*(centres - c0).T[::-1])
    assert np.unique(np.floor((angle + np.pi) / (2 * np.pi) * 36)).size == 36   # 10-degree bins
    t = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    assert _covered(c0 + r * np.c_[np.cos(t), np.sin(t)], centres, diag)


def test_circle_interval_criterion_flags_every_cell_the_curve_touches():
    pr = problems.get("circle_2d")
    c0, r = np.array(pr.poles["centre"]), pr.poles["radius"]
    s = sampler("circle_2d", criterion="interval", initial_grid_size=4, max_refinement_level=5)
    s.refine()
    lv = s.leaves()
    t = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    pts = c0 + r * np.c_[np.cos(t), np.sin(t)]
    inside = ((lv["lo"][None] <= pts[:, None]) & (pts[:, None] <= lv["hi"][None])).all(axis=2)
    assert (inside & lv["flagged"][None]).any(axis=1).all()              # rigorous: none missed
    assert (lv["level"][lv["flagged"]] == 5).all()


def test_sphere_and_plane_3d():
    pr = problems.get("sphere_plane_3d")
    R, n, off = pr.poles["radius"], np.array(pr.poles["normal"]), pr.poles["offset"]
    s = sampler("sphere_plane_3d", initial_grid_size=4, max_refinement_level=3,
                criterion="sign").refine()
    centres, diag = _finest_flagged_centres(s)
    d_sphere = np.abs(np.linalg.norm(centres, axis=1) - R)
    d_plane = np.abs(centres @ n - off) / np.linalg.norm(n)
    assert (np.minimum(d_sphere, d_plane) <= diag).all()
    rng = np.random.default_rng(3)
    u = rng.normal(size=(400, 3))
    on_sphere = R * u / np.linalg.norm(u, axis=1, keepdims=True)
    assert _covered(on_sphere, centres, diag)
    near = centres[d_sphere <= diag]                                     # angle bins on the sphere
    az = np.floor((np.arctan2(near[:, 1], near[:, 0]) + np.pi) / (2 * np.pi) * 8)
    pol = np.floor(np.arccos(np.clip(near[:, 2] / np.linalg.norm(near, axis=1), -1, 1)) / np.pi * 4)
    assert np.unique(az * 4 + pol).size == 32
    xy = rng.uniform(-1, 1, (400, 2))
    on_plane = np.c_[xy, (off - xy @ n[:2]) / n[2]]
    on_plane = on_plane[np.abs(on_plane[:, 2]) <= 1]
    assert _covered(on_plane, centres, diag)


# ---------------------------------------------------------------- geometry, cap, parity
def _check_partition(s):
    lv = s.leaves()
    lo, hi = lv["lo"], lv["hi"]
    box = np.array(s.config.grid_bounds if np.ndim(s.config.grid_bounds) == 2
                   else [s.config.grid_bounds] * s.input_dim)
    np.testing.assert_allclose(np.prod(hi - lo, axis=1).sum(), np.prod(box[:, 1] - box[:, 0]),
                               rtol=1e-12)
    over = ((lo[:, None] < hi[None]) & (lo[None] < hi[:, None])).all(axis=2)
    assert over.sum() == lo.shape[0]                                     # only with itself
    assert ((lo >= box[:, 0]) & (hi <= box[:, 1])).all()


@pytest.mark.parametrize("name, kw", [
    ("simple_roots_1d", dict(initial_grid_size=10, max_refinement_level=6)),
    ("circle_2d", dict(initial_grid_size=3, max_refinement_level=4)),
    ("sphere_plane_3d", dict(initial_grid_size=2, max_refinement_level=2)),
])
def test_leaves_partition_the_box(name, kw):
    _check_partition(sampler(name, **kw).refine())


def _urgency_key(lv, i):
    return (not lv["sign_change"][i], lv["min_abs_q"][i], lv["level"][i], tuple(lv["lo"][i]))


def test_cap_is_respected_and_urgency_order_holds():
    s = sampler("bivariate_deg6_2d", initial_grid_size=4, max_refinement_level=6,
                criterion="abs_or_sign", refinement_threshold=0.02, max_grid_points=900)
    while True:
        before = s.leaves()
        cand = np.flatnonzero(before["flagged"] & (before["level"] < 6))
        info = s.refine(max_rounds=1).refinement_history[-1]
        assert info["n_points"] <= 900 and s.get_current_grid().shape[0] <= 900
        if info["capped"]:
            break
        assert info["n_refined"] > 0
    assert 0 < info["n_refined"] < info["n_candidates"] == cand.size
    after = s.leaves()
    kept = {tuple(x) + (l,) for x, l in zip(after["lo"], after["level"])}
    split = np.array([tuple(before["lo"][i]) + (before["level"][i],) not in kept for i in cand])
    assert split.sum() == info["n_refined"]
    order = sorted(range(cand.size), key=lambda j: _urgency_key(before, cand[j]))
    assert split[order].tolist() == [True] * info["n_refined"] + [False] * info["n_deferred"]
    assert s.get_statistics()["capped_rounds"] >= 1
    s.refine()                                                          # stops at the cap
    assert s.get_current_grid().shape[0] <= 900
    _check_partition(s)


def _counting(q):
    seen = []

    def f(x):
        seen.append(x.copy())
        return q(x)
    return f, seen


def test_callable_q_is_called_once_per_round_on_new_points_only():
    pr = problems.get("circle_2d")
    f, seen = _counting(pr.q)
    s = sampler("circle_2d", q=f, initial_grid_size=4, max_refinement_level=4).refine()
    # one call at construction, one per round that split cells (the last round splits none)
    assert len(seen) == len(s.refinement_history)
    pts = np.concatenate(seen)
    assert np.unique(pts, axis=0).shape[0] == pts.shape[0] == s.n_evaluations
    assert np.array_equal(np.unique(pts, axis=0), s.get_current_grid())
    same_tree(s, sampler("circle_2d", initial_grid_size=4, max_refinement_level=4,
                         backend="numpy").refine())


PARITY_CASES = [
    ("simple_roots_1d", dict(initial_grid_size=6, max_refinement_level=4, criterion="sign")),
    ("circle_2d", dict(initial_grid_size=2, max_refinement_level=2)),
    ("circle_2d", dict(initial_grid_size=2, max_refinement_level=3, criterion="interval")),
    ("double_root_1d", dict(initial_grid_size=8, max_refinement_level=12,
                            criterion="abs_or_sign")),
    ("bivariate_deg6_2d", dict(initial_grid_size=2, max_refinement_level=4, criterion="sign",
                               max_grid_points=120)),
    ("sphere_plane_3d", dict(initial_grid_size=1, max_refinement_level=2, criterion="sign")),
]


@pytest.mark.parametrize("name, kw", PARITY_CASES)
def test_numpy_cpu_cuda_build_the_same_tree(name, kw):
    ref = sampler(name, backend="numpy", **kw).refine()
    same_tree(ref, sampler(name, backend="cpu", **kw).refine())
    same_tree(ref, sampler(name, backend="cuda", **kw).refine())


def test_numpy_cpu_same_tree_on_larger_inputs():
    for name, kw in [("bivariate_deg6_2d", dict(initial_grid_size=8, max_refinement_level=7,
                                                 criterion="sign", max_grid_points=40000)),
                     ("sphere_plane_3d", dict(initial_grid_size=4, max_refinement_level=3,
                                              criterion="interval")),
                     ("double_root_1d", dict(initial_grid_size=16, max_refinement_level=30,
                                             criterion="interval"))]:
        same_tree(sampler(name, backend="numpy", **kw).refine(),
                  sampler(name, backend="cpu", **kw).refine())


def test_cuda_with_callable_q_and_refine_grid():
    kw = dict(initial_grid_size=2, max_refinement_level=2)
    pr = problems.get("circle_2d")
    ref = sampler("circle_2d", backend="numpy", q=lambda x: pr.q(x), **kw).refine()
    same_tree(ref, sampler("circle_2d", backend="cuda", q=lambda x: pr.q(x), **kw).refine())
    a = ActiveSampler(ActiveSamplerConfig(grid_bounds=pr.bounds, **kw), input_dim=2, backend="cuda")
    b = ActiveSampler(ActiveSamplerConfig(grid_bounds=pr.bounds, **kw), input_dim=2, backend="cpu")
    for _ in range(2):
        for s in (a, b):
            s.refine_grid(pr.q(s.get_current_grid()))
    same_tree(a, b)


# ---------------------------------------------------------------- refine_grid (anchor API)
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_refine_grid_rounds_equal_q_driven_rounds(backend):
    pr = problems.get("circle_2d")
    kw = dict(grid_bounds=pr.bounds, initial_grid_size=3, max_refinement_level=4,
              max_grid_points=10 ** 5)
    driven = ActiveSampler(ActiveSamplerConfig(**kw), q=pr.q, input_dim=2, backend=backend)
    manual = ActiveSampler(ActiveSamplerConfig(**kw), input_dim=2, backend=backend)
    assert np.isnan(manual.grid_values()).all()
    supplied = 0
    for _ in range(3):
        grid = manual.get_current_grid()
        manual.refine_grid(pr.q(grid))
        supplied += grid.shape[0]
        driven.refine(max_rounds=1)
    lm, ld = manual.leaves(), driven.leaves()
    assert np.array_equal(lm["lo"], ld["lo"]) and np.array_equal(lm["level"], ld["level"])
    assert manual.n_evaluations == supplied
    with pytest.raises(ValueError, match="one value per grid point"):
        manual.refine_grid(np.zeros(3))
    with pytest.raises(ValueError, match="q_values must be finite"):
        manual.refine_grid(np.full(manual.get_current_grid().shape[0], np.nan))
    with pytest.raises(ValueError, match="refine\\(\\) needs q"):
        manual.refine()


# ---------------------------------------------------------------- sampling from leaves
@pytest.fixture(scope="module")
def tree2d():
    return sampler("circle_2d", initial_grid_size=4, max_refinement_level=4,
                   refinement_threshold=1e-3).refine()


def test_sample_definition_and_containment(tree2d):
    from zp_ref.rng import u
    from zp_ref.sampling import sample_indices
    x, leaf = tree2d.sample(500, seed=7, weighting="leaf", return_leaf=True)
    lv = tree2d.leaves()
    assert x.shape == (500, 2)
    assert ((lv["lo"][leaf] <= x) & (x <= lv["hi"][leaf])).all()
    assert np.array_equal(leaf, sample_indices(np.ones(lv["level"].size), 500, seed=7))
    i, a = 123, 1
    lo, hi = lv["lo"][leaf[i], a], lv["hi"][leaf[i], a]
    assert x[i, a] == lo + (hi - lo) * u(7, 5, i * 2 + a)
    assert np.array_equal(x, tree2d.sample(500, seed=7, weighting="leaf"))
    assert not np.array_equal(x, tree2d.sample(500, seed=8, weighting="leaf"))
    numpy_twin = sampler("circle_2d", backend="numpy", initial_grid_size=4,
                         max_refinement_level=4, refinement_threshold=1e-3).refine()
    for w in ("volume", "leaf", "importance"):
        assert np.array_equal(numpy_twin.sample(300, seed=3, weighting=w),
                              tree2d.sample(300, seed=3, weighting=w))


@pytest.mark.parametrize("weighting", ["volume", "leaf", "importance"])
def test_sample_follows_the_weighting(tree2d, weighting):
    stats = pytest.importorskip("scipy.stats")
    from zp_ref.weighting import importance_weights
    lv = tree2d.leaves()
    n = 40000
    _, leaf = tree2d.sample(n, seed=11, weighting=weighting, return_leaf=True)
    volume = np.prod(lv["hi"] - lv["lo"], axis=1)
    mass = {"volume": volume, "leaf": np.ones_like(volume),
            "importance": volume * importance_weights(lv["q_center"])}[weighting]
    p = mass / mass.sum()
    # group leaves into bins of >= 50 expected draws (leaves in key order)
    groups = np.minimum(np.floor(np.cumsum(p) * n / 50), n // 50 - 1).astype(int)
    per_leaf = np.bincount(leaf, minlength=p.size)
    obs = np.bincount(groups, weights=per_leaf, minlength=groups.max() + 1)
    exp = np.bincount(groups, weights=p * n, minlength=groups.max() + 1)
    keep = exp > 0
    assert stats.chisquare(obs[keep], exp[keep]).pvalue > 1e-3
    if weighting == "volume":                      # uniform over the box
        x = tree2d.sample(n, seed=12, weighting="volume")
        assert stats.kstest(x[:, 0], stats.uniform(-1, 2).cdf).pvalue > 1e-3


def test_leaf_weighting_concentrates_near_the_pole(tree2d):
    pr = problems.get("circle_2d")
    c0, r = np.array(pr.poles["centre"]), pr.poles["radius"]
    near = lambda x: np.abs(np.linalg.norm(x - c0, axis=1) - r) < 0.05
    assert near(tree2d.sample(4000, seed=1, weighting="leaf")).mean() > \
        3 * near(tree2d.sample(4000, seed=1, weighting="volume")).mean()


# ---------------------------------------------------------------- outputs and state
def test_statistics_and_outputs(tree2d):
    st = tree2d.get_statistics()
    lv = tree2d.leaves()
    assert st["total_points"] == tree2d.get_current_grid().shape[0] == st["n_evaluations"]
    assert sum(st["leaves_per_level"]) == st["n_leaves"] == lv["level"].size
    assert st["flagged_leaves"] == int(lv["flagged"].sum())
    assert st["max_refinement_level"] == 4
    assert st["refinement_events"] == len(tree2d.refinement_history)
    assert st["near_pole_leaves"] == int((lv["min_abs_q"] < 1e-3).sum())
    grid = tree2d.get_current_grid()
    assert (np.diff(grid[:, 0]) >= 0).all() and np.unique(grid, axis=0).shape == grid.shape
    np.testing.assert_array_equal(tree2d.grid_values(), problems.get("circle_2d").q(grid))
    assert tree2d.should_adapt(0) and tree2d.should_adapt(20) and not tree2d.should_adapt(5)


def test_pole_estimates_merge_adjacent_cells_in_1d():
    q = Polynomial([0.0, 1.0])                         # zero exactly on a cell boundary
    s = ActiveSampler(ActiveSamplerConfig(grid_bounds=(-1, 1), initial_grid_size=2,
                                          max_refinement_level=3, criterion="sign"), q=q).refine()
    centres, half = s.pole_estimates()
    assert centres.tolist() == [[0.0]] and half.tolist() == [[0.125]]


@pytest.mark.parametrize("kind", ["polynomial", "rational", "callable"])
def test_state_round_trip_continues_identically(kind, tmp_path):
    pr = problems.get("circle_2d")
    q = {"polynomial": pr.q, "rational": Rational(Polynomial.from_terms([[0, 0]], [1.0]), pr.q),
         "callable": lambda x: pr.q(x)}[kind]
    kw = dict(initial_grid_size=3, max_refinement_level=5, max_grid_points=2000)
    a = sampler("circle_2d", q=q, **kw).refine(max_rounds=2)
    state = a.state_dict()
    b = ActiveSampler.from_state_dict(state, q=q if kind == "callable" else None)
    same_tree(a, b)
    same_tree(a.refine(), b.refine())
    if kind != "callable":
        from zp_ref.state import load_state, save_state
        save_state(tmp_path / "active.json", a)
        same_tree(a, load_state(tmp_path / "active.json"))


def test_bad_state_is_refused_and_nothing_changes():
    s = sampler("circle_2d", initial_grid_size=3, max_refinement_level=3).refine()
    good = s.state_dict()
    before = s.leaves()
    bad_overlap = dict(good, leaf_lo=np.concatenate([good["leaf_lo"], good["leaf_lo"][:1]]),
                       leaf_level=np.concatenate([good["leaf_level"], [good["leaf_level"][0]]]))
    missing = dict(good, point_keys=good["point_keys"][1:], point_values=good["point_values"][1:])
    for state, match in [(dict(good, version=99), "version"), (bad_overlap, "cover|overlap"),
                         (missing, "lack"), ({"version": 1}, "missing"),
                         (dict(good, config=dict(good["config"], criterion="nope")), "criterion")]:
        with pytest.raises(ValueError, match=match):
            s.load_state_dict(state)
    after = s.leaves()
    assert all(np.array_equal(before[k], after[k]) for k in before)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("cfg, kwargs, exc, match", [
    (dict(grid_bounds=(1.0, 1.0)), {}, ValueError, "lo < hi"),
    (dict(grid_bounds=(2.0, -1.0)), {}, ValueError, "lo < hi"),
    (dict(grid_bounds=(0.0, np.inf)), {}, ValueError, "finite"),
    (dict(grid_bounds=[(0, 1), (0, 1), (0, 1)]), dict(input_dim=2), ValueError,
     "grid_bounds must be"),
    (dict(), dict(input_dim=0), ValueError, "input_dim must be an integer >= 1"),
    (dict(), dict(input_dim=7), ValueError, r"input_dim must be in 1..6"),
    (dict(initial_grid_size=5000), {}, ValueError, "10001 points .* more than max_grid_points"),
    (dict(initial_grid_size=0), {}, ValueError, "initial_grid_size"),
    (dict(initial_grid_size=2.5), {}, TypeError, "initial_grid_size"),
    (dict(refinement_threshold=-1.0), {}, ValueError, "refinement_threshold"),
    (dict(max_refinement_level=1.5), {}, TypeError, "max_refinement_level"),
    (dict(max_refinement_level=60), {}, ValueError, "lower max_refinement_level"),
    (dict(criterion="magic"), {}, ValueError, "criterion must be one of"),
    (dict(criterion="interval"), dict(q=lambda x: x[:, 0]), ValueError, "needs q to be"),
    (dict(), dict(q=Polynomial.from_terms([[1, 1]], [1.0])), ValueError, "input_dim=2"),
    (dict(), dict(q="x**2"), TypeError, "q must be"),
    (dict(), dict(backend="tpu"), ValueError, "backend must be one of"),
    (dict(max_grid_points=0), {}, ValueError, "max_grid_points"),
])
def test_bad_config(cfg, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ActiveSampler(ActiveSamplerConfig(**cfg), **kwargs)
    with pytest.raises(TypeError, match="config must be an ActiveSamplerConfig"):
        ActiveSampler({"initial_grid_size": 3})


def test_bad_callable_values_are_reported_and_nothing_changes():
    calls = []

    def f(x):                                       # fine at construction, NaN near 0.55 later
        calls.append(x.shape[0])
        v = x[:, 0] ** 2 - 0.3
        if len(calls) > 1:
            v[np.abs(x[:, 0] - 0.55) < 0.05] = np.nan
        return v
    cfg = ActiveSamplerConfig(grid_bounds=(-1, 1), initial_grid_size=10, max_refinement_level=4)
    s = ActiveSampler(cfg, q=f, backend="cpu")
    before = (s.get_current_grid(), s.leaves(), s.n_evaluations)
    with pytest.raises(ValueError, match=r"q returned \d+ non-finite value\(s\) for \d+ "
                                         r"points; first at index \d+, x="):
        s.refine()
    after = (s.get_current_grid(), s.leaves(), s.n_evaluations)
    assert np.array_equal(before[0], after[0]) and before[2] == after[2]
    assert all(np.array_equal(before[1][k], after[1][k]) for k in before[1])
    manual = ActiveSampler(cfg, backend="cpu")                   # refine_grid with a failing q
    manual.refine_grid(f(manual.get_current_grid()))
    manual._qspec.func = f
    grid, values = manual.get_current_grid(), manual.grid_values()
    with pytest.raises(ValueError, match="non-finite"):
        manual.refine_grid(grid[:, 0] ** 2 - 0.3)
    assert np.array_equal(manual.grid_values(), values, equal_nan=True)
    assert np.array_equal(manual.get_current_grid(), grid)
    with pytest.raises(ValueError, match=r"q must return an array of shape"):
        ActiveSampler(cfg, q=lambda x: np.zeros((x.shape[0], 2)))
    with pytest.raises(ValueError, match="non-finite"):
        ActiveSampler(cfg, q=lambda x: np.full(x.shape[0], np.inf))


def test_bad_method_arguments(tree2d):
    with pytest.raises(ValueError, match="weighting must be one of"):
        tree2d.sample(3, seed=0, weighting="area")
    with pytest.raises(TypeError, match="seed"):
        tree2d.sample(3, seed=-1.0)
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        tree2d.sample(-1, seed=0)
    with pytest.raises(ValueError, match="max_rounds"):
        tree2d.refine(max_rounds=-2)


# ---------------------------------------------------------------- sweep 2 (issue 13)
def _x200_minus_x199():
    return Polynomial(np.r_[np.zeros(199), -1.0, 1.0])          # zeros at 0 (199-fold) and 1


def _brackets(s, roots, tol=0.0):
    """Number of pole estimates whose interval (widened by tol) holds each root."""
    c, h = s.pole_estimates()
    lo, hi = (c - h)[:, 0] - tol, (c + h)[:, 0] + tol
    return [int(((lo <= r) & (r <= hi)).sum()) for r in roots]


@pytest.mark.parametrize("backend, kw", [
    ("numpy", dict(initial_grid_size=7, max_refinement_level=30)),
    ("cpu", dict(initial_grid_size=7, max_refinement_level=30)),
    ("cpu", dict(initial_grid_size=3, max_refinement_level=5)),
])
def test_interval_flags_cells_whose_enclosure_overflows_and_warns_once(backend, kw):
    # (|c| + r)**200 overflows float64 wherever |x| > ~35: the enclosure is inf/NaN there,
    # which proves nothing, so those cells stay flagged; the zeros are still bracketed
    cfg = ActiveSamplerConfig(grid_bounds=(-1000.0, 1000.0), criterion="interval", **kw)
    s = ActiveSampler(cfg, q=_x200_minus_x199(), backend=backend)
    with pytest.warns(EnclosureOverflowWarning, match=r"\d+ flagged leaves") as caught:
        s.refine()
    assert len(caught) == 1                                              # once per refine()
    assert _brackets(s, [0.0, 1.0]) == [1, 1]
    over = s.overflowed_leaves()
    lv = s.leaves()
    assert over.any() and (lv["flagged"][over]).all()
    far = np.minimum(np.abs(lv["lo"][:, 0]), np.abs(lv["hi"][:, 0])) > 40.0
    assert lv["flagged"][far].all()                                      # nothing excluded there
    assert s.get_statistics()["capped_rounds"] == 0 or kw["max_refinement_level"] == 30


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",   # the simulator's
                            "ignore:invalid value encountered:RuntimeWarning")  # NumPy scalars
def test_interval_overflow_builds_the_same_tree_on_numpy_cpu_cuda():
    # the cuda kernels take degree <= 32: x**32 - x**31 overflows where |x| > ~4e9
    q = Polynomial(np.r_[np.zeros(31), -1.0, 1.0])
    cfg = dict(grid_bounds=(-1e12, 1e12), criterion="interval", initial_grid_size=3,
               max_refinement_level=8)
    trees = []
    for backend in ("numpy", "cpu", "cuda"):
        with pytest.warns(EnclosureOverflowWarning):
            trees.append(ActiveSampler(ActiveSamplerConfig(**cfg), q=q, backend=backend).refine())
    same_tree(trees[0], trees[1])
    same_tree(trees[0], trees[2])
    assert np.array_equal(trees[0].overflowed_leaves(), trees[2].overflowed_leaves())
    assert _brackets(trees[2], [0.0, 1.0]) == [1, 1]
    with pytest.raises(ValueError, match="degree <= 32 in each variable"):
        ActiveSampler(ActiveSamplerConfig(**cfg), q=_x200_minus_x199(), backend="cuda")


def test_interval_without_overflow_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sampler("simple_roots_1d", criterion="interval", initial_grid_size=16,
                    max_refinement_level=20).refine()
    assert not s.overflowed_leaves().any()


@pytest.mark.parametrize("method", ["refine", "refine_grid", "load_state_dict"])
def test_q_that_reenters_its_own_sampler_is_refused_and_nothing_changes(method):
    pr = problems.get("circle_2d")
    holder = {}

    def q(x):
        if holder.get("armed"):
            s = holder["s"]
            {"refine": lambda: s.refine(),
             "refine_grid": lambda: s.refine_grid(pr.q(s.get_current_grid())),
             "load_state_dict": lambda: s.load_state_dict(holder["state"])}[method]()
        return pr.q(x)
    s = sampler("circle_2d", q=q, initial_grid_size=3, max_refinement_level=4)
    holder.update(s=s, state=s.state_dict(), armed=True)
    before = (s.get_current_grid(), s.leaves(), s.n_evaluations, list(s.refinement_history))
    with pytest.raises(RuntimeError, match=rf"{method}\(\) was called while refine\(\) is "
                                           r"running on the same sampler"):
        s.refine()
    assert np.array_equal(before[0], s.get_current_grid())
    assert all(np.array_equal(before[1][k], s.leaves()[k]) for k in before[1])
    assert (before[2], before[3]) == (s.n_evaluations, s.refinement_history)
    holder["armed"] = False                          # the guard is released: refine works
    _check_partition(s.refine())
    same_tree(s, sampler("circle_2d", initial_grid_size=3, max_refinement_level=4).refine())


def test_default_criterion_brackets_like_sign_without_spending_the_cap():
    # the README configuration without criterion=: before issue 13 abs_or_sign spent the
    # whole cap (9,999 evaluations, half-widths up to 5.3e-3)
    pr = problems.get("simple_roots_1d")
    cfg = ActiveSamplerConfig(grid_bounds=pr.bounds, max_refinement_level=30)
    assert cfg.criterion == "abs_or_sign"
    s = ActiveSampler(cfg, q=pr.q).refine()
    centres, half = s.pole_estimates()
    assert s.get_statistics()["capped_rounds"] == 0 and s.n_evaluations <= 1000
    assert centres.shape == (8, 1) and half.max() <= 3e-11
    assert _brackets(s, pr.poles["roots"], tol=1e-12) == [1] * 8        # the roots are rounded


def test_abs_or_sign_still_follows_a_double_root_that_sign_misses():
    kw = dict(initial_grid_size=64, max_refinement_level=30, grid_bounds=(-2.05, 2.0),
              max_grid_points=20_000)
    s = sampler("double_root_1d", criterion="abs_or_sign", **kw).refine()
    assert _brackets(s, [-1.0, 0.5]) == [1, 1]
    assert s.pole_estimates()[1].max() <= 1e-8
    assert s.get_statistics()["capped_rounds"] == 0 and s.n_evaluations <= 2000
    assert _brackets(sampler("double_root_1d", criterion="sign", **kw).refine(),
                     [-1.0, 0.5]) == [1, 0]


def test_abs_or_sign_threshold_shrinks_by_four_per_level():
    # a leaf of level l without a sign change is flagged iff min |Q| < threshold * 4**-l
    pr = problems.get("simple_roots_1d")
    s = sampler("simple_roots_1d", criterion="abs_or_sign", initial_grid_size=20,
                max_refinement_level=8, refinement_threshold=0.5).refine()
    lv = s.leaves()
    cut = 0.5 * 4.0 ** -lv["level"]
    expect = lv["sign_change"] | (lv["min_abs_q"] < cut)
    assert np.array_equal(lv["flagged"], expect)
    plain = sampler("simple_roots_1d", criterion="abs", initial_grid_size=20,
                    max_refinement_level=8, refinement_threshold=0.5).refine().leaves()
    assert np.array_equal(plain["flagged"], plain["min_abs_q"] < 0.5)
    assert pr.dim == 1
