"""Sphinx configuration of the zp_ref site: the Markdown pages of docs/ (MyST), the API
reference generated from the numpy-style docstrings (docs/api/, autodoc + numpydoc) and
the executed notebooks of notebooks/ (myst-nb, not re-executed).

Build (warnings are errors):  python -m sphinx -W --keep-going -b html docs docs/_build/html
"""
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))                 # the zp_ref of this checkout, installed or not

project = "zp_ref"
author = "zp_ref contributors"
copyright = "2026, zp_ref contributors"
release = version = "0.1.0"

extensions = [
    "myst_nb",                 # Markdown pages (MyST) and .ipynb notebooks
    "sphinx.ext.autodoc",      # entries generated from the docstrings
    "numpydoc",                # ... written in the numpy style (Parameters / Returns)
    "sphinx.ext.mathjax",
]

# ---- sources
root_doc = "index"
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "data", "Thumbs.db", ".DS_Store"]
# notebooks/*.ipynb are copied into docs/notebooks/ (gitignored) before every build, so the
# site shows the committed executed notebooks; the .py twins are not sources.
NOTEBOOK_COPY = DOCS / "notebooks"


def copy_notebooks() -> None:
    if NOTEBOOK_COPY.exists():
        shutil.rmtree(NOTEBOOK_COPY)
    NOTEBOOK_COPY.mkdir()
    names = []
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        shutil.copyfile(nb, NOTEBOOK_COPY / nb.name)
        names.append(nb.stem)
    # a section page, so the site's sidebar lists the notebooks side by side
    (NOTEBOOK_COPY / "index.md").write_text(
        "# Notebooks\n\nExecuted notebooks, rendered with their outputs; each is a jupytext\n"
        "pair with a percent-format script in `notebooks/` (see the home page).\n\n"
        "```{toctree}\n:maxdepth: 1\n\n" + "\n".join(names) + "\n```\n")


copy_notebooks()

# ---- MyST and notebooks
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3           # [text](page.md#a-heading) links resolve
nb_execution_mode = "off"          # the committed outputs are rendered as they are
nb_merge_streams = True

# ---- autodoc + numpydoc
# The docstrings write |Q| and |x - pole| as plain text (readable in help()); in the site
# they are substitutions that print themselves.
rst_prolog = "\n".join(f".. |{s}| replace:: \\|{s}\\|" for s in ("Q", "q", "x - pole", "Q_m")) + "\n"
autodoc_member_order = "bysource"
autodoc_typehints = "none"         # types are stated in the Parameters sections
autodoc_default_options = {"members": True, "undoc-members": False,
                           "special-members": "", "inherited-members": False}
autodoc_mock_imports = []
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# Every top-level public function and class documents its parameters and (functions)
# its returns; methods (Class.method) are exempt from these two checks.
numpydoc_validation_checks = {"PR01", "PR02", "RT01"}
numpydoc_validation_exclude = {
    r"\.[A-Z]\w*\.[A-Za-z_]\w*$",
    # enums: their members are the documentation (listed with :undoc-members:)
    r"\.SamplingStrategy$", r"\.ScheduleType$", r"\.TRTag$",
    # compat.legacy is at the 600-line module cap (tests/test_imports.py): these adapters
    # take the parameters of the core class their docstring links to, documented there
    r"^zp_ref\.compat\.legacy\.(ImportanceSamplerConfig|ActiveSamplerConfig|DiagnosticMonitor"
    r"|IntegratedSampler|CurriculumScheduler|HybridGradientSchedule)$",
}

# ---- output
html_theme = "pydata_sphinx_theme"
html_title = "zp_ref"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2,
                      "header_links_before_dropdown": 4,
                      "secondary_sidebar_items": ["page-toc"]}
html_static_path = []
nitpicky = False
