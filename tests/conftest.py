"""Test-wide set-up: run the numba.cuda kernels under Numba's CUDA simulator when
this machine has no GPU. The variable must be set before numba is first imported."""
import os
import shutil
from pathlib import Path

if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402

if not hasattr(np, "row_stack"):   # numba 0.68 looks it up; NumPy 2.5 removed it
    np.row_stack = np.vstack
import pytest  # noqa: E402

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
