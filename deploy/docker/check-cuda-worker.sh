#!/usr/bin/env bash
# Checks that a sparsevid-worker binary carries the CUDA backend, by asking
# it to start on `--engine.device cuda` with the given model directory.
#   check-cuda-worker.sh WORKER MODEL_DIR
# Without a GPU (an image build) a CUDA worker must stop at once with
# "no usable CUDA device"; a worker built without CUDA says "this build has
# no CUDA support" instead, which fails the check. Where a GPU is visible
# the worker gets as far as loading the model on it, which passes. Nothing
# is dialled: the front address is a closed loopback port and the worker
# never gets to dial it before this returns.
set -uo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 WORKER MODEL_DIR" >&2
  exit 2
fi
worker=$1
model=$2
if [ ! -x "$worker" ]; then
  echo "check-cuda-worker: '$worker' is not an executable file" >&2
  exit 2
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# 120 s: ample for a failed device probe; a real GPU load is cut short
# once "model loaded" is logged (or at the limit).
timeout 120 "$worker" --model.dir "$model" --engine.device cuda \
  --health.address 127.0.0.1:0 --metrics.address "" --front.address 127.0.0.1:1 \
  >"$log" 2>&1
rc=$?
if grep -q '"msg":"model loaded".*"device":"cuda:' "$log"; then
  echo "check-cuda-worker: CUDA backend present (model loaded on a GPU)"
  exit 0
fi
if grep -q "no usable CUDA device" "$log"; then
  if [ "$rc" -ne 3 ]; then
    echo "check-cuda-worker: expected exit status 3 without a GPU, got $rc:" >&2
    cat "$log" >&2
    exit 1
  fi
  echo "check-cuda-worker: CUDA backend present (no GPU here, as expected)"
  exit 0
fi
if grep -q "no CUDA support" "$log"; then
  echo "check-cuda-worker: $worker was built without the CUDA backend:" >&2
else
  echo "check-cuda-worker: unexpected outcome (exit status $rc):" >&2
fi
cat "$log" >&2
exit 1
