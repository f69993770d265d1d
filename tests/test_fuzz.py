"""Fuzzing the public API (hypothesis, bounded and derandomized).

Every argument is either a valid value or an arbitrary one (None, bools, ints from
negative to 2**64 and beyond, floats with NaN/inf, complex, strings, lists, NumPy arrays
of many dtypes and ranks). Only ``ValueError`` and ``TypeError`` may escape;
``MemoryError`` only when a count of 2**40 or more was passed (an allocation that size
is refused by the OS, see docs/reliability.md). Warnings are errors except the
documented ones (``QMinWarning``; the ``nan_policy='omit'`` RuntimeWarning).
"""
import math
import warnings

import numpy as np
import pytest

pytest.importorskip("hypothesis")     # the test extra; skip cleanly without it
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import zp_ref
from zp_ref import (BandCurriculum, CurriculumConfig, CurriculumScheduler, DeltaSchedule,
                    DiagnosticConfig, DiagnosticMonitor, ImportanceSampler,
                    ImportanceSamplerConfig, QMinWarning)
from zp_ref.rational import Polynomial
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate, Phase.shrink])
FUZZ_SLOW = settings(FUZZ, max_examples=50)

#: counts no machine can allocate (2**31 float64 = 16 GB could succeed and fill memory)
HUGE = [2**40, 2**63, 2**64 - 1, 2**64, 10**30, -2**63]
WORDS = ["auto", "numpy", "cpu", "gpu", "uniform", "importance", "volume", "leaf", "sign",
         "abs", "abs_or_sign", "interval", "linear", "cosine", "exponential", "raise", "omit",
         "hybrid", "active", "REAL", "PINF", "", "nan"]

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 3000), st.sampled_from(HUGE),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 5e-324, 1e308]),
    st.complex_numbers(max_magnitude=10) | st.just(complex("nan+1j")), st.sampled_from(WORDS),
    st.text(max_size=4), st.sampled_from([np.float32(1.5), np.int8(-3), np.uint64(2**63),
                                          np.bool_(True), np.float64("nan")]))
DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.int8, np.bool_,
                          np.complex128, ">f8", "U2", object])
ARRAYS = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
                    elements=None, fill=None).filter(lambda a: a.dtype != object) | \
    st.lists(st.one_of(st.none(), st.floats(), st.integers(-3, 3), st.text(max_size=2)),
             max_size=6).map(lambda v: np.array(v, dtype=object))
LISTS = st.lists(st.one_of(st.floats(allow_nan=True), st.integers(-3, 10**6)), max_size=8) | \
    st.lists(st.lists(st.floats(-2, 2), max_size=3), max_size=4)
ANY = st.one_of(SCALARS, ARRAYS, LISTS)

FINITE = st.floats(-5, 5, allow_nan=False)
VALID_Q = hnp.arrays(np.float64, st.integers(1, 60),
                     elements=st.floats(-2, 2) | st.sampled_from([0.0, 1e-9, np.inf, -np.inf]))
VALID_W = hnp.arrays(np.float64, st.integers(1, 60),
                     elements=st.sampled_from([0.0, 1e-300, 0.5, 1.0, 3.0]) | st.floats(0, 10))
COUNT = st.integers(0, 300)
SEED = st.integers(0, 2**64 - 1)
BACKEND = st.sampled_from(["auto", "numpy", "cpu"])


def either(valid):
    """A valid value most of the time, an arbitrary one otherwise."""
    return st.one_of(valid, valid, ANY)


def _has_huge_int(obj) -> bool:
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, (bool, np.bool_)):
        return abs(int(obj)) >= 2**40
    if isinstance(obj, dict):
        return any(_has_huge_int(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_huge_int(v) for v in obj)
    return False


def only_allowed_errors(call, *args, **kwargs):
    """Run call; return its result or None when it raised an allowed exception."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", QMinWarning)
        warnings.filterwarnings("ignore", message=r".*nan_policy='omit'", category=RuntimeWarning)
        try:
            return call(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            assert not type(exc).__module__.startswith("numba"), repr(exc)
            assert str(exc).strip()
            return None
        except MemoryError:
            assert _has_huge_int((args, kwargs)), "MemoryError without a huge count"
            return None


# ------------------------------------------------------------------ functions
@FUZZ
@given(q=either(VALID_Q), p=either(st.floats(0, 4)), m=either(st.floats(1e-9, 1)),
       mw=either(st.floats(1e-3, 1e3)), t=either(st.floats(0.1, 3)), norm=either(st.booleans()),
       pol=either(st.sampled_from(["raise", "omit"])), b=either(BACKEND))
def test_fuzz_importance_weights(q, p, m, mw, t, norm, pol, b):
    w = only_allowed_errors(zp_ref.importance_weights, q, weight_power=p, min_q_abs=m,
                            max_weight=mw, temperature=t, normalize=norm, nan_policy=pol,
                            backend=b)
    if w is not None:
        assert w.dtype == np.float64 and w.shape == np.shape(q) and (w >= 0).all()


@FUZZ
@given(w=either(VALID_W), n=either(COUNT), seed=either(SEED), replace=either(st.booleans()),
       b=either(BACKEND))
@example(w=np.array([5e-324, 0.0]), n=3, seed=0, replace=True, b="cpu")   # found: a crash
def test_fuzz_sample_indices(w, n, seed, replace, b):
    idx = only_allowed_errors(zp_ref.sample_indices, w, n, seed=seed, replace=replace, backend=b)
    if idx is not None:
        w = np.asarray(w, dtype=np.float64)
        assert idx.dtype == np.int64 and idx.size == n and (w[idx] > 0).all()


@FUZZ
@given(w=either(VALID_W), n=either(COUNT), ratio=either(st.floats(0, 1)), seed=either(SEED),
       pool=either(st.integers(1, 100)), stream=either(SEED), start=either(SEED))
@example(w=[1.34e154], n=0, ratio=0.0, seed=0, pool=None, stream=None, start=None)  # found
def test_fuzz_uniform_hybrid_and_rng(w, n, ratio, seed, pool, stream, start):
    only_allowed_errors(zp_ref.hybrid_indices, w, n, ratio=ratio, seed=seed, backend="cpu")
    idx = only_allowed_errors(zp_ref.uniform_indices, pool, n, seed=seed, backend="cpu")
    if idx is not None:
        assert ((idx >= 0) & (idx < pool)).all()
    only_allowed_errors(zp_ref.uniforms, seed, stream, n, start=start, backend="cpu")
    only_allowed_errors(zp_ref.u, seed, stream, start)
    only_allowed_errors(zp_ref.derive_seed, seed, start)
    only_allowed_errors(zp_ref.kish_ess, w)
    only_allowed_errors(zp_ref.prefix_sums, w)


@FUZZ
@given(q=either(VALID_Q), n=either(COUNT), edges=either(st.just([1e-5, 1e-4, 1e-3, 1e-2])),
       mix=either(st.just([0.1, 0.2, 0.3, 0.2, 0.2])), seed=either(SEED),
       within=either(st.sampled_from(["uniform", "importance"])), b=either(BACKEND),
       shares=either(st.just([0.25, 0.75])), nb=either(st.integers(2, 8)))
def test_fuzz_bands(q, n, edges, mix, seed, within, b, shares, nb):
    only_allowed_errors(zp_ref.band_of, q, edges, backend=b)
    only_allowed_errors(zp_ref.band_counts, q, edges, backend=b)
    only_allowed_errors(zp_ref.stratified_sample, q, n, edges=edges, mix=mix, seed=seed,
                        within=within, backend=b)
    only_allowed_errors(zp_ref.largest_remainder, n, shares)
    only_allowed_errors(zp_ref.default_stages, nb)


@FUZZ
@given(q=either(VALID_Q), tau=either(st.floats(0, 1)), beta=either(st.floats(0.01, 1)),
       gamma=either(st.floats(0, 1)), prev=either(st.floats(0, 1)),
       alpha=either(st.floats(0, 3)), smin=either(st.floats(0, 1)))
def test_fuzz_risk_weights(q, tau, beta, gamma, prev, alpha, smin):
    p = only_allowed_errors(zp_ref.singularity_prob, q, tau_train=tau, beta=beta)
    only_allowed_errors(zp_ref.ema_update, q if p is None else p, prev, gamma=gamma)
    only_allowed_errors(zp_ref.sampling_weights, q, prev, alpha=alpha, s_min=smin)


# ------------------------------------------------------------------ classes
@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["warmup_epochs", "transition_epochs",
                                               "delta_init", "delta_final", "schedule_type",
                                               "min_delta", "adaptive_delta"]), ANY, max_size=3),
       epoch=either(st.integers(0, 50)), q_min=either(st.floats(0, 1)))
def test_fuzz_delta_schedule(fields, epoch, q_min):
    s = only_allowed_errors(DeltaSchedule, **fields)
    s = s if s is not None else DeltaSchedule(adaptive_delta=True)
    d = only_allowed_errors(s.get_delta, epoch, q_min)
    if d is not None:
        assert math.isfinite(d) and d >= 0


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(
    ["n_stages", "stage_duration", "easy_distance", "hard_distance", "initial_easy_ratio",
     "final_easy_ratio", "linear_progression", "warmup_epochs", "adaptive",
     "min_coverage_for_advance", "max_loss_for_advance", "use_importance_weights",
     "importance_temperature", "min_epochs"]), ANY, max_size=3),
    poles=either(st.just([0.0, 1.0])), x=either(VALID_Q), qv=ANY,
    epoch=either(st.integers(0, 30)), cov=either(st.floats(0, 1)), loss=either(FINITE))
def test_fuzz_curriculum_scheduler(fields, poles, x, qv, epoch, cov, loss):
    cfg = only_allowed_errors(CurriculumConfig, **fields)
    s = only_allowed_errors(CurriculumScheduler, cfg, poles)
    s = s if s is not None else CurriculumScheduler()
    w = only_allowed_errors(s.get_sample_weights, x, qv)
    if w is not None:
        assert math.isclose(w.sum(), 1.0, rel_tol=1e-9) and (w >= 0).all()
    only_allowed_errors(s.update, epoch, cov, loss)


@FUZZ
@given(stages=either(st.none()), edges=either(st.just((1e-5, 1e-4, 1e-3, 1e-2))),
       advance=either(st.sampled_from(["epochs", "adaptive"])), within=either(
           st.sampled_from(["uniform", "importance"])), seed=either(SEED),
       q=either(VALID_Q), bs=either(st.integers(0, 40)), epoch=either(st.integers(0, 9)),
       cov=either(st.floats(0, 1)), loss=either(FINITE))
def test_fuzz_band_curriculum(stages, edges, advance, within, seed, q, bs, epoch, cov, loss):
    c = only_allowed_errors(BandCurriculum, stages, edges=edges, advance=advance, within=within,
                            seed=seed, backend="numpy")
    c = c if c is not None else BandCurriculum(backend="numpy")
    r = only_allowed_errors(c.sample, q, bs, epoch)
    if r is not None:
        assert r[0].size == bs and r[1].sum() == bs
    only_allowed_errors(c.update, epoch, coverage=cov, loss=loss)


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(
    ["weight_power", "min_q_abs", "max_weight", "temperature", "resample_frequency",
     "importance_batch_ratio"]), ANY, max_size=3),
    x=either(st.just(np.arange(8.0))), q=either(VALID_Q), bs=either(st.integers(0, 30)),
    seed=either(SEED), hybrid=st.booleans())
def test_fuzz_importance_sampler(fields, x, q, bs, seed, hybrid):
    cfg = only_allowed_errors(ImportanceSamplerConfig, **fields)
    s = only_allowed_errors(ImportanceSampler, cfg, seed=seed, backend="cpu")
    s = s if s is not None else ImportanceSampler(backend="cpu")
    before = s.state_dict()
    r = only_allowed_errors(s.hybrid_sample if hybrid else s.sample_batch, x, q, bs)
    if r is None:
        assert s.calls == before["calls"]
    only_allowed_errors(s.get_statistics)


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(
    ["export_frequency", "max_history_length", "near_pole_threshold", "far_pole_threshold",
     "q_min_warning_threshold", "band_edges", "gradient_percentiles", "max_snapshots"]),
    ANY, max_size=2),
    epoch=either(st.integers(0, 20)), metrics=either(st.just({"loss_train": 0.5})),
    q=either(VALID_Q), tags=ANY, grads=st.none() | st.dictionaries(st.just("w"), ANY),
    weights=ANY, idx=ANY, q_min=ANY, loss=ANY)
@example(fields={"max_history_length": 2**63}, epoch=0, metrics=None, q=None, tags=None,
         grads=None, weights=None, idx=None, q_min=None, loss=None)     # found: OverflowError
@example(fields={}, epoch=0, metrics=None, q=[8.98e307, 8.98e307], tags=None, grads=None,
         weights=[1e308, 1e308], idx=None, q_min=None, loss=None)       # found: overflow warnings
def test_fuzz_diagnostics(fields, epoch, metrics, q, tags, grads, weights, idx, q_min, loss):
    cfg = only_allowed_errors(DiagnosticConfig, auto_export=False, **fields)
    m = only_allowed_errors(DiagnosticMonitor, cfg)
    m = m if m is not None else DiagnosticMonitor(DiagnosticConfig(auto_export=False))
    only_allowed_errors(m.update, epoch, metrics, q_values=q, tags=tags, gradients=grads)
    only_allowed_errors(m.update_batch, q, weights=weights, indices=idx, loss=loss)
    only_allowed_errors(m.update_batch, q_min=q_min)
    only_allowed_errors(m.get_summary)


CRITERIA = st.sampled_from(["abs", "sign", "abs_or_sign", "interval"])


@FUZZ_SLOW
@given(fields=st.dictionaries(st.sampled_from(
    ["initial_grid_size", "grid_bounds", "refinement_threshold", "max_refinement_level",
     "max_grid_points", "criterion", "adapt_frequency"]), ANY, max_size=2),
    roots=st.lists(st.floats(-1, 1), min_size=1, max_size=3), dim=either(st.integers(1, 2)),
    kind=st.sampled_from(["poly", "callable", "bad-callable"]), rounds=either(st.integers(0, 3)),
    n=either(st.integers(0, 50)), seed=either(SEED),
    weighting=either(st.sampled_from(["volume", "leaf", "importance"])), junk=ANY)
def test_fuzz_active_sampler(fields, roots, dim, kind, rounds, n, seed, weighting, junk):
    # a fuzzed grid size under a fuzzed cap could ask for ~10**7 legitimate 2-D points
    assume(not {"initial_grid_size", "max_grid_points"} <= set(fields))
    base = dict(initial_grid_size=4, grid_bounds=(-1.0, 1.0), max_refinement_level=4,
                max_grid_points=400)
    if isinstance(dim, int) and not isinstance(dim, bool) and dim == 2:
        poly = Polynomial.from_terms(np.array([[2, 0], [0, 2], [0, 0]]),
                                     np.array([1.0, 1.0, -roots[0] ** 2 - 0.01]))
    else:
        poly = Polynomial.from_roots(roots)
    q = {"poly": poly, "callable": lambda x: x.sum(axis=1) - roots[0],
         "bad-callable": lambda x: junk}[kind]
    cfg = only_allowed_errors(ActiveSamplerConfig, **{**base, **fields})   # checked here
    if cfg is None:
        return
    s = only_allowed_errors(ActiveSampler, cfg, q=q, input_dim=dim, backend="numpy")
    if s is None:
        return
    only_allowed_errors(s.refine, rounds)
    x = only_allowed_errors(s.sample, n, seed=seed, weighting=weighting)
    if x is not None:
        assert x.shape == (n, s.input_dim) and np.isfinite(x).all()
    only_allowed_errors(s.refine_grid, junk)
    only_allowed_errors(s.get_statistics)


@FUZZ
@given(coeffs=either(st.lists(FINITE, min_size=1, max_size=5)), x=ANY,
       exps=either(st.just(np.array([[1, 0], [0, 2]]))), c2=either(st.just([1.0, -0.5])))
def test_fuzz_polynomial(coeffs, x, exps, c2):
    p = only_allowed_errors(Polynomial, coeffs)
    if p is not None and not _has_huge_int(x):
        only_allowed_errors(p.evaluate, x, backend="cpu")
    if not _has_huge_int(exps):
        only_allowed_errors(Polynomial.from_terms, exps, c2)



@FUZZ_SLOW
@given(strategy=either(st.sampled_from(["uniform", "importance", "hybrid"])),
       kwargs=st.dictionaries(st.sampled_from(
           ["temperature", "importance_ratio", "grid_size", "refinement_threshold",
            "max_refinement", "export_frequency", "track_gradients", "track_tags", "seed",
            "weighting", "min_q_abs", "max_weight", "max_history_length", "auto_export"]),
           ANY, max_size=2),
       weight_power=either(st.floats(0, 3)), x=either(st.just(np.arange(6.0))),
       q=either(VALID_Q), bs=either(st.integers(1, 20)), epoch=either(st.integers(0, 5)))
def test_fuzz_integrated_sampler(strategy, kwargs, weight_power, x, q, bs, epoch):
    kwargs.setdefault("auto_export", False)
    s = only_allowed_errors(zp_ref.create_integrated_sampler, strategy, weight_power, None,
                            backend="numpy", **kwargs)
    s = s if s is not None else zp_ref.create_integrated_sampler(
        "hybrid", backend="numpy", auto_export=False)
    calls = s.n_calls
    r = only_allowed_errors(s.sample_batch, x, q, bs, epoch)
    assert s.n_calls == calls + (r is not None)


@FUZZ_SLOW
@given(q=either(VALID_Q), n=either(st.integers(1, 30)), seed=either(SEED), new_q=ANY,
       epoch=either(st.integers(0, 5)), idx=ANY)
def test_fuzz_torch_bridge(q, n, seed, new_q, epoch, idx):
    pytest.importorskip("torch")     # zp_ref.torch_bridge raises ImportError (not
    from zp_ref import torch_bridge as tb    # ModuleNotFoundError) without it
    s = only_allowed_errors(tb.ImportanceWeightedSampler, q, n, seed=seed)
    if s is None:
        return
    only_allowed_errors(s.set_epoch, epoch)
    drawn = list(s)
    assert len(drawn) == n and all(0 <= i < s.pool_size for i in drawn)
    only_allowed_errors(s.likelihood_ratio, idx)
    before = s.weights.copy()
    try:
        s.update_q(new_q)
    except (ValueError, TypeError):
        assert s.weights.tobytes() == before.tobytes()    # a refused update changes nothing
    assert s.weights.shape == before.shape


def _saved_sampler(folder):
    s = ImportanceSampler(seed=5, backend="numpy")
    s.sample_batch(np.arange(8.0), np.linspace(-1, 1, 8), 16)
    return s, zp_ref.save_state(folder / "s.json", s)


@FUZZ
@given(cut=st.integers(0, 10**6), flips=st.lists(st.tuples(st.integers(0, 10**6),
                                                            st.integers(1, 255)), max_size=3),
       which=st.sampled_from(["header", "arrays"]))
def test_fuzz_damaged_state_files_are_refused(tmp_path_factory, cut, flips, which):
    """Any truncation or byte edit of a saved state (its JSON header line or its array
    bytes) is refused with ValueError, unless it leaves the content identical (e.g. JSON
    whitespace)."""
    folder = tmp_path_factory.mktemp("state")
    sampler, path = _saved_sampler(folder)
    data = bytearray(path.read_bytes())
    newline = data.index(b"\n")
    start, span = (0, newline) if which == "header" else (newline + 1, len(data) - newline - 1)
    for pos, xor in flips:
        data[start + pos % span] ^= xor
    data = data[:len(data) - cut % (len(data) + 1)] if cut % 3 == 0 else data
    path.write_bytes(bytes(data))
    loaded = only_allowed_errors(zp_ref.load_state, path)
    if loaded is not None:
        assert loaded.state_dict()["calls"] == sampler.state_dict()["calls"]
        idx = np.linspace(-1, 1, 8)
        assert loaded.sample_batch(idx, idx, 4)[1].tolist() == \
            sampler.sample_batch(idx, idx, 4)[1].tolist()
