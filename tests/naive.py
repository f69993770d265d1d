"""Naive references in plain Python (ints and floats, loops): slow, obviously
right, independent of NumPy and Numba. Every fast path is checked against these on
small inputs (the STUMPY convention)."""
import bisect
import math

MASK = 2**64 - 1
GAMMA = 0x9E3779B97F4A7C15
BLOCK = 512                      # zp_ref.kernels.cpu_sampling.PREFIX_BLOCK


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def u(seed, stream, j):
    key = mix64((mix64(seed) + (stream + 1) * GAMMA) & MASK)
    return (mix64((key + (j + 1) * GAMMA) & MASK) >> 11) * 2.0**-53


def importance_weights(q, p, min_q_abs, max_weight, temperature):
    w = []
    for x in q:
        if math.isinf(x):
            w.append(0.0)
            continue
        v = min(1.0 / max(abs(x), min_q_abs) ** p, max_weight)
        w.append(v ** (1.0 / temperature) if temperature != 1.0 else v)
    s = math.fsum(w)
    return [v / s for v in w]


def prefix_sums(w):
    """Blocks of BLOCK entries summed left to right; block ends added left to right."""
    C, end = [], 0.0
    for lo in range(0, len(w), BLOCK):
        local = 0.0
        for x in w[lo:lo + BLOCK]:
            local += x
            C.append(end + local)
        end = end + local
    return C


def sample_with_replacement(w, n, seed):
    C = prefix_sums(w)
    last_positive = max(i for i, x in enumerate(w) if x > 0)
    return [min(bisect.bisect_right(C, u(seed, 0, j) * C[-1]), last_positive)
            for j in range(n)]


def sample_without_replacement(w, n, seed):
    keyed = [(math.log(x) - math.log(-math.log(u(seed, 1, i))) if u(seed, 1, i) > 0
              else -math.inf, -i) for i, x in enumerate(w) if x > 0]
    return [-neg_i for _, neg_i in sorted(keyed, reverse=True)[:n]]


def uniform_indices(pool_size, n, seed):
    return [min(int(math.floor(u(seed, 2, j) * pool_size)), pool_size - 1) for j in range(n)]
