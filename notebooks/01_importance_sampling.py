# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Importance sampling near poles
#
# A rational model y = P(x)/Q(x) has its poles where Q(x) = 0, and the informative
# gradients live in their neighbourhoods. A uniform sample of the input space almost never
# lands there. zp_ref weights a pool of candidate points by **w = 1/|Q|^p** (clipped and
# tempered) and draws from those weights with a counter-based random number generator, so
# every draw is a pure function of (weights, n, seed), identical on NumPy, Numba CPU and
# numba.cuda.
#
# This notebook shows the weights as a function of |Q|, what importance draws look like
# next to uniform ones, hybrid batches with their likelihood ratios, the effective sample
# size, and the stateful `ImportanceSampler`. Definitions: `docs/sampling.md`.

# %%
# %matplotlib inline
import numpy as np
import matplotlib.pyplot as plt
import zp_ref
from zp_ref import plots, problems
from zp_ref.rng import STREAMS, call_seed, uniforms

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

# %% [markdown]
# ## Weights as a function of |Q|
#
# `a = max(|Q|, min_q_abs)`, `w = a^-p`, `w = min(w, max_weight)`, `w = w^(1/T)`, then
# normalised. On log-log axes the weight is a line of slope -p, flat below the |Q| where
# it reaches `max_weight` (here the default 100, reached at |Q| = 100^(-1/p)). A
# temperature T > 1 flattens the slope to -p/T; a larger `max_weight` lets the weights
# keep growing towards the pole, down to `min_q_abs`.

# %%
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

# %% [markdown]
# ## Importance draws next to uniform draws
#
# 20,000 draws from the pool: uniformly, and with probability proportional to 1/|Q|^2.
# The importance draws concentrate in the neighbourhoods of the eight poles (dotted
# lines); the uniform ones cover the interval evenly. How close to the poles they get is
# read from |Q| in the next cell.

# %%
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

# %% [markdown]
# The same draws on a |Q| axis, with the band edges 1e-5 .. 1e-2 of the ZeroProofML
# bucket tables (B0 is nearest the pole). The table gives the share of each band; the
# lines under it are computed from the same draws. With p = 2 the weight 1/|Q|^2 reaches
# `max_weight` (100) at |Q| = 0.1 and is flat below it, so inside that neighbourhood the
# draws do not lean further towards the poles: they gather *near* the poles, not *at*
# them.

# %%
print("bands B0..B4 on |Q| with edges", DEFAULT_EDGES)
print("pool      ", np.round(band_counts(q_pool) / N, 4))
print("uniform   ", np.round(band_counts(q_pool[idx_uni]) / B, 4))
print("importance", np.round(band_counts(q_pool[idx_imp]) / B, 4))
a_pool = np.abs(q_pool)
share = lambda idx, t: np.mean(a_pool[idx] < t)
print(f"\n|Q| < 0.1 (where the weight is capped): {share(idx_imp, 0.1):.1%} of the importance "
      f"draws, {share(idx_uni, 0.1):.1%} of the uniform ones ({share(idx_imp, 0.1) / share(idx_uni, 0.1):.0f}x)")
print(f"|Q| < 1: {share(idx_imp, 1.0):.1%} against {share(idx_uni, 1.0):.1%}")
near = 1.0 - band_counts(q_pool[idx_imp])[-1] / B
print(f"|Q| <= 1e-2 (bands B0-B3): {near:.1%} of the importance draws, {np.mean(a_pool <= 1e-2):.2%} "
      f"of the pool; the other {1 - near:.1%} of the draws are in the far band B4")
plots.plot_q_histogram(q_pool, q_pool[idx_imp])

# %% [markdown]
# ## The draws follow the weights: a chi-square test
#
# On a small pool the drawn frequencies can be compared with the weights directly. Entries
# with weight 0 are never drawn (a zero weight adds nothing to the prefix sums, so no
# uniform can select it). The seed is fixed, so the p-value below is a fixed number; it
# is not small, i.e. the counts are consistent with the weights.

# %%
from scipy.stats import chisquare

w_small = np.array([0.0, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.0, 0.4, 0.8, 1.0, 0.3, 0.0])
draws = sample_indices(w_small, 100_000, seed=2026)
counts = np.bincount(draws, minlength=w_small.size)
positive = w_small > 0
stat, pvalue = chisquare(counts[positive], w_small[positive] / w_small.sum() * draws.size)
print("draws of the zero-weight entries:", counts[~positive])
print(f"chi-square = {stat:.2f} on {positive.sum() - 1} degrees of freedom, p-value = {pvalue:.3f}")

# %% [markdown]
# ## Hybrid batches and likelihood ratios
#
# A hybrid batch takes `floor(B * ratio)` importance draws and the rest uniform, then
# shuffles them (the anchor's `hybrid_sample`). It also returns, per drawn sample, the
# likelihood ratio `1 / (N * m_i)` with `m_i = ratio * pi_i + (1 - ratio) / N`. Weighting
# a per-sample quantity by it gives an unbiased estimate of its uniform mean over the
# pool, however much the batch leans towards the poles.
#
# Below, on the first 20,000 points of the pool, 200 batches of 512 for each ratio: the
# share of near-pole samples, the plain batch mean of f(x) = cos(3x) (pulled towards the
# values of f at the poles as the ratio grows) and the likelihood-weighted mean, each with
# its standard error over the 200 batches. The weighted mean stays at the pool mean within
# a few standard errors. With `ratio = 1` (pure importance) the ratios are unbounded and
# the weighted estimate is much noisier; mixing in uniform draws bounds them by
# 1 / (1 - ratio).

# %%
x_sub, q_sub = x_pool[:20_000], q_pool[:20_000]
w_sub = importance_weights(q_sub, weight_power=2.0)
f = np.cos(3 * x_sub)
print(f"uniform mean of f over the 20,000 points: {f.mean():+.4f}\n")
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

# %% [markdown]
# ## Effective sample size
#
# The Kish effective sample size `(sum w)^2 / sum w^2` says how many equally weighted
# samples the weights are worth. As p grows from 0, sharper weights concentrate the mass
# on fewer pool entries and the ESS falls. But every entry with |Q| below
# `max_weight^(-1/p)` is clipped to the same weight, and that threshold moves towards 1
# as p grows, so past a minimum more and more entries share the cap and the ESS rises
# again. A higher cap clips fewer entries: its minimum is deeper, and the rise after it
# is the largest. The lines under the plot give each curve's minimum and rise.

# %%
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

# %% [markdown]
# ## The stateful ImportanceSampler
#
# `ImportanceSampler` keeps the anchor's API. Its state is (seed, number of batches
# drawn): batch c draws with `call_seed(seed, c)`, so consecutive batches differ, and a
# saved state (one file: a JSON header line, then the raw arrays; no pickle) reproduces
# the batches that follow.

# %%
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

# %% [markdown]
# ## Backends
#
# `backend="numpy"` is the oracle (plain NumPy, the definition in code); `"cpu"` runs Numba
# kernels that return the same indices without a binary search per draw. The first call
# of a kernel in a fresh environment includes its compilation; the timings below are
# taken after a warm-up call.

# %%
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
