"""The hybrid-gradient threshold schedule delta(t) (ZeroProofML's
``HybridGradientSchedule.get_delta``), with the batch q_min passed explicitly.

Definition (epochs are integers >= 0; delta is a threshold on |Q|)::

    epoch < warmup_epochs                   -> None   (Mask-REAL only)
    p = clip((epoch - warmup) / transition, 0, 1)    (p = 1 when transition == 0)
    linear:       init + (final - init) * p
    cosine:       final + 0.5 * (init - final) * (1 + cos(pi * p))
    exponential:  init * (final / init) ** p
    adaptive_delta and q_min > 0:  delta = min(delta * max(1, 0.1 / q_min), 2 * init)
    result:       max(delta, min_delta)
"""
from __future__ import annotations

import dataclasses
import math

from ._validation import check_count, check_real
from .state import STATE_VERSION, check_state

SCHEDULE_TYPES = ("linear", "exponential", "cosine")
#: The adaptive rule's scale: delta grows by 0.1 / q_min when q_min < 0.1.
ADAPTIVE_SCALE = 0.1


def _schedule_type(value) -> str:
    """A schedule type from a string in any case or an enum member (``.name``)."""
    name = getattr(value, "name", value)
    if not isinstance(name, str) or name.lower() not in SCHEDULE_TYPES:
        raise ValueError(f"schedule_type must be one of {list(SCHEDULE_TYPES)} (any case, or "
                         f"an enum member with that name), got {value!r}")
    return name.lower()


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} of type "
                        f"{type(value).__name__}")
    return value


@dataclasses.dataclass(frozen=True)
class DeltaSchedule:
    """delta(t) for the hybrid gradient (see the module docstring); immutable, validated.

    Parameters
    ----------
    warmup_epochs : int, default 0
        Epochs (>= 0) with delta None (Mask-REAL only).
    transition_epochs : int, default 20
        Epochs (>= 0) from ``delta_init`` to ``delta_final``.
    delta_init, delta_final : float, default 1e-2, 1e-6
        Thresholds on |Q| (> 0) at the start and the end of the transition.
    schedule_type : {"exponential", "linear", "cosine"}, default "exponential"
        The interpolation (any case, or an enum member with that name).
    min_delta : float, default 1e-8
        Floor of delta (>= 0, on |Q|).
    adaptive_delta : bool, default False
        Widen delta when the batch q_min is below 0.1.
    """

    warmup_epochs: int = 0
    transition_epochs: int = 20
    delta_init: float = 1e-2
    delta_final: float = 1e-6
    schedule_type: str = "exponential"
    min_delta: float = 1e-8
    adaptive_delta: bool = False

    def __post_init__(self):
        values = {
            "warmup_epochs": check_count(self.warmup_epochs, "warmup_epochs"),
            "transition_epochs": check_count(self.transition_epochs, "transition_epochs"),
            "delta_init": check_real(self.delta_init, "delta_init", low=0.0, low_open=True),
            "delta_final": check_real(self.delta_final, "delta_final", low=0.0, low_open=True),
            "schedule_type": _schedule_type(self.schedule_type),
            "min_delta": check_real(self.min_delta, "min_delta", low=0.0),
            "adaptive_delta": _check_bool(self.adaptive_delta, "adaptive_delta"),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def progress(self, epoch: int) -> float:
        """p = clip((epoch - warmup) / transition, 0, 1); 1 when transition == 0."""
        if self.transition_epochs == 0:
            return 1.0
        return min(max((epoch - self.warmup_epochs) / float(self.transition_epochs), 0.0), 1.0)

    def get_delta(self, epoch, q_min=None):
        """delta at ``epoch`` (int >= 0), or None during warmup. ``q_min`` (>= 0, the
        smallest |Q| of the latest batch) is used only when ``adaptive_delta``."""
        epoch = check_count(epoch, "epoch")
        if q_min is not None:
            q_min = check_real(q_min, "q_min", low=0.0, allow_inf=True)
        if epoch < self.warmup_epochs:
            return None
        p = self.progress(epoch)
        init, final = self.delta_init, self.delta_final
        if self.schedule_type == "linear":
            delta = init + (final - init) * p
        elif self.schedule_type == "cosine":
            delta = final + 0.5 * (init - final) * (1.0 + math.cos(math.pi * p))
        else:
            delta = init * (final / init) ** p
        if self.adaptive_delta and q_min is not None and q_min > 0:
            delta = min(delta * max(1.0, ADAPTIVE_SCALE / q_min), 2.0 * init)
        return max(delta, self.min_delta)

    def upper_bound(self) -> float:
        """The largest value ``get_delta`` can return (the schedules are monotone)."""
        top = max(self.delta_init, self.delta_final, self.min_delta)
        return max(top, 2.0 * self.delta_init) if self.adaptive_delta else top

    # -------------------------------------------------------------- state protocol
    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, **dataclasses.asdict(self)}

    def load_state_dict(self, state) -> None:
        """Restore the fields from ``state`` (validated first; nothing changes on error)."""
        other = type(self).from_state_dict(state)
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, getattr(other, field.name))

    @classmethod
    def from_state_dict(cls, state) -> "DeltaSchedule":
        fields = [f.name for f in dataclasses.fields(cls)]
        state = check_state(state, cls.__name__, fields)
        return cls(**{k: state[k] for k in fields})
