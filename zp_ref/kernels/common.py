"""Constants and scalars shared by the CPU and CUDA kernels (and by the API modules
that drive them): the prefix-sum block, the refinement criteria codes, the rounding
constants of the certified enclosure, the flag of the sampled criteria, and whether
numba.cuda runs under its simulator."""
import numba
from numba import njit

#: Entries per block of the prefix sums that define the draws (sampling.prefix_sums).
PREFIX_BLOCK = 512
#: Refinement criteria codes, in the order of ``zp_ref.refinement.CRITERIA``.
CRIT_ABS, CRIT_SIGN, CRIT_ABS_OR_SIGN, CRIT_INTERVAL = range(4)
#: Inflation of a cell's half-width so that [c - r, c + r] covers [lo, hi] despite rounding.
RADIUS_INFLATE = 1.0 + 2.0 ** -50
#: Unit roundoff of float64 (the error bound of the certified enclosure).
UNIT_ROUNDOFF = 2.0 ** -53


@njit(cache=True)
def simple_flag(crit, sign, small):
    """Flag of a cell under the sampled criteria (abs, sign, abs_or_sign) from whether
    its evaluated points change sign (or hit 0) and whether one has |Q| < threshold.
    The numba.cuda kernels call it as a device function."""
    if crit == CRIT_ABS:
        return small
    if crit == CRIT_SIGN:
        return sign
    return sign or small


def cuda_simulated() -> bool:
    """True when numba.cuda runs under its CUDA simulator (NUMBA_ENABLE_CUDASIM=1)."""
    return bool(numba.config.ENABLE_CUDASIM)
