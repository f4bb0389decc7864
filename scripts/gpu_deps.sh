#!/usr/bin/env bash
# Debian 12 libraries that the engine build needs and the GPU machine lacks
# (OpenBLAS, yaml-cpp, sentencepiece, abseil, spdlog/fmt, nlohmann-json,
# GoogleTest, pkgconf), carried there as .deb files and unpacked under /tmp.
#
#   scripts/gpu_deps.sh download         here (Debian 12, apt), once: the .debs
#                                        go to .gpu-deps/ (git-ignored; pass
#                                        it in the device run's `carry`)
#   scripts/gpu_deps.sh install [PREFIX] on the GPU machine: dpkg -x each .deb
#                                        into PREFIX (default /tmp/sv-deps, never
#                                        /), make the pkg-config files point
#                                        there, write PREFIX/env.sh (source it:
#                                        CMAKE_PREFIX_PATH, PKG_CONFIG_PATH,
#                                        PKG_CONFIG, LD_LIBRARY_PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
DEB_DIR=.gpu-deps
# Runtime libraries and their -dev halves; libgfortran5/libquadmath0 are
# OpenBLAS's runtime needs, pkgconf in case the machine has no pkg-config.
PACKAGES=(
  libopenblas0-pthread libopenblas-pthread-dev libgfortran5 libquadmath0
  libyaml-cpp0.7 libyaml-cpp-dev
  libsentencepiece0 libsentencepiece-dev
  libabsl20220623 libabsl-dev
  libspdlog1.10 libspdlog-dev libfmt9 libfmt-dev
  nlohmann-json3-dev
  libgtest-dev libgmock-dev
  pkgconf-bin libpkgconf3
)

case "${1:-}" in
  download)
    mkdir -p "$DEB_DIR"
    (cd "$DEB_DIR" && apt-get download "${PACKAGES[@]}")
    du -sh "$DEB_DIR"
    ;;
  install)
    PREFIX=${2:-/tmp/sv-deps}
    [ "$PREFIX" != / ] || { echo "gpu_deps: refusing to unpack into /" >&2; exit 2; }
    ls "$DEB_DIR"/*.deb >/dev/null 2>&1 ||
      { echo "gpu_deps: no .deb files in $DEB_DIR (run 'download' here and carry it)" >&2; exit 1; }
    mkdir -p "$PREFIX"
    for f in "$DEB_DIR"/*.deb; do dpkg -x "$f" "$PREFIX"; done
    USR=$PREFIX/usr
    LIB=$USR/lib/x86_64-linux-gnu
    # Debian's .pc files say prefix=/usr; point them (and absolute paths) here.
    find "$USR" -name '*.pc' -print0 | xargs -0 sed -i -e "s#=/usr#=$USR#g"
    cat >"$PREFIX/env.sh" <<ENV
export CMAKE_PREFIX_PATH=$USR\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}
export PKG_CONFIG_PATH=$LIB/pkgconfig:$LIB/openblas-pthread/pkgconfig:$USR/share/pkgconfig
export LD_LIBRARY_PATH=$LIB:$LIB/openblas-pthread\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
if ! command -v pkg-config >/dev/null; then export PKG_CONFIG=$USR/bin/pkgconf; fi
ENV
    echo "gpu_deps: $(ls "$DEB_DIR"/*.deb | wc -l) packages unpacked into $PREFIX; source $PREFIX/env.sh"
    ;;
  *)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac
