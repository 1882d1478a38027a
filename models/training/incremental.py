"""What a candidate trains on, and from what: incremental or full retrain.

Every exported model records its training in ``assets.extra/training.json``: the mode and why, the
days it trained on, ``trained_through`` (for each day folder behind its weights, the newest ts of
that day's examples it has trained on), the newest day behind it, the date of the full retrain its
weights descend from, and the configuration fingerprint (model name, user hparams, feature config,
scenario vocabulary). The next candidate reads the production model's record:

* incremental: continue from production's weights on the training examples production has not
  trained on: those of a day folder production never saw, or with a ts above the newest it trained on
  in that folder. So the part of a day that was validation or eval data when production trained
  (a short window cuts a day by time) is trained on a later day while it is in the window. A
  rejected day leaves production in place, so the next run trains on everything production has not
  seen; nothing new: production's weights carry over unchanged.
* full (the whole window, from scratch): no production model, production without a record, a
  changed fingerprint, or production's last full retrain at least ``full_retrain_days`` old.

A record written before ``trained_through`` existed counts every day up to its newest day as seen.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from typing import Any, Iterable, Mapping

import numpy as np
import tensorflow as tf

from msrec.components.log_example_gen.examples import DATE_FEATURE, TS_FEATURE

RECORD = "training.json"
FULL_RETRAIN_DAYS = 7
INCREMENTAL, FULL = "incremental", "full"
SEEN_WHOLE_DAY = 2 ** 62  # a trained_through bound above any ts: the whole day folder was seen


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    mode: str
    reason: str
    days: tuple[str, ...]  # the day folders this candidate trains on (all or some of their examples)
    newest_day: str | None  # newest day of all the data behind the candidate's weights
    last_full_retrain: str  # run date of the full retrain the weights descend from
    fingerprint: Mapping[str, Any]
    # day -> newest ts production trained on in it: this candidate trains only on examples above it
    after: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # day -> newest ts behind the candidate's weights (production's, merged with what this one trains on)
    trained_through: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def warm_start(self) -> bool:
        return self.mode == INCREMENTAL

    def record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "days": list(self.days), "fingerprint": dict(self.fingerprint),
                "after": dict(self.after), "trained_through": dict(self.trained_through)}


def fingerprint(model: str, hparams: Mapping[str, Any], feature_config: Mapping[str, Any],
                scenario_vocabulary: Iterable[str]) -> dict[str, Any]:
    """What a warm start depends on; any change forces a full retrain. JSON-normalised so a record
    read back compares equal to one built in memory."""
    return json.loads(json.dumps({"model": model, "hparams": dict(hparams), "feature_config": dict(feature_config),
                                  "scenario_vocabulary": list(scenario_vocabulary)}, sort_keys=True))


def _seen(production: Mapping[str, Any], day: str) -> int | None:
    """The newest ts production trained on in ``day`` (None: none of it)."""
    through = production.get("trained_through")
    if through is None:  # an older record: every day up to its newest day counts as seen
        newest = production.get("newest_day")
        return SEEN_WHOLE_DAY if newest is not None and day <= newest else None
    return through.get(day)


def plan(production: Mapping[str, Any] | None, has_production: bool, current: Mapping[str, Any],
         window: Mapping[str, int], run_date: str, full_retrain_days: int) -> TrainingPlan:
    """The plan for the run of ``run_date`` whose training split holds ``window``: each day folder's
    newest ts in it. ``production``: the production model's record (None when it has none or there
    is none)."""
    days = tuple(sorted(window))

    def full(reason: str) -> TrainingPlan:
        return TrainingPlan(FULL, reason, days, days[-1] if days else None, run_date, current,
                            trained_through={d: int(window[d]) for d in days})

    if not has_production:
        return full("no production model")
    if production is None:
        return full("the production model has no record of its training")
    changed = [k for k in ("model", "hparams", "feature_config", "scenario_vocabulary")
               if production["fingerprint"].get(k) != current.get(k)]
    if changed:
        return full(f"{', '.join(changed).replace('_', ' ')} changed since the production model")
    age = (dt.date.fromisoformat(run_date) - dt.date.fromisoformat(production["last_full_retrain"])).days
    if age >= full_retrain_days:
        return full(f"the production model's last full retrain ({production['last_full_retrain']}) is {age} days "
                    f"old (period {full_retrain_days})")
    after = {d: seen for d in days if (seen := _seen(production, d)) is not None}
    new = tuple(d for d in days if d not in after or window[d] > after[d])
    through = {d: int(t) for d, t in (production.get("trained_through") or {}).items()}
    through.update({d: max(int(window[d]), through.get(d, -1)) for d in new})
    seen = production["newest_day"]
    where = ", ".join(f"{d} after {dt.datetime.fromtimestamp(after[d] / 1000, dt.timezone.utc):%H:%M:%S}"
                      if d in after else d for d in new)
    reason = (f"continues the production model (trained through {seen}) on {where}" if new else
              f"the production model has trained on every training example of the window (through {seen}); "
              "its weights carry over")
    return TrainingPlan(INCREMENTAL, reason, new, max(filter(None, (seen, *new)), default=None),
                        production["last_full_retrain"], current, after={d: after[d] for d in new if d in after},
                        trained_through=through)


def read_record(model_dir: str) -> dict[str, Any] | None:
    path = os.path.join(model_dir, "assets.extra", RECORD)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as fh:
        return json.load(fh)


def write_record(training: TrainingPlan, serving_model_dir: str) -> None:
    out = os.path.join(serving_model_dir, "assets.extra")
    tf.io.gfile.makedirs(out)
    with tf.io.gfile.GFile(os.path.join(out, RECORD), "w") as fh:
        json.dump(training.record(), fh, indent=1)


DAY_AND_TS = {DATE_FEATURE: tf.io.FixedLenFeature([], tf.string), TS_FEATURE: tf.io.FixedLenFeature([], tf.int64)}


def _day_and_ts(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    parsed = tf.io.parse_example(serialized, DAY_AND_TS)
    return parsed[DATE_FEATURE], parsed[TS_FEATURE]


def newest_ts_of_batch(days: tf.Tensor, ts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The distinct days of a batch of examples and the newest ts of each (a few values to hand to
    Python instead of one string per example)."""
    distinct, index = tf.unique(tf.reshape(days, [-1]))
    return distinct, tf.math.unsorted_segment_max(tf.reshape(ts, [-1]), index, tf.size(distinct))


def fold_newest_ts(found: dict[str, int], days: np.ndarray, newest: np.ndarray) -> None:
    """Raise ``found`` (day folder -> newest ts) to a batch's :func:`newest_ts_of_batch`."""
    for day, t in zip(days.tolist(), newest.tolist()):
        name = day.decode()
        if t > found.get(name, -1):
            found[name] = t


FILTER_BATCH = 4096


def only_new(records: tf.data.Dataset, days: Iterable[str], after: Mapping[str, int]) -> tf.data.Dataset:
    """The serialized transformed examples of ``days`` with a ts above ``after`` of their day (all of
    a day without a bound)."""
    days = sorted(days)
    wanted = tf.constant(days or [""], tf.string)
    bounds = tf.constant([after.get(d, -1) for d in days] or [SEEN_WHOLE_DAY], tf.int64)

    def kept(serialized: tf.Tensor) -> tf.Tensor:
        day, ts = _day_and_ts(serialized)
        match = tf.equal(day[:, tf.newaxis], wanted[tf.newaxis, :])
        newer = ts > tf.reduce_max(tf.where(match, bounds[tf.newaxis, :], -1), axis=1)
        return tf.boolean_mask(serialized, tf.reduce_any(match, axis=1) & newer)

    # parsed a batch at a time: one parse per example cost 9 s a pass over a 1M day's training split;
    # the examples come out in the same order
    return records.batch(FILTER_BATCH).map(kept, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
