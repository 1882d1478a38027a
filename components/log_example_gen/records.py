"""Parse and validate one raw log line into a record, or into a quarantine entry with its reason.

Pure functions with no Beam or TensorFlow dependency, so the rules are easy to test one by one.
Every line ends up as exactly one of: an accepted record, or a quarantine entry. Nothing is dropped.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from typing import Any, Mapping, NamedTuple, Sequence

from msrec.schemas.feature_config import REQUIRED_FIELDS, SIDE_TABLE_KEYS, Feature, FeatureConfig
from msrec.components.log_example_gen.limits import IngestLimits

# Reason codes of quarantined impression lines, in the order the checks run.
TOO_LARGE = "too_large"
BAD_JSON = "bad_json"
UNDECODABLE_BYTES = "undecodable_bytes"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
BAD_TYPE = "bad_type"
BAD_CLICK = "bad_click"
BAD_TS = "bad_ts"
# The unreadable rest of a damaged file (reading.py) is quarantined as one record under these.
TRUNCATED_FILE = "truncated_file"
CORRUPT_FILE = "corrupt_file"
FILE_REASONS: tuple[str, ...] = (TRUNCATED_FILE, CORRUPT_FILE)
IMPRESSION_REASONS: tuple[str, ...] = (
    TOO_LARGE, UNDECODABLE_BYTES, BAD_JSON, NOT_AN_OBJECT, MISSING_FIELD, BAD_TYPE, BAD_CLICK, BAD_TS) + FILE_REASONS
# Side-table rows fail the same structural checks, and a key may be repeated.
DUPLICATE_KEY = "duplicate_key"
SIDE_REASONS: tuple[str, ...] = (
    TOO_LARGE, UNDECODABLE_BYTES, BAD_JSON, NOT_AN_OBJECT, MISSING_FIELD, BAD_TYPE, DUPLICATE_KEY) + FILE_REASONS
# A repeated impression (same dedup key as an earlier line) is counted, and dropped unless kept.
DUPLICATE = "duplicate"

RAW_PREVIEW_CHARS = 500
MS_PER_DAY = 86_400_000
_EPOCH = dt.date(1970, 1, 1)
# a ts in seconds instead of milliseconds reads as January 1970, long before the lower bound
TS_MIN_MS = (dt.date(1990, 1, 1) - _EPOCH).days * MS_PER_DAY
TS_MAX_MS = (dt.date(2100, 1, 1) - _EPOCH).days * MS_PER_DAY
_ID_FIELDS = ("user_id", "item_id", "scenario_id")


class Impression(NamedTuple):
    """One accepted impression. ``features`` maps config feature names to normalised values
    (categorical: str, numeric: float, multi: list[str]); side-table features are added by the join."""

    ts: int
    user_id: str
    click: int
    features: dict[str, Any]
    passthrough: dict[str, str]
    day: str  # the day folder the line came from, YYYY-MM-DD
    in_window: bool  # False for lookback days: used only as past behaviour
    file: str
    line_no: int
    dedup_key: str = ""  # digest of the fields that identify the impression (IngestLimits.dedup_key)


class BadValue(ValueError):
    """A field holds a value of the wrong type; ``reason`` is the quarantine reason code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def quarantine_entry(reason: str, detail: str, file: str, line_no: int, raw: bytes) -> dict[str, Any]:
    # 4 bytes per UTF-8 character at most, so this slice always covers the preview.
    preview = raw[: 4 * RAW_PREVIEW_CHARS].decode("utf-8", errors="backslashreplace")[:RAW_PREVIEW_CHARS]
    return {"reason": reason, "detail": detail, "file": file, "line_no": line_no, "raw": preview}


def day_start_ms(day: dt.date) -> int:
    return (day - _EPOCH).days * MS_PER_DAY


def normalise(feature: Feature, value: Any) -> Any:
    """The value of ``feature`` as it goes into an Example; raises BadValue when it cannot."""
    if feature.kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadValue(BAD_TYPE, f"{feature.name}: expected a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise BadValue(BAD_TYPE, f"{feature.name}: non-finite number {value!r}")
        return float(value)
    if feature.kind == "multi":
        values = value if isinstance(value, list) else [value]
        return [_categorical(feature.name, v) for v in values]
    return _categorical(feature.name, value)


def _categorical(name: str, value: Any) -> str:
    # Integers (hour, age bucket ...) become their decimal string; JSON booleans keep their JSON spelling.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise BadValue(BAD_TYPE, f"{name}: expected a string or an integer, got {type(value).__name__}")


def _decode_object(raw: bytes, size: int, limits: IngestLimits) -> dict[str, Any]:
    if size > limits.max_line_bytes:  # before decoding: only a prefix of such a line was kept
        raise BadValue(TOO_LARGE, f"line of {size} bytes, above the limit of {limits.max_line_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadValue(UNDECODABLE_BYTES, f"not UTF-8 at byte {e.start}") from None
    if not text.strip():
        raise BadValue(BAD_JSON, "empty line")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadValue(BAD_JSON, f"{e.msg} at column {e.colno}") from None
    if not isinstance(obj, dict):
        raise BadValue(NOT_AN_OBJECT, f"a JSON {type(obj).__name__}, not an object")
    if size > limits.max_field_bytes:  # a decoded value is never longer than the line holding it
        _check_field_sizes(obj, limits.max_field_bytes)
    return obj


def _check_field_sizes(obj: Mapping[str, Any], limit: int) -> None:
    for name, value in obj.items():
        if isinstance(value, str):
            size = len(value.encode("utf-8", errors="surrogatepass"))
        elif isinstance(value, (list, dict)):
            size = len(json.dumps(value, ensure_ascii=False).encode("utf-8", errors="surrogatepass"))
        else:
            continue
        if size > limit:
            raise BadValue(TOO_LARGE, f"{name}: {size} bytes, above the field limit of {limit}")


def _dedup_digest(obj: Mapping[str, Any], fields: Sequence[str]) -> str:
    chosen = {f: obj.get(f) for f in fields} if fields else obj
    return hashlib.blake2b(json.dumps(chosen, sort_keys=True).encode(), digest_size=16).hexdigest()


def _require_id(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise BadValue(MISSING_FIELD, name)
    if not isinstance(value, str):
        raise BadValue(BAD_TYPE, f"{name}: expected a string, got {type(value).__name__}")
    if not value:
        raise BadValue(MISSING_FIELD, f"{name} is empty")
    return value


class ImpressionParser:
    """Validates impression lines against the data contract and the feature config.

    The context features the config declares (source ``impression``) are required like the five
    contract fields, so every example carries them; passthrough fields are optional. Other fields
    of the line are ignored.
    """

    def __init__(self, config: FeatureConfig, limits: IngestLimits = IngestLimits()):
        self._required_context = [f for f in config.from_source("impression") if f.name not in _ID_FIELDS]
        self._passthrough = tuple(config.passthrough)
        self._limits = limits

    def parse(self, raw: bytes, *, file: str, line_no: int, day: dt.date, in_window: bool,
              size: int | None = None) -> Impression | dict[str, Any]:
        """An Impression, or a quarantine entry (a dict with ``reason``) when the line is malformed.
        ``size``: the line's full length when ``raw`` is only its prefix (reading.Line)."""
        try:
            return self._parse(raw, size=len(raw) if size is None else size, file=file, line_no=line_no,
                               day=day, in_window=in_window)
        except BadValue as e:
            return quarantine_entry(e.reason, e.detail, file, line_no, raw)

    def _parse(self, raw: bytes, *, size: int, file: str, line_no: int, day: dt.date, in_window: bool) -> Impression:
        obj = _decode_object(raw, size, self._limits)
        missing = [f for f in REQUIRED_FIELDS if obj.get(f) is None]
        missing += [f.name for f in self._required_context if obj.get(f.name) is None]
        if missing:
            raise BadValue(MISSING_FIELD, ", ".join(missing))
        features = {name: _require_id(obj, name) for name in _ID_FIELDS}
        ts, click = obj["ts"], obj["click"]
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise BadValue(BAD_TYPE, f"ts: expected an integer, got {type(ts).__name__}")
        if isinstance(click, bool) or not isinstance(click, int):
            raise BadValue(BAD_TYPE, f"click: expected 0 or 1, got {type(click).__name__}")
        for f in self._required_context:
            features[f.name] = normalise(f, obj[f.name])
        passthrough = {}
        for name in self._passthrough:
            if obj.get(name) is not None:
                passthrough[name] = _categorical(name, obj[name])
        if click not in (0, 1):
            raise BadValue(BAD_CLICK, f"click is {click}")
        _check_ts(ts, day)
        return Impression(ts=ts, user_id=features["user_id"], click=click, features=features,
                          passthrough=passthrough, day=day.isoformat(), in_window=in_window,
                          file=file, line_no=line_no, dedup_key=_dedup_digest(obj, self._limits.dedup_key))


def _check_ts(ts: int, day: dt.date) -> None:
    if ts < 0:
        raise BadValue(BAD_TS, f"ts {ts} is negative")
    if ts < TS_MIN_MS:
        raise BadValue(BAD_TS, f"ts {ts} is before 1990-01-01")
    if ts > TS_MAX_MS:
        raise BadValue(BAD_TS, f"ts {ts} is after 2100-01-01")
    # Late or early events are tolerated by one day on either side of the day folder.
    lo = day_start_ms(day) - MS_PER_DAY
    hi = day_start_ms(day) + 2 * MS_PER_DAY
    if not lo <= ts < hi:
        raise BadValue(BAD_TS, f"ts {ts} is outside {day - dt.timedelta(days=1)}..{day + dt.timedelta(days=1)}")


def join_side_rows(features: Mapping[str, Any], side: Mapping[str, Mapping[str, dict[str, Any]]]
                   ) -> tuple[dict[str, Any], list[str]]:
    """``features`` with the columns of each side table's row for the record's key added, and the
    tables whose row is missing (their features stay absent)."""
    joined, missed = dict(features), []
    for table, rows in side.items():
        row = rows.get(features[SIDE_TABLE_KEYS[table]])
        if row is None:
            missed.append(table)
        else:
            joined.update(row)
    return joined, missed


class SideRowParser:
    """Parses a side-table row into (key, {feature: value}) keeping only the config's columns of it."""

    def __init__(self, config: FeatureConfig, table: str, key: str, limits: IngestLimits = IngestLimits()):
        self.table = table
        self.key = key
        self._columns: Sequence[Feature] = config.from_source(table)
        self._limits = limits

    def parse(self, raw: bytes, *, file: str, line_no: int,
              size: int | None = None) -> tuple[str, dict[str, Any]] | dict[str, Any]:
        """(key, row), or a quarantine entry (a dict with ``reason``)."""
        try:
            obj = _decode_object(raw, len(raw) if size is None else size, self._limits)
            key = _require_id(obj, self.key)
            row = {f.name: normalise(f, obj[f.name]) for f in self._columns if obj.get(f.name) is not None}
        except BadValue as e:
            return quarantine_entry(e.reason, e.detail, file, line_no, raw)
        return key, row
