#!/usr/bin/env bash
# The prepared check for a lent GPU machine: CUDA tests on the device, parity with the
# cpu backend on large inputs, and timings (see benchmarks/gpu_check.py). Needs python3
# with numba, numba-cuda (torch and pytest optional); installs nothing, uses no network.
#
#   bash benchmarks/gpu_check.sh                      # writes $OUT/gpu_check.json
#   OUT=somewhere bash benchmarks/gpu_check.sh        # OUT defaults to ./gpu_check_out
#   ZP_GPU_CHECK_SIM=1 bash benchmarks/gpu_check.sh   # tiny sizes, CUDA simulator
#
# Finishes in under 5 minutes; the JSON is written whatever happens.
set -u
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export OUT
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0
PY="${PYTHON:-python3}"

if [ "${ZP_GPU_CHECK_SIM:-0}" != "1" ]; then
    nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >> "$OUT/nvidia-smi.txt"
fi
LIMIT=""
if command -v timeout > /dev/null; then LIMIT="timeout -k 5 290"; fi
$LIMIT "$PY" benchmarks/gpu_check.py 2>&1 | tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}
if [ ! -s "$OUT/gpu_check.json" ]; then
    printf '{"device": null, "parity": {}, "timings": {}, "errors": {"gpu_check": "gpu_check.py exited with %s before writing its report"}}\n' "$rc" > "$OUT/gpu_check.json"
fi
exit "$rc"
