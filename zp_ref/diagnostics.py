"""Diagnostics of near-pole training: per-epoch and per-batch statistics of |Q|, bands,
tags, gradients and sampling weights, kept in bounded histories and exported as
versioned one-file documents (JSON header + raw arrays), never pickle. Definitions:
docs/diagnostics.md.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import numbers
import os
import sys
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .tensors import tensor_io
from ._validation import as_float_array, check_count, check_real
from .state import (STATE_VERSION, check_state, config_fields, read_document,
                    write_document)
from .diagnostic_statistics import (TAG_NAMES, gradient_statistics, q_statistics,  # noqa: F401
                                    tag_counts, weight_statistics)

logger = logging.getLogger(__name__)

EXPORT_SCHEMA = "zp_ref.diagnostics/1"
METRIC_KEYS = ("lambda_rej", "coverage_train", "coverage_eval", "coverage_eval_tau",
               "loss_train", "loss_eval")
Q_KEYS = ("q_min", "q_mean", "q_std", "near_pole_ratio", "far_ratio")
MAIN_KEYS = ("epoch",) + METRIC_KEYS + Q_KEYS + ("band_counts",)
TAG_KEYS = ("n_real", "n_pinf", "n_ninf", "n_phi", "real_ratio")
GRADIENT_KEYS = ("near_pole_mean", "near_pole_max", "far_pole_mean", "far_pole_max",
                 "gradient_ratio", "percentiles")
BATCH_KEYS = ("epoch", "batch_idx", "n") + Q_KEYS + (
    "band_counts", "unique", "diversity", "ess", "ess_fraction", "max_weight_share",
    "n_real", "n_pinf", "n_ninf", "n_phi", "loss")

_RESERVED = frozenset(("epoch", "band_counts") + TAG_KEYS + GRADIENT_KEYS)
_EXPORT_COUNTER = itertools.count()


class QMinWarning(RuntimeWarning):
    """q_min fell below ``DiagnosticConfig.q_min_warning_threshold``."""


def _default_edges():
    from .bands import DEFAULT_EDGES
    return [float(e) for e in DEFAULT_EDGES]


def _check_length(value, name, *, minimum):
    """A bound on a deque's length: an integer in [minimum, sys.maxsize]."""
    value = check_count(value, name, minimum=minimum)
    if value > sys.maxsize:
        raise ValueError(f"{name} must be at most sys.maxsize = {sys.maxsize}, got {value}")
    return value


def _check_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


@dataclass
class DiagnosticConfig:
    """Settings of :class:`DiagnosticMonitor` (the anchor's fields, plus ``band_edges``,
    ``max_snapshots`` and ``auto_export``). Thresholds are on |Q|.

    Parameters
    ----------
    export_frequency : int, default 10
        :meth:`DiagnosticMonitor.update` exports when ``epoch % export_frequency == 0``.
    export_path : str, default "diagnostics"
    track_gradients, track_tag_distribution, monitor_q_min, auto_export : bool, default True
    gradient_percentiles : list of float, default [25, 50, 75, 90, 95, 99]
    max_history_length : int, default 1000
        Rows kept per history (the oldest are dropped).
    near_pole_threshold, far_pole_threshold : float, default 0.1, 1.0
        |Q| below the first is near a pole, above the second far from the poles.
    q_min_warning_threshold : float, default 1e-4
    band_edges : list of float, default DEFAULT_EDGES
    max_snapshots : int, default 5
    """
    export_frequency: int = 10            # update() exports when epoch % this == 0
    export_path: str = "diagnostics"      # folder of exports (created on first export)
    track_gradients: bool = True
    gradient_percentiles: list = field(default_factory=lambda: [25, 50, 75, 90, 95, 99])
    max_history_length: int = 1000        # rows kept per history (oldest dropped)
    near_pole_threshold: float = 0.1      # |Q| <  this: near pole
    far_pole_threshold: float = 1.0       # |Q| >  this: far from poles
    track_tag_distribution: bool = True
    monitor_q_min: bool = True
    q_min_warning_threshold: float = 1e-4
    band_edges: list = field(default_factory=_default_edges)
    max_snapshots: int = 5                # P/Q snapshots kept (and exported)
    auto_export: bool = True              # update() calls export_diagnostics itself

    def __post_init__(self):
        self.export_frequency = check_count(self.export_frequency, "export_frequency", minimum=1)
        if not isinstance(self.export_path, (str, os.PathLike)):
            raise TypeError(f"export_path must be a str or path, got {self.export_path!r}")
        self.export_path = os.fspath(self.export_path)
        self.track_gradients = _check_flag(self.track_gradients, "track_gradients")
        pct = as_float_array(self.gradient_percentiles, "gradient_percentiles", finite=True,
                             allow_empty=True)
        if ((pct < 0) | (pct > 100)).any():
            raise ValueError(f"gradient_percentiles must lie in [0, 100], got {list(pct)}")
        self.gradient_percentiles = [float(p) for p in pct]
        self.max_history_length = _check_length(self.max_history_length, "max_history_length",
                                                minimum=1)
        self.near_pole_threshold = check_real(self.near_pole_threshold, "near_pole_threshold",
                                              low=0, low_open=True)
        self.far_pole_threshold = check_real(self.far_pole_threshold, "far_pole_threshold",
                                             low=self.near_pole_threshold)
        self.track_tag_distribution = _check_flag(self.track_tag_distribution,
                                                  "track_tag_distribution")
        self.monitor_q_min = _check_flag(self.monitor_q_min, "monitor_q_min")
        self.q_min_warning_threshold = check_real(self.q_min_warning_threshold,
                                                  "q_min_warning_threshold", low=0)
        from .bands import check_edges
        self.band_edges = [float(e) for e in check_edges(self.band_edges, "band_edges")]
        self.max_snapshots = _check_length(self.max_snapshots, "max_snapshots", minimum=0)
        self.auto_export = _check_flag(self.auto_export, "auto_export")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def unique_export_path(folder, prefix: str, epoch: int) -> Path:
    """``folder/<prefix>_epoch<E>_pid<P>_<K>.json`` (folder created if needed) with a
    counter ``K`` unique in this process and no existing file of that name, so
    exporters in different processes (different pids) never collide."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        stem = f"{prefix}_epoch{epoch:06d}_pid{os.getpid()}_{next(_EXPORT_COUNTER):04d}"
        path = folder / f"{stem}.json"
        if not path.exists():
            return path


def _q_array(q, name="q_values"):
    q = as_float_array(q, name)
    nan = np.isnan(q)
    if nan.any():
        raise ValueError(f"{name} holds {int(nan.sum())} NaN value(s), first at index "
                         f"{int(np.argmax(nan))}")
    return q


def _real_or_none(value, name):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer,
                                                                    np.floating)):
        raise TypeError(f"{name} must be a real number or None, got {value!r}")
    return float(value)


_NOTHING = object()


def _append(col: deque, value, journal: list) -> None:
    """``col.append(value)``, noting in ``journal`` what the append pushed out."""
    full = col.maxlen is not None and len(col) == col.maxlen
    journal.append((col, col[0] if full else _NOTHING))
    col.append(value)


def _last(values, k=None):
    vals = [v for v in values if v is not None]
    return vals if k is None else vals[-k:]


# ----------------------------------------------------------------- the monitor
class DiagnosticMonitor:
    """Bounded histories of training/sampling diagnostics with JSON export.

    ``history`` (per :meth:`update` row: metrics, |Q| statistics, band counts),
    ``tag_history``, ``gradient_history`` (rows aligned with ``history``; ``None`` where
    not measured) and ``batch_metrics`` (per :meth:`update_batch`) hold at most
    ``config.max_history_length`` rows each. The export folder is created on the first
    export, not here.

    Parameters
    ----------
    config : DiagnosticConfig or None, default None
    writer : SummaryWriter-like or None, default None
        Receives the scalars and |Q| histograms (``add_scalar``/``add_histogram``).
    """

    def __init__(self, config: DiagnosticConfig | None = None, writer=None):
        if config is not None and not isinstance(config, DiagnosticConfig):
            raise TypeError(f"config must be a DiagnosticConfig or None, got "
                            f"{type(config).__name__}")
        self.config = config if config is not None else DiagnosticConfig()
        n = self.config.max_history_length
        self.history = {k: deque(maxlen=n) for k in MAIN_KEYS}
        self.tag_history = {k: deque(maxlen=n) for k in TAG_KEYS}
        self.gradient_history = {k: deque(maxlen=n) for k in GRADIENT_KEYS}
        self.batch_metrics = {k: deque(maxlen=n) for k in BATCH_KEYS}
        self.pq_snapshots = deque(maxlen=self.config.max_snapshots)
        self.totals = {"n_updates": 0, "n_batches": 0, "q_min_global": None,
                       "q_min_recent": None, "tag_totals": [0, 0, 0, 0]}
        self.tensorboard = None
        self.set_writer(writer)

    def set_writer(self, writer, tag_prefix: str = "diagnostics") -> None:
        """Also write every later row to ``writer`` (tags: docs/diagnostics.md), or stop.

        Parameters
        ----------
        writer : object or None
            A ``torch.utils.tensorboard.SummaryWriter`` or any object with
            ``add_scalar`` and ``add_histogram``; None stops writing. It is not part of
            the saved state.
        tag_prefix : str
            First part of every tag.
        """
        from .diagnostics_tensorboard import TensorBoardOutput
        self.tensorboard = None if writer is None else TensorBoardOutput(writer, tag_prefix)

    @property
    def export_dir(self) -> Path:
        return Path(self.config.export_path)

    # -------------------------------------------------------------- recording
    @tensor_io(q_args=("q_values",), other_args=("p_values", "gradients", "tags"),
               returns=None)
    def update(self, epoch, metrics=None, p_values=None, q_values=None, gradients=None,
               tags=None):
        """Record one epoch row. ``metrics``: real-valued entries (the anchor's keys
        ``lambda_rej``, ``coverage_*``, ``loss_*`` and any others, which become new
        columns); ``q_values`` (n,) gives the |Q| statistics; ``gradients`` maps a name
        to per-sample gradients (n,) or (n, k) and needs ``q_values``; ``tags`` (n,).
        Snapshots P/Q and exports when ``epoch % export_frequency == 0``."""
        cfg = self.config
        epoch = check_count(epoch, "epoch")
        metrics = {} if metrics is None else metrics
        if not isinstance(metrics, dict):
            raise TypeError(f"metrics must be a dict of name -> number, got "
                            f"{type(metrics).__name__}")
        row = {"epoch": epoch}
        for key, value in metrics.items():
            if not isinstance(key, str) or key in _RESERVED:
                raise ValueError(f"metrics key {key!r} is not allowed: keys are str and not "
                                 f"one of {sorted(_RESERVED)}")
            row[key] = _real_or_none(value, f"metrics[{key!r}]")
        q = None if q_values is None else _q_array(q_values)
        if q is not None:
            row.update(q_statistics(q, cfg.near_pole_threshold, cfg.far_pole_threshold,
                                    cfg.band_edges))
        counts = None
        if tags is not None and cfg.track_tag_distribution:
            counts = tag_counts(tags)
            total = int(counts.sum())
            row.update(zip(TAG_KEYS, [int(c) for c in counts] + [int(counts[0]) / max(1, total)]))
        if gradients is not None and cfg.track_gradients:
            if q is None:
                raise ValueError("gradients need q_values (to split samples near/far from poles)")
            if not isinstance(gradients, dict):
                raise TypeError(f"gradients must be a dict name -> array, got "
                                f"{type(gradients).__name__}")
            row.update(gradient_statistics(gradients, np.abs(q), cfg.near_pole_threshold,
                                           cfg.far_pole_threshold, cfg.gradient_percentiles))
        snapshot = None
        if p_values is not None and q is not None and epoch % cfg.export_frequency == 0:
            p = as_float_array(p_values, "p_values", ndim=(1, 2))
            if p.shape[0] != q.size:
                raise ValueError(f"p_values has {p.shape[0]} rows, q_values {q.size}")
            snapshot = {"epoch": epoch, "p_values": p.copy(), "q_values": q.copy()}
        # ---- all inputs valid: warn (a warning turned into an error changes nothing),
        # record, export; a failed export takes the row back out
        self._warn_q_min(row.get("q_min"), f"epoch {epoch}")
        undo = self._record(row, snapshot, counts)
        if cfg.auto_export and epoch % cfg.export_frequency == 0:
            try:
                self.export_diagnostics(epoch)
            except BaseException:
                undo()
                raise
        if self.tensorboard is not None:      # after recording: a writer error keeps the row
            self.tensorboard.write_epoch(row, q, list(metrics))

    def _record(self, row, snapshot, counts):
        """Append one epoch row (and its snapshot, tag counts, q_min); returns a function
        that restores the monitor exactly as it was before."""
        cfg = self.config
        totals = {k: (list(v) if isinstance(v, list) else v) for k, v in self.totals.items()}
        added = [k for k in row if k not in self.history and k not in _RESERVED]
        for key in added:
            self.history[key] = deque([None] * len(self.history["epoch"]),
                                      maxlen=cfg.max_history_length)
        journal = []
        for table in (self.history, self.tag_history, self.gradient_history):
            for key, col in table.items():
                _append(col, row.get(key), journal)
        if snapshot is not None and cfg.max_snapshots:
            _append(self.pq_snapshots, snapshot, journal)
        self.totals["n_updates"] += 1
        if counts is not None:
            self._add_tags(counts)
        self._note_q_min(row.get("q_min"))

        def undo():
            for col, dropped in reversed(journal):
                col.pop()
                if dropped is not _NOTHING:
                    col.appendleft(dropped)
            for key in added:
                del self.history[key]
            self.totals = totals
        return undo

    @tensor_io(q_args=("q_values",), other_args=("weights", "indices", "tags"),
               returns=None)
    def update_batch(self, q_values=None, weights=None, indices=None, *, batch_idx=None,
                     epoch=None, q_min=None, tags=None, loss=None):
        """Record one batch: |Q| statistics and band counts of ``q_values`` (n,), the Kish
        ESS and max-weight share of the batch's ``weights`` (n,) (e.g. importance weights
        or likelihood ratios), diversity unique/total of the pool ``indices`` (n,), tag
        counts and ``loss``. ``q_min`` alone (the anchor's form) is accepted when
        ``q_values`` is not given."""
        cfg = self.config
        if q_values is None and q_min is None:
            raise ValueError("update_batch needs q_values (the batch's Q) or q_min")
        row = {"epoch": None if epoch is None else check_count(epoch, "epoch"),
               "batch_idx": (self.totals["n_batches"] if batch_idx is None
                             else check_count(batch_idx, "batch_idx")),
               "loss": _real_or_none(loss, "loss")}
        n = None
        if q_values is not None:
            q = _q_array(q_values)
            n = q.size
            row.update(q_statistics(q, cfg.near_pole_threshold, cfg.far_pole_threshold,
                                    cfg.band_edges))
        else:
            row["q_min"] = check_real(q_min, "q_min", low=0, allow_inf=True)
        if weights is not None:
            w = as_float_array(weights, "weights", finite=True)
            if n is not None and w.size != n:
                raise ValueError(f"weights has {w.size} entries, q_values {n}; they must match")
            if (w < 0).any() or not (w > 0).any():
                raise ValueError("weights must be >= 0 with a positive sum")
            n = w.size
            row.update(weight_statistics(w))
        if indices is not None:
            idx = np.asarray(indices)
            if idx.ndim != 1 or idx.dtype.kind not in "iu" or idx.size == 0:
                raise ValueError(f"indices must be a non-empty 1-D integer array, got "
                                 f"dtype {idx.dtype}, shape {idx.shape}")
            if (idx < 0).any():
                raise ValueError(f"indices must be pool indices >= 0, got {int((idx < 0).sum())} "
                                 f"negative, first {idx[idx < 0][0]}")
            if n is not None and idx.size != n:
                raise ValueError(f"indices has {idx.size} entries, the batch {n}; they must match")
            n = idx.size
            unique = int(np.unique(idx).size)
            row.update(unique=unique, diversity=unique / idx.size)
        counts = tag_counts(tags) if tags is not None and cfg.track_tag_distribution else None
        if counts is not None:
            row.update(zip(("n_real", "n_pinf", "n_ninf", "n_phi"), (int(c) for c in counts)))
        row["n"] = n
        self._warn_q_min(row["q_min"], f"batch {row['batch_idx']}")
        for key, col in self.batch_metrics.items():
            col.append(row.get(key))
        self.totals["n_batches"] += 1
        if counts is not None:
            self._add_tags(counts)
        self._note_q_min(row["q_min"])
        if self.tensorboard is not None:
            self.tensorboard.write_batch(row, self.totals["n_batches"] - 1)

    def _add_tags(self, counts):
        self.totals["tag_totals"] = [a + int(b) for a, b in zip(self.totals["tag_totals"], counts)]
        if counts[1:].sum():
            logger.info("non-REAL outputs: PINF=%d NINF=%d PHI=%d of %d", *counts[1:], counts.sum())

    def _note_q_min(self, q_min):
        if q_min is None:
            return
        g = self.totals["q_min_global"]
        self.totals["q_min_global"] = q_min if g is None else min(g, q_min)
        self.totals["q_min_recent"] = q_min

    def _warn_q_min(self, q_min, where):
        thr = self.config.q_min_warning_threshold
        if self.config.monitor_q_min and q_min is not None and q_min < thr:
            warnings.warn(f"q_min = {q_min:.3e} at {where} is below q_min_warning_threshold "
                          f"= {thr:.3e}", QMinWarning, stacklevel=3)

    # -------------------------------------------------------------- summary
    def get_summary(self) -> dict:
        """``q_min_global`` (smallest q_min ever recorded, not limited by the history
        length), ``q_min_recent``, ``q_mean_recent``, ``near_pole_ratio_recent``,
        ``coverage_current`` / ``coverage_mean`` (last 10), ``real_ratio_current``,
        ``non_real_total``, ``tag_totals``, ``gradient_ratio_mean`` (last 10) /
        ``gradient_ratio_max``, ``n_updates``, ``n_batches`` (keys present when known)."""
        t = self.totals
        s = {"n_updates": t["n_updates"], "n_batches": t["n_batches"]}
        if t["q_min_global"] is not None:
            s["q_min_global"], s["q_min_recent"] = t["q_min_global"], t["q_min_recent"]
        for key, col in (("q_mean_recent", "q_mean"),
                         ("near_pole_ratio_recent", "near_pole_ratio")):
            vals = _last(self.history[col])
            if vals:
                s[key] = vals[-1]
        cov = _last(self.history["coverage_train"])
        if cov:
            s["coverage_current"], s["coverage_mean"] = cov[-1], float(np.mean(cov[-10:]))
        real = _last(self.tag_history["real_ratio"])
        if real or sum(t["tag_totals"]):
            if real:
                s["real_ratio_current"] = real[-1]
            s["non_real_total"] = sum(t["tag_totals"][1:])
            s["tag_totals"] = dict(zip(TAG_NAMES, t["tag_totals"]))
        ratio = _last(self.gradient_history["gradient_ratio"])
        if ratio:
            s["gradient_ratio_mean"] = float(np.mean(ratio[-10:]))
            s["gradient_ratio_max"] = max(ratio)
        return s

    # -------------------------------------------------------------- export / state
    def export_diagnostics(self, epoch) -> Path:
        """Write ``diagnostics_epoch<E>_pid<P>_<K>.json`` (one document file, the P/Q
        snapshots as its arrays) into ``config.export_path``; ``<P>`` the process id and
        ``<K>`` a per-process counter, so concurrent exporters never collide. Returns the
        path."""
        epoch = check_count(epoch, "epoch")
        body = {"epoch": epoch, "summary": self.get_summary(), **self.state_dict()}
        path = write_document(unique_export_path(self.export_dir, "diagnostics", epoch),
                              EXPORT_SCHEMA, body)
        logger.info("diagnostics exported to %s", path)
        return path

    @classmethod
    def load(cls, path) -> "DiagnosticMonitor":
        """Rebuild a monitor from a file written by :meth:`export_diagnostics`."""
        body = read_document(path, EXPORT_SCHEMA)
        body.pop("epoch", None)
        body.pop("summary", None)
        return cls.from_state_dict(body)

    def state_dict(self) -> dict:
        cols = lambda table: {k: list(v) for k, v in table.items()}  # noqa: E731
        return {"version": STATE_VERSION, "config": self.config.to_dict(),
                "history": cols(self.history),
                "tag_history": cols(self.tag_history),
                "gradient_history": cols(self.gradient_history),
                "batch_metrics": cols(self.batch_metrics),
                "snapshots": [dict(s) for s in self.pq_snapshots],
                "totals": {k: (list(v) if isinstance(v, list) else v)
                           for k, v in self.totals.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore histories, snapshots and totals (the config must equal this one's).
        The whole state is validated first (ValueError/TypeError naming the field);
        nothing changes on error."""
        config, tables, snapshots, totals = _parse_state(state)
        if config != self.config:
            raise ValueError("state['config'] differs from this monitor's config; use "
                             "DiagnosticMonitor.from_state_dict(state)")
        self.history, self.tag_history = tables["history"], tables["tag_history"]
        self.gradient_history = tables["gradient_history"]
        self.batch_metrics = tables["batch_metrics"]
        self.pq_snapshots, self.totals = snapshots, totals

    @classmethod
    def from_state_dict(cls, state: dict) -> "DiagnosticMonitor":
        monitor = cls(_parse_state(state)[0])
        monitor.load_state_dict(state)
        return monitor


# ----------------------------------------------------------------- state validation
_STATE_KEYS = ("version", "config", "history", "tag_history", "gradient_history",
               "batch_metrics", "snapshots", "totals")
#: Kind of every built-in column: count (int >= 0), real, counts / reals (lists of
#: those); every entry may also be None. Extra history columns (metrics) are real.
_COLUMN_KINDS = {
    "history": dict({"epoch": "count", "band_counts": "counts"},
                    **{k: "real" for k in METRIC_KEYS + Q_KEYS}),
    "tag_history": dict({k: "count" for k in TAG_KEYS[:4]}, real_ratio="real"),
    "gradient_history": dict({k: "real" for k in GRADIENT_KEYS[:5]}, percentiles="reals"),
    "batch_metrics": dict({k: "count" for k in ("epoch", "batch_idx", "n", "unique", "n_real",
                                                "n_pinf", "n_ninf", "n_phi")},
                          band_counts="counts",
                          **{k: "real" for k in Q_KEYS + ("diversity", "ess", "ess_fraction",
                                                          "max_weight_share", "loss")}),
}


def _is_count(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_)) \
        and v >= 0


def _is_real(v) -> bool:
    return isinstance(v, (numbers.Real, np.integer, np.floating)) and \
        not isinstance(v, (bool, np.bool_))


def _check_entry(value, kind, where, width):
    ok = (value is None or (kind == "count" and _is_count(value)) or
          (kind == "real" and _is_real(value)) or
          (kind in ("counts", "reals") and isinstance(value, list) and len(value) == width and
           all(map(_is_count if kind == "counts" else _is_real, value))))
    if not ok:
        what = {"count": "an integer >= 0", "real": "a real number",
                "counts": f"a list of {width} integers >= 0",
                "reals": f"a list of {width} real numbers"}[kind]
        raise ValueError(f"{where} must be {what} or None, got {value!r:.60}")


def _parse_table(name, table, n, widths) -> dict:
    kinds = _COLUMN_KINDS[name]
    if not isinstance(table, dict) or not all(isinstance(k, str) for k in table):
        raise ValueError(f"state[{name!r}] must be a dict of columns, got {table!r:.60}")
    missing = sorted(set(kinds) - set(table))
    extra = sorted(set(table) - set(kinds))
    if missing or (extra and name != "history") or set(extra) & _RESERVED:
        raise ValueError(f"state[{name!r}] must hold the columns {list(kinds)}"
                         f"{' (and metric columns)' if name == 'history' else ''}; missing "
                         f"{missing}, not allowed {extra if name != 'history' else []}")
    lengths = {len(v) if isinstance(v, list) else -1 for v in table.values()}
    if len(lengths) != 1 or not 0 <= next(iter(lengths)) <= n:
        raise ValueError(f"state[{name!r}] columns must be lists of one length <= "
                         f"max_history_length = {n}")
    for key, col in table.items():
        kind = kinds.get(key, "real")
        for i, value in enumerate(col):
            _check_entry(value, kind, f"state[{name!r}][{key!r}][{i}]", widths.get(kind))
    return {k: deque(v, maxlen=n) for k, v in table.items()}


def _parse_snapshot(s, i) -> dict:
    where = f"state['snapshots'][{i}]"
    if not isinstance(s, dict) or set(s) != {"epoch", "p_values", "q_values"}:
        raise ValueError(f"{where} must be a dict with keys epoch, p_values, q_values")
    if not _is_count(s["epoch"]):
        raise ValueError(f"{where}['epoch'] must be an integer >= 0, got {s['epoch']!r:.40}")
    p, q = s["p_values"], s["q_values"]
    if not (isinstance(p, np.ndarray) and isinstance(q, np.ndarray) and p.dtype.kind == "f" and
            q.dtype.kind == "f" and p.ndim in (1, 2) and q.ndim == 1 and
            p.shape[0] == q.shape[0]):
        raise ValueError(f"{where}: p_values must be a float array (n,) or (n, k) and "
                         f"q_values a float array (n,)")
    return {"epoch": int(s["epoch"]), "p_values": p, "q_values": q}


def _parse_totals(totals, tables) -> dict:
    keys = {"n_updates", "n_batches", "q_min_global", "q_min_recent", "tag_totals"}
    if not isinstance(totals, dict) or set(totals) != keys:
        raise ValueError(f"state['totals'] must hold exactly {sorted(keys)}")
    rows = {"n_updates": len(tables["history"]["epoch"]),
            "n_batches": len(tables["batch_metrics"]["epoch"])}
    for key, least in rows.items():
        if not _is_count(totals[key]) or totals[key] < least:
            raise ValueError(f"state['totals'][{key!r}] must be an integer >= the {least} "
                             f"rows kept, got {totals[key]!r:.40}")
    for key in ("q_min_global", "q_min_recent"):
        v = totals[key]
        if v is not None and not (_is_real(v) and v >= 0):
            raise ValueError(f"state['totals'][{key!r}] must be a real >= 0 or None, got "
                             f"{v!r:.40}")
    tags = totals["tag_totals"]
    if not (isinstance(tags, list) and len(tags) == 4 and all(map(_is_count, tags))):
        raise ValueError(f"state['totals']['tag_totals'] must be 4 integers >= 0, got "
                         f"{tags!r:.60}")
    return {k: (list(v) if isinstance(v, list) else v) for k, v in totals.items()}


def _parse_state(state):
    """Validate a monitor state; returns (config, tables, snapshots, totals)."""
    check_state(state, "DiagnosticMonitor", _STATE_KEYS)
    names = [f.name for f in dataclasses.fields(DiagnosticConfig)]
    config = DiagnosticConfig(**config_fields(state["config"], "DiagnosticMonitor", names))
    n = config.max_history_length
    widths = {"counts": len(config.band_edges) + 1, "reals": len(config.gradient_percentiles)}
    tables = {name: _parse_table(name, state[name], n, widths) for name in _COLUMN_KINDS}
    rows = {len(tables[t][k]) for t, k in (("history", "epoch"), ("tag_history", "n_real"),
                                            ("gradient_history", "near_pole_mean"))}
    if len(rows) > 1:
        raise ValueError("state: history, tag_history and gradient_history must have "
                         "equal lengths")
    snaps = state["snapshots"]
    if not isinstance(snaps, list) or len(snaps) > config.max_snapshots:
        raise ValueError(f"state['snapshots'] must be a list of at most max_snapshots = "
                         f"{config.max_snapshots} snapshots")
    snapshots = deque((_parse_snapshot(s, i) for i, s in enumerate(snaps)),
                      maxlen=config.max_snapshots)
    return config, tables, snapshots, _parse_totals(state["totals"], tables)
