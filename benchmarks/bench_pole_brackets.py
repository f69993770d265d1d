"""The cost of finding the target's pole brackets at a refresh with ``growth="poles"``
(:func:`zp_ref.model_driven_growth.pole_brackets`): the default (in d > 1, neighbours of
the ``FIRST_ROWS`` rows of largest |y| first) against looking up the neighbours of every
row with |y| above the median in one pass (``FIRST_ROWS = N``), which returns the same
brackets (asserted). Pools uniform in [-1, 1]^d with one pole line, ``y = 1 / (sum(x) / sqrt(d) -
0.1)``; 16 brackets, 4 pool spacings apart (a label budget of 256). Both sides alternate;
medians of ``--repeats`` calls after one warm-up call (its time is the first call of the
process), with the quartiles and the load average before and after. Then, on the same
pools, ``label_pole_distance`` (``q_signal="labels"``: up to ``SIGNAL_BRACKETS`` brackets,
so in d > 1 every row above the median is looked up when fewer fit), found once per pool.

    python benchmarks/bench_pole_brackets.py [--repeats 7] [--json PATH]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout

from zp_ref import model_driven_growth as growth  # noqa: E402
from zp_ref.apps import bench  # noqa: E402
from zp_ref.rng import uniforms  # noqa: E402

CASES = ((1 << 15, 1), (1 << 15, 2), (10**6, 1), (10**6, 2))


def pole_pool(n: int, d: int) -> tuple:
    """n points uniform in [-1, 1]^d (seed 5, stream 0), y with one pole line."""
    x = uniforms(5, 0, n * d).reshape(n, d) * 2.0 - 1.0
    return x, 1.0 / (x.sum(axis=1) / np.sqrt(d) - 0.1)


def one_call(x, y, first_rows: int) -> tuple:
    growth.FIRST_ROWS, default = first_rows, growth.FIRST_ROWS
    try:
        t0 = time.perf_counter()
        out = growth.pole_brackets(x, y, 16, 4 * (2.0 ** x.shape[1] / x.shape[0])
                                   ** (1 / x.shape[1]))
        return time.perf_counter() - t0, out
    finally:
        growth.FIRST_ROWS = default


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = {"load_before": bench.load_average(), "cases": []}
    for n, d in CASES:
        x, y = pole_pool(n, d)
        sides = {"default": growth.FIRST_ROWS, "every row": n}
        times = {name: [] for name in sides}
        first = {}
        for r in range(args.repeats + 1):
            for name, rows in sides.items():
                t, out = one_call(x, y, rows)
                if r == 0 and name == "default":
                    first[name], ref = t, out
                elif r == 0:                  # the same brackets either way
                    first[name] = t
                    assert all(np.array_equal(a, b) for a, b in zip(out, ref))
                else:
                    times[name].append(t)
        labels = []
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            growth.label_pole_distance(x, y)
            labels.append(time.perf_counter() - t0)
        case = {"n": n, "d": d, "brackets": int(ref[0].shape[0]), "first_call": first,
                **{name: bench.timing(t, warmup=1) for name, t in times.items()},
                "label_pole_distance": bench.timing(labels[1:], warmup=1),
                "label_pole_distance_first_call": labels[0]}
        result["cases"].append(case)
        print(f"N={n:>7} d={d}: {case['brackets']} brackets, default "
              f"{1e3 * case['default']['median']:8.1f} ms "
              f"[{1e3 * case['default']['q1']:.1f}, {1e3 * case['default']['q3']:.1f}], "
              f"every row {1e3 * case['every row']['median']:8.1f} ms "
              f"[{1e3 * case['every row']['q1']:.1f}, {1e3 * case['every row']['q3']:.1f}], "
              f"label_pole_distance {1e3 * case['label_pole_distance']['median']:8.1f} ms "
              f"[{1e3 * case['label_pole_distance']['q1']:.1f}, "
              f"{1e3 * case['label_pole_distance']['q3']:.1f}]")
    result["load_after"] = bench.load_average()
    result["machine"] = bench.machine_info()
    print(f"load average before {result['load_before']}, after {result['load_after']}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
