#!/usr/bin/env bash
# Exits 0 when http://HOST:PORT/PATH answers 200. For Docker HEALTHCHECK in
# images that carry no curl or wget; uses bash's /dev/tcp.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 HOST PORT PATH" >&2
  exit 2
fi
exec 3<>"/dev/tcp/$1/$2"
printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
read -r -t 5 status_line <&3
case "$status_line" in
  "HTTP/1."?" 200"*) exit 0 ;;
  *) echo "unhealthy: ${status_line:-no answer}" >&2; exit 1 ;;
esac
