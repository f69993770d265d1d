"""The notebooks are jupytext pairs: notebooks/NN_name.py (percent format, the file people
edit and review) and notebooks/NN_name.ipynb (committed executed, with outputs, for
readers). The fast tests check that every pair exists, is in sync (same cell types and
sources) and that the .ipynb is executed without errors; the slow tests execute each
notebook FROM ITS SCRIPT (jupytext.read -> nbclient, kernel python3, in a temporary
folder). 05 needs torch and is skipped only without it."""
import importlib.util
import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")      # the test extra; absent on bare GPU hosts
jupytext = pytest.importorskip("jupytext")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")                # the kernel the notebooks run on

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))
HAS_TORCH = importlib.util.find_spec("torch") is not None
CELL_TIMEOUT_S = 300
SYNC_HINT = "edit the .py, then run: jupytext --sync notebooks/{name}.py (and re-execute)"


def needs_torch(name):
    return pytest.mark.skipif(name.startswith("05") and not HAS_TORCH,
                              reason="notebook 05 needs torch (pip install zp_ref[torch])")


PARAMS = [pytest.param(n, marks=needs_torch(n)) for n in NAMES]


def cells_of(nb) -> list:
    return [(c.cell_type, c.source) for c in nb.cells]


def test_every_notebook_has_its_script_and_the_pairing_is_configured():
    assert NAMES == ["01_importance_sampling", "02_curriculum_bands", "03_active_refinement",
                     "04_diagnostics", "05_torch_training"]
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES
    config = jupytext.config.load_jupytext_configuration_file(str(NOTEBOOKS / "jupytext.toml"))
    assert config.formats == ["ipynb,py:percent"]
    assert not (NOTEBOOKS / "build_notebooks.py").exists()


@pytest.mark.parametrize("name", NAMES)
def test_script_is_percent_format_and_in_sync_with_the_executed_notebook(name):
    text = (NOTEBOOKS / f"{name}.py").read_text()
    assert jupytext.formats.guess_format(text, ".py")[0] == "percent"
    script = jupytext.reads(text, fmt="py:percent")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert cells_of(nb) == cells_of(script), f"{name}.ipynb differs from {name}.py: " + \
        SYNC_HINT.format(name=name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), "not executed"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        "executed out of order"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot embedded"


def test_sync_check_detects_an_edited_cell():
    """The comparison above fails when one cell of the script changes."""
    name = NAMES[0]
    script = jupytext.read(NOTEBOOKS / f"{name}.py")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    edited = jupytext.reads(jupytext.writes(script, fmt="py:percent").replace(
        "import numpy as np", "import numpy as numpy_edited", 1), fmt="py:percent")
    assert cells_of(nb) == cells_of(script) and cells_of(nb) != cells_of(edited)


@pytest.mark.slow
@pytest.mark.parametrize("name", PARAMS)
def test_notebook_executes_from_its_script(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = jupytext.read(NOTEBOOKS / f"{name}.py")
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on error
    seconds = time.perf_counter() - t0
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a notebook wrote into its folder"
    print(f"{name}: {seconds:.1f} s")
