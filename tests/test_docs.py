"""Every ```python block of README.md and docs/*.md runs: the blocks of one file are
joined in order into one script and run in a fresh interpreter, in a temporary folder.
A page whose blocks import an optional extra (torch, dask, zarr, adaptive, zeroproofml,
pytorch_lightning, tensorboard) is skipped only when that package is missing."""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
OPTIONAL = ("torch", "dask", "distributed", "zarr", "adaptive", "zeroproofml", "pytorch_lightning",
            "tensorboard")
TIMEOUT_S = 300


def python_blocks(text: str) -> list:
    """(first line number, code) of every ```python block, in order."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


PAGES = [p for p in [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
         if p.exists() and python_blocks(p.read_text())]


def script_of(page: Path, blocks: list) -> str:
    """The blocks joined into one script; each starts with a marker naming its line."""
    parts = [f"# --- {page.name}, block at line {line}\n{code}" for line, code in blocks]
    return "\n".join(parts)


def missing_optional(code: str) -> list:
    imported = set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", code, re.M))
    return [m for m in OPTIONAL if m in imported and importlib.util.find_spec(m) is None]


def test_readme_and_index_exist():
    assert (ROOT / "README.md").exists() and (ROOT / "docs" / "index.md").exists()


def test_the_fence_parser_finds_blocks_and_their_lines():
    text = "intro\n```python\nx = 1\n```\ntext\n```bash\nls\n```\n```python\ny = x\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (10, "y = x\n")]


def test_readme_quick_start_is_exactly_the_two_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", section, re.S | re.M)
    assert blocks == [("bash", "pip install -e . && zp-ref demo\n"
                               "pip install -e \".[test]\" && python -m pytest -q\n")]


def quick_start_commands() -> list:
    """The command lines of README.md's Quick start block, in order."""
    section = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```bash\n(.*?)^```", section, re.S | re.M).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_quick_start_verbatim_before_any_extra():
    """.ci/run holds both Quick start lines verbatim, in order, in a fresh venv, and
    installs no extra (torch, dask, adaptive, zarr) before the second one."""
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = quick_start_commands()
    assert len(commands) == 2
    where = [ci.index(c) for c in commands]          # ValueError if a line drifted
    assert where == sorted(where)
    venv = next(i for i, line in enumerate(ci) if line.startswith("python3 -m venv"))
    before = ci[venv:where[1]]
    assert not [line for line in before if re.search(r"\b(torch|dask|adaptive|zarr)\b", line)
                and "install" in line], before
    runs = [line for line in ci if re.match(r"(quick_start_\d |run_suite .* quick_start_\d$)", line)]
    assert len(runs) == 2, runs                      # both commands are executed


def test_ci_pass_2_installs_every_extra_and_runs_every_test():
    """The README's command runs the fast selection (pyproject's addopts deselect
    ``slow``); .ci/run's last pytest call selects slow tests too, after installing every
    extra of pyproject that the tests import (and the pinned CPU torch)."""
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    addopts = project["tool"]["pytest"]["ini_options"]["addopts"]
    assert "-m 'not slow'" in addopts
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    last = quick_start_commands()[-1]
    after = ci[ci.index(last) + 1:]
    pytest_calls = [line for line in after if "python -m pytest" in line]
    every = 'python -m pytest -q -m "slow or not slow"'
    assert pytest_calls and pytest_calls[-1].endswith(every)
    assert f"`{every}`" in (ROOT / "README.md").read_text()      # the README says so
    installs = " ".join(line for line in after if "pip install" in line)
    assert "torch==2.13.0" in installs
    extras = re.search(r'-e "\.\[([\w,]+)\]"', installs).group(1).split(",")
    used = {"test", "dask", "zarr", "zeroproofml", "lightning", "tensorboard", "docs"}
    assert used <= set(extras) <= set(project["project"]["optional-dependencies"])
    assert "adaptive" in installs.split()
    build = [line for line in after if line.startswith("python -m sphinx")]
    assert build and build[0].startswith("python -m sphinx -W --keep-going -b html docs ")


def test_readme_quadtree_caption_states_the_counts_of_its_command():
    """The caption quotes the command and the counts make_images.py recorded for it."""
    import json
    counts = json.loads((ROOT / "docs" / "img" / "quadtree.json").read_text())
    readme = (ROOT / "README.md").read_text()
    caption = readme.split("](docs/img/quadtree.png)", 1)[1].split("\n\n", 2)[1]
    assert f"`{counts['command']}`" in caption
    for key in ("n_leaves", "total_points", "n_pole_estimates"):
        assert f"{counts[key]:,}" in caption, key


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md")),
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    """Every relative link and image of a page points at a file of the checkout."""
    missing = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        if not (page.parent / target.split("#", 1)[0]).exists():
            missing.append(target)
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_sampling_page_matches_the_library():
    """docs/sampling.md quotes rng.py's definition verbatim and every stream."""
    from zp_ref import rng
    from zp_ref.kernels.cpu_sampling import PREFIX_BLOCK
    text = (ROOT / "docs" / "sampling.md").read_text()
    definition = rng.__doc__.split("::", 1)[1].split("\n\n")[1]
    assert definition in text
    for name, stream in rng.STREAMS.items():
        shown = "2**63" if stream == 2**63 else str(stream)
        assert f"| `{name}` | {shown} |" in text
    assert f"PREFIX_BLOCK = {PREFIX_BLOCK}" in text


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_code_blocks_run(page, tmp_path):
    blocks = python_blocks(page.read_text())
    script = script_of(page, blocks)
    missing = missing_optional(script)
    if missing:
        pytest.skip(f"{page.name} needs {missing}, not installed")
    path = tmp_path / f"{page.stem}_blocks.py"
    path.write_text(script)
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, path.name], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, (
        f"{page.relative_to(ROOT)}: a code block failed (markers give the block's line in "
        f"the page)\n--- stderr ---\n{proc.stderr[-4000:]}\n--- script ---\n"
        + "\n".join(f"{i + 1:4d}  {line}" for i, line in enumerate(script.splitlines())))
