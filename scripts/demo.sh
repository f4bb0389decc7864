#!/usr/bin/env bash
# The README's main job: start a front and one worker on loopback (free
# ports), wait until both are healthy, generate a video through the CLI,
# stop both processes cleanly and check the MP4 with ffprobe.
#
#   scripts/demo.sh ["prompt"] [out.mp4]
#
# Env: BUILD_DIR (default build), MODEL_DIR (default models/sparsevid-shapes),
#      DEMO_ARGS (extra `sparsevid generate` flags, e.g. "--steps 20").
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
MODEL_DIR=${MODEL_DIR:-models/sparsevid-shapes}
PROMPT=${1:-"a red circle moving left"}
OUT=${2:-out.mp4}

die() { echo "demo: $*" >&2; exit 1; }

FRONT=$BUILD_DIR/server/sparsevid-front
WORKER=$BUILD_DIR/worker/sparsevid-worker
CLI=$BUILD_DIR/client/sparsevid
for b in "$FRONT" "$WORKER" "$CLI"; do
  [ -x "$b" ] || die "$b is missing; run scripts/setup.sh && scripts/build.sh first"
done
command -v ffprobe >/dev/null || die "ffprobe is missing; run scripts/setup.sh"
if [ ! -f "$MODEL_DIR/model.yaml" ]; then
  die "no model at $MODEL_DIR (model.yaml not found). The default model is not in this checkout yet; set MODEL_DIR to a trained model directory. (The demo never substitutes random weights.)"
fi

work=$(mktemp -d)
front_pid="" worker_pid=""
# Stops a process: SIGTERM, up to 60 s for its drain, then SIGKILL.
stop() {
  local pid=$1 name=$2
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  echo "demo: $name did not stop within 60 s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop "$worker_pid" worker
  stop "$front_pid" front
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits for the JSON "ready" line of a process and prints the value of $3.
wait_ready() {
  local pid=$1 file=$2 key=$3 seconds=$4 log=$5
  for _ in $(seq $((seconds * 10))); do
    if grep -q '"msg":"ready"' "$file" 2>/dev/null; then
      grep -o "\"$key\":[0-9]*" "$file" | head -n1 | cut -d: -f2
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo: process exited before it was ready; its log:" >&2
      tail -n 20 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "demo: not ready within $seconds s; log:" >&2
  tail -n 20 "$log" >&2
  return 1
}

echo "demo: starting the front"
"$FRONT" --config configs/front.yaml --server.listen 127.0.0.1:0 --metrics.listen 127.0.0.1:0 \
  >"$work/front.out" 2>"$work/front.log" &
front_pid=$!
front_port=$(wait_ready "$front_pid" "$work/front.out" grpc_port 30 "$work/front.log") || exit 1

echo "demo: starting a worker with $MODEL_DIR"
"$WORKER" --config configs/worker.yaml --front.address "127.0.0.1:$front_port" \
  --model.dir "$MODEL_DIR" --health.address 127.0.0.1:0 --metrics.address 127.0.0.1:0 \
  >"$work/worker.out" 2>"$work/worker.log" &
worker_pid=$!
worker_health=$(wait_ready "$worker_pid" "$work/worker.out" health_port 600 "$work/worker.log") || exit 1

"$CLI" -a "127.0.0.1:$front_port" health --wait 30 >/dev/null || die "front not healthy"
# The worker reports SERVING once it is linked to the front.
"$CLI" -a "127.0.0.1:$worker_health" health --wait 60 >/dev/null || die "worker not healthy"

echo "demo: generating \"$PROMPT\" -> $OUT"
# shellcheck disable=SC2086
"$CLI" -a "127.0.0.1:$front_port" generate "$PROMPT" -o "$OUT" ${DEMO_ARGS:-}

stop "$worker_pid" worker
worker_pid=""
stop "$front_pid" front
front_pid=""

probe=$(ffprobe -v error -count_frames -select_streams v:0 \
  -show_entries stream=codec_name,width,height,r_frame_rate,nb_read_frames -of csv=p=0 "$OUT") \
  || die "ffprobe cannot read $OUT"
IFS=, read -r codec width height rate frames <<<"$probe"
[ "$codec" = h264 ] && [ "${frames:-0}" -gt 0 ] || die "unexpected video: $probe"
echo "demo: $OUT is a valid H.264 MP4: ${width}x${height}, $frames frames at $rate fps"
