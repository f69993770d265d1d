"""DiagnosticMonitor: statistics (exact values), bounded histories, warnings, export /
load round trips, refusal of damaged exports, concurrent exporters."""
import enum
import json
import multiprocessing
import os
import warnings

import numpy as np
import pytest

from zp_ref.bands import band_counts
from zp_ref.diagnostics import (EXPORT_SCHEMA, DiagnosticConfig, DiagnosticMonitor,
                                QMinWarning, tag_counts)
from zp_ref.state import read_document

Q = np.array([2e-6, -5e-5, 5e-4, -0.05, 0.5, -2.0, 7.0, np.inf])


class TRTag(enum.Enum):          # stands in for ZeroProofML's tag enum
    REAL = 0
    PINF = 1
    NINF = 2
    PHI = 3


def monitor(tmp_path, **kw):
    kw.setdefault("export_path", str(tmp_path / "diag"))
    kw.setdefault("auto_export", False)
    kw.setdefault("monitor_q_min", False)
    return DiagnosticMonitor(DiagnosticConfig(**kw))


# ----------------------------------------------------------------- config
def test_config_defaults_are_the_anchors():
    c = DiagnosticConfig()
    assert (c.export_frequency, c.export_path, c.track_gradients, c.max_history_length,
            c.near_pole_threshold, c.far_pole_threshold, c.track_tag_distribution,
            c.monitor_q_min, c.q_min_warning_threshold) == \
        (10, "diagnostics", True, 1000, 0.1, 1.0, True, True, 1e-4)
    assert c.gradient_percentiles == [25.0, 50.0, 75.0, 90.0, 95.0, 99.0]
    assert c.band_edges == [1e-5, 1e-4, 1e-3, 1e-2]


@pytest.mark.parametrize("field,value,exc", [
    ("export_frequency", 0, ValueError), ("export_frequency", 2.0, TypeError),
    ("export_path", 3, TypeError), ("track_gradients", "yes", TypeError),
    ("gradient_percentiles", [50, 101], ValueError), ("gradient_percentiles", ["a"], TypeError),
    ("max_history_length", 0, ValueError), ("near_pole_threshold", 0.0, ValueError),
    ("near_pole_threshold", float("nan"), ValueError), ("far_pole_threshold", 0.01, ValueError),
    ("q_min_warning_threshold", -1.0, ValueError), ("band_edges", [1e-3, 1e-4], ValueError),
    ("band_edges", [], ValueError), ("max_snapshots", -1, ValueError),
    ("monitor_q_min", 1, TypeError), ("auto_export", None, TypeError)])
def test_config_rejects_bad_fields_naming_them(field, value, exc):
    with pytest.raises(exc, match=field):
        DiagnosticConfig(**{field: value})


def test_construction_does_not_create_the_export_folder(tmp_path):
    DiagnosticMonitor(DiagnosticConfig(export_path=str(tmp_path / "never")))
    assert not (tmp_path / "never").exists()


# ----------------------------------------------------------------- statistics
def test_update_q_statistics_exact(tmp_path):
    m = monitor(tmp_path)
    m.update(0, {"loss_train": 0.25}, q_values=Q)
    a = np.abs(Q)
    h = {k: v[-1] for k, v in m.history.items()}
    assert h["q_min"] == 2e-6
    assert h["q_mean"] == np.inf and np.isnan(h["q_std"])       # one |Q| is infinite
    assert h["near_pole_ratio"] == 4 / 8 and h["far_ratio"] == 3 / 8
    assert h["band_counts"] == [1, 1, 1, 0, 5] == band_counts(Q).tolist()
    assert h["loss_train"] == 0.25 and h["coverage_train"] is None
    m.update(1, q_values=Q[:-1])
    assert m.history["q_mean"][-1] == a[:-1].mean()
    assert m.history["q_std"][-1] == np.std(a[:-1], ddof=1)
    assert m.history["loss_train"][-1] is None                    # not carried forward


def test_q_with_nan_refused_and_nothing_recorded(tmp_path):
    m = monitor(tmp_path)
    before = json.dumps(m.state_dict())
    with pytest.raises(ValueError, match=r"q_values holds 1 NaN value\(s\), first at index 2"):
        m.update(0, {"loss_train": 1.0}, q_values=[1.0, 2.0, np.nan])
    assert json.dumps(m.state_dict()) == before


@pytest.mark.parametrize("tags", [
    [0, 1, 2, 3, 0, 3, 3],
    np.array([0, 1, 2, 3, 0, 3, 3], dtype=np.int8),
    ["REAL", "pinf", "Ninf", "PHI", "real", "phi", "PHI"],
    [TRTag.REAL, TRTag.PINF, TRTag.NINF, TRTag.PHI, TRTag.REAL, TRTag.PHI, TRTag.PHI]])
def test_tags_as_ints_names_or_enum(tmp_path, tags):
    assert tag_counts(tags).tolist() == [2, 1, 1, 3]
    m = monitor(tmp_path)
    m.update(0, tags=tags)
    assert [m.tag_history[k][-1] for k in ("n_real", "n_pinf", "n_ninf", "n_phi")] == [2, 1, 1, 3]
    assert m.tag_history["real_ratio"][-1] == 2 / 7
    s = m.get_summary()
    assert s["non_real_total"] == 5
    assert s["tag_totals"] == {"REAL": 2, "PINF": 1, "NINF": 1, "PHI": 3}


@pytest.mark.parametrize("bad", [[0, 4], ["REAL", "FOO"], [0, True], [0.0]])
def test_bad_tags_refused(tmp_path, bad):
    m = monitor(tmp_path)
    with pytest.raises(ValueError, match="tags"):
        m.update(0, tags=bad)
    assert len(m.history["epoch"]) == 0 and m.totals["n_updates"] == 0


def test_gradient_statistics_near_far(tmp_path):
    m = monitor(tmp_path, gradient_percentiles=[0, 50, 100])
    q = np.array([0.01, -0.05, 0.5, 2.0, -3.0])
    g1 = np.array([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])   # norms 5,1,1,2,0
    g2 = np.array([1.0, -3.0, 1.0, -2.0, 2.0])                                    # |g| 1,3,1,2,2
    m.update(0, q_values=q, gradients={"w": g1, "b": g2, "frozen": None})
    norm = np.array([3.0, 2.0, 1.0, 2.0, 1.0])
    g = {k: v[-1] for k, v in m.gradient_history.items()}
    assert g["near_pole_mean"] == 2.5 and g["near_pole_max"] == 3.0
    assert g["far_pole_mean"] == 1.5 and g["far_pole_max"] == 2.0
    assert g["gradient_ratio"] == 2.5 / 1.5
    assert g["percentiles"] == np.percentile(norm, [0, 50, 100]).tolist()
    m.update(1, q_values=np.array([5.0, 6.0]), gradients={"w": np.ones(2)})
    assert m.gradient_history["near_pole_mean"][-1] is None
    assert m.gradient_history["gradient_ratio"][-1] is None
    assert m.get_summary()["gradient_ratio_mean"] == 2.5 / 1.5


def test_gradient_inputs_checked(tmp_path):
    m = monitor(tmp_path)
    with pytest.raises(ValueError, match="gradients need q_values"):
        m.update(0, gradients={"w": np.ones(3)})
    with pytest.raises(ValueError, match=r"gradients\['w'\] has 3 rows, q_values has 2"):
        m.update(0, q_values=[1.0, 2.0], gradients={"w": np.ones(3)})
    assert m.totals["n_updates"] == 0


def test_metrics_columns(tmp_path):
    m = monitor(tmp_path)
    m.update(0, {"loss_train": 1.0})
    m.update(1, {"loss_train": 0.5, "lr": 1e-3})
    assert list(m.history["lr"]) == [None, 1e-3]
    with pytest.raises(TypeError, match=r"metrics\['loss_eval'\]"):
        m.update(2, {"loss_eval": "low"})
    with pytest.raises(ValueError, match="band_counts"):
        m.update(2, {"band_counts": 1.0})
    assert list(m.history["epoch"]) == [0, 1]


def test_history_is_bounded_but_q_min_global_is_not(tmp_path):
    m = monitor(tmp_path, max_history_length=3)
    for epoch, qmin in enumerate([1e-3, 1e-7, 1e-2, 1e-1, 5e-2]):
        m.update(epoch, q_values=[qmin, 1.0], tags=[0, 1])
        m.update_batch([qmin, 1.0])
    assert list(m.history["epoch"]) == [2, 3, 4]
    assert all(len(c) == 3 for t in (m.history, m.tag_history, m.gradient_history,
                                     m.batch_metrics) for c in t.values())
    s = m.get_summary()
    assert s["q_min_global"] == 1e-7 and s["q_min_recent"] == 5e-2
    assert s["tag_totals"] == {"REAL": 5, "PINF": 5, "NINF": 0, "PHI": 0}


def test_q_min_warning(tmp_path):
    m = monitor(tmp_path, monitor_q_min=True, q_min_warning_threshold=1e-4)
    with pytest.warns(QMinWarning, match=r"q_min = 5\.000e-05 at epoch 3"):
        m.update(3, q_values=[5e-5, 1.0])
    with pytest.warns(QMinWarning, match="at batch 0"):
        m.update_batch([5e-5, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.update(4, q_values=[2e-4, 1.0])
        monitor(tmp_path, monitor_q_min=False).update(0, q_values=[1e-9])


def test_update_batch_statistics(tmp_path):
    m = monitor(tmp_path)
    w = np.array([1.0, 1.0, 2.0, 4.0])
    m.update_batch([1e-6, 0.2, -0.05, 3.0], weights=w, indices=np.array([7, 7, 3, 9]),
                   epoch=2, tags=["REAL", "REAL", "PHI", "PINF"], loss=0.125)
    b = {k: v[-1] for k, v in m.batch_metrics.items()}
    assert b["ess"] == 64 / 22 and b["ess_fraction"] == 64 / 22 / 4
    assert b["max_weight_share"] == 0.5
    assert b["unique"] == 3 and b["diversity"] == 0.75
    assert (b["n"], b["epoch"], b["batch_idx"], b["loss"]) == (4, 2, 0, 0.125)
    assert (b["n_real"], b["n_pinf"], b["n_ninf"], b["n_phi"]) == (2, 1, 0, 1)
    assert b["near_pole_ratio"] == 0.5 and b["far_ratio"] == 0.25
    assert b["band_counts"] == [1, 0, 0, 0, 3]
    m.update_batch(q_min=3e-3, batch_idx=11)            # the anchor's form
    assert m.batch_metrics["q_min"][-1] == 3e-3 and m.batch_metrics["q_mean"][-1] is None
    assert m.batch_metrics["batch_idx"][-1] == 11 and m.get_summary()["n_batches"] == 2


@pytest.mark.parametrize("kwargs,match", [
    ({}, "needs q_values"),
    ({"q_values": [1.0, 2.0], "weights": [1.0]}, "weights has 1 entries, q_values 2"),
    ({"q_values": [1.0], "weights": [-1.0]}, "weights must be >= 0"),
    ({"q_values": [1.0], "weights": [0.0]}, "positive sum"),
    ({"q_values": [1.0, 2.0], "indices": np.array([1, 2, 3])}, "indices has 3 entries"),
    ({"q_values": [1.0], "indices": np.array([0.5])}, "integer"),
    ({"q_min": -1.0}, "q_min")])
def test_update_batch_bad_input(tmp_path, kwargs, match):
    m = monitor(tmp_path)
    with pytest.raises(ValueError, match=match):
        m.update_batch(**kwargs)
    assert m.totals["n_batches"] == 0 and len(m.batch_metrics["q_min"]) == 0


def test_summary_keys(tmp_path):
    m = monitor(tmp_path)
    assert m.get_summary() == {"n_updates": 0, "n_batches": 0}
    for e, cov in enumerate([0.5, 0.7, None]):
        m.update(e, {"coverage_train": cov}, q_values=[0.2 + e, 3.0])
    s = m.get_summary()
    assert s["coverage_current"] == 0.7 and s["coverage_mean"] == 0.6
    assert s["q_min_global"] == 0.2 and s["q_min_recent"] == 2.2
    assert s["q_mean_recent"] == 2.6 and s["near_pole_ratio_recent"] == 0.0


# ----------------------------------------------------------------- export / load
def run(m, epochs=4):
    for e in range(epochs):
        m.update(e, {"loss_train": 1.0 / (e + 1)}, p_values=np.arange(3.0) * e,
                 q_values=np.array([1e-3, 0.5, -2.0]) * (e + 1),
                 gradients={"w": np.array([1.0, 2.0, 3.0])}, tags=[0, 0, 3])
        m.update_batch(np.array([1e-3, 0.5]), weights=[1.0, 3.0], indices=np.array([1, 1]))


def test_export_round_trip(tmp_path):
    m = monitor(tmp_path, export_frequency=2, max_snapshots=1)
    run(m)
    path = m.export_diagnostics(4)
    name = path.name
    assert name.startswith(f"diagnostics_epoch000004_pid{os.getpid()}_") and name.endswith(".json")
    assert os.listdir(path.parent) == [name]                         # one file per export
    header = json.loads(path.read_bytes().partition(b"\n")[0])
    assert header["schema"] == EXPORT_SCHEMA == "zp_ref.diagnostics/1"
    doc = header["body"]
    assert doc["epoch"] == 4
    assert doc["history"]["epoch"] == [0, 1, 2, 3]
    assert doc["summary"] == m.get_summary()
    assert [s["epoch"] for s in doc["snapshots"]] == [2]           # max_snapshots=1
    back = DiagnosticMonitor.load(path)
    assert json.dumps(back.state_dict(), default=repr) == json.dumps(m.state_dict(), default=repr)
    snap = back.pq_snapshots[0]
    assert snap["p_values"].tolist() == [0.0, 2.0, 4.0]
    assert snap["q_values"].tolist() == [3e-3, 1.5, -6.0]
    assert back.get_summary() == m.get_summary()
    back.update(9, q_values=[1.0])                                   # it goes on recording
    assert list(back.history["epoch"]) == [0, 1, 2, 3, 9]


def test_auto_export_every_export_frequency(tmp_path):
    m = monitor(tmp_path, export_frequency=2, auto_export=True)
    run(m, epochs=5)
    files = sorted(os.listdir(tmp_path / "diag"))
    jsons = [f for f in files if f.endswith(".json")]
    assert [f.split("_")[1] for f in jsons] == ["epoch000000", "epoch000002", "epoch000004"]
    assert not [f for f in files if f.endswith(".tmp")]


def test_repeated_exports_never_overwrite(tmp_path):
    a, b = monitor(tmp_path), monitor(tmp_path)
    paths = [x.export_diagnostics(1) for x in (a, b, a, b)]
    assert len(set(paths)) == 4 and all(p.is_file() for p in paths)


def test_damaged_exports_refused(tmp_path):
    m = monitor(tmp_path, export_frequency=1)
    run(m, 2)
    path = m.export_diagnostics(2)
    data = path.read_bytes()
    path.write_bytes(data[:-20])                                     # arrays cut short
    with pytest.raises(ValueError, match="truncated"):
        DiagnosticMonitor.load(path)
    path.write_bytes(data[:data.index(b"\n") - 5])                   # header cut short
    with pytest.raises(ValueError, match="truncated"):
        DiagnosticMonitor.load(path)
    path.write_bytes(data.replace(b'"loss_train": [1.0, 0.5]', b'"loss_train": [1.0, 0.4]'))
    with pytest.raises(ValueError, match="modified"):
        DiagnosticMonitor.load(path)
    path.write_bytes(data.replace(EXPORT_SCHEMA.encode(), b"zp_ref.diagnostics/0"))
    with pytest.raises(ValueError, match="zp_ref.diagnostics/0"):
        DiagnosticMonitor.load(path)
    flipped = bytearray(data)
    flipped[-3] ^= 0x40                                              # one bit of an array
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="sha256"):
        DiagnosticMonitor.load(path)


def test_state_protocol(tmp_path):
    m = monitor(tmp_path)
    run(m, 3)
    state = m.state_dict()
    clone = DiagnosticMonitor.from_state_dict(state)
    assert json.dumps(clone.state_dict(), default=repr) == json.dumps(state, default=repr)
    other = monitor(tmp_path, near_pole_threshold=0.01)
    with pytest.raises(ValueError, match="differs from this monitor"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="version"):
        m.load_state_dict(dict(state, version=2))
    broken = json.loads(json.dumps(state, default=repr))
    broken["history"]["q_min"].append(1.0)
    with pytest.raises(ValueError, match="one length"):
        m.load_state_dict(broken)
    assert json.dumps(m.state_dict(), default=repr) == json.dumps(state, default=repr)


def _export_in_child(args):
    folder, tag, count = args
    m = DiagnosticMonitor(DiagnosticConfig(export_path=folder, auto_export=False,
                                           monitor_q_min=False))
    m.update(0, {"loss_train": float(tag)}, q_values=np.array([tag + 0.5]))
    return [str(m.export_diagnostics(7)) for _ in range(count)]


def test_two_processes_export_into_one_folder(tmp_path):
    folder = str(tmp_path / "shared")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_export_in_child, [(folder, 1, 5), (folder, 2, 5)])
    paths = [p for r in results for p in r]
    assert len(set(paths)) == 10
    assert len([f for f in os.listdir(folder) if f.endswith(".json")]) == 10
    for tag, r in zip((1, 2), results):
        for p in r:
            body = read_document(p, EXPORT_SCHEMA)
            assert body["history"]["loss_train"] == [float(tag)]


def test_torch_inputs_are_accepted(tmp_path):
    torch = pytest.importorskip("torch")
    m = monitor(tmp_path)
    q = torch.tensor([1e-3, -0.5, 2.0], dtype=torch.float64)
    m.update(0, {"loss_train": torch.tensor(0.25).item()}, q_values=q,
             gradients={"w": torch.ones(3, 2, dtype=torch.float64)},
             tags=torch.tensor([0, 1, 1]))
    assert m.history["q_min"][-1] == 1e-3
    assert [m.tag_history[k][-1] for k in ("n_real", "n_pinf")] == [1, 2]
    assert m.gradient_history["near_pole_mean"][-1] == np.sqrt(2.0)


# ----------------------------------------------------------------- all-or-nothing updates
def _snapshot(m):
    return json.dumps(m.state_dict(), default=lambda a: a.tolist())


@pytest.mark.parametrize("full", [False, True])
def test_failed_auto_export_records_nothing_and_a_retry_records_once(tmp_path, full):
    """The export folder cannot be created (a file is in the way): update raises, the
    monitor is exactly as before (also when the histories are full and the append
    pushed out the oldest row); after the obstacle is gone a retry records one row."""
    blocker = tmp_path / "blocked"
    blocker.write_text("a file, not a folder")
    m = monitor(tmp_path, export_path=str(blocker / "diag"), auto_export=True,
                export_frequency=2, max_history_length=3, max_snapshots=1)
    for epoch in (1, 3, 5) if full else (1,):
        m.update(epoch, {"loss_train": 0.5}, p_values=[1.0], q_values=[0.25], tags=[1])
    before = _snapshot(m)
    for _ in range(2):
        with pytest.raises(OSError):
            m.update(4, {"loss_train": 0.25, "new_metric": 1.0}, p_values=[2.0],
                     q_values=[1e-2], tags=[0])
        assert _snapshot(m) == before
    assert "new_metric" not in m.history
    blocker.unlink()
    m.update(4, {"loss_train": 0.25, "new_metric": 1.0}, p_values=[2.0], q_values=[1e-2],
             tags=[0])
    assert m.history["epoch"][-1] == 4 and list(m.history["epoch"]).count(4) == 1
    assert m.totals["n_updates"] == (4 if full else 2)
    assert m.totals["tag_totals"] == [1, 3 if full else 1, 0, 0]
    assert [s["epoch"] for s in m.pq_snapshots] == [4]
    assert len(os.listdir(blocker / "diag")) == 1


def test_a_warning_raised_as_error_records_nothing(tmp_path):
    m = monitor(tmp_path, monitor_q_min=True, q_min_warning_threshold=1e-3)
    before = _snapshot(m)
    with warnings.catch_warnings():
        warnings.simplefilter("error", QMinWarning)
        with pytest.raises(QMinWarning):
            m.update(0, q_values=[1e-5])
        with pytest.raises(QMinWarning):
            m.update_batch(np.array([1e-5]))
    assert _snapshot(m) == before
    with pytest.warns(QMinWarning):
        m.update(0, q_values=[1e-5])
    assert m.totals["n_updates"] == 1 and m.totals["q_min_global"] == 1e-5


@pytest.mark.parametrize("table, key, index, bad, message", [
    ("history", "coverage_train", 0, "x", r"\['coverage_train'\]\[0\] must be a real"),
    ("history", "band_counts", 0, [1, 2], r"must be a list of 5 integers"),
    ("tag_history", "n_real", 0, -1, r"\['n_real'\]\[0\] must be an integer >= 0"),
    ("gradient_history", "percentiles", 0, [1.0, "a"], "list of 6 real numbers"),
    ("batch_metrics", "ess", 0, {}, r"\['ess'\]\[0\] must be a real"),
    ("totals", "tag_totals", None, [1, 2, 3], "4 integers"),
    ("totals", "n_updates", None, 0, "must be an integer >= the 3 rows"),
    ("totals", "q_min_global", None, "low", "real >= 0 or None"),
])
def test_load_refuses_wrong_values_naming_the_field(tmp_path, table, key, index, bad, message):
    m = monitor(tmp_path)
    run(m, 3)
    state = json.loads(json.dumps(m.state_dict(), default=lambda a: a.tolist()))
    state["snapshots"] = []
    if index is None:
        state[table][key] = bad
    else:
        state[table][key][index] = bad
    with pytest.raises(ValueError, match=message):
        DiagnosticMonitor.from_state_dict(state)
