"""Assemble a ranking request for one user in one scenario from the raw logs (``msrec query --logs``).

Each candidate row carries every raw feature of the feature config, built the way ingestion builds
a training example: the user's, item's and scenario's side-table columns, and the user's behaviour
sequence = their last ``sequence.length`` clicks strictly before ``now`` across every day folder
of the lookback, most recent first, each click's item and scenario columns looked up in the side
tables. Context features (the impression's own columns besides the ids) follow rules, see
``DEFAULT_CONTEXT``. Unknown users, items or scenarios are fine: their columns are "" (out of
vocabulary for the model) and a note says so.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import os
import time
from typing import Any, Iterator, Mapping, Sequence

from msrec.schemas.feature_config import SIDE_TABLE_KEYS, Feature, FeatureConfig, load_feature_config
from msrec.components.log_example_gen.records import BadValue, normalise

FEATURE_CONFIG_FILE = "feature_config.yaml"
IMPRESSION_SUFFIXES = (".jsonl", ".jsonl.gz")
_MS_PER_DAY = 86_400_000

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


def _open_lines(path: str) -> Iterator[bytes]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        yield from fh


def _day_files(logs_dir: str, first: dt.date, last: dt.date) -> list[str]:
    files = []
    for name in sorted(os.listdir(logs_dir)):
        try:
            day = dt.date.fromisoformat(name)
        except ValueError:
            continue  # not a day folder
        folder = os.path.join(logs_dir, name)
        if first <= day <= last and os.path.isdir(folder):
            files += [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                      if f.startswith("impressions-") and f.endswith(IMPRESSION_SUFFIXES)]
    return files


@dataclasses.dataclass
class _History:
    clicks: list[dict[str, Any]]  # most recent first
    last: dict[str, Any] | None  # the most recent impression, clicked or not
    unreadable: int  # lines of the user's that could not be parsed


def _user_history(logs_dir: str, user_id: str, now_ms: int, lookback_days: int, length: int) -> _History:
    now_day = dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc).date()
    # late events sit up to a day away from their folder, so read one folder more on each side
    files = _day_files(logs_dir, now_day - dt.timedelta(days=lookback_days + 1), now_day + dt.timedelta(days=1))
    oldest = now_ms - lookback_days * _MS_PER_DAY
    needle = json.dumps(user_id).encode()
    seen: list[tuple[int, int, dict[str, Any]]] = []
    unreadable = 0
    for order, path in enumerate(files):
        for raw in _open_lines(path):
            if needle not in raw:  # cheap filter: most lines are other users'
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                unreadable += 1
                continue
            if not isinstance(obj, dict) or obj.get("user_id") != user_id:
                continue
            ts = obj.get("ts")
            if isinstance(ts, bool) or not isinstance(ts, int):
                unreadable += 1
                continue
            if oldest <= ts < now_ms:
                seen.append((ts, order, obj))
    seen.sort(key=lambda t: (t[0], t[1]), reverse=True)
    clicks = [obj for _, _, obj in seen if obj.get("click") == 1][:length]
    return _History(clicks, seen[0][2] if seen else None, unreadable)


def _side_rows(logs_dir: str, table: str, keys: set[str]) -> tuple[dict[str, dict[str, Any]], int]:
    """Rows of ``table`` whose key is in ``keys`` (first one wins), and the count of unreadable lines."""
    key = SIDE_TABLE_KEYS[table]
    path = next((os.path.join(logs_dir, table + s) for s in IMPRESSION_SUFFIXES
                 if os.path.exists(os.path.join(logs_dir, table + s))), None)
    rows: dict[str, dict[str, Any]] = {}
    unreadable = 0
    if path is None:
        return rows, unreadable
    for raw in _open_lines(path):
        try:
            obj = json.loads(raw)
        except ValueError:
            unreadable += 1
            continue
        if isinstance(obj, dict) and obj.get(key) in keys:
            rows.setdefault(obj[key], obj)
    return rows, unreadable


def _value(feature: Feature, raw: Any) -> Any:
    """The feature's value as ingestion writes it; unknown or malformed -> "" / 0.0."""
    empty: Any = 0.0 if feature.kind == "numeric" else ""
    if raw is None:
        return empty
    try:
        return normalise(feature, raw)
    except BadValue:
        return empty


def _context_value(feature: Feature, rule: str, slot: int, now_ms: int, last: dict[str, Any] | None) -> Any:
    if rule == "slot":
        return _value(feature, slot)
    if rule == "hour":
        return _value(feature, dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc).hour)
    if rule == "last" or rule.startswith("last:"):
        if last is not None and last.get(feature.name) is not None:
            return _value(feature, last[feature.name])
        rule = rule[len("last:"):] if rule.startswith("last:") else ""
    if feature.kind == "numeric":
        try:
            return float(rule or 0.0)
        except ValueError:
            raise ValueError(f"context {feature.name!r} is numeric; {rule!r} is not a number") from None
    return rule


def build_candidates(logs_dir: str, user_id: str, scenario_id: str, item_ids: Sequence[str],
                     now_ms: int | None = None, context: Mapping[str, str] | None = None,
                     config: FeatureConfig | None = None) -> AssembledRequest:
    """One row of raw serving features per item, for ``user_id`` in ``scenario_id`` at ``now_ms``."""
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
    history = _user_history(logs_dir, user_id, now_ms, config.sequence.lookback_days, config.sequence.length)
    keys = {"users": {user_id}, "items": set(item_ids) | {c.get("item_id") for c in history.clicks},
            "scenarios": {scenario_id} | {c.get("scenario_id") for c in history.clicks}}
    tables, notes = {}, []
    for table in sorted({f.source for f in config.features} - {"impression"}):
        tables[table], unreadable = _side_rows(logs_dir, table, keys[table])
        if unreadable:
            notes.append(f"{unreadable} unreadable lines in {table} skipped")
    if history.unreadable:
        notes.append(f"{history.unreadable} unreadable log lines of user {user_id} skipped")

    def side(table: str, key: Any) -> dict[str, Any]:
        return tables.get(table, {}).get(key, {})

    for table, key in (("users", user_id), ("scenarios", scenario_id)):
        if table in tables and not side(table, key):
            notes.append(f"{SIDE_TABLE_KEYS[table]} {key!r} is not in {table}: its features are empty")
    missing_items = [i for i in item_ids if "items" in tables and not side("items", i)]
    if missing_items:
        notes.append(f"items not in items table (features empty): {missing_items}")

    def click_value(click: dict[str, Any], column: str) -> Any:
        feature = config.by_name[column]
        if feature.source == "impression":
            return _value(feature, click.get(column))
        return _value(feature, side(feature.source, click.get(SIDE_TABLE_KEYS[feature.source])).get(column))

    # padded with "" to the configured length, as in training; a fixed width also lets TF Serving's
    # batcher merge requests without its own padding (which repeats a real value, not "")
    pad = [""] * (config.sequence.length - len(history.clicks))
    sequences = {config.sequence.feature_names[i]: [click_value(c, col) for c in history.clicks] + pad
                 for i, col in enumerate(config.sequence.columns)}
    rows = []
    for slot, item in enumerate(item_ids, start=1):
        ids = {"user_id": user_id, "item_id": item, "scenario_id": scenario_id}
        row: dict[str, Any] = {}
        for f in config.features:
            if f.name in ids:
                row[f.name] = ids[f.name]
            elif f.source == "impression":
                row[f.name] = _context_value(f, rules.get(f.name, "last"), slot, now_ms, history.last)
            else:
                row[f.name] = _value(f, side(f.source, ids[SIDE_TABLE_KEYS[f.source]]).get(f.name))
        row.update({name: list(values) for name, values in sequences.items()})
        rows.append(row)
    return AssembledRequest(rows, notes, len(history.clicks))
