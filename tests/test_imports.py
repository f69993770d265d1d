"""The import rules of zp_ref, read from the source with ``ast`` (imports inside
functions count as much as those at the top of a module):

- kernels are leaves: ``zp_ref/kernels/`` imports only numpy, numba, the standard
  library and ``zp_ref.kernels.*``;
- no import cycle among zp_ref's modules;
- only apps import apps (``zp_ref.apps.*``), and every module imports only its layer or
  lower ones (kernels < core < refinement, integrated < bridges, compat < apps);
- bridges (torch, dask) import only the public API: public modules of zp_ref and names
  without a leading underscore;
- no module of zp_ref/ is over 600 lines.
"""
import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "zp_ref"
MAX_LINES = 600
BRIDGES = ("zp_ref.bridges.torch", "zp_ref.torch_bridge", "zp_ref.bridges.dask",
           "zp_ref.bridges.dask_blocks", "zp_ref.bridges.dask_pools",
           "zp_ref.bridges.dask_strata", "zp_ref.dask_bridge", "zp_ref.bridges.torch_model",
           "zp_ref.bridges.torch_poles")
#: Third-party packages a kernel module may import (besides the standard library).
KERNEL_THIRD_PARTY = {"numpy", "numba"}

#: Known breaches, each with its reason; Stage 2 of the redesign (issue 15) removes them
#: (bridges/ gets public helpers; dask_bridge and study are split).
BRIDGE_EXCEPTIONS = {
    ("zp_ref.bridges.dask_blocks", "zp_ref.kernels.cpu_sampling"):
        "issue 16: chunks sum blocks and resolve draws with the in-memory kernels",
    ("zp_ref.bridges.dask_blocks", "zp_ref.kernels.cpu_sample_from_q"):
        "issue 16: block totals and draws straight from q in the chunks (sample_from_q's)",
    ("zp_ref.bridges.dask_blocks", "zp_ref.kernels.cpu_weights"):
        "issue 16: the partial blocks' weights by the cpu kernel, as the chunk's weights",
    ("zp_ref.bridges.dask_blocks", "zp_ref.kernels"): "threads_for around the kernel calls",
    ("zp_ref.bridges.dask_strata", "zp_ref.kernels.cpu_band_stream"):
        "issue 16: stratified chunk passes stream bands and weights, never storing them",
}
SIZE_EXCEPTIONS = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports_of(name: str) -> list:
    """(imported module or module.name, line) of every import in module ``name``,
    relative imports resolved; ``from m import x`` gives ``m.x`` when that is a module,
    else ``m.x`` too (a name), so callers check names and modules alike."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    here = name if is_package(name) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.append((module, node.lineno))
            found += [(f"{module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def internal_edges(name: str) -> set:
    """zp_ref modules that importing ``name`` runs: every imported module, and the
    packages above it that are not above ``name`` itself."""
    out = set()
    for target, _ in imports_of(name):
        if target.split(".")[0] != "zp_ref":
            continue
        while target not in MODULES:                 # a name inside a module
            target = target.rpartition(".")[0]
        parts = target.split(".")
        for k in range(1, len(parts) + 1):
            mod = ".".join(parts[:k])
            if mod in MODULES and not (name == mod or name.startswith(mod + ".")):
                out.add(mod)
    return out


def test_every_module_is_seen():
    """The walk finds the packages of the layout (a guard against a vacuous pass)."""
    for name in ("zp_ref", "zp_ref.kernels.common", "zp_ref.refinement.engine",
                 "zp_ref.apps.cli", "zp_ref.rng"):
        assert name in MODULES
    assert any(t == "zp_ref.kernels.counter_rng" for t, _ in imports_of("zp_ref.rng"))


def test_kernels_are_leaves():
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for name in MODULES:
        if not name.startswith("zp_ref.kernels"):
            continue
        for target, line in imports_of(name):
            top = target.split(".")[0]
            ok = (target.startswith("zp_ref.kernels") or top in KERNEL_THIRD_PARTY
                  or (top in stdlib and top != "zp_ref"))
            if not ok:
                bad.append(f"{name}:{line} imports {target}")
    assert bad == []


def _cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (or a self-import)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = {name: internal_edges(name) for name in MODULES}
    assert _cycles(graph) == []


def test_only_apps_import_apps():
    bad = [f"{name} imports {target}" for name in MODULES if not name.startswith("zp_ref.apps")
           for target in internal_edges(name) if target.startswith("zp_ref.apps")]
    assert bad == []


#: Layers of docs/index.md's map, bottom up; a module imports only its own layer or
#: lower ones. IntegratedSampler drives an ActiveSampler, so integrated sits with
#: refinement, and so does model_driven (its learner refines the model's Q with one); the
#: torch_bridge / dask_bridge aliases sit with the bridges.
LAYERS = ("kernels", "core", "refinement", "bridges, compat", "apps")


def layer_of(name: str) -> int:
    if name.startswith("zp_ref.kernels"):
        return 0
    if name.startswith("zp_ref.apps"):
        return 4
    if name.startswith(("zp_ref.bridges", "zp_ref.compat")) or name in BRIDGES:
        return 3
    if name.startswith("zp_ref.refinement") or name in ("zp_ref.integrated",
                                                         "zp_ref.model_driven"):
        return 2
    return 1


def test_layers_import_only_downwards():
    assert [layer_of(n) for n in ("zp_ref.kernels.common", "zp_ref.rng", "zp_ref.integrated",
                                  "zp_ref.bridges.torch", "zp_ref.apps.cli")] == [0, 1, 2, 3, 4]
    bad = [f"{name} ({LAYERS[layer_of(name)]}) imports {target} ({LAYERS[layer_of(target)]})"
           for name in MODULES for target in internal_edges(name)
           if layer_of(target) > layer_of(name)]
    assert bad == []


def _private(dotted: str) -> bool:
    return any(part.startswith("_") for part in dotted.split(".")[1:])


def _module_part(target: str) -> str:
    """The longest prefix of an imported dotted name that is a zp_ref module."""
    while target not in MODULES:
        target = target.rpartition(".")[0]
    return target


@pytest.mark.parametrize("bridge", BRIDGES)
def test_bridges_import_only_the_public_api(bridge):
    public = {n for n in MODULES if (n.count(".") == 1 or n.startswith("zp_ref.bridges."))
              and not _private(n) and n not in ("zp_ref.apps", "zp_ref.kernels")} | {"zp_ref"}
    bad = []
    for target, line in imports_of(bridge):
        if target.split(".")[0] != "zp_ref":
            continue
        module = _module_part(target)
        if (bridge, target) in BRIDGE_EXCEPTIONS or (bridge, module) in BRIDGE_EXCEPTIONS:
            continue
        if module not in public or _private(target):
            bad.append(f"{bridge}:{line} imports {target}")
    assert bad == []


def test_bridge_exceptions_are_still_needed():
    """Every listed exception names an import that exists (remove it once fixed)."""
    for bridge, target in BRIDGE_EXCEPTIONS:
        assert any(t == target for t, _ in imports_of(bridge)), (bridge, target)


def test_no_module_over_600_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    over = sorted(n for n, size in sizes.items() if size > MAX_LINES and n not in SIZE_EXCEPTIONS)
    assert over == []
    assert all(sizes[n] > MAX_LINES for n in SIZE_EXCEPTIONS), \
        "a listed exception is now short enough: remove it from SIZE_EXCEPTIONS"
