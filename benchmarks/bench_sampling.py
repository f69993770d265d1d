"""The contract's sampling rows (N=10**7, B=10**6, p=2; issue 24): the default call
``sample_indices(importance_weights(q), B, seed=1)`` and ``sample_from_q`` against
NumPy (``Generator.choice``), PyTorch CPU (``torch.multinomial``) and scipy's
``DiscreteGuideTable``; the weight pass against ``np.sum``; the draws alone; the first
call of a fresh process (warm and cold Numba cache, ``bench_first_call.py``). The
benchmark itself lives in zp_ref.apps.bench, so that the installed ``zp-ref bench``
runs it too.

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
