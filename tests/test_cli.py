"""The zp-ref command line: help and version, the demo's outputs, refine's table,
bench wiring, and one-line exit-2 errors for bad arguments."""
import importlib.util
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from zp_ref import __version__
from zp_ref.apps.cli import main

SUBCOMMANDS = ("demo", "refine", "bench", "study")
HAS_TORCH = importlib.util.find_spec("torch") is not None


def run(capsys, *argv):
    """(exit status, stdout, stderr) of ``zp-ref argv``."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ help and version
def test_top_level_help_lists_every_subcommand(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for name in SUBCOMMANDS:
        assert f"    {name} " in out


@pytest.mark.parametrize("command", [c for c in SUBCOMMANDS if c != "study"] +
                         (["study"] if HAS_TORCH else []))
def test_subcommand_help(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: zp-ref {command}")


def test_study_without_torch_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "zp_ref.apps.study", None)    # import fails as without torch
    code, out, err = run(capsys, "study", "--quick")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "zp_ref[torch]" in err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out == f"zp-ref {__version__}\n"


# ------------------------------------------------------------------ demo
DEMO_TINY = ("demo", "--epochs", "3", "--batches", "2", "--batch-size", "64",
             "--pool-size", "400", "--seed", "7")


def test_demo_writes_json_pngs_state_and_table(capsys, tmp_path):
    from zp_ref.curriculum import BandCurriculum
    from zp_ref.diagnostics import DiagnosticMonitor
    from zp_ref.state import load_state

    out_dir = tmp_path / "demo"
    code, out, err = run(capsys, *DEMO_TINY, "--out", str(out_dir))
    assert code == 0
    assert "zp-ref demo" not in err                          # no bar: stderr is no terminal
    summary = json.loads((out_dir / "summary.json").read_text())
    rows = summary["epochs"]
    # 3 epochs over 3 stages: one epoch each; stage 0 draws only the far band
    assert [r["stage"] for r in rows] == [0, 1, 2]
    assert rows[0]["band_fractions"] == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert rows[0]["far_ratio"] == 1.0                        # far = the far band B4
    for r in rows:
        assert math.isclose(sum(r["band_fractions"]), 1.0, rel_tol=1e-12)
    # the printed table holds the same numbers
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:3] == ["epoch", "stage", "q_min"])
    for r, line in zip(rows, lines[start + 2:start + 5]):
        cells = line.split()
        assert [int(cells[0]), int(cells[1])] == [r["epoch"], r["stage"]]
        assert cells[2] == f"{r['q_min']:.2e}"
        assert cells[4:7] == [f"{r['near_pole_ratio']:.2f}", f"{r['far_ratio']:.2f}",
                              f"{r['coverage_train']:.4f}"]
        assert cells[7:] == [f"{f:.2f}" for f in r["band_fractions"]]
    # diagnostics export: a loadable monitor with one history row per epoch
    exports = sorted(out_dir.glob("diagnostics_epoch000002_*.json"))
    assert len(exports) == 1
    monitor = DiagnosticMonitor.load(exports[0])
    assert list(monitor.history["epoch"]) == [0, 1, 2]
    assert len(monitor.batch_metrics["batch_idx"]) == 6
    assert [float(q) for q in monitor.history["q_min"]] == [r["q_min"] for r in rows]
    for key in ("coverage_train", "coverage_eval", "far_ratio"):         # no empty panels
        assert np.isfinite(np.asarray(monitor.history[key], dtype=float)).all(), key
    # the curriculum state: 3 epochs x 2 batches drawn
    curriculum = load_state(out_dir / "curriculum_state.json", BandCurriculum)
    assert curriculum.n_calls == 6 and curriculum.current_stage == 2
    for name in ("history", "band_fractions", "q_histogram", "curriculum", "tree"):
        data = (out_dir / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert set(summary["files"]) >= {"history.png", "tree.png", "curriculum_state.json",
                                     exports[0].name}


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_demo_progress_bar_only_on_a_terminal(capsys, tmp_path, monkeypatch):
    tty = _Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main([*DEMO_TINY, "--out", str(tmp_path / "tty")]) == 0
    assert "zp-ref demo" in tty.getvalue() and "3/3" in tty.getvalue()  # the tqdm bar
    tty = _Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main([*DEMO_TINY, "--out", str(tmp_path / "quiet"), "--no-progress"]) == 0
    assert "zp-ref demo" not in tty.getvalue()
    capsys.readouterr()


def test_demo_far_stage_draws_far_points(capsys, tmp_path):
    # uniform draws inside the band: the far stage's draws are not piled at its near edge
    assert main([*DEMO_TINY, "--out", str(tmp_path), "--no-progress"]) == 0
    capsys.readouterr()
    rows = json.loads((tmp_path / "summary.json").read_text())["epochs"]
    assert rows[0]["q_mean"] > 1.0 > 1e-2 * 10                          # far edge is 1e-2
    assert [r["far_ratio"] for r in rows] == [1.0] + [r["band_fractions"][-1] for r in rows[1:]]


def test_demo_is_deterministic_and_seed_dependent(capsys, tmp_path):
    def epochs(seed, folder):
        assert main([*DEMO_TINY[:-1], str(seed), "--out", str(tmp_path / folder),
                     "--no-progress"]) == 0
        capsys.readouterr()
        return json.loads((tmp_path / folder / "summary.json").read_text())["epochs"]
    a, b, c = epochs(7, "a"), epochs(7, "b"), epochs(8, "c")
    assert a == b
    assert [r["q_min"] for r in a] != [r["q_min"] for r in c]


def test_demo_gives_the_same_run_on_numpy_and_cpu(capsys, tmp_path):
    summaries = {}
    for backend in ("numpy", "cpu"):
        assert main([*DEMO_TINY, "--out", str(tmp_path / backend), "--no-progress",
                     "--backend", backend]) == 0
        summaries[backend] = json.loads((tmp_path / backend / "summary.json").read_text())
    capsys.readouterr()
    for key in ("epochs", "pole_estimates", "pool", "tree"):
        assert summaries["numpy"][key] == summaries["cpu"][key], key


def test_demo_on_a_2d_problem(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "--problem", "circle_2d", "--epochs", "2",
                       "--batches", "1", "--batch-size", "32", "--pool-size", "200",
                       "--max-points", "3000", "--out", str(tmp_path), "--no-progress")
    assert code == 0
    assert "problem circle_2d" in out
    assert (tmp_path / "tree.png").exists()


# ------------------------------------------------------------------ refine
def test_refine_polynomial_prints_certified_estimates(capsys, tmp_path):
    code, out, _ = run(capsys, "refine", "--coeffs=-2,0,1", "--out", str(tmp_path))
    assert code == 0
    poles = json.loads((tmp_path / "poles.json").read_text())
    centres = np.array(poles["centres"])[:, 0]
    half = np.array(poles["half_widths"])[:, 0]
    assert centres.size == 2
    assert np.all(np.abs(centres - [-math.sqrt(2), math.sqrt(2)]) <= half)   # enclosed
    assert np.all(half <= 1e-9)
    for c in centres:
        assert f"{c:.12g}" in out
    assert (tmp_path / "tree.png").read_bytes()[:4] == b"\x89PNG"


def test_refine_catalogue_double_root(capsys, tmp_path):
    code, out, _ = run(capsys, "refine", "--problem", "double_root_1d", "--out", str(tmp_path))
    assert code == 0
    poles = json.loads((tmp_path / "poles.json").read_text())
    centres = np.array(poles["centres"])[:, 0]
    half = np.array(poles["half_widths"])[:, 0]
    assert centres.size == 2
    assert np.all(np.abs(centres - [-1.0, 0.5]) <= half) and half.max() <= 1e-6
    assert "double_root_1d" in out


def test_refine_truncates_long_tables(capsys, tmp_path):
    code, out, _ = run(capsys, "refine", "--problem", "simple_roots_1d", "--max-rows", "3",
                       "--out", str(tmp_path))
    assert code == 0
    n = len(json.loads((tmp_path / "poles.json").read_text())["centres"])
    assert n == 8 and "... 5 more pole estimates" in out


# ------------------------------------------------------------------ bench wiring
def test_bench_prints_table_and_writes_json(capsys, tmp_path, monkeypatch):
    """The real harness and table on a tiny pool (the full sizes run in the bench tests)."""
    from zp_ref.apps import bench
    real = bench.sampling_benchmarks
    monkeypatch.setattr(bench, "sampling_benchmarks",
                        lambda quick: real(quick, n_pool=20_000, n_draws=2_000, repeats=1))
    monkeypatch.setattr(bench, "_refinement_module", lambda: None)
    path = tmp_path / "bench.json"
    code, out, _ = run(capsys, "bench", "--quick", "--json", str(path))
    assert code == 0
    result = json.loads(path.read_text())
    assert result["quick"] is True and len(result["rows"]) >= 3
    assert "ratio" in out and "NumPy weights + Generator.choice" in out


# ------------------------------------------------------------------ bad arguments
BAD = [
    ("demo", "--epochs", "0"),
    ("demo", "--epochs", "two"),
    ("demo", "--problem", "nope"),
    ("demo", "--seed", "-1"),
    ("demo", "--seed", str(2**64)),
    ("demo", "--weight-power", "nan"),
    ("demo", "--unknown-flag"),
    ("demo", "--max-level", "99", "--grid", "100000"),     # ValueError from the library
    ("refine", "--coeffs", "1,x"),
    ("refine", "--coeffs", "0,0"),
    ("refine", "--coeffs", "1,2", "--bounds", "3,1"),      # ValueError from the library
    ("refine", "--coeffs", "1,2", "--max-points", "1"),    # ValueError from the library
    ("refine", "--bounds", "1,2"),
    ("refine", "--problem", "circle_2d", "--coeffs", "1,2"),
    ("bench", "--json"),
    ("frobnicate",),
    (),
    ("--bogus",),
    ("--bogus", "demo"),
    ("refine", "--coeffs=1,,2"),
    ("refine", "--coeffs", "1,2,"),
    ("refine", "--coeffs", "1,2", "--bounds=-1,,1"),
    ("demo", "--pool-size", str(10 ** 15)),                 # more than any machine's memory
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a) or "(none)" for a in BAD])
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path, argv):
    code, out, err = run(capsys, *argv, *(["--out", str(tmp_path)] if argv[:1] in
                                          (("demo",), ("refine",)) else []))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err


def test_unknown_top_level_option_is_named(capsys):
    code, out, err = run(capsys, "--bogus")
    assert code == 2 and out == ""
    assert err == ("zp-ref: error: unrecognized option '--bogus'; zp-ref takes only -h, --help, "
                   "--version before a COMMAND (demo, refine, bench, study)\n")


def test_empty_coefficient_is_refused_not_dropped(capsys, tmp_path):
    code, _, err = run(capsys, "refine", "--coeffs=1,,2", "--out", str(tmp_path))
    assert code == 2 and "without empty entries, got '1,,2'" in err


@pytest.mark.parametrize("command", ["demo", "refine"])
def test_unwritable_out_is_refused_before_any_work(capsys, tmp_path, monkeypatch, command):
    from zp_ref.refinement import ActiveSampler

    def no_work(*args, **kwargs):
        raise AssertionError("refine() ran before --out was checked")
    monkeypatch.setattr(ActiveSampler, "refine", no_work)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, out, err = run(capsys, command, "--out", str(blocker / "sub"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--out" in err and "cannot be written" in err


def test_bench_bad_json_path_is_refused_before_the_suite(capsys, tmp_path, monkeypatch):
    from zp_ref.apps import bench

    def no_suite(*args, **kwargs):
        raise AssertionError("the suite ran before --json was checked")
    monkeypatch.setattr(bench, "run_suite", no_suite)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for bad, match in ((blocker / "out.json", "cannot be written"), (tmp_path, "is a folder")):
        code, out, err = run(capsys, "bench", "--json", str(bad))
        assert code == 2 and out == "" and err.count("\n") == 1 and match in err
        with pytest.raises(ValueError, match=match):                   # the library call too
            bench.bench_command(["--json", str(bad)])


def test_memory_error_during_a_command_is_one_line(capsys, tmp_path, monkeypatch):
    from zp_ref.apps import demo

    def exhausted(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(demo, "build_pool", exhausted)
    code, out, err = run(capsys, *DEMO_TINY, "--out", str(tmp_path), "--no-progress")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("zp-ref demo: error: out of memory")


def test_refine_reports_an_overflowed_enclosure_as_a_note(capsys, tmp_path):
    # Q = x^40 - x^39 on [-1e9, 1e9]: the enclosure overflows far out; zeros 0, 1 bracketed
    coeffs = ",".join(["0"] * 39 + ["-1", "1"])
    code, out, err = run(capsys, "refine", f"--coeffs={coeffs}", "--bounds=-1e9,1e9",
                         "--grid", "7", "--max-level", "20", "--out", str(tmp_path))
    assert code == 0 and "EnclosureOverflowWarning" not in err
    assert "note: refinement stopped with" in out and "overflowed float64" in out
    poles = json.loads((tmp_path / "poles.json").read_text())
    lo = np.array(poles["centres"])[:, 0] - np.array(poles["half_widths"])[:, 0]
    hi = np.array(poles["centres"])[:, 0] + np.array(poles["half_widths"])[:, 0]
    for root in (0.0, 1.0):
        assert ((lo <= root) & (root <= hi)).sum() == 1


def test_refine_2d_prints_regions_not_rows_at_one_x(capsys, tmp_path):
    code, out, _ = run(capsys, "refine", "--problem", "bivariate_deg6_2d", "--grid", "4",
                       "--max-level", "5", "--criterion", "sign", "--out", str(tmp_path))
    assert code == 0
    poles = json.loads((tmp_path / "poles.json").read_text())
    centres, half = np.array(poles["centres"]), np.array(poles["half_widths"])
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("#  cells"))
    assert lines[head].split() == ["#", "cells", "x0", "from", "x0", "to", "x1", "from", "x1",
                                   "to", "finest", "half-width", "max", "|Q(centre)|"]
    rows = [line.split() for line in lines[head + 2:] if line[:1].isdigit()]
    assert sum(int(r[1]) for r in rows) == len(centres)                 # every cell, once
    assert f"{len(centres)} pole estimates (flagged cells) in {len(rows)} connected" in out
    lo, hi = (centres - half).min(axis=0), (centres + half).max(axis=0)
    boxes = np.array([[float(v) for v in r[2:6]] for r in rows])
    assert np.allclose(boxes[:, [0, 2]].min(axis=0), lo, rtol=1e-5)
    assert np.allclose(boxes[:, [1, 3]].max(axis=0), hi, rtol=1e-5)


def test_demo_out_must_be_a_folder(capsys, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    code, _, err = run(capsys, "demo", "--out", str(target))
    assert code == 2 and err.count("\n") == 1 and "not a folder" in err


def test_console_entry_point_bad_argument_has_no_traceback():
    """Through a real process: status 2, one line on stderr."""
    proc = subprocess.run([sys.executable, "-m", "zp_ref.apps.cli", "refine", "--coeffs", "1,2",
                           "--bounds", "3,1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "grid_bounds" in proc.stderr
    assert proc.stdout == ""
