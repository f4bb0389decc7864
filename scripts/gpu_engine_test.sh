#!/usr/bin/env bash
# GPU checks of the engine on CudaBackend, for the GPU machine (H100/H200).
# That machine has nvcc, cmake and ninja but not the engine's Debian
# libraries: they come from .gpu-deps/ (scripts/gpu_deps.sh download, here;
# carry .gpu-deps in the device run), unpacked under /tmp. Configures the
# product with -DSPARSEVID_SERVICE=OFF (engine + kernels, no gRPC) for sm_90a,
# builds the CUDA tests and engine_bench, runs
#   tests/cuda/cuda_backend_test   every op vs CpuBackend
#   tests/cuda/cuda_engine_test    whole generations, cpu vs cuda
#   tests/engine/pipeline_test     device selection (DeviceSelection)
# and engine_bench on the shipped model (default 256x256x33, 12 steps) on cpu
# and cuda, then prints a summary.
#
#   scripts/gpu_engine_test.sh [OUT_DIR]     logs go to OUT_DIR (default gpu-out/)
#
# Environment: BUILD_DIR (build-gpu-engine), BENCH=0 (tests only),
# CPU_REPEATS (1), CUDA_REPEATS (3), SANITIZE=1 (cuda_backend_test under
# compute-sanitizer memcheck). Exit status: non-zero if a test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu-out}
BUILD_DIR=${BUILD_DIR:-build-gpu-engine}
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

scripts/gpu_deps.sh install /tmp/sv-deps >"$OUT_DIR/build.log" 2>&1 ||
  { cat "$OUT_DIR/build.log"; exit 1; }
. /tmp/sv-deps/env.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DSPARSEVID_SERVICE=OFF -DSPARSEVID_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90a >>"$OUT_DIR/build.log" 2>&1 &&
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target cuda_backend_test cuda_engine_test \
    pipeline_test engine_bench >>"$OUT_DIR/build.log" 2>&1 ||
  { tail -40 "$OUT_DIR/build.log"; echo "gpu_engine_test: build failed"; exit 1; }

rc=0
run_test() {  # name binary [args]
  local name=$1
  shift
  timeout 300 "$@" >"$OUT_DIR/$name.log" 2>&1
  local r=$?
  [ $r -eq 0 ] || rc=1
  echo "===== $name (rc $r) ====="
  grep -E '^\[  (FAILED|SKIPPED|PASSED) |^\[ engine|Failure|Expected|Which is|rel|check failed' \
    "$OUT_DIR/$name.log" | head -40
}
run_test cuda_backend_test "$BUILD_DIR/tests/cuda/cuda_backend_test"
run_test cuda_engine_test "$BUILD_DIR/tests/cuda/cuda_engine_test"
run_test pipeline_test "$BUILD_DIR/tests/engine/pipeline_test" --gtest_filter='*Device*'

if [ "${SANITIZE:-0}" = 1 ]; then
  timeout 200 compute-sanitizer --tool memcheck --print-limit 20 \
    "$BUILD_DIR/tests/cuda/cuda_backend_test" --gtest_filter='-*Sla2*' >"$OUT_DIR/sanitize.log" 2>&1
  echo "compute-sanitizer rc $?: $(grep -E 'ERROR SUMMARY' "$OUT_DIR/sanitize.log" | tail -1)"
fi

if [ "${BENCH:-1}" = 1 ]; then
  for dev in cpu cuda; do
    reps=$([ $dev = cpu ] && echo "${CPU_REPEATS:-1}" || echo "${CUDA_REPEATS:-3}")
    timeout 200 "$BUILD_DIR/bench/engine/engine_bench" --device $dev --repeats "$reps" \
      >"$OUT_DIR/bench_$dev.log" 2>&1 || echo "engine_bench $dev failed (rc $?)" >>"$OUT_DIR/bench_$dev.log"
    echo "===== engine_bench $dev ====="
    cat "$OUT_DIR/bench_$dev.log"
  done
fi
exit $rc
