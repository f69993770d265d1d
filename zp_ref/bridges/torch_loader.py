"""``EpochLoader``: ``set_epoch`` for training loops with no epoch hook, and the
likelihood ratios of each batch for loops whose batches cannot carry them (see
:mod:`zp_ref.bridges.torch`, docs/torch.md)."""
from __future__ import annotations

import numpy as np
import torch

from ..checks import check_count

__all__ = ["EpochLoader"]


class EpochLoader:
    """An iterable over ``loader`` that calls its zp_ref sampler's ``set_epoch`` at the
    start of every pass, for training loops with no epoch hook (zeroproofml's
    ``SCMTrainer.fit`` iterates its ``train_loader`` once per epoch and nothing more).

    ``len()`` is the loader's. With ``ratios=True`` the indices come from the sampler's
    epoch draw (``batches()``, or ``indices()`` cut into the loader's ``batch_size``),
    which the loader yields in the same order; the draw is a pure function of the
    epoch, so asking for it costs one more draw per pass (not one more ``q_fn`` call).

    Parameters
    ----------
    loader : torch.utils.data.DataLoader
        Its ``batch_sampler`` or ``sampler`` has ``set_epoch``.
    epoch : callable or None, default None
        Gives the epoch of the pass about to start (e.g. ``lambda: trainer.current_epoch``,
        right on resume); None numbers the passes ``start_epoch, start_epoch + 1, ...``.
    start_epoch : int, default 0
    ratios : bool, default False
        While batch k of a pass is out (from its yield until the next batch),
        ``batch_indices`` holds its pool indices (int64 tensor) and ``batch_ratios``
        their likelihood ratios ``sampler.likelihood_ratio(batch_indices)`` (float64
        tensor), so a loss function can weight its per-sample terms without a third batch
        element (which ``SCMTrainer`` reads as status labels).
    """

    def __init__(self, loader, epoch=None, *, start_epoch=0, ratios=False):
        self.sampler = next((s for s in (getattr(loader, "batch_sampler", None),
                                         getattr(loader, "sampler", None))
                             if callable(getattr(s, "set_epoch", None))), None)
        if self.sampler is None:
            raise TypeError(f"loader must be a DataLoader whose sampler or batch_sampler has "
                            f"set_epoch (a zp_ref.torch_bridge sampler), got "
                            f"{type(loader).__name__}")
        if epoch is not None and not callable(epoch):
            raise TypeError(f"epoch must be a callable returning the epoch or None, got "
                            f"{type(epoch).__name__}")
        if not isinstance(ratios, (bool, np.bool_)):
            raise TypeError(f"ratios must be True or False, got {ratios!r}")
        if ratios and not callable(getattr(self.sampler, "likelihood_ratio", None)):
            raise TypeError(f"ratios=True needs a sampler with likelihood_ratio (a zp_ref "
                            f"torch sampler), got {type(self.sampler).__name__}")
        self.loader, self.epoch_fn, self.ratios = loader, epoch, bool(ratios)
        self.next_epoch = check_count(start_epoch, "start_epoch")
        self.batch_indices = self.batch_ratios = None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        epoch = self.next_epoch if self.epoch_fn is None else self.epoch_fn()
        self.sampler.set_epoch(epoch)
        self.next_epoch = self.sampler.epoch + 1
        if not self.ratios:
            return iter(self.loader)
        return self._with_ratios(self._index_batches())

    def _index_batches(self) -> list:
        """The pool indices of each batch the loader yields this pass."""
        if callable(getattr(self.sampler, "batches", None)):
            return [np.asarray(b) for b in self.sampler.batches()]
        idx = np.asarray(self.sampler.indices())
        size = self.loader.batch_size
        stop = idx.size - idx.size % size if self.loader.drop_last else idx.size
        return [idx[i:i + size] for i in range(0, stop, size)]

    def _with_ratios(self, index_batches):
        for k, batch in enumerate(self.loader):
            self.batch_indices = torch.as_tensor(index_batches[k], dtype=torch.int64)
            self.batch_ratios = self.sampler.likelihood_ratio(self.batch_indices)
            yield batch
