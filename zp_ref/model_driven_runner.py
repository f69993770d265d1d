"""The runner loop of a model-driven refresh (:class:`zp_ref.model_driven.ModelDrivenLearner`
asks, the runner's callables answer)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Request", "run_refresh"]


@dataclass(frozen=True)
class Request:
    """What the learner needs next (:meth:`zp_ref.model_driven.ModelDrivenLearner.ask`).

    Parameters
    ----------
    kind : {"signals", "q", "labels", "done"}
        "signals": rows ``start:stop`` of the current pool (q, and grad_norm / loss as
        configured); "q": the model's Q at ``points``; "labels": label ``points`` and
        append them to the pool; "done": the refresh is over.
    points : numpy.ndarray, shape (m, d), or None
    start, stop : int, default 0
    rows : numpy.ndarray of int64 (sorted), or None
        A "signals" request with ``rows`` asks for those rows instead of ``start:stop``.
    """
    kind: str
    points: np.ndarray | None = None
    start: int = 0
    stop: int = 0
    rows: np.ndarray | None = None

    def index(self):
        """The pool rows asked for: ``rows``, or ``slice(start, stop)``."""
        return slice(self.start, self.stop) if self.rows is None else self.rows


def run_refresh(learner, epoch: int, *, signals, q=None,
                labels=None) -> None:
    """The runner loop of one refresh; on an error the refresh is undone
    (:meth:`ModelDrivenLearner.abort_refresh`) and re-raised.

    Parameters
    ----------
    learner : zp_ref.model_driven.ModelDrivenLearner
    epoch : int
    signals : callable
        ``signals(rows) -> dict``: q, grad_norm, loss of the pool rows ``rows`` (a slice or
        an int64 array).
    q : callable or None, default None
        ``q(points (m, d)) -> (m,)`` (refinement).
    labels : callable or None, default None
        ``labels(points (m, d))`` labels them and appends them to the caller's pool;
        returns None or the points it appended instead.
    """
    learner.start_refresh(epoch)
    try:
        while True:
            req = learner.ask()
            if req.kind == "done":
                return
            if req.kind == "signals":
                learner.tell(signals(req.index()))
            elif req.kind == "q":
                learner.tell(q(req.points))
            else:
                learner.tell(labels(req.points))
    except BaseException:
        learner.abort_refresh()
        raise
