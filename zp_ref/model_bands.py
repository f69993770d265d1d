"""The band curriculum of the model-driven learner (``schedule="bands"``), as pure
functions: bands are pool-fraction quantiles of the model's scale-free signal, a stage's
mix is equal over the far band and the bands already reached, and a stage ends on a
measured plateau of the newest band's mean loss (see docs/curriculum.md, "Model-driven
bands")."""
from __future__ import annotations

import numpy as np

from .bands import band_of

__all__ = ["signal_bands", "stage_mix", "band_weights", "band_losses", "next_stage"]


def signal_bands(signal: np.ndarray, edges) -> np.ndarray:
    """Band of every pool point, int64 (N,): ``band_of(rank / N, edges)`` with rank 1 for
    the smallest signal (nearest the model's pole); ``edges`` are pool fractions, so band
    k holds a fixed share of the pool whatever the scale of Q."""
    rank = np.empty(signal.size)
    rank[np.argsort(signal, kind="stable")] = np.arange(1, signal.size + 1)
    return band_of(rank / signal.size, edges)


def stage_mix(stage: int, n_bands: int) -> np.ndarray:
    """The mix of ``stage`` over ``n_bands`` bands (n_bands,): equal over bands
    ``K - stage .. K`` (K = n_bands - 1 is the far band, in every stage)."""
    k = n_bands - 1
    mix = np.zeros(n_bands)
    mix[k - min(stage, k):] = 1.0
    return mix / mix.sum()


def band_weights(ids: np.ndarray, counts: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """pi (N,): band b's share ``mix[b]`` spread evenly over its members (sum 1; the
    share of an empty band goes to the others in proportion)."""
    per = np.where(counts > 0, mix / np.maximum(counts, 1), 0.0)
    w = per[ids]
    return w / w.sum()


def band_losses(ids: np.ndarray, counts: np.ndarray, loss) -> np.ndarray | None:
    """Mean loss per band (n_bands,), 0 for an empty band; None without a loss."""
    if loss is None:
        return None
    return np.bincount(ids, loss, minlength=counts.size) / np.maximum(counts, 1)


def next_stage(stage: int, refreshes: int, previous, current, *, plateau: float,
               max_refreshes: int, n_bands: int) -> tuple:
    """(stage, refreshes in it) after one more refresh in ``stage``: advance when the
    newest band's mean loss is above ``plateau`` times its value at the previous refresh
    (it improved by less than 1 - plateau), or after ``max_refreshes`` refreshes."""
    k = n_bands - 1
    refreshes += 1
    newest = k - min(stage, k)
    stalled = (current is not None and previous is not None and refreshes > 1
               and current[newest] > plateau * previous[newest])
    if stage < k and (stalled or refreshes >= max_refreshes):
        return stage + 1, 0
    return stage, refreshes
