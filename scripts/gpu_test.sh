#!/usr/bin/env bash
# GPU checks of the SLA2 CUDA kernels, for the GPU machine (H100/H200).
# Builds kernels/cuda stand-alone for sm_90a (that machine has nvcc, cmake and
# ninja but not the service's Debian dependencies), runs the GPU test
# (tests/cuda/sla2_cuda_test: GPU vs CPU reference), the benchmark
# (bench/attention/sla2_bench), the L2 and DRAM ceilings (bench/attention/l2_read_bench)
# and its PyTorch peers (bench/attention/peers.py:
# SDPA FA2, SDPA cuDNN, FlexAttention on the same block lists), then prints
# issue 4's targets with the measured ratios and the bf16 module's floor on this
# machine (bench/attention/targets.py).
#
#   scripts/gpu_test.sh [OUT_DIR]        logs go to OUT_DIR (default gpu-out/)
#
# Environment: BUILD_DIR (build-gpu), SKIP_BUILD=1 (use binaries already in
# BUILD_DIR), TESTS=0 (benchmark only), BENCH=0 (test only), PEERS=0 (no PyTorch peers),
# BENCH_SHAPES (1.3B,14B), SANITIZE=1 (also run the test under
# compute-sanitizer memcheck). Exit status: the GPU test's.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu-out}
BUILD_DIR=${BUILD_DIR:-build-gpu}
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader || true

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cmake -S kernels/cuda -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90a >"$OUT_DIR/build.log" 2>&1 &&
    cmake --build "$BUILD_DIR" -j "$(nproc)" >>"$OUT_DIR/build.log" 2>&1 ||
    { tail -40 "$OUT_DIR/build.log"; echo "gpu_test: build failed"; exit 1; }
fi

test_rc=0
if [ "${TESTS:-1}" = 1 ]; then
  "$BUILD_DIR/tests_cuda/sla2_cuda_test" >"$OUT_DIR/test.log" 2>&1
  test_rc=$?
fi

if [ "${BENCH:-1}" = 1 ]; then
  "$BUILD_DIR/bench_attention/sla2_bench" --lut-dir "$OUT_DIR" \
    --shapes "${BENCH_SHAPES:-1.3B,14B}" >"$OUT_DIR/bench.log" 2>&1 ||
    echo "gpu_test: sla2_bench failed (rc $?)" >>"$OUT_DIR/bench.log"
  # The L2 read ceiling of this GPU (what the kernels' K/V rates compare to).
  "$BUILD_DIR/bench_attention/l2_read_bench" >"$OUT_DIR/l2_read.log" 2>&1 ||
    echo "gpu_test: l2_read_bench failed (rc $?)" >>"$OUT_DIR/l2_read.log"
  if [ "${PEERS:-1}" = 1 ]; then
    PYTHONUNBUFFERED=1 python3 bench/attention/peers.py "$OUT_DIR" >"$OUT_DIR/peers.log" 2>&1 ||
      echo "gpu_test: peers.py failed (rc $?)" >>"$OUT_DIR/peers.log"
  fi
fi

if [ "${SANITIZE:-0}" = 1 ]; then
  timeout 120 compute-sanitizer --tool memcheck --print-limit 20 \
    "$BUILD_DIR/tests_cuda/sla2_cuda_test" >"$OUT_DIR/sanitize.log" 2>&1
  echo "compute-sanitizer rc $?: $(grep -E 'ERROR SUMMARY' "$OUT_DIR/sanitize.log" | tail -1)"
fi

# Summary last, so the end of the output carries it.
if [ -f "$OUT_DIR/test.log" ]; then
  echo "===== GPU test (rc $test_rc) ====="
  grep -vE '^\[ OK \]' "$OUT_DIR/test.log" | tail -60
  grep -cE '^\[ OK \]' "$OUT_DIR/test.log" | sed 's/^/checks passed: /'
fi
for f in bench l2_read peers; do
  [ -f "$OUT_DIR/$f.log" ] && { echo "===== $f ====="; cat "$OUT_DIR/$f.log"; }
done
# Issue 4's targets against this run's logs (ours vs the peers of the same run).
if [ -f "$OUT_DIR/bench.log" ] && [ -f "$OUT_DIR/peers.log" ]; then
  echo "===== targets ====="
  python3 bench/attention/targets.py "$OUT_DIR/bench.log" "$OUT_DIR/peers.log" "$OUT_DIR/l2_read.log" |
    tee "$OUT_DIR/targets.log"
fi
exit $test_rc
