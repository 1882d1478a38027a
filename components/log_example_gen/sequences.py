"""Point-in-time behaviour sequences: for each impression, the user's last clicks strictly before it.

Runs on one user's records (after a GroupByKey on user_id): sort by time, then one pass with a
bounded deque of past clicks. Clicks come from every scenario, so the sequence is cross-scenario.
"""
from __future__ import annotations

import collections
from typing import Iterable, Iterator, NamedTuple, Sequence

from msrec.components.log_example_gen.records import Impression


class Behaviour(NamedTuple):
    """One past click."""
    ts: int  # epoch ms of the click (its time gap to a later impression is SAR-Net's behaviour time)
    values: tuple[str, ...]  # the value of each sequence column, "" when unknown


def behaviour(record: Impression, columns: Sequence[str]) -> Behaviour:
    return Behaviour(record.ts, tuple(record.features.get(c, "") for c in columns))


def chronological(records: Iterable[Impression]) -> list[Impression]:
    """Records in the order their clicks enter a history: by ts, ties by (file, line_no)."""
    return sorted(records, key=lambda r: (r.ts, r.file, r.line_no))


def history_before(records: Iterable[Impression], columns: Sequence[str], length: int,
                   now_ms: int) -> tuple[Behaviour, ...]:
    """The behaviours an impression at ``now_ms`` sees: exactly what :func:`build_sequences` gives an
    impression with that ts (the serving client builds requests with it, so the two cannot drift)."""
    clicks = [behaviour(r, columns) for r in chronological(records) if r.click and r.ts < now_ms]
    return tuple(reversed(clicks[-length:])) if length > 0 else ()


def build_sequences(records: Iterable[Impression], columns: Sequence[str],
                    length: int) -> Iterator[tuple[Impression, tuple[Behaviour, ...]]]:
    """Yield (impression, behaviours) for each in-window impression of one user.

    ``behaviours`` holds the user's last ``length`` clicks with ts strictly below the impression's,
    most recent first. All records sharing a ts are emitted before any of their clicks enter the
    history, so an impression never sees a click with ts >= its own (its own click included).
    Ties in ts among clicks are ordered by (file, line_no) so the output is deterministic.
    """
    ordered = chronological(records)
    history: collections.deque[Behaviour] = collections.deque(maxlen=length)
    start = 0
    while start < len(ordered):
        end = start
        while end < len(ordered) and ordered[end].ts == ordered[start].ts:
            end += 1
        same_ts = ordered[start:end]
        if any(r.in_window for r in same_ts):
            snapshot = tuple(reversed(history))
            for r in same_ts:
                if r.in_window:
                    yield r, snapshot
        history.extend(behaviour(r, columns) for r in same_ts if r.click)
        start = end
