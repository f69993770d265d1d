"""DiagnosticMonitor's TensorBoard output (zp_ref.diagnostics_tensorboard): the tags, steps
and values written to a duck-typed writer (no torch needed), and the same run through
torch's SummaryWriter read back from the event file with tensorboard's EventAccumulator."""
import math

import numpy as np
import pytest

from zp_ref.diagnostics import DiagnosticConfig, DiagnosticMonitor
from zp_ref.diagnostics_tensorboard import BATCH_SCALARS, EPOCH_SCALARS

N_EPOCHS, N_BATCHES, BATCH = 3, 4, 50


class RecordingWriter:
    """Stands in for a SummaryWriter: keeps every call."""

    def __init__(self):
        self.scalars, self.histograms = [], []

    def add_scalar(self, tag, value, global_step):
        self.scalars.append((tag, value, global_step))

    def add_histogram(self, tag, values, global_step):
        self.histograms.append((tag, np.array(values), global_step))


def monitored_run(writer, tmp_path):
    """3 epochs of 4 weighted batches and one epoch row each, on q = x^2 - 0.25 (poles at
    +-0.5) with one exact zero at x = 0.5 in epoch 2's pool (|Q| = 0: no log10)."""
    monitor = DiagnosticMonitor(DiagnosticConfig(export_path=str(tmp_path), monitor_q_min=False,
                                                 auto_export=False), writer=writer)
    x = np.linspace(-1.0, 1.0, 401)
    q = x**2 - 0.25
    pools = []
    for epoch in range(N_EPOCHS):
        for b in range(N_BATCHES):
            idx = (np.arange(BATCH) * 7 + 13 * (epoch * N_BATCHES + b)) % x.size
            weights = 1.0 / (np.abs(q[idx]) + 0.05)
            monitor.update_batch(q[idx], weights=weights, indices=idx, epoch=epoch,
                                 loss=0.5 / (b + 1))
        pool = np.arange(epoch, x.size, 3)
        pools.append(q[pool])
        monitor.update(epoch, {"loss_train": 1.0 / (epoch + 1), "coverage_train": 0.8,
                               "my_metric": float(epoch) ** 2},
                       q_values=q[pool], tags=np.zeros(pool.size, dtype=int))
    return monitor, pools


def expected_scalars(monitor) -> dict:
    """{(tag, step): value} the monitor's histories say must be written."""
    out = {}
    hist, batches = monitor.history, monitor.batch_metrics
    for i, epoch in enumerate(hist["epoch"]):
        for key in EPOCH_SCALARS:
            table = monitor.tag_history if key == "real_ratio" else hist
            if key in table and table[key][i] is not None:
                out[(f"diagnostics/{key}", epoch)] = table[key][i]
        counts = hist["band_counts"][i]
        for k, c in enumerate(counts):
            out[(f"diagnostics/band_fraction/B{k}", epoch)] = c / sum(counts)
        rows = [j for j, e in enumerate(batches["epoch"]) if e == epoch]
        out[("diagnostics/ess_mean", epoch)] = np.mean([batches["ess"][j] for j in rows])
        out[("diagnostics/ess_fraction_mean", epoch)] = np.mean(
            [batches["ess_fraction"][j] for j in rows])
        for key in ("loss_train", "coverage_train", "my_metric"):
            out[(f"diagnostics/metrics/{key}", epoch)] = hist[key][i]
    for j, step in enumerate(batches["batch_idx"]):
        for key in BATCH_SCALARS:
            out[(f"diagnostics/batch/{key}", step)] = batches[key][j]
    return out


def test_writer_gets_every_tag_at_its_step_with_the_monitors_values(tmp_path):
    writer = RecordingWriter()
    monitor, pools = monitored_run(writer, tmp_path)
    written = {(tag, step): value for tag, value, step in writer.scalars}
    assert len(written) == len(writer.scalars)           # no (tag, step) written twice
    expected = expected_scalars(monitor)
    assert sorted(written) == sorted(expected)
    for key, value in expected.items():
        assert written[key] == pytest.approx(value, rel=1e-15, abs=0), key
    # five bands (four default edges), 12 batch rows, 3 epoch rows
    assert len([k for k in written if "band_fraction" in k[0]]) == 5 * N_EPOCHS
    assert sorted({s for t, s in written if "/batch/" in t}) == list(range(N_EPOCHS * N_BATCHES))
    hist = {(tag, step): values for tag, values, step in writer.histograms}
    assert sorted(hist) == sorted((t, e) for e in range(N_EPOCHS)
                                  for t in ("diagnostics/abs_q", "diagnostics/log10_abs_q"))
    for epoch, q in enumerate(pools):
        np.testing.assert_array_equal(hist[("diagnostics/abs_q", epoch)], np.abs(q))
        positive = np.abs(q)[np.abs(q) > 0]
        np.testing.assert_array_equal(hist[("diagnostics/log10_abs_q", epoch)], np.log10(positive))
    assert any((np.abs(q) == 0).any() for q in pools)   # the log10 filter was exercised


def test_nan_and_missing_values_are_not_written_and_inf_is(tmp_path):
    writer = RecordingWriter()
    monitor = DiagnosticMonitor(DiagnosticConfig(export_path=str(tmp_path), auto_export=False,
                                                 monitor_q_min=False), writer=writer)
    monitor.update(0, q_values=np.array([np.inf, 2.0, -0.5]))    # q_mean inf, q_std NaN
    monitor.update_batch(q_min=0.25)                              # the anchor's form
    tags = {tag: (value, step) for tag, value, step in writer.scalars}
    assert tags["diagnostics/q_mean"] == (math.inf, 0)
    assert math.isnan(monitor.history["q_std"][0]) and "diagnostics/q_std" not in tags
    assert "diagnostics/ess_mean" not in tags                     # no weighted batch
    assert tags["diagnostics/batch/q_min"] == (0.25, 0)
    assert [t for t in tags if t.startswith("diagnostics/batch/")] == ["diagnostics/batch/q_min"]
    (tag, values, step), _ = writer.histograms
    np.testing.assert_array_equal(values, [2.0, 0.5])             # finite |Q| only
    assert (tag, step) == ("diagnostics/abs_q", 0)


def test_set_writer_prefix_detach_and_state_unchanged(tmp_path):
    writer = RecordingWriter()
    plain, _ = monitored_run(None, tmp_path)
    monitor = DiagnosticMonitor(DiagnosticConfig(export_path=str(tmp_path), auto_export=False,
                                                 monitor_q_min=False))
    monitor.set_writer(writer, tag_prefix="run1/zp")
    monitor.update(0, q_values=np.array([0.5, 2.0]))
    assert {t for t, _, _ in writer.scalars} >= {"run1/zp/q_min", "run1/zp/band_fraction/B4"}
    monitor.set_writer(None)
    monitor.update(1, q_values=np.array([0.5, 2.0]))
    assert {s for _, _, s in writer.scalars} == {0}                # nothing after detaching
    with_writer, _ = monitored_run(RecordingWriter(), tmp_path)
    assert with_writer.state_dict() == plain.state_dict()          # the writer is not state


@pytest.mark.parametrize("writer", [object(), "runs/", type("W", (), {"add_scalar": print})()])
def test_a_writer_without_both_methods_is_a_type_error(writer):
    with pytest.raises(TypeError, match="add_histogram"):
        DiagnosticMonitor(writer=writer)


@pytest.mark.parametrize("prefix", ["", "/x", "x/", 3])
def test_bad_tag_prefix_is_a_value_error_and_keeps_the_old_writer(prefix):
    writer = RecordingWriter()
    monitor = DiagnosticMonitor(writer=writer)
    with pytest.raises(ValueError, match="tag_prefix"):
        monitor.set_writer(RecordingWriter(), tag_prefix=prefix)
    assert monitor.tensorboard.writer is writer


def test_summary_writer_event_file_reads_back_exactly(tmp_path):
    """torch's SummaryWriter writes simple_value scalars (float32): every value read back
    equals the float32 rounding of the monitor's float64 value exactly (rtol 0); the
    histograms keep num, min, max exactly and sum to rtol 1e-12."""
    tensorboard = pytest.importorskip("torch.utils.tensorboard")
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    log_dir = tmp_path / "tb"
    writer = tensorboard.SummaryWriter(log_dir=str(log_dir))
    monitor, pools = monitored_run(writer, tmp_path / "exports")
    writer.close()
    acc = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.SCALARS: 0,
                                     event_accumulator.HISTOGRAMS: 0})
    acc.Reload()
    expected = expected_scalars(monitor)
    assert sorted(acc.Tags()["scalars"]) == sorted({tag for tag, _ in expected})
    read = {(tag, e.step): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}
    assert sorted(read) == sorted(expected)
    for key, value in expected.items():
        assert read[key] == float(np.float32(value)), key
    assert sorted(acc.Tags()["histograms"]) == ["diagnostics/abs_q", "diagnostics/log10_abs_q"]
    for tag, transform in (("diagnostics/abs_q", np.abs),
                           ("diagnostics/log10_abs_q", lambda q: np.log10(np.abs(q)[q != 0]))):
        events = acc.Histograms(tag)
        assert [e.step for e in events] == list(range(N_EPOCHS))
        for e, q in zip(events, pools):
            v, h = transform(q), e.histogram_value
            assert (h.num, h.min, h.max) == (v.size, v.min(), v.max())
            assert h.sum == pytest.approx(v.sum(), rel=1e-12)
