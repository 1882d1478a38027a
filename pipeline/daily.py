"""Running the daily pipeline for one date, or a backfill of dates, and writing the run report."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shlex
import sys
import time
from typing import Any, Iterator

import msrec  # noqa: F401
from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx

from msrec.schemas.feature_config import load_feature_config
from msrec.pipeline import report
from msrec.pipeline.pipeline import DailyRun, create_pipeline

log = logging.getLogger(__name__)
SCENARIO_INDEX = "scenario_index.json"


def scenario_vocabulary(logs_dir: str, workdir: str) -> list[str]:
    """The append-only scenario registry: a scenario keeps its index forever, new ones go last.

    Scenarios come from the scenarios side table; one absent from it gets the OOV slot."""
    path = os.path.join(workdir, SCENARIO_INDEX)
    known: list[str] = []
    if os.path.exists(path):
        with open(path) as fh:
            known = json.load(fh)
    table = os.path.join(logs_dir, "scenarios.jsonl")
    seen = set(known)
    if os.path.exists(table):
        with open(table) as fh:
            fresh = sorted({json.loads(line)["scenario_id"] for line in fh if line.strip()} - seen)
        known += fresh
    if not known:
        raise FileNotFoundError(f"no scenarios: {table} is missing or empty and {path} does not exist yet")
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(known, fh)
    return known


def make_run(logs_dir: str, date: str, workdir: str, feature_config: str | None = None, **options: Any) -> DailyRun:
    dt.date.fromisoformat(date)  # a clear error for a malformed date before anything starts
    config_path = feature_config or os.path.join(logs_dir, "feature_config.yaml")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"feature config not found: {config_path} (pass --feature-config)")
    return DailyRun(logs_dir=os.path.abspath(logs_dir), date=date, workdir=os.path.abspath(workdir),
                    feature_config_path=os.path.abspath(config_path),
                    feature_config=load_feature_config(config_path),
                    scenario_vocabulary=scenario_vocabulary(logs_dir, workdir), **options)


def _store(run: DailyRun) -> metadata_store.MetadataStore:
    return metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(run.metadata_path))


def _max_execution_id(run: DailyRun) -> int:
    if not os.path.exists(run.metadata_path):
        return 0
    return max((e.id for e in _store(run).get_executions()), default=0)


def run_outputs(run: DailyRun, after_execution_id: int) -> dict[str, Any]:
    """Output artifacts and wall times of the executions of this run (ids above the mark: local runs
    are sequential, so they are exactly this run's)."""
    store = _store(run)
    executions = [e for e in store.get_executions() if e.id > after_execution_id]
    types = {t.id: t.name for t in store.get_execution_types()}
    outputs: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    events = store.get_events_by_execution_ids([e.id for e in executions])
    artifacts = {a.id: a for a in store.get_artifacts_by_id([ev.artifact_id for ev in events])}
    by_exec: dict[int, str] = {}
    for e in executions:
        name = types[e.type_id].split(".")[-1]
        by_exec[e.id] = name
        timings[name] = (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000.0
    for ev in events:
        if ev.type != ev.OUTPUT:
            continue
        key = ev.path.steps[0].key if ev.path.steps else "output"
        outputs.setdefault(by_exec[ev.execution_id], {})[key] = artifacts[ev.artifact_id]
    return {"outputs": outputs, "timings": timings}


def run_day(logs_dir: str, date: str, workdir: str, model: str = "sarnet", window: int = 2,
            feature_config: str | None = None, **options: Any) -> dict[str, Any]:
    """Run the pipeline for one date; returns the report (also written to reports/<date>/)."""
    run = make_run(logs_dir, date, workdir, feature_config, model=model, window=window, **options)
    os.makedirs(run.report_dir, exist_ok=True)
    mark = _max_execution_id(run)
    started = time.time()
    error = None
    try:
        tfx.orchestration.LocalDagRunner().run(create_pipeline(run))
    except Exception as e:  # the report says what failed; the CLI exits non-zero
        error = e
    found = run_outputs(run, mark) if os.path.exists(run.metadata_path) else {"outputs": {}, "timings": {}}
    rep = report.build(run, found["outputs"], found["timings"], time.time() - started, error)
    report.write(run, rep)
    return rep


def run_command(args: argparse.Namespace) -> int:
    rep = run_day(**_options(args, date=args.date))
    report.print_report(rep)
    return 0 if not rep.get("error") else 1


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
        report.print_report(rep)
        reports.append(rep)
        if rep.get("error"):
            break
    return reports


def backfill_command(args: argparse.Namespace) -> int:
    opts = _options(args)
    reports = backfill(date_from=args.date_from, date_to=args.date_to, **opts)
    report.print_backfill(reports)
    return 0 if reports and not any(r.get("error") for r in reports) else 1


def show_progress() -> None:
    """TFX reports each component's start and end through absl at INFO; Beam and TensorFlow are
    far chattier at INFO, so only absl and msrec's own loggers are raised to it."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    for name in ("absl", "msrec"):
        logging.getLogger(name).setLevel(logging.INFO)


def _hparams(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise SystemExit(f"msrec: --hparams is not JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"msrec: --hparams must be a JSON object, got {text!r}")
    return value


def _options(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    show_progress()
    return dict(logs_dir=args.logs, workdir=args.workdir, model=args.model, window=args.window,
                feature_config=args.feature_config, epochs=args.epochs, batch_size=args.batch_size,
                auc_floor=args.auc_floor, auc_delta=args.auc_delta, min_slice_size=args.min_scenario_samples,
                auc_noise_z=args.auc_noise_z,
                hparams=_hparams(args.hparams),
                beam_pipeline_args=tuple(shlex.split(args.beam_pipeline_args)), **extra)

