"""Which days a candidate trains on, and from what: incremental or full retrain.

Every exported model records its training in ``assets.extra/training.json``: the mode and why, the
days it trained on, the newest day of all the data behind its weights, the date of the full
retrain its weights descend from, and the configuration fingerprint (model name, user hparams,
feature config, scenario vocabulary). The next candidate reads the production model's record:

* incremental: continue from production's weights on the window's training days newer than the
  newest day production has seen (none: production's weights carry over unchanged). A rejected day
  leaves production in place, so the next run trains on everything production has not seen.
* full (the whole window, from scratch): no production model, production without a record, a
  changed fingerprint, or production's last full retrain at least ``full_retrain_days`` old.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from typing import Any, Iterable, Mapping

import tensorflow as tf

from msrec.components.log_example_gen.examples import DATE_FEATURE

RECORD = "training.json"
FULL_RETRAIN_DAYS = 7
INCREMENTAL, FULL = "incremental", "full"


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    mode: str
    reason: str
    days: tuple[str, ...]  # the days this candidate trains on
    newest_day: str | None  # newest day of all the data behind the candidate's weights
    last_full_retrain: str  # run date of the full retrain the weights descend from
    fingerprint: Mapping[str, Any]

    @property
    def warm_start(self) -> bool:
        return self.mode == INCREMENTAL

    def record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "days": list(self.days), "fingerprint": dict(self.fingerprint)}


def fingerprint(model: str, hparams: Mapping[str, Any], feature_config: Mapping[str, Any],
                scenario_vocabulary: Iterable[str]) -> dict[str, Any]:
    """What a warm start depends on; any change forces a full retrain. JSON-normalised so a record
    read back compares equal to one built in memory."""
    return json.loads(json.dumps({"model": model, "hparams": dict(hparams), "feature_config": dict(feature_config),
                                  "scenario_vocabulary": list(scenario_vocabulary)}, sort_keys=True))


def plan(production: Mapping[str, Any] | None, has_production: bool, current: Mapping[str, Any],
         window_days: Iterable[str], run_date: str, full_retrain_days: int) -> TrainingPlan:
    """The plan for the run of ``run_date`` whose training split holds ``window_days``.
    ``production``: the production model's record (None when it has none or there is none)."""
    days = tuple(sorted(set(window_days)))

    def full(reason: str) -> TrainingPlan:
        return TrainingPlan(FULL, reason, days, days[-1] if days else None, run_date, current)

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
    seen = production["newest_day"]
    new = tuple(d for d in days if seen is None or d > seen)
    reason = (f"continues the production model (trained through {seen})" if new else
              f"the production model has trained on every training day of the window (through {seen}); "
              "its weights carry over")
    return TrainingPlan(INCREMENTAL, reason, new, max(filter(None, (seen, *new)), default=None),
                        production["last_full_retrain"], current)


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


def _day_of(serialized: tf.Tensor) -> tf.Tensor:
    return tf.io.parse_single_example(serialized, {DATE_FEATURE: tf.io.FixedLenFeature([], tf.string)})[DATE_FEATURE]


def days_in(files: list[str]) -> list[str]:
    """The distinct days of gzipped transformed examples."""
    records = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    found: set[str] = set()
    for batch in records.map(_day_of, num_parallel_calls=tf.data.AUTOTUNE).batch(65536):
        found.update(v.decode() for v in set(batch.numpy().tolist()))
    return sorted(found)


def only_days(records: tf.data.Dataset, days: Iterable[str]) -> tf.data.Dataset:
    """The serialized transformed examples of ``days``."""
    wanted = tf.constant(sorted(days) or [""], tf.string)
    return records.filter(lambda r: tf.reduce_any(tf.equal(_day_of(r), wanted)))
