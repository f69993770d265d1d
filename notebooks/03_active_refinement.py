# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Active refinement: find every pole
#
# ZeroProofML's `ActiveSampler` refines a grid where |Q| is small *at the grid points*.
# A pole that falls between two grid points is never seen. zp_ref's `ActiveSampler` grows a
# 2^d-tree over a box (a binary tree in 1-D, a quadtree in 2-D): a cell is split while it
# may contain a zero of Q — by the sign of Q at its corners and centre, by |Q|, or, for
# polynomials, by a **certified interval enclosure** that cannot miss a zero. It then
# draws new points inside the leaves. Definitions: `docs/refinement.md`.

# %%
# %matplotlib inline
import numpy as np
import matplotlib.pyplot as plt
import zp_ref
from zp_ref import plots, problems
from zp_ref.rng import STREAMS, call_seed, uniforms

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

# %% [markdown]
# ## 1-D: bracket every root
#
# With `criterion="sign"` a cell is split while Q changes sign over its evaluated points.
# Every simple root is bracketed to a width of a few 1e-11 after a few hundred
# evaluations of Q; the tree shares corner values between neighbouring cells, so each
# point is evaluated once. A bracket encloses a sign change of Q *as computed in floating
# point*: Q's coefficients, multiplied out from the decimal roots, carry rounding, so a
# decimal root can sit a few 1e-11 outside its bracket (the errors below are of the size
# of the half-widths).

# %%
config = ActiveSamplerConfig(initial_grid_size=100, grid_bounds=(-3.0, 3.0),
                             max_refinement_level=30, criterion="sign")
tree = ActiveSampler(config, q=p1.q).refine()
centres, half = tree.pole_estimates()
print(f"{tree.n_evaluations} evaluations of Q, {len(centres)} pole estimates\n")
print("   true root        estimate   half-width   |error|")
for r, c, h in zip(roots, centres[:, 0], half[:, 0]):
    print(f"{r:12.6f}  {c:14.11f}  {h:11.2e}  {abs(c - r):8.1e}")
assert len(centres) == len(roots) and np.all(np.abs(centres[:, 0] - roots) <= 1e-9)
plots.plot_refinement_tree(tree)

# %% [markdown]
# ## 2-D: a quadtree around the zero curve
#
# On `circle_2d` the tree refines along the circle; pole estimates are the finest flagged
# cells. Each estimate's centre lies within one cell diagonal of the true circle. The
# `max_grid_points` cap stops the tree; when it binds, the most urgent cells (sign change,
# then smaller |Q|, then lower level) are refined first.

# %%
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

# %%
p3 = problems.get("bivariate_deg6_2d")
tree3 = ActiveSampler(ActiveSamplerConfig(initial_grid_size=16, grid_bounds=p3.bounds,
                                          max_refinement_level=10, max_grid_points=12000,
                                          criterion="interval"), q=p3.q, input_dim=2).refine()
print(p3.description)
plots.plot_refinement_tree(tree3)

# %% [markdown]
# ## The criteria compared
#
# Four problems, four criteria (all with up to 30 levels and a cap of 20,000 points):
#
# - `abs`: min |Q| over the cell's points < `refinement_threshold` (0.1) — refines wide
#   regions and can hit the cap before it localises anything;
# - `sign`: Q changes sign (a point where Q is exactly 0 counts) — fast and tight, but
#   blind to a double root (no sign change) and to two roots inside one cell, unless a
#   grid point happens to land exactly on the root;
# - `abs_or_sign` (the default): either;
# - `interval`: a rigorous enclosure of Q over the cell (a centred form plus a rounding
#   bound) contains 0 — it finds every zero, double roots and close pairs included.
#
# "found" counts the true roots that lie inside an estimate's bracket (widened by 1e-9
# for the rounding of Q's coefficients, see above). The lines under the table read it:
# where `sign` finds a double root, and what the default criterion costs.

# %%
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

# %% [markdown]
# ## A double root
#
# Q = (x - 0.3)^2 (x + 1.1) touches zero at 0.3 without changing sign, and 0.3 is not a
# grid point, so `sign` never flags it (the catalogue's `double_root_1d`, whose double
# root 0.5 is a grid point where Q is exactly 0, is found only by that accident). The interval criterion encloses it; the enclosure stops shrinking where it is
# dominated by floating-point rounding (Q is ~1e-14 within 1e-7 of the root), which is
# why a double root is localised to about 1e-7 and a simple one to ~1e-11.

# %%
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

# %% [markdown]
# ## Drawing new points from the tree
#
# `sample(n, seed=..., weighting=...)` picks a leaf, then a uniform point inside it:
# `"volume"` is uniform over the box, `"leaf"` gives every leaf equal mass (density follows
# refinement depth), `"importance"` weights a leaf by its volume times 1/|Q|^2 at its
# centre.

# %%
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

# %% [markdown]
# ## The same tree on every backend
#
# The tree is a pure function of (Q, config): corners are exact dyadic fractions of the
# box, and the NumPy oracle and the Numba kernels build identical leaves.

# %%
trees = {b: ActiveSampler(config2, q=p2.q, input_dim=2, backend=b).refine().leaves()
         for b in ("numpy", "cpu")}
same = all(np.array_equal(trees["numpy"][k], trees["cpu"][k], equal_nan=True)
           for k in ("lo", "hi", "level", "flagged"))
print("numpy and cpu leaves identical:", same, "-", len(trees["cpu"]["level"]), "leaves")
assert same
