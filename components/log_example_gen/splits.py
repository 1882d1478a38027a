"""The temporal train/eval split (DESIGN §4): evaluate on the newest data, train on what precedes it.

With a window of two days or more, the newest day folder is ``eval`` and the others ``train``.
With a one-day window, the last fifth of the day by ts is ``eval`` (ties at the cut stay ``train``).
"""
from __future__ import annotations

from typing import Iterable

from msrec.components.log_example_gen.records import Impression

TRAIN = "train"
EVAL = "eval"
SPLITS = (TRAIN, EVAL)


def last_fifth_threshold(ts_values: Iterable[int]) -> int | None:
    """The ts at the 80th percentile: impressions strictly after it are eval. None when empty."""
    ordered = sorted(ts_values)
    if not ordered:
        return None
    train_size = (4 * len(ordered) + 4) // 5  # ceil(0.8 n), in integers to avoid float rounding
    return ordered[train_size - 1]


def split_by_day(record: Impression, eval_day: str) -> str:
    return EVAL if record.day == eval_day else TRAIN


def split_by_ts(record: Impression, threshold: int | None) -> str:
    return EVAL if threshold is not None and record.ts > threshold else TRAIN
