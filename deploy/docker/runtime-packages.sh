#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries the given
# binaries load, one per line, sorted. The image build runs it in the build
# stage so the runtime stage installs exactly the libraries the binaries
# need (and no -dev packages or compilers).
#
#   runtime-packages.sh [--allow-unpackaged DIR]... BINARY...
#
# --allow-unpackaged DIR: libraries under DIR that no package provides are
# listed on stderr ("unpackaged: PATH") instead of failing. For machines
# with a CUDA toolkit from NVIDIA's tarball (the deploy tests); the image
# build never passes it, its toolkit comes from NVIDIA's packages.
set -euo pipefail
allowed=()
while [ $# -gt 0 ] && [ "$1" = "--allow-unpackaged" ]; do
  if [ $# -lt 2 ]; then
    echo "runtime-packages: --allow-unpackaged needs a directory" >&2
    exit 2
  fi
  allowed+=("$(readlink -f "$2")")
  shift 2
done
if [ $# -eq 0 ]; then
  echo "usage: $0 [--allow-unpackaged DIR]... BINARY..." >&2
  exit 2
fi
for bin in "$@"; do
  if [ ! -x "$bin" ]; then
    echo "runtime-packages: '$bin' is not an executable file" >&2
    exit 1
  fi
done
# ldd prints "libfoo.so.1 => /path/libfoo.so.1 (0x...)"; a library it cannot
# find is "libfoo.so.1 => not found", which must fail the build here rather
# than at container start.
libs=$(ldd "$@" | awk '/=> not found/ {print "MISSING " $1; next} $2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)
if grep -q '^MISSING ' <<<"$libs"; then
  echo "runtime-packages: unresolved libraries:" >&2
  grep '^MISSING ' <<<"$libs" >&2
  exit 1
fi
for lib in $libs; do
  # Debian 12 is merged-/usr: ldd may report /lib/... while dpkg recorded
  # /usr/lib/... (or the reverse), and alternatives (libblas.so.3) are
  # symlinks into the providing package, so try each spelling.
  pkg=""
  real=$(readlink -f "$lib")
  for candidate in "$lib" "/usr$lib" "${lib#/usr}" "$real" "/usr$real" "${real#/usr}"; do
    pkg=$(dpkg-query -S "$candidate" 2>/dev/null | head -n1 | cut -d: -f1) && [ -n "$pkg" ] && break
  done
  if [ -z "$pkg" ]; then
    for dir in "${allowed[@]}"; do
      case "$real" in
        "$dir"/*) echo "runtime-packages: unpackaged: $lib" >&2; continue 2 ;;
      esac
    done
    echo "runtime-packages: no Debian package provides $lib" >&2
    exit 1
  fi
  echo "$pkg"
done | sort -u
