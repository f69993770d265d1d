"""|Q| bands and stratified sampling over them.

``edges`` (K,) increasing, non-negative; the band of q is the number of edges strictly
below |q|, so band 0 (|q| <= edges[0]) is nearest the pole and band K (|q| > edges[-1])
is the far field. The default edges give B0..B4 of the ZeroProofML bucket tables.

``stratified_sample`` (see docs/curriculum.md, "Stratified sampling") draws ``n``
indices whose per-band counts are the largest-remainder rounding of ``n * mix``, the
mass of bands with nothing to draw being redistributed over the others in proportion.
The NumPy functions here are the oracle; ``cpu``/``cuda`` run the kernels of
``kernels/cpu_bands.py`` / ``kernels/gpu_bands.py`` and give identical integers.
"""
from __future__ import annotations

import math
import sys
from fractions import Fraction

import numpy as np

from .kernels import threads_for
from .tensors import tensor_io
from ._validation import as_float_array, check_choice, check_count, check_real, check_seed
from .backends import resolve_backend
from .rng import derive_seed

DEFAULT_EDGES = (1e-5, 1e-4, 1e-3, 1e-2)
WITHIN = ("uniform", "importance")
#: |sum(mix) - 1| accepted (the mix is then divided by its sum exactly).
MIX_TOLERANCE = 1e-9


# ------------------------------------------------------------------ validation
def check_edges(edges, name: str = "edges") -> np.ndarray:
    """Edges as float64 (K,), K >= 1: finite, >= 0, strictly increasing."""
    e = as_float_array(edges, name, finite=True)
    if (e < 0).any():
        raise ValueError(f"{name} must be >= 0 (they are bounds on |Q|), got {e.tolist()}")
    if (np.diff(e) <= 0).any():
        raise ValueError(f"{name} must be strictly increasing, got {e.tolist()}")
    return e


def check_mix(mix, n_bands: int, name: str = "mix") -> np.ndarray:
    """A mix over ``n_bands`` bands: finite, >= 0, ``fsum`` within ``MIX_TOLERANCE`` of 1.

    Returns float64 (n_bands,): the mix itself when its ``math.fsum`` is exactly 1.0,
    else the mix divided by that sum.
    """
    m = as_float_array(mix, name, finite=True)
    if m.size != n_bands:
        raise ValueError(f"{name} must have one entry per band ({n_bands} = len(edges) + 1), "
                         f"got {m.size}: {m.tolist()}")
    if (m < 0).any():
        raise ValueError(f"{name} entries must be >= 0, got {m.tolist()}")
    total = math.fsum(m)
    if abs(total - 1.0) > MIX_TOLERANCE:
        raise ValueError(f"{name} must sum to 1 (within {MIX_TOLERANCE}), got sum "
                         f"{total!r} for {m.tolist()}")
    return m if total == 1.0 else m / total


def check_q(q, name: str = "q", *, allow_empty: bool = True) -> np.ndarray:
    """q as float64 (N,); NaN refused (naming the count and first index), +-inf allowed."""
    q = as_float_array(q, name, allow_empty=allow_empty)
    nan = np.isnan(q)
    if nan.any():
        raise ValueError(f"{name} must not contain NaN: {int(nan.sum())} NaN value(s), first "
                         f"at index {int(np.argmax(nan))}; |Q| bands need a value for every entry")
    return q


# ------------------------------------------------------------------ band ids
def _band_of_numpy(q: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Oracle: number of edges strictly below |q| (searchsorted, side='left')."""
    return np.searchsorted(edges, np.abs(q), side="left").astype(np.int64)


def _band_ids(q: np.ndarray, edges: np.ndarray, backend: str) -> np.ndarray:
    if backend == "numpy" or q.size == 0:
        return _band_of_numpy(q, edges)
    if backend == "cpu":
        from .kernels.cpu_bands import band_ids
        out = np.empty(q.size, dtype=np.int64)
        with threads_for(q.size):
            band_ids(q, edges, out)
        return out
    from .kernels.gpu_bands import band_ids_gpu
    return band_ids_gpu(q, edges)


@tensor_io(q_args=("q",), returns="index")
def band_of(q, edges=DEFAULT_EDGES, *, backend="auto") -> np.ndarray:
    """Band of every entry: the number of edges strictly below |q|.

    Parameters
    ----------
    q : array_like or torch.Tensor, shape (N,)
        Real Q values; NaN refused, ``+-inf`` in the last band.
    edges : sequence of float, shape (K,), default DEFAULT_EDGES
        Increasing band edges on |Q| (``DEFAULT_EDGES = (1e-5, 1e-4, 1e-3, 1e-2)``).
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.

    Returns
    -------
    numpy.ndarray
        int64, shape (N,), in [0, K].
    """
    edges = check_edges(edges)
    q = check_q(q)
    return _band_ids(q, edges, resolve_backend(backend, q.size))


@tensor_io(q_args=("q",), returns="index")
def band_counts(q, edges=DEFAULT_EDGES, *, backend="auto") -> np.ndarray:
    """Members per band: ``bincount(band_of(q, edges), minlength=K+1)``.

    Parameters
    ----------
    q : array_like or torch.Tensor, shape (N,)
        Real Q values; NaN refused.
    edges : sequence of float, shape (K,), default DEFAULT_EDGES
        Increasing band edges on |Q| (``DEFAULT_EDGES = (1e-5, 1e-4, 1e-3, 1e-2)``).
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.

    Returns
    -------
    numpy.ndarray
        int64, shape (K+1,), summing to N.
    """
    edges = check_edges(edges)
    q = check_q(q)
    backend = resolve_backend(backend, q.size)
    if backend == "numpy" or q.size == 0:
        return np.bincount(_band_of_numpy(q, edges), minlength=edges.size + 1).astype(np.int64)
    if backend == "cpu":
        from .kernels.cpu_bands import band_histogram
        with threads_for(q.size):
            return band_histogram(q, edges)
    from .kernels.gpu_bands import MAX_BANDS, band_histogram_gpu
    if edges.size >= MAX_BANDS:
        raise ValueError(f"edges: backend='cuda' counts at most {MAX_BANDS} bands "
                         f"({MAX_BANDS - 1} edges), got {edges.size} edges; use backend='cpu'")
    return band_histogram_gpu(q, edges)


# ------------------------------------------------------------------ rounding
def largest_remainder(n: int, shares) -> np.ndarray:
    """Split ``n`` into integer counts by largest-remainder rounding of ``n * shares``.

    Exact rational arithmetic: with ``S`` the exact sum of the float64 shares,
    ``t_b = n * shares[b] / S``; every band gets ``floor(t_b)``; the
    ``n - sum(floor(t))`` remaining units go one each to the bands with the largest
    remainders ``t_b - floor(t_b)``, ties to the lower band; a band with share 0 never
    gets one.

    Parameters
    ----------
    n : int
        The total, 0 <= n < 2**40 (larger draws could not be held in memory).
    shares : array_like, shape (B,)
        Shares >= 0 summing to 1 within ``MIX_TOLERANCE``.

    Returns
    -------
    numpy.ndarray
        int64, shape (B,), summing to ``n``.
    """
    n = check_count(n, "n")
    if n >= 2**40:
        raise ValueError(f"n must be below 2**40 (a draw that size cannot be held in memory), "
                         f"got {n}")
    shares = as_float_array(shares, "shares", finite=True)
    if (shares < 0).any() or abs(math.fsum(shares) - 1.0) > MIX_TOLERANCE:
        raise ValueError(f"shares must be >= 0 and sum to 1 (within {MIX_TOLERANCE}), got "
                         f"{shares.tolist()}")
    exact = [Fraction(s) for s in shares.tolist()]        # every float64 is a dyadic rational
    total = sum(exact)
    t = [n * s / total for s in exact]
    counts = [math.floor(x) for x in t]
    left = n - sum(counts)                                 # 0 <= left < number of bands
    candidates = [b for b, s in enumerate(exact) if s > 0]
    by_remainder = sorted(candidates, key=lambda b: counts[b] - t[b])   # stable: lower band
    for b in by_remainder[:left]:
        counts[b] += 1
    return np.array(counts, dtype=np.int64)


def effective_mix(mix: np.ndarray, available: np.ndarray) -> np.ndarray:
    """The mix after redistribution, float64 (K+1,).

    Unchanged when every band with mix > 0 is available. Otherwise bands with
    ``available == 0`` get 0 and ``m_b = mix_b / fsum(mix over available bands)``; when
    that sum is 0, ``m_b = available_b / sum(available)`` (the drawable members).
    """
    live = available > 0
    if live[mix > 0].all():
        return mix.copy()
    kept = np.where(live, mix, 0.0)
    total = math.fsum(kept)
    if total > 0:
        return kept / total
    return available / available.sum()


# ------------------------------------------------------------------ stratified draws
def allocate_draws(n: int, mix: np.ndarray, drawable: np.ndarray):
    """(target, effective mix, alloc) of ``stratified_sample``: ``target`` rounds
    ``n * mix``, ``alloc`` rounds ``n * effective_mix(mix, drawable)`` (largest remainder)."""
    target = largest_remainder(n, mix)
    if n > 0 and drawable.sum() == 0:
        raise ValueError("q: no pool entry can be drawn (every importance weight is 0: "
                         "q holds only +-inf)")
    m = effective_mix(mix, drawable) if n > 0 else mix
    return target, m, largest_remainder(n, m)


def check_stratified_args(edges, n, mix, seed, within, weight_power, min_q_abs, max_weight):
    """Validated (edges, n, mix, seed, within, weight_power, min_q_abs, max_weight) of
    ``stratified_sample``; ``max_weight=None`` becomes the largest float."""
    edges = check_edges(edges)
    n = check_count(n, "n")
    mix = check_mix(mix, edges.size + 1)
    seed = check_seed(seed)
    within = check_choice(within, "within", WITHIN)
    weight_power = check_real(weight_power, "weight_power", low=0.0)
    min_q_abs = check_real(min_q_abs, "min_q_abs", low=0.0, low_open=True)
    max_weight = check_real(sys.float_info.max if max_weight is None else max_weight,
                            "max_weight", low=0.0, low_open=True)
    return edges, n, mix, seed, within, weight_power, min_q_abs, max_weight


@tensor_io(q_args=("q",), returns="index_info")
def stratified_sample(q, n, *, edges=DEFAULT_EDGES, mix, seed, within="uniform",
                      weight_power=2.0, min_q_abs=1e-6, max_weight=None, backend="auto"):
    """Draw ``n`` pool indices (with replacement) with a prescribed mix over |Q| bands.

    Definition (a pure function of (q, n, edges, mix, seed, within, weights config)):

    1. ``band = band_of(q, edges)``; members of band b in ascending pool order.
       A member is *drawable* when ``within="uniform"`` or its importance weight is > 0.
    2. ``target = largest_remainder(n, mix)``; ``alloc = largest_remainder(n, m)`` with
       ``m = effective_mix(mix, drawable per band)`` (redistribution of empty bands).
    3. For b = 0..K with ``alloc[b] > 0``, ``seed_b = derive_seed(seed, b)`` and
       ``uniform``: ``members[uniform_indices(len(members), alloc[b], seed=seed_b)]``;
       ``importance``: ``members[sample_indices(w[members], alloc[b], seed=seed_b)]``,
       ``w = importance_weights(q, weight_power, min_q_abs, max_weight, normalize=False)``.
    4. ``idx`` = the draws of band 0, then band 1, ... (band-major order).

    Parameters
    ----------
    q : array_like or torch.Tensor, shape (N,)
        Real pool values (NaN refused).
    n : int
        Number of draws, >= 0.
    edges : sequence of float, shape (K,), default DEFAULT_EDGES
        Increasing band edges on |Q| (``DEFAULT_EDGES = (1e-5, 1e-4, 1e-3, 1e-2)``).
    mix : array_like, shape (K+1,)
        Shares per band, >= 0, summing to 1.
    seed : int
        Seed in [0, 2**64).
    within : {"uniform", "importance"}, default "uniform"
        How members are drawn inside a band.
    weight_power, min_q_abs : float, default 2.0, 1e-6
        The importance weights inside bands (as :func:`importance_weights`).
    max_weight : float or None, default None
        Cap of those weights; None: no cap beyond ``min_q_abs``.
    backend : {"auto", "numpy", "cpu", "cuda"}, default "auto"
        Where it runs; every backend returns the same values.

    Returns
    -------
    idx : numpy.ndarray
        int64, shape (n,), band-major.
    info : dict
        Per band lists ``edges``, ``members``, ``drawable``, ``mix`` (effective),
        ``target``, ``achieved`` (counted from ``band[idx]``), ``redistributed`` =
        achieved - target.
    """
    edges, n, mix, seed, within, weight_power, min_q_abs, max_weight = \
        check_stratified_args(edges, n, mix, seed, within, weight_power, min_q_abs, max_weight)
    q = check_q(q, allow_empty=n == 0)
    backend = resolve_backend(backend, q.size)
    n_bands = edges.size + 1

    bands = _band_ids(q, edges, backend)
    order, starts = _group_by_band(bands, n_bands, backend)
    members = np.diff(starts)
    weights = None
    if within == "importance" and n > 0:
        from .weighting import importance_weights
        weights = importance_weights(q, weight_power=weight_power, min_q_abs=min_q_abs,
                                     max_weight=max_weight, normalize=False, backend=backend)
        drawable = np.bincount(bands[weights > 0], minlength=n_bands).astype(np.int64)
    else:
        drawable = members
    target, m, alloc = allocate_draws(n, mix, drawable)

    parts = []
    for b in range(n_bands):
        if alloc[b] == 0:
            continue
        band_members = order[starts[b]:starts[b + 1]]
        seed_b = derive_seed(seed, b)
        if within == "uniform":
            from .sampling import uniform_indices
            j = uniform_indices(band_members.size, int(alloc[b]), seed=seed_b, backend=backend)
        else:
            from .sampling import sample_indices
            try:
                j = sample_indices(weights[band_members], int(alloc[b]), seed=seed_b,
                                   replace=True, backend=backend)
            except ValueError:
                _check_band_total(weights[band_members], b, weight_power, min_q_abs,
                                  max_weight)
                raise
        parts.append(band_members[j])
    idx = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    achieved = np.bincount(bands[idx], minlength=n_bands).astype(np.int64)
    info = {"edges": edges.tolist(), "members": members.tolist(),
            "drawable": drawable.tolist(), "mix": m.tolist(), "target": target.tolist(),
            "achieved": achieved.tolist(), "redistributed": (achieved - target).tolist()}
    return idx.astype(np.int64, copy=False), info


def _check_band_total(w, band, weight_power, min_q_abs, max_weight) -> None:
    """ValueError naming the weight settings when the weights ``w`` of ``band`` sum to
    inf (the draws' own message would ask to rescale weights the caller never gave)."""
    with np.errstate(over="ignore"):
        total = w.sum()
    if math.isfinite(total):
        return
    raise band_overflow_error(band, w.size, weight_power, min_q_abs, max_weight) from None


def band_overflow_error(band: int, members: int, weight_power, min_q_abs,
                        max_weight) -> ValueError:
    """The ValueError for band ``band`` (``members`` entries) whose importance weights
    sum to inf, naming the settings that made them (in memory and over Dask alike)."""
    cap = "None (no cap)" if max_weight == sys.float_info.max else f"{max_weight:g}"
    return ValueError(
        f"the importance weights of band {band} ({members} members) sum beyond float64: "
        f"each is min(max(|q|, min_q_abs={min_q_abs:g}) ** -weight_power={weight_power:g}, "
        f"max_weight={cap}); lower weight_power, raise min_q_abs or set max_weight (e.g. "
        f"100, importance_weights' default). A BandCurriculum sets only weight_power: "
        f"lower it, or build it with within='uniform'")


def _group_by_band(bands: np.ndarray, n_bands: int, backend: str):
    """Pool indices grouped by band, ascending inside a band: (order (N,), starts (K+2,))."""
    if backend == "cpu":
        from .kernels.cpu_bands import group_by_band
        with threads_for(bands.size):
            return group_by_band(bands, n_bands)
    order = np.argsort(bands, kind="stable").astype(np.int64)
    starts = np.zeros(n_bands + 1, dtype=np.int64)
    starts[1:] = np.cumsum(np.bincount(bands, minlength=n_bands))
    return order, starts


def default_stages(n_bands: int, far_floor: float = 0.0) -> np.ndarray:
    """far -> far+mid -> all, band 0 nearest the pole.

    Stage 0: all in the far band (the last); 1: half far, half spread evenly over the mid
    bands ``h .. n_bands-2``, ``h = (n_bands - 1) // 2``; 2: band b weighted ``n_bands - b``.
    With ``far_floor`` f > 0 each stage is ``f e_far + (1 - f) stage``: the far band keeps
    at least f of every batch (the last stage alone gives it 1 / (n_bands (n_bands + 1) / 2),
    6.7 % with 5 bands).

    Parameters
    ----------
    n_bands : int (>= 2)
    far_floor : float in [0, 1], default 0.0

    Returns
    -------
    numpy.ndarray
        float64, shape (3, n_bands); each row sums to 1.
    """
    n_bands = check_count(n_bands, "n_bands", minimum=2)
    far, h = n_bands - 1, (n_bands - 1) // 2
    s0 = np.zeros(n_bands)
    s0[far] = 1.0
    s1 = np.zeros(n_bands)
    s1[far] = 0.5
    s1[h:far] = 0.5 / (far - h)
    s2 = np.arange(n_bands, 0, -1, dtype=np.float64)
    f = check_real(far_floor, "far_floor", low=0.0, high=1.0)
    return f * s0 + (1.0 - f) * np.stack([s0, s1, s2 / s2.sum()])
