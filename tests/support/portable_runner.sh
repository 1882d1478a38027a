#!/usr/bin/env bash
# Runs a command against Beam's portable runner: Beam's own Python job service and an EXTERNAL worker
# pool (the protocol the Flink, Spark and Dataflow job services speak), both started here and stopped
# at exit. Meant to run inside `unshare -n` (a network namespace with only loopback): the worker pool
# binds every interface. The command finds the runner's arguments in $BEAM_ARGS.
# usage: portable_runner.sh VENV_BIN LOG_DIR COMMAND [ARGS...]
set -euo pipefail
venv_bin=$1 log_dir=$2
shift 2
ip link set lo up
export PATH="$venv_bin:$PATH"
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
job_port=$(free_port) pool_port=$(free_port)
python -m apache_beam.runners.portability.local_job_service_main --port "$job_port" >"$log_dir/job_service.log" 2>&1 &
python -m apache_beam.runners.worker.worker_pool_main --service_port "$pool_port" >"$log_dir/worker_pool.log" 2>&1 &
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
python - "$job_port" "$pool_port" <<'PY'
import socket, sys, time
deadline = time.time() + 120
for port in map(int, sys.argv[1:]):
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        if time.time() > deadline:
            sys.exit(f"the Beam job service or worker pool did not listen on port {port} within 120 s")
        time.sleep(0.5)
PY
# a loaded machine can take over a minute to answer a job request (Beam waits 60 s by default)
export BEAM_ARGS="--runner=PortableRunner --job_endpoint=localhost:$job_port --job_server_timeout=600 --environment_type=EXTERNAL --environment_config=localhost:$pool_port"
"$@"
