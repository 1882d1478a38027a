"""The daily pipeline scheduled by Airflow: ``msrec compile airflow`` writes the DAG file, and
``airflow dags test`` runs the newest day of a small window with its own Airflow home (sqlite,
SequentialExecutor), ingest to push and report, every component that needs the day getting the run's date."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from tfx.orchestration.metadata import sqlite_metadata_connection_config

from msrec.data.generator import generate

BIN = os.path.dirname(sys.executable)
DAG_ID = "msrec_sarnet"


def _airflow_env(home: Path) -> dict[str, str]:
    return {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300", "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs")}


def _run(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Airflow's and the libraries' output goes to ``log``, not the terminal."""
    with open(log, "w") as fh:
        return subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=env)


def _finish(proc: subprocess.Popen, log: Path, timeout: int) -> None:
    assert proc.wait(timeout=timeout) == 0, log.read_text()[-4000:]


def test_airflow_runs_the_newest_day_of_the_window_and_pushes(tmp_path: Path) -> None:
    data = generate(tmp_path / "data", days=2, impressions_per_day=6_000, seed=1, progress=False)
    day = data.dates[-1]
    (Path(data.logs_dir) / day / "_SUCCESS").touch()  # the log shipper's marker: the day is complete
    home, work = tmp_path / "airflow", tmp_path / "work"
    env = _airflow_env(home)
    dag_file = home / "dags" / "msrec_daily.py"
    compiled = _run([os.path.join(BIN, "msrec"), "compile", "airflow", "--logs", str(data.logs_dir),
                     "--workdir", str(work), "--start-date", data.dates[0], "--out", str(dag_file),
                     "--max-epochs", "2", "--auc-floor", "0.5"], tmp_path / "compile.log", env)
    migrated = _run([os.path.join(BIN, "airflow"), "db", "migrate"], tmp_path / "migrate.log", env)
    _finish(compiled, tmp_path / "compile.log", 300)
    _finish(migrated, tmp_path / "migrate.log", 300)
    text = dag_file.read_text()
    assert "daily_dag(SETTINGS)" in text and str(Path(__file__).parents[2]) not in text  # not the checkout

    _finish(_run([os.path.join(BIN, "airflow"), "dags", "test", DAG_ID, day], tmp_path / "dags_test.log", env),
            tmp_path / "dags_test.log", 900)
    log = (tmp_path / "dags_test.log").read_text()
    assert f"logs of {day}: _SUCCESS marker present" in log

    versions = os.listdir(work / "serving" / "sarnet")
    assert len(versions) == 1 and (work / "serving" / "sarnet" / versions[0] / "saved_model.pb").is_file()
    # the day the run's date named, in ingestion and in the Trainer's full-retrain rule
    store = metadata_store.MetadataStore(sqlite_metadata_connection_config(str(work / "metadata.sqlite")))
    types = {t.id: t.name.split(".")[-1] for t in store.get_execution_types()}
    dates = {types[e.type_id]: e.properties[key].string_value for e in store.get_executions()
             for key in ("date", "run_date") if key in e.properties}
    assert dates == {"LogExampleGen": day, "DayGate": day, "AnomalyGate": day, "Trainer": day}
    record = json.loads((work / "serving" / "sarnet" / versions[0] / "assets.extra" / "training.json").read_text())
    assert record["mode"] == "full" and record["last_full_retrain"] == day
    assert (work / "reports" / day / "anomalies.txt").read_text() == ""  # the gates' report: nothing wrong
    report = json.loads((work / "reports" / day / "report.json").read_text())
    assert report["date"] == day and report["pushed_version"] == int(versions[0]) and "error" not in report
    assert report["training"]["epochs_run"] == 2 and "Trainer" in report["timings_s"] and 0 < report["wall_s"] < 3600
