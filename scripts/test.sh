#!/usr/bin/env bash
# The test command: bootstraps .venv from the lock file, then runs the whole suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=$(bash "$root/scripts/bootstrap.sh")
cd "$root"
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
exec "$py" -m pytest -q -p no:cacheprovider "$@" tests
