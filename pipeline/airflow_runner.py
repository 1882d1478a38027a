"""The daily pipeline on Apache Airflow: one DAG run per day, in date order.

``msrec compile airflow`` writes a small DAG file that calls :func:`daily_dag` with the command's
settings; dropped into Airflow's dags folder, it runs the pipeline that ``msrec run`` runs, for each
day from ``--start-date`` on. The pipeline is built once per DAG parse with its date a runtime
parameter: each run ingests, gates, trains and pushes the day of its logical date (``ds``), or the
``date`` of a run triggered with ``--conf '{"date": "YYYY-MM-DD"}'``.

Days run one at a time and in order (``max_active_runs`` 1, ``catchup``): each day's FC, warm start
and gate baseline are the model pushed the day before. The first task waits for the day's logs to be
complete (``msrec daily``'s rule: the ``_SUCCESS`` marker, or ``--min-age-hours``) and fails clearly
when the day before failed, so that a failed day is never skipped: clear it and the days after it.
The last task writes the day's report (``reports/<date>/report.json`` and ``.html``) from the run's
MLMD records, as ``msrec run`` does, whatever became of the tasks before it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import pprint
from typing import Any, Mapping

# The run date's default: the run's logical date. TFX turns the runtime parameter into the template
# below in every task that takes the date; the first task renders the same.
DEFAULT_DATE = "{{ ds }}"
RUN_DATE_TEMPLATE = '{{ dag_run.conf.get("date", ds) }}'
WAIT_FOR_LOGS_S = 24 * 3600  # then the day fails; clearing it waits again
POKE_S = 600
IMPORT_TIMEOUT_S = 300  # what the DAG file's header asks for: importing TFX takes 20-60 s
_PATH_SETTINGS = ("logs", "workdir", "feature_config", "schema")
_NOT_SETTINGS = ("command", "target", "func", "out", "verbose")
_REQUIRED = ("logs", "workdir", "start_date")


def dag_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``msrec compile airflow`` the DAG is built from: the required ones and those not
    at their defaults, paths made absolute."""
    defaults = vars(_namespace({"logs": args.logs, "workdir": args.workdir, "start_date": args.start_date}))
    settings = {k: v for k, v in vars(args).items()
                if k not in _NOT_SETTINGS and (k in _REQUIRED or v != defaults.get(k))}
    for key in _PATH_SETTINGS:
        if settings.get(key) is not None:
            settings[key] = os.path.abspath(settings[key])
    return settings


def _namespace(settings: Mapping[str, Any]) -> argparse.Namespace:
    """The command's defaults with ``settings`` over them (a DAG file written before an option existed
    still builds)."""
    from msrec.cli import build_parser

    required = [arg for key in _REQUIRED for arg in (f"--{key.replace('_', '-')}", settings[key])]
    args = build_parser().parse_args(["compile", "airflow", *required, "--out", "-"])
    for key, value in settings.items():
        setattr(args, key, value)
    return args


def _start_date(text: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--start-date {text!r} is not YYYY-MM-DD") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def logs_ready(logs_dir: str, reports_dir: str, date: str, marker: str, min_age_hours: float | None,
               ti: Any) -> bool:
    """The first task's check (a sensor poke): False while the day's logs are incomplete; fails the run
    when the day before it failed, since this day would train on the wrong production model."""
    from airflow.exceptions import AirflowFailException

    from msrec.components.anomaly_gate.component import anomalies_path
    from msrec.pipeline.schedule import Completeness

    previous = ti.get_previous_dagrun()
    if previous is not None and previous.state == "failed":
        raise AirflowFailException(
            f"the run of {previous.logical_date:%Y-%m-%d} failed, and days run in order: clear it (after fixing "
            f"its cause) and the days after it, e.g. airflow tasks clear --start-date "
            f"{previous.logical_date:%Y-%m-%d} {ti.dag_id}")
    complete, why = Completeness(marker, min_age_hours).check(os.path.join(logs_dir, date))
    print(f"logs of {date}: {why}", flush=True)
    stale = anomalies_path(reports_dir, date)
    if complete and os.path.exists(stale):
        os.remove(stale)  # an earlier attempt's gate reasons: this run's report shows only its own
    return complete


def write_report(settings: Mapping[str, Any], date: str, dag_run: Any) -> None:
    """The last task: the day's report from the run's MLMD records; after writing it, fails when a task
    before it failed (the run's state follows its last task)."""
    from airflow.exceptions import AirflowFailException

    from msrec.pipeline import commands, daily, report
    from msrec.pipeline.run_history import orchestrated_run_outputs

    run = daily.make_run(date=date, **commands.pipeline_options(_namespace(settings)))
    tasks = dag_run.get_task_instances()
    failed = sorted(ti.task_id for ti in tasks if ti.state in ("failed", "upstream_failed"))
    error = RuntimeError(f"failed: {', '.join(failed)} (see their task logs)") if failed else None
    found = orchestrated_run_outputs(run, dag_run.run_id)
    now = dt.datetime.now(dt.timezone.utc)
    # from the first task's start (`airflow dags test` records only end dates, and dates the run at its
    # logical date)
    started = min((t for ti in tasks for t in (ti.start_date, ti.end_date) if t is not None), default=now)
    rep = report.build(run, found["outputs"], found["timings"], (now - started).total_seconds(), error)
    report.write(run, rep)
    report.print_report(rep)
    if error is not None:
        raise AirflowFailException(rep["error"])


def daily_dag(settings: Mapping[str, Any]) -> Any:
    """The Airflow DAG of the daily pipeline (its id: ``msrec_<model>``) for the settings of
    ``msrec compile airflow`` (:func:`dag_settings`)."""
    from airflow.operators.python import PythonOperator
    from airflow.sensors.python import PythonSensor
    from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

    from msrec.pipeline import commands, daily
    from msrec.pipeline.pipeline import create_pipeline, date_parameter

    args = _namespace(settings)
    run = daily.make_run(date=date_parameter(DEFAULT_DATE), **commands.pipeline_options(args))
    config = AirflowPipelineConfig(airflow_dag_config={
        "schedule": "@daily", "start_date": _start_date(args.start_date), "catchup": True, "max_active_runs": 1,
        "description": f"msrec daily pipeline: {run.model} on {run.logs_dir}, workdir {run.workdir}",
    })
    dag = AirflowDagRunner(config).run(create_pipeline(run))
    pipeline_tasks = list(dag.tasks)
    ready = PythonSensor(task_id="logs_complete", python_callable=logs_ready, dag=dag, mode="reschedule",
                         poke_interval=POKE_S, timeout=WAIT_FOR_LOGS_S,
                         op_kwargs={"logs_dir": run.logs_dir, "reports_dir": run.reports_dir,
                                    "date": RUN_DATE_TEMPLATE, "marker": args.marker,
                                    "min_age_hours": args.min_age_hours})
    ready >> [task for task in pipeline_tasks if not task.upstream_list]
    reported = PythonOperator(task_id="report", python_callable=write_report, dag=dag, trigger_rule="all_done",
                              op_kwargs={"settings": dict(settings), "date": RUN_DATE_TEMPLATE})
    [ready, *pipeline_tasks] >> reported
    return dag


DAG_FILE = '''"""msrec's daily pipeline as an Airflow DAG ({dag_id}): one run per day from {start}, in date order.

Written by `msrec compile airflow`; put it in Airflow's dags folder. Parsing it imports TFX, which can
take longer than Airflow's default 30 s: run Airflow with AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT={timeout}.
"""
from msrec.pipeline.airflow_runner import daily_dag

SETTINGS = {settings}

dag = daily_dag(SETTINGS)
'''


def compile_command(args: argparse.Namespace) -> int:
    """``msrec compile airflow``: build the DAG once (a clear error now rather than an import error in
    Airflow) and write the DAG file."""
    from msrec.progress import library_output

    settings = dag_settings(args)
    try:
        _start_date(args.start_date)
        with library_output():
            dag = daily_dag(settings)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"msrec: {e}") from None
    text = DAG_FILE.format(dag_id=dag.dag_id, start=args.start_date, timeout=IMPORT_TIMEOUT_S,
                           settings=pprint.pformat(settings, width=100, sort_dicts=True))  # a Python literal
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write(text)
    print(f"wrote {args.out}: DAG {dag.dag_id}, {len(dag.tasks)} tasks, @daily from {args.start_date} "
          f"(catchup, one run at a time)", flush=True)
    return 0
