"""The temporal train/val/eval split: evaluate on the newest data, select the model (early stopping)
on the data just before it, train on what precedes both.

By day, when the window holds ``eval_days + val_days`` days and at least one more: the newest
``eval_days`` day folders are ``eval``, the ``val_days`` before them ``val``, the rest ``train``.

By time otherwise (a one-day window, the first days of a backfill, a window of two days with the
default one eval and one val day): within the newest day, the last fifth of its impressions by ts
is ``eval`` and the fifth before it ``val``; the rest of that day and every older window day are
``train``. An impression whose ts equals a cut stays in the earlier split, so no ts is on both
sides of a cut.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from msrec.components.log_example_gen.records import Impression

TRAIN = "train"
VAL = "val"
EVAL = "eval"
SPLITS = (TRAIN, VAL, EVAL)


def day_splits(window: Sequence[str], eval_days: int, val_days: int) -> dict[str, str] | None:
    """The split of each day of ``window`` (oldest first), or None when the window is too short to
    leave a training day: the split then goes by time (:func:`time_cuts`)."""
    if eval_days < 1 or val_days < 1:
        raise ValueError(f"eval_days and val_days must be at least 1, got {eval_days} and {val_days}")
    n = len(window)
    if n < eval_days + val_days + 1:
        return None
    return {day: EVAL if i >= n - eval_days else VAL if i >= n - eval_days - val_days else TRAIN
            for i, day in enumerate(window)}


def time_cuts(ts_values: Iterable[int]) -> tuple[int, int] | None:
    """(val_after, eval_after) for the newest day's impression ts: the ts at the 60th and 80th
    percentiles. Impressions after ``eval_after`` are eval, those after ``val_after`` val. None
    when empty."""
    ordered = sorted(ts_values)
    if not ordered:
        return None

    def cut(fifths: int) -> int:  # the ts of the ceil(fifths/5 * n)-th impression, in integers
        return ordered[(fifths * len(ordered) + 4) // 5 - 1]

    return cut(3), cut(4)


def split_by_day(record: Impression, days: Mapping[str, str]) -> str:
    return days[record.day]


def split_by_ts(record: Impression, newest_day: str, cuts: tuple[int, int] | None) -> str:
    if cuts is None or record.day != newest_day:
        return TRAIN
    val_after, eval_after = cuts
    return EVAL if record.ts > eval_after else VAL if record.ts > val_after else TRAIN
