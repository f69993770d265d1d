"""zp_ref.compat.legacy: legacy ZeroProofML code runs with only its import lines changed,
and every answer comes from the zp_ref core."""
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zp_ref  # noqa: E402
from zp_ref.compat import legacy  # noqa: E402

USER_CODE = (Path(__file__).parent / "data" / "legacy_user_code.py").read_text()
IMPORTS = re.compile(r"# LEGACY-IMPORTS-BEGIN\n.*# LEGACY-IMPORTS-END\n", re.S)
#: the public names of the three legacy modules in scope (controllers excluded)
LEGACY_NAMES = ("SamplingStrategy", "ImportanceSamplerConfig", "ImportanceSampler",
                "ActiveSamplerConfig", "ActiveSampler", "DiagnosticConfig",
                "DiagnosticMonitor", "IntegratedSampler", "create_integrated_sampler",
                "CurriculumConfig", "CurriculumScheduler", "ScheduleType",
                "HybridGradientSchedule", "create_default_schedule")


def run_user_code():
    names = ", ".join(legacy.__all__)
    code, n = IMPORTS.subn(f"from zp_ref.compat.legacy import ({names})\n", USER_CODE)
    assert n == 1
    namespace = {}
    exec(compile(code, "legacy_user_code.py", "exec"), namespace)
    return namespace["results"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    import os
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("legacy"))
    try:
        yield run_user_code(), Path.cwd()
    finally:
        os.chdir(old)


def test_every_in_scope_legacy_name_exists_and_the_user_code_uses_it():
    body = IMPORTS.sub("", USER_CODE)
    for name in LEGACY_NAMES:
        assert hasattr(legacy, name), name
        assert re.search(rf"\b{name}\b", body), f"user code never calls {name}"
    for name in ("PIController", "HybridController", "create_advanced_controller"):
        assert not hasattr(legacy, name)


def test_only_the_import_block_differs_from_legacy_code():
    legacy_imports = IMPORTS.search(USER_CODE).group(0)
    assert "zeroproof.training.sampling_diagnostics" in legacy_imports
    code = [ln for ln in IMPORTS.sub("", USER_CODE).splitlines() if not ln.startswith("#")]
    assert not [ln for ln in code if "zp_ref" in ln]


def test_importance_results_have_legacy_types_and_core_indices(results):
    r, _ = results
    batch_x, idx = r["importance"]
    assert isinstance(batch_x, torch.Tensor) and isinstance(idx, torch.Tensor)
    assert idx.dtype == torch.int64 and idx.shape == (128,)
    core = zp_ref.ImportanceSampler(zp_ref.ImportanceSamplerConfig(max_weight=100.0), seed=0)
    x = torch.linspace(-3.0, 3.0, 600)
    q = (x - 0.5) * (x + 1.25)
    want_x, want_idx = core.sample_batch(x, q, 128)
    assert torch.equal(idx, want_idx) and torch.equal(batch_x, x[want_idx])
    w = r["weights"]
    assert isinstance(w, torch.Tensor) and w.dtype == torch.float32
    np.testing.assert_allclose(w.double().numpy(), zp_ref.importance_weights(
        q.double().numpy(), max_weight=100.0), rtol=1e-6)


def test_sample_counts_count_every_draw_by_pool_index(results):
    r, _ = results
    drawn = torch.cat([r["importance"][1], r["hybrid"][1]]).numpy()
    counts = np.bincount(drawn, minlength=600)
    assert r["sample_counts"] == {int(i): int(counts[i]) for i in np.flatnonzero(counts)}
    assert r["total_samples"] == 128 + 64          # hybrid draws count too (core)


def test_q_cache_maps_the_legacy_key_of_each_pool_entry_to_its_q(results):
    r, _ = results
    x = torch.linspace(-3.0, 3.0, 600)
    q = (x - 0.5) * (x + 1.25)
    cache = r["q_cache"]
    assert len(cache) == 600
    for i in (0, 17, 599):
        assert cache[f"{x[i].item():.6f}"] == pytest.approx(q[i].item(), rel=1e-7)


def test_q_head_with_grad_and_shape_n_by_1_is_accepted(results):
    r, _ = results
    assert r["q_head"].dtype == torch.int64 and r["q_head"].shape == (32,)
    x = torch.linspace(-1, 1, 40)
    q = (x - 0.2).unsqueeze(1).requires_grad_()            # (N, 1), as a model's Q head
    a = legacy.ImportanceSampler(seed=2).sample_batch(x, q, 8)[1]
    b = legacy.ImportanceSampler(seed=2).sample_batch(x, q.detach()[:, 0], 8)[1]
    assert torch.equal(a, b)


def test_dict_refinement_equals_the_core_array_refinement(results):
    r, _ = results
    cfg = zp_ref.ActiveSamplerConfig(initial_grid_size=60, refinement_threshold=0.1,
                                     max_refinement_level=4)
    core = zp_ref.ActiveSampler(cfg)
    for _ in range(3):
        g = core.get_current_grid()[:, 0]
        core.refine_grid((g.astype(np.float32).astype(np.float64) - 0.5)
                         * (g.astype(np.float32).astype(np.float64) + 1.25))
    np.testing.assert_array_equal(r["grid"].numpy(),
                                  core.get_current_grid().astype(np.float32))
    assert isinstance(r["refinement_history"], list) and len(r["refinement_history"]) == 3
    for h in r["refinement_history"]:
        assert h["total_points"] == h["n_points"] and h["n_added"] == h["n_new_points"]
    assert r["active_stats"]["total_points"] == r["grid"].shape[0]


def test_positional_input_dim_builds_a_2d_sampler():
    s = legacy.ActiveSampler(legacy.ActiveSamplerConfig(initial_grid_size=4), 2)
    corners_and_centres = 5 * 5 + 4 * 4
    assert s.input_dim == 2 and s.get_current_grid().shape == (corners_and_centres, 2)


def test_refine_grid_dict_without_a_known_point_changes_nothing():
    s = legacy.ActiveSampler(legacy.ActiveSamplerConfig(initial_grid_size=4), 1)
    s.refine_grid({"[123.0]": 0.0})
    assert s.refinement_history == [] and s.q_history == {"[123.0]": 0.0}


def test_histories_are_lists_with_legacy_rows(results):
    r, _ = results
    h = r["history"]
    for table in (h, r["tag_history"], r["gradient_history"], r["batch_metrics"]):
        assert all(isinstance(v, list) for v in table.values())
    assert h["epoch"] == list(range(6)) and len(h["q_min"]) == 6
    assert h["loss_train"] == [1.0 / (e + 1) for e in range(6)]
    assert h["lambda_rej"] == [None] * 6                   # never passed: legacy None
    assert r["tag_history"]["n_pinf"] == [1] * 6
    assert len(r["gradient_history"]["gradient_ratio"]) == 6
    bm = r["batch_metrics"]
    assert isinstance(bm, defaultdict) and bm["batch_idx"] == list(range(6))
    assert bm["n_non_real"] == [1] * 6 and bm["loss"] == [0.5] * 6
    assert r["summary"]["non_real_total"] == 12


def test_metric_not_passed_repeats_its_last_value():
    m = legacy.DiagnosticMonitor(legacy.DiagnosticConfig(auto_export=False))
    m.update(0, {"loss_train": 2.0})
    m.update(1, {})
    m.update(2, {"loss_train": 1.0})
    assert m.history["loss_train"] == [2.0, 2.0, 1.0] and m.history["q_min"] == []


def test_exports_are_json_never_pickle(results):
    _, folder = results
    files = [p.name for p in folder.rglob("*") if p.is_file()]
    assert files and not [f for f in files if f.endswith(".pkl")]
    for p in folder.rglob("*.json"):          # one file: a JSON header line, then raw arrays
        header = p.read_bytes().split(b"\n", 1)[0]
        assert isinstance(json.loads(header), dict)


def test_integrated_and_factory_return_tensors_and_legacy_info(results):
    r, _ = results
    bx, info, summary = r["integrated"]
    assert isinstance(bx, torch.Tensor) and info["strategy"] == "importance"
    assert "importance_stats" in info and summary["n_batches"] == 1
    for strategy, (batch, info) in r["factory"].items():
        assert isinstance(batch, torch.Tensor) and batch.shape == (16, 1)
        assert info["strategy"] == strategy
        assert isinstance(r["sampling_history_" + strategy], list)
    assert "active_stats" in r["factory"]["active"][1]


def test_integrated_uses_the_core_draws():
    x = torch.linspace(-1, 1, 50)
    q = x - 0.3
    ours = legacy.IntegratedSampler(legacy.SamplingStrategy.HYBRID, seed=4,
                                    diagnostic_config=legacy.DiagnosticConfig(auto_export=False))
    core = zp_ref.IntegratedSampler("hybrid", seed=4,
                                    diagnostic_config=zp_ref.DiagnosticConfig(auto_export=False))
    for epoch in range(3):
        a, ia = ours.sample_batch(x, q, 10, epoch=epoch)
        b, ib = core.sample_batch(x, q, 10, epoch=epoch)
        assert torch.equal(a, b) and torch.equal(ia["indices"], ib["indices"])


def test_curriculum_returns_numpy_weights_and_list_histories(results):
    r, _ = results
    statuses, w_poles, w_q, threshold, summary, advance = r["curriculum"]
    assert isinstance(w_poles, np.ndarray) and w_poles.sum() == pytest.approx(1.0, abs=1e-12)
    assert statuses[-1]["stage"] == 3 and isinstance(summary["stage_performance"], list)
    cov, loss = r["curriculum_lists"]
    assert cov == [0.8] * 12 and loss == [0.5] * 12
    sched = legacy.CurriculumScheduler(legacy.CurriculumConfig())
    w = sched.get_sample_weights(torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 5))
    assert type(w) is np.ndarray


def test_hybrid_schedule_matches_the_golden_delta(golden):
    for case in golden["delta_schedule"]:
        c = dict(case["config"])
        c["schedule_type"] = legacy.ScheduleType[c["schedule_type"]]
        s = legacy.HybridGradientSchedule(**c)
        for row in case["rows"]:
            got = s.get_delta(row["epoch"])
            assert (got is None) if row["delta"] is None else got == pytest.approx(
                row["delta"], rel=1e-12)


def test_schedule_legacy_keywords_modes_and_exploration(results):
    r, _ = results
    deltas, modes, regions, warm, transitioning, poles, aggressive = r["schedule"]
    assert deltas[:10] == [None] * 10 and deltas[10] == pytest.approx(5e-2, rel=1e-12)
    assert deltas[30] == pytest.approx(1e-4, rel=1e-12)
    assert modes[0] == "warmup (mask-real only, 0/5)"
    assert modes[7] == "transitioning (delta=3.981e-03, exploring 2 poles)"
    assert regions == [(0.45, 0.55), (-1.3, -1.2)] and poles == [0.5, -1.25]
    assert warm and transitioning
    assert (aggressive.delta_init, aggressive.min_delta, aggressive.pole_exploration_epochs,
            aggressive.saturating_bound) == (1e-1, 1e-10, 10, 0.1)
    off = legacy.HybridGradientSchedule(enable=False)
    assert off.get_delta(3) is None and off.get_mode_description(3) == "disabled"


def test_schedule_adaptive_delta_takes_q_min_explicitly():
    s = legacy.create_default_schedule()
    base = s.get_delta(5)
    assert s.get_delta(5, q_min=0.01) == pytest.approx(min(base * 10.0, 2e-2), rel=1e-12)


def test_bad_schedule_field_is_refused_at_construction():
    with pytest.raises(ValueError, match="delta_init"):
        legacy.HybridGradientSchedule(delta_init=-1.0)


def test_caches_fold_new_pools_so_memory_stays_bounded():
    s = legacy.ImportanceSampler(seed=1)
    for k in range(20):
        x = torch.arange(5, dtype=torch.float64) + 10 * k          # a new pool every call
        s.sample_batch(x, x - 10 * k - 2.0, 3)
        assert len(s._pending) <= legacy.ImportanceSampler.PENDING_POOLS
    cache = s.q_cache
    assert len(cache) == 100 and cache[f"{192.0:.6f}"] == 0.0
    w = s.weight_cache
    assert sum(w[f"{10.0 * 19 + i:.6f}"] for i in range(5)) == pytest.approx(1.0, abs=1e-12)


def test_legacy_configs_accept_the_anchors_fields_without_effect():
    """``resample_ratio``, ``refinement_ratio`` and ``min_points_per_region`` left the
    core configs (they had no effect); the legacy configs accept and check them, and the
    samplers built from them draw exactly what the core's default-equivalent configs draw."""
    cfg = legacy.ImportanceSamplerConfig(resample_ratio=0.25, weight_power=1.5)
    assert isinstance(cfg, zp_ref.ImportanceSamplerConfig) and cfg.resample_ratio == 0.25
    with pytest.raises(ValueError, match="resample_ratio"):
        legacy.ImportanceSamplerConfig(resample_ratio=1.5)
    x = np.linspace(-2.0, 2.0, 400)
    q = x - 0.3
    mine = legacy.ImportanceSampler(cfg, seed=5)._core.sample_batch(x, q, 32)[1]
    core = zp_ref.ImportanceSampler(zp_ref.ImportanceSamplerConfig(weight_power=1.5),
                                    seed=5).sample_batch(x, q, 32)[1]
    assert np.array_equal(mine, core)
    assert legacy.ImportanceSampler().config.resample_ratio == 0.5     # the anchor's default

    acfg = legacy.ActiveSamplerConfig(initial_grid_size=8, refinement_ratio=4,
                                      min_points_per_region=0)
    assert (acfg.refinement_ratio, acfg.min_points_per_region) == (4, 0)
    for field, bad in (("refinement_ratio", 0), ("min_points_per_region", -1)):
        with pytest.raises(ValueError, match=field):
            legacy.ActiveSamplerConfig(**{field: bad})
    poly = zp_ref.Polynomial([-0.1, 1.0])
    a = zp_ref.ActiveSampler(acfg, q=poly, backend="numpy")
    b = zp_ref.ActiveSampler(zp_ref.ActiveSamplerConfig(initial_grid_size=8), q=poly,
                             backend="numpy")
    for s in (a, b):
        s.refine()
    assert np.array_equal(a.get_current_grid(), b.get_current_grid())
    assert legacy.ActiveSampler().config.refinement_ratio == 3           # the anchor's default
