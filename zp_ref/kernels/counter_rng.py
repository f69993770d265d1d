"""The counter-based generator as ``@njit`` scalars (uint64 arithmetic, mod 2**64):
called by the Numba CPU kernels and, as device functions, by the numba.cuda kernels.
The definition and its NumPy twins live in :mod:`zp_ref.rng` (docs/sampling.md)."""
import numpy as np
from numba import njit

GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
ONE = np.uint64(1)
SHIFT11, SHIFT27, SHIFT30, SHIFT31 = (np.uint64(s) for s in (11, 27, 30, 31))
TWO_POW_M53 = 2.0 ** -53


@njit(cache=True)
def mix64(z):
    """SplitMix64 finaliser: a bijection of uint64 with full avalanche."""
    z = (z ^ (z >> SHIFT30)) * MIX1
    z = (z ^ (z >> SHIFT27)) * MIX2
    return z ^ (z >> SHIFT31)


@njit(cache=True)
def stream_key(seed, stream):
    """Key of stream ``stream`` under ``seed`` (both uint64)."""
    return mix64(mix64(seed) + (stream + ONE) * GAMMA)


@njit(cache=True)
def raw64_at(key, j):
    """64 random bits at counter ``j`` of the stream with key ``key``."""
    return mix64(key + (j + ONE) * GAMMA)


@njit(cache=True)
def uniform_at(key, j):
    """The uniform in [0, 1) at counter ``j`` of the stream with key ``key``."""
    return (raw64_at(key, j) >> SHIFT11) * TWO_POW_M53
