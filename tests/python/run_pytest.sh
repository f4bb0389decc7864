#!/usr/bin/env bash
# ctest entry for tests/python: runs pytest with the given interpreter, or
# exits 77 (skipped) naming what is missing.
#   run_pytest.sh PYTHON
set -u
py=${1:-python3}
if ! "$py" -c 'import torch, pytest' 2>/dev/null; then
  echo "skipped: $py lacks torch or pytest (pip install torch pytest safetensors sentencepiece pyyaml to run the PyTorch reference tests)"
  exit 77
fi
exec "$py" -m pytest -q tests/python
