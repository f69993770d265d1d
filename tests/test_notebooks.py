"""The notebooks: committed executed (outputs with plots, no errors), identical to what
notebooks/build_notebooks.py writes, and each re-executes without error (nbclient,
kernel python3, in a temporary copy). 05 needs torch and is skipped only without it."""
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")      # the test extra; absent on bare GPU hosts
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")                # the kernel the notebooks run on

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
from build_notebooks import NOTEBOOKS as CELLS, build, execute  # noqa: E402

NAMES = list(CELLS)
HAS_TORCH = importlib.util.find_spec("torch") is not None


def needs_torch(name):
    return pytest.mark.skipif(name.startswith("05") and not HAS_TORCH,
                              reason="notebook 05 needs torch (pip install zp_ref[torch])")


PARAMS = [pytest.param(n, marks=needs_torch(n)) for n in NAMES]


def test_every_notebook_is_committed():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_matches_the_builder_and_is_executed(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    expected = build(CELLS[name])
    assert [(c.cell_type, c.source) for c in nb.cells] == \
        [(c.cell_type, c.source) for c in expected.cells], \
        f"{name}.ipynb differs from build_notebooks.py: run python notebooks/build_notebooks.py {name[:2]}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "not executed"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot embedded"


@pytest.mark.slow
@pytest.mark.parametrize("name", PARAMS)
def test_notebook_executes(name, tmp_path, monkeypatch):
    copy = tmp_path / f"{name}.ipynb"
    shutil.copyfile(NOTEBOOKS / f"{name}.ipynb", copy)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    t0 = time.perf_counter()
    execute(nb, cwd=tmp_path)                 # raises CellExecutionError on any error
    seconds = time.perf_counter() - t0
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    print(f"{name}: {seconds:.1f} s")
