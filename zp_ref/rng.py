"""Counter-based random numbers: the j-th uniform of stream s under seed k is a
pure function ``u(k, s, j)`` in [0, 1).

Definition (SplitMix64 evaluated at a counter; see docs/sampling.md)::

    mix64(z)      = SplitMix64 finaliser (xor-shift 30, *0xBF58476D1CE4E5B9,
                    xor-shift 27, *0x94D049BB133111EB, xor-shift 31), mod 2**64
    key(k, s)     = mix64(mix64(k) + (s + 1) * GAMMA)          GAMMA = 0x9E3779B97F4A7C15
    raw64(k, s, j)= mix64(key(k, s) + (j + 1) * GAMMA)
    u(k, s, j)    = (raw64(k, s, j) >> 11) * 2**-53            (53-bit mantissa)

The ``@njit`` scalar functions (``mix64``, ``stream_key``, ``raw64_at``, ``uniform_at``,
defined in :mod:`zp_ref.kernels.counter_rng` and re-exported here) are called by the
Numba CPU kernels and, as device functions, by the numba.cuda kernels; the ``*_numpy``
twins below apply the same operations to uint64 arrays for the NumPy oracle. Tests
assert identical bits.
"""
from __future__ import annotations

import numpy as np

from ._validation import check_count, check_seed
from .kernels.counter_rng import (GAMMA, MIX1, MIX2, ONE, SHIFT11, SHIFT27, SHIFT30,  # noqa: F401
                                 SHIFT31, TWO_POW_M53, mix64, raw64_at, stream_key,
                                 uniform_at)

#: Every stream number zp_ref and its apps, benchmarks, notebooks and docs use
#: (documented in docs/sampling.md). 0..15: the library's draws; >= 16: callers' data.
STREAMS = {
    "importance": 0,      # sample_indices with replacement
    "without_replacement": 1,  # Efraimidis-Spirakis keys
    "uniform": 2,         # uniform_indices
    "shuffle": 3,         # hybrid batch shuffle
    "leaf_point": 5,      # coordinates of points drawn inside refinement leaves
    "model_growth": 6,    # new pool points of the model-driven learner (zp_ref.model_driven)
    "pool": 16,           # callers' pools: bench Q pools, the study's training pool, examples
    "model_init": 17,     # initial parameters of the study's and notebooks' models
    "test_set": 18,       # the study's test points and true pole points
    "chunked_pool": 20,   # pools written in chunks (the dask benchmark and docs/scale.md)
    "derive": 2**63,      # derive_seed
}


def mix64_numpy(z):
    """``mix64`` on uint64 scalars or arrays (arithmetic wraps mod 2**64)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> SHIFT30)) * MIX1
        z = (z ^ (z >> SHIFT27)) * MIX2
        return z ^ (z >> SHIFT31)


def key_of(seed: int, stream: int) -> np.uint64:
    """``stream_key(seed, stream)`` as a NumPy uint64."""
    with np.errstate(over="ignore"):
        return mix64_numpy(mix64_numpy(np.uint64(seed)) + (np.uint64(stream) + ONE) * GAMMA)


def raw64_numpy(key, j):
    """``raw64_at`` on a uint64 key and uint64 counters (scalar or array)."""
    with np.errstate(over="ignore"):
        return mix64_numpy(key + (j + ONE) * GAMMA)


def uniform_numpy(key, j):
    """``uniform_at`` on a uint64 key and uint64 counters: float64."""
    return (raw64_numpy(key, j) >> SHIFT11).astype(np.float64) * TWO_POW_M53


def u(seed: int, stream: int, j: int) -> float:
    """The single uniform u(seed, stream, j) in [0, 1).

    Parameters
    ----------
    seed, stream, j : int
        Integers in [0, 2**64): the seed, the stream (0..15 belong to zp_ref, see
        ``STREAMS``) and the counter.

    Returns
    -------
    float
        A multiple of 2**-53 in [0, 1).
    """
    seed = check_seed(seed)
    stream = check_seed(stream, "stream")
    j = check_seed(j, "j")
    return float(uniform_numpy(key_of(seed, stream), np.uint64(j)))


#: The most draws one call returns: an int64 or float64 array of n entries needs
#: n * 8 <= 2**63 - 1 bytes, the largest array NumPy can describe.
MAX_DRAWS = 2**60 - 1


def check_draw_count(n, name: str = "n") -> int:
    """A count of draws: an integer in [0, MAX_DRAWS] (TypeError/ValueError otherwise)."""
    n = check_count(n, name)
    if n > MAX_DRAWS:
        raise ValueError(f"{name} must be at most 2**60 - 1 (the largest int64/float64 array "
                         f"NumPy can hold has 2**63 - 1 bytes), got {n}")
    return n


def _uniforms_numpy(key: np.uint64, start: int, n: int) -> np.ndarray:
    return uniform_numpy(key, np.arange(n, dtype=np.uint64) + np.uint64(start))


def uniforms(seed, stream, n, *, start=0, backend="auto") -> np.ndarray:
    """``u(seed, stream, j)`` for ``j = start .. start+n-1``.

    Parameters
    ----------
    seed, stream : int
        Integers in [0, 2**64).
    n : int
        Number of uniforms, >= 0.
    start : int, default 0
        First counter; ``start + n <= 2**64``.
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.

    Returns
    -------
    numpy.ndarray
        float64, shape (n,), in [0, 1).
    """
    from .backends import resolve_backend

    seed = check_seed(seed)
    stream = check_seed(stream, "stream")
    n = check_draw_count(n, "n")
    start = check_seed(start, "start")
    if start + n > 2**64:
        raise ValueError(f"start + n must be <= 2**64, got {start} + {n}")
    key = key_of(seed, stream)
    backend = resolve_backend(backend, n)
    if backend == "numpy":
        return _uniforms_numpy(key, start, n)
    out = np.empty(n, dtype=np.float64)
    if backend == "cpu":
        from .kernels import threads_for
        from .kernels.cpu_rng import fill_uniforms
        with threads_for(n):
            fill_uniforms(key, np.uint64(start), out)
    else:
        from .kernels.gpu_rng import uniforms_gpu
        out = uniforms_gpu(key, start, n)
    return out


def derive_seed(seed: int, index: int) -> int:
    """The ``index``-th seed derived from ``seed``: raw64(seed, 2**63, index).

    Parameters
    ----------
    seed, index : int
        Integers in [0, 2**64).

    Returns
    -------
    int
        A seed in [0, 2**64).
    """
    seed = check_seed(seed)
    index = check_seed(index, "index")
    return int(raw64_numpy(key_of(seed, STREAMS["derive"]), np.uint64(index)))


def call_seed(seed: int, call: int, part: int | None = None) -> int:
    """Seed of call ``call`` of a stateful sampler.

    ``derive_seed(seed, call)``; for one ``part`` of a sampler that draws from several
    (IntegratedSampler's uniform part 1 and tree part 2),
    ``derive_seed(derive_seed(seed, part), call)``.

    Parameters
    ----------
    seed : int
        The sampler's seed, in [0, 2**64).
    call : int
        The call number (0, 1, ...).
    part : int or None, default None
        The part of the sampler, or None for a sampler with one part.

    Returns
    -------
    int
        The seed of that call, in [0, 2**64).
    """
    if part is not None:
        seed = derive_seed(seed, part)
    return derive_seed(seed, call)
