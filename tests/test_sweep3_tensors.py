"""Reliability sweep 3 (issue 21): tensors, samplers and compat; and issue 22's torch
friction items. Each test names the finding it pins down."""
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import zp_ref  # noqa: E402
from zp_ref.bands import band_of, stratified_sample  # noqa: E402
from zp_ref.compat import legacy  # noqa: E402
from zp_ref.compat.zeroproofml import AdaptiveSampler  # noqa: E402
from zp_ref.draw_table import DrawTable  # noqa: E402
from zp_ref.integrated import IntegratedSampler  # noqa: E402
from zp_ref.rng import call_seed  # noqa: E402
from zp_ref.sampling import (ImportanceSampler, ImportanceSamplerConfig,  # noqa: E402
                             prefix_sums, sample_indices)
from zp_ref.sampling_from_q import sample_from_q  # noqa: E402
from zp_ref.torch_bridge import (CurriculumBatchSampler, EpochLoader,  # noqa: E402
                                 HybridBatchSampler, ImportanceWeightedSampler)
from zp_ref.weighting import importance_weights  # noqa: E402

N = 400


@pytest.fixture
def q_np():
    x = np.linspace(-1.0, 1.0, N)
    return (x - 0.31) * (x + 0.52)


def _samplers(q):
    """One of each torch sampler over q (copies are what they must keep)."""
    return [ImportanceWeightedSampler(q, 64, seed=3),
            HybridBatchSampler(q, 16, 4, seed=3),
            CurriculumBatchSampler(q, 16, 4, seed=3)]


def _draws(s):
    return np.concatenate(s.batches()) if hasattr(s, "batches") else s.indices()


# ------------------------------------------------------------------ aliasing
@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_samplers_copy_the_callers_float64_q(q_np, kind):
    """A caller reusing its float64 Q buffer changes nothing: q_pool, state_dict, draws."""
    buf = q_np.copy() if kind == "numpy" else torch.from_numpy(q_np.copy())
    fresh = [_draws(s) for s in _samplers(q_np.copy())]
    samplers = _samplers(buf)
    buf[:] = 7.0 if kind == "numpy" else torch.full((N,), 7.0, dtype=torch.float64)
    for s, want in zip(samplers, fresh):
        np.testing.assert_array_equal(s.q_pool, q_np)
        np.testing.assert_array_equal(_draws(s), want)
    state = samplers[0].state_dict()
    np.testing.assert_array_equal(state["q_pool"], q_np)
    restored = ImportanceWeightedSampler.from_state_dict(state)
    np.testing.assert_array_equal(restored.indices(), fresh[0])


def test_update_q_copies_and_a_failed_update_changes_nothing(q_np):
    s = ImportanceWeightedSampler(q_np, 32, seed=1)
    new = q_np[::-1].copy()
    s.update_q(new)
    new[:] = 1.0
    np.testing.assert_array_equal(s.q_pool, q_np[::-1])
    bad = q_np.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        s.update_q(bad)
    np.testing.assert_array_equal(s.q_pool, q_np[::-1])


# ------------------------------------------------------------------ masked arrays
def _masked(q_np):
    q = np.ma.masked_array(q_np, mask=np.zeros(N, bool))
    q[10] = 1e-12
    q[10] = np.ma.masked
    return q


@pytest.mark.parametrize("call", [
    lambda q: importance_weights(q),
    lambda q: sample_from_q(q, 20, seed=0),
    lambda q: sample_indices(q, 20, seed=0),
    lambda q: stratified_sample(q, 20, mix=[0.2] * 5, seed=0),
    lambda q: DrawTable(q),
    lambda q: ImportanceSampler().sample_batch(np.arange(N), q, 8),
    lambda q: ImportanceWeightedSampler(q, 8),
    lambda q: HybridBatchSampler(q, 8, 1),
    lambda q: CurriculumBatchSampler(q, 8, 1),
    lambda q: AdaptiveSampler(TensorDataset(torch.zeros(N))).update(q),
], ids=["importance_weights", "sample_from_q", "sample_indices", "stratified_sample",
        "DrawTable", "ImportanceSampler", "ImportanceWeightedSampler", "HybridBatchSampler",
        "CurriculumBatchSampler", "AdaptiveSampler"])
def test_masked_arrays_are_refused_naming_the_argument(q_np, call):
    """np.ma input is refused (its mask would be dropped silently) with a TypeError."""
    with pytest.raises(TypeError, match=r"masked array \(numpy\.ma\)"):
        call(_masked(q_np))


# ------------------------------------------------------------------ threads
def test_one_importance_sampler_shared_by_two_threads():
    """2 threads x 30 calls, each with its own pool: every batch is the single-thread
    call c of its own pool, and the 60 calls take the call numbers 0..59 once each."""
    B, calls, seed = 64, 30, 5
    rng = np.random.default_rng(0)
    pools = [rng.uniform(0.01, 1.0, 200_000), rng.uniform(0.01, 1.0, 200_000)]
    pools[1][:50] = 1e-4                      # a very different weight vector
    sampler = ImportanceSampler(seed=seed, backend="numpy")
    results = [[], []]
    barrier = threading.Barrier(2)

    def work(t):
        barrier.wait()
        for _ in range(calls):
            results[t].append(sampler.sample_batch(np.arange(pools[t].size), pools[t], B)[1])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    weights = [sampler.compute_weights(p) for p in pools]
    expected = {c: [sample_indices(w, B, seed=call_seed(seed, c)) for w in weights]
                for c in range(2 * calls)}
    used = []
    for t in range(2):
        for idx in results[t]:
            hits = [c for c in range(2 * calls) if np.array_equal(idx, expected[c][t])]
            assert len(hits) == 1, f"thread {t}: a batch from no single-thread call"
            used.append(hits[0])
    assert sorted(used) == list(range(2 * calls))
    assert sampler.calls == 2 * calls


# ------------------------------------------------------------------ legacy caches
def test_legacy_caches_snapshot_what_the_call_saw():
    x = torch.linspace(-1.0, 1.0, 50)
    q = x - 0.3
    s = legacy.ImportanceSampler()
    s.compute_weights(x, q)
    key = s._get_cache_key(x[0])
    want_q, want_w = float(q[0]), float(s._core.compute_weights(q.clone())[0])
    q.mul_(10.0)                              # the caller updates its Q in place
    x.add_(5.0)                               # and its pool
    assert s.q_cache[key] == want_q
    assert s.weight_cache[key] == want_w


def test_legacy_refine_grid_dict_refuses_nan_and_changes_nothing():
    a = legacy.ActiveSampler(legacy.ActiveSamplerConfig(initial_grid_size=20), 1)
    grid = a.get_current_grid()
    q = {a._point_key(p): float(p[0] - 0.1) for p in grid}
    q[a._point_key(grid[4])] = float("nan")
    with pytest.raises(ValueError, match=r"q_values\[.*nan"):
        a.refine_grid(q)
    assert a.q_history == {} and torch.equal(a.get_current_grid(), grid)


# ------------------------------------------------------------------ tensor in, tensor out
def test_draw_table_and_prefix_sums_follow_tensor_in_tensor_out(q_np):
    w = torch.from_numpy(importance_weights(q_np)).to(torch.float32)
    idx = DrawTable(w).sample(100, seed=4)
    assert isinstance(idx, torch.Tensor) and idx.dtype == torch.int64
    assert torch.equal(idx, sample_indices(w, 100, seed=4))
    c = prefix_sums(w)
    assert isinstance(c, torch.Tensor) and c.dtype == torch.float64
    np.testing.assert_array_equal(c.numpy(), prefix_sums(w.numpy()))
    assert isinstance(DrawTable(w.numpy()).sample(3, seed=0), np.ndarray)


# ------------------------------------------------------------------ one conversion
def _neg_bit(q_np):
    c = torch.complex(torch.zeros(N, dtype=torch.float64), -torch.from_numpy(q_np))
    q = c.conj().imag                         # values q_np, torch's negative bit set
    assert q.is_neg()
    return q


@pytest.mark.parametrize("call", [
    lambda q: importance_weights(q),
    lambda q: sample_from_q(q, 20, seed=0),
    lambda q: stratified_sample(q, 20, mix=[0.2] * 5, seed=0)[0],
    lambda q: ImportanceWeightedSampler(q, 16, seed=0).indices(),
    lambda q: zp_ref.band_of(q),
], ids=["importance_weights", "sample_from_q", "stratified_sample",
        "ImportanceWeightedSampler", "band_of"])
def test_negative_bit_tensors_are_resolved(q_np, call):
    got = call(_neg_bit(q_np))
    want = call(torch.from_numpy(q_np.copy()))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_sample_indices_on_a_negative_bit_weight_tensor(q_np):
    w = torch.from_numpy(importance_weights(q_np))
    neg = torch.complex(torch.zeros(N, dtype=torch.float64), -w).conj().imag
    assert neg.is_neg()
    assert torch.equal(sample_indices(neg, 30, seed=2), sample_indices(w, 30, seed=2))


def test_meta_tensors_are_refused_naming_the_argument():
    meta = torch.empty(N, device="meta")
    for call, name in ((lambda: importance_weights(meta), "q"),
                       (lambda: sample_indices(meta, 3, seed=0), "weights"),
                       (lambda: ImportanceWeightedSampler(meta, 3), "q_pool")):
        with pytest.raises(TypeError, match=rf"{name} is a meta tensor"):
            call()
    with pytest.raises(TypeError, match="q_fn output is a meta tensor"):
        ImportanceWeightedSampler.from_model(lambda x: torch.empty(len(x), device="meta"),
                                             torch.zeros(N, 1), 3)


def test_zero_d_tensors_are_numbers_and_larger_tensors_are_refused(q_np):
    q = torch.from_numpy(q_np)
    torch.testing.assert_close(importance_weights(q, max_weight=torch.tensor(50.0)),
                               importance_weights(q, max_weight=50.0), rtol=0, atol=0)
    assert torch.equal(sample_indices(q.abs(), torch.tensor(7), seed=torch.tensor(3)),
                       sample_indices(q.abs(), 7, seed=3))
    with pytest.raises(ValueError, match=r"max_weight must be a number or a 0-d tensor.*\(2,\)"):
        importance_weights(q, max_weight=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="seed must be a number or a 0-d tensor"):
        sample_indices(q.abs(), 3, seed=torch.tensor([1, 2]))


def test_legacy_monitor_scalars_from_tensors(tmp_path):
    m = legacy.DiagnosticMonitor(legacy.DiagnosticConfig(export_path=str(tmp_path)))
    m.update(0, metrics={"loss_train": torch.tensor(0.4)})
    assert m.history["loss_train"] == [float(torch.tensor(0.4))]
    m.update_batch(0, torch.tensor(0.01), loss=torch.tensor(0.5))
    with pytest.raises(ValueError, match="q_min must be a number or a 0-d tensor"):
        m.update_batch(1, torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="loss must be a number or a 0-d tensor"):
        m.update_batch(1, 0.1, loss=torch.ones(3))
    assert len(m.batch_metrics["q_min"]) == 1


# ------------------------------------------------------------------ pools
def test_big_endian_x_pool_with_tensor_q(q_np):
    """Converted to native order: the batch equals the native pool's, and a retry of a
    refused pool leaves the sampler as fresh."""
    x = np.linspace(0.0, 1.0, N)
    q = torch.from_numpy(q_np)
    for make in (lambda: ImportanceSampler(seed=2),
                 lambda: IntegratedSampler("importance", seed=2)):
        got_x, got = make().sample_batch(x.astype(">f8"), q, 16)
        want_x, want = make().sample_batch(x, q, 16)
        idx = got if isinstance(got, torch.Tensor) else got["indices"]
        assert torch.equal(idx, want if isinstance(want, torch.Tensor) else want["indices"])
        assert torch.equal(got_x, want_x)
    s = ImportanceSampler(seed=2)
    with pytest.raises(TypeError, match="x_pool must hold real numbers"):
        s.sample_batch(np.array(["a"] * N), q, 16)
    assert s.calls == 0
    assert torch.equal(s.sample_batch(x, q, 16)[1], ImportanceSampler(seed=2).sample_batch(
        x, q, 16)[1])


def _q_fn(x):
    return (x[:, 0] - 0.3) * (x[:, 0] + 0.5)


def test_q_fn_pools_reversed_big_endian_and_lists():
    x = np.linspace(-1.0, 1.0, N)[:, None]
    want = ImportanceWeightedSampler.from_model(_q_fn, x[::-1].copy(), 32).indices()
    np.testing.assert_array_equal(
        ImportanceWeightedSampler.from_model(_q_fn, x[::-1], 32).indices(), want)
    np.testing.assert_array_equal(
        ImportanceWeightedSampler.from_model(_q_fn, x[::-1].astype(">f8"), 32).indices(), want)
    for cls, sizes in ((ImportanceWeightedSampler, (4,)), (HybridBatchSampler, (4, 1)),
                       (CurriculumBatchSampler, (4, 1))):
        with pytest.raises(TypeError, match="x_pool must be a torch.Tensor or a NumPy array"):
            cls.from_model(_q_fn, x.tolist(), *sizes)


@pytest.mark.parametrize("form", ["list of tensors", "matrix"])
def test_n_by_1_q_as_list_of_tensors_or_matrix(q_np, form):
    if form == "list of tensors":
        q = [torch.tensor([v]) for v in q_np]
    else:
        with pytest.warns(PendingDeprecationWarning):
            q = np.matrix(q_np[:, None])
    np.testing.assert_array_equal(importance_weights(q), importance_weights(q_np))
    np.testing.assert_array_equal(sample_from_q(q, 9, seed=1), sample_from_q(q_np, 9, seed=1))
    np.testing.assert_array_equal(ImportanceWeightedSampler(q, 9).indices(),
                                  ImportanceWeightedSampler(q_np, 9).indices())


# ------------------------------------------------------------------ epochs
def test_set_epoch_is_bounded_by_derive_seeds_domain(q_np):
    imp = ImportanceWeightedSampler(q_np, 4)
    with pytest.raises(ValueError, match=r"epoch must be in \[0, 18446744073709551615\]"):
        imp.set_epoch(2**64)
    imp.set_epoch(2**64 - 1)
    assert len(imp.indices()) == 4
    hyb = HybridBatchSampler(q_np, 4, 3)
    assert hyb.max_epoch == 2**64 // 3 - 1
    with pytest.raises(ValueError, match="epoch must be in"):
        hyb.set_epoch(2**63)
    hyb.set_epoch(hyb.max_epoch)
    assert len(hyb.batches()) == 3
    assert hyb.epoch == hyb.max_epoch
    cur = CurriculumBatchSampler(q_np, 4, 1)
    with pytest.raises(ValueError, match="epoch must be in"):
        cur.set_epoch(2**64)


# ------------------------------------------------------------------ issue 22 friction
def test_curriculum_likelihood_ratios_from_the_achieved_band_mix(q_np):
    cur = zp_ref.BandCurriculum(within="uniform", seed=1)
    s = CurriculumBatchSampler(q_np, 20, 3, curriculum=cur)
    batches = s.batches()
    counts = s.last_band_counts.sum(axis=0)
    bands = band_of(q_np, edges=cur.edges)
    size = np.bincount(bands, minlength=counts.size)
    idx = np.concatenate(batches)
    m = counts[bands[idx]] / counts.sum() / size[bands[idx]]
    np.testing.assert_allclose(s.likelihood_ratio(idx), 1.0 / (N * m), rtol=1e-12)
    r = s.likelihood_ratio(torch.as_tensor(idx))
    assert isinstance(r, torch.Tensor) and r.dtype == torch.float64
    imp = CurriculumBatchSampler(q_np, 20, 3, seed=2)           # within="importance"
    imp.batches()
    m_all = 1.0 / (N * imp.likelihood_ratio(np.arange(N)))
    assert abs(m_all.sum() - 1.0) < 1e-12                        # a distribution over the pool


def test_curriculum_sampler_seed_defaults_to_0_and_takes_config(q_np):
    a = CurriculumBatchSampler(q_np, 8, 2)
    b = CurriculumBatchSampler(q_np, 8, 2, seed=0)
    assert a.curriculum.seed == 0
    for x, y in zip(a.batches(), b.batches()):
        np.testing.assert_array_equal(x, y)
    c = CurriculumBatchSampler(q_np, 8, 2, config=ImportanceSamplerConfig(weight_power=1.0))
    assert c.curriculum.weight_power == 1.0
    with pytest.raises(TypeError, match="config must be an ImportanceSamplerConfig"):
        CurriculumBatchSampler(q_np, 8, 2, config={"weight_power": 1.0})


def test_refresh_every_defaults_from_config_resample_frequency():
    x = torch.linspace(-1.0, 1.0, N).unsqueeze(1)
    calls = []

    def q_fn(xb):
        calls.append(len(xb))
        return _q_fn(xb)

    cfg = ImportanceSamplerConfig(resample_frequency=3)
    for cls, sizes in ((ImportanceWeightedSampler, (8,)), (HybridBatchSampler, (8, 2)),
                       (CurriculumBatchSampler, (8, 2))):
        calls.clear()
        s = cls.from_model(q_fn, x, *sizes, config=cfg)
        assert s.refresh_every == 3
        for e in range(1, 7):
            s.set_epoch(e)
        assert len(calls) == 3                      # construction, epochs 3 and 6
        assert cls.from_model(q_fn, x, *sizes).refresh_every == 1
        assert cls.from_model(q_fn, x, *sizes, config=cfg, refresh_every=2).refresh_every == 2


def test_from_model_equals_the_keyword_form():
    x = torch.linspace(-1.0, 1.0, N).unsqueeze(1)
    np.testing.assert_array_equal(
        ImportanceWeightedSampler.from_model(_q_fn, x, 40, seed=4).indices(),
        ImportanceWeightedSampler(num_samples=40, x_pool=x, q_fn=_q_fn, seed=4).indices())
    for cls in (HybridBatchSampler, CurriculumBatchSampler):
        a = cls.from_model(_q_fn, x, 8, 3, seed=4).batches()
        b = cls(batch_size=8, num_batches=3, x_pool=x, q_fn=_q_fn, seed=4).batches()
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_epoch_loader_refreshes_the_zeroproofml_drop_in_from_the_model():
    x = torch.linspace(-1.0, 1.0, N).unsqueeze(1)
    scale = [1.0]
    risk = AdaptiveSampler(TensorDataset(x), seed=3,
                           q_fn=lambda xb: scale[0] * _q_fn(xb), x_pool=x)
    loader = EpochLoader(risk.dataloader(batch_size=N))
    for epoch in range(2):
        scale[0] = 1.0 + epoch
        (batch,) = next(iter(loader))
        ref = AdaptiveSampler(TensorDataset(x), seed=3)
        for e in range(epoch + 1):
            ref.update(_q_fn(x) * (1.0 + e))
        np.testing.assert_array_equal(risk.weights.numpy(), ref.weights.numpy())
        idx = sample_indices(ref.weights, N, seed=call_seed(3, epoch)).numpy()
        torch.testing.assert_close(batch, x[idx], rtol=0, atol=0)
    assert risk.epoch == 1 and risk.q_epoch == 1


def _index_dataset():
    """x = the pool index as float (so a batch names its indices), y = 1."""
    return TensorDataset(torch.arange(N, dtype=torch.float64).unsqueeze(1),
                         torch.ones(N, 1, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["hybrid", "importance", "curriculum"])
def test_epoch_loader_exposes_each_batchs_likelihood_ratios(q_np, kind):
    ds = _index_dataset()
    if kind == "hybrid":
        s = HybridBatchSampler(q_np, 16, 5, seed=1)
        dl = DataLoader(ds, batch_sampler=s)
    elif kind == "curriculum":
        s = CurriculumBatchSampler(q_np, 16, 5, seed=1)
        dl = DataLoader(ds, batch_sampler=s)
    else:
        s = ImportanceWeightedSampler(q_np, 70, seed=1)
        dl = DataLoader(ds, sampler=s, batch_size=16)
    loader = EpochLoader(dl, ratios=True)
    for _ in range(2):
        seen = 0
        for xb, _ in loader:
            idx = xb[:, 0].long()
            assert torch.equal(loader.batch_indices, idx)
            torch.testing.assert_close(loader.batch_ratios, s.likelihood_ratio(idx),
                                       rtol=0, atol=0)
            seen += len(idx)
        assert seen == (70 if kind == "importance" else 80)
    with pytest.raises(TypeError, match="ratios=True needs a sampler with likelihood_ratio"):
        EpochLoader(AdaptiveSampler(ds).dataloader(), ratios=True)


def test_epoch_loader_ratios_under_scm_trainer(q_np):
    """zeroproofml's SCMTrainer reads a third batch tensor as status labels: the loss
    reads the ratios from the EpochLoader instead, batch by batch."""
    training = pytest.importorskip("zeroproof.training")
    ds = _index_dataset()
    s = HybridBatchSampler(q_np, 16, 4, seed=2)
    loader = EpochLoader(DataLoader(ds, batch_sampler=s), lambda: trainer.current_epoch,
                         ratios=True)

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Linear(1, 1, dtype=torch.float64)

        def forward(self, x):
            return self.p(x / N), torch.ones_like(x)

    seen = []

    def loss_fn(outputs, lifted, inputs=None):
        p, _ = outputs
        r = loader.batch_ratios.to(p)
        seen.append((inputs[:, 0].long().clone(), r.clone()))
        return (r * (p[:, 0] - lifted[0].reshape(-1)) ** 2).mean()

    model = Head()
    trainer = training.SCMTrainer(model, torch.optim.SGD(model.parameters(), lr=1e-3),
                                  loss_fn, loader,
                                  config=training.TrainingConfig(max_epochs=2))
    trainer.fit()
    assert len(seen) == 8
    for k, (idx, r) in enumerate(seen):
        s.set_epoch(k // 4)
        s.batches()
        np.testing.assert_array_equal(idx.numpy(), s.batches()[k % 4])
        torch.testing.assert_close(r, s.likelihood_ratio(idx), rtol=0, atol=0)
