"""``PoleDistance``: the distance of x to the nearest pole that the model's Q head or the
labels show, as a ``q_fn`` for the curricula (see :mod:`zp_ref.bridges.torch`)."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
import torch

from ..checks import check_real
from ..model_driven_growth import bracket_centres, distance_to, labelled_pool
from ..model_driven_mixture import q_distance
from .torch import to_numpy
from .torch_model import q_and_grad_norm

__all__ = ["PoleDistance"]


class PoleDistance:
    """``d(x) = min(|Q_m(x)| / |grad_x Q_m(x)|, distance to the labels' poles)`` (n,), in
    units of x: a Q for :class:`~zp_ref.bridges.torch.CurriculumBatchSampler` that does not
    change when the model multiplies P and Q by a constant.

    The model's term is the first-order distance to its own pole set (autograd on x only,
    whatever the caller's grad mode); it sees the poles the model has, spurious ones
    included. The labels' term is the distance to the centres of the sign changes of y
    between neighbouring pool points with ``|y|`` large at both ends
    (:func:`zp_ref.model_driven_growth.bracket_centres`, found once here); it sees the
    target's poles of odd order that the model may lack. Either term may be left out.

    Parameters
    ----------
    q_fn : callable or None, default None
        The model's Q head, ``q_fn(x) -> (n,) or (n, 1)`` tensor, differentiable in x.
    x_pool, y_pool : tensor or array, shapes (N,) or (N, d) and (N,), or None
        The labelled pool whose labels show the poles (both or neither).
    floor : float, default 0.0
        Least distance returned (units of x; e.g. the training pool's |Q| floor).

    Examples
    --------
    >>> sampler = CurriculumBatchSampler(
    ...     x_pool=x, q_fn=PoleDistance(model.q, x, y), refresh_every=1,
    ...     batch_size=256, num_batches=100)                       # doctest: +SKIP
    """

    def __init__(self, q_fn=None, x_pool=None, y_pool=None, *, floor: float = 0.0):
        if q_fn is not None and not callable(q_fn):
            raise TypeError(f"q_fn must be callable (x -> Q(x)) or None, got "
                            f"{type(q_fn).__name__}")
        if (x_pool is None) != (y_pool is None):
            raise ValueError("x_pool and y_pool must be given together (the labels' poles) "
                             f"or both left None, got x_pool={_shape(x_pool)}, "
                             f"y_pool={_shape(y_pool)}")
        if q_fn is None and x_pool is None:
            raise ValueError("PoleDistance needs q_fn (the model's poles), x_pool and y_pool "
                             "(the labels' poles), or all three; got none")
        self.q_fn, self.floor = q_fn, check_real(floor, "floor", low=0.0)
        self.centres, self._centre_tree = None, None     # the tree: built once, if any
        if x_pool is not None:
            x, y, h = labelled_pool(x_pool, y_pool, "x_pool", "y_pool")
            self.centres = bracket_centres(x, y, h)
            if self.centres.shape[0]:
                self._centre_tree = cKDTree(self.centres)

    def __call__(self, x) -> "torch.Tensor":
        """The distance of each row of ``x`` (n, ...) (float64 tensor (n,), x's device)."""
        x = torch.as_tensor(x)
        n = x.shape[0]
        d = np.full(n, np.inf)
        if self.q_fn is not None:
            d = np.minimum(d, self._model_distance(x))
        if self._centre_tree is not None:     # no centre: the labels' distance is inf
            xs = np.asarray(to_numpy(x.detach()), dtype=np.float64).reshape(n, -1)
            d = np.minimum(d, distance_to(self._centre_tree, xs))
        return torch.from_numpy(np.maximum(d, self.floor)).to(x.device)

    def _model_distance(self, x) -> np.ndarray:
        q, g = q_and_grad_norm(self.q_fn, x, max(x.shape[0], 1))
        if q is None:
            raise ValueError("q_fn's output has no gradient with respect to x; "
                             "PoleDistance needs a differentiable Q head")
        return q_distance(q, g, 1.0)


def _shape(a):
    return None if a is None else tuple(np.shape(a))
