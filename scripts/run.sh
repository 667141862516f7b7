#!/usr/bin/env bash
# Set up (idempotent), then run faceswap-kohya. With no arguments: the whole chain on built-in
# defaults — `train cpu-check` (random-weight SDXL built locally, sample photos, CPU, no download).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ $# -eq 0 ]; then set -- train cpu-check; fi
exec .venv/bin/faceswap-kohya "$@"
