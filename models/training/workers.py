"""Training on several workers: tf.distribute.MultiWorkerMirroredStrategy, one replica per worker.

On a cluster (TFX's Trainer on Kubeflow Pipelines or Vertex AI) the platform starts one Trainer
replica per task and sets ``TF_CONFIG``; every replica's run_fn trains under the strategy and only the
chief writes the model. Locally (``--workers N``, no ``TF_CONFIG``) run_fn starts the N tasks itself,
``python -m msrec.models.training.workers JOB``, on 127.0.0.1 with a ``TF_CONFIG`` each, and waits for
them. It does not train in its own process: TensorFlow configures collective ops once per process, and
the local runner runs every day's Trainer (a backfill's several) in the one msrec process.

Every task writes ``<model_run_dir>/workers/task-<i>.json`` (epochs, validation AUCs, a checksum of
its final weights); a local run fails when the tasks disagree.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import types
from typing import Any, Mapping, Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)
REPORTS = "workers"
# After the first task ends, the rest must end within this: the chief still exports the model, the
# others are done; a task stuck in a collective op whose peer has gone is stopped here.
FINISH_TIMEOUT_S = 600.0
_FN_ARGS = ("train_files", "eval_files", "transform_output", "serving_model_dir", "model_run_dir", "base_model",
            "custom_config")


def cluster() -> dict[str, Any] | None:
    """The parsed ``TF_CONFIG`` when it names more than one task, else None (one process trains)."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    config = json.loads(text)
    tasks = sum(len(addresses) for addresses in config.get("cluster", {}).values())
    return config if tasks > 1 else None


def strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy on a cluster named by ``TF_CONFIG``, else the default strategy."""
    return tf.distribute.MultiWorkerMirroredStrategy() if cluster() else tf.distribute.get_strategy()


def task(strategy: tf.distribute.Strategy) -> tuple[int, bool]:
    """(index among the tasks, whether it is the chief: the ``chief`` task, else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 0, True
    spec = resolver.cluster_spec().as_dict()
    chief = resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                              and "chief" not in spec)
    # the chief first, then the workers in order
    order = [(job, i) for job in sorted(spec, key=lambda j: j != "chief") for i in range(len(spec[job]))]
    return order.index((resolver.task_type, resolver.task_id)), chief


def checksum(weights: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for w in weights:
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def report(model_run_dir: str, index: int, stats: Mapping[str, Any], weights: Sequence[np.ndarray]) -> None:
    """What this task ended with, for the agreement check."""
    out = os.path.join(model_run_dir, REPORTS)
    tf.io.gfile.makedirs(out)
    keys = ("epochs_run", "best_epoch", "best_val_auc", "val_auc")
    with tf.io.gfile.GFile(os.path.join(out, f"task-{index}.json"), "w") as fh:
        json.dump({"task": index, **{k: stats.get(k) for k in keys}, "weights_sha256": checksum(weights)}, fh)


def read_reports(model_run_dir: str, n: int) -> list[dict[str, Any]]:
    reports = []
    for i in range(n):
        with tf.io.gfile.GFile(os.path.join(model_run_dir, REPORTS, f"task-{i}.json")) as fh:
            reports.append(json.load(fh))
    return reports


def free_ports(n: int) -> list[int]:
    """n ports free on 127.0.0.1 now (held open together, so they are distinct)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: Sequence[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def run_local(fn_args: Any, n: int, finish_timeout_s: float = FINISH_TIMEOUT_S) -> list[dict[str, Any]]:
    """Train with ``n`` worker processes on 127.0.0.1 (task 0 the chief, which writes the model);
    their reports. Raises RuntimeError, with the end of its log, when a task fails or hangs, or when
    the tasks end with different weights."""
    log_dir = os.path.join(fn_args.model_run_dir, REPORTS)
    tf.io.gfile.makedirs(log_dir)
    with tempfile.TemporaryDirectory(prefix="msrec-workers-") as tmp:
        job = os.path.join(tmp, "fn_args.json")
        with open(job, "w") as fh:
            json.dump({k: getattr(fn_args, k) for k in _FN_ARGS}, fh)
        ports = free_ports(n)
        log.info("Trainer: %d workers on 127.0.0.1 ports %s, their logs in %s", n, ports, log_dir)
        logs = [os.path.join(log_dir, f"task-{i}.log") for i in range(n)]
        procs = []
        try:
            for i, path in enumerate(logs):
                with open(path, "w") as out:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", __name__, job], stdout=out, stderr=subprocess.STDOUT,
                        env={**os.environ, "TF_CONFIG": tf_config(ports, i)}))
            _wait(procs, logs, finish_timeout_s)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    reports = read_reports(fn_args.model_run_dir, n)
    first = {k: v for k, v in reports[0].items() if k != "task"}
    for r in reports[1:]:
        if {k: v for k, v in r.items() if k != "task"} != first:
            raise RuntimeError(f"training workers 0 and {r['task']} ended differently: {reports[0]} vs {r} "
                               f"(logs in {log_dir})")
    return reports


def _wait(procs: list[subprocess.Popen], logs: list[str], finish_timeout_s: float) -> None:
    first_done = None
    while True:
        codes = [p.poll() for p in procs]
        for i, code in enumerate(codes):
            if code not in (None, 0):
                raise RuntimeError(f"training worker {i} of {len(procs)} exited with status {code}; "
                                   f"the end of its log {logs[i]}:\n{_tail(logs[i])}")
        if all(c == 0 for c in codes):
            return
        if first_done is None and 0 in codes:
            first_done = time.monotonic()
        if first_done is not None and time.monotonic() - first_done > finish_timeout_s:
            stuck = [i for i, c in enumerate(codes) if c is None]
            raise RuntimeError(f"training workers {stuck} of {len(procs)} did not finish within "
                               f"{finish_timeout_s:.0f}s of the first that did; the end of worker {stuck[0]}'s "
                               f"log {logs[stuck[0]]}:\n{_tail(logs[stuck[0]])}")
        time.sleep(0.5)


def _tail(path: str, lines: int = 30) -> str:
    with open(path, errors="replace") as fh:
        return "".join(fh.readlines()[-lines:])


def main(argv: Sequence[str]) -> None:
    """One task of a local multi-worker run: the Trainer's run_fn arguments from the job file."""
    from msrec.models.training import trainer  # the trainer imports this module

    logging.getLogger().setLevel(logging.INFO)  # the Trainer's progress lines in the task's log
    with open(argv[0]) as fh:
        trainer.train_and_export(types.SimpleNamespace(**json.load(fh)))


if __name__ == "__main__":
    main(sys.argv[1:])
