"""benchmarks/gpu_check.sh in simulator mode (ZP_GPU_CHECK_SIM=1): every step runs at
tiny sizes, the JSON report is complete and every parity check holds; a failing step
is recorded and the next ones still run."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _sim_env(out):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(ZP_GPU_CHECK_SIM="1", NUMBA_ENABLE_CUDASIM="1", OUT=str(out), PYTHON=sys.executable)
    return env


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_sim_mode_writes_a_complete_report(tmp_path):
    out = tmp_path / "out"
    res = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=_sim_env(out),
                         capture_output=True, text=True, timeout=240)
    report = json.loads((out / "gpu_check.json").read_text())
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert report["mode"] == "sim" and report["device"]["name"] == "CUDA simulator"
    assert all(s["status"] == "ok" for s in report["steps"].values()), report["steps"]
    assert list(report["steps"]) == ["device", "parity_weights", "parity_sampling",
                                     "timing_weights", "timing_sampling", "timing_big",
                                     "timing_from_q", "tree_syncs", "tree", "tree_deep",
                                     "tests"]
    expected_parity = {"weights_golden", "uniforms_2000", "draws_200_from_2000_vs_numpy_oracle",
                       "draws_200_from_2000_dynamic_range_1e12_zeros",
                       "draws_100_from_512_vs_cpu", "draws_100_from_2500_vs_cpu",
                       "sample_from_q_100_from_512_vs_cpu",
                       "two_step_100_from_512_equals_from_q",
                       "tree_2d_syncs_per_round_level2_at_most_2",
                       "tree_2d_leaves_level2_cuda_vs_cpu", "tree_2d_leaves_level3_cuda_vs_cpu",
                       "tree_2d_deg6_level2_cap60_leaves_cuda_vs_cpu",
                       "pytest_gpu_kernels"}
    assert expected_parity <= set(report["parity"]), sorted(report["parity"])
    assert all(report["parity"].values()) and report["all_parity_true"] is True
    assert not report["errors"], report["errors"]
    for name in ("device_to_device_copy_2000", "weights_kernel_2000_p2_unnormalised",
                 "ours_100_draws_from_512", "ours_100_draws_from_2500"):
        t = report["timings"][name]
        assert 0 < t["min"] <= t["median"] <= t["max"], (name, t)
    assert "GB_per_s" in report["timings"]["weights_kernel_2000_p2_unnormalised"]
    from_q = report["timings"]["sample_from_q_100_from_512"]
    assert from_q["speedup_vs_two_step"] == from_q["two_step_median"] / from_q["median"]
    syncs = report["info"]["tree_syncs_per_round"]
    assert syncs["per_round"][-1] == 1 and set(syncs["per_round"][:-1]) == {2}, syncs
    for level in (2, 3):
        cuda_t = report["timings"][f"tree_2d_deg6_level{level}_cuda"]
        cpu_t = report["timings"][f"tree_2d_deg6_level{level}_cpu"]
        assert cuda_t["n_leaves"] == cpu_t["n_leaves"] > 0
        assert cuda_t["host_syncs"] == 2 * (cuda_t["rounds"] - 1) + 1, cuda_t
        assert cuda_t["cpu_median_over_cuda"] == cpu_t["median"] / cuda_t["median"]
    capped = report["timings"]["tree_2d_deg6_level2_cap60_cuda"]
    assert capped["capped_rounds"] == 2 and capped["host_syncs"] == 2 + 3 + 2, capped
    assert "parity" in res.stdout and "wrote" in res.stdout


def test_failing_step_is_recorded_and_the_next_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("ZP_GPU_CHECK_SIM", "1")
    monkeypatch.setenv("OUT", str(tmp_path))
    spec = importlib.util.spec_from_file_location("gpu_check_under_test",
                                                  ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    monkeypatch.setattr(gpu_check, "STEPS", [("no_such_step", 60), ("device", 60)])
    monkeypatch.setattr(gpu_check, "TESTS_RESERVE", 0.0)
    report = gpu_check.run_all()
    assert report["steps"]["no_such_step"]["status"] == "failed (exit 1)"
    assert "no step 'no_such_step'" in report["errors"]["no_such_step"]
    assert report["steps"]["device"]["status"] == "ok"
    assert report["device"]["name"] == "CUDA simulator"
    assert json.loads((tmp_path / "gpu_check.json").read_text())["steps"] == report["steps"]
