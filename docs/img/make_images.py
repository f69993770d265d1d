"""Regenerate the pictures of README.md and docs/: ``python docs/img/make_images.py``.

quadtree.png: the refinement tree of the catalogue problem ``bivariate_deg6_2d`` (zero
curves of a circle, a parabola and a hyperbola) with its pole estimates.
band_fractions.png: the |Q| band fractions per epoch of ``zp-ref demo``.
"""
import shutil
import tempfile
from pathlib import Path

from zp_ref import plots, problems
from zp_ref.apps.cli import main
from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig

HERE = Path(__file__).resolve().parent


def quadtree(path: Path) -> None:
    p = problems.get("bivariate_deg6_2d")
    config = ActiveSamplerConfig(initial_grid_size=16, grid_bounds=p.bounds,
                                 max_refinement_level=10, max_grid_points=12_000,
                                 criterion="interval")
    tree = ActiveSampler(config, q=p.q, input_dim=2).refine()
    plots.plot_refinement_tree(tree).savefig(path, dpi=100)


def band_fractions(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if main(["demo", "--out", tmp, "--no-progress"]) != 0:
            raise RuntimeError("zp-ref demo failed")
        shutil.copyfile(Path(tmp) / "band_fractions.png", path)


if __name__ == "__main__":
    quadtree(HERE / "quadtree.png")
    band_fractions(HERE / "band_fractions.png")
    print(f"wrote {HERE / 'quadtree.png'} and {HERE / 'band_fractions.png'}")
