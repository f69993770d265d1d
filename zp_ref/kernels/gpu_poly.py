"""numba.cuda twins of :mod:`zp_ref.kernels.cpu_poly` (imported only for backend="cuda").

Products and sums go through libdevice ``dmul_rn`` / ``dadd_rn``, which the compiler
never fuses into a multiply-add, so the device computes the same bits as the CPU
(the CUDA simulator has no libdevice; there plain ``*`` and ``+`` are the same thing).
Powers live in a per-thread local array: at most ``MAX_DIM`` variables and
``MAX_AXIS_DEGREE`` per variable."""
import numpy as np
from numba import cuda
from numba.cuda import libdevice

from .common import cuda_simulated
from .gpu_launch import grid_stride_shape

MAX_DIM = 6
MAX_AXIS_DEGREE = 32
#: Columns of a powers array x**0 .. x**MAX_AXIS_DEGREE (a literal for cuda.local.array).
POW_WIDTH = 33


if cuda_simulated():
    @cuda.jit(device=True, inline=True)
    def mul(a, b):
        return a * b

    @cuda.jit(device=True, inline=True)
    def add(a, b):
        return a + b
else:
    @cuda.jit(device=True, inline=True)
    def mul(a, b):
        return libdevice.dmul_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def add(a, b):
        return libdevice.dadd_rn(a, b)


@cuda.jit(device=True)
def horner_at(coeffs, x):
    acc = coeffs[coeffs.size - 1]
    for i in range(coeffs.size - 2, -1, -1):
        acc = add(mul(acc, x), coeffs[i])
    return acc


@cuda.jit(device=True)
def fill_powers(pw, a, x, emax):
    pw[a, 0] = 1.0
    for j in range(1, emax + 1):
        pw[a, j] = mul(pw[a, j - 1], x)


@cuda.jit(device=True)
def terms_at(exponents, coefficients, pw):
    acc = 0.0
    for t in range(coefficients.size):
        prod = coefficients[t]
        for a in range(exponents.shape[1]):
            prod = mul(prod, pw[a, exponents[t, a]])
        acc = add(acc, prod)
    return acc


@cuda.jit
def _horner_kernel(coeffs, x, out):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, stride):
        out[i] = horner_at(coeffs, x[i])


@cuda.jit
def _terms_kernel(exponents, coefficients, max_exponents, x, out):
    pw = cuda.local.array((MAX_DIM, POW_WIDTH), np.float64)
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.shape[0], stride):
        for a in range(x.shape[1]):
            fill_powers(pw, a, x[i, a], max_exponents[a])
        out[i] = terms_at(exponents, coefficients, pw)


def check_supported(poly) -> None:
    """Refuse polynomials beyond the local-array limits of the device kernels."""
    if poly.dim > 1 and int(poly.max_exponents.max()) > MAX_AXIS_DEGREE:
        raise ValueError(f"backend='cuda' evaluates polynomials of degree <= {MAX_AXIS_DEGREE} "
                         f"in each variable; this one has max_exponents "
                         f"{poly.max_exponents.tolist()} (use backend='cpu')")


def evaluate(poly, pts: np.ndarray) -> np.ndarray:
    """Q at host points (n, dim) on the device; returns float64 (n,) on the host."""
    check_supported(poly)
    n = pts.shape[0]
    if n == 0:
        return np.empty(0)
    d_out = cuda.device_array(n, dtype=np.float64)
    if poly.dim == 1:
        x = cuda.to_device(np.ascontiguousarray(pts[:, 0]))
        _horner_kernel[grid_stride_shape(n)](cuda.to_device(poly.coefficients), x, d_out)
    else:
        e, c, m = poly.kernel_arrays()
        _terms_kernel[grid_stride_shape(n)](cuda.to_device(e), cuda.to_device(c),
                                            cuda.to_device(m), cuda.to_device(pts), d_out)
    return d_out.copy_to_host()
