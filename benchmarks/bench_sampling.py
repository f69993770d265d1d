"""Weights + weighted draws (N=10**7, B=10**6, p=2): zp_ref's cpu backend against
NumPy (Generator.choice) and PyTorch CPU (torch.multinomial), and the weight pass
against np.sum. The benchmark itself lives in zp_ref.apps.bench, so that the installed
``zp-ref bench`` runs it too.

    python benchmarks/bench_sampling.py [--quick] [--json PATH]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout

from zp_ref.apps import bench  # noqa: E402


def run(quick: bool = False) -> list:
    """Rows of the sampling benchmark (schema: zp_ref.bench)."""
    return bench.sampling_benchmarks(quick)


if __name__ == "__main__":
    print(bench.bench_command(sys.argv[1:], include=("sampling",)))
