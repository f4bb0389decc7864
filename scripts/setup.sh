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
  libyaml-cpp-dev libopenblas-dev libsentencepiece-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libspdlog-dev nlohmann-json3-dev libcli11-dev
  python3 python3-numpy python3-yaml python3-pip yamllint prometheus
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
# nvdisasm for tests/cuda/check_softmax_overlap.py, where nvcc is installed
# without it: NVIDIA's wheel unpacked into .tools/ (git-ignored). Not fatal:
# that check skips without it.
NVCC_BIN=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ -x "$NVCC_BIN" ] && ! command -v nvdisasm >/dev/null 2>&1 &&
   [ ! -x "$(dirname "$(readlink -f "$NVCC_BIN")")/nvdisasm" ] &&
   [ -z "$(find .tools -name nvdisasm -type f 2>/dev/null | head -1)" ]; then
  mkdir -p .tools
  if python3 -m pip download --quiet --no-deps -d .tools nvidia-cuda-nvdisasm >/dev/null 2>&1 &&
     python3 -c 'import glob, zipfile; [zipfile.ZipFile(w).extractall(".tools") for w in glob.glob(".tools/*.whl")]'; then
    find .tools -name nvdisasm -type f -exec chmod +x {} \;
    echo "setup: nvdisasm unpacked into .tools/"
  else
    echo "setup: could not fetch nvdisasm (cuda_softmax_overlap will skip)"
  fi
fi
