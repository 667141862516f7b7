#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): training VRAM and speed per face preset, wrapper vs by hand,
# generation and swap at 1024 px, in at most 9 1/3 minutes (560 s); writes gpu_check.json and gpu_check.md to OUT_DIR
# (default output/gpu-check/<timestamp>).
#
# On the GPU machine (no network): make the wheels here first with scripts/gpu-wheels.sh and carry
# .gpu-wheels along; this runs with that machine's python3.
# --dry-run: the same plan here on the CPU at toy sizes (64 px, 2 steps), with .venv and .venv-kohya.
#
# Usage: scripts/gpu-check.sh [--dry-run] [OUT_DIR] [-- more options of benchmarks/gpu_check.py]
set -euo pipefail
cd "$(dirname "$0")/.."
mode=()
if [ "${1:-}" = --dry-run ]; then mode=(--dry-run); shift; fi
out=()
if [ $# -gt 0 ] && [ "$1" != -- ]; then out=(--out "$1"); shift; fi
[ "${1:-}" = -- ] && shift
if [ ${#mode[@]} -gt 0 ]; then
  PY=${PYTHON:-.venv/bin/python}
else
  PY=${PYTHON:-python3}
  [ -d "${GPU_WHEELS:-.gpu-wheels}" ] || { echo "gpu-check: no ${GPU_WHEELS:-.gpu-wheels}: run scripts/gpu-wheels.sh here and carry it" >&2; exit 1; }
  du -sh "${GPU_WHEELS:-.gpu-wheels}" | awk '{ print "[gpu-check] wheels folder: " $1 }'
fi
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py "${mode[@]}" "${out[@]}" --wheels "${GPU_WHEELS:-.gpu-wheels}" "$@"
