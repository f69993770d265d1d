"""zp_ref.plots on the Agg backend: figures are built, their artists hold the data."""
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PatchCollection, PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from zp_ref import plots  # noqa: E402
from zp_ref.diagnostics import DiagnosticConfig, DiagnosticMonitor  # noqa: E402

EDGES = [1e-5, 1e-4, 1e-3, 1e-2]


def monitored_run():
    m = DiagnosticMonitor(DiagnosticConfig(auto_export=False, monitor_q_min=False))
    q = np.array([5e-6, 5e-5, 5e-4, 5e-3, 0.5, 0.6, 0.7, 0.8])
    for epoch in range(4):
        qq = q if epoch != 2 else None                          # epoch 2: no Q measured
        m.update(epoch, {"loss_train": 1.0 / (epoch + 1), "coverage_train": 0.5 + 0.1 * epoch},
                 q_values=None if qq is None else qq * (epoch + 1))
    return m


def test_history_panels(tmp_path):
    m = monitored_run()
    fig = plots.plot_history(m)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    q_ax, ratio_ax, cov_ax, loss_ax = fig.axes
    assert [a.get_title() for a in fig.axes] == ["q_min", "pole proximity", "coverage", "loss"]
    assert q_ax.get_yscale() == "log" and loss_ax.get_yscale() == "log"
    assert ratio_ax.get_ylim() == (0.0, 1.0)
    q_line = q_ax.get_lines()[0]
    np.testing.assert_array_equal(q_line.get_xdata(), [0, 1, 2, 3])
    np.testing.assert_array_equal(q_line.get_ydata(), [5e-6, 1e-5, np.nan, 2e-5])
    assert q_ax.get_lines()[1].get_ydata()[0] == 1e-4          # the warning threshold
    assert [ln.get_label() for ln in ratio_ax.get_lines()] == ["near_pole_ratio", "far_ratio"]
    np.testing.assert_allclose(cov_ax.get_lines()[0].get_ydata(), [0.5, 0.6, 0.7, 0.8], rtol=1e-12)
    assert all(np.isnan(cov_ax.get_lines()[1].get_ydata()))     # coverage_eval never given
    assert loss_ax.get_xlabel() == "epoch"
    out = tmp_path / "h.png"
    fig.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_band_fractions_stacked():
    m = monitored_run()
    fig = plots.plot_band_fractions(m)
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == 3 * 5                                   # 3 epochs with Q x 5 bands
    x = np.array([b.get_x() + b.get_width() / 2 for b in bars])
    heights = np.array([b.get_height() for b in bars])
    for epoch in (0, 1, 3):
        np.testing.assert_allclose(heights[np.isclose(x, epoch)].sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(heights[np.isclose(x, 0)], [1 / 8, 1 / 8, 1 / 8, 1 / 8, 4 / 8],
                               rtol=1e-12)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == plots.band_labels(EDGES) and labels[0] == "B0: |Q| ≤ 1e-05"
    assert labels[4] == "B4: |Q| > 1e-02"
    fig2 = plots.plot_band_fractions(np.array([[1, 1, 0, 0, 2], [0, 0, 0, 0, 0]]), epochs=[5, 6])
    assert len(fig2.axes[0].patches) == 10
    with pytest.raises(ValueError, match="columns"):
        plots.plot_band_fractions(np.ones((2, 3)))


def test_q_histogram_pool_vs_batch():
    pool = np.r_[np.logspace(-7, 1, 400), 0.0, np.inf]
    batch = np.logspace(-6, -3, 50)
    fig = plots.plot_q_histogram(pool, batch, edges=EDGES, bins=40)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.patches) == 2                                 # pool (filled) + batch (step)
    vlines = [ln for ln in ax.get_lines() if ln.get_xdata()[0] == ln.get_xdata()[1]]
    assert sorted(ln.get_xdata()[0] for ln in vlines) == EDGES
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["pool (n=402), 1 at |Q| = 0 in first bin", "batch (n=50)"]
    xs = ax.patches[0].get_path().vertices[:, 0]
    np.testing.assert_allclose([xs.min(), xs.max()], [1e-7, 10.0], rtol=1e-12)
    # heights are fractions of the pool: the top of the filled step path sums to 1
    tops = ax.patches[0].get_path().vertices[1:-1:2, 1]
    np.testing.assert_allclose(tops.sum(), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        plots.plot_q_histogram([1.0, np.nan])


def test_curriculum_timeline_from_indices_and_delta():
    fig = plots.plot_curriculum_timeline([0, 0, 1, 1, 1, 2], names=["far", "mid", "near"],
                                         delta=[None, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    ax, twin = fig.axes
    bars = ax.collections
    assert len(bars) == 3
    starts = [b.get_paths()[0].vertices[:, 0].min() for b in bars]
    widths = [np.ptp(b.get_paths()[0].vertices[:, 0]) for b in bars]
    assert starts == [-0.5, 1.5, 4.5] and widths == [2.0, 3.0, 1.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["far", "mid", "near"]
    assert twin.get_yscale() == "log"
    np.testing.assert_array_equal(twin.get_lines()[0].get_ydata(),
                                  [np.nan, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    with pytest.raises(ValueError, match="delta has 2 entries"):
        plots.plot_curriculum_timeline([0, 1, 1], delta=[1.0, 2.0])
    with pytest.raises(ValueError, match="stages"):
        plots.plot_curriculum_timeline([0.5, 1.0])


def test_curriculum_timeline_from_band_curriculum():
    from zp_ref.curriculum import BandCurriculum
    from zp_ref.schedule import DeltaSchedule
    cur = BandCurriculum(epochs_per_stage=3, delta_schedule=DeltaSchedule(
        warmup_epochs=2, transition_epochs=5, delta_init=1e-5, delta_final=1e-7), seed=1,
        backend="numpy")
    q = np.logspace(-7, 0, 64)
    for epoch in range(8):
        cur.sample(q, 16, epoch)
        cur.update(epoch)
    expected = [cur.stage_at(e) for e in range(8)]
    assert plots.stages_per_epoch(cur).tolist() == expected == [0, 0, 0, 1, 1, 1, 2, 2]
    fig = plots.plot_curriculum_timeline(cur)
    ax, twin = fig.axes
    assert len(ax.collections) == 3
    assert len(ax.get_yticklabels()) == cur.n_stages
    d = twin.get_lines()[0].get_ydata()
    assert np.isnan(d[:2]).all() and d[2] == 1e-5


def test_refinement_tree_1d_and_2d():
    from zp_ref import problems
    from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
    p1 = problems.get("simple_roots_1d")
    a1 = ActiveSampler(ActiveSamplerConfig(initial_grid_size=16, grid_bounds=p1.bounds,
                                           max_refinement_level=5, criterion="sign"),
                       q=p1.q, input_dim=1, backend="numpy")
    a1.refine()
    fig = plots.plot_refinement_tree(a1)
    ax = fig.axes[0]
    leaves = a1.leaves()
    segs = [c for c in ax.collections if isinstance(c, LineCollection)][0].get_segments()
    assert len(segs) == len(leaves["level"])
    np.testing.assert_array_equal(sorted(s[0][0] for s in segs), np.sort(leaves["lo"][:, 0]))
    marks = [c for c in ax.collections if isinstance(c, PathCollection)][0].get_offsets()
    centres, _ = a1.pole_estimates()
    np.testing.assert_array_equal(np.asarray(marks)[:, 0], centres[:, 0])

    p2 = problems.get("circle_2d")
    a2 = ActiveSampler(ActiveSamplerConfig(initial_grid_size=4, grid_bounds=p2.bounds,
                                           max_refinement_level=4), q=p2.q, input_dim=2,
                       backend="numpy")
    a2.refine()
    fig2 = plots.plot_refinement_tree(a2)
    ax2 = fig2.axes[0]
    rects = [c for c in ax2.collections if isinstance(c, PatchCollection)]
    assert len(rects[0].get_paths()) == len(a2.leaves()["level"])
    assert len(rects[1].get_paths()) == len(a2.pole_estimates()[0])
    assert ax2.get_aspect() == 1.0


def test_no_pyplot_is_imported(tmp_path):
    code = ("import sys, numpy as np; from zp_ref import plots; "
            "plots.plot_q_histogram(np.logspace(-6, 0, 50)).savefig(sys.argv[1]); "
            "plots.plot_curriculum_timeline([0, 1]); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "out.png")], check=True)
    assert (tmp_path / "out.png").stat().st_size > 1000


def _renderer(fig):
    """Lay the figure out on an Agg canvas and return its renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _legend_labels(fig):
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for lg in legends for t in lg.get_texts()]


def test_refinement_tree_legend_is_outside_and_names_the_red_cells():
    """The legend of a tree drawn on its own figure is a figure legend right of the axes
    (it covers no data); it names the red sign-change leaves and the red half-width
    boxes; 2-D estimates beyond MAX_X_MARKERS are dots, x below, as the docs say."""
    from zp_ref import problems
    from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
    p2 = problems.get("circle_2d")
    a2 = ActiveSampler(ActiveSamplerConfig(initial_grid_size=4, grid_bounds=p2.bounds,
                                           max_refinement_level=4), q=p2.q, input_dim=2,
                       backend="numpy").refine()
    fig = plots.plot_refinement_tree(a2)
    n_est = len(a2.pole_estimates()[0])
    n_flag = int(a2.leaves()["sign_change"].sum())
    assert len(fig.legends) == 1 and fig.axes[0].get_legend() is None
    assert _legend_labels(fig) == [f"leaves ({a2.leaves()['level'].size - n_flag})",
                                   f"sign change ({n_flag})", "pole estimate ± half-width",
                                   f"pole estimates ({n_est})"]
    renderer = _renderer(fig)
    legend_box = fig.legends[0].get_window_extent(renderer)
    assert legend_box.x0 >= fig.axes[0].get_window_extent(renderer).x1
    scatter = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)][0]
    assert n_est > plots.MAX_X_MARKERS
    marker_path = scatter.get_paths()[0]
    assert len(marker_path.vertices) != 4      # a dot (circle path), not the 4-point x


def test_refinement_tree_1d_marks_level_30_brackets_with_their_widths():
    from zp_ref import problems
    from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
    p1 = problems.get("simple_roots_1d")
    a1 = ActiveSampler(ActiveSamplerConfig(grid_bounds=p1.bounds, criterion="interval",
                                           max_refinement_level=30), q=p1.q,
                       backend="numpy").refine()
    fig = plots.plot_refinement_tree(a1)
    leaves = a1.leaves()
    flagged = leaves["sign_change"]
    assert flagged.sum() == 8 and leaves["level"][flagged].max() == 30
    marks = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)][1]
    centres = 0.5 * (leaves["lo"][flagged, 0] + leaves["hi"][flagged, 0])
    np.testing.assert_array_equal(np.asarray(marks.get_offsets()),
                                  np.c_[centres, leaves["level"][flagged]])
    widths = (leaves["hi"] - leaves["lo"])[flagged, 0]
    label = [t for t in _legend_labels(fig) if t.startswith("sign change")][0]
    assert label.startswith("sign change (8), marked at centres")
    assert f"{widths.min():.1e}" in label


def test_histogram_has_a_y_label_and_an_outside_legend():
    fig = plots.plot_q_histogram(np.logspace(-6, 0, 50), np.logspace(-6, 0, 50)[::5])
    ax = fig.axes[0]
    assert ax.get_ylabel() == "fraction per bin"
    renderer = _renderer(fig)
    assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1


def test_history_panel_without_values_says_not_recorded_and_has_no_legend():
    m = DiagnosticMonitor(DiagnosticConfig(auto_export=False, monitor_q_min=False))
    for epoch in range(3):
        m.update(epoch, {}, q_values=np.array([1e-3, 0.5, 2.0]))
    q_ax, ratio_ax, cov_ax, loss_ax = plots.plot_history(m).axes
    for ax, keys in ((cov_ax, "coverage_train, coverage_eval"), (loss_ax, "loss_train, loss_eval")):
        assert ax.get_legend() is None
        assert [t.get_text() for t in ax.texts] == [f"not recorded ({keys})"]
    assert q_ax.get_legend() is not None and not q_ax.texts
