#!/usr/bin/env bash
# Installs everything sparsevid needs on Debian 12 (idempotent). Used by the
# README and by .ci/run.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  prometheus-cpp-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libx264-dev ffmpeg
  libyaml-cpp-dev libopenblas-dev libsentencepiece-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libspdlog-dev nlohmann-json3-dev libcli11-dev
  python3 python3-numpy python3-yaml yamllint prometheus
)
# The deploy tests render manifests with kubectl; Debian's kubernetes-client
# conflicts with an upstream kubectl package, so only install it if none is there.
command -v kubectl >/dev/null 2>&1 || PKGS+=(kubernetes-client)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi
