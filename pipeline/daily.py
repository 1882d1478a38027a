"""The local runner: the daily pipeline for one date, or a backfill of dates, and the run report."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Iterator

import msrec  # noqa: F401

from msrec.schemas.feature_config import load_feature_config
from msrec.components.log_example_gen.limits import IngestLimits
from msrec.pipeline import report, schedule
from msrec.pipeline.local_runner import ParallelDagRunner
from msrec.progress import library_output
from msrec.pipeline.pipeline import DailyRun, RunDate, create_pipeline
from msrec.pipeline.run_history import max_execution_id, run_outputs
from msrec.pipeline.scenario_registry import scenario_vocabulary

log = logging.getLogger(__name__)


def make_run(logs_dir: str, date: RunDate, workdir: str, feature_config: str | None = None,
             **options: Any) -> DailyRun:
    if isinstance(date, str):
        dt.date.fromisoformat(date)  # a clear error for a malformed date before anything starts
    config_path = feature_config or os.path.join(logs_dir, "feature_config.yaml")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"feature config not found: {config_path} (pass --feature-config)")
    config = load_feature_config(config_path)
    vocabulary = scenario_vocabulary(logs_dir, workdir, config, options.get("ingest_limits", IngestLimits()))
    return DailyRun(logs_dir=os.path.abspath(logs_dir), date=date, workdir=os.path.abspath(workdir),
                    feature_config_path=os.path.abspath(config_path), feature_config=config,
                    scenario_vocabulary=vocabulary, **options)


def run_day(logs_dir: str, date: str, workdir: str, model: str = "sarnet", window: int = 2,
            feature_config: str | None = None, force: bool = False, **options: Any) -> dict[str, Any]:
    """Run the pipeline for one date; returns the report (also written to reports/<date>/).

    A date whose earlier run pushed a version that is still served is not run again (re-running a
    scheduled day must not push a second model for it) unless ``force``."""
    version = None if force else schedule.already_pushed(workdir, model, date)
    if version is not None:
        print(f"== {date}: already pushed as version {version}; nothing run (--force runs it again)", flush=True)
        return {**schedule.previous_report(workdir, date), "rerun": f"already pushed as version {version}: nothing run"}
    run = make_run(logs_dir, date, workdir, feature_config, model=model, window=window, **options)
    os.makedirs(run.report_dir, exist_ok=True)
    report.clear_stale(run)
    mark = max_execution_id(run)
    started = time.time()
    error = None
    print(f"== {date}: {model}, window of {run.window} days", flush=True)
    try:
        with library_output(), run_tempdir(run.workdir):
            ParallelDagRunner(run.component_processes).run(create_pipeline(run))
    except Exception as e:  # the report says what failed; the CLI exits non-zero
        error = e
    found = run_outputs(run, mark) if os.path.exists(run.metadata_path) else {"outputs": {}, "timings": {}}
    rep = report.build(run, found["outputs"], found["timings"], time.time() - started, error)
    report.write(run, rep)
    return rep


@contextlib.contextmanager
def run_tempdir(workdir: str) -> Iterator[str]:
    """The temporary folder of one run, in this process and its children, removed when the run ends:
    TFX, Beam, tf.Transform and TFDV leave files in the temporary folder that they never remove (a
    daily run would fill the disk)."""
    os.makedirs(os.path.join(workdir, "tmp"), exist_ok=True)
    path = tempfile.mkdtemp(prefix="run-", dir=os.path.join(workdir, "tmp"))
    saved_env, saved_dir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = path, path
    try:
        yield path
    finally:
        tempfile.tempdir = saved_dir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(path, ignore_errors=True)


def dates(date_from: str, date_to: str) -> Iterator[str]:
    d, end = dt.date.fromisoformat(date_from), dt.date.fromisoformat(date_to)
    if end < d:
        raise ValueError(f"--to {date_to} is before --from {date_from}")
    while d <= end:
        yield d.isoformat()
        d += dt.timedelta(days=1)


def backfill(logs_dir: str, date_from: str, date_to: str, workdir: str, **options: Any) -> list[dict[str, Any]]:
    """One day after another; each day's FC comes from the model blessed on the days before."""
    reports = []
    for date in dates(date_from, date_to):
        rep = run_day(logs_dir, date, workdir, **options)
        print(report.format_summary(rep), flush=True)
        reports.append(rep)
        if rep.get("error"):
            break
    return reports
