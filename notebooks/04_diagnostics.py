# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Diagnostics: a monitored run, plots, export and reload
#
# `DiagnosticMonitor` records, per batch and per epoch: q_min, mean and spread of |Q|,
# near-pole and far ratios, the band histogram, sample diversity (unique / total), the
# Kish effective sample size and largest share of the weights, tag counts
# (REAL / PINF / NINF / PHI), coverage and loss when given, and near/far gradient
# statistics. Histories are bounded; exports are versioned one-file documents (a JSON
# header line, then the raw array bytes; never pickle). Definitions: `docs/diagnostics.md`.
#
# The run below has no trainable model (notebook 05 has one): it monitors the sampling
# itself on y = 1/Q(x) for the degree-8 catalogue problem. Tags follow a transreal guard:
# a sample is REAL when |Q| >= tau = 1e-8, else PINF/NINF by the sign of y; *coverage* is
# the REAL fraction, as in ZeroProofML. The gradient recorded is dy/dx = -Q'(x)/Q(x)^2.
# The loss panels stay empty because no loss exists here.

# %%
# %matplotlib inline
import numpy as np
import matplotlib.pyplot as plt
import zp_ref
from zp_ref import plots, problems
from zp_ref.rng import STREAMS, call_seed, uniforms

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
    """0 REAL, 1 PINF, 2 NINF (y = 1/Q: the sign of y is the sign of Q)."""
    return np.where(np.abs(q) >= TAU, 0, np.where(q > 0, 1, 2))


export_dir = Path(tempfile.mkdtemp(prefix="zp_ref_diagnostics_"))
print("pool:", q_pool.size, "points; exports go to a temporary folder")

# %% [markdown]
# ## The monitored run
#
# A far -> mid -> near band curriculum (5 epochs per stage, 4 batches of 256 per epoch,
# importance draws inside bands). Every batch feeds `update_batch` (|Q| statistics, the
# ESS of the batch's importance weights, diversity of the drawn indices, tags); every
# epoch feeds `update` (coverage, |Q| statistics of the epoch's draws, gradients, tags).
# The monitor exports itself every `export_frequency` epochs and warns (`QMinWarning`,
# through `warnings`, never `print`) when q_min falls below its threshold.

# %%
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

# %%
plots.plot_history(monitor)

# %%
plots.plot_band_fractions(monitor)

# %% [markdown]
# Per-batch rows. Diversity (unique / total indices of a batch) is lowest in the far
# stage: importance draws inside the far band keep returning to the pool entries just
# above |Q| = 1e-2. Non-REAL samples (|Q| < tau) appear once the near bands are drawn.
# The near/far gradient statistics show why training needs care there: |dy/dx| grows like
# 1/Q^2.

# %%
bm = monitor.batch_metrics
print("epoch batch      q_min  diversity   ESS/n  max share  non-REAL")
for i in range(0, len(bm["epoch"]), 8):
    print(f"{bm['epoch'][i]:5d} {bm['batch_idx'][i]:5d}  {bm['q_min'][i]:9.2e}  {bm['diversity'][i]:9.3f}"
          f"  {bm['ess_fraction'][i]:6.3f}  {bm['max_weight_share'][i]:9.3f}  "
          f"{bm['n_pinf'][i] + bm['n_ninf'][i]:8d}")
g = monitor.gradient_history
fmt = lambda v: "-" if v is None else f"{v:.3e}"
print("\nepoch  near-pole mean |dy/dx|  far mean |dy/dx|")
for e in (0, 7, 14):
    print(f"{e:5d}  {fmt(g['near_pole_mean'][e]):>22}  {fmt(g['far_pole_mean'][e]):>16}")

# %% [markdown]
# ## Export and reload
#
# `export_diagnostics(epoch)` writes `diagnostics_epoch<E>_pid<P>_<K>.json` (the process
# id and a counter keep concurrent exporters apart): one line of JSON (schema version,
# array layout, SHA-256 hashes, the body) followed by the raw bytes of the P/Q snapshots;
# `DiagnosticMonitor.load(path)` rebuilds the monitor. An edited or truncated file is
# refused with a `ValueError`.

# %%
import json

path = monitor.export_diagnostics(14)
print(sorted(p.name for p in export_dir.iterdir()))
header = json.loads(path.read_bytes().partition(b"\n")[0])
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

# %% [markdown]
# ## Saved state continues exactly
#
# `save_state` / `load_state` work for every stateful object (samplers, curricula,
# schedules, monitor, refinement tree): the loaded curriculum makes exactly the draws the
# original would have made.

# %%
from zp_ref.state import load_state, save_state

state_path = save_state(export_dir / "curriculum.json", curriculum)
twin = load_state(state_path)
a, _ = curriculum.sample(q_pool, 256, 15)
b, _ = twin.sample(q_pool, 256, 15)
print("same next batch after reload:", np.array_equal(a, b))
assert np.array_equal(a, b)
