"""K calls of CALL (sample_from_q | default) after 4 warm-up calls, for perf stat
differences (K=0 vs K=40)."""
import os, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from zp_ref.apps.bench import _pool
from zp_ref.sampling_from_q import sample_from_q
from zp_ref.sampling import sample_indices
from zp_ref.weighting import importance_weights
q = _pool(10**7); B = 10**6
fn = {"sample_from_q": lambda: sample_from_q(q, B, seed=1),
      "default": lambda: sample_indices(importance_weights(q), B, seed=1)}[os.environ.get("CALL", "sample_from_q")]
for _ in range(4): fn()
for _ in range(int(os.environ["K"])): fn()
