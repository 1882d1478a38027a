"""The ``msrec`` command line. Each sub-command's work lives in its own module, imported lazily
so that ``msrec --help`` does not pay for importing TensorFlow."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Sequence

import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)

MODEL_HELP = "model name from the registry (sarnet, mmoe, mix, ...)"


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    module, func = target.split(":")

    def call(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), func)(args)

    return call


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="write realistic multi-scenario impression logs")
    p.add_argument("--out", required=True, help="output folder (logs/ and truth/ go inside)")
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--impressions-per-day", type=int, default=200_000)
    p.add_argument("--scenarios", type=int, default=20)
    p.add_argument("--users", type=int, default=None, help="default: scales with impressions")
    p.add_argument("--items", type=int, default=None, help="default: scales with impressions")
    p.add_argument("--start", default="2026-11-01", help="first day, YYYY-MM-DD")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corrupt-fraction", type=float, default=0.0,
                   help="fraction of log lines to corrupt in assorted ways (for quarantine tests)")
    p.add_argument("--forced-click-lift", type=float, default=0.0,
                   help="logit added to the click probability of forced (promoted) impressions, unlogged")
    p.set_defaults(func=_lazy("msrec.data.generator:main"))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="convert a public dataset you downloaded into msrec's raw logs")
    isub = p.add_subparsers(dest="source", required=True)
    m = isub.add_parser("movielens", help="MovieLens-100K (u.data ...) or -1M (ratings.dat ...) files")
    m.add_argument("--src", required=True, help="folder holding the MovieLens files")
    m.add_argument("--out", required=True, help="new folder for the logs (day folders, side tables, feature config)")
    m.set_defaults(func=_lazy("msrec.importers.movielens:main"))


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logs", required=True, help="folder of day folders and side tables")
    p.add_argument("--workdir", required=True, help="pipeline root, metadata, reports, serving/")
    p.add_argument("--model", default="sarnet", help=MODEL_HELP)
    p.add_argument("--window", type=int, default=2, help="days in the window (train, val and eval)")
    p.add_argument("--eval-days", type=_positive, default=1, help="newest days of the window that are the eval split")
    p.add_argument("--val-days", type=_positive, default=1,
                   help="days before them that are the val split the epoch is selected on; a window without "
                        "room for a train day cuts the day before the eval days by time (val: its last fifth), "
                        "a one-day window its only day (eval: its last fifth, val: the fifth before)")
    p.add_argument("--feature-config", default=None, help="default: <logs>/feature_config.yaml")
    p.add_argument("--verbose", action="store_true",
                   help="show TensorFlow, Beam and TFX logging on the terminal (default: <workdir>/logs/msrec.log)")
    p.add_argument("--schema", default=None,
                   help="TFDV schema (text) the examples are validated against; default: generated from the "
                        "feature config, written to <workdir>/schema.pbtxt")
    # None: the trainer's defaults (msrec.models.training.loop), kept in one place
    p.add_argument("--max-epochs", type=_positive, default=None, help="epochs at most; the best by val AUC is kept")
    p.add_argument("--patience", type=_positive, default=None, help="epochs without a better val AUC before stopping")
    p.add_argument("--batch-size", type=_positive, default=None)
    p.add_argument("--incremental-lr-scale", type=_fraction, default=None,
                   help="the learning rate of an incremental run (one that continues production), as a fraction "
                        "of the model's learning_rate (default 0.1)")
    p.add_argument("--workers", type=_positive, default=1,
                   help="training processes on this machine (MultiWorkerMirroredStrategy); on a cluster, the "
                        "TF_CONFIG the platform sets decides instead")
    p.add_argument("--component-processes", type=_positive, default=None,
                   help="a local run's components that do not depend on each other run at the same time, this "
                        "many at most (default 3): one in this process, the others in worker processes; 1 runs "
                        "them one after another, as TFX's LocalDagRunner")
    p.add_argument("--full-retrain-days", type=_positive, default=7,
                   help="train the whole window from scratch once the production model's last full retrain "
                        "is this many days old; other days continue production on the days it has not seen")
    p.add_argument("--auc-floor", type=float, default=0.55)
    p.add_argument("--auc-delta", type=float, default=0.01,
                   help="largest per-scenario AUC drop vs the blessed model still blessed")
    p.add_argument("--min-scenario-samples", type=int, default=1000,
                   help="scenarios with fewer eval samples are reported but not gated")
    p.add_argument("--auc-noise-z", type=float, default=1.0,
                   help="a scenario's drop may also exceed --auc-delta by this many standard errors of the "
                        "AUC difference (0: strict)")
    p.add_argument("--hparams", default="{}", help='model hyper-parameters as JSON, e.g. \'{"learning_rate": 0.003}\'')
    p.add_argument("--beam-pipeline-args", default="",
                   help="passed to Beam, e.g. '--runner=FlinkRunner --flink_master=...' (default: none, Beam's "
                        "DirectRunner in process)")
    _add_data_checks(p)


def _add_data_checks(p: argparse.ArgumentParser) -> None:
    # None: the defaults of IngestLimits and DayLimits, kept in one place
    g = p.add_argument_group("what ingestion accepts, and when a day is too bad to train on")
    g.add_argument("--max-line-bytes", type=_positive, default=None, help="longer lines are quarantined (too_large)")
    g.add_argument("--max-field-bytes", type=_positive, default=None,
                   help="lines with a longer field value are quarantined (too_large)")
    _add_duplicates(g)
    g.add_argument("--max-quarantine-rate", type=float, default=None,
                   help="stop the run as an anomaly when a larger share of the lines is quarantined (default 0.05)")
    g.add_argument("--max-damaged-files", type=int, default=None,
                   help="stop the run when more log files are truncated or corrupt (default 0)")
    g.add_argument("--min-train-rows", type=int, default=None, help="stop the run when the train split is smaller")
    g.add_argument("--min-eval-rows", type=int, default=None, help="stop the run when the eval split is smaller")
    g.add_argument("--min-eval-clicks", type=int, default=None,
                   help="stop the run when the eval split has fewer clicks, or fewer non-clicks")


def _add_duplicates(g: argparse._ActionsContainer) -> None:
    g.add_argument("--dedup-key", default="",
                   help="comma-separated fields that identify an impression (default: all its fields)")
    g.add_argument("--keep-duplicates", action="store_true", help="count duplicate impressions but keep them")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the daily pipeline for one date")
    p.add_argument("--date", required=True, help="YYYY-MM-DD, the newest day of the window")
    p.add_argument("--force", action="store_true", help="run a date again although it already pushed a version")
    _add_pipeline_args(p)
    p.set_defaults(func=_lazy("msrec.pipeline.commands:run_command"))


def _add_daily(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("daily", help="what a scheduler starts: every complete day not yet run, in date order")
    p.add_argument("--until", default=None, help="newest day to run (default: yesterday, UTC)")
    p.add_argument("--from", dest="date_from", default=None,
                   help="first day on a workdir that has run nothing yet (default: only --until)")
    _add_completeness(p)
    _add_pipeline_args(p)
    p.set_defaults(func=_lazy("msrec.pipeline.commands:daily_command"))


def _add_completeness(p: argparse.ArgumentParser) -> None:
    p.add_argument("--marker", default="_SUCCESS", help="file whose presence makes a day folder complete")
    p.add_argument("--min-age-hours", type=float, default=None,
                   help="instead of the marker: a day is complete when nothing in it changed for this long")


def _add_compile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="the daily pipeline for an orchestrator, built once, one run per day")
    csub = p.add_subparsers(dest="target", required=True)
    a = csub.add_parser("airflow", help="write an Airflow DAG file: @daily from --start-date, catchup, "
                                        "one run at a time")
    a.add_argument("--start-date", required=True, help="YYYY-MM-DD, the first day the DAG runs")
    a.add_argument("--out", required=True, help="the DAG file to write, e.g. $AIRFLOW_HOME/dags/msrec_daily.py")
    _add_completeness(a)
    _add_pipeline_args(a)
    a.set_defaults(func=_lazy("msrec.pipeline.airflow_runner:compile_command"))
    _add_compile_kubeflow(csub)


def _add_compile_kubeflow(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser("kubeflow", help="write a Kubeflow Pipelines v2 pipeline spec whose runtime "
                                            "parameter date (YYYY-MM-DD) is the day a run processes")
    p.add_argument("--out", required=True, help="the spec to write: spec.json, or spec.yaml for kfp's client")
    p.add_argument("--image", default=None,
                   help="container image of every task, with msrec's wheel and its locked dependencies installed "
                        "(default msrec:<version>); nothing is built or pushed")
    _add_pipeline_args(p)
    p.set_defaults(func=_lazy("msrec.pipeline.kubeflow_runner:compile_command"))


def _add_schedule(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schedule", help="print the crontab line or systemd units that run `msrec daily` every day")
    p.add_argument("scheduler", choices=("cron", "systemd"))
    p.add_argument("--logs", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--model", default="sarnet", help=MODEL_HELP)
    p.add_argument("--at", default="03:00", help="time of day, HH:MM")
    p.set_defaults(func=_lazy("msrec.pipeline.schedule:schedule_command"))


def _add_backfill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backfill", help="run the daily pipeline for each day of a range, in order")
    p.add_argument("--from", dest="date_from", required=True)
    p.add_argument("--to", dest="date_to", required=True)
    p.add_argument("--truth", default=None,
                   help="the truth/ folder of `msrec generate`: the report sets the oracle AUC beside each day's")
    _add_pipeline_args(p)
    p.set_defaults(func=_lazy("msrec.pipeline.commands:backfill_command"))


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from msrec.serving.flags import add_serve_arguments

    p = sub.add_parser("serve", help="TF-Serving-compatible gRPC server (tensorflow_model_server flags)")
    add_serve_arguments(p)
    p.set_defaults(func=_lazy("msrec.serving.server:main"))


def _add_query(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("query", help="rank candidates for one user in one scenario over gRPC")
    p.add_argument("--server", required=True, help="HOST:PORT")
    p.add_argument("--model", required=True)
    p.add_argument("--request", default=None, help="JSON file of features per candidate")
    p.add_argument("--logs", default=None)
    p.add_argument("--user", default=None)
    p.add_argument("--scenario", default=None)
    p.add_argument("--items", default=None, help="comma-separated item ids")
    p.add_argument("--context", default=None,
                   help="context feature rules for --logs, e.g. 'position=slot,device=last:web,hour=hour'")
    p.add_argument("--now", default=None, help="for --logs: epoch ms or ISO date/time (default: now)")
    p.add_argument("--timeout", type=float, default=10.0)
    _add_duplicates(p.add_argument_group("for --logs: duplicate impressions, as the pipeline's ingestion was told"))
    p.set_defaults(func=_lazy("msrec.serving.client:main"))


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks, printed as tables with the machine noted")
    bsub = p.add_subparsers(dest="bench", required=True)
    for name, help_ in [("ingest", "generator and ingestion throughput"),
                        ("pipeline", "wall time per pipeline component"),
                        ("serve", "gRPC latency and QPS vs in-process"),
                        ("models", "every model on the same window"),
                        ("fairness", "SAR-Net's FC debiasing vs no FC vs down-sampling, organic AUC and top-K exposure")]:
        b = bsub.add_parser(name, help=help_)
        b.add_argument("--out", default=None, help="folder for data and results (default: a temp dir)")
        b.add_argument("--sizes", default=None, help="comma-separated impression counts")
        b.add_argument("--days", type=int, default=None)
        b.add_argument("--impressions-per-day", type=int, default=None)
        b.add_argument("--seeds", type=int, default=None)
        b.add_argument("--models", default=None,
                       help="comma-separated model names; bench models also takes ablation rows, "
                            "name[key=value,...], e.g. sarnet,sarnet[attention=concat]")
        if name == "models":
            b.add_argument("--logs", default=None, help="your own logs instead of generated ones (no oracle then); "
                                                        "--days is the window, its newest days")
            b.add_argument("--eval-days", type=int, default=None, help="default 1")
            b.add_argument("--val-days", type=int, default=None, help="default 1")
            b.add_argument("--hparams", default="{}",
                           help='hyper-parameters over every model\'s defaults, as JSON, e.g. \'{"embedding_dim": 8}\'')
        if name == "fairness":
            b.add_argument("--top-k", type=int, default=3, help="slots shown per request in the exposure simulation")
            b.add_argument("--downsample-keep", type=float, default=0.2,
                           help="share of forced train impressions the downsample variant keeps")
            b.add_argument("--forced-click-lift", type=float, default=0.0,
                           help="the window's logit lift of forced impressions' clicks (msrec generate's)")
        b.add_argument("--verbose", action="store_true",
                       help="show TensorFlow, Beam and TFX logging on the terminal (default: <out>/logs/msrec.log)")
        b.set_defaults(func=_lazy(f"msrec.bench.{name}:main"))


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: generate, backfill, serve, query, report")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--impressions-per-day", type=int, default=60_000)
    p.add_argument("--model", default="sarnet", help=MODEL_HELP)
    p.add_argument("--verbose", action="store_true",
                   help="show TensorFlow, Beam and TFX logging on the terminal (default: <out>/logs/msrec.log)")
    p.set_defaults(func=_lazy("msrec.demo:main"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_generate, _add_import, _add_run, _add_backfill, _add_daily, _add_schedule, _add_compile,
                _add_serve, _add_query, _add_bench, _add_demo):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # before the command's module imports TensorFlow, so that its start-up noise goes to the log too
    log_dir = getattr(args, "workdir", None) or getattr(args, "out", None)
    if hasattr(args, "verbose") and log_dir:
        from msrec.progress import show_progress

        log_path = show_progress(os.path.join(log_dir, "logs", "msrec.log"), args.verbose)
        if log_path:
            print(f"library logs (TensorFlow, Beam, TFX): {log_path}", flush=True)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
