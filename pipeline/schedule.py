"""Daily operation on one box: which days are complete, which are done, the in-order catch-up that a
scheduler (cron, a systemd timer) starts every day, and the scheduler entries themselves.

A day is run once, completely, in order: the catch-up runs every day after the newest one already run,
up to ``until`` (yesterday by default), oldest first, and stops at the first day whose logs are not
complete yet (the later days wait for it, so the model never skips a day) or whose run fails (it is
tried again at the next start). A day's logs are complete when its folder holds the ``_SUCCESS``
marker the log shipper writes last or, with ``min_age_hours``, when nothing in it changed for that long.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shlex
import sys
import time
from typing import Any, Callable, Mapping

SUCCESS_MARKER = "_SUCCESS"
REPORT_JSON = "report.json"


@dataclasses.dataclass(frozen=True)
class Completeness:
    """When a day folder may be run: its marker file exists, or (``min_age_hours``) its newest file is
    at least that old."""

    marker: str = SUCCESS_MARKER
    min_age_hours: float | None = None

    def check(self, day_dir: str, now: float | None = None) -> tuple[bool, str]:
        """(complete, the reason in words)."""
        if not os.path.isdir(day_dir):
            return False, f"no folder {day_dir}"
        if self.min_age_hours is None:
            if os.path.exists(os.path.join(day_dir, self.marker)):
                return True, f"{self.marker} marker present"
            return False, f"no {self.marker} marker in {day_dir} (its logs may still be arriving)"
        files = [os.path.join(day_dir, f) for f in os.listdir(day_dir)]
        newest = max((os.path.getmtime(f) for f in files), default=os.path.getmtime(day_dir))
        age_h = ((now if now is not None else time.time()) - newest) / 3600
        if age_h >= self.min_age_hours:
            return True, f"unchanged for {age_h:.1f} h (rule: {self.min_age_hours:g} h)"
        return False, f"changed {age_h:.1f} h ago, under the {self.min_age_hours:g} h age rule"


def previous_report(workdir: str, date: str) -> dict[str, Any] | None:
    path = os.path.join(workdir, "reports", date, REPORT_JSON)
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def already_pushed(workdir: str, model: str, date: str) -> int | None:
    """The version ``date`` pushed, when its earlier run pushed one that is still on disk."""
    rep = previous_report(workdir, date)
    version = (rep or {}).get("pushed_version")
    if rep is None or rep.get("model") != model or not version:
        return None
    return int(version) if os.path.isdir(os.path.join(workdir, "serving", model, str(version))) else None


def day_folders(logs_dir: str) -> list[str]:
    days = []
    for name in sorted(os.listdir(logs_dir)):
        try:
            dt.date.fromisoformat(name)
        except ValueError:
            continue
        if os.path.isdir(os.path.join(logs_dir, name)):
            days.append(name)
    return days


def _completed(workdir: str, date: str) -> bool:
    rep = previous_report(workdir, date)
    return rep is not None and not rep.get("error")


def pending_days(logs_dir: str, workdir: str, until: str, start: str | None = None) -> list[str]:
    """The days to run, oldest first: after the newest day whose run completed (or from ``start`` on a
    first run, else only ``until``), up to ``until``."""
    done = [d for d in day_folders(logs_dir) if d <= until and _completed(workdir, d)]
    first = (dt.date.fromisoformat(done[-1]) + dt.timedelta(days=1)).isoformat() if done else (start or until)
    days, d = [], dt.date.fromisoformat(first)
    while d.isoformat() <= until:
        days.append(d.isoformat())
        d += dt.timedelta(days=1)
    return days


def catch_up(logs_dir: str, workdir: str, until: str, run_day: Callable[..., dict[str, Any]],
             completeness: Completeness = Completeness(), start: str | None = None,
             **options: Any) -> list[dict[str, Any]]:
    """Run the pending days in order; stop at the first incomplete day or failed run."""
    reports = []
    days = pending_days(logs_dir, workdir, until, start)
    if not days:
        print(f"nothing to run: every day up to {until} has run", flush=True)
    for date in days:
        complete, why = completeness.check(os.path.join(logs_dir, date))
        if not complete:
            print(f"{date}: not run, logs not complete: {why}; later days wait for it", flush=True)
            break
        rep = run_day(logs_dir, date, workdir, **options)
        reports.append(rep)
        if rep.get("error"):
            print(f"{date}: the run failed; the next start tries it again", flush=True)
            break
    return reports


def yesterday() -> str:
    return (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()


def _command(args: Mapping[str, Any]) -> str:
    parts = [os.path.join(os.path.dirname(sys.executable), "msrec"), "daily",
             "--logs", os.path.abspath(args["logs"]), "--workdir", os.path.abspath(args["workdir"]),
             "--model", args["model"]]
    return " ".join(shlex.quote(p) for p in parts)


def cron_entry(args: Mapping[str, Any]) -> str:
    """A crontab line that runs the catch-up every day at ``at`` (HH:MM, the machine's cron time zone)."""
    hour, minute = _hour_minute(args["at"])
    log = shlex.quote(os.path.join(os.path.abspath(args["workdir"]), "logs", "cron.log"))
    return f"{minute} {hour} * * * {_command(args)} >> {log} 2>&1"


def systemd_units(args: Mapping[str, Any]) -> str:
    """msrec-daily.service and msrec-daily.timer (Persistent: a day missed while the box was off runs at boot)."""
    hour, minute = _hour_minute(args["at"])
    return (f"# /etc/systemd/system/msrec-daily.service\n[Unit]\nDescription=msrec daily training run\n\n"
            f"[Service]\nType=oneshot\nExecStart={_command(args)}\n\n"
            f"# /etc/systemd/system/msrec-daily.timer\n[Unit]\nDescription=msrec daily training run\n\n"
            f"[Timer]\nOnCalendar=*-*-* {hour:02d}:{minute:02d}:00 UTC\nPersistent=true\n\n"
            f"[Install]\nWantedBy=timers.target\n")


def _hour_minute(text: str) -> tuple[int, int]:
    try:
        moment = dt.time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--at {text!r} is not HH:MM") from None
    return moment.hour, moment.minute


def schedule_command(args: argparse.Namespace) -> int:
    """``msrec schedule cron|systemd``: print the scheduler entry."""
    entry = cron_entry if args.scheduler == "cron" else systemd_units
    try:
        print(entry(vars(args)))
    except ValueError as e:
        raise SystemExit(f"msrec: {e}") from None
    return 0
