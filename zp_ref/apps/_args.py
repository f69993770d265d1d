"""Argument types, usage errors and the set-up shared by the ``zp-ref`` commands
(``demo``, ``refine``, ``study``): nothing here prints."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

#: Tree settings per dimension for ``demo`` and ``refine`` (cells per axis at level 0,
#: deepest level, cap on evaluated points).
TREE_DEFAULTS = {
    1: {"initial_grid_size": 64, "max_refinement_level": 30, "max_grid_points": 20_000},
    2: {"initial_grid_size": 16, "max_refinement_level": 10, "max_grid_points": 50_000},
    3: {"initial_grid_size": 8, "max_refinement_level": 6, "max_grid_points": 50_000},
}
DEFAULT_PROBLEM = "simple_roots_1d"
BACKENDS = ("auto", "numpy", "cpu", "cuda")
TOP_LEVEL_OPTIONS = ("-h", "--help", "--version")


class UsageError(ValueError):
    """A bad command-line value found by the CLI itself."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (status 2) instead of usage + message; usable by
    other zp-ref subcommands that parse their own options (e.g. zp_ref.apps.study)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------ argument types
def int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def seed_arg(text: str) -> int:
    value = int_at_least(0)(text)
    if value >= 2**64:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, 2**64), got {value}")
    return value


def positive_real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def reals(text: str, what: str) -> list:
    parts = [v.strip() for v in text.split(",")]
    if "" in parts:
        raise UsageError(f"{what} must be comma-separated numbers without empty entries, got "
                         f"{text!r}")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"{what} must be finite comma-separated numbers, got {text!r}")
    return values


# ------------------------------------------------------------------ shared set-up
def catalogue_problem(name: str):
    from .. import problems
    return problems.get(name)


def tree_config(dim: int, bounds, args):
    """ActiveSamplerConfig from TREE_DEFAULTS[dim] and the command-line overrides."""
    from ..refinement import ActiveSamplerConfig
    settings = dict(TREE_DEFAULTS[min(dim, 3)])
    for key, arg in (("initial_grid_size", "grid"), ("max_refinement_level", "max_level"),
                     ("max_grid_points", "max_points")):
        if getattr(args, arg) is not None:
            settings[key] = getattr(args, arg)
    return ActiveSamplerConfig(grid_bounds=tuple(tuple(b) for b in bounds),
                               criterion=args.criterion, **settings)


def out_dir(text: str) -> Path:
    """The output folder, created now and probed with a temporary file, so that a place
    that cannot be written is refused before any work."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {text!r} exists and is not a folder")
    check_writable_folder(out, "--out")
    return out


def check_writable_folder(folder: Path, option: str) -> None:
    """Create ``folder`` (and parents) and write and remove a probe file in it; a
    UsageError naming ``option`` when that fails."""
    import tempfile
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {str(folder)!r} cannot be written: "
                         f"{exc.strerror or exc}") from None


def check_memory(n_bytes: float, what: str) -> None:
    """Refuse a size whose arrays alone exceed the machine's physical memory."""
    import os
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if n_bytes > total:
        raise UsageError(f"{what} needs about {n_bytes / 2**30:.3g} GiB of arrays, more than "
                         f"this machine's {total / 2**30:.3g} GiB of memory")


def save_figure(fig, path: Path) -> Path:
    """``fig`` as a 110 dpi image at ``path``, written atomically (zp_ref._atomic)."""
    from .._atomic import atomic_savefig
    return atomic_savefig(fig, path, dpi=110)


def text_table(header: list, rows: list) -> str:
    """A plain text table, columns right-aligned to their widest cell."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
