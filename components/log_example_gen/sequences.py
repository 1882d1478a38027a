"""Point-in-time behaviour sequences: for each impression, the user's last clicks strictly before it,
and (when the feature config declares them) the user's impression and click counts in the lookback.

Runs on one user's records (after a GroupByKey on user_id): sort by time, then one pass with a
bounded deque of past clicks. Clicks come from every scenario, so the sequence is cross-scenario.
"""
from __future__ import annotations

import collections
from typing import Iterable, Iterator, NamedTuple, Sequence

from msrec.components.log_example_gen.records import MS_PER_DAY, Impression
from msrec.schemas.feature_config import HISTORY_CLICKS, HISTORY_IMPRESSIONS


class Behaviour(NamedTuple):
    """One past click."""
    ts: int  # epoch ms of the click (its time gap to a later impression is SAR-Net's behaviour time)
    values: tuple[str, ...]  # the value of each sequence column, "" when unknown


def behaviour(record: Impression, columns: Sequence[str]) -> Behaviour:
    return Behaviour(record.ts, tuple(record.features.get(c, "") for c in columns))


def chronological(records: Iterable[Impression]) -> list[Impression]:
    """Records in the order their clicks enter a history: by ts, ties by (file, line_no)."""
    return sorted(records, key=lambda r: (r.ts, r.file, r.line_no))


class HistoryCounts:
    """The user's impressions and clicks in the ``lookback_days`` before a time, strictly before it.

    Impressions are added in time order and asked about at non-decreasing times: a deque drops what
    falls out of the lookback, so a user's whole history costs one pass. Ingestion and the serving
    client both count with it, so the feature cannot differ between training and serving."""

    def __init__(self, lookback_days: int) -> None:
        self._lookback_ms = lookback_days * MS_PER_DAY
        self._events: collections.deque[tuple[int, int]] = collections.deque()
        self._clicks = 0

    def add(self, ts: int, click: int) -> None:
        self._events.append((ts, click))
        self._clicks += click

    def before(self, now_ms: int) -> dict[str, float]:
        """Counts over [now_ms - lookback, now_ms): everything added must have a ts below ``now_ms``."""
        while self._events and self._events[0][0] < now_ms - self._lookback_ms:
            self._clicks -= self._events.popleft()[1]
        return {HISTORY_IMPRESSIONS: float(len(self._events)), HISTORY_CLICKS: float(self._clicks)}


def history_before(records: Iterable[Impression], columns: Sequence[str], length: int,
                   now_ms: int) -> tuple[Behaviour, ...]:
    """The behaviours an impression at ``now_ms`` sees: exactly what :func:`build_sequences` gives an
    impression with that ts (the serving client builds requests with it, so the two cannot drift)."""
    clicks = [behaviour(r, columns) for r in chronological(records) if r.click and r.ts < now_ms]
    return tuple(reversed(clicks[-length:])) if length > 0 else ()


def build_sequences(records: Iterable[Impression], columns: Sequence[str], length: int,
                    counts: Sequence[str] = (), lookback_days: int = 0
                    ) -> Iterator[tuple[Impression, tuple[Behaviour, ...]]]:
    """Yield (impression, behaviours) for each in-window impression of one user; with ``counts``
    (history-count feature names), the impression's features gain those counts (HistoryCounts over
    ``lookback_days``), taken by the same rule as the behaviours.

    ``behaviours`` holds the user's last ``length`` clicks with ts strictly below the impression's,
    most recent first. All records sharing a ts are emitted before any of their clicks enter the
    history, so an impression never sees a click with ts >= its own (its own click included).
    Ties in ts among clicks are ordered by (file, line_no) so the output is deterministic.
    """
    ordered = chronological(records)
    history: collections.deque[Behaviour] = collections.deque(maxlen=length)
    counter = HistoryCounts(lookback_days)
    start = 0
    while start < len(ordered):
        end = start
        while end < len(ordered) and ordered[end].ts == ordered[start].ts:
            end += 1
        same_ts = ordered[start:end]
        if any(r.in_window for r in same_ts):
            snapshot = tuple(reversed(history))
            seen = counter.before(ordered[start].ts) if counts else {}
            for r in same_ts:
                if r.in_window:
                    # a new dict: Beam elements are immutable
                    yield (r._replace(features={**r.features, **{c: seen[c] for c in counts}}) if counts else r,
                           snapshot)
        history.extend(behaviour(r, columns) for r in same_ts if r.click)
        for r in same_ts:
            counter.add(r.ts, r.click)
        start = end
