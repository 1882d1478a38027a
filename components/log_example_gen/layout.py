"""Which files a run reads (the window's day folders, the lookback days before them, the side
tables) and the names of those it writes.

Layout: ``LOGS/YYYY-MM-DD/impressions-*.jsonl[.gz]`` and ``LOGS/{users,items,scenarios}.jsonl[.gz]``.
Entries of LOGS whose name is not a date are ignored. Paths go through Beam's FileSystems, so the
logs may live on any file system Beam knows (local, gs://, s3:// ...).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import posixpath

from apache_beam.io.filesystems import FileSystems

from msrec.schemas.feature_config import SIDE_TABLE_KEYS, FeatureConfig

IMPRESSION_SUFFIXES = (".jsonl", ".jsonl.gz")
# Outputs: <examples>/Split-<split>/data_tfrecord-*.gz (the TFX Examples layout), and
# <quarantine>/quarantine-*.jsonl with <quarantine>/counts.json.
EXAMPLE_FILE_PREFIX = "data_tfrecord"
QUARANTINE_FILE_PREFIX = "quarantine"
COUNTS_FILE = "counts.json"


class IngestError(ValueError):
    """The run cannot start or its output does not add up; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class DayFiles:
    day: dt.date
    files: tuple[str, ...]
    in_window: bool


@dataclasses.dataclass(frozen=True)
class IngestPlan:
    date: dt.date
    window: tuple[DayFiles, ...]  # oldest first; the last one is ``date``
    lookback: tuple[DayFiles, ...]  # oldest first, read only for past clicks
    side_tables: dict[str, str]  # table -> file, for the tables the feature config uses

    @property
    def span(self) -> int:
        """The TFX span of the run: days since the epoch of its newest day."""
        return (self.date - dt.date(1970, 1, 1)).days


def parse_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise IngestError(f"date {value!r} is not YYYY-MM-DD") from None


def _join(root: str, *parts: str) -> str:
    return FileSystems.join(root, *parts)


def _impression_files_by_day(logs_dir: str) -> dict[dt.date, tuple[str, ...]]:
    matched = FileSystems.match([_join(logs_dir, "*", "impressions-*")])[0].metadata_list
    by_day: dict[dt.date, list[str]] = {}
    for meta in matched:
        folder, name = posixpath.split(meta.path)
        if not name.endswith(IMPRESSION_SUFFIXES):
            continue
        try:
            day = dt.date.fromisoformat(posixpath.basename(folder))
        except ValueError:
            continue  # not a day folder
        by_day.setdefault(day, []).append(meta.path)
    return {day: tuple(sorted(files)) for day, files in by_day.items()}


def side_table_path(logs_dir: str, table: str) -> str | None:
    """``<logs_dir>/<table>.jsonl``, or its ``.jsonl.gz``; None when there is neither."""
    for suffix in IMPRESSION_SUFFIXES:
        path = _join(logs_dir, table + suffix)
        if FileSystems.exists(path):
            return path
    return None


def plan_ingest(logs_dir: str, date: dt.date, window_days: int, config: FeatureConfig) -> IngestPlan:
    """The files of the run for ``date``, or an IngestError naming what is missing.

    The window is ``date-window_days+1 .. date``, clipped to the first day the logs hold (so the
    first runs of a backfill work); a day missing inside it is an error, and ``date`` must exist.
    """
    if window_days < 1:
        raise IngestError(f"window_days must be at least 1, got {window_days}")
    by_day = _impression_files_by_day(logs_dir)
    if date not in by_day:
        raise IngestError(f"no impressions-*.jsonl[.gz] for the run date {date} in {_join(logs_dir, str(date))}")
    first = min(by_day)
    window = [date - dt.timedelta(days=i) for i in range(window_days - 1, -1, -1)]
    window = [d for d in window if d >= first]
    missing = [d.isoformat() for d in window if d not in by_day]
    if missing:
        raise IngestError(f"window {window[0]}..{date} is missing day(s) {', '.join(missing)} in {logs_dir}")
    lookback_days = [window[0] - dt.timedelta(days=i) for i in range(config.sequence.lookback_days, 0, -1)]
    side_tables = {}
    for table in SIDE_TABLE_KEYS:
        columns = [f.name for f in config.from_source(table)]
        if not columns:
            continue
        path = side_table_path(logs_dir, table)
        if path is None:
            raise IngestError(f"side table {table}.jsonl[.gz] not found in {logs_dir}, "
                              f"but the feature config reads {columns} from it")
        side_tables[table] = path
    return IngestPlan(
        date=date,
        window=tuple(DayFiles(d, by_day[d], True) for d in window),
        lookback=tuple(DayFiles(d, by_day[d], False) for d in lookback_days if d in by_day),
        side_tables=side_tables,
    )
