# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Curriculum over |Q| bands
#
# The seed's curriculum shows the model data far from the poles first, then at mid
# range, then near the poles, in step with the hybrid-gradient threshold delta(t). zp_ref
# defines the regions as **bands on |Q|** (edges 1e-5, 1e-4, 1e-3, 1e-2 by default: B0
# nearest the pole, B4 the far field), draws batches with a prescribed **mix over bands**
# (`stratified_sample`), and steps through **stages** of mixes (`BandCurriculum`),
# optionally moving the near edge with delta(t) (`DeltaSchedule`). Definitions:
# `docs/curriculum.md`.

# %%
# %matplotlib inline
import numpy as np
import matplotlib.pyplot as plt
import zp_ref
from zp_ref import plots, problems
from zp_ref.rng import STREAMS, call_seed, uniforms

from zp_ref.bands import DEFAULT_EDGES, band_counts, band_of, stratified_sample
from zp_ref.curriculum import BandCurriculum, CurriculumConfig, CurriculumScheduler
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
from zp_ref.schedule import DeltaSchedule


def pool_from_tree(problem, n, seed, **tree_config):
    """Half uniform over the box, half drawn leaf-weighted from a refinement tree."""
    config = ActiveSamplerConfig(grid_bounds=problem.bounds, **tree_config)
    tree = ActiveSampler(config, q=problem.q, input_dim=problem.dim).refine()
    x = np.concatenate([tree.sample(n // 2, seed=call_seed(seed, 0), weighting="volume"),
                        tree.sample(n - n // 2, seed=call_seed(seed, 1), weighting="leaf")])
    return x, problem.q(x)


p1 = problems.get("simple_roots_1d")
x1, q1 = pool_from_tree(p1, 8000, seed=0, initial_grid_size=64, max_refinement_level=30,
                        criterion="interval")
print("1-D pool, members per band B0..B4:", band_counts(q1))

# %% [markdown]
# ## Bands on a 1-D problem
#
# `band_of(q) = number of edges strictly below |q|`. The pool mixes uniform points (mostly
# far band) with points drawn inside the refinement tree's leaves, which reach |Q| far
# below 1e-5 near each of the eight poles.

# %%
band = band_of(q1)
fig, ax = plt.subplots(figsize=(9, 3.8))
for b in range(len(DEFAULT_EDGES) + 1):
    sel = band == b
    ax.scatter(x1[sel, 0], np.abs(q1[sel]), s=3, color=plots.BAND_COLORS[b],
               label=plots.band_labels(DEFAULT_EDGES)[b])
for e in DEFAULT_EDGES:
    ax.axhline(e, color="k", lw=0.5, ls=":")
ax.set_yscale("log")
ax.set_xlabel("x")
ax.set_ylabel("|Q(x)|")
ax.set_title(p1.description)
ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", markerscale=3);

# %% [markdown]
# ## Bands on a 2-D problem
#
# The zero set of Q is a circle; the bands are thin annuli around it.

# %%
p2 = problems.get("circle_2d")
x2, q2 = pool_from_tree(p2, 20000, seed=1, initial_grid_size=16, max_refinement_level=10,
                        max_grid_points=20000, criterion="interval")
band2 = band_of(q2)
print("2-D pool, members per band B0..B4:", band_counts(q2))
fig, ax = plt.subplots(figsize=(6, 6))
for b in range(len(DEFAULT_EDGES), -1, -1):
    sel = band2 == b
    ax.scatter(x2[sel, 0], x2[sel, 1], s=1, color=plots.BAND_COLORS[b],
               label=plots.band_labels(DEFAULT_EDGES)[b])
ax.set_aspect("equal")
ax.set_title(p2.description)
ax.legend(loc="lower left", fontsize="x-small", markerscale=5);

# %% [markdown]
# ## Stratified sampling: a target mix over bands
#
# `stratified_sample(q, n, mix=..., seed=...)` meets the mix by largest-remainder rounding
# and reports, per band, the target and achieved counts. With `within="importance"` the
# draws inside a band follow 1/|Q|^p. When a band has no members, its share is
# redistributed over the others in proportion: the second call uses a uniform pool, which
# has nothing in B0.

# %%
mix = [0.4, 0.3, 0.15, 0.1, 0.05]
idx, info = stratified_sample(q1, 1000, mix=mix, seed=0, within="importance")
print("pool from the tree:", {k: info[k] for k in ("members", "target", "achieved", "redistributed")})

x_uniform = -3.0 + 6.0 * uniforms(2, STREAMS["pool"], 2000)
q_uniform = p1.q(x_uniform)
idx, info = stratified_sample(q_uniform, 1000, mix=mix, seed=0, within="importance")
print("uniform pool:      ", {k: info[k] for k in ("members", "target", "achieved", "redistributed")})

# %% [markdown]
# ## A band curriculum: far -> mid -> near
#
# The default stages over B0..B4 are: only the far band; half far and half spread over
# the mid bands; every band, the near ones weighted most. With `advance="epochs"` the
# stage at epoch t is `min(t // epochs_per_stage, 2)`. Each call draws with
# `call_seed(seed, call)`, so the run is reproducible.

# %%
curriculum = BandCurriculum(epochs_per_stage=5, within="importance", seed=1)
print("stages (rows) x bands B0..B4 (columns):\n", curriculum.stages.round(3))
counts = []
for epoch in range(15):
    per_epoch = np.zeros(len(DEFAULT_EDGES) + 1, dtype=np.int64)
    for _ in range(4):
        idx, band_count = curriculum.sample(q1, 256, epoch)
        per_epoch += band_count
    curriculum.update(epoch)
    counts.append(per_epoch)
plots.plot_band_fractions(np.array(counts), edges=DEFAULT_EDGES)

# %%
plots.plot_curriculum_timeline(curriculum)

# %% [markdown]
# ## delta(t): the hybrid-gradient threshold
#
# `DeltaSchedule` is ZeroProofML's `get_delta`: `None` during warmup (Mask-REAL only),
# then from `delta_init` to `delta_final` along a linear, exponential or cosine path, never
# below `min_delta`.

# %%
epochs = np.arange(25)
fig, ax = plt.subplots(figsize=(7, 4))
for kind in ("linear", "exponential", "cosine"):
    s = DeltaSchedule(warmup_epochs=3, transition_epochs=15, delta_init=1e-2, delta_final=1e-6,
                      schedule_type=kind)
    d = [s.get_delta(int(e)) for e in epochs]
    ax.semilogy(epochs, [np.nan if v is None else v for v in d], marker=".", label=kind)
ax.axvspan(-0.5, 2.5, color="0.9", label="warmup (None)")
ax.set_xlabel("epoch")
ax.set_ylabel("delta")
ax.legend();

# %% [markdown]
# ## Tying the near band to delta(t)
#
# With `delta_schedule=...` the near edge `edges[0]` follows delta(t) once the warmup is
# over, so "the near band" means "inside the hybrid-gradient threshold" at every epoch:
# sampler focus and gradient mode move together. In the table, every B0 draw has |Q| at
# most the near edge of its epoch; B0 is drawn from in stage 2 only. delta must stay below `edges[1]` so the
# edges remain increasing (checked when the curriculum is built).

# %%
schedule = DeltaSchedule(warmup_epochs=5, transition_epochs=10, delta_init=5e-5,
                         delta_final=1e-7, schedule_type="exponential")
coupled = BandCurriculum(epochs_per_stage=5, delta_schedule=schedule, seed=2)
rows = []
for epoch in range(20):
    idx, band_count = coupled.sample(q1, 512, epoch)
    near = np.abs(q1[idx[:band_count[0]]])            # idx is band-major: B0 draws first
    rows.append((epoch, coupled.stage_at(epoch), coupled.edges_at(epoch)[0], band_count[0],
                 near.max() if near.size else np.nan, np.abs(q1[idx]).min()))
    coupled.update(epoch)
print("epoch  stage  near edge  B0 draws  max |Q| in B0  min |Q| drawn")
for r in rows[::2]:
    print(f"{r[0]:5d}  {r[1]:5d}  {r[2]:9.2e}  {r[3]:8d}  {r[4]:13.2e}  {r[5]:13.2e}")
plots.plot_curriculum_timeline(coupled)

# %% [markdown]
# ## Adaptive advance
#
# With `advance="adaptive"` a stage ends once coverage >= `coverage_floor` and loss <=
# `loss_ceiling` have held for `min_epochs` consecutive epochs. The coverage and loss
# values below are written by hand to show the rule (a training loop passes its own).

# %%
adaptive = BandCurriculum(advance="adaptive", coverage_floor=0.9, loss_ceiling=0.5,
                          min_epochs=2, seed=3)
given = [(0.80, 0.9), (0.92, 0.6), (0.95, 0.4), (0.96, 0.3), (0.90, 0.45), (0.97, 0.2),
         (0.85, 0.2), (0.95, 0.1), (0.96, 0.1), (0.99, 0.05)]
for epoch, (coverage, loss) in enumerate(given):
    adaptive.sample(q1, 128, epoch)
    r = adaptive.update(epoch, coverage=coverage, loss=loss)
    print(f"epoch {epoch}: coverage {coverage:.2f}, loss {loss:.2f} -> stage {r['stage']}, "
          f"streak {r['streak']}{'  (advanced)' if r['advanced'] else ''}")

# %% [markdown]
# ## The anchor's CurriculumScheduler
#
# ZeroProofML's scheduler thresholds distances (here |Q|) instead of using bands. zp_ref
# reproduces its thresholds and sample weights (golden-tested) and fixes its bugs
# (`docs/differences.md`).

# %%
scheduler = CurriculumScheduler(CurriculumConfig(n_stages=5, warmup_epochs=0))
for stage in range(5):
    scheduler.current_stage = stage
    print(f"stage {stage}: hard if distance <= {scheduler.get_difficulty_threshold():.4f}, "
          f"easy share {scheduler.easy_ratio():.2f}")
