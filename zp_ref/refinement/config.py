"""Configuration of :class:`~zp_ref.refinement.ActiveSampler`: a frozen dataclass whose
fields are validated when it is built (lengths per axis are checked against the input
dimension when a sampler is built from it)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .._validation import check_choice, check_count, check_real

CRITERIA = ("abs", "sign", "abs_or_sign", "interval")
WEIGHTINGS = ("volume", "leaf", "importance")
#: max_grid_points must stay below this (point ids are int32).
MAX_GRID_POINTS = 2 ** 31
#: The anchor's fields that had no effect here (the tree always halves every axis):
#: gone from the config; states that still hold them load (the values are dropped) and
#: :mod:`zp_ref.compat.legacy` accepts them.
REMOVED_FIELDS = ("refinement_ratio", "min_points_per_region")


@dataclass(frozen=True)
class ActiveSamplerConfig:
    """Configuration of :class:`ActiveSampler` (the anchor's fields that take effect,
    plus ``criterion``).

    Every field is checked here (ValueError/TypeError naming it); a sampler then checks
    per-axis lengths against its ``input_dim``.

    Parameters
    ----------
    initial_grid_size : int or sequence of int, default 100
        Cells per axis at level 0 (one int, or one per axis).
    grid_bounds : (float, float) or sequence of (float, float), default (-3.0, 3.0)
        One (lo, hi) for every axis, or one pair per axis.
    refinement_threshold : float, default 0.1
        |Q| below which ``abs`` flags a cell (also "near pole" in the statistics).
    max_refinement_level : int, default 5
        Deepest level a cell may reach (0 = no splitting).
    adapt_frequency : int, default 10
        Epochs between refinements for callers (:meth:`ActiveSampler.should_adapt`).
    max_grid_points : int, default 10000
        Cap on the number of evaluated points (< 2**31).
    criterion : {"abs_or_sign", "abs", "sign", "interval"}, default "abs_or_sign"
        Which cells split (docs/refinement.md).
    """
    initial_grid_size: object = 100
    grid_bounds: object = (-3.0, 3.0)
    refinement_threshold: float = 0.1
    max_refinement_level: int = 5
    adapt_frequency: int = 10
    max_grid_points: int = 10000
    criterion: str = "abs_or_sign"

    def __post_init__(self):
        per_axis_ints(self.initial_grid_size, None)
        per_axis_bounds(self.grid_bounds, None)
        check_real(self.refinement_threshold, "refinement_threshold", low=0.0, low_open=True)
        check_count(self.max_refinement_level, "max_refinement_level")
        check_count(self.adapt_frequency, "adapt_frequency", minimum=1)
        if check_count(self.max_grid_points, "max_grid_points", minimum=1) >= MAX_GRID_POINTS:
            raise ValueError(f"max_grid_points must be < 2**31, got {self.max_grid_points}")
        check_choice(self.criterion, "criterion", CRITERIA)

    def to_dict(self) -> dict:
        out = asdict(self)
        for k in ("initial_grid_size", "grid_bounds"):
            v = out[k]
            out[k] = [list(p) if isinstance(p, (tuple, list)) else p for p in v] \
                if isinstance(v, (tuple, list)) else v
        return out


def _shape_of(value):
    """Shape of ``value`` as a nested sequence (None when ragged)."""
    try:
        return np.array(value, dtype=object).shape
    except Exception:  # ragged nested sequences
        return None


def per_axis_ints(value, d) -> np.ndarray:
    """``initial_grid_size`` as int64 (d,): one int for every axis, or d ints (>= 1);
    ``d=None`` accepts any number of axes (the config's own check)."""
    if not isinstance(value, (tuple, list, np.ndarray)):
        vals = [value] * (1 if d is None else d)            # a scalar: checked below
    elif len(value) == d or (d is None and len(value) > 0):
        vals = list(value)
    else:
        axes = "one int per axis" if d is None else f"{d} ints (one per axis)"
        raise ValueError(f"initial_grid_size must be an int or {axes}, got {value!r}")
    return np.array([check_count(v, "initial_grid_size", minimum=1) for v in vals], np.int64)


def per_axis_bounds(value, d) -> tuple:
    """``grid_bounds`` as (lo (d,), hi (d,)): one (lo, hi) pair for every axis, or d pairs,
    each with lo < hi and a finite width; ``d=None`` accepts any number of pairs."""
    shape = _shape_of(value)
    if shape == (2,):
        pairs = [tuple(value)] * (1 if d is None else d)
    elif shape is not None and len(shape) == 2 and shape[0] > 0 and shape[1] == 2 \
            and (d is None or shape[0] == d):
        pairs = [tuple(p) for p in value]
    else:
        axes = "one pair per axis" if d is None else f"{d} pairs (one per axis)"
        raise ValueError(f"grid_bounds must be one (lo, hi) pair or {axes}, got {value!r}")
    lo = np.array([check_real(p[0], f"grid_bounds[{a}][0]") for a, p in enumerate(pairs)])
    hi = np.array([check_real(p[1], f"grid_bounds[{a}][1]") for a, p in enumerate(pairs)])
    for a in range(lo.size):
        if not lo[a] < hi[a] or not np.isfinite(hi[a] - lo[a]):
            raise ValueError(f"grid_bounds on axis {a} must satisfy lo < hi with a finite "
                             f"width, got ({lo[a]}, {hi[a]})")
    return lo, hi
