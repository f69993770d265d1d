"""Per-batch statistics of the diagnostics, pure functions of their arrays: tag counts,
|Q| statistics, weight statistics (Kish ESS) and gradient norms near and far from poles
(used by :class:`zp_ref.diagnostics.DiagnosticMonitor`, re-exported there)."""
from __future__ import annotations

import math
import numbers

import numpy as np

from ._validation import as_float_array

__all__ = ["TAG_NAMES", "tag_counts", "q_statistics", "weight_statistics",
           "gradient_statistics"]

TAG_NAMES = ("REAL", "PINF", "NINF", "PHI")


def tag_counts(tags) -> np.ndarray:
    """Counts of REAL, PINF, NINF, PHI (int64 (4,)). ``tags``: ints 0..3, names
    (case-insensitive) or enum members whose ``.name`` is one of those."""
    if isinstance(tags, (str, bytes)) or not hasattr(tags, "__iter__"):
        raise TypeError(f"tags must be a sequence (n,) of ints 0..3 or names "
                        f"{list(TAG_NAMES)}, got {type(tags).__name__} {tags!r:.40}")
    arr = None if isinstance(tags, (list, tuple)) else np.asarray(tags)
    if arr is not None and arr.ndim != 1:
        raise ValueError(f"tags must be 1-D (one tag per sample), got shape {arr.shape}")
    if arr is not None and arr.dtype.kind in "iu":        # NumPy / torch integer arrays
        codes = arr
    else:
        codes = []
        for i, t in enumerate(tags):
            name = getattr(t, "name", None) if not isinstance(t, str) else t
            if isinstance(name, str) and name.upper() in TAG_NAMES:
                codes.append(TAG_NAMES.index(name.upper()))
            elif isinstance(t, (numbers.Integral, np.integer)) and \
                    not isinstance(t, (bool, np.bool_)):
                codes.append(int(t))
            else:
                raise ValueError(f"tags[{i}] must be an int 0..3 or one of {list(TAG_NAMES)}, "
                                 f"got {t!r}")
        codes = np.asarray(codes, dtype=np.int64)
    bad = (codes < 0) | (codes > 3)
    if bad.any():
        raise ValueError(f"tags must be ints 0..3 (REAL, PINF, NINF, PHI); "
                         f"{int(bad.sum())} outside, first {codes[bad][0]}")
    return np.bincount(codes.astype(np.int64), minlength=4)


def q_statistics(q, near: float, far: float, edges) -> dict:
    """Statistics of |q| for one batch: q_min, q_mean, q_std (ddof=1 as torch.std, 0
    for one value), near_pole_ratio (|q| < near), far_ratio (|q| > far), band_counts."""
    from .bands import band_counts
    a = np.abs(q)
    counts = band_counts(q, edges)
    mean, std = _mean_std(a)
    if not (math.isfinite(mean) and math.isfinite(std)) and np.isfinite(a).all():
        top = float(a.max())                    # finite |q| near float64's max: rescale
        mean, std = (top * v for v in _mean_std(a / top))
    return {"q_min": float(a.min()), "q_mean": mean, "q_std": std,
            "near_pole_ratio": float((a < near).mean()), "far_ratio": float((a > far).mean()),
            "band_counts": [int(c) for c in counts]}


def _mean_std(a):
    """(mean, std with ddof=1; 0 for one value); an infinite |q| gives mean inf, std NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(a.mean()), (float(a.std(ddof=1)) if a.size > 1 else 0.0)


def weight_statistics(w) -> dict:
    """Kish ESS = (sum w)^2 / sum w^2, ESS / n and the largest share max(w) / sum(w)."""
    from .sampling import kish_ess
    ess = float(kish_ess(w))
    top = float(w.max())
    with np.errstate(over="ignore"):
        total = float(w.sum())
    share = top / total if math.isfinite(total) else 1.0 / float((w / top).sum())
    return {"ess": ess, "ess_fraction": ess / w.size, "max_weight_share": share}


def gradient_statistics(gradients: dict, q_abs, near: float, far: float, percentiles) -> dict:
    """Per-sample gradient norm (|g| for (n,), Euclidean over the last axis for (n, k)),
    averaged over the named parameters; mean/max near and far from poles, their ratio
    (None when either side is empty or the far mean is 0) and percentiles of all norms."""
    norms = []
    for name, g in gradients.items():
        if g is None:
            continue
        g = as_float_array(g, f"gradients[{name!r}]", ndim=(1, 2))
        if g.shape[0] != q_abs.size:
            raise ValueError(f"gradients[{name!r}] has {g.shape[0]} rows, q_values has "
                             f"{q_abs.size}; they must match")
        norms.append(np.abs(g) if g.ndim == 1 else np.linalg.norm(g, axis=1))
    if not norms:
        return {}
    norm = np.mean(norms, axis=0)
    out = {}
    for side, mask in (("near_pole", q_abs < near), ("far_pole", q_abs > far)):
        out[f"{side}_mean"] = float(norm[mask].mean()) if mask.any() else None
        out[f"{side}_max"] = float(norm[mask].max()) if mask.any() else None
    nm, fm = out["near_pole_mean"], out["far_pole_mean"]
    out["gradient_ratio"] = nm / fm if nm is not None and fm else None
    out["percentiles"] = [float(v) for v in np.percentile(norm, percentiles)] if percentiles else []
    return out
