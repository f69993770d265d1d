"""DeltaSchedule: golden parity with ZeroProofML's get_delta, formulas, validation, state."""
import dataclasses
import enum
import json
import math

import pytest

from zp_ref.schedule import DeltaSchedule
from zp_ref.state import load_state, save_state

# ``golden``: the fixture of tests/conftest.py (../shared/golden/anchor_v1.json).


def test_golden_delta_schedule(golden):
    rows = 0
    for case in golden["delta_schedule"]:
        sched = DeltaSchedule(**case["config"])
        for row in case["rows"]:
            got = sched.get_delta(row["epoch"])
            if row["delta"] is None:
                assert got is None
            else:
                assert got == pytest.approx(row["delta"], rel=1e-12, abs=0)
            rows += 1
    assert rows == 50


@pytest.mark.parametrize("kind, mid", [
    ("linear", (1e-2 + 1e-6) / 2),
    ("cosine", (1e-2 + 1e-6) / 2),
    ("exponential", math.sqrt(1e-2 * 1e-6)),
])
def test_formulas(kind, mid):
    s = DeltaSchedule(warmup_epochs=3, transition_epochs=10, delta_init=1e-2, delta_final=1e-6,
                      schedule_type=kind)
    assert [s.get_delta(e) for e in range(3)] == [None, None, None]
    assert s.get_delta(3) == pytest.approx(1e-2, rel=1e-15)
    assert s.get_delta(8) == pytest.approx(mid, rel=1e-14)
    assert s.get_delta(13) == pytest.approx(1e-6, rel=1e-12)
    assert s.get_delta(1000) == s.get_delta(13)


def test_schedule_type_spellings():
    class ScheduleType(enum.Enum):          # the anchor's enum shape
        LINEAR = enum.auto()
        COSINE = enum.auto()

    assert DeltaSchedule(schedule_type="LINEAR").schedule_type == "linear"
    assert DeltaSchedule(schedule_type="Cosine").schedule_type == "cosine"
    assert DeltaSchedule(schedule_type=ScheduleType.LINEAR).schedule_type == "linear"
    with pytest.raises(ValueError, match="schedule_type must be one of"):
        DeltaSchedule(schedule_type="step")


def test_no_transition_and_floor():
    s = DeltaSchedule(warmup_epochs=2, transition_epochs=0, delta_init=1e-2, delta_final=1e-9,
                      schedule_type="linear", min_delta=1e-8)
    assert s.get_delta(1) is None
    assert s.get_delta(2) == 1e-8                 # p = 1 at once, floored at min_delta


def test_adaptive_rule():
    s = DeltaSchedule(transition_epochs=10, delta_init=1e-2, delta_final=1e-6,
                      schedule_type="exponential", adaptive_delta=True)
    base = s.get_delta(5)
    assert base == pytest.approx(1e-4, rel=1e-12)
    assert s.get_delta(5, q_min=None) == base
    assert s.get_delta(5, q_min=0.0) == base              # q_min must be > 0
    assert s.get_delta(5, q_min=0.5) == base              # max(1, 0.1/0.5) = 1
    assert s.get_delta(5, q_min=1e-2) == pytest.approx(1e-3, rel=1e-12)  # x10
    assert s.get_delta(5, q_min=1e-9) == 2e-2             # capped at 2 * delta_init
    assert s.get_delta(5, q_min=math.inf) == base
    off = dataclasses.replace(s, adaptive_delta=False)
    assert off.get_delta(5, q_min=1e-9) == base
    assert s.upper_bound() == 2e-2 and off.upper_bound() == 1e-2


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(warmup_epochs=-1), ValueError, "warmup_epochs"),
    (dict(transition_epochs=1.5), TypeError, "transition_epochs"),
    (dict(delta_init=0.0), ValueError, "delta_init"),
    (dict(delta_final=-1e-6), ValueError, "delta_final"),
    (dict(delta_final=math.nan), ValueError, "delta_final"),
    (dict(delta_init=math.inf), ValueError, "delta_init"),
    (dict(min_delta=-1.0), ValueError, "min_delta"),
    (dict(adaptive_delta="yes"), TypeError, "adaptive_delta"),
    (dict(schedule_type=3), ValueError, "schedule_type"),
])
def test_bad_config(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        DeltaSchedule(**kwargs)


@pytest.mark.parametrize("args, exc, name", [
    ((-1,), ValueError, "epoch"), ((1.0,), TypeError, "epoch"), ((True,), TypeError, "epoch"),
    ((5, math.nan), ValueError, "q_min"), ((5, -1e-3), ValueError, "q_min"),
    ((5, "0.1"), TypeError, "q_min"),
])
def test_bad_get_delta_args(args, exc, name):
    with pytest.raises(exc, match=name):
        DeltaSchedule().get_delta(*args)


def test_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DeltaSchedule().delta_init = 1.0


def test_state_round_trip(tmp_path):
    s = DeltaSchedule(warmup_epochs=2, transition_epochs=7, delta_init=3e-3, delta_final=2e-7,
                      schedule_type="COSINE", min_delta=1e-9, adaptive_delta=True)
    state = s.state_dict()
    assert state["version"] == 1 and state["schedule_type"] == "cosine"
    assert DeltaSchedule.from_state_dict(state) == s
    t = DeltaSchedule()
    t.load_state_dict(state)
    assert t == s
    loaded = load_state(save_state(tmp_path / "delta.json", s))
    assert loaded == s
    assert [loaded.get_delta(e, q_min=1e-4) for e in range(12)] == \
           [s.get_delta(e, q_min=1e-4) for e in range(12)]


@pytest.mark.parametrize("edit, exc", [
    (lambda st: st.update(version=2), ValueError),
    (lambda st: st.pop("min_delta"), ValueError),
    (lambda st: st.update(extra=1), ValueError),
    (lambda st: st.update(delta_init=-1.0), ValueError),
    (lambda st: st.update(schedule_type="step"), ValueError),
])
def test_bad_state_leaves_object_unchanged(edit, exc):
    s = DeltaSchedule(delta_init=5e-3)
    state = DeltaSchedule(delta_init=7e-3).state_dict()
    edit(state)
    with pytest.raises(exc):
        s.load_state_dict(state)
    assert s == DeltaSchedule(delta_init=5e-3)
    with pytest.raises(TypeError, match="must be a dict"):
        s.load_state_dict([1, 2])
