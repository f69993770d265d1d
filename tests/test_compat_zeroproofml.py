"""zp_ref.compat.zeroproofml and the risk functions against zeroproofml 0.6.1.

Numbers recorded from zeroproofml 0.6.1 live in tests/data/zeroproofml_0_6_1.json
(made by tests/data/make_zeroproofml_0_6_1.py); the tests that import zeroproofml itself
skip without it.
"""
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from zp_ref import ema_update, sampling_weights, singularity_prob  # noqa: E402
from zp_ref.compat.zeroproofml import (AdaptiveSampler, AdaptiveSamplerConfig,  # noqa: E402
                                       RiskWeightedSampler)

RTOL64 = 1e-12
RTOL32 = 2.0 ** -23          # zeroproofml computes float32 inputs in float32
RECORD = json.loads((Path(__file__).parent / "data" / "zeroproofml_0_6_1.json").read_text())


def _t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


# ------------------------------------------------------------------ risk functions
def test_risk_functions_give_recorded_zeroproofml_numbers_with_its_positional_calls():
    r = RECORD["risk"]
    q, prev, bottom = _t(r["q"]), _t(r["previous"]), torch.tensor(r["bottom_mask"])
    p = singularity_prob(q, 1e-4, 0.1)
    calls = {
        "singularity_prob(q, 1e-4, 0.1)": p,
        "singularity_prob(q, 0.05)": singularity_prob(q, 0.05),
        "ema_update(previous, p, gamma=0.1)": ema_update(prev, p, gamma=0.1),
        "ema_update(previous, p, 0.3)": ema_update(prev, p, 0.3),
        "sampling_weights(previous)": sampling_weights(prev),
        "sampling_weights(previous, bottom_mask, alpha=2.0, s_min=0.5)":
            sampling_weights(prev, bottom, alpha=2.0, s_min=0.5),
    }
    for name, got in calls.items():
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64, name
        np.testing.assert_allclose(got.numpy(), r[name], rtol=RTOL64, atol=0, err_msg=name)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_risk_functions_return_a_tensor_of_the_input_dtype_without_grad(dtype):
    q = torch.linspace(-0.2, 0.2, 9, dtype=dtype).requires_grad_()
    p = singularity_prob(q, 0.01)
    e = ema_update(torch.zeros(9, dtype=dtype), p)
    w = sampling_weights(e, torch.zeros(9, dtype=torch.bool))
    for out in (p, e, w):
        assert out.dtype == dtype and out.device == q.device and not out.requires_grad
    want = np.maximum(0.1, 1 + 0.1 * singularity_prob(q.detach().double().numpy(), 0.01))
    np.testing.assert_allclose(w.double().numpy(), want, rtol=torch.finfo(dtype).eps)


def test_numpy_in_stays_numpy_out():
    q = np.array([0.0, 0.5, -1.0])
    for out in (singularity_prob(q, 0.1), ema_update(0.0, q), sampling_weights(np.abs(q))):
        assert type(out) is np.ndarray and out.dtype == np.float64


# ------------------------------------------------------------------ AdaptiveSampler
@pytest.mark.parametrize("run", RECORD["adaptive_sampler"]["runs"], ids=lambda r: r["q_dtype"])
def test_adaptive_sampler_weights_equal_recorded_zeroproofml(run):
    cfg = AdaptiveSamplerConfig(**RECORD["adaptive_sampler"]["config"])
    sampler = AdaptiveSampler(list(range(40)), cfg, seed=3)
    rtol = RTOL32 if run["q_dtype"] == "float32" else RTOL64
    for step in run["steps"]:
        q = _t(step["q"], getattr(torch, run["q_dtype"]))
        mask = None if step["bottom_mask"] is None else _t(step["bottom_mask"], q.dtype)
        sampler.update(q, mask)
        np.testing.assert_allclose(sampler.weights.numpy(), step["weights"], rtol=rtol, atol=0)


def test_adaptive_sampler_q_of_shape_n_by_1_equals_q_of_shape_n():
    q = torch.linspace(-0.01, 0.01, 12, dtype=torch.float32).requires_grad_()
    a = AdaptiveSampler(list(range(12)), AdaptiveSamplerConfig(tau_train=1e-3))
    b = AdaptiveSampler(list(range(12)), AdaptiveSamplerConfig(tau_train=1e-3))
    a.update(q)
    b.update(q.reshape(-1, 1))
    assert torch.equal(a.weights, b.weights)
    with pytest.raises(ValueError, match=r"q_values must be \(N,\) or \(N, 1\)"):
        a.update(torch.zeros(12, 2))
    with pytest.raises(ValueError, match=r"one Q per dataset item \(12\)"):
        a.update(torch.zeros(11))


def test_adaptive_sampler_defaults_and_len():
    s = AdaptiveSampler(list(range(7)))
    assert s.config == AdaptiveSamplerConfig(1e-4, 0.1, 0.1, 1.0, 0.1, 32, 0, False, False)
    assert len(s) == 7 and torch.equal(s.weights, torch.ones(7, dtype=torch.float64))


def _epoch(loader):
    return torch.cat([b for b in loader]).tolist()


def test_draws_are_fixed_by_seed_and_new_every_epoch():
    def run(seed):
        s = AdaptiveSampler(list(range(50)), AdaptiveSamplerConfig(batch_size=10), seed=seed)
        s.update(torch.linspace(-1, 1, 50))
        return _epoch(s), _epoch(s.dataloader()), _epoch(s.dataloader(batch_size=25))
    first, again = run(5), run(5)
    assert first == again
    assert first[0] != first[1] != first[2]
    assert run(6) != first
    assert all(len(e) == 50 for e in first)


def test_draws_equal_with_zero_and_two_workers():
    def epochs(workers):
        s = AdaptiveSampler(list(range(30)), AdaptiveSamplerConfig(batch_size=4), seed=9)
        s.update(torch.linspace(-0.5, 0.5, 30))
        return [_epoch(s.dataloader(num_workers=workers)) for _ in range(2)]
    assert epochs(0) == epochs(2)


def test_draws_follow_the_weights_chi_square():
    from scipy.stats import chisquare
    w = np.array([1.0, 2.0, 0.5, 4.0, 2.5])
    counts = np.zeros(5)
    sampler = RiskWeightedSampler(w, 4000, seed=11)
    for _ in range(5):
        counts += np.bincount(list(iter(sampler)), minlength=5)
    assert chisquare(counts, counts.sum() * w / w.sum()).pvalue > 1e-3


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="beta"):
        AdaptiveSamplerConfig(beta=0.0)
    with pytest.raises(TypeError, match="batch_size"):
        AdaptiveSamplerConfig(batch_size=2.5)
    with pytest.raises(TypeError, match="config"):
        AdaptiveSampler([1, 2], config={"beta": 0.1})
    with pytest.raises(TypeError, match="seed"):
        AdaptiveSampler([1, 2], seed=-1.0)


# ------------------------------------------------------------------ live zeroproofml
def _zeroproofml():
    pytest.importorskip("zeroproofml", exc_type=ImportError)
    from zeroproof.training import sampler
    return sampler


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_live_zeroproofml_risk_functions_and_adaptive_sampler(dtype):
    zp = _zeroproofml()
    g = torch.Generator().manual_seed(4)
    q = torch.randn(64, generator=g, dtype=torch.float64).to(dtype) * 0.02
    prev = torch.rand(64, generator=g, dtype=torch.float64).to(dtype)
    bottom = torch.rand(64, generator=g) < 0.2
    rtol = RTOL64 if dtype == torch.float64 else RTOL32 * 4
    pairs = [(singularity_prob(q, 1e-3, 0.05), zp.singularity_prob(q, 1e-3, 0.05)),
             (ema_update(prev, q.abs(), 0.2), zp.ema_update(prev, q.abs(), 0.2)),
             (sampling_weights(prev, bottom.to(dtype), alpha=2.0),
              zp.sampling_weights(prev, bottom.to(dtype), alpha=2.0))]
    for ours, theirs in pairs:
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        atol = 1e-7 if dtype == torch.float32 else 0.0
        torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol)
    cfg = dict(tau_train=1e-2, beta=0.02, gamma=0.4)
    ours = AdaptiveSampler(list(range(64)), AdaptiveSamplerConfig(**cfg))
    theirs = zp.AdaptiveSampler(list(range(64)), zp.AdaptiveSamplerConfig(**cfg))
    for k in range(3):
        ours.update(q * (k + 1), bottom.to(dtype))
        theirs.update(q * (k + 1), bottom.to(dtype))
    np.testing.assert_allclose(ours.weights.numpy(), theirs.weights.double().numpy(),
                               rtol=RTOL32 * 4 if dtype == torch.float32 else RTOL64)
