"""The temporal train/val/eval split: evaluate on the newest data, select the model (early stopping)
on the data just before it, train on what precedes both.

By day, when the window holds ``eval_days + val_days`` days and at least one more: the newest
``eval_days`` day folders are ``eval``, the ``val_days`` before them ``val``, the rest ``train``.

With fewer days (the default window of two days with one eval and one val day, the first days of a
backfill) one day is cut by time (its *cut day*):
* a window longer than ``eval_days``: the newest ``eval_days`` days are still ``eval``, whole, and
  the newest of the days before them is the cut day: its last fifth of impressions by ts is ``val``,
  the rest ``train`` (older days are ``train``). The model is scored on whole days it never saw, as
  it will serve; a day's eval split of 12k rows moved its gap to the oracle by as much as a day of
  learning.
* a window of ``eval_days`` days or fewer (one day, by default): the newest day is the cut day,
  its last fifth ``eval``, the fifth before it ``val``, the rest of it and every older day ``train``.
An impression whose ts equals a cut stays in the earlier split, so no ts is on both sides of a cut.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

from msrec.components.log_example_gen.records import Impression

TRAIN = "train"
VAL = "val"
EVAL = "eval"
SPLITS = (TRAIN, VAL, EVAL)


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """The split of each whole window day (``days``) and the day cut by time (``cut_day``, None when
    every day is whole); ``cut_eval``: the cut day's last fifth is ``eval`` (else it is ``val``)."""

    days: Mapping[str, str]
    cut_day: str | None = None
    cut_eval: bool = False


def split_plan(window: Sequence[str], eval_days: int, val_days: int) -> SplitPlan:
    """The split of the days of ``window`` (oldest first): see the module docstring."""
    if eval_days < 1 or val_days < 1:
        raise ValueError(f"eval_days and val_days must be at least 1, got {eval_days} and {val_days}")
    n = len(window)
    if n >= eval_days + val_days + 1:
        return SplitPlan({day: EVAL if i >= n - eval_days else VAL if i >= n - eval_days - val_days else TRAIN
                          for i, day in enumerate(window)})
    if n > eval_days:
        training = n - eval_days
        days = {day: EVAL if i >= training else TRAIN for i, day in enumerate(window) if i != training - 1}
        return SplitPlan(days, window[training - 1], cut_eval=False)
    return SplitPlan({day: TRAIN for day in window[:-1]}, window[-1] if window else None, cut_eval=True)


def time_cuts(ts_values: Iterable[int], cut_eval: bool = True) -> tuple[int, int | None] | None:
    """(val_after, eval_after) for the cut day's impression ts: with ``cut_eval`` the ts at the 60th
    and 80th percentiles, else the 80th and None (no eval part). Impressions after ``eval_after`` are
    eval, those after ``val_after`` val. None when empty."""
    ordered = sorted(ts_values)
    if not ordered:
        return None

    def cut(fifths: int) -> int:  # the ts of the ceil(fifths/5 * n)-th impression, in integers
        return ordered[(fifths * len(ordered) + 4) // 5 - 1]

    return (cut(3), cut(4)) if cut_eval else (cut(4), None)


def split_of(record: Impression, plan: SplitPlan, cuts: tuple[int, int | None] | None = None) -> str:
    """The split of an impression of the window: its day's, or by ts within the cut day."""
    if record.day != plan.cut_day:
        return plan.days[record.day]
    if cuts is None:
        return TRAIN
    val_after, eval_after = cuts
    if eval_after is not None and record.ts > eval_after:
        return EVAL
    return VAL if record.ts > val_after else TRAIN
