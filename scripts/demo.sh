#!/usr/bin/env bash
# The main job: bootstraps .venv from the lock file, then generates logs, backfills the daily
# pipeline, serves the pushed model, queries it over gRPC and prints the report.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=$(bash "$root/scripts/bootstrap.sh")
cd "$root"
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 PYTHONHASHSEED=0
# The Google client libraries Beam pulls in warn about Python 3.10 at every import; TFX pins us to it.
export PYTHONWARNINGS="ignore::FutureWarning"
exec "$py" -m msrec.cli demo "$@"
