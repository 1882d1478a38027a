#!/usr/bin/env bash
# The test command: bootstraps .venv from the lock file, then runs the whole suite
# (tests/unit, tests/integration, tests/e2e) with one pytest-xdist worker per core: most tests keep one
# core busy. `--fast` runs the unit lane only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=$(bash "$root/scripts/bootstrap.sh")
cd "$root"
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
lanes=(tests)
if [ "${1:-}" = "--fast" ]; then shift; lanes=(tests/unit); fi
exec "$py" -m pytest -q -p no:cacheprovider -n auto --dist loadgroup "$@" "${lanes[@]}"
