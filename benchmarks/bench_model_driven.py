"""The cost of a model-driven refresh (issue 22, item 7): ``ModelDrivenSampler.refresh``
over a pool of 10**6 points (the model's Q head with |grad_x Q| by autograd, the
per-sample loss, the weights) plus the epoch's draws, against one training epoch of
100 steps of batch 256 of the training study's model (``zp_ref.apps.study_model.
RationalModel``, degrees (3, 3), 1-D and 2-D, float64; each step featurises its batch
as the study does, then loss, backward and an Adam step). Target: refresh <= 10 % of
the epoch. Medians of ``--repeats`` (default 7) calls after one warm-up call, with the
quartiles, and the load average (``uptime``) before and after; epochs and refreshes
alternate (a load change hits both sides; the median of the pairs' ratios is given
too); the refresh is split
into its parts (``last_refresh``: q, loss, weights) so the table says where the time
goes.

    python benchmarks/bench_model_driven.py [--quick] [--repeats 7] [--pool 1000000]
        [--threads N] [--json PATH] [--only refresh_rows]

``--threads N`` sets torch's and Numba's thread counts (default: theirs). On a machine
whose cores are shared by more processes than it has, 1 thread is the honest figure:
torch's intra-op parallel regions (tensors above ~32k elements, such as a refresh's
chunks, but not a training batch of 256) wait for descheduled threads.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout

import torch  # noqa: E402

from zp_ref.apps import bench  # noqa: E402
from zp_ref.apps.study_model import RationalModel, targets  # noqa: E402
from zp_ref.bridges.torch_model import ModelDrivenSampler  # noqa: E402
from zp_ref.model_driven import ModelDrivenConfig  # noqa: E402
from zp_ref.rng import STREAMS, uniforms  # noqa: E402

STEPS, BATCH = 100, 256
#: The default first (refresh_rows="auto": 4096 rows from a pool of 2**18 on, a full
#: refresh below), then full refreshes with either Q signal, then 4096 rows on any pool.
CONFIGS = {"defaults (refresh_rows='auto')": ModelDrivenConfig(),
           "full refresh (distance, autograd)": ModelDrivenConfig(refresh_rows=0),
           "full refresh, quantile (no gradient)": ModelDrivenConfig(q_signal="quantile",
                                                                     refresh_rows=0),
           "refresh_rows=4096": ModelDrivenConfig(refresh_rows=4096)}


def pool(target, n: int):
    """n points uniform in the target's box (stream 'pool'), their targets (finite)."""
    lo = np.array([b[0] for b in target.bounds])
    hi = np.array([b[1] for b in target.bounds])
    x = lo + (hi - lo) * uniforms(7, STREAMS["pool"], n * target.dim).reshape(n, target.dim)
    y, _ = target.evaluate(x)
    y = np.where(np.isfinite(y), y, 0.0)
    return torch.from_numpy(x), torch.from_numpy(y)


def per_sample_loss(model):
    """The study's "implicit" loss per sample: (Q y - P)^2 / (1 + y^2), (n,)."""
    def loss_fn(x, y):
        fp, fq = model.features(x)
        q = 1.0 + fq @ model.phi
        return (q * y - fp @ model.p) ** 2 / (1.0 + y * y)
    return loss_fn


def epoch_and_refresh_timing(model, x, y, sampler, repeats):
    """An epoch and a refresh + draws, timed alternately (``repeats`` pairs after one
    warm-up pair), so a change of the machine's load hits both sides of the ratio."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = per_sample_loss(model)
    batches = sampler.batches()
    parts, draws, totals, epochs = {k: [] for k in ("q", "loss", "weights")}, [], [], []

    def epoch():
        t0 = time.perf_counter()
        for idx in batches:
            it = torch.from_numpy(idx)
            opt.zero_grad()
            loss_fn(x[it], y[it]).mean().backward()
            opt.step()
        return time.perf_counter() - t0

    def refresh(e):
        t0 = time.perf_counter()
        sampler.refresh(e)
        sampler.set_epoch(e)
        t1 = time.perf_counter()
        sampler.global_batches()
        return t1 - t0, time.perf_counter() - t1
    epoch()
    refresh(1)                                                # warm-up pair
    for e in range(2, repeats + 2):
        epochs.append(epoch())
        r, d = refresh(e)
        totals.append(r + d)
        draws.append(d)
        for k in parts:
            parts[k].append(sampler.last_refresh[k])
    rf = {"refresh_and_draws": bench.timing(totals, 1), "draws": bench.timing(draws, 1),
          **{k: bench.timing(v, 1) for k, v in parts.items()}}
    pair = sorted(t / e for t, e in zip(totals, epochs))
    return bench.timing(epochs, 1), rf, pair[len(pair) // 2]


def run(n_pool: int, repeats: int, only: str = "") -> dict:
    rows = []
    for name in ("rational_1d", "rational_2d"):
        target = targets()[name]
        x, y = pool(target, n_pool)
        model = RationalModel(target.dim, *target.model_degrees, seed=0)
        for label, cfg in CONFIGS.items():
            if only not in label:
                continue
            s = ModelDrivenSampler(x, BATCH, STEPS, q_fn=model.q, y_pool=y,
                                   loss_fn=per_sample_loss(model), config=cfg)
            ep, rf, pair = epoch_and_refresh_timing(model, x, y, s, repeats)
            rows.append({"target": name, "config": label, "n_pool": n_pool,
                         "epoch": ep, "refresh": rf, "pair_ratio": pair,
                         "ratio": rf["refresh_and_draws"]["median"] / ep["median"]})
    return {"rows": rows}


def format_rows(result) -> str:
    out = [f"| target | signal | epoch ({STEPS} x {BATCH}) | refresh + draws | q head | loss "
           f"| weights | draws | refresh / epoch | median of pair ratios |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    ms = lambda t: f"{1e3 * t['median']:.0f} ms ({1e3 * t['q1']:.0f}-{1e3 * t['q3']:.0f})"
    for r in result["rows"]:
        f = r["refresh"]
        out.append(f"| {r['target']} | {r['config']} | {ms(r['epoch'])} | "
                   f"{ms(f['refresh_and_draws'])} | {ms(f['q'])} | {ms(f['loss'])} | "
                   f"{ms(f['weights'])} | {ms(f['draws'])} | {r['ratio']:.2f} | "
                   f"{r['pair_ratio']:.2f} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a pool of 10**5, 3 repeats")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--pool", type=int, default=10**6)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--only", default="", help="run the configs whose label contains this")
    args = p.parse_args(argv)
    if args.threads:
        import numba
        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    n_pool, repeats = (10**5, 3) if args.quick else (args.pool, args.repeats)
    load_before = bench.load_average()
    result = run(n_pool, repeats, args.only)
    result.update(load_before=load_before, load_after=bench.load_average(),
                  torch_threads=torch.get_num_threads(), command=" ".join(sys.argv))
    table = format_rows(result)
    print(table)
    print(f"load average before {load_before}, after {result['load_after']}; "
          f"torch threads {result['torch_threads']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
