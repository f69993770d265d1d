"""Test-wide set-up: run the numba.cuda kernels under Numba's CUDA simulator when
this machine has no GPU (the variable must be set before numba is first imported), and
mark the tests of SLOW_TESTS ``slow`` (deselected by default, run in CI)."""
import os
import re
import shutil
from pathlib import Path

if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402

if not hasattr(np, "row_stack"):   # numba 0.68 looks it up; NumPy 2.5 removed it
    np.row_stack = np.vstack
import pytest  # noqa: E402

#: Tests marked ``slow`` here (pyproject's addopts deselect them: ``-m 'not slow'``; CI
#: runs them, .ci/run pass 2). Node-id patterns, ``*`` any text; each line's cost is
#: its wall time in a full run on 2 busy cores (2026-12-06, /tmp/durations.txt of the
#: issue-23 work). Every pattern must match a test of its file (checked at collection).
#: The fast selection keeps at least one test of every module (tests/test_selection.py).
SLOW_TESTS = (
    # CUDA-simulator runs of whole refinement trees and large draws (numpy/cpu stay fast)
    "tests/test_gpu_refinement.py::test_capped_selection_by_radix_sort_matches_the_oracle",  # 60 s
    "tests/test_gpu_refinement.py::test_cuda_sphere_trees_are_the_oracles_*",               # 190 s
    "tests/test_gpu_refinement.py::test_syncs_per_round_are_the_same_constant_*",           # 22 s
    "tests/test_gpu_refinement.py::test_a_failing_callable_in_a_capped_round_*",            # 14 s
    "tests/test_gpu_refinement.py::test_capped_rounds_select_on_the_device_*",              # 11 s
    "tests/test_gpu_refinement.py::test_cuda_leaves_are_the_numpy_oracles[bivariate_deg6_2d-*",  # 9 s
    "tests/test_gpu_refinement.py::test_cuda_leaves_are_the_numpy_oracles[simple_roots_1d-*",  # 7 s
    "tests/test_gpu_refinement.py::test_tree_arrays_grow_by_doubling_*",                    # 8 s
    "tests/test_gpu_refinement.py::test_capped_selection_scratch_stays_under_the_stated_bound[6-*",  # 34 s
    "tests/test_gpu_check.py::test_gpu_check_sim_mode_writes_a_complete_report",            # 53 s
    "tests/test_learner.py::test_ask_tell_loop_builds_the_runner_tree[cuda]",              # 46 s
    "tests/test_refinement_cap.py::test_capped_trees_are_identical_on_numpy_cpu_and_cuda[*",  # 145 s
    "tests/test_refinement_cap.py::test_capped_trees_equal_the_plain_python_capped_refinement[*-cuda]",  # 63 s
    "tests/test_naive_refinement.py::*-cuda]",                                              # 170 s
    "tests/test_naive_refinement.py::*[cuda]",
    "tests/test_sample_from_q.py::test_without_replacement_equals_the_two_step_call[cuda]",  # 27 s
    "tests/test_sample_from_q.py::test_indices_equal_the_two_step_call[*-cuda]",            # 90 s
    "tests/test_draw_table.py::test_repeated_draws_equal_sample_indices[cuda]",             # 16 s
    "tests/test_refinement.py::test_numpy_cpu_cuda_build_the_same_tree[double_root_1d-kw3]",  # 9 s
    "tests/test_refinement.py::test_numpy_cpu_cuda_build_the_same_tree[sphere_plane_3d-kw5]",  # 5 s
    # large matrices, trees and pools
    # the fork + 4-thread determinism check under the workqueue layer (tbb stays fast)
    "tests/test_determinism.py::test_forked_child_and_four_threads_draw_the_parents_indices[*workqueue]",  # 18 s
    "tests/test_refinement_cap.py::test_peak_memory_of_a_capped_6d_tree_*",                 # 10 s
    "tests/test_refinement.py::test_interval_flags_cells_whose_enclosure_overflows_and_warns_once[numpy-kw0]",  # 14 s
    "tests/test_memory.py::test_scratch_of_large_draws_is_not_kept_after_the_call",         # 9 s
    "tests/test_sampling.py::test_without_replacement_keys_mix_subnormal_and_huge_weights_on_every_backend",  # 10 s
    "tests/test_dask_bridge.py::test_large_pool_from_npy_files",                            # 34 s
    "tests/test_zarr_pool.py::test_zarr_pool_weights_and_draws_equal_in_memory",            # 31 s
    # notebook execution, Dask clusters, fresh interpreters that compile every kernel
    "tests/test_notebooks.py::test_notebook_executes*",                                     # 130 s
    "tests/test_docs.py::test_code_blocks_run[docs/scale.md]",                              # 21 s
    "tests/test_sampling.py::test_read_only_install_with_unwritable_home_*",                # 9 s
    "tests/test_sample_from_q.py::test_same_indices_with_one_or_two_numba_threads",         # 10 s
    # big properties and the long fuzz of saved states
    "tests/test_state.py::test_crafted_monitor_states_fail_at_load_or_never",               # 31 s
    "tests/test_state.py::test_concurrent_writers_always_leave_a_loadable_file",            # 8 s
)


def _pattern(text: str):
    return re.compile(".*".join(map(re.escape, text.split("*"))) + r"\Z")


_SLOW = [(p.split("::", 1)[0], _pattern(p), p) for p in SLOW_TESTS]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark SLOW_TESTS ``slow``; when whole files were collected (no ``::`` argument), a
    pattern that matches no test of a collected file is an error (a renamed test)."""
    matched, files = set(), set()
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        files.add(path)
        for file, regex, text in _SLOW:
            if file == path and regex.match(item.nodeid):
                item.add_marker(pytest.mark.slow)
                matched.add(text)
    if not any("::" in str(a) for a in config.args):
        stale = [t for f, _, t in _SLOW if f in files and t not in matched]
        if stale:
            raise pytest.UsageError(f"tests/conftest.py SLOW_TESTS: no test matches {stale}")

#: The anchor's golden vectors: ../shared/golden/anchor_v1.json beside the project,
#: else the copy in tests/data (identical bytes, checked below when both exist).
GOLDEN_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "anchor_v1.json"
GOLDEN_COPY = Path(__file__).resolve().parent / "data" / "anchor_v1.json"


@pytest.fixture(scope="session")
def golden():
    """The anchor's golden vectors as a dict."""
    import json
    path = GOLDEN_SHARED if GOLDEN_SHARED.exists() else GOLDEN_COPY
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def dask_cluster():
    """A distributed LocalCluster of 2 worker processes on loopback, shared by the Dask
    test modules (each opens its own client on it)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture
def rng():
    """A NumPy generator for building test inputs (never used inside zp_ref)."""
    return np.random.default_rng(20261125)


@pytest.fixture(autouse=True)
def _run_in_a_temporary_folder(tmp_path, monkeypatch):
    """Every test runs with a fresh temporary working directory, so default export
    paths (``diagnostics/``, ``runs/``) never land in the repository."""
    monkeypatch.chdir(tmp_path)


def _default_selection(session) -> bool:
    """True for a run of the whole fast selection in this process: ``pytest`` with no
    test arguments (or only ``tests``), no ``-k``, ``-m`` left at addopts' ``not slow``,
    not ``--collect-only``, no xdist."""
    cfg = session.config
    args = [os.path.normpath(os.path.join(cfg.invocation_params.dir, str(a))) for a in cfg.args]
    root = os.path.normpath(str(cfg.rootpath))
    whole = all(a in (root, os.path.join(root, "tests")) for a in args)
    return (whole and not cfg.option.keyword and cfg.option.markexpr == "not slow"
            and not cfg.option.collectonly and not hasattr(cfg, "workerinput")
            and not getattr(cfg.option, "numprocesses", None))   # xdist: tests ran elsewhere


#: Modules that import without any extra but that only code needing one uses (and so only
#: tests that skip without it reach): required only when one of the packages is installed.
REACHED_THROUGH_EXTRAS = {
    "zp_ref.bridges": ("torch", "dask"),            # the package of the torch/Dask bridges
    "zp_ref.checks": ("torch", "dask"),             # the bridges' argument checks
    "zp_ref.compat": ("torch",),                    # compat.legacy / compat.zeroproofml
    "zp_ref.apps.study_report": ("torch",),         # the training study's report
    "zp_ref.kernels.cpu_band_stream": ("dask",),    # stratified Dask chunk passes
}


def pytest_sessionfinish(session, exitstatus):
    """After the whole fast selection: every module of zp_ref whose imports are installed
    was imported by some test (a module only the slow tests reach fails the run)."""
    if not _default_selection(session) or exitstatus not in (0, 1):
        return
    import importlib
    import importlib.util
    import sys
    package = Path(__file__).resolve().parents[1] / "zp_ref"
    names = sorted(".".join(("zp_ref",) + p.relative_to(package).with_suffix("").parts)
                   .removesuffix(".__init__") for p in package.rglob("*.py"))
    installed = lambda pkg: importlib.util.find_spec(pkg) is not None  # noqa: E731
    missed = [n for n in names if n not in sys.modules
              and any(map(installed, REACHED_THROUGH_EXTRAS.get(n, ("numpy",))))]
    unreached = []
    for name in missed:
        try:
            importlib.import_module(name)
        except ImportError:        # needs an extra that is not installed: skipped with it
            continue
        unreached.append(name)
    if unreached:
        session.config.get_terminal_writer().line(
            f"tests/conftest.py: the fast selection imports no test of {unreached}; keep a "
            f"test of each module out of SLOW_TESTS", red=True)
        session.exitstatus = 1
