# Legacy ZeroProofML user code, written from the legacy repository's docs/topics and
# examples (domezsolt/ZeroProofML). tests/test_compat_legacy.py runs it with only the
# import block below replaced by `from zp_ref.compat.legacy import (...)`.
# LEGACY-IMPORTS-BEGIN
from zeroproof.autodiff.hybrid_gradient import (HybridGradientSchedule, ScheduleType,
                                                create_default_schedule)
from zeroproof.core import TRTag
from zeroproof.training.advanced_control import CurriculumConfig, CurriculumScheduler
from zeroproof.training.sampling_diagnostics import (ActiveSampler, ActiveSamplerConfig,
                                                     DiagnosticConfig, DiagnosticMonitor,
                                                     ImportanceSampler,
                                                     ImportanceSamplerConfig,
                                                     IntegratedSampler, SamplingStrategy,
                                                     create_integrated_sampler)
# LEGACY-IMPORTS-END
import torch

results = {}
x_pool = torch.linspace(-3.0, 3.0, 600)
q_pool = (x_pool - 0.5) * (x_pool + 1.25)                  # poles at 0.5 and -1.25

# --- docs/topics/06: importance sampling --------------------------------------------
sampler = ImportanceSampler(ImportanceSamplerConfig(weight_power=2.0, max_weight=100.0))
batch_x, idx = sampler.sample_batch(x_pool, q_pool, batch_size=128)
idx = idx.to("cpu")
results["importance"] = (batch_x, idx)
weights = sampler.compute_weights(x_pool, q_pool)
results["weights"] = weights
hx, hidx = sampler.hybrid_sample(x_pool, q_pool, 64)
results["hybrid"] = (hx, hidx.to(torch.long))
results["sample_counts"] = dict(sampler.sample_counts)
results["total_samples"] = sampler.total_samples
results["q_cache"] = sampler.q_cache
results["stats"] = sampler.get_statistics()

# a Q straight from a model head: it requires grad
q_head = q_pool.clone().requires_grad_()
bx, bi = sampler.sample_batch(x_pool, q_head, 32)
results["q_head"] = bi

# --- active sampling: grid refinement from a dict of point keys ---------------------
# (the legacy module itself raises TypeError here, list + float in _generate_neighbors,
# as soon as a 1-D point needs refinement; the compat layer refines)
active = ActiveSampler(ActiveSamplerConfig(initial_grid_size=60, refinement_threshold=0.1,
                                           max_refinement_level=4), 1)
for _ in range(3):
    grid = active.get_current_grid()
    q_dict = {active._point_key(p): float((p[0] - 0.5) * (p[0] + 1.25)) for p in grid}
    active.refine_grid(q_dict)
results["grid"] = active.get_current_grid()
results["active_stats"] = active.get_statistics()
results["refinement_history"] = active.refinement_history

# --- diagnostics ---------------------------------------------------------------------
monitor = DiagnosticMonitor(DiagnosticConfig(export_path="legacy_diagnostics",
                                             export_frequency=5))
for epoch in range(6):
    q_batch = q_pool[idx]
    tags = [TRTag.REAL] * (len(idx) - 1) + [TRTag.PINF]
    grads = {"w": torch.randn(len(idx), 3, generator=torch.Generator().manual_seed(epoch))}
    monitor.update(epoch, {"loss_train": 1.0 / (epoch + 1), "coverage_train": 0.9},
                   p_values=x_pool[idx], q_values=q_batch, gradients=grads, tags=tags)
    monitor.update_batch(epoch, q_batch.abs().min().item(), tags=tags, loss=0.5)
results["history"] = monitor.history
results["tag_history"] = monitor.tag_history
results["gradient_history"] = monitor.gradient_history
results["batch_metrics"] = monitor.batch_metrics
results["summary"] = monitor.get_summary()
monitor.export_diagnostics(6)

# --- integrated sampler --------------------------------------------------------------
integrated = IntegratedSampler(strategy=SamplingStrategy.IMPORTANCE,
                               diagnostic_config=DiagnosticConfig(export_path="legacy_diag2"))
bx, info = integrated.sample_batch(x_pool, q_pool, 32, epoch=0)
integrated.update_diagnostics(epoch=0, metrics={"loss_train": 0.3}, q_values=q_pool[:32])
integrated.update_batch_diagnostics(batch_idx=0, q_min=0.01)
# (the legacy get_summary raises TypeError here: coverage_train was never given, so its
# column holds None and np.mean fails; the compat layer returns the summary)
results["integrated"] = (bx, info, integrated.get_diagnostics_summary())
integrated.export_all(0)
factory = {}
for strategy in ("uniform", "importance", "active", "hybrid"):
    s = create_integrated_sampler(strategy, weight_power=2.0, export_path="legacy_diag3",
                                  temperature=1.0, importance_ratio=0.7, grid_size=50,
                                  refinement_threshold=0.1, max_refinement=3,
                                  export_frequency=10, track_gradients=True, track_tags=True)
    factory[strategy] = s.sample_batch(x_pool.unsqueeze(1), q_pool, 16, epoch=0)
    results["sampling_history_" + strategy] = s.sampling_history
results["factory"] = factory

# --- curriculum ----------------------------------------------------------------------
curriculum = CurriculumScheduler(CurriculumConfig(n_stages=4, stage_duration=4,
                                                  warmup_epochs=1),
                                 pole_locations=[0.5, -1.25])
statuses = [curriculum.update(epoch, coverage=0.8, loss=0.5) for epoch in range(12)]
results["curriculum"] = (statuses, curriculum.get_sample_weights(x_pool.tolist()),
                         curriculum.get_sample_weights(x_pool.tolist(), q_pool.tolist()),
                         curriculum.get_difficulty_threshold(), curriculum.get_summary(),
                         curriculum.should_advance_stage(0.8, 0.5))
results["curriculum_lists"] = (curriculum.coverage_history, curriculum.loss_history)

# --- hybrid gradient schedule (examples/hybrid_gradient_demo.py, docs/topics/03) -----
hybrid_schedule = HybridGradientSchedule(warmup_epochs=10, transition_epochs=20,
                                         delta_init=5e-2, delta_final=1e-4,
                                         schedule_type=ScheduleType.EXPONENTIAL, enable=True)
schedule = create_default_schedule(aggressive=False, warmup_epochs=5, force_exploration=True)
modes = []
for epoch in range(30):
    with schedule.apply(epoch):
        modes.append(schedule.get_mode_description(epoch))
    if epoch == 6:
        schedule.update_detected_poles([0.5, -1.25], epoch)
results["schedule"] = ([hybrid_schedule.get_delta(e) for e in range(40)], modes,
                       schedule.get_exploration_regions(7), schedule.is_warmup(3),
                       schedule.is_transitioning(8), schedule.detected_poles,
                       create_default_schedule(aggressive=True))
