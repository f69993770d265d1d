"""Active refinement: a 2**d-tree over a box that localises the zeros of Q (the poles
of P/Q) and draws new points near them. See docs/refinement.md."""
from .sampler import CRITERIA, WEIGHTINGS, ActiveSampler, ActiveSamplerConfig

__all__ = ["ActiveSampler", "ActiveSamplerConfig", "CRITERIA", "WEIGHTINGS"]
