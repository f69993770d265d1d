"""The whole benchmark suite as one ratio table (the same as ``zp-ref bench``).

    python benchmarks/suite.py [--quick] [--json PATH]
    python benchmarks/suite.py --sampling [--json PATH]   # the sampling table alone

For peer timings as NumPy users get them on machines that set OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE (docs/benchmarks.md), run it as
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/suite.py --sampling``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout

from zp_ref.apps.bench import bench_command  # noqa: E402

if __name__ == "__main__":
    print(bench_command(sys.argv[1:]))
