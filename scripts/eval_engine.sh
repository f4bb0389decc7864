#!/usr/bin/env bash
# Quality of the C++ engine on the held-out prompts (issue 5): generates
# heldout_{i}.mp4 for the first N held-out prompts and seeds of
# training/evaluate.py through the real service (scripts/demo.sh: front +
# worker + CLI), then scores them with `evaluate.py --mp4-dir`.
#
#   scripts/eval_engine.sh OUT_DIR [N] [extra `sparsevid generate` flags...]
#   e.g. scripts/eval_engine.sh /tmp/eval-97 8 --keep-ratio 0.03
#
# Env: as scripts/demo.sh (BUILD_DIR, MODEL_DIR). Needs python3 with torch
# (the evaluator's decoding and checks).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [N] [generate flags...]" >&2; exit 2; }
out_dir=$1
num=${2:-8}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$out_dir"
python3 training/evaluate.py --prompts --num "$num" >"$out_dir/prompts.jsonl"
python3 -c '
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    print(d["index"], d["seed"], d["prompt"], sep="\t")' "$out_dir/prompts.jsonl" >"$out_dir/prompts.tsv"
while IFS=$'\t' read -r index seed prompt; do
  DEMO_ARGS="--seed $seed $*" scripts/demo.sh "$prompt" "$out_dir/heldout_$index.mp4" \
    >"$out_dir/demo_$index.log" 2>&1 </dev/null ||
    { echo "eval_engine: prompt $index failed; log:" >&2; tail -n 20 "$out_dir/demo_$index.log" >&2; exit 1; }
  grep -h '^completed' "$out_dir/demo_$index.log" | sed "s/^/[$index] /" || true
done <"$out_dir/prompts.tsv"
python3 training/evaluate.py --mp4-dir "$out_dir" --num "$num" --out "$out_dir/eval.json"
