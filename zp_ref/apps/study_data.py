"""The training study's data: training pools and the band-stratified test set (see
:mod:`zp_ref.apps.study`). ``cfg`` is a :class:`zp_ref.apps.study.StudyConfig`.

Random numbers come from :mod:`zp_ref.rng`: streams ``pool`` (16) and ``test_set`` (18).
"""
from __future__ import annotations

import numpy as np

from ..bands import DEFAULT_EDGES, band_of
from ..rng import STREAMS, uniforms
from .study_model import Target
from .study_report import BANDS, TEST_RANGES

__all__ = ["POOL_STREAM", "TEST_STREAM", "test_set", "training_pool"]

POOL_STREAM, TEST_STREAM = STREAMS["pool"], STREAMS["test_set"]


def _box(target: Target, u: np.ndarray) -> np.ndarray:
    lo = np.array([b[0] for b in target.bounds])
    hi = np.array([b[1] for b in target.bounds])
    return lo + (hi - lo) * u


def _uniform_points(target: Target, n: int, seed: int, stream: int, start: int = 0):
    d = target.dim
    u = uniforms(seed, stream, n * d, start=start * d, backend="numpy").reshape(n, d)
    return _box(target, u)


def _points_at_level(target: Target, c: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Newton steps along grad Q from points on Q = 0 to Q = c (c small), (n, dim)."""
    x = start.copy()
    for _ in range(30):
        _, q = target.evaluate(x)
        g = target.q_gradient(x)
        x = x - ((q - c) / np.einsum("ij,ij->i", g, g))[:, None] * g
        if np.all(np.abs(target.evaluate(x)[1] - c) <= 1e-9 * np.abs(c)):
            break
    return x


def test_set(target: Target, cfg, seed: int = 0) -> dict:
    """Test points per band and uniform ones, with targets: {"B0": (x, y), ...,
    "uniform": (x, y)}. Bands B0..B3: |Q| log-uniform in TEST_RANGES with a random sign,
    reached by Newton steps from a random point of the pole set; B4: uniform points
    with |Q| > 1e-2 (rejection). The band of every point is checked."""
    n = cfg.test_per_band
    u = uniforms(seed, TEST_STREAM, 3 * n * 4, backend="numpy").reshape(4, 3, n)
    out = {}
    for b, (lo, hi) in enumerate(TEST_RANGES):
        mag = np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * u[b, 0])
        c = np.where(u[b, 1] < 0.5, -mag, mag)
        x = _points_at_level(target, c, target.pole_points(u[b, 2]))
        out[BANDS[b]] = x
    far, start = [], 12 * n
    while sum(len(f) for f in far) < n:
        x = _uniform_points(target, 4 * n, seed, TEST_STREAM, start)
        start += 4 * n
        far.append(x[np.abs(target.evaluate(x)[1]) > DEFAULT_EDGES[-1]])
    out[BANDS[-1]] = np.concatenate(far)[:n]
    x = _uniform_points(target, cfg.test_uniform, seed, TEST_STREAM, start)
    out["uniform"] = x[np.abs(target.evaluate(x)[1]) >= cfg.q_floor]
    result = {}
    for name, x in out.items():
        y, q = target.evaluate(x)
        if name != "uniform":
            band = band_of(q, DEFAULT_EDGES, backend="numpy")
            if not (band == BANDS.index(name)).all() or not (np.abs(q) >= cfg.q_floor).all():
                raise RuntimeError(f"test points of {name} left their band")  # a bug, not input
        result[name] = (x, y)
    return result


def training_pool(target: Target, method: str, cfg, seed: int):
    """Pool points x (n, dim), targets y, Q values q; |Q| >= q_floor and y finite."""
    if method == "active":
        from ..refinement import ActiveSampler, ActiveSamplerConfig
        d = target.dim
        sampler = ActiveSampler(ActiveSamplerConfig(
            initial_grid_size=cfg.initial_grid[d - 1], grid_bounds=target.bounds,
            max_refinement_level=cfg.active_levels[d - 1], criterion="sign",
            max_grid_points=cfg.active_max_points), q=target.q, input_dim=d).refine()
        x = sampler.sample(cfg.pool_size, seed=seed, weighting="leaf")
    else:
        x = _uniform_points(target, cfg.pool_size, seed, POOL_STREAM)
    y, q = target.evaluate(x)
    keep = (np.abs(q) >= cfg.q_floor) & np.isfinite(y)
    return x[keep], y[keep], q[keep]


