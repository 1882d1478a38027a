"""The daily run on a bad day: DayGate stops it right after ingestion, before anything reads the
examples, with its reasons in the report and on the terminal, no traceback; a later run of the same
date that fails earlier reports its own reason, not the stale one."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import json
import os
from typing import Any

from support.ingest import write_fixture
from msrec.pipeline import daily, report

DAYS = ["2026-11-02", "2026-11-03"]


def test_a_bad_day_stops_after_ingestion_and_a_rerun_reports_only_itself(tmp_path: Any, capfd: Any) -> None:
    fx = write_fixture(str(tmp_path), DAYS, per_day=120)  # 16 bad lines a day: 11.8% quarantined
    workdir = str(tmp_path / "work")
    rep = daily.run_day(fx.logs, DAYS[1], workdir, feature_config=fx.config_path)
    report.print_report(rep)
    c = rep["counts"]
    assert c["read"] == 2 * (120 + 3 + 16) and c["quarantined"] == 32
    assert c["quarantine_rate"] == 32 / c["read"]
    assert rep["error"].startswith("anomalies in the day's data:\nquarantine rate 11.5% (32 of 278 lines")
    assert "above the limit 5.0%" in rep["error"] and "the train split has" in rep["error"]
    # nothing that reads the examples after the gate
    assert set(rep["timings_s"]) <= {"LogExampleGen", "DayGate", "ImportSchemaGen", "EvaluationSchema", "Resolver"}
    out = capfd.readouterr()
    assert "RUN FAILED: anomalies in the day's data" in out.out
    assert "Traceback" not in out.out + out.err
    with open(os.path.join(workdir, "reports", DAYS[1], "report.json")) as fh:
        assert json.load(fh)["error"] == rep["error"]

    # The same date again, failing before any gate runs: its own reason, not the anomalies above.
    for name in os.listdir(os.path.join(fx.logs, DAYS[1])):
        os.remove(os.path.join(fx.logs, DAYS[1], name))
    again = daily.run_day(fx.logs, DAYS[1], workdir, feature_config=fx.config_path)
    assert again["error"].startswith("IngestError: no impressions-*.jsonl[.gz] for the run date 2026-11-03")
    assert "quarantine rate" not in again["error"]
