"""Regenerate the pictures of README.md and docs/: ``python docs/img/make_images.py``.

quadtree.png: exactly what ``zp-ref refine --problem bivariate_deg6_2d`` draws (its
``tree.png``: the zero curves of a circle, a parabola and a hyperbola), with the
command's counts in quadtree.json (README's caption quotes them; tests/test_docs.py
checks it does).
band_fractions.png: the |Q| band fractions per epoch of ``zp-ref demo``.
"""
import json
import shutil
import tempfile
from pathlib import Path

from zp_ref.apps.cli import main

HERE = Path(__file__).resolve().parent
QUADTREE_COMMAND = ["refine", "--problem", "bivariate_deg6_2d"]


def quadtree(path: Path) -> dict:
    """Run the README's command, copy its tree.png to ``path``; return its counts."""
    with tempfile.TemporaryDirectory() as tmp:
        if main(QUADTREE_COMMAND + ["--out", tmp]) != 0:
            raise RuntimeError("zp-ref refine failed")
        shutil.copyfile(Path(tmp) / "tree.png", path)
        poles = json.loads((Path(tmp) / "poles.json").read_text())
    stats = poles["statistics"]
    return {"command": "zp-ref " + " ".join(QUADTREE_COMMAND), "n_leaves": stats["n_leaves"],
            "n_pole_estimates": len(poles["centres"]), "total_points": stats["total_points"]}


def band_fractions(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if main(["demo", "--out", tmp, "--no-progress"]) != 0:
            raise RuntimeError("zp-ref demo failed")
        shutil.copyfile(Path(tmp) / "band_fractions.png", path)


if __name__ == "__main__":
    counts = quadtree(HERE / "quadtree.png")
    (HERE / "quadtree.json").write_text(json.dumps(counts, indent=1) + "\n")
    band_fractions(HERE / "band_fractions.png")
    print(f"wrote {HERE / 'quadtree.png'} ({counts}) and {HERE / 'band_fractions.png'}")
