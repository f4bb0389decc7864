#!/usr/bin/env bash
# Copies the services' YAML configs (configs/front.yaml, configs/worker.yaml)
# into the kustomize base, which can only read files below itself. Run after
# editing a config; tests/deploy fails while the copies differ.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
repo=$(readlink -f "$here/../..")
mkdir -p "$here/base/config"
for name in front worker; do
  cp "$repo/configs/$name.yaml" "$here/base/config/$name.yaml"
done
echo "sync-configs: base/config updated from configs/"
