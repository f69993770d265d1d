"""Active refinement: a 2**d-tree over a box that localises the zeros of Q (the poles
of P/Q) and draws new points near them. See docs/refinement.md.

Modules: ``config`` (ActiveSamplerConfig), ``tree`` (lattice, tree arrays, state's tree
part), ``engine`` (the Engine protocol, the round driver, cap selection, Q handling),
``oracle`` (the numpy engine), ``cpu`` / ``cuda`` (drivers of the Numba and numba.cuda
kernels), ``sampler`` (ActiveSampler: ``ask()``/``tell()``; ``refine()`` runs them).
"""
from .config import CRITERIA, WEIGHTINGS, ActiveSamplerConfig
from .sampler import ActiveSampler, EnclosureOverflowWarning

#: Public home of the classes (saved state files name "zp_ref.refinement.ActiveSampler").
ActiveSampler.__module__ = ActiveSamplerConfig.__module__ = __name__
EnclosureOverflowWarning.__module__ = __name__

__all__ = ["ActiveSampler", "ActiveSamplerConfig", "CRITERIA", "EnclosureOverflowWarning",
           "WEIGHTINGS"]
