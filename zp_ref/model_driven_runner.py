"""The runner loop of a model-driven refresh (:class:`zp_ref.model_driven.ModelDrivenLearner`
asks, the runner's callables answer)."""
from __future__ import annotations

__all__ = ["run_refresh"]


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
