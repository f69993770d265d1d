"""Where a model-driven refresh puts its new labelled points (``label_budget > 0``).

The rules of :class:`zp_ref.model_driven_config.ModelDrivenConfig`'s ``growth``:

- ``"uniform"``: uniform points of the data's box (the control);
- ``"model"``: around the highest-loss pool points and inside the refined cells of the
  model's Q (:func:`around_rows`, :func:`in_cells`);
- ``"poles"``: around the highest-loss pool points and at the target's own poles, found
  from the labels: a pole of odd order is a sign change of y between neighbouring points
  where ``|y|`` is large at both ends (:func:`pole_brackets`). Each bracket is cut into
  ``BISECT_POINTS + 1`` equal parts (the bracket of the next refresh is one of them) and
  the rest of its points go on both sides of it at distances log-uniform in
  ``[LADDER_RANGE[0] h, LADDER_RANGE[1] h]`` (h the pool spacing) along the bracket
  (:func:`at_brackets`): every decade of distance to the pole gets points, as the |Q|
  bands B0-B3 need, without the true Q.

The same brackets give the distance signal of ``q_signal="labels"`` (:func:`pole_distances`):
draws near the data's poles on a fixed pool, without the model's Q or new labels.

Pure NumPy (and scipy's cKDTree in d > 1); the draws are the caller's uniforms.
"""
from __future__ import annotations

import numpy as np

from ._validation import as_float_array

__all__ = ["BISECT_POINTS", "LADDER_RANGE", "FIRST_ROWS", "SIGNAL_BRACKETS", "around_rows",
           "in_cells", "pole_brackets", "at_brackets", "bracket_centres", "distance_to",
           "pole_distances", "label_pole_distance", "pool_geometry"]

#: Interior points per bracket and refresh: the bracket shrinks 5x per refresh.
BISECT_POINTS = 4
#: Ladder distances from a bracket's centre, in pool spacings: log-uniform over 4 decades,
#: from a thousandth of the spacing (B0 on the study's 1-D pool, h = 6e-5) to 10 spacings.
LADDER_RANGE = (0.1, 100.0)
#: A bracket narrower than this many spacings is not cut again (it is resolved).
RESOLVED_WIDTH = 1e-9


def around_rows(x, rows, radius, u) -> np.ndarray:
    """One point uniform in the cube of half-width ``radius`` (m,) around each pool
    point ``x[rows]`` (m, d); ``u`` (m, d) uniforms in [0, 1)."""
    return x[rows] + radius[:, None] * (2.0 * u - 1.0)


def in_cells(lo, hi, cells, u) -> np.ndarray:
    """One point uniform in each cell ``(lo[cells], hi[cells])``; ``u`` (m, d)."""
    return lo[cells] + (hi[cells] - lo[cells]) * u


#: Rows of largest ``|y|`` whose neighbours a first pass of :func:`pole_brackets` looks up
#: (d > 1); a pass that finds too few brackets looks up 4 times as many.
FIRST_ROWS = 4096


def _sign_change_pairs(i, j, y, threshold) -> tuple:
    """The pairs (i, j) across which y changes sign with ``min(|y_i|, |y_j|) > threshold``,
    and that minimum."""
    score = np.minimum(np.abs(y[i]), np.abs(y[j]))
    keep = (np.sign(y[i]) * np.sign(y[j]) < 0) & (score > threshold)
    return i[keep], j[keep], score[keep]


def _take_separated(x, i, j, score, max_brackets: int, separation: float) -> list:
    """The pairs (i, j), by decreasing ``score`` (ties in the given order), whose centres
    are at least ``separation`` from those taken before; at most ``max_brackets``."""
    taken, centres = [], []
    for k in np.argsort(-score, kind="stable"):
        if len(taken) == max_brackets:
            break
        c = 0.5 * (x[i[k]] + x[j[k]])
        if all(np.linalg.norm(c - t) >= separation for t in centres):
            taken.append((i[k], j[k]))
            centres.append(c)
    return taken


def pole_brackets(x, y, max_brackets: int, separation: float, tree=None) -> tuple:
    """Brackets of the target's poles of odd order in the pool.

    A bracket is a pair of neighbouring pool points (1-D: adjacent in sorted order;
    d > 1: one is among the other's 2 d nearest neighbours) where y changes sign and ``|y|``
    at both ends exceeds the pool's median ``|y|`` (a zero of y has small ``|y|`` around it).
    Brackets are taken by decreasing ``min(|y_i|, |y_j|)`` (the tightest first; ties by
    the pair's indices), each centre at least ``separation`` from those taken before.
    In d > 1 the neighbours of the :data:`FIRST_ROWS` rows of largest ``|y|`` are looked up
    first: every pair whose ends both have ``|y|`` above the last of them is then known, and
    more rows are looked up only when those pairs give too few brackets.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    y : numpy.ndarray, shape (N,)
        The labels, finite.
    max_brackets : int
    separation : float
        Least distance between two brackets' centres (units of x).
    tree : callable or None, default None
        ``tree()`` returns a scipy ``cKDTree`` over ``x``, called in d > 1 only (the
        learner shares its own; None: one is built here).

    Returns
    -------
    a, b : numpy.ndarray, shape (m, d)
        The ends of the m <= max_brackets brackets.
    """
    n, d = x.shape
    ay = np.abs(y)
    median = np.median(ay)
    if d == 1:
        order = np.argsort(x[:, 0], kind="stable")
        taken = _take_separated(x, *_sign_change_pairs(order[:-1], order[1:], y, median),
                                max_brackets, separation)
    else:
        from scipy.spatial import cKDTree
        rows = np.flatnonzero(ay > median)
        rows = rows[np.argsort(-ay[rows], kind="stable")]
        tree = cKDTree(x) if tree is None else tree()
        k, m = min(2 * d + 1, n), min(FIRST_ROWS, rows.size)
        while True:
            _, idx = tree.query(x[rows[:m]], k=k)
            a = np.repeat(rows[:m], k - 1)
            b = idx[:, 1:].ravel()
            key = np.unique(np.minimum(a, b) * np.int64(n) + np.maximum(a, b))  # ties: by key
            floor = median if m == rows.size else ay[rows[m - 1]]
            taken = _take_separated(x, *_sign_change_pairs(key // n, key % n, y, floor),
                                    max_brackets, separation)
            if len(taken) == max_brackets or m == rows.size:
                break
            m = min(4 * m, rows.size)
    taken = np.array(taken, dtype=np.int64).reshape(-1, 2)
    return x[taken[:, 0]], x[taken[:, 1]]


def at_brackets(a, b, n: int, spacing: float, u) -> np.ndarray:
    """``n`` new points at the brackets ``(a, b)`` (m, d), shared as evenly as the count
    allows (the first ``n mod m`` brackets get one more).

    Each bracket wider than ``RESOLVED_WIDTH`` spacings gets its ``BISECT_POINTS``
    interior points ``a + (b - a) k / (BISECT_POINTS + 1)`` first (fewer if its share is
    smaller); its other points lie at ``c +- r (b - a) / |b - a|`` (c the centre), r
    log-uniform in ``LADDER_RANGE`` spacings, the side by ``u[:, 1] < 0.5``.

    Parameters
    ----------
    a, b : numpy.ndarray, shape (m, d), m >= 1
    n : int
    spacing : float
        The pool spacing h.
    u : numpy.ndarray, shape (n, 2)
        Uniforms in [0, 1).

    Returns
    -------
    numpy.ndarray, shape (n, d)
    """
    m = a.shape[0]
    share = n // m + (np.arange(m) < n % m)
    bracket = np.repeat(np.arange(m), share)
    rank = np.arange(n) - np.repeat(np.cumsum(share) - share, share)   # 0.. within a bracket
    width = np.linalg.norm(b - a, axis=1)
    interior = (rank < BISECT_POINTS) & (width[bracket] > RESOLVED_WIDTH * spacing)
    lo, hi = np.log(LADDER_RANGE[0] * spacing), np.log(LADDER_RANGE[1] * spacing)
    r = np.exp(lo + (hi - lo) * u[:, 0]) * np.where(u[:, 1] < 0.5, -1.0, 1.0)
    t = np.where(interior, (rank + 1.0) / (BISECT_POINTS + 1), 0.5)
    direction = (b - a) / np.where(width > 0, width, 1.0)[:, None]
    step = np.where(interior, 0.0, r)
    return a[bracket] + t[:, None] * (b - a)[bracket] + step[:, None] * direction[bracket]


#: Most brackets ``q_signal="labels"`` keeps: with centres 4 spacings apart, 1024 cover a pole
#: curve 4096 spacings long (the study's 2-D pool is 181 spacings wide).
SIGNAL_BRACKETS = 1024


def bracket_centres(x, y, spacing: float, tree=None) -> np.ndarray:
    """The centres of :func:`pole_brackets` (at most :data:`SIGNAL_BRACKETS`, 4 spacings
    apart): points of the target's poles of odd order as the labels show them (m, d),
    m = 0 when the labels change sign at no pole.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    y : numpy.ndarray, shape (N,)
        The labels, finite.
    spacing : float
        The pool spacing h (units of x).
    tree : callable or None, default None
        As in :func:`pole_brackets`.

    Returns
    -------
    numpy.ndarray, shape (m, d)
    """
    a, b = pole_brackets(x, y, SIGNAL_BRACKETS, 4 * spacing, tree=tree)
    return 0.5 * (a + b)


def distance_to(centres, x) -> np.ndarray:
    """The distance of every row of x to the nearest of ``centres``, in units of x; inf
    everywhere when there is no centre.

    Parameters
    ----------
    centres : numpy.ndarray, shape (m, d), or scipy.spatial.cKDTree
        The centres, or a tree built over them once by a caller that asks often.
    x : numpy.ndarray, shape (n, d)

    Returns
    -------
    numpy.ndarray, shape (n,)
    """
    from scipy.spatial import cKDTree
    if not isinstance(centres, cKDTree):
        if centres.shape[0] == 0:
            return np.full(x.shape[0], np.inf)
        centres = cKDTree(centres)
    dist, _ = centres.query(x)
    return np.asarray(dist, dtype=np.float64)


def pole_distances(x, y, spacing: float, tree=None) -> np.ndarray:
    """The distance of every pool point to the nearest of :func:`bracket_centres`, in pool
    spacings (N,); inf everywhere when the labels change sign at no pole
    (``q_signal="labels"``).

    Parameters
    ----------
    x, y, spacing, tree
        As in :func:`bracket_centres`.

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    return distance_to(bracket_centres(x, y, spacing, tree=tree), x) / spacing


def label_pole_distance(x, y) -> np.ndarray:
    """The distance of every pool point to the poles its labels show, in units of x (N,):
    :func:`pole_distances` times the pool spacing ``h = (box volume / N)^(1/d)``; inf
    everywhere without a pole. A Q for the true-Q curriculum when the true Q is unknown
    (``CurriculumBatchSampler(q_pool=label_pole_distance(x, y), ...)``; the study's
    ``curriculum_labels``, docs/training_study.md).

    Parameters
    ----------
    x : array_like, shape (N,) or (N, d)
    y : array_like, shape (N,)
        One finite label per row.

    Returns
    -------
    numpy.ndarray, shape (N,), float64
    """
    xs, ys, h = labelled_pool(x, y, "x", "y")
    return pole_distances(xs, ys, h) * h


def labelled_pool(x, y, x_name: str, y_name: str) -> tuple:
    """A labelled pool's inputs (N, d) and labels (N,) as float64 and its spacing h (see
    :func:`pool_geometry`); ValueError naming the argument unless every row has one finite
    label."""
    xs, _, h = pool_geometry(x, x_name)
    ys = as_float_array(y, y_name, ndim=(1, 2), finite=True)
    if ys.shape not in ((xs.shape[0],), (xs.shape[0], 1)):
        raise ValueError(f"{y_name} must hold one finite label per row of {x_name} "
                         f"(shape ({xs.shape[0]},) or ({xs.shape[0]}, 1)), got shape {ys.shape}")
    return xs, ys.reshape(-1), h


def pool_geometry(x_pool, name: str) -> tuple:
    """A pool's inputs as float64 (N, d), its box (lo, hi) and its spacing
    ``h = (box volume / N)^(1/d)``; ValueError naming ``name`` unless x is finite, of
    rank 1 or 2, and spans a box of positive width on every axis."""
    x = as_float_array(x_pool, name, ndim=(1, 2), finite=True)
    x = x[:, None] if x.ndim == 1 else x
    box = (x.min(axis=0), x.max(axis=0))
    width = box[1] - box[0]
    if not (width > 0).all():
        raise ValueError(f"{name} must span a box of positive width on every axis, got "
                         f"widths {width.tolist()}")
    return x, box, float(np.prod(width) / x.shape[0]) ** (1.0 / x.shape[1])
