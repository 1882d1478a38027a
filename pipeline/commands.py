"""``msrec run`` and ``msrec backfill``: command-line options to the local runner, and what they print."""
from __future__ import annotations

import argparse
import json
import os
import shlex
from typing import Any

from msrec.components.anomaly_gate.day_checks import DayLimits
from msrec.components.log_example_gen.limits import IngestLimits, dedup_fields
from msrec.pipeline import daily, report, schedule


def run_command(args: argparse.Namespace) -> int:
    rep = daily.run_day(**pipeline_options(args, date=args.date, force=args.force))
    report.print_report(rep)
    return 0 if not rep.get("error") else 1


def backfill_command(args: argparse.Namespace) -> int:
    opts = pipeline_options(args)
    reports = daily.backfill(date_from=args.date_from, date_to=args.date_to, **opts)
    if reports:
        print(f"backfill report: {report.finish_backfill(opts['workdir'], reports, args.truth)}")
    return 0 if reports and not any(r.get("error") for r in reports) else 1


def daily_command(args: argparse.Namespace) -> int:
    """The scheduled entry point: every complete day not yet run, in date order, up to --until."""
    rule = schedule.Completeness(args.marker, args.min_age_hours)
    options = pipeline_options(args, omit=("logs_dir", "workdir"))
    reports = schedule.catch_up(args.logs, args.workdir, args.until or schedule.yesterday(), daily.run_day,
                                completeness=rule, start=args.date_from, **options)
    return 0 if not any(r.get("error") for r in reports) else 1


def parse_hparams(text: str) -> dict[str, Any]:
    """``--hparams``: a JSON object of hyper-parameters over the model's defaults."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise SystemExit(f"msrec: --hparams is not JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"msrec: --hparams must be a JSON object, got {text!r}")
    return value


def _schema(path: str | None) -> str | None:
    if path is None:
        return None
    if not os.path.isfile(path):
        raise SystemExit(f"msrec: --schema {path!r} is not a file")
    return os.path.abspath(path)


def pipeline_options(args: argparse.Namespace, omit: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """The runner's keyword arguments from the pipeline options of a command (run, backfill, daily, compile)."""
    options = dict(logs_dir=args.logs, workdir=args.workdir, model=args.model, window=args.window,
                   feature_config=args.feature_config, eval_days=args.eval_days, val_days=args.val_days,
                   **{k: v for k, v in (("max_epochs", args.max_epochs), ("patience", args.patience),
                                        ("batch_size", args.batch_size),
                                        ("incremental_lr_scale", args.incremental_lr_scale),
                                        ("component_processes", args.component_processes)) if v is not None},
                   auc_floor=args.auc_floor, auc_delta=args.auc_delta, min_slice_size=args.min_scenario_samples,
                   auc_noise_z=args.auc_noise_z, schema_path=_schema(args.schema),
                   full_retrain_days=args.full_retrain_days, workers=args.workers,
                   hparams=parse_hparams(args.hparams),
                   beam_pipeline_args=tuple(shlex.split(args.beam_pipeline_args)),
                   ingest_limits=IngestLimits(**_given(args, "max_line_bytes", "max_field_bytes"),
                                              dedup_key=dedup_fields(args.dedup_key),
                                              keep_duplicates=args.keep_duplicates),
                   day_limits=_day_limits(args), **extra)
    return {k: v for k, v in options.items() if k not in omit}


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def _day_limits(args: argparse.Namespace) -> DayLimits:
    clicks = _given(args, "min_eval_clicks")
    return DayLimits(**_given(args, "max_quarantine_rate", "max_damaged_files", "min_train_rows", "min_eval_rows"),
                     **clicks, **({"min_eval_non_clicks": clicks["min_eval_clicks"]} if clicks else {}))
