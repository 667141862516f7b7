#!/usr/bin/env bash
# Set up (idempotent), then run the test suite. Extra arguments go to pytest (e.g. -m "not trainer").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
