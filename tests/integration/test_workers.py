"""The local multi-worker run's supervision: worker processes that fail make the run fail with the
end of a worker's log (the training itself: tests/e2e/test_multi_worker.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from msrec.models.training import workers

_RUN = ("import json, sys, types; from msrec.models.training import workers; "
        "workers.run_local(types.SimpleNamespace(**json.load(open(sys.argv[1]))), 2)")


def test_tf_config_names_every_worker_on_loopback() -> None:
    config = json.loads(workers.tf_config([4001, 4002], 1))
    assert config == {"cluster": {"worker": ["127.0.0.1:4001", "127.0.0.1:4002"]},
                      "task": {"type": "worker", "index": 1}}


def test_without_tf_config_one_process_is_the_chief(monkeypatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert workers.cluster() is None
    assert workers.task(workers.strategy()) == (0, True)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["h:1"]}, "task": {"type": "chief", "index": 0}}))
    assert workers.cluster() is None  # a cluster of one: nothing to distribute


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare for a loopback-only network namespace")
def test_workers_that_fail_fail_the_run_with_the_end_of_a_log(tmp_path: Path) -> None:
    # no feature config: each worker joins the cluster, then stops on the missing key
    fn_args = {"train_files": [], "eval_files": [], "transform_output": str(tmp_path), "base_model": None,
               "serving_model_dir": str(tmp_path / "model"), "model_run_dir": str(tmp_path / "run"),
               "custom_config": {"model": "sarnet"}}
    (tmp_path / "fn_args.json").write_text(json.dumps(fn_args))
    done = subprocess.run(["unshare", "-n", "bash", "-c", 'ip link set lo up && exec "$0" -c "$1" "$2"',
                           sys.executable, _RUN, str(tmp_path / "fn_args.json")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode != 0
    assert "RuntimeError: training worker" in done.stderr and "of 2 exited with status 1" in done.stderr
    assert "KeyError: 'feature_config'" in done.stderr  # the end of the worker's log
    assert sorted(p.name for p in (tmp_path / "run" / "workers").iterdir()) == ["task-0.log", "task-1.log"]
