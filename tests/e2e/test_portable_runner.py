"""The daily pipeline on Beam's portable runner, ingest to push: Beam's Python job service and an
EXTERNAL worker pool (the protocol Flink, Spark and Dataflow job services speak) started by the test
inside a network namespace that has only loopback, and every Beam-based component sent to them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from msrec.data.generator import generate

HARNESS = Path(__file__).resolve().parents[1] / "support" / "portable_runner.sh"


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare for a loopback-only namespace")
def test_a_small_window_is_pushed_on_the_portable_runner(tmp_path: Path) -> None:
    data = generate(tmp_path / "data", days=2, impressions_per_day=6_000, seed=1, progress=False)
    work, logs = tmp_path / "work", tmp_path / "logs"
    logs.mkdir()
    msrec = os.path.join(os.path.dirname(sys.executable), "msrec")
    command = (f'{msrec} run --logs {data.logs_dir} --date {data.dates[-1]} --workdir {work} --window 2 '
               f'--max-epochs 2 --auc-floor 0.5 --beam-pipeline-args "$BEAM_ARGS"')
    done = subprocess.run(["unshare", "-n", "bash", str(HARNESS), os.path.dirname(sys.executable), str(logs),
                           "bash", "-c", command], capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((work / "reports" / data.dates[-1] / "report.json").read_text())
    assert report["pushed_version"] and (work / "serving" / "sarnet" / str(report["pushed_version"])).is_dir()
    # every Beam-based component ran as a job of the portable runner: ingestion, statistics, FC,
    # Transform's analysis and transform, the Evaluator
    jobs = (logs / "job_service.log").read_text().count("Completed job in")
    assert jobs >= 5, (logs / "job_service.log").read_text()[-3000:]
