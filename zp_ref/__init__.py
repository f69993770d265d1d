"""zp_ref: the reference implementation of near-pole sampling, refinement and
curriculum for rational models y = P(x)/Q(x).

Every result is a deterministic function of (inputs, config, seed); the NumPy
backend is the oracle, Numba CPU and numba.cuda kernels reproduce it exactly.
"""
from importlib import import_module

__version__ = "0.1.0"

#: public name -> defining module (imported on first use, so ``import zp_ref`` is
#: fast and never pulls in matplotlib, torch or dask).
_EXPORTS = {
    "u": "rng", "uniforms": "rng", "derive_seed": "rng", "call_seed": "rng",
    "importance_weights": "weighting", "singularity_prob": "weighting",
    "ema_update": "weighting", "sampling_weights": "weighting",
    "sample_indices": "sampling", "uniform_indices": "sampling",
    "hybrid_indices": "sampling", "prefix_sums": "sampling", "kish_ess": "sampling",
    "ImportanceSampler": "sampling", "ImportanceSamplerConfig": "sampling",
    "DEFAULT_EDGES": "bands", "band_of": "bands", "band_counts": "bands",
    "stratified_sample": "bands", "largest_remainder": "bands",
    "DeltaSchedule": "schedule",
    "CurriculumConfig": "curriculum", "CurriculumScheduler": "curriculum",
    "BandCurriculum": "curriculum", "default_stages": "curriculum",
    "save_state": "state", "load_state": "state",
    "DiagnosticMonitor": "diagnostics", "DiagnosticConfig": "diagnostics",
    "QMinWarning": "diagnostics",
    "IntegratedSampler": "integrated", "SamplingStrategy": "integrated",
    "create_integrated_sampler": "integrated",
    "Polynomial": "rational", "Rational": "rational",
    "ActiveSampler": "refinement", "ActiveSamplerConfig": "refinement",
}
#: public submodules reachable as attributes (``zp_ref.problems``)
_SUBMODULES = ("problems",)


def __getattr__(name):
    if name in _SUBMODULES:
        value = import_module(f"{__name__}.{name}")
        globals()[name] = value
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zp_ref' has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))


__all__ = sorted(_EXPORTS) + list(_SUBMODULES)
