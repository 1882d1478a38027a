"""Assemble a ranking request for one user in one scenario from the raw logs (``msrec query --logs``).

Each candidate row carries every raw feature of the feature config, built the way ingestion builds
a training example: the user's, item's and scenario's side-table columns, and the user's behaviour
sequence = their last ``sequence.length`` clicks strictly before ``now`` across every day folder
of the lookback, most recent first, each click's item and scenario columns looked up in the side
tables (and, with ``sequence.time_gap``, the seconds from each click to ``now``); history counts
(``source: history``) are the user's impressions and clicks of the lookback before ``now``. Context features
(the impression's own columns besides the ids) follow rules, see ``DEFAULT_CONTEXT``. Unknown
users, items or scenarios are fine: their columns are "" (out of vocabulary for the model) and a
note says so.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
from typing import Any, Iterator, Mapping, Sequence

from msrec.schemas.feature_config import (SIDE_TABLE_KEYS, TIME_GAP_FEATURE, Feature, FeatureConfig,
                                          load_feature_config)
from msrec.components.log_example_gen.limits import IngestLimits
from msrec.components.log_example_gen.reading import LineReader
from msrec.components.log_example_gen.records import (MS_PER_DAY, BadValue, Impression, ImpressionParser,
                                                    SideRowParser, join_side_rows, normalise)
from msrec.components.log_example_gen.sequences import HistoryCounts, chronological, history_before

FEATURE_CONFIG_FILE = "feature_config.yaml"
IMPRESSION_SUFFIXES = (".jsonl", ".jsonl.gz")

# How a context feature is set at request time. Rules: "slot" = the candidate's rank slot 1..n;
# "hour" = the UTC hour of `now`; "last:<fallback>" = the user's value in their most recent
# impression, else the fallback; anything else is a fixed value. These defaults suit the generated
# dataset's context columns; `msrec query --context name=rule,...` overrides them, and a context
# column named nowhere takes "last".
DEFAULT_CONTEXT: dict[str, str] = {"position": "slot", "hour": "hour", "device": "last:web"}


@dataclasses.dataclass(frozen=True)
class AssembledRequest:
    rows: list[dict[str, Any]]  # one dict of raw features per candidate, in the given order
    notes: list[str]  # what was unknown or skipped, for the person reading the ranking
    history_length: int


def parse_context(text: str | None) -> dict[str, str]:
    """``"position=1,device=ios"`` -> {"position": "1", "device": "ios"}."""
    rules: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, rule = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--context entry {part!r} is not name=rule")
        rules[name.strip()] = rule.strip()
    return rules


def parse_now(text: str | None) -> int | None:
    """Epoch milliseconds, or an ISO date / datetime (UTC when no offset is given)."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--now {text!r} is neither epoch milliseconds nor an ISO date/time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp() * 1000)


def _open_lines(path: str, damaged: list[str], max_line_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of a plain or gzipped log file with the ingestion's reader: a damaged file
    is read up to the damage, and named in ``damaged``."""
    reader = LineReader(path, max_line_bytes)
    for line in reader:
        yield line.line_no, line.raw
    if reader.damage is not None:
        damaged.append(f"{path} ({reader.damage.reason}: read up to the damage)")


def _day_files(logs_dir: str, first: dt.date, last: dt.date) -> list[tuple[dt.date, str]]:
    files = []
    for name in sorted(os.listdir(logs_dir)):
        try:
            day = dt.date.fromisoformat(name)
        except ValueError:
            continue  # not a day folder
        folder = os.path.join(logs_dir, name)
        if first <= day <= last and os.path.isdir(folder):
            files += [(day, os.path.join(folder, f)) for f in sorted(os.listdir(folder))
                      if f.startswith("impressions-") and f.endswith(IMPRESSION_SUFFIXES)]
    return files


@dataclasses.dataclass
class _History:
    records: list[Impression]  # the user's impressions before ``now``, parsed as ingestion parses them
    unreadable: int  # lines of the user's that ingestion would quarantine
    damaged: list[str]  # log files that could not be read to their end

    @property
    def last(self) -> Impression | None:
        return chronological(self.records)[-1] if self.records else None


def _user_history(logs_dir: str, user_id: str, now_ms: int, lookback_days: int, limits: IngestLimits,
                  parser: ImpressionParser) -> _History:
    """The user's impressions in the lookback before ``now_ms``, as ingestion keeps them: the first of
    each group of duplicates (``limits``' dedup key) in file order, unless duplicates are kept."""
    now_day = dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc).date()
    # late events sit up to a day away from their folder, so read one folder more on each side
    files = _day_files(logs_dir, now_day - dt.timedelta(days=lookback_days + 1), now_day + dt.timedelta(days=1))
    oldest = now_ms - lookback_days * MS_PER_DAY
    needle = json.dumps(user_id).encode()
    records: list[Impression] = []
    seen: set[str] = set()
    unreadable = 0
    damaged: list[str] = []
    for day, path in files:
        for line_no, raw in _open_lines(path, damaged, limits.max_line_bytes):
            if needle not in raw:  # cheap filter: most lines are other users'
                continue
            parsed = parser.parse(raw, file=path, line_no=line_no, day=day, in_window=False)
            if not isinstance(parsed, Impression):
                unreadable += 1
            elif parsed.user_id == user_id and oldest <= parsed.ts < now_ms and (
                    limits.keep_duplicates or parsed.dedup_key not in seen):
                seen.add(parsed.dedup_key)
                records.append(parsed)
    return _History(records, unreadable, damaged)


def _side_rows(logs_dir: str, table: str, keys: set[str], config: FeatureConfig, max_line_bytes: int
               ) -> tuple[dict[str, dict[str, Any]], int]:
    """Rows of ``table`` whose key is in ``keys`` (the first one wins, as in ingestion), parsed as
    ingestion parses them, and the count of unreadable lines."""
    parser = SideRowParser(config, table, SIDE_TABLE_KEYS[table])
    path = next((os.path.join(logs_dir, table + s) for s in IMPRESSION_SUFFIXES
                 if os.path.exists(os.path.join(logs_dir, table + s))), None)
    rows: dict[str, dict[str, Any]] = {}
    unreadable = 0
    if path is None:
        return rows, unreadable
    damaged: list[str] = []
    for line_no, raw in _open_lines(path, damaged, max_line_bytes):
        parsed = parser.parse(raw, file=path, line_no=line_no)
        if isinstance(parsed, dict):
            unreadable += 1
        elif parsed[0] in keys:
            rows.setdefault(*parsed)
    return rows, unreadable + len(damaged)


def _value(feature: Feature, raw: Any) -> Any:
    """The feature's value as ingestion writes it; unknown or malformed -> "" / 0.0."""
    empty: Any = 0.0 if feature.kind == "numeric" else ""
    if raw is None:
        return empty
    try:
        return normalise(feature, raw)
    except BadValue:
        return empty


def _context_value(feature: Feature, rule: str, slot: int, now_ms: int, last: Impression | None) -> Any:
    if rule == "slot":
        return _value(feature, slot)
    if rule == "hour":
        return _value(feature, dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc).hour)
    if rule == "last" or rule.startswith("last:"):
        if last is not None and feature.name in last.features:
            return last.features[feature.name]
        rule = rule[len("last:"):] if rule.startswith("last:") else ""
    if feature.kind == "numeric":
        try:
            return float(rule or 0.0)
        except ValueError:
            raise ValueError(f"context {feature.name!r} is numeric; {rule!r} is not a number") from None
    return rule


def build_candidates(logs_dir: str, user_id: str, scenario_id: str, item_ids: Sequence[str],
                     now_ms: int | None = None, context: Mapping[str, str] | None = None,
                     config: FeatureConfig | None = None, limits: IngestLimits = IngestLimits()) -> AssembledRequest:
    """One row of raw serving features per item, for ``user_id`` in ``scenario_id`` at ``now_ms``; the
    user's history read from the logs as ingestion with ``limits`` reads them."""
    if not item_ids:
        raise ValueError("no candidate items given")
    config = config or load_feature_config(os.path.join(logs_dir, FEATURE_CONFIG_FILE))
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    impression_context = [f for f in config.from_source("impression") if f.name not in SIDE_TABLE_KEYS.values()]
    rules = {**DEFAULT_CONTEXT, **(context or {})}
    unknown_rules = sorted(set(context or {}) - {f.name for f in impression_context})
    if unknown_rules:
        raise ValueError(f"--context names {unknown_rules}, which are not context features of the feature "
                         f"config; those are {[f.name for f in impression_context]}")
    history = _user_history(logs_dir, user_id, now_ms, config.sequence.lookback_days, limits,
                            ImpressionParser(config, limits))
    clicked = [r for r in history.records if r.click]
    keys = {"users": {user_id}, "items": set(item_ids) | {r.features["item_id"] for r in clicked},
            "scenarios": {scenario_id} | {r.features["scenario_id"] for r in clicked}}
    tables, notes = {}, []
    for table in sorted({f.source for f in config.features} - {"impression", "history"}):
        tables[table], unreadable = _side_rows(logs_dir, table, keys[table], config, limits.max_line_bytes)
        if unreadable:
            notes.append(f"{unreadable} unreadable lines in {table} skipped")
    if history.unreadable:
        notes.append(f"{history.unreadable} unreadable log lines of user {user_id} skipped")
    notes += [f"damaged log file {d}" for d in history.damaged]

    def side(table: str, key: Any) -> dict[str, Any]:
        return tables.get(table, {}).get(key, {})

    for table, key in (("users", user_id), ("scenarios", scenario_id)):
        if table in tables and not side(table, key):
            notes.append(f"{SIDE_TABLE_KEYS[table]} {key!r} is not in {table}: its features are empty")
    missing_items = [i for i in item_ids if "items" in tables and not side("items", i)]
    if missing_items:
        notes.append(f"items not in items table (features empty): {missing_items}")

    # the same join and the same sequence rule as ingestion; padded with "" to the configured length
    # as in training (a fixed width also lets TF Serving's batcher merge requests without its own
    # padding, which repeats a real value, not "")
    joined = [r._replace(features=join_side_rows(r.features, tables)[0]) for r in clicked]
    behaviours = history_before(joined, config.sequence.columns, config.sequence.length, now_ms)
    pad = config.sequence.length - len(behaviours)
    sequences = {name: [b.values[i] for b in behaviours] + [""] * pad
                 for i, name in enumerate(config.sequence.feature_names)}
    if config.sequence.time_gap:
        # seconds since each behaviour, padded with 0 (Transform tells padding by the "" of the columns)
        sequences[TIME_GAP_FEATURE] = [(now_ms - b.ts) / 1000.0 for b in behaviours] + [0.0] * pad
    counter = HistoryCounts(config.sequence.lookback_days)  # ingestion's counting rule
    for r in chronological(history.records):
        counter.add(r.ts, r.click)
    counts = counter.before(now_ms)
    rows = []
    for slot, item in enumerate(item_ids, start=1):
        ids = {"user_id": user_id, "item_id": item, "scenario_id": scenario_id}
        row: dict[str, Any] = {}
        for f in config.features:
            if f.name in ids:
                row[f.name] = ids[f.name]
            elif f.source == "impression":
                row[f.name] = _context_value(f, rules.get(f.name, "last"), slot, now_ms, history.last)
            elif f.source == "history":
                row[f.name] = counts[f.name]
            else:
                row[f.name] = _value(f, side(f.source, ids[SIDE_TABLE_KEYS[f.source]]).get(f.name))
        row.update({name: list(values) for name, values in sequences.items()})
        rows.append(row)
    return AssembledRequest(rows, notes, len(behaviours))
