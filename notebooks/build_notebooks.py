"""Write the notebooks of this folder from the cells below and execute them.

    python notebooks/build_notebooks.py            # write and execute all five
    python notebooks/build_notebooks.py 03 --no-execute

Each notebook is executed with nbclient (kernel ``python3``, working directory this
folder) and saved with its outputs, so readers see the plots without running anything.
Nothing is written outside a temporary folder while a notebook runs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT_S = 300


def md(text: str):
    return new_markdown_cell(text.strip())


def code(text: str):
    return new_code_cell(text.strip())


SETUP = """
%matplotlib inline
import numpy as np
import matplotlib.pyplot as plt
import zp_ref
from zp_ref import plots, problems
from zp_ref.rng import STREAMS, call_seed, uniforms
"""

# ====================================================================== 01
NB01 = [
    md("""
# 01 · Importance sampling near poles

A rational model y = P(x)/Q(x) has its poles where Q(x) = 0, and the informative
gradients live in their neighbourhoods. A uniform sample of the input space almost never
lands there. zp_ref weights a pool of candidate points by **w = 1/|Q|^p** (clipped and
tempered) and draws from those weights with a counter-based random number generator, so
every draw is a pure function of (weights, n, seed), identical on NumPy, Numba CPU and
numba.cuda.

This notebook shows the weights as a function of |Q|, what importance draws look like
next to uniform ones, hybrid batches with their likelihood ratios, the effective sample
size, and the stateful `ImportanceSampler`. Definitions: `docs/sampling.md`.
"""),
    code(SETUP + """
from zp_ref import importance_weights, sample_indices, uniform_indices, hybrid_indices, kish_ess
from zp_ref.bands import DEFAULT_EDGES, band_counts

problem = problems.get("simple_roots_1d")
print(problem.name, "-", problem.description)
(lo, hi), = problem.bounds
N = 200_000
x_pool = lo + (hi - lo) * uniforms(0, STREAMS["pool"], N)   # a uniform pool (stream 16)
q_pool = problem.q(x_pool)
print(f"pool of {N} points: min |Q| = {np.abs(q_pool).min():.2e}, "
      f"median |Q| = {np.median(np.abs(q_pool)):.2e}, max |Q| = {np.abs(q_pool).max():.2e}")
"""),
    md("""
## Weights as a function of |Q|

`a = max(|Q|, min_q_abs)`, `w = a^-p`, `w = min(w, max_weight)`, `w = w^(1/T)`, then
normalised. On log-log axes the weight is a line of slope -p, flat below the |Q| where
it reaches `max_weight` (here the default 100, reached at |Q| = 100^(-1/p)). A
temperature T > 1 flattens the slope to -p/T; a larger `max_weight` lets the weights
keep growing towards the pole, down to `min_q_abs`.
"""),
    code("""
a = np.logspace(-8, 3, 400)
fig, ax = plt.subplots(figsize=(7, 4))
for p in (1.0, 2.0, 3.0):
    ax.loglog(a, importance_weights(a, weight_power=p, normalize=False), label=f"p = {p:g}")
ax.loglog(a, importance_weights(a, weight_power=2.0, temperature=2.0, normalize=False), "--",
          label="p = 2, T = 2")
ax.loglog(a, importance_weights(a, weight_power=2.0, max_weight=1e6, normalize=False), ":",
          label="p = 2, max_weight = 1e6")
ax.set_xlabel("|Q|")
ax.set_ylabel("weight (not normalised)")
ax.set_title("w = min(max(|Q|, 1e-6)^-p, max_weight)^(1/T)")
ax.legend();
"""),
    md("""
## Importance draws next to uniform draws

20,000 draws from the pool: uniformly, and with probability proportional to 1/|Q|^2.
The importance draws concentrate in the neighbourhoods of the eight poles (dotted
lines); the uniform ones cover the interval evenly. How close to the poles they get is
read from |Q| in the next cell.
"""),
    code("""
w = importance_weights(q_pool, weight_power=2.0)
B = 20_000
idx_imp = sample_indices(w, B, seed=1)
idx_uni = uniform_indices(N, B, seed=1)

fig, axs = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
bins = np.linspace(lo, hi, 301)
axs[0].hist(x_pool[idx_uni], bins=bins, color="tab:blue")
axs[0].set_title("uniform draws")
axs[1].hist(x_pool[idx_imp], bins=bins, color="tab:red")
axs[1].set_title("importance draws, p = 2")
for ax in axs:
    for r in problem.poles["roots"]:
        ax.axvline(r, color="k", lw=0.6, ls=":")
axs[1].set_xlabel("x (dotted: the poles)")
for ax in axs:
    ax.set_ylabel("draws per bin")
fig.tight_layout()
"""),
    md("""
The same draws on a |Q| axis, with the band edges 1e-5 .. 1e-2 of the ZeroProofML
bucket tables (B0 is nearest the pole). The table gives the share of each band; the
lines under it are computed from the same draws. With p = 2 the weight 1/|Q|^2 reaches
`max_weight` (100) at |Q| = 0.1 and is flat below it, so inside that neighbourhood the
draws do not lean further towards the poles: they gather *near* the poles, not *at*
them.
"""),
    code("""
print("bands B0..B4 on |Q| with edges", DEFAULT_EDGES)
print("pool      ", np.round(band_counts(q_pool) / N, 4))
print("uniform   ", np.round(band_counts(q_pool[idx_uni]) / B, 4))
print("importance", np.round(band_counts(q_pool[idx_imp]) / B, 4))
a_pool = np.abs(q_pool)
share = lambda idx, t: np.mean(a_pool[idx] < t)
print(f"\\n|Q| < 0.1 (where the weight is capped): {share(idx_imp, 0.1):.1%} of the importance "
      f"draws, {share(idx_uni, 0.1):.1%} of the uniform ones ({share(idx_imp, 0.1) / share(idx_uni, 0.1):.0f}x)")
print(f"|Q| < 1: {share(idx_imp, 1.0):.1%} against {share(idx_uni, 1.0):.1%}")
near = 1.0 - band_counts(q_pool[idx_imp])[-1] / B
print(f"|Q| <= 1e-2 (bands B0-B3): {near:.1%} of the importance draws, {np.mean(a_pool <= 1e-2):.2%} "
      f"of the pool; the other {1 - near:.1%} of the draws are in the far band B4")
plots.plot_q_histogram(q_pool, q_pool[idx_imp])
"""),
    md("""
## The draws follow the weights: a chi-square test

On a small pool the drawn frequencies can be compared with the weights directly. Entries
with weight 0 are never drawn (a zero weight adds nothing to the prefix sums, so no
uniform can select it). The seed is fixed, so the p-value below is a fixed number; it
is not small, i.e. the counts are consistent with the weights.
"""),
    code("""
from scipy.stats import chisquare

w_small = np.array([0.0, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.0, 0.4, 0.8, 1.0, 0.3, 0.0])
draws = sample_indices(w_small, 100_000, seed=2026)
counts = np.bincount(draws, minlength=w_small.size)
positive = w_small > 0
stat, pvalue = chisquare(counts[positive], w_small[positive] / w_small.sum() * draws.size)
print("draws of the zero-weight entries:", counts[~positive])
print(f"chi-square = {stat:.2f} on {positive.sum() - 1} degrees of freedom, p-value = {pvalue:.3f}")
"""),
    md("""
## Hybrid batches and likelihood ratios

A hybrid batch takes `floor(B * ratio)` importance draws and the rest uniform, then
shuffles them (the anchor's `hybrid_sample`). It also returns, per drawn sample, the
likelihood ratio `1 / (N * m_i)` with `m_i = ratio * pi_i + (1 - ratio) / N`. Weighting
a per-sample quantity by it gives an unbiased estimate of its uniform mean over the
pool, however much the batch leans towards the poles.

Below, on the first 20,000 points of the pool, 200 batches of 512 for each ratio: the
share of near-pole samples, the plain batch mean of f(x) = cos(3x) (pulled towards the
values of f at the poles as the ratio grows) and the likelihood-weighted mean, each with
its standard error over the 200 batches. The weighted mean stays at the pool mean within
a few standard errors. With `ratio = 1` (pure importance) the ratios are unbounded and
the weighted estimate is much noisier; mixing in uniform draws bounds them by
1 / (1 - ratio).
"""),
    code("""
x_sub, q_sub = x_pool[:20_000], q_pool[:20_000]
w_sub = importance_weights(q_sub, weight_power=2.0)
f = np.cos(3 * x_sub)
print(f"uniform mean of f over the 20,000 points: {f.mean():+.4f}\\n")
print(" ratio  share |Q| < 1e-3       plain mean (s.e.)    weighted mean (s.e.)   max ratio")
for ratio in (0.0, 0.3, 0.7, 1.0):
    near, plain, weighted, top = [], [], [], 0.0
    for b in range(200):
        idx, lr = hybrid_indices(w_sub, 512, ratio=ratio, seed=call_seed(7, b))
        near.append(np.mean(np.abs(q_sub[idx]) < 1e-3))
        plain.append(f[idx].mean())
        weighted.append(np.mean(lr * f[idx]))
        top = max(top, lr.max())
    se = lambda v: np.std(v, ddof=1) / np.sqrt(len(v))
    print(f"{ratio:6.1f}  {np.mean(near):16.3f}  {np.mean(plain):+10.4f} ({se(plain):.4f})"
          f"  {np.mean(weighted):+13.4f} ({se(weighted):.4f})  {top:10.3g}")
"""),
    md("""
## Effective sample size

The Kish effective sample size `(sum w)^2 / sum w^2` says how many equally weighted
samples the weights are worth. As p grows from 0, sharper weights concentrate the mass
on fewer pool entries and the ESS falls. But every entry with |Q| below
`max_weight^(-1/p)` is clipped to the same weight, and that threshold moves towards 1
as p grows, so past a minimum more and more entries share the cap and the ESS rises
again. A higher cap clips fewer entries: its minimum is deeper, and the rise after it
is the largest. The lines under the plot give each curve's minimum and rise.
"""),
    code("""
powers = np.linspace(0.0, 4.0, 17)
fig, ax = plt.subplots(figsize=(6.5, 4))
for mw in (10.0, 100.0, 1e4):
    ess = np.array([kish_ess(importance_weights(q_pool, weight_power=p, max_weight=mw)) / N
                    for p in powers])
    ax.semilogy(powers, ess, marker=".", label=f"max_weight = {mw:g}")
    k = int(np.argmin(ess))
    print(f"max_weight = {mw:>6g}: minimum ESS/N {ess[k]:.2e} at p = {powers[k]:g}, "
          f"{ess[-1]:.2e} at p = {powers[-1]:g}: a rise of x{ess[-1] / ess[k]:.1f}")
ax.set_xlabel("weight_power p")
ax.set_ylabel("Kish ESS / N")
ax.set_title("how much of the pool the weights use")
ax.legend();
"""),
    md("""
## The stateful ImportanceSampler

`ImportanceSampler` keeps the anchor's API. Its state is (seed, number of batches
drawn): batch c draws with `call_seed(seed, c)`, so consecutive batches differ, and a
saved state (one file: a JSON header line, then the raw arrays; no pickle) reproduces
the batches that follow.
"""),
    code("""
import tempfile
from pathlib import Path
from zp_ref import ImportanceSampler, ImportanceSamplerConfig
from zp_ref.state import load_state, save_state

sampler = ImportanceSampler(ImportanceSamplerConfig(weight_power=2.0, max_weight=100.0), seed=3)
for _ in range(3):
    batch_x, idx = sampler.sample_batch(x_pool, q_pool, 1024)
print({k: round(v, 4) if isinstance(v, float) else v for k, v in sampler.get_statistics().items()})

with tempfile.TemporaryDirectory() as tmp:
    path = save_state(Path(tmp) / "sampler.json", sampler)
    restored = load_state(path)
next_original = sampler.sample_batch(x_pool, q_pool, 1024)[1]
next_restored = restored.sample_batch(x_pool, q_pool, 1024)[1]
print("restored sampler draws the same next batch:", np.array_equal(next_original, next_restored))
assert np.array_equal(next_original, next_restored)
"""),
    md("""
## Backends

`backend="numpy"` is the oracle (plain NumPy, the definition in code); `"cpu"` runs Numba
kernels that return the same indices without a binary search per draw. The first call
of a kernel in a fresh environment includes its compilation; the timings below are
taken after a warm-up call.
"""),
    code("""
import time

q_big = uniforms(5, STREAMS["pool"], 2_000_000) * 4.0 - 2.0
w_big = importance_weights(q_big)
timings = {}
for backend in ("numpy", "cpu"):
    sample_indices(w_big, 10, seed=0, backend=backend)          # warm-up
    t0 = time.perf_counter()
    idx = sample_indices(w_big, 200_000, seed=11, backend=backend)
    timings[backend] = (time.perf_counter() - t0, idx)
same = np.array_equal(timings["numpy"][1], timings["cpu"][1])
print(f"identical indices: {same}")
for backend, (t, _) in timings.items():
    print(f"{backend:>5}: {t * 1e3:7.1f} ms for 2e5 draws from 2e6 weights")
assert same
"""),
]

# ====================================================================== 02
NB02 = [
    md("""
# 02 · Curriculum over |Q| bands

The seed's curriculum shows the model data far from the poles first, then at mid
range, then near the poles, in step with the hybrid-gradient threshold delta(t). zp_ref
defines the regions as **bands on |Q|** (edges 1e-5, 1e-4, 1e-3, 1e-2 by default: B0
nearest the pole, B4 the far field), draws batches with a prescribed **mix over bands**
(`stratified_sample`), and steps through **stages** of mixes (`BandCurriculum`),
optionally moving the near edge with delta(t) (`DeltaSchedule`). Definitions:
`docs/curriculum.md`.
"""),
    code(SETUP + """
from zp_ref.bands import DEFAULT_EDGES, band_counts, band_of, stratified_sample
from zp_ref.curriculum import BandCurriculum, CurriculumConfig, CurriculumScheduler
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
from zp_ref.schedule import DeltaSchedule


def pool_from_tree(problem, n, seed, **tree_config):
    \"\"\"Half uniform over the box, half drawn leaf-weighted from a refinement tree.\"\"\"
    config = ActiveSamplerConfig(grid_bounds=problem.bounds, **tree_config)
    tree = ActiveSampler(config, q=problem.q, input_dim=problem.dim).refine()
    x = np.concatenate([tree.sample(n // 2, seed=call_seed(seed, 0), weighting="volume"),
                        tree.sample(n - n // 2, seed=call_seed(seed, 1), weighting="leaf")])
    return x, problem.q(x)


p1 = problems.get("simple_roots_1d")
x1, q1 = pool_from_tree(p1, 8000, seed=0, initial_grid_size=64, max_refinement_level=30,
                        criterion="interval")
print("1-D pool, members per band B0..B4:", band_counts(q1))
"""),
    md("""
## Bands on a 1-D problem

`band_of(q) = number of edges strictly below |q|`. The pool mixes uniform points (mostly
far band) with points drawn inside the refinement tree's leaves, which reach |Q| far
below 1e-5 near each of the eight poles.
"""),
    code("""
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
"""),
    md("""
## Bands on a 2-D problem

The zero set of Q is a circle; the bands are thin annuli around it.
"""),
    code("""
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
"""),
    md("""
## Stratified sampling: a target mix over bands

`stratified_sample(q, n, mix=..., seed=...)` meets the mix by largest-remainder rounding
and reports, per band, the target and achieved counts. With `within="importance"` the
draws inside a band follow 1/|Q|^p. When a band has no members, its share is
redistributed over the others in proportion: the second call uses a uniform pool, which
has nothing in B0.
"""),
    code("""
mix = [0.4, 0.3, 0.15, 0.1, 0.05]
idx, info = stratified_sample(q1, 1000, mix=mix, seed=0, within="importance")
print("pool from the tree:", {k: info[k] for k in ("members", "target", "achieved", "redistributed")})

x_uniform = -3.0 + 6.0 * uniforms(2, STREAMS["pool"], 2000)
q_uniform = p1.q(x_uniform)
idx, info = stratified_sample(q_uniform, 1000, mix=mix, seed=0, within="importance")
print("uniform pool:      ", {k: info[k] for k in ("members", "target", "achieved", "redistributed")})
"""),
    md("""
## A band curriculum: far -> mid -> near

The default stages over B0..B4 are: only the far band; half far and half spread over
the mid bands; every band, the near ones weighted most. With `advance="epochs"` the
stage at epoch t is `min(t // epochs_per_stage, 2)`. Each call draws with
`call_seed(seed, call)`, so the run is reproducible.
"""),
    code("""
curriculum = BandCurriculum(epochs_per_stage=5, within="importance", seed=1)
print("stages (rows) x bands B0..B4 (columns):\\n", curriculum.stages.round(3))
counts = []
for epoch in range(15):
    per_epoch = np.zeros(len(DEFAULT_EDGES) + 1, dtype=np.int64)
    for _ in range(4):
        idx, band_count = curriculum.sample(q1, 256, epoch)
        per_epoch += band_count
    curriculum.update(epoch)
    counts.append(per_epoch)
plots.plot_band_fractions(np.array(counts), edges=DEFAULT_EDGES)
"""),
    code("""
plots.plot_curriculum_timeline(curriculum)
"""),
    md("""
## delta(t): the hybrid-gradient threshold

`DeltaSchedule` is ZeroProofML's `get_delta`: `None` during warmup (Mask-REAL only),
then from `delta_init` to `delta_final` along a linear, exponential or cosine path, never
below `min_delta`.
"""),
    code("""
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
"""),
    md("""
## Tying the near band to delta(t)

With `delta_schedule=...` the near edge `edges[0]` follows delta(t) once the warmup is
over, so "the near band" means "inside the hybrid-gradient threshold" at every epoch:
sampler focus and gradient mode move together. In the table, every B0 draw has |Q| at
most the near edge of its epoch; B0 is drawn from in stage 2 only. delta must stay below `edges[1]` so the
edges remain increasing (checked when the curriculum is built).
"""),
    code("""
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
"""),
    md("""
## Adaptive advance

With `advance="adaptive"` a stage ends once coverage >= `coverage_floor` and loss <=
`loss_ceiling` have held for `min_epochs` consecutive epochs. The coverage and loss
values below are written by hand to show the rule (a training loop passes its own).
"""),
    code("""
adaptive = BandCurriculum(advance="adaptive", coverage_floor=0.9, loss_ceiling=0.5,
                          min_epochs=2, seed=3)
given = [(0.80, 0.9), (0.92, 0.6), (0.95, 0.4), (0.96, 0.3), (0.90, 0.45), (0.97, 0.2),
         (0.85, 0.2), (0.95, 0.1), (0.96, 0.1), (0.99, 0.05)]
for epoch, (coverage, loss) in enumerate(given):
    adaptive.sample(q1, 128, epoch)
    r = adaptive.update(epoch, coverage=coverage, loss=loss)
    print(f"epoch {epoch}: coverage {coverage:.2f}, loss {loss:.2f} -> stage {r['stage']}, "
          f"streak {r['streak']}{'  (advanced)' if r['advanced'] else ''}")
"""),
    md("""
## The anchor's CurriculumScheduler

ZeroProofML's scheduler thresholds distances (here |Q|) instead of using bands. zp_ref
reproduces its thresholds and sample weights (golden-tested) and fixes its bugs
(`docs/differences.md`).
"""),
    code("""
scheduler = CurriculumScheduler(CurriculumConfig(n_stages=5, warmup_epochs=0))
for stage in range(5):
    scheduler.current_stage = stage
    print(f"stage {stage}: hard if distance <= {scheduler.get_difficulty_threshold():.4f}, "
          f"easy share {scheduler.easy_ratio():.2f}")
"""),
]

# ====================================================================== 03
NB03 = [
    md("""
# 03 · Active refinement: find every pole

ZeroProofML's `ActiveSampler` refines a grid where |Q| is small *at the grid points*.
A pole that falls between two grid points is never seen. zp_ref's `ActiveSampler` grows a
2^d-tree over a box (a binary tree in 1-D, a quadtree in 2-D): a cell is split while it
may contain a zero of Q — by the sign of Q at its corners and centre, by |Q|, or, for
polynomials, by a **certified interval enclosure** that cannot miss a zero. It then
draws new points inside the leaves. Definitions: `docs/refinement.md`.
"""),
    code(SETUP + """
from zp_ref.rational import Polynomial
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig

p1 = problems.get("simple_roots_1d")
roots = np.array(p1.poles["roots"])
grid = np.linspace(-3.0, 3.0, 100)
print(p1.description)
flagged = grid[np.abs(p1.q(grid)) < 0.1]                    # the anchor's refinement test
step = grid[1] - grid[0]
seen = [r for r in roots if np.any(np.abs(flagged - r) < step)]
print(f"a 100-point grid on [-3, 3]: {flagged.size} grid point(s) with |Q| < 0.1; "
      f"poles next to a flagged point: {len(seen)} of {len(roots)}")
"""),
    md("""
## 1-D: bracket every root

With `criterion="sign"` a cell is split while Q changes sign over its evaluated points.
Every simple root is bracketed to a width of a few 1e-11 after a few hundred
evaluations of Q; the tree shares corner values between neighbouring cells, so each
point is evaluated once. A bracket encloses a sign change of Q *as computed in floating
point*: Q's coefficients, multiplied out from the decimal roots, carry rounding, so a
decimal root can sit a few 1e-11 outside its bracket (the errors below are of the size
of the half-widths).
"""),
    code("""
config = ActiveSamplerConfig(initial_grid_size=100, grid_bounds=(-3.0, 3.0),
                             max_refinement_level=30, criterion="sign")
tree = ActiveSampler(config, q=p1.q).refine()
centres, half = tree.pole_estimates()
print(f"{tree.n_evaluations} evaluations of Q, {len(centres)} pole estimates\\n")
print("   true root        estimate   half-width   |error|")
for r, c, h in zip(roots, centres[:, 0], half[:, 0]):
    print(f"{r:12.6f}  {c:14.11f}  {h:11.2e}  {abs(c - r):8.1e}")
assert len(centres) == len(roots) and np.all(np.abs(centres[:, 0] - roots) <= 1e-9)
plots.plot_refinement_tree(tree)
"""),
    md("""
## 2-D: a quadtree around the zero curve

On `circle_2d` the tree refines along the circle; pole estimates are the finest flagged
cells. Each estimate's centre lies within one cell diagonal of the true circle. The
`max_grid_points` cap stops the tree; when it binds, the most urgent cells (sign change,
then smaller |Q|, then lower level) are refined first.
"""),
    code("""
p2 = problems.get("circle_2d")
config2 = ActiveSamplerConfig(initial_grid_size=16, grid_bounds=p2.bounds, max_refinement_level=10,
                              max_grid_points=8000, criterion="interval")
tree2 = ActiveSampler(config2, q=p2.q, input_dim=2).refine()
c2, h2 = tree2.pole_estimates()
(cx, cy), r = p2.poles["centre"], p2.poles["radius"]
distance = np.abs(np.hypot(c2[:, 0] - cx, c2[:, 1] - cy) - r)
stats = tree2.get_statistics()
print(f"{stats['n_leaves']} leaves, {stats['n_evaluations']} evaluations, "
      f"capped rounds: {stats['capped_rounds']}, {len(c2)} pole estimates")
print(f"largest distance of an estimate from the circle: {distance.max():.2e} "
      f"(half-diagonal of its cell: {np.hypot(h2[:, 0], h2[:, 1]).max():.2e})")
plots.plot_refinement_tree(tree2)
"""),
    code("""
p3 = problems.get("bivariate_deg6_2d")
tree3 = ActiveSampler(ActiveSamplerConfig(initial_grid_size=16, grid_bounds=p3.bounds,
                                          max_refinement_level=10, max_grid_points=12000,
                                          criterion="interval"), q=p3.q, input_dim=2).refine()
print(p3.description)
plots.plot_refinement_tree(tree3)
"""),
    md("""
## The criteria compared

Four problems, four criteria (all with up to 30 levels and a cap of 20,000 points):

- `abs`: min |Q| over the cell's points < `refinement_threshold` (0.1) — refines wide
  regions and can hit the cap before it localises anything;
- `sign`: Q changes sign (a point where Q is exactly 0 counts) — fast and tight, but
  blind to a double root (no sign change) and to two roots inside one cell, unless a
  grid point happens to land exactly on the root;
- `abs_or_sign` (the default): either;
- `interval`: a rigorous enclosure of Q over the cell (a centred form plus a rounding
  bound) contains 0 — it finds every zero, double roots and close pairs included.

"found" counts the true roots that lie inside an estimate's bracket (widened by 1e-9
for the rounding of Q's coefficients, see above). The lines under the table read it:
where `sign` finds a double root, and what the default criterion costs.
"""),
    code("""
cases = [(problems.get(n).q, problems.get(n).bounds[0], problems.get(n).poles["roots"], n)
         for n in ("simple_roots_1d", "double_root_1d", "close_pair_1d")]
cases.append((Polynomial.from_roots([0.3, 0.3, -1.1]), (-2.0, 2.0), (0.3, -1.1),
              "(x - 0.3)^2 (x + 1.1)"))
print(f"{'problem':<22}{'criterion':<13}{'found':>7}{'estimates':>11}{'max half-width':>16}"
      f"{'evaluations':>13}{'capped':>8}")
results = {}
for q, bounds, true_roots, name in cases:
    for criterion in ("abs", "sign", "abs_or_sign", "interval"):
        cfg = ActiveSamplerConfig(initial_grid_size=64, grid_bounds=bounds, max_refinement_level=30,
                                  max_grid_points=20000, criterion=criterion)
        t = ActiveSampler(cfg, q=q).refine()
        c, h = t.pole_estimates()
        hits = [bool(np.any(np.abs(c[:, 0] - r) <= h[:, 0] + 1e-9)) for r in true_roots]
        results[name, criterion] = dict(hits=hits, widest=h.max() if len(h) else np.nan,
                                        evaluations=t.n_evaluations,
                                        capped=t.get_statistics()["capped_rounds"])
        print(f"{name:<22}{criterion:<13}{sum(hits):>4}/{len(true_roots)}{len(c):>11}"
              f"{results[name, criterion]['widest']:>16.2e}{t.n_evaluations:>13}"
              f"{results[name, criterion]['capped']:>8}")

print()
for q, (a, b), true_roots, name in cases[1::2]:             # the two double roots
    r, found = true_roots[0], results[name, "sign"]["hits"][0]
    grid = a + (b - a) * np.arange(65) / 64                   # the level-0 grid points
    on_grid = bool(np.any(grid == r)) and float(q(np.array([r]))[0]) == 0.0
    print(f"{name}: sign {'finds' if found else 'misses'} the double root {r}"
          + (f", only because {r} is a grid point of the 64-cell grid on [{a:g}, {b:g}] "
             f"and Q({r}) == 0.0 exactly there (no sign change is needed)" if on_grid else
             f", which is not a grid point: Q keeps its sign around it"))
default = ActiveSamplerConfig().criterion
for name in ("simple_roots_1d",):
    d, s = results[name, default], results[name, "interval"]
    print(f"{name}: the default criterion ({default!r}) used {d['evaluations']} evaluations "
          f"({d['capped']} capped rounds) for a widest bracket of {d['widest']:.1e}; "
          f"'interval' used {s['evaluations']} for {s['widest']:.1e}")
"""),
    md("""
## A double root

Q = (x - 0.3)^2 (x + 1.1) touches zero at 0.3 without changing sign, and 0.3 is not a
grid point, so `sign` never flags it (the catalogue's `double_root_1d`, whose double
root 0.5 is a grid point where Q is exactly 0, is found only by that accident). The interval criterion encloses it; the enclosure stops shrinking where it is
dominated by floating-point rounding (Q is ~1e-14 within 1e-7 of the root), which is
why a double root is localised to about 1e-7 and a simple one to ~1e-11.
"""),
    code("""
q_double = Polynomial.from_roots([0.3, 0.3, -1.1])
cfg = ActiveSamplerConfig(initial_grid_size=64, grid_bounds=(-2.0, 2.0), max_refinement_level=30,
                          criterion="interval")
t = ActiveSampler(cfg, q=q_double).refine()
c, h = t.pole_estimates()
print("estimates:", [f"{ci:.9f} +- {hi:.1e}" for ci, hi in zip(c[:, 0], h[:, 0])])
k = int(np.argmin(np.abs(c[:, 0] - 0.3)))
xs = np.linspace(0.3 - 4 * h[k, 0], 0.3 + 4 * h[k, 0], 801)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(xs - 0.3, q_double(xs), lw=1)
ax.axvspan(c[k, 0] - h[k, 0] - 0.3, c[k, 0] + h[k, 0] - 0.3, color="tab:red", alpha=0.2,
           label="interval estimate")
ax.axhline(0, color="k", lw=0.5)
ax.set_xlabel("x - 0.3")
ax.set_ylabel("Q(x) in floating point")
ax.legend();
"""),
    md("""
## Drawing new points from the tree

`sample(n, seed=..., weighting=...)` picks a leaf, then a uniform point inside it:
`"volume"` is uniform over the box, `"leaf"` gives every leaf equal mass (density follows
refinement depth), `"importance"` weights a leaf by its volume times 1/|Q|^2 at its
centre.
"""),
    code("""
fig, axs = plt.subplots(3, 1, figsize=(9, 6), sharex=True)
for ax, weighting in zip(axs, ("volume", "leaf", "importance")):
    x = tree.sample(20_000, seed=0, weighting=weighting)
    ax.hist(x[:, 0], bins=np.linspace(-3, 3, 301), color="tab:purple")
    ax.set_title(f'weighting="{weighting}"', fontsize="medium")
    ax.set_ylabel("points per bin")
    for r in roots:
        ax.axvline(r, color="k", lw=0.5, ls=":")
axs[-1].set_xlabel("x")
fig.tight_layout()
"""),
    md("""
## The same tree on every backend

The tree is a pure function of (Q, config): corners are exact dyadic fractions of the
box, and the NumPy oracle and the Numba kernels build identical leaves.
"""),
    code("""
trees = {b: ActiveSampler(config2, q=p2.q, input_dim=2, backend=b).refine().leaves()
         for b in ("numpy", "cpu")}
same = all(np.array_equal(trees["numpy"][k], trees["cpu"][k], equal_nan=True)
           for k in ("lo", "hi", "level", "flagged"))
print("numpy and cpu leaves identical:", same, "-", len(trees["cpu"]["level"]), "leaves")
assert same
"""),
]

# ====================================================================== 04
NB04 = [
    md("""
# 04 · Diagnostics: a monitored run, plots, export and reload

`DiagnosticMonitor` records, per batch and per epoch: q_min, mean and spread of |Q|,
near-pole and far ratios, the band histogram, sample diversity (unique / total), the
Kish effective sample size and largest share of the weights, tag counts
(REAL / PINF / NINF / PHI), coverage and loss when given, and near/far gradient
statistics. Histories are bounded; exports are versioned one-file documents (a JSON
header line, then the raw array bytes; never pickle). Definitions: `docs/diagnostics.md`.

The run below has no trainable model (notebook 05 has one): it monitors the sampling
itself on y = 1/Q(x) for the degree-8 catalogue problem. Tags follow a transreal guard:
a sample is REAL when |Q| >= tau = 1e-8, else PINF/NINF by the sign of y; *coverage* is
the REAL fraction, as in ZeroProofML. The gradient recorded is dy/dx = -Q'(x)/Q(x)^2.
The loss panels stay empty because no loss exists here.
"""),
    code(SETUP + """
import tempfile
import warnings
from pathlib import Path

from zp_ref.curriculum import BandCurriculum
from zp_ref.diagnostics import DiagnosticConfig, DiagnosticMonitor, QMinWarning
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
from zp_ref.weighting import importance_weights

problem = problems.get("simple_roots_1d")
tree = ActiveSampler(ActiveSamplerConfig(initial_grid_size=64, grid_bounds=problem.bounds,
                                         max_refinement_level=30, criterion="interval"),
                     q=problem.q).refine()
x_pool = np.concatenate([tree.sample(4000, seed=0, weighting="volume"),
                         tree.sample(4000, seed=1, weighting="leaf")])[:, 0]
q_pool = problem.q(x_pool)
dq_pool = np.polynomial.polynomial.polyval(x_pool, np.polynomial.polynomial.polyder(problem.q.coeffs))
w_pool = importance_weights(q_pool, normalize=False)
TAU = 1e-8


def tags_of(q):
    \"\"\"0 REAL, 1 PINF, 2 NINF (y = 1/Q: the sign of y is the sign of Q).\"\"\"
    return np.where(np.abs(q) >= TAU, 0, np.where(q > 0, 1, 2))


export_dir = Path(tempfile.mkdtemp(prefix="zp_ref_diagnostics_"))
print("pool:", q_pool.size, "points; exports go to a temporary folder")
"""),
    md("""
## The monitored run

A far -> mid -> near band curriculum (5 epochs per stage, 4 batches of 256 per epoch,
importance draws inside bands). Every batch feeds `update_batch` (|Q| statistics, the
ESS of the batch's importance weights, diversity of the drawn indices, tags); every
epoch feeds `update` (coverage, |Q| statistics of the epoch's draws, gradients, tags).
The monitor exports itself every `export_frequency` epochs and warns (`QMinWarning`,
through `warnings`, never `print`) when q_min falls below its threshold.
"""),
    code("""
monitor = DiagnosticMonitor(DiagnosticConfig(
    export_path=str(export_dir), export_frequency=5, near_pole_threshold=1e-2,
    far_pole_threshold=1.0, q_min_warning_threshold=1e-9))
curriculum = BandCurriculum(epochs_per_stage=5, within="importance", seed=4)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", QMinWarning)
    for epoch in range(15):
        drawn = []
        for b in range(4):
            idx, _ = curriculum.sample(q_pool, 256, epoch)
            monitor.update_batch(q_pool[idx], w_pool[idx], idx, batch_idx=b, epoch=epoch,
                                 tags=tags_of(q_pool[idx]))
            drawn.append(idx)
        idx = np.concatenate(drawn)
        q, tags = q_pool[idx], tags_of(q_pool[idx])
        monitor.update(epoch, {"coverage_train": float(np.mean(tags == 0))}, q_values=q,
                       gradients={"dy/dx": -dq_pool[idx] / q**2}, tags=tags)
        curriculum.update(epoch)
print(f"{len(caught)} q_min warnings; the first: {caught[0].message if caught else '-'}")
monitor.get_summary()
"""),
    code("""
plots.plot_history(monitor)
"""),
    code("""
plots.plot_band_fractions(monitor)
"""),
    md("""
Per-batch rows. Diversity (unique / total indices of a batch) is lowest in the far
stage: importance draws inside the far band keep returning to the pool entries just
above |Q| = 1e-2. Non-REAL samples (|Q| < tau) appear once the near bands are drawn.
The near/far gradient statistics show why training needs care there: |dy/dx| grows like
1/Q^2.
"""),
    code("""
bm = monitor.batch_metrics
print("epoch batch      q_min  diversity   ESS/n  max share  non-REAL")
for i in range(0, len(bm["epoch"]), 8):
    print(f"{bm['epoch'][i]:5d} {bm['batch_idx'][i]:5d}  {bm['q_min'][i]:9.2e}  {bm['diversity'][i]:9.3f}"
          f"  {bm['ess_fraction'][i]:6.3f}  {bm['max_weight_share'][i]:9.3f}  "
          f"{bm['n_pinf'][i] + bm['n_ninf'][i]:8d}")
g = monitor.gradient_history
fmt = lambda v: "-" if v is None else f"{v:.3e}"
print("\\nepoch  near-pole mean |dy/dx|  far mean |dy/dx|")
for e in (0, 7, 14):
    print(f"{e:5d}  {fmt(g['near_pole_mean'][e]):>22}  {fmt(g['far_pole_mean'][e]):>16}")
"""),
    md("""
## Export and reload

`export_diagnostics(epoch)` writes `diagnostics_epoch<E>_pid<P>_<K>.json` (the process
id and a counter keep concurrent exporters apart): one line of JSON (schema version,
array layout, SHA-256 hashes, the body) followed by the raw bytes of the P/Q snapshots;
`DiagnosticMonitor.load(path)` rebuilds the monitor. An edited or truncated file is
refused with a `ValueError`.
"""),
    code("""
import json

path = monitor.export_diagnostics(14)
print(sorted(p.name for p in export_dir.iterdir()))
header = json.loads(path.read_bytes().partition(b"\\n")[0])
print("schema:", header["schema"], "| header keys:", sorted(header))
print("body keys:", sorted(header["body"]))

reloaded = DiagnosticMonitor.load(path)
assert reloaded.get_summary() == monitor.get_summary()
assert list(reloaded.history["q_min"]) == list(monitor.history["q_min"])
print("reloaded: same summary and histories")

tampered = export_dir / "tampered.json"
tampered.write_bytes(path.read_bytes().replace(b'"epoch": 14', b'"epoch": 13', 1))
try:
    DiagnosticMonitor.load(tampered)
except ValueError as exc:
    print("refused:", exc)
"""),
    md("""
## Saved state continues exactly

`save_state` / `load_state` work for every stateful object (samplers, curricula,
schedules, monitor, refinement tree): the loaded curriculum makes exactly the draws the
original would have made.
"""),
    code("""
from zp_ref.state import load_state, save_state

state_path = save_state(export_dir / "curriculum.json", curriculum)
twin = load_state(state_path)
a, _ = curriculum.sample(q_pool, 256, 15)
b, _ = twin.sample(q_pool, 256, 15)
print("same next batch after reload:", np.array_equal(a, b))
assert np.array_equal(a, b)
"""),
]

# ====================================================================== 05
NB05 = [
    md("""
# 05 · Training with the PyTorch bridge

`zp_ref.torch_bridge` plugs zp_ref's draws into `torch.utils.data.DataLoader`:
`ImportanceWeightedSampler` (a `Sampler[int]`), `HybridBatchSampler` and
`CurriculumBatchSampler` (batch samplers). Indices are produced in the main process when
an epoch starts, so they are the same with any `num_workers`, and they equal the NumPy
API's for the same seed. `as_tensor` / `to_numpy` convert without copies.

Here a small rational model P(x)/Q(x) with Q = 1 + phi_1 x + phi_2 x^2 (ZeroProofML's
TR-rational form) learns exp(x/2) / Q_true(x), which has poles at -0.375 and 0.625, with
four ways of drawing its batches from one pool. It is one seed and 1,200 steps per
method: an illustration of the loop, not evidence; the study (`zp-ref study`,
`docs/training_study.md`) repeats the comparison over seeds and reports it.
"""),
    code(SETUP + """
import time
import torch
from torch.utils.data import DataLoader, TensorDataset

from zp_ref.bands import DEFAULT_EDGES, band_of
from zp_ref.curriculum import BandCurriculum
from zp_ref.rational import Polynomial
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
from zp_ref.torch_bridge import (CurriculumBatchSampler, HybridBatchSampler,
                                 ImportanceWeightedSampler, as_tensor, to_numpy)

torch.set_num_threads(1)
POLES = (-0.375, 0.625)
Q_TRUE = Polynomial.from_roots(POLES)
Q_TRUE = Polynomial(Q_TRUE.coeffs / Q_TRUE.coeffs[0])          # Q(0) = 1, the model's form


def target(x):
    return np.exp(0.5 * x) / Q_TRUE(x)


# the pool: 16,000 uniform points plus 4,000 drawn inside a refinement tree of Q_TRUE
tree = ActiveSampler(ActiveSamplerConfig(initial_grid_size=64, grid_bounds=(-1.0, 1.0),
                                         max_refinement_level=20, criterion="sign"),
                     q=Q_TRUE).refine()
x_np = np.concatenate([-1.0 + 2.0 * uniforms(0, STREAMS["pool"], 16_000),
                       tree.sample(4_000, seed=0, weighting="leaf")[:, 0]])
q_true = Q_TRUE(x_np)
keep = np.abs(q_true) >= 1e-6                                    # finite targets only
x_np, q_true = x_np[keep], q_true[keep]
y_np = target(x_np)
x_t, y_t = as_tensor(x_np), as_tensor(y_np)                      # zero-copy views
assert x_t.data_ptr() == x_np.ctypes.data                        # same memory, no copy
print(f"pool: {x_np.size} points, |y| up to {np.abs(y_np).max():.1e}; "
      f"members of bands B0..B4: {np.bincount(band_of(q_true), minlength=5)}")
"""),
    md("""
The model, and a loss that stays finite near the poles: the linearised residual
`(Q y - P)^2 / (1 + y^2)` (plain MSE is dominated by the samples with |y| up to ~1e6). The test
points are placed in each band B0..B4 by solving Q_true(x) = c for |c| spread over the
band, and the error is the median relative error there.
"""),
    code("""
class Rational(torch.nn.Module):
    def __init__(self, deg_p=3, deg_q=2, seed=0):
        super().__init__()
        u = uniforms(seed, STREAMS["model_init"], deg_p + 1 + deg_q) * 2.0 - 1.0
        self.p = torch.nn.Parameter(torch.from_numpy(0.1 * u[:deg_p + 1]))
        self.phi = torch.nn.Parameter(torch.from_numpy(0.01 * u[deg_p + 1:]))

    def numerator(self, x):
        return torch.stack([x ** k for k in range(self.p.numel())], dim=1) @ self.p

    def q(self, x):
        powers = torch.stack([x ** (k + 1) for k in range(self.phi.numel())], dim=1)
        return 1.0 + powers @ self.phi

    def forward(self, x):
        return self.numerator(x) / self.q(x)

    def poles(self):
        return np.sort(np.roots(np.r_[self.phi.detach().numpy()[::-1], 1.0]))


def linearised_loss(model, x, y):
    return torch.mean((model.q(x) * y - model.numerator(x)) ** 2 / (1.0 + y ** 2))


def band_errors(model):
    \"\"\"Median relative error on test points with |Q_true| in each band B0..B4.\"\"\"
    c0, c1, c2 = Q_TRUE.coeffs
    out = []
    for lo, hi in zip((1e-6,) + DEFAULT_EDGES, DEFAULT_EDGES + (1.0,)):
        c = np.geomspace(lo, hi, 50)
        c = np.concatenate([c, -c])
        xs = np.concatenate([(-c1 + s * np.sqrt(c1 * c1 - 4 * c2 * (c0 - c))) / (2 * c2)
                             for s in (-1.0, 1.0)])                       # Q_true(x) = c
        xs = xs[(xs >= -1) & (xs <= 1)]
        with torch.no_grad():
            pred = to_numpy(model(as_tensor(xs)))
        out.append(float(np.median(np.abs(pred - target(xs)) / np.abs(target(xs)))))
    return out
"""),
    md("""
## One loop, four samplers

The same initialisation, optimiser (Adam, lr 0.02) and 30 epochs x 40 batches of 64 for
every method:

- `uniform`: `HybridBatchSampler(..., ratio=0)`;
- `hybrid, target Q`: 70% importance draws by 1/|Q_true|^2, 30% uniform;
- `hybrid, model Q`: the same, but weighted by the model's own Q head, refreshed at every
  epoch with `update_q` (what a training stack has when the poles are unknown);
- `curriculum`: `CurriculumBatchSampler` with a far -> mid -> near `BandCurriculum`.

The samplers use `backend="numpy"`: on a pool this small the NumPy oracle is faster than
the parallel kernels, and the indices are the same.
"""),
    code("""
EPOCHS, BATCHES, BATCH = 30, 40, 64
dataset = TensorDataset(x_t, y_t)


def make_sampler(method):
    if method == "uniform":
        return HybridBatchSampler(q_true, BATCH, BATCHES, ratio=0.0, seed=1, backend="numpy")
    if method == "hybrid, target Q":
        return HybridBatchSampler(q_true, BATCH, BATCHES, ratio=0.7, seed=1, backend="numpy")
    if method == "hybrid, model Q":
        return HybridBatchSampler(np.ones_like(q_true), BATCH, BATCHES, ratio=0.7, seed=1,
                                  backend="numpy")
    curriculum = BandCurriculum(epochs_per_stage=EPOCHS // 3, seed=1, backend="numpy")
    return CurriculumBatchSampler(q_true, BATCH, BATCHES, curriculum=curriculum)


def train(method):
    model = Rational(seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    sampler = make_sampler(method)
    loader = DataLoader(dataset, batch_sampler=sampler)
    losses = []
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        if method == "hybrid, model Q":
            with torch.no_grad():
                sampler.update_q(model.q(x_t))                    # the model's own Q head
        for xb, yb in loader:
            loss = linearised_loss(model, xb, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(loss.item())
        if method == "curriculum":
            sampler.update()                                      # end of epoch
    return model, losses


results = {}
for method in ("uniform", "hybrid, target Q", "hybrid, model Q", "curriculum"):
    t0 = time.perf_counter()
    model, losses = train(method)
    results[method] = {"errors": band_errors(model), "losses": losses,
                       "pole_error": np.abs(model.poles().real - POLES).max(),
                       "seconds": time.perf_counter() - t0}
print("median relative error per band; pole error = max |model pole - true pole|\\n")
print(f"{'method':<18}" + "".join(f"{b:>9}" for b in ("B0", "B1", "B2", "B3", "B4"))
      + f"{'pole error':>12}{'seconds':>9}")
for method, r in results.items():
    print(f"{method:<18}" + "".join(f"{e:9.2g}" for e in r["errors"])
          + f"{r['pole_error']:12.1e}{r['seconds']:9.1f}")
best = [min(results, key=lambda m: results[m]["errors"][b]) for b in range(5)]
print("\\nlowest error per band:", dict(zip(("B0", "B1", "B2", "B3", "B4"), best)))
"""),
    md("""
How to read it: a relative error near 1 in a band means the model's pole is still
farther from the true one than the band's width (|Q| / |Q'|), so the prediction there is
unrelated to the target; the near bands improve only once the poles are placed within
that distance. Which method wins, and by how much, depends on the seed and the budget;
that is what the study measures.
"""),
    code("""
fig, axs = plt.subplots(1, 2, figsize=(11, 4))
width = 0.2
for k, (method, r) in enumerate(results.items()):
    axs[0].bar(np.arange(5) + (k - 1.5) * width, r["errors"], width, label=method)
    axs[1].semilogy(r["losses"], label=method)
axs[0].set_xticks(range(5), ["B0", "B1", "B2", "B3", "B4"])
axs[0].set_yscale("log")
axs[0].set_ylabel("median relative error")
axs[0].set_title("test error per |Q| band (B0 nearest the poles)")
axs[1].set_xlabel("epoch")
axs[1].set_ylabel("loss of the epoch's last batch")
axs[1].set_title("training loss (each method on its own batches)")
axs[0].legend(fontsize="small")
fig.tight_layout()
"""),
    md("""
## The bridge equals the NumPy API

An `ImportanceWeightedSampler` epoch yields exactly the indices of the matching
`ImportanceSampler.sample_batch` call (epoch e = call e), also through a `DataLoader`
with worker processes, because the indices are drawn in the main process.
"""),
    code("""
from zp_ref import ImportanceSampler

s = ImportanceWeightedSampler(q_true, 512, seed=9)
s.set_epoch(2)
numpy_api = ImportanceSampler(seed=9)
for _ in range(3):
    _, expected = numpy_api.sample_batch(x_np, q_true, 512)
loader = DataLoader(TensorDataset(torch.arange(q_true.size)), sampler=s, batch_size=128,
                    num_workers=2)
got = torch.cat([batch[0] for batch in loader]).numpy()
print("DataLoader (2 workers) == ImportanceSampler.sample_batch:", np.array_equal(got, expected))
assert np.array_equal(got, expected)
"""),
]

NOTEBOOKS = {
    "01_importance_sampling": NB01,
    "02_curriculum_bands": NB02,
    "03_active_refinement": NB03,
    "04_diagnostics": NB04,
    "05_torch_training": NB05,
}


def build(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[nbformat.from_dict(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path = HERE) -> float:
    """Execute ``nb`` in place (kernel python3, working directory ``cwd``); seconds."""
    from nbclient import NotebookClient
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook name prefixes (default: all)")
    parser.add_argument("--no-execute", action="store_true", help="write without outputs")
    args = parser.parse_args(argv)
    chosen = [n for n in NOTEBOOKS if not args.names or any(n.startswith(p) for p in args.names)]
    if not chosen:
        parser.error(f"no notebook matches {args.names}; names: {list(NOTEBOOKS)}")
    for name in chosen:
        nb = build(NOTEBOOKS[name])
        seconds = 0.0 if args.no_execute else execute(nb)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print(f"{name}.ipynb" + ("" if args.no_execute else f": executed in {seconds:.1f} s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
