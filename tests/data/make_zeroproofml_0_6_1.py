"""Record zeroproofml 0.6.1's risk functions and AdaptiveSampler weights as JSON.

Run with zeroproofml 0.6.1 importable (``pip install zeroproofml==0.6.1``, or its wheel
unpacked on PYTHONPATH) and torch installed:
``python tests/data/make_zeroproofml_0_6_1.py > tests/data/zeroproofml_0_6_1.json``.
"""
import json
import math

import torch
from zeroproof.training.sampler import (AdaptiveSampler, AdaptiveSamplerConfig, ema_update,
                                        sampling_weights, singularity_prob)


def pool(n, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(
        -6, 1, (n,), generator=g).to(torch.float64)
    return q


def main():
    q = pool(40, 1)
    prev = torch.rand(40, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    bottom = (torch.arange(40) % 7 == 0)
    risk = {
        "q": q.tolist(), "previous": prev.tolist(), "bottom_mask": bottom.tolist(),
        # positional calls exactly as zeroproofml code writes them
        "singularity_prob(q, 1e-4, 0.1)": singularity_prob(q, 1e-4, 0.1).tolist(),
        "singularity_prob(q, 0.05)": singularity_prob(q, 0.05).tolist(),
        "ema_update(previous, p, gamma=0.1)": ema_update(
            prev, singularity_prob(q, 1e-4, 0.1), gamma=0.1).tolist(),
        "ema_update(previous, p, 0.3)": ema_update(
            prev, singularity_prob(q, 1e-4, 0.1), 0.3).tolist(),
        "sampling_weights(previous)": sampling_weights(prev).tolist(),
        "sampling_weights(previous, bottom_mask, alpha=2.0, s_min=0.5)": sampling_weights(
            prev, bottom.to(torch.float64), alpha=2.0, s_min=0.5).tolist(),
    }
    config = dict(tau_train=0.01, beta=0.05, gamma=0.3, alpha=1.5, s_min=0.2, batch_size=8)
    runs = []
    for dtype in ("float32", "float64"):
        sampler = AdaptiveSampler(list(range(40)), AdaptiveSamplerConfig(**config))
        steps = []
        for step in range(3):
            qs = (pool(40, 10 + step) * 0.05).to(getattr(torch, dtype))
            mask = (torch.arange(40) % (3 + step) == 0).to(qs.dtype) if step else None
            sampler.update(qs, mask)
            steps.append({"q": qs.tolist(), "bottom_mask": None if mask is None else mask.tolist(),
                          "weights": sampler.weights.tolist(),
                          "weights_dtype": str(sampler.weights.dtype).split(".")[-1]})
        runs.append({"q_dtype": dtype, "steps": steps})
    assert all(math.isfinite(w) for r in runs for s in r["steps"] for w in s["weights"])
    doc = {"source": "zeroproofml 0.6.1 (zeroproof/training/sampler.py), torch "
                     + torch.__version__.split("+")[0],
           "risk": risk, "adaptive_sampler": {"config": config, "runs": runs}}
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
