"""Daily operation: completeness of a day folder, the in-order catch-up, the scheduler entries."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from msrec.pipeline import schedule

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]


def _logs(root: Path, complete: list[str]) -> str:
    for day in DAYS:
        (root / "logs" / day).mkdir(parents=True)
        (root / "logs" / day / "impressions-0.jsonl").write_text("{}\n")
        if day in complete:
            (root / "logs" / day / schedule.SUCCESS_MARKER).write_text("")
    return str(root / "logs")


class Recorder:
    """Runs a day the way the pipeline leaves it for the scheduler: a report.json per date."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.dates: list[str] = []
        self.fail = fail

    def __call__(self, logs_dir: str, date: str, workdir: str, **options: Any) -> dict[str, Any]:
        self.dates.append(date)
        rep = {"date": date, "model": "sarnet", "error": "boom" if date in self.fail else None}
        os.makedirs(os.path.join(workdir, "reports", date), exist_ok=True)
        with open(os.path.join(workdir, "reports", date, "report.json"), "w") as fh:
            json.dump(rep, fh)
        return rep


def test_marker_and_age_rules(tmp_path: Path) -> None:
    logs = _logs(tmp_path, complete=["2026-11-01"])
    ok, why = schedule.Completeness().check(os.path.join(logs, "2026-11-01"))
    assert ok and "_SUCCESS" in why
    ok, why = schedule.Completeness().check(os.path.join(logs, "2026-11-02"))
    assert not ok and "no _SUCCESS marker" in why
    aged = schedule.Completeness(min_age_hours=2)
    assert not aged.check(os.path.join(logs, "2026-11-02"))[0]
    assert aged.check(os.path.join(logs, "2026-11-02"), now=time.time() + 3 * 3600)[0]


def test_catch_up_runs_missed_days_in_order_and_stops_at_an_incomplete_one(tmp_path: Path, capsys) -> None:
    logs = _logs(tmp_path, complete=DAYS[:3])
    work = str(tmp_path / "work")
    run = Recorder()
    schedule.catch_up(logs, work, "2026-11-04", run, start="2026-11-01")
    assert run.dates == DAYS[:3]
    assert "2026-11-04: not run, logs not complete: no _SUCCESS marker" in capsys.readouterr().out
    (Path(logs) / DAYS[3] / schedule.SUCCESS_MARKER).write_text("")
    schedule.catch_up(logs, work, "2026-11-04", run)  # the next start picks up where the last one stopped
    assert run.dates == DAYS


def test_a_failed_day_is_retried_before_any_later_day(tmp_path: Path) -> None:
    logs = _logs(tmp_path, complete=DAYS)
    work = str(tmp_path / "work")
    run = Recorder(fail={"2026-11-02"})
    schedule.catch_up(logs, work, "2026-11-04", run, start="2026-11-01")
    assert run.dates == ["2026-11-01", "2026-11-02"]
    run.fail = set()
    schedule.catch_up(logs, work, "2026-11-04", run)
    assert run.dates == ["2026-11-01", "2026-11-02", "2026-11-02", "2026-11-03", "2026-11-04"]


def test_already_pushed_needs_the_version_still_on_disk(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "reports" / "2026-11-02").mkdir(parents=True)
    (work / "reports" / "2026-11-02" / "report.json").write_text(json.dumps({"model": "sarnet", "pushed_version": 7}))
    assert schedule.already_pushed(str(work), "sarnet", "2026-11-02") is None  # version 7 is gone
    (work / "serving" / "sarnet" / "7").mkdir(parents=True)
    assert schedule.already_pushed(str(work), "sarnet", "2026-11-02") == 7
    assert schedule.already_pushed(str(work), "mmoe", "2026-11-02") is None


def test_scheduler_entries_run_msrec_daily(tmp_path: Path) -> None:
    args = {"logs": str(tmp_path / "logs"), "workdir": str(tmp_path / "work"), "model": "sarnet", "at": "04:30"}
    line = schedule.cron_entry(args)
    assert line.startswith("30 4 * * * ") and " daily --logs " in line and line.endswith("cron.log 2>&1")
    units = schedule.systemd_units(args)
    assert "OnCalendar=*-*-* 04:30:00 UTC" in units and "Persistent=true" in units and " daily --logs " in units
    with pytest.raises(ValueError, match="HH:MM"):
        schedule.cron_entry({**args, "at": "25:00"})
