#!/usr/bin/env bash
# Copies the shipped binaries out of a build tree into OUT/bin and writes
# the Debian runtime packages each image needs into OUT/packages/*.txt.
# Used by the image build stages; fails if a binary is missing.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR OUT_DIR" >&2
  exit 2
fi
build=$1
out=$2
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$out/bin" "$out/packages"
for name in sparsevid-front sparsevid-worker sparsevid; do
  path=$(find "$build" -type f -name "$name" -perm -u+x -not -path '*/CMakeFiles/*' | head -n1)
  if [ -z "$path" ]; then
    echo "collect-binaries: $name not found under $build" >&2
    exit 1
  fi
  cp "$path" "$out/bin/$name"
done
# runtime-packages.sh sits next to this script in the repository and in
# /usr/local/bin inside the build stage.
rp="$here/runtime-packages.sh"
[ -x "$rp" ] || rp=/src/deploy/docker/runtime-packages.sh
"$rp" "$out/bin/sparsevid-front" "$out/bin/sparsevid" > "$out/packages/front.txt"
"$rp" "$out/bin/sparsevid-worker" > "$out/packages/worker.txt"
