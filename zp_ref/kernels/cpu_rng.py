"""Numba CPU kernel for blocks of counter-based uniforms."""
import numpy as np
from numba import njit, prange

from .cache_loading import load_cached_without_compiler
from .counter_rng import uniform_at


@njit(parallel=True, cache=True)
def fill_uniforms(key, start, out):
    """out[i] = u at counter start + i of the stream with ``key`` (uint64)."""
    for i in prange(out.size):
        out[i] = uniform_at(key, start + np.uint64(i))


load_cached_without_compiler(globals())   # cache loads skip Numba's compiler setup
