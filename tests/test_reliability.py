"""The bad-input matrix of the public API (docs/reliability.md).

One row per case. A row calls one public function or method with exactly one bad
argument and expects a ``ValueError`` or ``TypeError`` whose message names that argument
(``match=``), never a Numba error, an ``IndexError``/``KeyError``/``AttributeError`` from
inside the library, a crash or a silent result. Rows with an object (``make``) also
check that its ``state_dict()`` is bit-for-bit unchanged after the failing call.
``ACCEPTED`` lists the edge inputs that are *not* errors, with their exact results.
"""
import copy
import math
import warnings

import numpy as np
import pytest

import zp_ref
from zp_ref import (BandCurriculum, CurriculumConfig, CurriculumScheduler, DeltaSchedule,
                    DiagnosticConfig, DiagnosticMonitor, ImportanceSampler,
                    ImportanceSamplerConfig, IntegratedSampler, band_counts, band_of,
                    create_integrated_sampler, default_stages, derive_seed, ema_update,
                    hybrid_indices, importance_weights, kish_ess, largest_remainder,
                    prefix_sums, sample_indices, sampling_weights, singularity_prob,
                    stratified_sample, u, uniform_indices, uniforms)
from zp_ref import problems
from zp_ref.rational import Polynomial, Rational
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig

NAN, INF = float("nan"), float("inf")
ERR = (ValueError, TypeError)
BACKENDS = ("numpy", "cpu", "cuda")

# ------------------------------------------------------------------ bad value families
NONFINITE = {"nan": NAN, "inf": INF, "-inf": -INF}
NOT_REAL = {"str": "1", "none": None, "bool": True, "complex": 1j, "list": [1.0],
            "npbool": np.bool_(True)}
NOT_COUNT = {"neg": -1, "float": 2.0, "bool": True, "str": "2", "none": None,
             "npfloat": np.float64(2.0), "complex": 2j}
BAD_SEEDS = {"neg": -1, "2**64": 2**64, "float": 1.0, "bool": False, "str": "0", "none": None,
             "npfloat": np.float64(0.0), "np-neg": np.int64(-1)}
BAD_BACKENDS = {"gpu": "gpu", "upper": "CPU", "none": None, "int": 0}
BAD_ARRAYS = {"str": ["a", "b"], "object": np.array([1.0, None], dtype=object),
              "bool": np.array([True, False]), "complex": np.array([1 + 1j, 2.0]),
              "2d": np.ones((2, 2)), "0d": np.float64(1.0), "empty": np.array([]),
              "ragged": [[1.0], [1.0, 2.0]], "none": None, "dict": {"a": 1.0}}
BAD_FLAGS = {"none": None, "str": "yes", "int": 1, "float": 0.0}

Q = np.array([0.5, -0.1, 2.0, 0.01, -3e-6, 4e-4])
W = np.array([0.5, 0.0, 2.0, 1.0])
X = np.arange(6.0)
MIX = [0.1, 0.2, 0.3, 0.2, 0.2]

ROWS = []


def row(id, call, match, *, make=None, exc=ERR, marks=()):
    """One case: ``call()`` (or ``call(make())``) must raise ``exc`` matching ``match``."""
    ROWS.append(pytest.param(make, call, match, exc, id=id, marks=marks))


def family(prefix, values, call, match, **kw):
    """One row per (label, value) of a bad-value family: ``call(value)``."""
    for label, value in values.items():
        row(f"{prefix}={label}", lambda v=value, c=call: c(v), match, **kw)


def method_family(prefix, values, call, match, make):
    for label, value in values.items():
        row(f"{prefix}={label}", lambda obj, v=value, c=call: c(obj, v), match, make=make)


# ================================================================== rng
family("u-seed", BAD_SEEDS, lambda v: u(v, 0, 0), r"\bseed\b")
family("u-stream", {"neg": -1, "float": 0.5, "2**64": 2**64}, lambda v: u(0, v, 0), r"\bstream\b")
family("u-j", {"neg": -1, "float": 0.5, "2**64": 2**64}, lambda v: u(0, 0, v), r"\bj\b")
family("uniforms-seed", BAD_SEEDS, lambda v: uniforms(v, 0, 3), r"\bseed\b")
family("uniforms-n", NOT_COUNT, lambda v: uniforms(0, 0, v), r"\bn\b")
family("uniforms-start", {"neg": -1, "float": 1.0, "overflow": 2**64 - 2},
       lambda v: uniforms(0, 0, 3, start=v), r"\bstart\b")
family("uniforms-backend", BAD_BACKENDS, lambda v: uniforms(0, 0, 3, backend=v), "backend")
family("derive_seed-seed", BAD_SEEDS, lambda v: derive_seed(v, 0), r"\bseed\b")
family("derive_seed-index", {"neg": -1, "float": 1.0, "2**64": 2**64},
       lambda v: derive_seed(0, v), r"\bindex\b")

# ================================================================== weighting
family("importance_weights-q", BAD_ARRAYS, lambda v: importance_weights(v), r"\bq\b")
for b in BACKENDS:
    row(f"importance_weights-q-nan[{b}]",
        lambda b=b: importance_weights(np.array([0.5, NAN]), backend=b), r"\bq\b.*NaN.*index 1")
    row(f"importance_weights-q-all-inf[{b}]",
        lambda b=b: importance_weights(np.array([INF, -INF]), backend=b), "normalize")
for field, domain in (("weight_power", {"neg": -1.0}),
                      ("min_q_abs", {"zero": 0.0, "neg": -1e-6}),
                      ("max_weight", {"zero": 0.0, "neg": -1.0}),
                      ("temperature", {"zero": 0.0, "neg": -1.0})):
    family(f"importance_weights-{field}", {**NONFINITE, **NOT_REAL, **domain},
           lambda v, f=field: importance_weights(Q, **{f: v}), field)
row("importance_weights-tempered-cap-overflows",
    lambda: importance_weights(Q, max_weight=1e300, temperature=0.1),
    r"max_weight \*\* \(1 / temperature\)")
for b in ("numpy", "cpu"):
    row(f"importance_weights-total-overflows[{b}]",
        lambda b=b: importance_weights(np.full(2, 1e-250), min_q_abs=1e-200, max_weight=1.7e308,
                                       backend=b), "weights overflows.*max_weight")
family("importance_weights-normalize", BAD_FLAGS,
       lambda v: importance_weights(Q, normalize=v), "normalize")
family("importance_weights-nan_policy", {"ignore": "ignore", "none": None, "upper": "RAISE"},
       lambda v: importance_weights(Q, nan_policy=v), "nan_policy")
family("importance_weights-backend", BAD_BACKENDS,
       lambda v: importance_weights(Q, backend=v), "backend")


def _readonly(a):
    a.setflags(write=False)
    return a


def _overlap_out():
    q = Q.copy()
    return importance_weights(q, out=q)


for label, make_out in {"float32": lambda: np.empty(Q.size, np.float32),
                        "shape": lambda: np.empty(Q.size + 1),
                        "strided": lambda: np.empty(2 * Q.size)[::2],
                        "readonly": lambda: _readonly(np.zeros(Q.size)),
                        "list": lambda: [0.0] * Q.size,
                        "2d": lambda: np.empty((Q.size, 1))}.items():
    row(f"importance_weights-out={label}", lambda m=make_out: importance_weights(Q, out=m()),
        r"\bout\b")
row("importance_weights-out-overlaps-q", lambda: _overlap_out(), r"\bout\b")


family("singularity_prob-q_values", BAD_ARRAYS,
       lambda v: singularity_prob(v, tau_train=0.1, beta=0.1), r"\bq_values\b")
row("singularity_prob-q_values-nan",
    lambda: singularity_prob(np.array([1.0, NAN]), tau_train=0.1, beta=0.1),
    r"\bq_values\b.*NaN")
family("singularity_prob-tau_train", {**NONFINITE, **NOT_REAL, "neg": -0.1},
       lambda v: singularity_prob(Q, tau_train=v, beta=0.1), "tau_train")
family("singularity_prob-beta", {**NONFINITE, **NOT_REAL, "zero": 0.0, "neg": -1.0},
       lambda v: singularity_prob(Q, tau_train=0.1, beta=v), "beta")
family("ema_update-gamma", {**NONFINITE, **NOT_REAL, "neg": -0.1, "above-1": 1.5},
       lambda v: ema_update(0.0, Q, gamma=v), "gamma")
family("ema_update-current", {**BAD_ARRAYS, "nan": np.array([NAN]), "inf": np.array([INF])},
       lambda v: ema_update(0.0, v, gamma=0.5), r"\bcurrent\b")
family("ema_update-previous", {"nan": NAN, "inf": INF, "str": "a", "shape": np.zeros(2),
                               "nan-array": np.full(Q.size, NAN), "complex": 1j},
       lambda v: ema_update(v, Q, gamma=0.5), r"\bprevious\b")
family("sampling_weights-alpha", {**NONFINITE, **NOT_REAL, "neg": -1.0},
       lambda v: sampling_weights(Q, Q, alpha=v, s_min=0.1), "alpha")
family("sampling_weights-s_min", {**NONFINITE, "str": "1", "neg": -1.0},
       lambda v: sampling_weights(Q, Q, alpha=1.0, s_min=v), "s_min")
family("sampling_weights-probabilities",
       {"nan": np.array([NAN]), "str": ["a"], "empty": np.array([])},
       lambda v: sampling_weights(v, np.zeros(1), alpha=1.0, s_min=0.1), r"\bprobabilities\b")
family("sampling_weights-bottom_mask", {"shape": np.zeros(2), "nan": np.full(Q.size, NAN)},
       lambda v: sampling_weights(Q, v, alpha=1.0, s_min=0.1), r"\bbottom_mask\b")

# ================================================================== sampling
family("sample_indices-weights", BAD_ARRAYS, lambda v: sample_indices(v, 2, seed=0), "weights")
BAD_WEIGHT_VALUES = {"neg": (np.array([1.0, -1.0]), r"weights must be >= 0.*index 1"),
                     "nan": (np.array([1.0, NAN]), r"weights must be finite.*index 1"),
                     "inf": (np.array([1.0, INF]), r"weights must be finite.*index 1"),
                     "-inf": (np.array([-INF, 1.0]), r"weights must be >= 0"),
                     "all-zero": (np.zeros(3), r"weights sum to 0"),
                     "overflow": (np.array([1e308, 1e308]), r"weights overflows")}
for b in BACKENDS:
    for replace in (True, False):
        for label, (w, match) in BAD_WEIGHT_VALUES.items():
            row(f"sample_indices-weights-{label}[{b},replace={replace}]",
                lambda w=w, b=b, r=replace: sample_indices(w, 1, seed=0, replace=r, backend=b),
                match)
    row(f"sample_indices-n-above-positive[{b}]",
        lambda b=b: sample_indices(W, 4, seed=0, replace=False, backend=b), r"n=4.*positive")
family("sample_indices-n", NOT_COUNT, lambda v: sample_indices(W, v, seed=0), r"\bn\b")
family("sample_indices-seed", BAD_SEEDS, lambda v: sample_indices(W, 2, seed=v), r"\bseed\b")
family("sample_indices-replace", BAD_FLAGS,
       lambda v: sample_indices(W, 2, seed=0, replace=v), "replace")
family("sample_indices-backend", BAD_BACKENDS,
       lambda v: sample_indices(W, 2, seed=0, backend=v), "backend")
family("uniform_indices-pool_size", {**NOT_COUNT, "zero": 0, "2**53+1": 2**53 + 1},
       lambda v: uniform_indices(v, 2, seed=0), "pool_size")
family("uniform_indices-n", NOT_COUNT, lambda v: uniform_indices(5, v, seed=0), r"\bn\b")
family("uniform_indices-seed", BAD_SEEDS, lambda v: uniform_indices(5, 2, seed=v), r"\bseed\b")
family("uniform_indices-backend", BAD_BACKENDS,
       lambda v: uniform_indices(5, 2, seed=0, backend=v), "backend")
family("hybrid_indices-ratio", {**NONFINITE, **NOT_REAL, "neg": -0.1, "above-1": 1.1},
       lambda v: hybrid_indices(W, 4, ratio=v, seed=0), "ratio")
family("hybrid_indices-weights", {**BAD_ARRAYS, "neg": np.array([1.0, -1.0]),
                                  "nan": np.array([NAN, 1.0]), "all-zero": np.zeros(2)},
       lambda v: hybrid_indices(v, 4, ratio=0.5, seed=0), "weights")
for b in BACKENDS:
    row(f"hybrid_indices-weights-all-zero-ratio0[{b}]",
        lambda b=b: hybrid_indices(np.zeros(3), 4, ratio=0.0, seed=0, backend=b), "weights")
family("hybrid_indices-n", NOT_COUNT, lambda v: hybrid_indices(W, v, ratio=0.5, seed=0), r"\bn\b")
family("hybrid_indices-seed", BAD_SEEDS, lambda v: hybrid_indices(W, 2, ratio=0.5, seed=v),
       r"\bseed\b")
family("prefix_sums-weights", {**BAD_ARRAYS, "nan": np.array([1.0, NAN]),
                               "inf": np.array([INF]), "neg": np.array([1.0, -2.0])},
       lambda v: prefix_sums(v), "weights")
family("kish_ess-weights", {**BAD_ARRAYS, "nan": np.array([1.0, NAN]),
                            "neg": np.array([1.0, -1.0])}, lambda v: kish_ess(v), "weights")

# ImportanceSamplerConfig: every field
for field, domain in (("weight_power", {"neg": -1.0}), ("min_q_abs", {"zero": 0.0}),
                      ("max_weight", {"zero": 0.0}), ("temperature", {"zero": 0.0}),
                      ("importance_batch_ratio", {"above-1": 1.5, "neg": -0.5})):
    family(f"ImportanceSamplerConfig-{field}", {**NONFINITE, **NOT_REAL, **domain},
           lambda v, f=field: ImportanceSamplerConfig(**{f: v}), field)
row("ImportanceSamplerConfig-removed-resample_ratio",
    lambda: ImportanceSamplerConfig(resample_ratio=0.5), "resample_ratio", exc=TypeError)
row("ImportanceSamplerConfig-tempered-cap-overflows",
    lambda: ImportanceSamplerConfig(max_weight=1e200, temperature=0.5), "max_weight")
family("ImportanceSamplerConfig-resample_frequency", {**NOT_COUNT, "zero": 0},
       lambda v: ImportanceSamplerConfig(resample_frequency=v), "resample_frequency")
family("ImportanceSampler-config", {"dict": {"weight_power": 2.0}, "str": "default"},
       lambda v: ImportanceSampler(v), "config")
family("ImportanceSampler-seed", BAD_SEEDS, lambda v: ImportanceSampler(seed=v), r"\bseed\b")
family("ImportanceSampler-backend", BAD_BACKENDS, lambda v: ImportanceSampler(backend=v),
       "backend")


def drawn_sampler():
    """An ImportanceSampler with a non-trivial state (two batches drawn)."""
    s = ImportanceSampler(ImportanceSamplerConfig(max_weight=1e6), seed=11, backend="numpy")
    s.sample_batch(X, Q, 5)
    s.hybrid_sample(X, Q, 4)
    return s


for meth in ("sample_batch", "hybrid_sample"):
    call = (lambda meth: lambda obj, x, q, b: getattr(obj, meth)(x, q, b))(meth)
    method_family(f"ImportanceSampler.{meth}-q_pool",
                  {**{k: v for k, v in BAD_ARRAYS.items() if k != "empty"},
                   "empty": np.array([])},
                  lambda obj, v, c=call: c(obj, X, v, 3), r"\bq_pool\b", drawn_sampler)
    row(f"ImportanceSampler.{meth}-q_pool-nan",
        lambda obj, c=call: c(obj, X, np.r_[Q[:-1], NAN], 3), r"\bq\b.*NaN", make=drawn_sampler)
    row(f"ImportanceSampler.{meth}-q_pool-all-inf",
        lambda obj, c=call: c(obj, X, np.full(X.size, INF), 3), "normalize", make=drawn_sampler)
    method_family(f"ImportanceSampler.{meth}-x_pool",
                  {"short": X[:-1], "none": None, "str": "abcdef", "scalar": 3.0,
                   "set": set(range(6))},
                  lambda obj, v, c=call: c(obj, v, Q, 3), r"\bx_pool\b", drawn_sampler)
    method_family(f"ImportanceSampler.{meth}-batch_size", NOT_COUNT,
                  lambda obj, v, c=call: c(obj, X, Q, v), "batch_size", drawn_sampler)
method_family("ImportanceSampler.compute_weights-q_values", BAD_ARRAYS,
              lambda obj, v: obj.compute_weights(v), r"\bq\b", drawn_sampler)
method_family("ImportanceSampler.should_resample-epoch", NOT_COUNT,
              lambda obj, v: obj.should_resample(v), "epoch", drawn_sampler)


def _state_with(**changes):
    state = drawn_sampler().state_dict()
    for key, value in changes.items():
        if key == "config":
            state["config"] = {**state["config"], **value}
        else:
            state[key] = value
    return state


for label, state, match in (
        ("not-dict", [1, 2], "state"),
        ("missing-key", {k: v for k, v in drawn_sampler().state_dict().items() if k != "calls"},
         "state"),
        ("seed-neg", _state_with(seed=-1), "seed"),
        ("calls-float", _state_with(calls=1.5), "calls"),
        ("counts-neg", _state_with(sample_counts=np.array([-1, 10], np.int64)),
         "sample_counts"),
        ("counts-sum", _state_with(sample_counts=np.zeros(6, np.int64)), "sample_counts"),
        ("counts-float", _state_with(sample_counts=np.zeros(6)), "sample_counts"),
        ("config-nan", _state_with(config={"temperature": NAN}), "temperature"),
        ("config-unknown", _state_with(config={"colour": 1}), "colour"),
        ("backend", _state_with(backend="gpu"), "backend")):
    row(f"ImportanceSampler.load_state_dict-{label}",
        lambda obj, s=state: obj.load_state_dict(s), match, make=drawn_sampler)

# ================================================================== bands
BAD_EDGES = {"decreasing": [1e-3, 1e-4], "equal": [1e-3, 1e-3], "negative": [-1.0, 1.0],
             "nan": [NAN, 1.0], "inf": [1.0, INF], "empty": [], "2d": [[1e-3, 1e-2]],
             "str": ["a"], "bool": [True], "complex": [1j]}
family("band_of-edges", BAD_EDGES, lambda v: band_of(Q, v), "edges")
family("band_of-q", {k: v for k, v in BAD_ARRAYS.items() if k != "empty"},
       lambda v: band_of(v), r"\bq\b")
for b in BACKENDS:
    row(f"band_of-q-nan[{b}]", lambda b=b: band_of(np.array([1.0, NAN]), backend=b),
        r"\bq\b.*NaN.*index 1")
    row(f"band_counts-q-nan[{b}]", lambda b=b: band_counts(np.array([NAN]), backend=b),
        r"\bq\b.*NaN")
family("band_of-backend", BAD_BACKENDS, lambda v: band_of(Q, backend=v), "backend")
family("band_counts-edges", {k: BAD_EDGES[k] for k in ("decreasing", "nan", "empty", "str")},
       lambda v: band_counts(Q, v), "edges")
family("band_counts-q", {k: BAD_ARRAYS[k] for k in ("str", "2d", "complex", "ragged")},
       lambda v: band_counts(v), r"\bq\b")
family("stratified_sample-mix",
       {"short": MIX[:-1], "long": MIX + [0.0], "sum<1": [0.1] * 5, "sum>1": [0.3] * 5,
        "negative": [-0.2, 0.3, 0.3, 0.3, 0.3], "nan": [NAN] + MIX[1:], "inf": [INF] + MIX[1:],
        "str": ["a"] * 5, "2d": [MIX], "none": None},
       lambda v: stratified_sample(Q, 4, mix=v, seed=0), r"\bmix\b")
family("stratified_sample-edges", {k: BAD_EDGES[k] for k in ("decreasing", "nan", "negative")},
       lambda v: stratified_sample(Q, 4, edges=v, mix=[0.3, 0.3, 0.4], seed=0), "edges")
family("stratified_sample-n", NOT_COUNT, lambda v: stratified_sample(Q, v, mix=MIX, seed=0),
       r"\bn\b")
family("stratified_sample-seed", BAD_SEEDS, lambda v: stratified_sample(Q, 4, mix=MIX, seed=v),
       r"\bseed\b")
family("stratified_sample-within", {"unknown": "weighted", "none": None, "upper": "UNIFORM"},
       lambda v: stratified_sample(Q, 4, mix=MIX, seed=0, within=v), "within")
for field, values in (("weight_power", {**NONFINITE, "neg": -1.0, "str": "2"}),
                      ("min_q_abs", {**NONFINITE, "zero": 0.0}),
                      ("max_weight", {"nan": NAN, "inf": INF, "zero": 0.0, "str": "1"})):
    family(f"stratified_sample-{field}", values,
           lambda v, f=field: stratified_sample(Q, 4, mix=MIX, seed=0, within="importance",
                                                **{f: v}), field)
family("stratified_sample-q", BAD_ARRAYS, lambda v: stratified_sample(v, 4, mix=MIX, seed=0),
       r"\bq\b")
for b in BACKENDS:
    row(f"stratified_sample-q-nan[{b}]",
        lambda b=b: stratified_sample(np.r_[Q, NAN], 4, mix=MIX, seed=0, backend=b), r"\bq\b.*NaN")
    row(f"stratified_sample-q-all-inf-importance[{b}]",
        lambda b=b: stratified_sample(np.array([INF, -INF]), 4, mix=MIX, seed=0,
                                      within="importance", backend=b), r"\bq\b.*inf")
family("stratified_sample-backend", BAD_BACKENDS,
       lambda v: stratified_sample(Q, 4, mix=MIX, seed=0, backend=v), "backend")
family("largest_remainder-n", {**NOT_COUNT, "2**40": 2**40},
       lambda v: largest_remainder(v, [0.5, 0.5]), r"\bn\b")
family("largest_remainder-shares",
       {"sum<1": [0.2, 0.2], "negative": [-0.5, 1.5], "nan": [NAN, 1.0], "str": "ab",
        "2d": [[0.5, 0.5]], "empty": [], "none": None},
       lambda v: largest_remainder(3, v), "shares")
family("default_stages-n_bands", {**NOT_COUNT, "one": 1, "zero": 0},
       lambda v: default_stages(v), "n_bands")

# ================================================================== schedule
for field, values in (("warmup_epochs", NOT_COUNT), ("transition_epochs", NOT_COUNT),
                      ("delta_init", {**NONFINITE, **NOT_REAL, "zero": 0.0, "neg": -1e-3}),
                      ("delta_final", {**NONFINITE, **NOT_REAL, "zero": 0.0}),
                      ("min_delta", {**NONFINITE, "str": "0", "neg": -1e-9}),
                      ("schedule_type", {"unknown": "step", "none": None, "int": 1}),
                      ("adaptive_delta", {"int": 1, "str": "yes", "none": None})):
    family(f"DeltaSchedule-{field}", values, lambda v, f=field: DeltaSchedule(**{f: v}), field)


def schedule():
    return DeltaSchedule(warmup_epochs=1, adaptive_delta=True)


method_family("DeltaSchedule.get_delta-epoch", NOT_COUNT, lambda s, v: s.get_delta(v),
              "epoch", schedule)
method_family("DeltaSchedule.get_delta-q_min", {"nan": NAN, "neg": -1e-3, "str": "0.1",
                                                "complex": 1j},
              lambda s, v: s.get_delta(3, q_min=v), "q_min", schedule)
for label, state, match in (
        ("not-dict", "state", "state"),
        ("version", {**schedule().state_dict(), "version": 2}, "version"),
        ("missing", {k: v for k, v in schedule().state_dict().items() if k != "min_delta"},
         "min_delta"),
        ("field-nan", {**schedule().state_dict(), "delta_init": NAN}, "delta_init")):
    row(f"DeltaSchedule.load_state_dict-{label}", lambda s, st=state: s.load_state_dict(st),
        match, make=schedule)

# ================================================================== curriculum
for field, values in (
        ("n_stages", {**NOT_COUNT, "zero": 0}), ("stage_duration", {**NOT_COUNT, "zero": 0}),
        ("easy_distance", {**NONFINITE, "str": "1", "below-hard": 1e-3}),
        ("hard_distance", {**NONFINITE, "neg": -0.1, "none": None}),
        ("initial_easy_ratio", {**NONFINITE, "above-1": 1.1, "bool": True}),
        ("final_easy_ratio", {**NONFINITE, "neg": -0.1}),
        ("linear_progression", {"int": 1, "str": "no"}), ("warmup_epochs", NOT_COUNT),
        ("adaptive", {"int": 0, "none": None}),
        ("min_coverage_for_advance", {**NONFINITE, "above-1": 2.0}),
        ("max_loss_for_advance", {**NONFINITE, "str": "1"}),
        ("use_importance_weights", {"str": "yes", "int": 1}),
        ("importance_temperature", {**NONFINITE, "zero": 0.0}),
        ("min_epochs", {"neg": -1, "float": 1.5, "str": "3"})):
    family(f"CurriculumConfig-{field}", values, lambda v, f=field: CurriculumConfig(**{f: v}),
           field)
family("CurriculumScheduler-config", {"dict": {}, "str": "cfg"},
       lambda v: CurriculumScheduler(v), "config")
family("CurriculumScheduler-pole_locations",
       {"nan": [0.1, NAN], "inf": [INF], "str": ["a"], "3d": np.zeros((1, 1, 1)),
        "complex": [1j], "ragged": [[0.0], [0.0, 1.0]]},
       lambda v: CurriculumScheduler(pole_locations=v), "pole_locations")


def scheduler():
    s = CurriculumScheduler(CurriculumConfig(n_stages=3, stage_duration=2, warmup_epochs=0),
                            pole_locations=[0.0, 1.0])
    s.update(1, 0.9, 0.1)
    return s


def scheduler_q():
    s = CurriculumScheduler(CurriculumConfig(n_stages=3, warmup_epochs=0))
    s.update(0, 0.5, 0.5)
    return s


method_family("CurriculumScheduler.get_sample_weights-x_values",
              {**BAD_ARRAYS, "nan": [0.1, NAN], "2d-vs-1d-poles": np.zeros((3, 2))},
              lambda s, v: s.get_sample_weights(v), "x_values", scheduler)
method_family("CurriculumScheduler.get_sample_weights-q_values",
              {"short": Q[:-1], "nan": np.r_[Q[:-1], NAN], "str": ["a"] * Q.size,
               "2d": np.ones((Q.size, 2))},
              lambda s, v: s.get_sample_weights(X, v), "q_values", scheduler_q)
method_family("CurriculumScheduler.update-epoch", {**NOT_COUNT, "decreasing": 0},
              lambda s, v: s.update(v, 0.5, 0.5), "epoch", scheduler)
method_family("CurriculumScheduler.update-coverage",
              {**NONFINITE, "above-1": 1.5, "neg": -0.1, "str": "0.5"},
              lambda s, v: s.update(2, v, 0.5), "coverage", scheduler)
method_family("CurriculumScheduler.update-loss", {**NONFINITE, "str": "1", "none": None},
              lambda s, v: s.update(2, 0.5, v), "loss", scheduler)
method_family("CurriculumScheduler.should_advance_stage-coverage", {"nan": NAN, "above-1": 2.0},
              lambda s, v: s.should_advance_stage(v, 0.1), "coverage", scheduler)
method_family("CurriculumScheduler.current_stage", {"out-of-range": 3, "neg": -1, "float": 1.0},
              lambda s, v: setattr(s, "current_stage", v), "current_stage", scheduler)
method_family("CurriculumScheduler.current_epoch", {"neg": -1, "str": "3"},
              lambda s, v: setattr(s, "current_epoch", v), "current_epoch", scheduler)
for label, change, match in (("version", {"version": 9}, "version"),
                             ("stage", {"current_stage": 7}, "current_stage"),
                             ("coverage-nan", {"coverage_history": [NAN]}, "coverage"),
                             ("start>epoch", {"stage_start_epoch": 99}, "stage_start_epoch"),
                             ("config", {"config": "x"}, "config")):
    row(f"CurriculumScheduler.load_state_dict-{label}",
        lambda s, c=change: s.load_state_dict({**s.state_dict(), **c}), match, make=scheduler)

family("BandCurriculum-stages",
       {"empty": [], "str": "far", "wrong-length": [[0.5, 0.5]], "not-summing": [[0.1] * 5],
        "negative": [[-0.2, 0.3, 0.3, 0.3, 0.3]], "nan": [[NAN] * 5], "1d": MIX,
        "dict": {"a": 1}},
       lambda v: BandCurriculum(v), "stages")
family("BandCurriculum-edges", {k: BAD_EDGES[k] for k in ("decreasing", "nan", "empty", "str")},
       lambda v: BandCurriculum(edges=v), "edges")
for field, values in (
        ("advance", {"unknown": "loss", "none": None}),
        ("epochs_per_stage", {**NOT_COUNT, "zero": 0}),
        ("coverage_floor", {**NONFINITE, "above-1": 1.5, "str": "0.5"}),
        ("loss_ceiling", {**NONFINITE, "str": "1"}),
        ("min_epochs", {**NOT_COUNT, "zero": 0}),
        ("delta_schedule", {"str": "cosine", "dict": {}}),
        ("within", {"unknown": "x", "none": None}),
        ("weight_power", {**NONFINITE, "neg": -1.0}),
        ("seed", BAD_SEEDS), ("backend", BAD_BACKENDS)):
    family(f"BandCurriculum-{field}", values, lambda v, f=field: BandCurriculum(**{f: v}), field)
row("BandCurriculum-delta_schedule-crosses-edges",
    lambda: BandCurriculum(delta_schedule=DeltaSchedule(delta_init=1e-3)), "delta_schedule")


def band_curriculum(advance="epochs"):
    c = BandCurriculum(advance=advance, epochs_per_stage=2, min_epochs=1, seed=5, backend="numpy",
                       delta_schedule=DeltaSchedule(delta_init=1e-5, delta_final=1e-6))
    c.sample(Q, 6, 1)
    c.update(1, coverage=0.9, loss=0.1)
    return c


method_family("BandCurriculum.sample-q_pool", {**BAD_ARRAYS, "nan": np.r_[Q, NAN]},
              lambda c, v: c.sample(v, 4, 2), "q_pool", band_curriculum)
row("BandCurriculum.sample-q_pool-all-inf",
    lambda c: c.sample(np.array([INF, -INF]), 4, 2), r"\bq\b.*inf", make=band_curriculum)
method_family("BandCurriculum.sample-batch_size", NOT_COUNT, lambda c, v: c.sample(Q, v, 2),
              "batch_size", band_curriculum)
method_family("BandCurriculum.sample-epoch", {**NOT_COUNT, "decreasing": 0},
              lambda c, v: c.sample(Q, 4, v), "epoch", band_curriculum)
method_family("BandCurriculum.update-coverage", {**NONFINITE, "above-1": 1.5},
              lambda c, v: c.update(2, coverage=v, loss=0.1), "coverage", band_curriculum)
method_family("BandCurriculum.update-loss", {**NONFINITE, "str": "x"},
              lambda c, v: c.update(2, coverage=0.5, loss=v), "loss", band_curriculum)
row("BandCurriculum.update-coverage-missing-adaptive",
    lambda c: c.update(2, loss=0.1), "coverage", make=lambda: band_curriculum("adaptive"))
method_family("BandCurriculum.mix_at-epoch", {"neg": -1, "float": 1.0},
              lambda c, v: c.mix_at(v), "epoch", band_curriculum)
for label, change, match in (("version", {"version": 0}, "version"),
                             ("stage", {"current_stage": 3}, "current_stage"),
                             ("last_q_min-nan", {"last_q_min": NAN}, "last_q_min"),
                             ("n_calls-neg", {"n_calls": -1}, "n_calls"),
                             ("stages", {"stages": np.ones((3, 5))}, "stages"),
                             ("history", {"stage_history": [{"stage": 0}]}, "stage_history")):
    row(f"BandCurriculum.load_state_dict-{label}",
        lambda c, ch=change: c.load_state_dict({**c.state_dict(), **ch}), match,
        make=band_curriculum)

# ================================================================== diagnostics
for field, values in (
        ("export_frequency", {**NOT_COUNT, "zero": 0}),
        ("export_path", {"none": None, "int": 3}),
        ("track_gradients", {"int": 1, "str": "yes"}),
        ("gradient_percentiles", {"above-100": [101], "nan": [NAN], "str": "abc", "2d": [[50]]}),
        ("max_history_length", {**NOT_COUNT, "zero": 0, "2**63": 2**63}),
        ("near_pole_threshold", {**NONFINITE, "zero": 0.0, "str": "0.1"}),
        ("far_pole_threshold", {**NONFINITE, "below-near": 0.01}),
        ("track_tag_distribution", {"none": None}), ("monitor_q_min", {"int": 0}),
        ("q_min_warning_threshold", {**NONFINITE, "neg": -1.0}),
        ("band_edges", {k: BAD_EDGES[k] for k in ("decreasing", "nan", "empty")}),
        ("max_snapshots", {"neg": -1, "float": 1.0, "2**64": 2**64}),
        ("auto_export", {"str": "no"})):
    family(f"DiagnosticConfig-{field}", values, lambda v, f=field: DiagnosticConfig(**{f: v}),
           field)
family("DiagnosticMonitor-config", {"dict": {}, "str": "cfg"}, lambda v: DiagnosticMonitor(v),
       "config")


def monitor():
    m = DiagnosticMonitor(DiagnosticConfig(auto_export=False, monitor_q_min=False,
                                           max_history_length=8))
    m.update(0, {"loss_train": 0.5}, q_values=Q, tags=[0, 1, 2, 3, 0, 0],
             gradients={"w": np.arange(6.0)})
    m.update_batch(Q, weights=np.ones(6), indices=np.arange(6))
    return m


method_family("DiagnosticMonitor.update-epoch", NOT_COUNT, lambda m, v: m.update(v), "epoch",
              monitor)
method_family("DiagnosticMonitor.update-metrics",
              {"list": [("loss", 1.0)], "str-value": {"loss": "x"},
               "complex-value": {"loss": 1j}, "reserved-key": {"epoch": 1.0},
               "int-key": {1: 1.0}, "bool-value": {"loss": True}},
              lambda m, v: m.update(1, metrics=v), "metrics", monitor)
method_family("DiagnosticMonitor.update-q_values",
              {**{k: v for k, v in BAD_ARRAYS.items() if k != "none"}, "nan": np.r_[Q[:-1], NAN]},
              lambda m, v: m.update(1, q_values=v), "q_values", monitor)
method_family("DiagnosticMonitor.update-gradients",
              {"short": {"w": np.ones(2)}, "str": {"w": ["a"] * 6}, "list": [np.ones(6)],
               "3d": {"w": np.ones((6, 1, 1))}},
              lambda m, v: m.update(1, q_values=Q, gradients=v), "gradients", monitor)
row("DiagnosticMonitor.update-gradients-without-q_values",
    lambda m: m.update(1, gradients={"w": np.ones(6)}), "q_values", make=monitor)
method_family("DiagnosticMonitor.update-tags",
              {"out-of-range": [0, 4], "neg": [-1], "float": [0.5], "name": ["REALISH"],
               "none-entry": [None], "2d": np.zeros((2, 2), np.int64), "str": "REAL",
               "scalar": 3},
              lambda m, v: m.update(1, tags=v), "tags", monitor)
method_family("DiagnosticMonitor.update-p_values", {"rows": np.ones(2), "str": ["a"] * 6},
              lambda m, v: m.update(10, q_values=Q, p_values=v), "p_values", monitor)
method_family("DiagnosticMonitor.update_batch-q_min",
              {"nan": NAN, "neg": -1.0, "str": "0.1", "bool": True},
              lambda m, v: m.update_batch(q_min=v), "q_min", monitor)
row("DiagnosticMonitor.update_batch-nothing", lambda m: m.update_batch(), "q_values", make=monitor)
method_family("DiagnosticMonitor.update_batch-weights",
              {"short": np.ones(2), "neg": -np.ones(6), "nan": np.full(6, NAN),
               "zero": np.zeros(6), "2d": np.ones((6, 1))},
              lambda m, v: m.update_batch(Q, weights=v), "weights", monitor)
method_family("DiagnosticMonitor.update_batch-indices",
              {"float": np.ones(6), "short": np.arange(2), "neg": -np.arange(1, 7),
               "2d": np.zeros((6, 1), np.int64), "empty": np.array([], np.int64)},
              lambda m, v: m.update_batch(Q, indices=v), "indices", monitor)
method_family("DiagnosticMonitor.update_batch-loss", {"str": "x", "complex": 1j},
              lambda m, v: m.update_batch(Q, loss=v), "loss", monitor)
method_family("DiagnosticMonitor.update_batch-batch_idx",
              {k: v for k, v in NOT_COUNT.items() if k != "none"},
              lambda m, v: m.update_batch(Q, batch_idx=v), "batch_idx", monitor)
method_family("DiagnosticMonitor.export_diagnostics-epoch", {"neg": -1, "float": 1.0},
              lambda m, v: m.export_diagnostics(v), "epoch", monitor)
for label, change, match in (("version", {"version": 2}, "version"),
                             ("missing", {"totals": None}, "totals"),
                             ("config", {"config": {"max_history_length": 0}},
                              "max_history_length")):
    row(f"DiagnosticMonitor.load_state_dict-{label}",
        lambda m, c=change: m.load_state_dict(
            {k: v for k, v in {**m.state_dict(), **c}.items() if v is not None}), match,
        make=monitor)

# ================================================================== integrated
family("IntegratedSampler-strategy", {"unknown": "random", "none": None, "upper": "UNIFORM"},
       lambda v: IntegratedSampler(v), "strategy")
family("IntegratedSampler-seed", BAD_SEEDS, lambda v: IntegratedSampler("uniform", seed=v),
       r"\bseed\b")
family("IntegratedSampler-weighting", {"unknown": "area", "none": None},
       lambda v: IntegratedSampler("uniform", weighting=v), "weighting")
family("IntegratedSampler-backend", BAD_BACKENDS,
       lambda v: IntegratedSampler("uniform", backend=v), "backend")
family("IntegratedSampler-importance_config", {"dict": {}},
       lambda v: IntegratedSampler("uniform", importance_config=v), "config")
family("IntegratedSampler-active_config", {"dict": {}},
       lambda v: IntegratedSampler("uniform", active_config=v), "active_config")
family("IntegratedSampler-diagnostic_config", {"dict": {}},
       lambda v: IntegratedSampler("uniform", diagnostic_config=v), "config")
row("IntegratedSampler-q-missing-for-active", lambda: IntegratedSampler("active"), "q=")
family("IntegratedSampler-input_dim", {"zero": 0, "seven": 7, "float": 1.0},
       lambda v: IntegratedSampler("active", q=lambda x: x[:, 0], input_dim=v), "input_dim")


def integrated(strategy="hybrid"):
    s = IntegratedSampler(strategy, diagnostic_config=DiagnosticConfig(auto_export=False),
                          seed=3, backend="numpy")
    s.sample_batch(X, Q, 4)
    return s


for strategy in ("uniform", "importance", "hybrid"):
    mk = (lambda st: lambda: integrated(st))(strategy)
    method_family(f"IntegratedSampler.sample_batch[{strategy}]-batch_size",
                  {**NOT_COUNT, "zero": 0}, lambda s, v: s.sample_batch(X, Q, v), "batch_size",
                  mk)
    method_family(f"IntegratedSampler.sample_batch[{strategy}]-q_pool",
                  {"nan": np.r_[Q[:-1], NAN], "str": ["a"] * 6, "2d": np.ones((6, 2))},
                  lambda s, v: s.sample_batch(X, v, 4), "q_pool", mk)
    method_family(f"IntegratedSampler.sample_batch[{strategy}]-x_pool",
                  {"short": X[:-1], "none": None, "3d": np.ones((6, 1, 1))},
                  lambda s, v: s.sample_batch(v, Q, 4), "x_pool", mk)
    row(f"IntegratedSampler.sample_batch[{strategy}]-epoch-neg",
        lambda s: s.sample_batch(X, Q, 4, epoch=-1), "epoch", make=mk)
row("IntegratedSampler.load_state_dict-version",
    lambda s: s.load_state_dict({**s.state_dict(), "version": 5}), "version", make=integrated)
row("IntegratedSampler.load_state_dict-seed",
    lambda s: s.load_state_dict({**s.state_dict(), "seed": -3}), "seed", make=integrated)
family("create_integrated_sampler-kwarg", {"unknown": {"colour": 1}, "typo": {"temprature": 1}},
       lambda v: create_integrated_sampler("uniform", **v), "keyword")
family("create_integrated_sampler-weight_power", {**NONFINITE, "neg": -2.0},
       lambda v: create_integrated_sampler("uniform", weight_power=v), "weight_power")
family("create_integrated_sampler-temperature", {"zero": 0, "nan": NAN},
       lambda v: create_integrated_sampler("uniform", temperature=v), "temperature")
family("create_integrated_sampler-importance_ratio", {"above-1": 2, "nan": NAN},
       lambda v: create_integrated_sampler("uniform", importance_ratio=v),
       "importance_batch_ratio")
family("create_integrated_sampler-grid_size", {"zero": 0, "float": 1.5},
       lambda v: create_integrated_sampler("uniform", grid_size=v, q=lambda x: x[:, 0]),
       "initial_grid_size")
family("create_integrated_sampler-export_path", {"int": 3},
       lambda v: create_integrated_sampler("uniform", export_path=v), "export_path")

# ================================================================== state files (paths)
family("save_state-obj", {"object": object(), "dict": {}, "config": ImportanceSamplerConfig()},
       lambda v: zp_ref.save_state("unused.json", v), r"\bobj\b")
family("save_state-path", {"int": 3, "none": None, "npz": "state.npz",
                           "missing-folder": "no/such/folder/state.json"},
       lambda v: zp_ref.save_state(v, DeltaSchedule()), r"\bpath\b")
family("load_state-path", {"int": 3, "none": None}, lambda v: zp_ref.load_state(v), r"\bpath\b")
family("load_state-cls", {"str": "ImportanceSampler", "instance": DeltaSchedule()},
       lambda v: zp_ref.load_state("unused.json", cls=v), r"\bcls\b")

# ================================================================== refinement
P1 = Polynomial([-0.1, 1.0])            # root at 0.1
CIRCLE = problems.get("circle_2d")


def active_config(**kw):
    base = dict(initial_grid_size=4, grid_bounds=(-1.0, 1.0), max_refinement_level=3,
                max_grid_points=200)
    return ActiveSamplerConfig(**{**base, **kw})


for field in ("refinement_ratio", "min_points_per_region"):
    row(f"ActiveSamplerConfig-removed-{field}", lambda f=field: ActiveSamplerConfig(**{f: 3}),
        field, exc=TypeError)


for field, values in (
        ("initial_grid_size", {"zero": 0, "float": 1.5, "bool": True, "wrong-length": [2, 2],
                               "str": "4", "neg": -4}),
        ("grid_bounds", {"lo=hi": (1.0, 1.0), "lo>hi": (1.0, -1.0), "nan": (NAN, 1.0),
                         "inf": (-INF, 1.0), "str": ("a", 1.0), "scalar": 3.0, "none": None,
                         "too-many-pairs": ((0, 1), (0, 1)), "overflowing-width": (-1e308, 1e308),
                         "complex": (0j, 1.0)}),
        ("refinement_threshold", {**NONFINITE, "zero": 0.0, "str": "0.1", "none": None}),
        ("max_refinement_level", {**NOT_COUNT, "lattice-too-fine": 60}),
        ("adapt_frequency", {"zero": 0, "none": None}),
        ("max_grid_points", {"zero": 0, "inf": INF, "below-initial-grid": 5}),
        ("criterion", {"unknown": "curvature", "none": None, "upper": "SIGN"})):
    family(f"ActiveSampler-config.{field}", values,
           lambda v, f=field: ActiveSampler(active_config(**{f: v}), q=P1, backend="numpy"),
           field if field != "max_grid_points" else "max_grid_points")
family("ActiveSampler-config", {"dict": {}, "str": "default"}, lambda v: ActiveSampler(v),
       "config")
family("ActiveSampler-input_dim", {**NOT_COUNT, "zero": 0, "seven": 7},
       lambda v: ActiveSampler(active_config(), input_dim=v), "input_dim")
family("ActiveSampler-q", {"str": "x**2 - 1", "int": 3, "array": np.ones(3),
                           "poly-dim-mismatch": CIRCLE.q},
       lambda v: ActiveSampler(active_config(), q=v, backend="numpy"), r"\bq\b")
family("ActiveSampler-q-for-interval", {"callable": lambda x: x[:, 0], "none": None},
       lambda v: ActiveSampler(active_config(criterion="interval"), q=v), "interval")
family("ActiveSampler-backend", BAD_BACKENDS,
       lambda v: ActiveSampler(active_config(), q=P1, backend=v), "backend")
family("ActiveSampler-q-returns",
       {"wrong-shape": lambda x: x, "scalar": lambda x: 1.0, "short": lambda x: x[:-1, 0],
        "nan": lambda x: x[:, 0] * NAN, "inf": lambda x: x[:, 0] / 0.0 + 1.0,
        "complex": lambda x: x[:, 0] + 1j, "none": lambda x: None,
        "str": lambda x: np.array(["a"] * len(x)), "bool": lambda x: x[:, 0] > 0},
       lambda f: ActiveSampler(active_config(), q=f, backend="numpy"), r"\bq\b")


class FlakyQ:
    """Q = x - 0.1 for the first call (the initial grid), then ``then(x)``."""

    def __init__(self, then):
        self.calls, self.then = 0, then

    def __call__(self, x):
        self.calls += 1
        return x[:, 0] - 0.1 if self.calls == 1 else self.then(x)


class UserError(RuntimeError):
    pass


def _raise(x):
    raise UserError("q failed inside the user's code")


for b in ("numpy", "cpu"):
    for label, then, exc, match in (
            ("raises", _raise, UserError, "user's code"),
            ("returns-nan", lambda x: x[:, 0] * NAN, ERR, r"\bq\b.*non-finite"),
            ("returns-wrong-shape", lambda x: x[:1, 0], ERR, r"\bq\b.*shape"),
            ("returns-complex", lambda x: x[:, 0] + 0j, ERR, r"\bq\b.*real")):
        row(f"ActiveSampler.refine[{b}]-q-{label}", lambda s: s.refine(), match, exc=exc,
            make=lambda then=then, b=b: ActiveSampler(active_config(), q=FlakyQ(then),
                                                      backend=b))


def active():
    s = ActiveSampler(active_config(), q=P1, backend="numpy")
    s.refine(max_rounds=1)
    return s


method_family("ActiveSampler.refine-max_rounds", {"neg": -1, "float": 1.5, "str": "2"},
              lambda s, v: s.refine(max_rounds=v), "max_rounds", active)
method_family("ActiveSampler.refine_grid-q_values",
              {**BAD_ARRAYS, "short": np.ones(3), "nan": "nan-grid"},
              lambda s, v: s.refine_grid(np.full(s.get_current_grid().shape[0], NAN)
                                         if isinstance(v, str) and v == "nan-grid" else v),
              "q_values", active)
method_family("ActiveSampler.sample-n", NOT_COUNT, lambda s, v: s.sample(v, seed=0), r"\bn\b",
              active)
method_family("ActiveSampler.sample-seed", BAD_SEEDS, lambda s, v: s.sample(3, seed=v),
              r"\bseed\b", active)
method_family("ActiveSampler.sample-weighting", {"unknown": "density", "none": None},
              lambda s, v: s.sample(3, seed=0, weighting=v), "weighting", active)
method_family("ActiveSampler.sample-return_leaf", {"int": 1, "none": None},
              lambda s, v: s.sample(3, seed=0, return_leaf=v), "return_leaf", active)
method_family("ActiveSampler.should_adapt-epoch", {"neg": -1, "float": 1.0},
              lambda s, v: s.should_adapt(v), "epoch", active)
for label, change, match in (("version", {"version": 3}, "version"),
                             ("input_dim", {"input_dim": 9}, "input_dim"),
                             ("keys-unsorted", {"point_keys": "reversed"}, "point_keys"),
                             ("leaf-overlap", {"leaf_level": "zeros"}, "leaves|leaf"),
                             ("q-kind", {"q": {"kind": "spline"}}, "kind"),
                             ("history", {"history": "x"}, "history")):
    def _apply(s, change=change):
        state = s.state_dict()
        for k, v in change.items():
            if v == "reversed":
                v = state[k][::-1].copy()
            elif v == "zeros":
                v = np.zeros_like(state[k])
            state[k] = v
        s.load_state_dict(state)
    row(f"ActiveSampler.load_state_dict-{label}", _apply, match, make=active)
row("ActiveSampler.load_state_dict-not-dict", lambda s: s.load_state_dict([1]), "state",
    make=active)

# ================================================================== Polynomial, Rational, problems
family("Polynomial-coeffs", {**BAD_ARRAYS, "nan": [1.0, NAN], "inf": [INF]},
       lambda v: Polynomial(v), "coeffs")
family("Polynomial.from_roots-roots", {"nan": [NAN], "inf": [0.5, INF], "str": ["a"],
                                       "2d": [[0.5]], "complex": [1j]},
       lambda v: Polynomial.from_roots(v), "roots")
family("Polynomial.from_terms-exponents",
       {"float": np.array([[1.0, 0.0]]), "1d": np.array([1, 0]), "neg": np.array([[1, -1]]),
        "duplicate-rows": np.array([[1, 0], [1, 0]]), "str": "ab", "bool": np.array([[True]]),
        "empty": np.zeros((0, 2), np.int64)},
       lambda v: Polynomial.from_terms(v, np.ones(np.shape(v)[0] if np.ndim(v) == 2 else 1)),
       "exponents")
family("Polynomial.from_terms-exponents-huge",
       {"1d": np.array([[10**12]]), "2d": np.array([[10**12, 0]])},
       lambda v: Polynomial.from_terms(v, [1.0])(np.zeros((1, v.shape[1]))), "exponents")
family("Polynomial.from_terms-coeffs", {"short": [], "long": [1.0, 2.0], "nan": [NAN],
                                        "str": ["a"]},
       lambda v: Polynomial.from_terms(np.array([[1, 0]]), v), "coeffs")
family("Polynomial.evaluate-x", {"wrong-dim": np.ones((3, 2)), "str": "abc",
                                 "3d": np.ones((1, 1, 1)), "none": None, "complex": [1j]},
       lambda v: P1.evaluate(v), r"\bx\b")
row("Polynomial.evaluate-x=ragged", lambda: P1.evaluate([[1.0], [1.0, 2.0]]), r"\bx\b")
family("Polynomial.evaluate-x-2d", {"1d": np.ones(3), "wrong-dim": np.ones((3, 3))},
       lambda v: CIRCLE.q.evaluate(v), r"\bx\b")
family("Polynomial.evaluate-backend", BAD_BACKENDS, lambda v: P1.evaluate([0.0], backend=v),
       "backend")
family("Rational-p-q", {"str": "x", "array": np.ones(2), "none": None},
       lambda v: Rational(P1, v), r"\bq\b")
row("Rational-dim-mismatch", lambda: Rational(P1, CIRCLE.q), "dim")
family("problems.get-name", {"unknown": "torus_4d", "int": 3, "none": None},
       lambda v: problems.get(v), "name")

# ================================================================== plots
family("plots.plot_history-source", {"list": [1, 2], "dict-no-epoch": {"q_min": [1.0]},
                                     "none": None},
       lambda v: _plots().plot_history(v), r"\bsource\b")
family("plots.plot_q_histogram-q_pool", {"nan": [NAN, 1.0], "str": ["a"], "empty": []},
       lambda v: _plots().plot_q_histogram(v), "q_pool")
family("plots.plot_q_histogram-bins", {"zero": 0, "float": 2.5},
       lambda v: _plots().plot_q_histogram(Q, bins=v), "bins")
family("plots.plot_band_fractions-counts", {"1d": np.ones(5), "str": [["a"] * 5]},
       lambda v: _plots().plot_band_fractions(v), "counts")
family("plots.plot_curriculum_timeline-stages", {"empty": [], "neg": [-1, 0], "float": [0.5]},
       lambda v: _plots().plot_curriculum_timeline(v), "stages")


def _plots():
    from zp_ref import plots
    return plots


# ================================================================== torch bridge
try:
    import torch  # noqa: F401
    HAVE_TORCH = True
except ImportError:            # pragma: no cover - CI installs torch
    HAVE_TORCH = False


def _tb():
    from zp_ref import torch_bridge
    return torch_bridge


if HAVE_TORCH:
    import torch
    # The anchor's fields without effect live only in zp_ref.compat.legacy (which imports
    # torch): checked there as the anchor checks them.
    from zp_ref.compat import legacy
    family("legacy.ImportanceSamplerConfig-resample_ratio",
           {**NONFINITE, **NOT_REAL, "above-1": 1.5, "neg": -0.5},
           lambda v: legacy.ImportanceSamplerConfig(resample_ratio=v), "resample_ratio")
    family("legacy.ActiveSamplerConfig-refinement_ratio", {"zero": 0, "float": 3.0},
           lambda v: legacy.ActiveSamplerConfig(refinement_ratio=v), "refinement_ratio")
    family("legacy.ActiveSamplerConfig-min_points_per_region", {"neg": -1, "str": "5"},
           lambda v: legacy.ActiveSamplerConfig(min_points_per_region=v),
           "min_points_per_region")
    family("torch.as_tensor-a", {"str": "abc", "list": [1.0], "object": np.array([None]),
                                 "bigendian": np.ones(2, ">f8")},
           lambda v: _tb().as_tensor(v), r"\ba\b")
    family("torch.to_numpy-t", {"list": [1.0], "str": "x"}, lambda v: _tb().to_numpy(v), r"\bt\b")
    family("torch.ImportanceWeightedSampler-q_pool",
           {"nan": np.array([NAN, 1.0]), "bool-tensor": torch.tensor([True]),
            "complex-tensor": torch.tensor([1j]), "2d-tensor": torch.ones(2, 2), "str": ["a"],
            "empty": np.array([])},
           lambda v: _tb().ImportanceWeightedSampler(v, 3), r"\bq\b|q_pool")
    family("torch.ImportanceWeightedSampler-num_samples", {**NOT_COUNT, "zero": 0},
           lambda v: _tb().ImportanceWeightedSampler(Q, v), "num_samples")
    family("torch.ImportanceWeightedSampler-config", {"dict": {}},
           lambda v: _tb().ImportanceWeightedSampler(Q, 2, config=v), "config")
    family("torch.ImportanceWeightedSampler-seed", BAD_SEEDS,
           lambda v: _tb().ImportanceWeightedSampler(Q, 2, seed=v), r"\bseed\b")

    def iws():
        s = _tb().ImportanceWeightedSampler(Q, 4, seed=2)
        list(s)
        return s

    method_family("torch.ImportanceWeightedSampler.set_epoch-epoch", NOT_COUNT,
                  lambda s, v: s.set_epoch(v), "epoch", iws)
    method_family("torch.ImportanceWeightedSampler.update_q-q",
                  {"short": np.ones(2), "nan": np.r_[Q[:-1], NAN], "str": ["a"] * 6,
                   "all-inf": np.full(6, INF)},
                  lambda s, v: s.update_q(v), r"\bq\b|normalize", iws)
    method_family("torch.ImportanceWeightedSampler.likelihood_ratio-indices",
                  {"out-of-range": np.array([6]), "neg": np.array([-1]), "float": np.array([0.5]),
                   "bool": np.array([True]), "str": "0"},
                  lambda s, v: s.likelihood_ratio(v), "indices", iws)
    row("torch.ImportanceWeightedSampler.load_state_dict-keys",
        lambda s: s.load_state_dict({"seed": 1}), "state", make=iws)
    family("torch.HybridBatchSampler-batch_size", {**NOT_COUNT, "zero": 0},
           lambda v: _tb().HybridBatchSampler(Q, v, 2), "batch_size")
    family("torch.HybridBatchSampler-num_batches", {"zero": 0, "float": 2.0},
           lambda v: _tb().HybridBatchSampler(Q, 2, v), "num_batches")
    family("torch.HybridBatchSampler-ratio", {**NONFINITE, "above-1": 1.5, "str": "0.5"},
           lambda v: _tb().HybridBatchSampler(Q, 2, 2, ratio=v), "ratio")
    family("torch.CurriculumBatchSampler-curriculum", {"str": "far-mid-near", "dict": {}},
           lambda v: _tb().CurriculumBatchSampler(Q, 2, 2, curriculum=v), "curriculum")
    row("torch.CurriculumBatchSampler-seed-with-curriculum",
        lambda: _tb().CurriculumBatchSampler(Q, 2, 2, curriculum=BandCurriculum(), seed=1), "seed")
    family("torch.CurriculumBatchSampler-q_pool", {"nan": np.r_[Q, NAN], "str": ["a"]},
           lambda v: _tb().CurriculumBatchSampler(v, 2, 2), "q_pool")

# ================================================================== dask bridge
try:
    import dask.array as da
    HAVE_DASK = True
except ImportError:            # pragma: no cover - CI installs dask
    HAVE_DASK = False


def _db():
    from zp_ref import dask_bridge
    return dask_bridge


if HAVE_DASK:
    DQ = da.from_array(Q, chunks=4)
    family("dask.importance_weights-q",
           {"numpy": Q, "2d": da.ones((2, 2)), "str": da.from_array(np.array(["a"])),
            "nan": da.from_array(np.array([NAN, 1.0]), chunks=1), "empty": da.zeros(0)},
           lambda v: _db().importance_weights(v), r"\bq\b")
    for field in ("weight_power", "min_q_abs", "max_weight", "temperature"):
        family(f"dask.importance_weights-{field}", {"nan": NAN, "str": "1"},
               lambda v, f=field: _db().importance_weights(DQ, **{f: v}), field)
    family("dask.importance_weights-normalize", {"none": None},
           lambda v: _db().importance_weights(DQ, normalize=v), "normalize")
    family("dask.importance_weights-backend", {"gpu": "gpu"},
           lambda v: _db().importance_weights(DQ, backend=v), "backend")
    family("dask.sample_indices-weights",
           {"numpy": W, "neg": da.from_array(np.array([1.0, -1.0]), chunks=1),
            "nan": da.from_array(np.array([1.0, NAN]), chunks=1), "all-zero": da.zeros(3, chunks=2),
            "empty": da.zeros(0)},
           lambda v: _db().sample_indices(v, 2, seed=0), "weights")
    family("dask.sample_indices-n", {"neg": -1, "float": 1.0},
           lambda v: _db().sample_indices(DQ, v, seed=0), r"\bn\b")
    family("dask.sample_indices-seed", {"neg": -1, "2**64": 2**64},
           lambda v: _db().sample_indices(DQ, 1, seed=v), r"\bseed\b")
    family("dask.sample_indices-replace", {"str": "no"},
           lambda v: _db().sample_indices(DQ, 1, seed=0, replace=v), "replace")
    family("dask.band_of-edges", {"decreasing": [1.0, 0.5], "nan": [NAN]},
           lambda v: _db().band_of(DQ, edges=v), "edges")
    row("dask.band_of-q-nan", lambda: _db().band_of(da.from_array(np.array([NAN]))).compute(),
        r"\bq\b.*NaN")
    family("dask.stratified_sample-mix", {"short": [0.5, 0.5], "sum<1": [0.1] * 5},
           lambda v: _db().stratified_sample(DQ, 3, mix=v, seed=0), r"\bmix\b")
    family("dask.stratified_sample-within", {"unknown": "x"},
           lambda v: _db().stratified_sample(DQ, 3, mix=MIX, seed=0, within=v), "within")
    family("dask.pool_from_npy-paths", {"no-match": "/nonexistent/*.npy", "empty-list": [],
                                        "int": 3},
           lambda v: _db().pool_from_npy(v), "paths")


# ================================================================== the test
def snapshot(obj):
    return copy.deepcopy(obj.state_dict())


def same(a, b):
    """Exact recursive equality (NaN equals NaN; arrays by dtype, shape and bits)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and a.tobytes() == b.tobytes())
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def test_case_ids_are_unique():
    ids = [p.id for p in ROWS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """An empty working folder for the whole matrix: no failing call may write into it."""
    path = tmp_path_factory.mktemp("matrix")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(path)
        yield path


@pytest.mark.parametrize("make, call, match, exc", ROWS)
def test_bad_input_is_refused_naming_the_argument(make, call, match, exc, workdir):
    obj = make() if make is not None else None
    before = snapshot(obj) if obj is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc, match=match) as info:
            call(obj) if obj is not None else call()
    err = info.value
    assert not type(err).__module__.startswith("numba"), f"a Numba error escaped: {err!r}"
    assert str(err).strip(), "the message is empty"
    if obj is not None:
        assert same(before, snapshot(obj)), "the object changed although the call failed"
    assert list(workdir.iterdir()) == [], "a failing call left files behind"


# ================================================================== accepted edge inputs
def _omit_warns():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = importance_weights(np.array([NAN, 1.0]), nan_policy="omit", backend="numpy")
    return w.tolist() == [0.0, 1.0] and any(issubclass(c.category, RuntimeWarning)
                                            for c in caught)


def _monitor_records_nan():
    m = DiagnosticMonitor(DiagnosticConfig(auto_export=False))
    m.update(0, {"loss_train": NAN})
    m.update_batch(q_min=1.0, loss=INF)
    return math.isnan(m.history["loss_train"][-1]) and m.batch_metrics["loss"][-1] == INF


def _monitor_huge_values():
    m = DiagnosticMonitor(DiagnosticConfig(auto_export=False))
    m.update_batch(np.array([8.98e307, 8.98e307]), weights=np.array([1e308, 1e308]))
    row = {k: v[-1] for k, v in m.batch_metrics.items()}
    return (row["q_mean"], row["q_std"], row["ess"], row["max_weight_share"]) == \
        (8.98e307, 0.0, 2.0, 0.5)


W_TINY = np.array([5e-324, 0.0, 5e-324])

#: Edge inputs that are valid: (label, check returning True when the exact documented
#: result comes back).
ACCEPTED = [
    ("importance_weights nan_policy='omit': NaN gets weight 0 and warns", _omit_warns),
    ("importance_weights q=+-inf: weight 0",
     lambda: importance_weights(np.array([INF, 0.5, -INF]), backend="cpu").tolist()
     == [0.0, 1.0, 0.0]),
    ("importance_weights int and float32 q are converted",
     lambda: importance_weights(np.array([1, 2]), backend="numpy").tolist()
     == importance_weights(np.array([1.0, 2.0], np.float32), backend="cpu").tolist()),
    ("importance_weights strided and big-endian q",
     lambda: importance_weights(np.arange(1.0, 7.0)[::2], backend="cpu").tolist()
     == importance_weights(np.array([1.0, 3.0, 5.0], ">f8"), backend="numpy").tolist()),
    ("importance_weights normalize=False of all-inf q gives zeros",
     lambda: importance_weights(np.array([INF]), normalize=False).tolist() == [0.0]),
    *[(f"sample_indices n=0 [{b}]",
       lambda b=b: sample_indices(W, 0, seed=0, backend=b).tolist() == []) for b in BACKENDS],
    *[(f"sample_indices subnormal total equals the oracle [{b}]",
       lambda b=b: sample_indices(W_TINY, 9, seed=3, backend=b).tolist()
       == sample_indices(W_TINY, 9, seed=3, backend="numpy").tolist()
       and set(sample_indices(W_TINY, 9, seed=3, backend=b).tolist()) <= {0, 2})
      for b in BACKENDS],
    *[(f"sample_indices -0.0 weight is zero, never drawn [{b}]",
       lambda b=b: set(sample_indices(np.array([-0.0, 1.0]), 20, seed=0, backend=b).tolist())
       == {1}) for b in BACKENDS],
    ("sample_indices seed 2**64-1 as int and numpy uint64",
     lambda: sample_indices(W, 3, seed=2**64 - 1).tolist()
     == sample_indices(W, 3, seed=np.uint64(2**64 - 1)).tolist()),
    ("kish_ess is scale-free: no overflow or underflow at 1e154, 1e-200, 1e300",
     lambda: [kish_ess([1.34e154]), kish_ess([1e-200, 1e-200]), kish_ess([1e300] * 1000)]
     == [1.0, 2.0, 1000.0]),
    ("DiagnosticMonitor statistics of |Q| and weights near float64's max stay finite",
     _monitor_huge_values),
    ("band_of empty q gives an empty int64 array",
     lambda: band_of(np.array([])).dtype == np.int64 and band_of([]).size == 0),
    ("band_of q=+-inf in the last band", lambda: band_of([INF, -INF]).tolist() == [4, 4]),
    ("stratified_sample n=0 on an empty pool",
     lambda: stratified_sample([], 0, mix=MIX, seed=0)[0].size == 0),
    ("largest_remainder n=0", lambda: largest_remainder(0, [0.5, 0.5]).tolist() == [0, 0]),
    ("singularity_prob q=+-inf gives probability 0",
     lambda: singularity_prob([INF, -INF], tau_train=0.1, beta=0.1).tolist() == [0.0, 0.0]),
    ("DeltaSchedule.get_delta q_min=inf equals no q_min",
     lambda: DeltaSchedule(adaptive_delta=True).get_delta(30, q_min=INF)
     == DeltaSchedule(adaptive_delta=True).get_delta(30)),
    ("DiagnosticMonitor records a NaN/inf metric as observed (a diverged loss)",
     _monitor_records_nan),
    ("Polynomial evaluates NaN x to NaN (IEEE)", lambda: math.isnan(P1.evaluate([NAN])[0])),
    ("ActiveSampler input_dim=6, the top of 1..6",
     lambda: ActiveSampler(ActiveSamplerConfig(initial_grid_size=1, grid_bounds=(0.0, 1.0),
                                               max_refinement_level=1, max_grid_points=200),
                           q=lambda x: x.sum(axis=1) - 0.5, input_dim=6).leaves()["lo"].shape[1]
     == 6),
]


@pytest.mark.parametrize("label, check", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_edge_input(label, check):
    assert check() is True, label


def test_matrix_size():
    """The counts quoted in docs/reliability.md (update both together): 1441 rows with
    the torch and dask bridges installed (81 and 34 of them), 26 accepted edge inputs."""
    expected = 1441 - (0 if HAVE_TORCH else 81) - (0 if HAVE_DASK else 34)
    assert (len(ROWS), len(ACCEPTED)) == (expected, 26)
