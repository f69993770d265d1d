"""The PyTorch bridge (zp_ref.torch_bridge); the training study is in tests/test_study.py."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from zp_ref.bands import band_of, largest_remainder  # noqa: E402
from zp_ref.curriculum import BandCurriculum  # noqa: E402
from zp_ref.rng import STREAMS, derive_seed, uniforms  # noqa: E402
from zp_ref.sampling import (ImportanceSampler, ImportanceSamplerConfig,  # noqa: E402
                             hybrid_indices, sample_indices, uniform_indices)
from zp_ref.torch_bridge import (CurriculumBatchSampler, EpochLoader,  # noqa: E402
                                 HybridBatchSampler, ImportanceWeightedSampler, as_tensor,
                                 to_numpy)
from zp_ref.weighting import importance_weights  # noqa: E402

N = 2000


@pytest.fixture
def q_pool():
    """Q of a pool with two poles: x in [-1, 1), Q = (x - 0.3)(x + 0.5)."""
    x = np.linspace(-1.0, 1.0, N, endpoint=False)
    return (x - 0.3) * (x + 0.5)


def _dataset(n=N):
    return TensorDataset(torch.arange(n))


def _loader_indices(loader) -> np.ndarray:
    return np.concatenate([b[0].numpy() for b in loader])


# ------------------------------------------------------------------ tensors
def test_as_tensor_shares_memory_with_numpy():
    a = np.arange(6.0)
    t = as_tensor(a)
    a[2] = 42.0                       # a write through the array is seen in the tensor
    assert t[2].item() == 42.0
    t[3] = -1.0                       # and the other way round
    assert a[3] == -1.0
    assert t.dtype == torch.float64 and t.data_ptr() == a.ctypes.data


def test_to_numpy_shares_memory_with_cpu_tensor():
    t = torch.zeros(4, requires_grad=True)
    a = to_numpy(t)
    with torch.no_grad():
        t[1] = 5.0
    assert a[1] == 5.0
    b = np.ones(3)
    assert to_numpy(b) is b


def test_as_tensor_keeps_tensors_and_moves_on_request():
    t = torch.arange(3)
    assert as_tensor(t) is t
    assert as_tensor(np.arange(3.0), device="cpu").device.type == "cpu"


@pytest.mark.parametrize("bad, err", [("abc", TypeError), ([1, 2], TypeError),
                                      (np.array(["a"]), TypeError),
                                      (np.arange(3, dtype=">f8"), TypeError)])
def test_as_tensor_refuses_other_inputs(bad, err):
    with pytest.raises(err, match="a must be"):
        as_tensor(bad)
    with pytest.raises(TypeError, match="t must be"):
        to_numpy([1.0])


class _FakeDeviceArray:
    __cuda_array_interface__ = {"shape": (2,), "typestr": "<f8", "data": (0, False),
                                "version": 3}


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch sees a GPU")
def test_as_tensor_cuda_array_without_torch_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA device array"):
        as_tensor(_FakeDeviceArray())


def test_as_tensor_numba_cuda_zero_copy():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU visible to torch")
    from zp_ref.backends import gpu_present
    if not gpu_present():
        pytest.skip("needs a real GPU for numba.cuda (not the simulator)")
    from numba import cuda
    d = cuda.to_device(np.arange(8.0))
    t = as_tensor(d)
    assert t.device.type == "cuda" and t.data_ptr() == d.__cuda_array_interface__["data"][0]
    t[3] = 99.0                                   # a write through the tensor ...
    torch.cuda.synchronize()
    assert d.copy_to_host()[3] == 99.0            # ... is seen in the numba array


# ------------------------------------------------------------------ ImportanceWeightedSampler
def test_dataloader_indices_equal_importance_sampler(q_pool):
    cfg = ImportanceSamplerConfig(weight_power=1.5, max_weight=1e4)
    s = ImportanceWeightedSampler(q_pool, 300, config=cfg, seed=11)
    ref = ImportanceSampler(cfg, seed=11)
    x_pool = np.arange(N)
    for epoch in range(3):
        s.set_epoch(epoch)
        got = _loader_indices(DataLoader(_dataset(), sampler=s, batch_size=64))
        _, idx = ref.sample_batch(x_pool, q_pool, 300)     # call number `epoch`
        np.testing.assert_array_equal(got, idx)
        w = importance_weights(q_pool, **cfg.weight_kwargs())
        np.testing.assert_array_equal(got, sample_indices(w, 300, seed=derive_seed(11, epoch)))
        np.testing.assert_allclose(s.likelihood_ratios, ref.last_likelihood_ratios, rtol=1e-12)
    assert len(s) == 300


def test_set_epoch_reproducible(q_pool):
    s = ImportanceWeightedSampler(q_pool, 200, seed=3)
    s.set_epoch(4)
    first, again = list(s), list(s)
    assert first == again                                  # same epoch, same draws
    s.set_epoch(5)
    assert list(s) != first
    t = ImportanceWeightedSampler(q_pool, 200, seed=3)
    t.set_epoch(4)
    assert list(t) == first                                # a fresh sampler agrees
    with pytest.raises(ValueError, match="epoch"):
        s.set_epoch(-1)
    with pytest.raises(TypeError, match="epoch"):
        s.set_epoch(1.0)


def test_update_q_changes_the_distribution(q_pool):
    cfg = ImportanceSamplerConfig(max_weight=1e8)
    s = ImportanceWeightedSampler(q_pool, 4000, config=cfg, seed=5)
    x = np.linspace(-1.0, 1.0, N, endpoint=False)
    before = np.array(list(s))
    q_new = torch.from_numpy(x - 0.8)                      # e.g. the model's Q head, a tensor
    s.update_q(q_new)
    after = np.array(list(s))
    w = importance_weights(x - 0.8, **cfg.weight_kwargs())
    np.testing.assert_array_equal(after, sample_indices(w, 4000, seed=derive_seed(5, 0)))
    # the mass moved from the poles at 0.3 and -0.5 to the new one at 0.8
    near = lambda idx, p: np.mean(np.abs(x[idx] - p) < 0.05)  # noqa: E731
    assert near(before, 0.3) > 0.3 and near(after, 0.3) < 0.01
    assert near(after, 0.8) > 0.9 and near(before, 0.8) < 0.01
    np.testing.assert_allclose(s.likelihood_ratio(after[:5]), 1.0 / (N * w[after[:5]]),
                               rtol=1e-12)
    lr_t = s.likelihood_ratio(torch.from_numpy(after[:5]))
    assert isinstance(lr_t, torch.Tensor) and lr_t.dtype == torch.float64


def test_update_q_refuses_bad_values_and_keeps_state(q_pool):
    s = ImportanceWeightedSampler(q_pool, 100, seed=1)
    w = s.weights.copy()
    bad_nan = q_pool.copy()
    bad_nan[7] = np.nan
    for bad, err, msg in [(q_pool[:-1], ValueError, "one value per pool entry"),
                          (bad_nan, ValueError, "NaN"),
                          (torch.ones(N, dtype=torch.bool), TypeError, "real numbers"),
                          (np.array(["a"] * N), TypeError, "real numbers")]:
        with pytest.raises(err, match=msg):
            s.update_q(bad)
        np.testing.assert_array_equal(s.weights, w)


def test_importance_sampler_bad_arguments(q_pool):
    with pytest.raises(ValueError, match="num_samples"):
        ImportanceWeightedSampler(q_pool, 0)
    with pytest.raises(TypeError, match="config"):
        ImportanceWeightedSampler(q_pool, 10, config={"weight_power": 2})
    with pytest.raises(TypeError, match="seed"):
        ImportanceWeightedSampler(q_pool, 10, seed=-1.5)
    with pytest.raises(ValueError, match="backend"):
        ImportanceWeightedSampler(q_pool, 10, backend="gpu")
    s = ImportanceWeightedSampler(q_pool, 10)
    list(s)
    with pytest.raises(ValueError, match="indices must lie in"):
        s.likelihood_ratio(np.array([0, N]))


def test_importance_sampler_state_round_trip(q_pool):
    s = ImportanceWeightedSampler(q_pool, 50, config=ImportanceSamplerConfig(temperature=2.0),
                                  seed=9)
    s.set_epoch(6)
    t = ImportanceWeightedSampler.from_state_dict(s.state_dict())
    assert list(t) == list(s)
    with pytest.raises(ValueError, match="keys"):
        ImportanceWeightedSampler.from_state_dict({"seed": 1})


# ------------------------------------------------------------------ batch samplers
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.7, 1.0])
def test_hybrid_batches_have_the_requested_mix(q_pool, ratio):
    B, nb, seed = 40, 4, 21
    q = q_pool.copy()
    q[::5] = np.inf                                   # zero importance weight
    h = HybridBatchSampler(q, B, nb, ratio=ratio, seed=seed)
    h.set_epoch(2)
    batches = [b[0].numpy() for b in DataLoader(_dataset(), batch_sampler=h)]
    assert len(batches) == nb == len(h)
    w = importance_weights(q)
    n_imp = int(np.floor(B * ratio))
    for b, got in enumerate(batches):
        s = derive_seed(seed, 2 * nb + b)
        assert got.shape == (B,)                      # full batches
        np.testing.assert_array_equal(got, hybrid_indices(w, B, ratio=ratio, seed=s)[0])
        # the contract's shuffle puts draw k of (importance..., uniform...) at position p
        order = np.argsort(uniforms(s, STREAMS["shuffle"], B, backend="numpy"), kind="stable")
        from_importance = order < n_imp
        assert from_importance.sum() == n_imp
        np.testing.assert_array_equal(np.sort(got[from_importance]),
                                      np.sort(sample_indices(w, n_imp, seed=s)))
        np.testing.assert_array_equal(np.sort(got[~from_importance]),
                                      np.sort(uniform_indices(N, B - n_imp, seed=s)))
        assert np.all(w[got[from_importance]] > 0)


def test_hybrid_batches_equal_importance_sampler_calls(q_pool):
    cfg = ImportanceSamplerConfig(importance_batch_ratio=0.6)
    h = HybridBatchSampler(q_pool, 32, 3, config=cfg, seed=4)
    ref = ImportanceSampler(cfg, seed=4)
    x_pool = np.arange(N)
    for epoch in range(2):
        h.set_epoch(epoch)
        for batch in h:
            _, idx = ref.hybrid_sample(x_pool, q_pool, 32)
            assert batch == idx.tolist()
            np.testing.assert_allclose(h.likelihood_ratio(idx), ref.last_likelihood_ratios,
                                       rtol=1e-12)


def test_curriculum_batches_follow_the_stage_mix():
    n = 2001
    q = np.geomspace(1e-7, 10.0, n) * (-1.0) ** np.arange(n)   # every band populated
    cur = BandCurriculum(epochs_per_stage=2, seed=8, backend="numpy")
    c = CurriculumBatchSampler(q, 50, 3, curriculum=cur)
    ref = BandCurriculum(epochs_per_stage=2, seed=8, backend="numpy")
    for epoch in range(6):
        c.set_epoch(epoch)
        batches = [b[0].numpy() for b in DataLoader(_dataset(n), batch_sampler=c)]
        assert len(batches) == 3
        target = largest_remainder(50, ref.mix_at(epoch))
        for got, counts in zip(batches, c.last_band_counts):
            assert got.shape == (50,)
            np.testing.assert_array_equal(np.bincount(band_of(q[got]), minlength=5), target)
            np.testing.assert_array_equal(counts, target)
            np.testing.assert_array_equal(got, ref.sample(q, 50, epoch)[0])
        info = c.update()
        assert info["stage"] == min(epoch // 2, 2)
        ref.update(epoch)
    with pytest.raises(ValueError, match="must not decrease"):
        c.set_epoch(2)
    with pytest.raises(ValueError, match="seed"):
        CurriculumBatchSampler(q, 5, 1, curriculum=BandCurriculum(), seed=3)
    with pytest.raises(TypeError, match="curriculum"):
        CurriculumBatchSampler(q, 5, 1, curriculum="far-to-near")


def test_curriculum_sampler_update_q():
    q = np.linspace(-1.0, 1.0, 1001)
    c = CurriculumBatchSampler(q, 20, 1, curriculum=BandCurriculum(seed=2, backend="numpy"))
    c.update_q(torch.from_numpy(q + 5.0))            # no entry below |Q| = 4: all far
    (batch,) = c.batches()
    assert np.all(np.abs(q[batch] + 5.0) > 1e-2)
    with pytest.raises(ValueError, match="one value per pool entry"):
        c.update_q(q[:10])


def test_num_workers_give_the_same_items(q_pool):
    ds = _dataset()
    h = HybridBatchSampler(q_pool, 25, 4, seed=6)
    direct = [b for b in h]
    with_workers = [b[0].tolist() for b in DataLoader(ds, batch_sampler=h, num_workers=2)]
    assert with_workers == direct
    s = ImportanceWeightedSampler(q_pool, 120, seed=6)
    loader = DataLoader(ds, sampler=s, batch_size=30, num_workers=2)
    np.testing.assert_array_equal(_loader_indices(loader), s.indices())


# ------------------------------------------------------------------ the model's own Q (q_fn)
class _ShiftedQ(torch.nn.Module):
    """Q(x) = (x - a)(x - b) as an (N, 1) column, like a model's Q head; records every
    call (chunk size, whether autograd was on, device)."""

    def __init__(self, a=0.3, b=-0.5):
        super().__init__()
        self.roots = torch.nn.Parameter(torch.tensor([a, b], dtype=torch.float64))
        self.calls = []

    def forward(self, x):
        self.calls.append((x.shape[0], torch.is_grad_enabled(), x.device.type))
        return ((x - self.roots[0]) * (x - self.roots[1]))[:, None]


def _x_pool():
    return torch.linspace(-1.0, 1.0, N + 1, dtype=torch.float64)[:-1]


def test_q_fn_is_evaluated_in_chunks_without_grad_and_squeezed():
    model, x = _ShiftedQ(), _x_pool()
    s = ImportanceWeightedSampler(num_samples=100, x_pool=x, q_fn=model, q_batch_size=300)
    assert model.calls == [(300, False, "cpu")] * 6 + [(200, False, "cpu")]
    q_true = ((x - 0.3) * (x + 0.5)).numpy()
    np.testing.assert_array_equal(s.q_pool, q_true)
    np.testing.assert_array_equal(s.weights, importance_weights(q_true))
    assert s.q_evaluations == 1 and s.pool_size == N


@pytest.mark.parametrize("refresh_every", [1, 2])
def test_q_fn_refresh_follows_the_model_each_epoch(refresh_every):
    """The weights at epoch e are those of the model's Q at the last refresh epoch
    (a multiple of refresh_every), and the draws are sample_indices of those weights."""
    model, x = _ShiftedQ(), _x_pool()
    cfg = ImportanceSamplerConfig(max_weight=1e8)
    s = ImportanceWeightedSampler(num_samples=500, x_pool=x, q_fn=model, config=cfg, seed=3,
                                  refresh_every=refresh_every)
    loader = DataLoader(_dataset(), sampler=s, batch_size=100)
    roots_used = [0.3]                         # the pole the weights were computed from
    for epoch in range(5):
        s.set_epoch(epoch)
        if epoch % refresh_every == 0 and epoch > 0:
            roots_used.append(model.roots[0].item())
        q = ((x - roots_used[-1]) * (x + 0.5)).numpy()
        w = importance_weights(q, **cfg.weight_kwargs())
        np.testing.assert_array_equal(s.weights, w)
        got = _loader_indices(loader)
        np.testing.assert_array_equal(got, sample_indices(w, 500, seed=derive_seed(3, epoch)))
        with torch.no_grad():                  # "training" moves the model's pole
            model.roots[0] += 0.1
    assert s.q_evaluations == len(roots_used)
    assert len(set(roots_used)) == len(roots_used) == (5 if refresh_every == 1 else 3)
    s.set_epoch(4)                             # the epoch Q was last evaluated for: no call
    assert s.q_evaluations == len(roots_used)


def test_q_fn_on_hybrid_and_curriculum_samplers():
    model, x = _ShiftedQ(), _x_pool()
    q0 = ((x - 0.3) * (x + 0.5)).numpy()
    h = HybridBatchSampler(batch_size=32, num_batches=3, x_pool=x, q_fn=model, seed=2)
    c = CurriculumBatchSampler(batch_size=32, num_batches=2, x_pool=x, q_fn=model,
                               curriculum=BandCurriculum(seed=2, backend="numpy"))
    np.testing.assert_array_equal(h.weights, importance_weights(q0))
    np.testing.assert_array_equal(c.q_pool, q0)
    with torch.no_grad():
        model.roots[0] += 0.25
    q1 = ((x - 0.55) * (x + 0.5)).numpy()
    h.set_epoch(1)
    c.set_epoch(1)
    np.testing.assert_allclose(h.weights, importance_weights(q1), rtol=1e-12)
    np.testing.assert_allclose(c.q_pool, q1, rtol=1e-12, atol=1e-15)
    ref = BandCurriculum(seed=2, backend="numpy")
    for got in c.batches():
        np.testing.assert_array_equal(got, ref.sample(c.q_pool, 32, 1)[0])


def test_q_fn_bad_arguments_leave_the_sampler_unchanged():
    x = _x_pool()
    with pytest.raises(TypeError, match="q_fn must be callable"):
        ImportanceWeightedSampler(num_samples=5, x_pool=x, q_fn="model")
    with pytest.raises(ValueError, match="x_pool is required"):
        ImportanceWeightedSampler(num_samples=5, q_fn=_ShiftedQ())
    with pytest.raises(ValueError, match="either q_pool or q_fn"):
        ImportanceWeightedSampler(x.numpy(), 5, x_pool=x, q_fn=_ShiftedQ())
    with pytest.raises(ValueError, match="x_pool is only used with q_fn"):
        ImportanceWeightedSampler(x.numpy(), 5, x_pool=x)
    with pytest.raises(ValueError, match="give q_pool"):
        HybridBatchSampler(batch_size=4, num_batches=1)
    with pytest.raises(ValueError, match=r"shape \(2000,\) or \(2000, 1\).*got \(2000, 2\)"):
        ImportanceWeightedSampler(num_samples=5, x_pool=x, q_fn=lambda t: t[:, None].repeat(1, 2))
    with pytest.raises(TypeError, match="q_fn must return"):
        ImportanceWeightedSampler(num_samples=5, x_pool=x, q_fn=lambda t: t.tolist())
    with pytest.raises(ValueError, match="q_batch_size"):
        ImportanceWeightedSampler(num_samples=5, x_pool=x, q_fn=_ShiftedQ(), q_batch_size=0)
    with pytest.raises(ValueError, match="refresh_every"):
        CurriculumBatchSampler(batch_size=4, num_batches=1, x_pool=x, q_fn=_ShiftedQ(),
                               refresh_every=0)
    with pytest.raises(ValueError, match="refresh_q needs q_fn"):
        ImportanceWeightedSampler(x.numpy(), 5).refresh_q()
    nan_later = _ShiftedQ()
    s = ImportanceWeightedSampler(num_samples=5, x_pool=x, q_fn=nan_later)
    w = s.weights.copy()
    with torch.no_grad():
        nan_later.roots[0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        s.set_epoch(1)
    assert s.epoch == 0 and s.q_evaluations == 1
    np.testing.assert_array_equal(s.weights, w)


def test_update_q_accepts_a_column_and_a_grad_tensor(q_pool):
    s = ImportanceWeightedSampler(q_pool, 10)
    q = torch.from_numpy(q_pool + 1.0)[:, None].requires_grad_(True)
    s.update_q(q)
    np.testing.assert_array_equal(s.q_pool, q_pool + 1.0)


# ------------------------------------------------------------------ workers (issue 13)
def _curriculum_epochs(num_workers, q, epochs=4, **loader_kw):
    """Batches of every epoch through a DataLoader, each epoch iterated twice."""
    cur = BandCurriculum(epochs_per_stage=1, seed=5, backend="numpy")
    c = CurriculumBatchSampler(q, 40, 3, curriculum=cur)
    loader = DataLoader(_dataset(q.size), batch_sampler=c, num_workers=num_workers,
                        **loader_kw)
    out = []
    for epoch in range(epochs):
        c.set_epoch(epoch)
        first = [b[0].tolist() for b in loader]
        again = [b[0].tolist() for b in loader]
        assert again == first                    # the epoch's draw is replayed
        out.append(first)
        c.update()
    return out, cur.n_calls


def test_curriculum_batches_identical_with_0_and_2_workers():
    """Issue 13: the DataLoader calls __iter__ twice with workers (once per iterator
    creation and once in _reset); the curriculum now draws once per epoch."""
    n = 2001
    q = np.geomspace(1e-7, 10.0, n) * (-1.0) ** np.arange(n)
    plain, calls0 = _curriculum_epochs(0, q)
    forked, calls2 = _curriculum_epochs(2, q)
    assert forked == plain
    assert calls0 == calls2 == 4 * 3            # one sample call per batch, no more
    ref = BandCurriculum(epochs_per_stage=1, seed=5, backend="numpy")
    for epoch, batches in enumerate(plain):
        for got in batches:
            assert got == ref.sample(q, 40, epoch)[0].tolist()
        ref.update(epoch)


def test_dataloader_iterates_the_sampler_in_the_main_process():
    """What the per-epoch draw relies on: with workers, every __iter__ of the sampler
    runs in the main process (torch 2.13 calls it twice per epoch)."""
    import os
    pids = []

    class Recording(HybridBatchSampler):
        def __iter__(self):
            pids.append(os.getpid())
            return super().__iter__()

    s = Recording(np.linspace(-1.0, 1.0, N), 8, 2, seed=0)
    batches = [b[0].tolist() for b in DataLoader(_dataset(), batch_sampler=s, num_workers=2)]
    assert batches == list(s)
    assert len(pids) >= 2 and set(pids) == {os.getpid()}


def test_q_fn_samplers_identical_with_0_and_2_workers():
    model, x = _ShiftedQ(), _x_pool()
    ds = _dataset()
    for kind in ("importance", "hybrid"):
        runs = []
        for workers in (0, 2):
            with torch.no_grad():
                model.roots[0] = 0.3
            if kind == "importance":
                s = ImportanceWeightedSampler(num_samples=120, x_pool=x, q_fn=model, seed=6)
                loader = DataLoader(ds, sampler=s, batch_size=30, num_workers=workers)
            else:
                s = HybridBatchSampler(batch_size=25, num_batches=4, x_pool=x, q_fn=model,
                                       seed=6)
                loader = DataLoader(ds, batch_sampler=s, num_workers=workers)
            epochs = []
            for epoch in range(3):
                s.set_epoch(epoch)
                epochs.append(_loader_indices(loader).tolist())
                with torch.no_grad():
                    model.roots[0] += 0.2
            runs.append(epochs)
        assert runs[0] == runs[1], kind
        assert runs[0][0] != runs[0][1]            # the refresh changed the draws


# ------------------------------------------------------------------ loops without an epoch hook
class _HooklessTrainer:
    """SCMTrainer.fit's loop (zeroproofml 0.6.1): sets current_epoch, then iterates
    train_loader; no other hook. Steps the model's pole after every batch."""

    def __init__(self, model, train_loader, max_epochs, start_epoch=0):
        self.model, self.train_loader = model, train_loader
        self.max_epochs, self.current_epoch = max_epochs, start_epoch
        self.batches = []

    def fit(self):
        for epoch in range(self.current_epoch, self.max_epochs):
            self.current_epoch = epoch
            for (idx,) in self.train_loader:
                self.batches.append((epoch, idx.tolist()))
            with torch.no_grad():
                self.model.roots[0] += 0.1


@pytest.mark.parametrize("start", [0, 2])
def test_epoch_loader_gives_a_hookless_trainer_each_epochs_draw(start):
    model, x = _ShiftedQ(), _x_pool()
    s = HybridBatchSampler(batch_size=16, num_batches=2, x_pool=x, q_fn=model, seed=1)
    trainer = _HooklessTrainer(model, None, max_epochs=start + 3, start_epoch=start)
    trainer.train_loader = EpochLoader(DataLoader(_dataset(), batch_sampler=s),
                                       lambda: trainer.current_epoch)
    assert len(trainer.train_loader) == 2
    trainer.fit()
    assert [e for e, _ in trainer.batches] == [e for e in range(start, start + 3) for _ in "ab"]
    # construction, then the start of every epoch but the one Q was built for (epoch 0)
    assert s.q_evaluations == 3 + (start != 0)
    for epoch in range(start, start + 3):       # each epoch's batches use that epoch's Q
        q = ((x - (0.3 + 0.1 * (epoch - start))) * (x + 0.5)).numpy()
        w = importance_weights(q)
        got = [b for e, b in trainer.batches if e == epoch]
        for b, batch in enumerate(got):
            ref = hybrid_indices(w, 16, ratio=0.7, seed=derive_seed(1, 2 * epoch + b))[0]
            assert batch == ref.tolist()
    counted = EpochLoader(DataLoader(_dataset(), sampler=ImportanceWeightedSampler(
        np.ones(N), 8)), start_epoch=5)
    list(counted), list(counted)
    assert counted.sampler.epoch == 6 and counted.next_epoch == 7
    with pytest.raises(TypeError, match="set_epoch"):
        EpochLoader(DataLoader(_dataset(), batch_size=4))
    with pytest.raises(TypeError, match="epoch must be a callable"):
        EpochLoader(DataLoader(_dataset(), batch_sampler=s), epoch=3)


def test_zeroproofml_scm_trainer_refreshes_the_sampler_each_epoch():
    """The recipe of docs/torch.md with zeroproofml 0.6.1's SCMTrainer (optional)."""
    import importlib.metadata
    pytest.importorskip("zeroproof.training", exc_type=ImportError)
    try:
        version = importlib.metadata.version("zeroproofml")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version != "0.6.1":
        pytest.skip(f"needs zeroproofml 0.6.1, found {version}")
    from zeroproof.training import SCMTrainer, TrainingConfig

    class Rational(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p, self.q = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)

        def forward(self, x):
            return self.p(x), self.q(x)

    def loss_fn(outputs, lifted):
        (p, q), (yn, yd) = outputs, lifted
        return torch.mean((p * yd - q * yn) ** 2 / (yn ** 2 + yd ** 2))

    torch.manual_seed(0)
    x = torch.linspace(-1.0, 1.0, 512)[:, None]
    y = (x + 2.0) / (x - 0.3)
    model = Rational()
    heads = []                                   # every Q head output the sampler saw

    def q_head(xb):
        heads.append(model(xb)[1])
        return heads[-1]

    sampler = ImportanceWeightedSampler(num_samples=256, x_pool=x, seed=0, q_fn=q_head)
    loader = DataLoader(TensorDataset(x, y), sampler=sampler, batch_size=64)
    trainer = SCMTrainer(model, torch.optim.Adam(model.parameters(), lr=0.05), loss_fn,
                         EpochLoader(loader, lambda: trainer.current_epoch),
                         config=TrainingConfig(max_epochs=3))
    trainer.fit()
    assert sampler.epoch == 2 and sampler.q_evaluations == len(heads) == 3
    assert heads[0].shape == (512, 1) and not any(h.requires_grad for h in heads)
    assert not torch.equal(heads[1], heads[2])   # the model moved between epochs
    np.testing.assert_array_equal(sampler.q_pool, heads[2][:, 0].double().numpy())
    np.testing.assert_array_equal(sampler.weights, importance_weights(sampler.q_pool))


# ------------------------------------------------------------------ DDP shards
def _interleave(shards):
    """Inverse of shard r = global[r::R]: position p of the global draw from shard p % R."""
    total = sum(len(s) for s in shards)
    out = [None] * total
    for r, shard in enumerate(shards):
        out[r::len(shards)] = list(shard)
    return out


@pytest.mark.parametrize("replicas, drop_last", [(2, False), (3, False), (3, True)])
def test_importance_shards_union_is_the_single_process_draw(q_pool, replicas, drop_last):
    n = 301                                           # not divisible by 2 or 3
    total = (n // replicas if drop_last else -(-n // replicas)) * replicas
    ranks = [ImportanceWeightedSampler(q_pool, n, seed=4, num_replicas=replicas, rank=r,
                                       drop_last=drop_last) for r in range(replicas)]
    single = ImportanceWeightedSampler(q_pool, total, seed=4)
    one = ImportanceWeightedSampler(q_pool, n, seed=4)
    for epoch in (0, 3):
        for s in ranks + [single, one]:
            s.set_epoch(epoch)
        shards = [list(s) for s in ranks]
        assert [len(sh) for sh in shards] == [len(s) for s in ranks] == [total // replicas] * replicas
        assert _interleave(shards) == list(single)        # union by position, exact
        k = min(n, total)
        assert list(single)[:k] == list(one)[:k]           # padding only appends draws
        for r, s in enumerate(ranks):                      # each rank's ratios are its own
            np.testing.assert_array_equal(s.likelihood_ratios,
                                          single.likelihood_ratios[r::replicas])


def test_batch_sampler_shards_union_is_the_single_process_draw(q_pool):
    nb, R = 5, 2
    hyb = [HybridBatchSampler(q_pool, 16, nb, seed=7, num_replicas=R, rank=r) for r in range(R)]
    hyb_single = HybridBatchSampler(q_pool, 16, 6, seed=7)
    n = 2001
    q = np.geomspace(1e-7, 10.0, n) * (-1.0) ** np.arange(n)
    cur = [CurriculumBatchSampler(q, 16, nb, num_replicas=R, rank=r,
                                  curriculum=BandCurriculum(epochs_per_stage=1, seed=7,
                                                            backend="numpy"))
           for r in range(R)]
    cur_single = CurriculumBatchSampler(q, 16, 6, curriculum=BandCurriculum(
        epochs_per_stage=1, seed=7, backend="numpy"))
    for epoch in range(3):
        for group, single in ((hyb, hyb_single), (cur, cur_single)):
            for s in group + [single]:
                s.set_epoch(epoch)
            shards = [list(s) for s in group]
            assert [len(sh) for sh in shards] == [len(s) for s in group] == [3, 3]
            assert _interleave(shards) == list(single)
            flat = [i for sh in shards for b in sh for i in b]
            assert len(flat) == 6 * 16
        for s in cur + [cur_single]:
            s.update()
    np.testing.assert_array_equal(cur[1].last_band_counts, cur_single.last_band_counts[1::2])


def test_replicas_default_to_the_process_group(q_pool, monkeypatch):
    s = ImportanceWeightedSampler(q_pool, 10)
    assert (s.num_replicas, s.rank, len(s)) == (1, 0, 10)
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 4)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 3)
    s = ImportanceWeightedSampler(q_pool, 10)
    assert (s.num_replicas, s.rank, s.total_size, len(s)) == (4, 3, 12, 3)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 1\]"):
        HybridBatchSampler(q_pool, 4, 4, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        HybridBatchSampler(q_pool, 4, 4, num_replicas=0, rank=0)
    with pytest.raises(ValueError, match="drop_last"):
        HybridBatchSampler(q_pool, 4, 1, num_replicas=2, rank=0, drop_last=True)
    with pytest.raises(TypeError, match="drop_last"):
        HybridBatchSampler(q_pool, 4, 2, num_replicas=2, rank=0, drop_last="yes")


def test_importing_zp_ref_does_not_import_torch():
    code = ("import sys, zp_ref, zp_ref.sampling, zp_ref.curriculum, zp_ref.bands; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_gives_a_clear_import_error():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import zp_ref.torch_bridge\n"
            "except ImportError as e:\n    assert 'pip install zp_ref[torch]' in str(e), e\n"
            "else:\n    raise SystemExit('no ImportError')")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_q_pool_column_is_read_as_the_vector(q_pool):
    """q_pool of shape (N, 1) (a model's Q head, as the docstring allows) gives the draws
    of the (N,) vector; one tensor conversion path (zp_ref.tensors) for q_pool and update_q."""
    col = torch.as_tensor(np.asarray(q_pool)).reshape(-1, 1).requires_grad_()
    a = ImportanceWeightedSampler(col, 40, seed=2)
    b = ImportanceWeightedSampler(q_pool, 40, seed=2)
    assert list(a) == list(b)
    a.update_q(col * 2.0)
    b.update_q(np.asarray(q_pool) * 2.0)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)
    with pytest.raises(ValueError, match="q_pool must be"):
        ImportanceWeightedSampler(np.ones((5, 2)), 3)
