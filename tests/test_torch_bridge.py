"""The PyTorch bridge (zp_ref.torch_bridge) and the training study (zp_ref.apps.study)."""
import dataclasses
import json
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
from zp_ref.torch_bridge import (CurriculumBatchSampler, HybridBatchSampler,  # noqa: E402
                                 ImportanceWeightedSampler, as_tensor, to_numpy)
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


# ------------------------------------------------------------------ the study
def test_rational_model_form():
    from zp_ref.apps.study import RationalModel
    m = RationalModel(2, 3, 2, seed=4)
    x = torch.tensor([[0.0, 0.0], [0.5, -0.25], [1.0, 1.0]], dtype=torch.float64)
    q = m.q(x)
    assert q[0].item() == 1.0                        # Q(0) = 1: the constant is pinned
    np.testing.assert_allclose(m.q_polynomial()(x.numpy()), q.detach().numpy(), rtol=1e-12)
    assert m.p.numel() == 10 and m.phi.numel() == 5  # monomials of degree <= 3 and 1..2
    same = RationalModel(2, 3, 2, seed=4)
    assert torch.equal(same.p, m.p) and torch.equal(same.phi, m.phi)


def test_study_test_set_is_stratified():
    from zp_ref.apps.study import BANDS, StudyConfig, targets, test_set
    cfg = StudyConfig(test_per_band=20, test_uniform=50)
    for target in targets().values():
        test = test_set(target, cfg)
        for b, name in enumerate(BANDS):
            x, y = test[name]
            assert x.shape == (20, target.dim)
            _, q = target.evaluate(x)
            np.testing.assert_array_equal(band_of(q), np.full(20, b))
            assert np.isfinite(y).all()


def test_study_quick_smoke(tmp_path):
    from zp_ref.apps.study import BANDS, METHODS, StudyConfig, run_study, study_command
    tiny = dataclasses.replace(StudyConfig.quick(), pool_size=512, batch_size=32, epochs=3,
                               steps_per_epoch=4, test_per_band=16, test_uniform=64,
                               active_levels=(10, 4))
    report = run_study(quick=True, seeds=2, out=tmp_path, progress=False, config=tiny)
    saved = json.loads((tmp_path / "study.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert (tmp_path / "study.png").stat().st_size > 10_000
    assert set(saved["targets"]) == {"rational_1d", "rational_2d"}
    for res in saved["targets"].values():
        assert list(res["methods"]) == list(METHODS)
        for m in res["methods"].values():
            assert list(m["band_mse"]) == list(BANDS)
            for b in BANDS:
                assert m["band_mse"][b]["n"] == 2 and m["band_mse"][b]["mean"] > 0
                assert m["band_mse"][b]["std"] >= 0
            assert m["overall_mse"]["mean"] > 0 and m["seconds"] > 0
            assert 0 <= m["near_pole_coverage"] <= 1
            assert abs(sum(m["train_band_fractions"]) - 1) < 1e-12
    # the same config and seeds give the same numbers (every draw is seeded)
    again = run_study(quick=True, seeds=2, out=tmp_path / "again", progress=False,
                      config=dataclasses.replace(tiny, targets=("rational_1d",)))
    for method, m in again["targets"]["rational_1d"]["methods"].items():
        assert m["band_mse"] == report["targets"]["rational_1d"]["methods"][method]["band_mse"]
    with pytest.raises(SystemExit) as exc:
        study_command(["--seeds", "0"])
    assert exc.value.code == 2
    with pytest.raises(ValueError, match="methods"):
        run_study(seeds=1, out=tmp_path, progress=False,
                  config=dataclasses.replace(tiny, methods=("sgd",)))
