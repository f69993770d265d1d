"""Tensor in, tensor out at every entry point that takes Q, weights or a pool
(docs/compat.md): values equal the NumPy path's, dtypes and devices follow the rules,
and NumPy in stays NumPy out without importing torch."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zp_ref  # noqa: E402
from zp_ref.tensors import squeeze_q  # noqa: E402

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
MIX = [0.1, 0.2, 0.3, 0.2, 0.2]


def pool(n=300, dtype=torch.float64):
    x = torch.linspace(-2.0, 2.0, n, dtype=torch.float64)
    q = ((x - 0.3) * (x + 1.1) * 1e-2).to(dtype)
    return x.to(dtype), q


def head(q):
    """q as a model's Q head: (N, 1) with requires_grad."""
    return q.detach().clone().unsqueeze(1).requires_grad_()


@pytest.mark.parametrize("dtype", DTYPES)
def test_importance_weights_keep_the_tensor_dtype_and_equal_the_numpy_result(dtype):
    _, q = pool(dtype=dtype)
    w = zp_ref.importance_weights(head(q))
    want = zp_ref.importance_weights(q.double().numpy())
    assert isinstance(w, torch.Tensor) and w.dtype == dtype and w.shape == (300,)
    assert not w.requires_grad and w.device == q.device
    np.testing.assert_allclose(w.double().numpy(), want, rtol=torch.finfo(dtype).eps)


def test_integer_tensor_gives_float64_weights():
    w = zp_ref.importance_weights(torch.tensor([1, 2, 3]))
    assert w.dtype == torch.float64
    np.testing.assert_allclose(w.numpy(), zp_ref.importance_weights(np.array([1.0, 2, 3])),
                               rtol=1e-15)


def test_sample_indices_of_tensor_weights_are_the_numpy_indices_as_int64():
    _, q = pool()
    w = zp_ref.importance_weights(q)
    idx = zp_ref.sample_indices(w.float().unsqueeze(1), 500, seed=7)
    want = zp_ref.sample_indices(w.float().double().numpy(), 500, seed=7)
    assert idx.dtype == torch.int64 and idx.device == w.device
    np.testing.assert_array_equal(idx.numpy(), want)


def test_bands_and_stratified_sample_return_int64_tensors_equal_to_numpy():
    _, q = pool(dtype=torch.float32)
    qn = q.double().numpy()
    assert torch.equal(zp_ref.band_of(head(q)), torch.as_tensor(zp_ref.band_of(qn)))
    counts = zp_ref.band_counts(head(q))
    assert counts.dtype == torch.int64
    np.testing.assert_array_equal(counts.numpy(), zp_ref.band_counts(qn))
    idx, info = zp_ref.stratified_sample(head(q), 40, mix=MIX, seed=3)
    want, want_info = zp_ref.stratified_sample(qn, 40, mix=MIX, seed=3)
    assert idx.dtype == torch.int64
    np.testing.assert_array_equal(idx.numpy(), want)
    np.testing.assert_array_equal(info["achieved"], want_info["achieved"])


@pytest.mark.parametrize("method", ["sample_batch", "hybrid_sample"])
def test_importance_sampler_returns_the_pool_rows_and_int64_indices(method):
    x, q = pool(dtype=torch.float32)
    x = x.unsqueeze(1).requires_grad_()
    tensor_sampler = zp_ref.ImportanceSampler(seed=5)
    numpy_sampler = zp_ref.ImportanceSampler(seed=5)
    for _ in range(2):
        bx, idx = getattr(tensor_sampler, method)(x, head(q), 64)
        nbx, nidx = getattr(numpy_sampler, method)(x.detach().double().numpy(),
                                                    q.double().numpy(), 64)
        assert idx.dtype == torch.int64 and isinstance(bx, torch.Tensor)
        np.testing.assert_array_equal(idx.numpy(), nidx)
        assert torch.equal(bx, x[idx]) and bx.requires_grad       # autograd through x[idx]
    assert isinstance(nidx, np.ndarray) and isinstance(nbx, np.ndarray)


def test_numpy_x_with_tensor_q_gives_a_tensor_batch():
    x, q = pool()
    bx, idx = zp_ref.ImportanceSampler(seed=1).sample_batch(x.numpy(), q, 16)
    assert isinstance(bx, torch.Tensor) and bx.dtype == torch.float64
    np.testing.assert_array_equal(bx.numpy(), x.numpy()[idx.numpy()])


@pytest.mark.parametrize("strategy", ["uniform", "importance", "hybrid"])
def test_integrated_sampler_tensor_pool(strategy):
    x, q = pool(dtype=torch.float32)
    cfg = zp_ref.DiagnosticConfig(auto_export=False)
    a = zp_ref.IntegratedSampler(strategy, seed=2, diagnostic_config=cfg)
    b = zp_ref.IntegratedSampler(strategy, seed=2, diagnostic_config=cfg)
    bx, info = a.sample_batch(x, head(q), 32)
    nbx, ninfo = b.sample_batch(x.double().numpy(), q.double().numpy(), 32)
    assert info["indices"].dtype == torch.int64 and bx.dtype == torch.float32
    np.testing.assert_array_equal(info["indices"].numpy(), ninfo["indices"])
    assert torch.equal(bx, x[info["indices"]])


def test_curriculum_weights_follow_the_tensor_dtype():
    x, q = pool(dtype=torch.float32)
    sched = zp_ref.CurriculumScheduler()
    w = sched.get_sample_weights(x, head(q))
    want = sched.get_sample_weights(x.double().numpy(), q.double().numpy())
    assert w.dtype == torch.float32
    np.testing.assert_allclose(w.double().numpy(), want, rtol=2.0 ** -23)
    band = zp_ref.BandCurriculum(seed=1)
    idx, achieved = band.sample(head(q), 20, epoch=0)
    want_idx, want_achieved = zp_ref.BandCurriculum(seed=1).sample(q.double().numpy(), 20, 0)
    assert idx.dtype == torch.int64 and achieved.dtype == torch.int64
    np.testing.assert_array_equal(idx.numpy(), want_idx)


def test_monitor_updates_accept_tensors_with_grad():
    x, q = pool(dtype=torch.float32)
    cfg = zp_ref.DiagnosticConfig(auto_export=False, monitor_q_min=False)
    a, b = zp_ref.DiagnosticMonitor(cfg), zp_ref.DiagnosticMonitor(cfg)
    grads = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    idx = torch.arange(0, 300, 10)
    a.update(0, {"loss_train": 1.0}, p_values=x.requires_grad_(), q_values=head(q),
             gradients={"w": grads.requires_grad_()}, tags=torch.zeros(300, dtype=torch.int64))
    a.update_batch(q_values=head(q[idx]), weights=torch.ones(30), indices=idx)
    b.update(0, {"loss_train": 1.0}, p_values=x.detach().double().numpy(),
             q_values=q.double().numpy(), gradients={"w": grads.detach().numpy()},
             tags=np.zeros(300, dtype=np.int64))
    b.update_batch(q_values=q[idx].double().numpy(), weights=np.ones(30), indices=idx.numpy())
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["history"] == sb["history"] and sa["batch_metrics"] == sb["batch_metrics"]
    assert sa["gradient_history"] == sb["gradient_history"]


def test_other_2d_shapes_are_refused_naming_the_argument():
    with pytest.raises(ValueError, match=r"q must be \(N,\) or \(N, 1\), got shape \(4, 2\)"):
        zp_ref.band_of(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"q_pool must be \(N,\) or \(N, 1\)"):
        zp_ref.ImportanceSampler().sample_batch(np.zeros(4), torch.zeros(4, 3), 2)
    with pytest.raises(ValueError, match=r"q_values must be"):
        zp_ref.DiagnosticMonitor().update_batch(q_values=np.zeros((3, 2)))


def test_squeeze_q_leaves_one_d_input_and_ragged_lists_alone():
    q = np.arange(3.0)
    assert squeeze_q(q) is q
    ragged = [[1.0], [1.0, 2.0]]
    assert squeeze_q(ragged) is ragged
    assert squeeze_q([[1.0], [2.0]]) == [1.0, 2.0]


def test_numpy_calls_never_import_torch():
    code = ("import sys, numpy as np, zp_ref\n"
            "q = np.linspace(-1, 1, 50)\n"
            "w = zp_ref.importance_weights(q.reshape(-1, 1))\n"
            "zp_ref.sample_indices(w, 5, seed=0); zp_ref.band_of(q)\n"
            "zp_ref.singularity_prob(q, 0.1); zp_ref.ema_update(0.0, w)\n"
            "zp_ref.ImportanceSampler().sample_batch(q, q, 4)\n"
            "zp_ref.CurriculumScheduler().get_sample_weights(q, q)\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch")
def test_cuda_tensors_come_back_on_their_device():
    x, q = pool(dtype=torch.float32)
    x, q = x.cuda().unsqueeze(1), head(q).cuda()
    w = zp_ref.importance_weights(q)
    assert w.device == q.device and w.dtype == torch.float32
    bx, idx = zp_ref.ImportanceSampler(seed=5).sample_batch(x, q, 64)
    assert bx.device == x.device and idx.device == x.device and torch.equal(bx, x[idx])
    want = zp_ref.ImportanceSampler(seed=5).sample_batch(x.cpu().numpy(),
                                                         q.detach().cpu().numpy(), 64)[1]
    np.testing.assert_array_equal(idx.cpu().numpy(), want)
    assert zp_ref.band_of(q).device == q.device
    assert zp_ref.sampling_weights(zp_ref.singularity_prob(q, 0.01)).device == q.device


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hybrid_indices_of_tensor_weights_return_index_and_ratio_tensors(dtype):
    """hybrid_indices(tensor) is (int64 tensor, tensor of the weights' dtype) holding the
    NumPy call's indices and likelihood ratios (of the float64 weights)."""
    _, q = pool()
    w = zp_ref.importance_weights(q).to(dtype)
    idx, lr = zp_ref.hybrid_indices(w, 64, ratio=0.6, seed=4)
    want_idx, want_lr = zp_ref.hybrid_indices(w.double().numpy(), 64, ratio=0.6, seed=4)
    assert idx.dtype == torch.int64 and lr.dtype == dtype
    assert np.array_equal(idx.numpy(), want_idx)
    assert np.array_equal(lr.numpy(), want_lr.astype(torch.empty(0, dtype=dtype).numpy().dtype))


def test_refine_grid_accepts_a_q_head_tensor():
    """ActiveSampler.refine_grid takes a tensor Q ((N, 1), requires_grad) and builds the
    same tree as with the float64 NumPy values."""
    from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
    cfg = ActiveSamplerConfig(initial_grid_size=16, grid_bounds=(-2.0, 2.0),
                              refinement_threshold=0.05)
    a, b = ActiveSampler(cfg, backend="numpy"), ActiveSampler(cfg, backend="numpy")
    for _ in range(3):
        x = a.get_current_grid()[:, 0]
        q = (x - 0.3) * (x + 1.1)
        a.refine_grid(head(torch.from_numpy(q)))
        b.refine_grid(q)
    assert np.array_equal(a.get_current_grid(), b.get_current_grid())
    assert a.get_current_grid().shape[0] > 16
