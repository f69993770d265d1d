"""TensorBoard output of :class:`zp_ref.diagnostics.DiagnosticMonitor`: its epoch and
batch rows as scalars and the epoch's |Q| as histograms, written to any object with
``add_scalar(tag, value, global_step)`` and ``add_histogram(tag, values, global_step)``
(``torch.utils.tensorboard.SummaryWriter``, tensorboardX, a test double). This module
imports no torch. Tags: docs/diagnostics.md, "TensorBoard".
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["EPOCH_SCALARS", "BATCH_SCALARS", "TensorBoardOutput"]

#: Epoch-row columns written as ``<prefix>/<name>`` (when measured).
EPOCH_SCALARS = ("q_min", "q_mean", "q_std", "near_pole_ratio", "far_ratio", "real_ratio",
                 "gradient_ratio")
#: Batch-row columns written as ``<prefix>/batch/<name>`` (when measured).
BATCH_SCALARS = ("q_min", "q_mean", "near_pole_ratio", "far_ratio", "ess", "ess_fraction",
                 "max_weight_share", "diversity", "loss")


def _check_writer(writer):
    missing = [m for m in ("add_scalar", "add_histogram") if not callable(getattr(writer, m, None))]
    if missing:
        raise TypeError(f"writer must have add_scalar(tag, value, global_step) and "
                        f"add_histogram(tag, values, global_step) (e.g. "
                        f"torch.utils.tensorboard.SummaryWriter); {type(writer).__name__} "
                        f"lacks {missing}")
    return writer


def _check_prefix(prefix):
    if not isinstance(prefix, str) or not prefix or prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"tag_prefix must be a non-empty str without a leading or trailing "
                         f"'/', e.g. 'diagnostics', got {prefix!r}")
    return prefix


class TensorBoardOutput:
    """Writes the monitor's rows to ``writer`` under ``tag_prefix``.

    Parameters
    ----------
    writer : object
        Has ``add_scalar(tag, value, global_step)`` and ``add_histogram(tag, values,
        global_step)``.
    tag_prefix : str
        First part of every tag (default ``"diagnostics"``).
    """

    def __init__(self, writer, tag_prefix: str = "diagnostics"):
        self.writer = _check_writer(writer)
        self.tag_prefix = _check_prefix(tag_prefix)
        self._ess = []            # (ess, ess_fraction) of the batches since the last epoch

    def _scalar(self, name: str, value, step: int) -> None:
        """``<prefix>/<name>``; ``None`` and NaN are not written (inf is)."""
        if value is not None and not math.isnan(value):
            self.writer.add_scalar(f"{self.tag_prefix}/{name}", float(value), step)

    def write_batch(self, row: dict, step: int) -> None:
        """One ``update_batch`` row at ``global_step = step`` (the running batch count,
        0-based); its ESS is kept for the next epoch's means."""
        for key in BATCH_SCALARS:
            self._scalar(f"batch/{key}", row.get(key), step)
        if row.get("ess") is not None:
            self._ess.append((row["ess"], row["ess_fraction"]))

    def write_epoch(self, row: dict, q: np.ndarray | None, metric_names=()) -> None:
        """One ``update`` row at ``global_step = row["epoch"]``: the |Q| statistics, the
        band fractions (band counts / n), the mean ESS of the batches written since the
        previous epoch row, the row's ``metric_names`` columns, and histograms of
        ``|q|`` (its finite values) and ``log10 |q|`` (its finite positive values)."""
        step = row["epoch"]
        for key in EPOCH_SCALARS:
            self._scalar(key, row.get(key), step)
        counts = row.get("band_counts")
        if counts is not None:
            n = sum(counts)
            for k, c in enumerate(counts):
                self._scalar(f"band_fraction/B{k}", c / n, step)
        if self._ess:
            ess, fraction = np.mean(np.asarray(self._ess, dtype=np.float64), axis=0)
            self._scalar("ess_mean", ess, step)
            self._scalar("ess_fraction_mean", fraction, step)
            self._ess = []
        for key in metric_names:
            self._scalar(f"metrics/{key}", row[key], step)
        if q is not None:
            a = np.abs(q)
            a = a[np.isfinite(a)]
            if a.size:
                self.writer.add_histogram(f"{self.tag_prefix}/abs_q", a, step)
            a = a[a > 0]
            if a.size:
                self.writer.add_histogram(f"{self.tag_prefix}/log10_abs_q", np.log10(a), step)

