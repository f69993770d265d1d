"""The torch runner of :class:`zp_ref.model_driven.ModelDrivenLearner`: a batch sampler
whose draws follow the model's own Q head, its per-sample loss and, optionally, the
refined cells of its Q and new labelled points (docs/torch.md, first recipe).

At every refresh (construction, then ``set_epoch(e)`` with ``e % refresh_every == 0``)
the sampler answers the learner's requests: ``q_fn`` (and ``|grad_x q_fn|`` by autograd
on x only, under ``torch.enable_grad``) and ``loss_fn`` on the pool in chunks of
``q_batch_size`` (the loss under ``torch.no_grad``), ``q_fn`` at refinement points and
``y_fn`` at new points. Under DDP the refreshed probabilities are broadcast from rank 0
(``sync="broadcast"``) or compared by hash (``sync="check"``, RuntimeError on a
mismatch), so every rank draws the same global draw and the shards are disjoint.
"""
from __future__ import annotations

import hashlib
import time
import warnings

import numpy as np

from ..checks import check_choice, check_count
from ..model_driven import ModelDrivenConfig, ModelDrivenLearner, run_refresh
from ..state import STATE_VERSION, check_state
from .torch import as_tensor, sharded_total, to_numpy, torch

__all__ = ["ModelDrivenSampler", "PoolDataset", "SYNCS"]

SYNCS = ("broadcast", "check", "none")
TIMINGS = ("total", "q", "loss", "refine", "label", "weights")


class PoolDataset(torch.utils.data.Dataset):
    """A Dataset view over a sampler's current pool: item i is ``(x_pool[i], y_pool[i])``
    (``x_pool[i]`` without y).

    It reads the sampler's tensors at every access, so it sees the points a refresh adds
    (DataLoader workers get a copy when an epoch's iteration starts: leave
    ``persistent_workers`` False when the pool grows).

    Parameters
    ----------
    sampler : ModelDrivenSampler
    """

    def __init__(self, sampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return self.sampler.pool_size

    def __getitem__(self, i):
        s = self.sampler
        return s.x_pool[i] if s.y_pool is None else (s.x_pool[i], s.y_pool[i])


def _tensor(a, name: str):
    if a is None:
        return None
    t = a if isinstance(a, torch.Tensor) else as_tensor(a)
    if t.dim() == 0 or t.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row (shape (N, ...)), got shape "
                         f"{tuple(t.shape)}")
    return t


def _rows(out, n: int, name: str) -> "torch.Tensor":
    """A callable's output as a flat tensor of n values: shape (n,) or (n, 1)."""
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} must return a torch.Tensor or NumPy array, got "
                        f"{type(out).__name__}")
    if tuple(out.shape) not in ((n,), (n, 1)):
        raise ValueError(f"{name} must return shape ({n},) or ({n}, 1), got {tuple(out.shape)}")
    return out.reshape(n)


def _host(t) -> np.ndarray:
    return np.ascontiguousarray(to_numpy(t.detach()), dtype=np.float64)


def q_and_grad_norm(q_fn, x, chunk: int) -> tuple:
    """``q_fn(x)`` and ``|grad_x q_fn(x)|`` of the rows of x (n, ...), float64 arrays (n,),
    by autograd on x only (a detached copy, whatever the caller's grad mode), in chunks of
    ``chunk`` rows; ``(None, None)`` when q_fn's output has no gradient with respect to x."""
    qs, gs = [], []
    for i in range(0, x.shape[0], chunk):
        xc = x[i:i + chunk].detach().clone()
        xc = (xc if xc.is_floating_point() else xc.to(torch.float64)).requires_grad_(True)
        with torch.enable_grad():
            out = _rows(q_fn(xc), xc.shape[0], "q_fn")
            g = (torch.autograd.grad(out.sum(), xc, allow_unused=True)[0]
                 if out.requires_grad else None)
        if g is None:
            return None, None
        qs.append(_host(out))
        gs.append(_host(g.reshape(xc.shape[0], -1).norm(dim=1)))
    return np.concatenate(qs), np.concatenate(gs)


class ModelDrivenSampler(torch.utils.data.Sampler):
    """Batch sampler: ``num_batches`` batches of ``batch_size`` pool indices per epoch,
    drawn by :class:`~zp_ref.model_driven.ModelDrivenLearner` from the model's Q head
    ``q_fn`` (and ``loss_fn``, ``y_fn``); ``DataLoader(sampler.dataset, batch_sampler=
    sampler)``.

    Epoch e's global draw is ``learner.batches(e, total_size)`` (``total_size``:
    num_batches rounded up to a multiple of num_replicas); rank r yields
    ``global[r::num_replicas]``. ``last_refresh``: seconds per part and counts of the
    last refresh, and the variance gate's ``gate_tau`` (None: not evaluated) and
    ``gate_open``; ``refresh_log``: all of them.

    Parameters
    ----------
    x_pool : torch.Tensor or numpy.ndarray, shape (N, d), or (N,) for d = 1
    batch_size, num_batches : int
    q_fn : callable
        ``q_fn(x) -> (n,) or (n, 1)``, the model's Q head.
    y_pool : torch.Tensor or numpy.ndarray, shape (N, ...), or None
        Targets, needed by ``loss_fn`` and ``y_fn``.
    loss_fn : callable or None
        ``loss_fn(x, y) -> (n,)``, the per-sample loss the sampler is told (it need not
        be the training loss). The training study recommends the squared error of the
        prediction, ``(model(x) - y) ** 2``, for a fixed pool, and the training loss when
        the pool grows through ``y_fn`` (docs/training_study.md, "The loss the sampler
        is told").
    y_fn : callable or None
        ``y_fn(x) -> y``, labels for new points.
    config : ModelDrivenConfig or None, default None
    seed : int, default 0
    num_replicas, rank : int or None, default None
        The process group's, else 1 and 0.
    q_batch_size : int, default 65536
        Rows per model call.
    sync : {"broadcast", "check", "none"}, default "broadcast"
        How ranks agree on the refreshed probabilities (``SYNCS``).
    """

    def __init__(self, x_pool, batch_size, num_batches, *, q_fn, y_pool=None, loss_fn=None,
                 y_fn=None, config=None, seed=0, num_replicas=None, rank=None,
                 q_batch_size=65536, sync="broadcast"):
        config = ModelDrivenConfig() if config is None else config
        self.batch_size = check_count(batch_size, "batch_size", minimum=1)
        self.num_batches = check_count(num_batches, "num_batches", minimum=1)
        self.q_batch_size = check_count(q_batch_size, "q_batch_size", minimum=1)
        self.sync = check_choice(sync, "sync", SYNCS)
        for name, fn in (("q_fn", q_fn), ("loss_fn", loss_fn), ("y_fn", y_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
        if q_fn is None and isinstance(config, ModelDrivenConfig) and (
                config.uses_q or config.refine):
            raise ValueError("q_fn is required (the model's Q head, x -> Q(x)) unless "
                             "config has q_signal='none' and refine=False")
        x = _tensor(x_pool, "x_pool")
        if x is None:
            raise ValueError("x_pool is required: the pool's inputs, a tensor or array (N, d)")
        if not torch.is_floating_point(x):
            raise TypeError(f"x_pool must hold floating-point values, got dtype {x.dtype}")
        y = _tensor(y_pool, "y_pool")
        if y is not None and y.shape[0] != x.shape[0]:
            raise ValueError(f"y_pool must have one row per x_pool row ({x.shape[0]}), got "
                             f"{y.shape[0]}")
        for name, fn in (("loss_fn", loss_fn), ("y_fn", y_fn)):
            if fn is not None and y is None:
                raise ValueError(f"{name} needs y_pool (the pool's targets)")
        self._x, self._y = x, y
        self.n_initial = x.shape[0]
        self.q_fn, self.loss_fn, self.y_fn = q_fn, loss_fn, y_fn
        self.num_replicas, self.rank = self._replicas(num_replicas, rank)
        self.total_size = sharded_total(self.num_batches, self.num_replicas, False,
                                        "num_batches")
        self.learner = ModelDrivenLearner(_host(x), config=config, seed=seed,
                                          batch_size=self.batch_size,
                                          has_loss=loss_fn is not None,
                                          has_labels=y_fn is not None)
        if self.learner.needs_y and (y is None or y[0].numel() != 1):
            raise ValueError(f"growth='poles' and q_signal='labels' need one label per pool row "
                             f"(y_pool of shape (N,) or (N, 1)), got y_pool of shape "
                             f"{None if y is None else tuple(y.shape)}")
        self.config, self.seed = self.learner.config, self.learner.seed
        self.refresh_log, self.last_refresh = [], {}
        self._warned_grad = False
        self.epoch, self.refreshed_epoch = 0, None
        self.refresh(0)

    # ------------------------------------------------------------------ pool
    @staticmethod
    def _replicas(num_replicas, rank) -> tuple:
        dist = torch.distributed
        ready = dist.is_available() and dist.is_initialized()
        num_replicas = check_count(dist.get_world_size() if ready and num_replicas is None
                                   else 1 if num_replicas is None else num_replicas,
                                   "num_replicas", minimum=1)
        rank = check_count(dist.get_rank() if ready and rank is None
                           else 0 if rank is None else rank, "rank")
        if rank >= num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas - 1}] (num_replicas = "
                             f"{num_replicas}), got {rank}")
        return num_replicas, rank

    @property
    def x_pool(self) -> "torch.Tensor":
        """The current pool inputs (N, ...) (grown points at the end)."""
        return self._x

    @property
    def y_pool(self):
        """The current pool targets (N, ...), or None."""
        return self._y

    @property
    def pool_size(self) -> int:
        return self._x.shape[0]

    @property
    def dataset(self) -> PoolDataset:
        """A Dataset view over the current (x_pool, y_pool)."""
        return PoolDataset(self)

    # ------------------------------------------------------------------ the refresh
    def _points(self, points: np.ndarray) -> "torch.Tensor":
        """Learner points (m, d) as inputs shaped like x_pool's rows."""
        t = torch.from_numpy(np.ascontiguousarray(points)).to(self._x.dtype).to(self._x.device)
        return t.reshape((points.shape[0],) + tuple(self._x.shape[1:]))

    def _q_values(self, x) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([_host(_rows(self.q_fn(x[i:i + self.q_batch_size]),
                                               min(self.q_batch_size, x.shape[0] - i), "q_fn"))
                                   for i in range(0, x.shape[0], self.q_batch_size)]
                                  or [np.zeros(0)])

    def _q_and_grad(self, x) -> tuple:
        """(q, |grad_x q|) in chunks; (q, None) when q_fn's output has no gradient with
        respect to x (the quantile signal is used then)."""
        q, g = q_and_grad_norm(self.q_fn, x, self.q_batch_size)
        return (self._q_values(x), None) if q is None else (q, g)

    def _signals(self, rows, times: dict) -> dict:
        """q (and |grad q|) and the loss of pool rows ``rows`` (a slice or int64 array)."""
        rows = rows if isinstance(rows, slice) else torch.from_numpy(rows).to(self._x.device)
        x, out = self._x[rows], {}
        t0 = time.perf_counter()
        if self.q_fn is not None:
            if self.learner.needs_grad:
                out["q"], out["grad_norm"] = self._q_and_grad(x)
                if out["grad_norm"] is None:
                    self._no_gradient()
            else:
                out["q"] = self._q_values(x)
        t1 = time.perf_counter()
        if self.loss_fn is not None:
            y = self._y[rows]
            with torch.no_grad():
                out["loss"] = np.concatenate([
                    _host(_rows(self.loss_fn(x[i:i + self.q_batch_size],
                                             y[i:i + self.q_batch_size]),
                                min(self.q_batch_size, x.shape[0] - i), "loss_fn"))
                    for i in range(0, x.shape[0], self.q_batch_size)])
        if self.learner.needs_y:     # growth="poles", q_signal="labels": the labels
            out["y"] = _host(self._y[rows]).reshape(-1)
        times["q"] += t1 - t0
        times["loss"] += time.perf_counter() - t1
        return out

    def _no_gradient(self) -> None:
        self.learner.needs_grad = False
        if not self._warned_grad:
            self._warned_grad = True
            warnings.warn("q_fn's output has no gradient with respect to x: the model-driven "
                          "sampler uses the rank of |Q| over the pool (q_signal='quantile') "
                          "instead of the distance |Q| / |grad Q|", RuntimeWarning, stacklevel=4)

    def _refine_q(self, points, times) -> np.ndarray:
        t0 = time.perf_counter()
        q = self._q_values(self._points(points))
        times["refine"] += time.perf_counter() - t0
        return q

    def _label(self, points, times):
        """y_fn at the new points (rank 0's under DDP), appended to the pool."""
        t0 = time.perf_counter()
        dist = self._dist()
        if dist is not None and self.sync != "none":
            pts = torch.from_numpy(np.ascontiguousarray(points)).to(self._comm_device())
            dist.broadcast(pts, src=0)
            points = pts.cpu().numpy()
        x_new = self._points(points)
        if dist is None or self.sync == "none":
            y_new = self.y_fn(x_new)
        else:
            box = [self.y_fn(x_new) if self.rank == 0 else None]
            dist.broadcast_object_list(box, src=0)
            y_new = box[0]
        y_new = torch.as_tensor(y_new).to(self._y.dtype).to(self._y.device)
        if y_new.shape[0] != x_new.shape[0] or tuple(y_new.shape[1:]) != tuple(self._y.shape[1:]):
            raise ValueError(f"y_fn must return one row of shape {tuple(self._y.shape[1:])} per "
                             f"point ({x_new.shape[0]}), got shape {tuple(y_new.shape)}")
        finite = torch.isfinite(y_new.reshape(y_new.shape[0], -1)).all(dim=1).cpu()
        if not bool(finite.all()):          # a new point on a pole of the target: not kept
            warnings.warn(f"y_fn returned a non-finite label at {int((~finite).sum())} of "
                          f"{x_new.shape[0]} new point(s) (a point on a pole of the target?); "
                          f"they are not added to the pool", RuntimeWarning, stacklevel=4)
            points = points[finite.numpy()]
            x_new, y_new = x_new[finite.to(x_new.device)], y_new[finite.to(y_new.device)]
        self._x, self._y = torch.cat((self._x, x_new)), torch.cat((self._y, y_new))
        times["label"] += time.perf_counter() - t0
        return points

    def refresh(self, epoch: int) -> None:
        """Run a refresh for ``epoch`` now (set_epoch calls it every refresh_every epochs)."""
        times = dict.fromkeys(TIMINGS, 0.0)
        n0 = self.pool_size
        t0 = time.perf_counter()
        try:
            run_refresh(self.learner, epoch,
                        signals=lambda rows: self._signals(rows, times),
                        q=lambda p: self._refine_q(p, times),
                        labels=lambda p: self._label(p, times))
            self._synchronise()
        except BaseException:
            self._x = self._x[:n0]
            self._y = None if self._y is None else self._y[:n0]
            raise
        times["total"] = time.perf_counter() - t0
        times["weights"] = times["total"] - times["q"] - times["loss"] - times["refine"] \
            - times["label"]
        self.last_refresh = {**times, "n_pool": self.pool_size,
                             "n_new": self.pool_size - n0, "epoch": int(epoch),
                             "gate_open": self.learner.gate_open,     # rank 0's under DDP
                             "gate_tau": self.learner.gate_tau}
        self.refresh_log.append(dict(self.last_refresh))
        self.refreshed_epoch = int(epoch)

    # ------------------------------------------------------------------ DDP
    def _dist(self):
        dist = torch.distributed
        ready = dist.is_available() and dist.is_initialized()
        return dist if ready and self.num_replicas > 1 and dist.get_world_size() > 1 else None

    def _comm_device(self):
        return "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"

    def _synchronise(self) -> None:
        """Every rank uses rank 0's draw state (pi, or the sum trees' leaves with
        refresh_rows) and curriculum decisions."""
        dist = self._dist()
        if dist is None or self.sync == "none":
            return
        pi, dec = self.learner.draw_state(), self.learner.decisions()
        if self.sync == "check":
            digest = hashlib.sha256(pi.tobytes() + dec.tobytes()).hexdigest()
            every = [None] * dist.get_world_size()
            dist.all_gather_object(every, digest)
            bad = [r for r, h in enumerate(every) if h != every[0]]
            if bad:
                raise RuntimeError(f"model-driven probabilities differ across ranks: ranks {bad} "
                                   f"disagree with rank 0 (their q_fn/loss_fn outputs differ); "
                                   f"the shards would overlap. Use sync='broadcast'")
            return
        t = torch.from_numpy(pi.copy()).to(self._comm_device())
        d = torch.from_numpy(dec.copy()).to(self._comm_device())
        dist.broadcast(t, src=0)
        dist.broadcast(d, src=0)
        self.learner.set_draw_state(t.cpu().numpy())
        self.learner.set_decisions(d.cpu().numpy())

    # ------------------------------------------------------------------ epochs and draws
    def set_epoch(self, epoch) -> None:
        """Select epoch ``epoch``'s draw; refresh first when ``epoch % refresh_every == 0``
        and no refresh was made for it."""
        epoch = check_count(epoch, "epoch")
        if epoch % self.config.refresh_every == 0 and epoch != self.refreshed_epoch:
            self.refresh(epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return self.total_size // self.num_replicas

    def global_batches(self) -> list:
        """The epoch's batches over all ranks: ``total_size`` int64 arrays (batch_size,)."""
        return self.learner.batches(self.epoch, self.total_size)

    def batches(self) -> list:
        """This rank's batches of the current epoch: ``global_batches()[rank::R]``."""
        return self.global_batches()[self.rank::self.num_replicas]

    def __iter__(self):
        return iter([b.tolist() for b in self.batches()])

    @property
    def probabilities(self) -> np.ndarray:
        """m (N,): every pool point's probability in a draw (>= floor / N)."""
        return self.learner.probabilities

    def likelihood_ratio(self, indices):
        """``1 / (N m_i)`` (float64, <= 1 / floor) for pool indices; tensor in, tensor out
        (float64 on the indices' device)."""
        idx = to_numpy(indices) if isinstance(indices, torch.Tensor) else indices
        lr = self.learner.likelihood_ratio(idx)
        return torch.from_numpy(lr).to(indices.device) if isinstance(indices, torch.Tensor) \
            else lr

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The learner's state (pool inputs, pi, curriculum), epoch, sizes and the labels
        of the grown points (not the callables nor the sharding)."""
        y_new = None if self._y is None else _host(self._y[self.n_initial:])
        return {"version": STATE_VERSION, "learner": self.learner.state_dict(),
                "epoch": self.epoch, "refreshed_epoch": self.refreshed_epoch,
                "batch_size": self.batch_size, "num_batches": self.num_batches,
                "n_initial": self.n_initial, "y_new": y_new}

    def load_state_dict(self, state) -> None:
        """Restore a :meth:`state_dict` made over the same initial pool (validated first)."""
        check_state(state, type(self).__name__, ("learner", "epoch", "refreshed_epoch",
                                                 "batch_size", "num_batches", "n_initial",
                                                 "y_new"))
        if state["n_initial"] != self.n_initial or state["batch_size"] != self.batch_size:
            raise ValueError(f"state was made for n_initial={state['n_initial']}, batch_size="
                             f"{state['batch_size']}; this sampler has {self.n_initial}, "
                             f"{self.batch_size}")
        x_all = np.asarray(state["learner"]["x_pool"])
        learner = ModelDrivenLearner(_host(self._x[:self.n_initial]), config=self.config,
                                     seed=self.seed, batch_size=self.batch_size,
                                     has_loss=self.learner.has_loss,
                                     has_labels=self.learner.has_labels)
        learner.load_state_dict(state["learner"])
        x_new = self._points(x_all.reshape(x_all.shape[0], -1)[self.n_initial:])
        y = self._y
        if y is not None:
            y_new = torch.as_tensor(np.zeros((0,) + tuple(y.shape[1:])) if state["y_new"] is None
                                    else state["y_new"]).to(y.dtype)
            y = torch.cat((y[:self.n_initial], y_new))
        self.learner, self.config = learner, learner.config
        self._x, self._y = torch.cat((self._x[:self.n_initial], x_new)), y
        self.epoch = check_count(state["epoch"], "epoch")
        self.refreshed_epoch = state["refreshed_epoch"]
