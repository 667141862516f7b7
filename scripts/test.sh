#!/usr/bin/env bash
# Set up (idempotent), then run the test suite. Extra arguments go to pytest (e.g. -m "not trainer").
# The browser tests drive Debian's chromium and the service tests start a throwaway PostgreSQL cluster:
# both come from apt when they are not there yet (as root; otherwise those tests say what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
