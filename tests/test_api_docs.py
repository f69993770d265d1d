"""The API reference (docs/api/*.rst) has an autodoc entry for every public name: every
name of ``zp_ref.__all__`` and of the ``__all__`` of the bridges, the model-driven
learner and the compat modules. The pages are parsed for their autodoc directives and
the modules' ``__all__`` are read with ``ast`` (no Sphinx, no torch, no dask needed); a
name a module re-exports with ``from .x import name`` counts as documented when its
entry in ``x`` exists. The slow test builds the site with warnings as errors when Sphinx
and the ``docs`` extra are installed, and checks that every entry is in the HTML."""
import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import zp_ref

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"
DIRECTIVE = re.compile(r"^\.\. auto(module|function|class|data|exception)::\s*(\S+)\s*$", re.M)
#: Modules whose every public name needs an entry (zp_ref itself: zp_ref.__all__).
PUBLIC_MODULES = ["zp_ref", "zp_ref.problems", "zp_ref.bridges.torch", "zp_ref.torch_bridge",
                  "zp_ref.bridges.torch_model", "zp_ref.model_driven", "zp_ref.bridges.dask",
                  "zp_ref.bridges.dask_pools", "zp_ref.bridges.dask_strata",
                  "zp_ref.dask_bridge", "zp_ref.compat.legacy", "zp_ref.compat.zeroproofml"]


def source_of(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def module_ast(module: str) -> ast.Module:
    return ast.parse(source_of(module).read_text())


def all_of(module: str) -> list:
    """The module's public names: ``__all__`` (a literal list in every module but zp_ref)."""
    if module == "zp_ref":
        return list(zp_ref.__all__)
    for node in module_ast(module).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                                for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{module} has no literal __all__")


def reexports(module: str) -> dict:
    """name -> the module it is imported from (``from .x import name``, resolved)."""
    package = module if source_of(module).name == "__init__.py" else module.rsplit(".", 1)[0]
    out = {}
    for node in module_ast(module).body:
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            origin = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                out[alias.asname or alias.name] = origin
    return out


def api_entries() -> dict:
    """target -> (directive kind, page) of every autodoc directive of docs/api/."""
    entries = {}
    for page in sorted(API.glob("*.rst")):
        for kind, target in DIRECTIVE.findall(page.read_text()):
            entries[target] = (kind, page.name)
    return entries


def documented(module: str, name: str, entries: dict) -> bool:
    if f"{module}.{name}" in entries:
        return True
    if module == "zp_ref" and name in zp_ref._SUBMODULES:
        return f"zp_ref.{name}" in entries
    origin = reexports(module).get(name)
    return origin is not None and source_of(origin).exists() and documented(origin, name, entries)


def undocumented(entries: dict) -> list:
    return [f"{m}.{n}" for m in PUBLIC_MODULES for n in all_of(m)
            if not documented(m, n, entries)]


def test_every_public_name_has_an_api_entry():
    entries = api_entries()
    assert len(entries) > 80
    assert undocumented(entries) == []


def test_every_public_module_has_a_module_entry():
    entries = api_entries()
    assert [m for m in PUBLIC_MODULES
            if m != "zp_ref" and entries.get(m, ("",))[0] != "module"] == []


def test_a_missing_entry_is_reported():
    entries = api_entries()
    for target in ("zp_ref.importance_weights", "zp_ref.bridges.torch.EpochLoader",
                   "zp_ref.bridges.dask_pools.to_zarr", "zp_ref.problems"):
        without = {t: v for t, v in entries.items() if t != target}
        assert any(u == target or u.endswith(target) for u in undocumented(without)), target
    # an alias module's name is reported under the alias when its origin's entry goes
    without = {t: v for t, v in entries.items() if t != "zp_ref.bridges.torch.as_tensor"}
    assert "zp_ref.torch_bridge.as_tensor" in undocumented(without)


def test_no_entry_names_a_missing_or_private_object():
    stale = []
    for target, (kind, page) in api_entries().items():
        if kind == "module":
            ok = source_of(target).exists()
        else:
            module, name = target.rsplit(".", 1)
            ok = not name.startswith("_") and source_of(module).exists() and (
                name in all_of(module) or name in reexports(module))
        if not ok:
            stale.append((page, target))
    assert stale == []


DOCS_DEPS = ("sphinx", "myst_nb", "numpydoc", "pydata_sphinx_theme")


@pytest.mark.slow
@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in DOCS_DEPS),
                    reason="the docs build needs the docs extra (pip install -e .[docs])")
def test_docs_build_with_warnings_as_errors_and_show_every_entry(tmp_path):
    html = tmp_path / "html"
    run = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q",
                          "-b", "html", "-d", str(tmp_path / "doctrees"), "docs", str(html)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-6000:]
    pages = {p.name: (html / "api" / p.with_suffix(".html").name).read_text()
             for p in API.glob("*.rst")}
    no_index = {t for p in API.glob("*.rst") for t in re.findall(
        r"^\.\. auto\w+::\s*(\S+)\s*\n\s+:no-index:", p.read_text(), re.M)}
    missing = [t for t, (kind, page) in api_entries().items()
               if f'id="{t}"' not in pages[page] and f'id="module-{t}"' not in pages[page]
               and not (t in no_index and f'>{t.rsplit(".", 1)[1]}</span>' in pages[page])]
    assert missing == []
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        page = (html / "notebooks" / f"{nb.stem}.html").read_text()
        assert "<img" in page, f"{nb.name}: no plot in the site"
