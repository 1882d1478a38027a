"""Incremental training: a candidate continues production on the training examples production has
not trained on; full retrains when there is nothing to continue from, when the configuration changed,
or on a period."""
import datetime as dt
import gzip
import os

import tensorflow as tf

from msrec.models.training import incremental
from msrec.models.training.incremental import FULL, INCREMENTAL, plan

CONFIG = incremental.fingerprint("sarnet", {"learning_rate": 0.003}, {"features": [{"name": "user_id"}]}, ["s1", "s2"])
DAY_MS = 86_400_000


def day(n: int) -> str:
    return (dt.date(2026, 11, 1) + dt.timedelta(days=n - 1)).isoformat()


def ms(n: int, fraction: float = 1.0) -> int:
    """A ts ``fraction`` of the way through day n."""
    return int((dt.date(2026, 11, 1) + dt.timedelta(days=n - 1) - dt.date(1970, 1, 1)).days * DAY_MS
               + fraction * (DAY_MS - 1))


def test_no_production_model_is_a_full_retrain_on_the_whole_window():
    p = plan(None, False, CONFIG, {day(2): ms(2, 0.6), day(1): ms(1)}, day(2), 7)
    assert (p.mode, p.days, p.newest_day, p.last_full_retrain) == (FULL, (day(1), day(2)), day(2), day(2))
    assert p.after == {} and p.trained_through == {day(1): ms(1), day(2): ms(2, 0.6)}
    assert not p.warm_start and "no production model" in p.reason


def test_an_incremental_candidate_never_trains_on_an_example_the_production_model_trained_on():
    """Ten days, a two-day window whose newest day is split by time (``--eval-days 2``: its first
    60% train, the rest val and eval), days 4 and 5 rejected. Every candidate continues production on
    exactly the examples behind no production weight: yesterday's val and eval part, today's train part, and
    after a rejection everything since that is still in the window; in the end production's weights
    stand on every part of every day but those that left the window while days 4 and 5 were
    rejected (the rest of day 3, all of day 4)."""
    production, lineage = None, set()  # lineage: (day, first-or-second part) behind production's weights
    rejected = {4, 5}
    for n in range(1, 11):
        ks = [k for k in (n - 1, n) if k >= 1]
        window = {day(k): ms(k) if k < n else ms(k, 0.6) for k in ks}  # each day's newest train ts
        parts = {(day(k), 0) for k in ks} | {(day(k), 1) for k in ks if k < n}
        p = plan(production.record() if production else None, production is not None, CONFIG, window, day(n), 30)
        # the parts of the window this plan keeps: (day, 0) is before 60%, (day, 1) after it
        kept = {(d, half) for d, half in parts
                if d in p.days and (ms(int(d[-2:]), 0.3) if half == 0 else ms(int(d[-2:]), 0.8)) > p.after.get(d, -1)}
        if production is None:
            assert p.mode == FULL and kept == parts
        else:
            assert p.mode == INCREMENTAL and p.warm_start
            assert not kept & lineage and kept == parts - lineage
        trained = (lineage if p.warm_start else set()) | kept
        assert p.newest_day == max(d for d, _ in trained)
        if n not in rejected:
            production, lineage = p, trained
    every = {(day(n), 0) for n in range(1, 11)} | {(day(n), 1) for n in range(1, 10)}
    assert lineage == every - {(day(3), 1), (day(4), 0), (day(4), 1)}


def test_nothing_new_carries_production_over():
    production = plan(None, False, CONFIG, {day(1): ms(1), day(2): ms(2)}, day(2), 7)
    p = plan(production.record(), True, CONFIG, {day(1): ms(1), day(2): ms(2)}, day(3), 7)
    assert p.mode == INCREMENTAL and p.days == () and p.newest_day == day(2) and "carry over" in p.reason
    assert p.trained_through == production.trained_through


def test_a_record_without_per_day_bounds_counts_its_days_as_seen():
    """Models exported before ``trained_through`` existed: every day up to their newest is seen."""
    old = {**plan(None, False, CONFIG, {day(1): ms(1)}, day(1), 7).record(), "newest_day": day(1)}
    del old["trained_through"]
    p = plan(old, True, CONFIG, {day(1): ms(1), day(2): ms(2, 0.6)}, day(2), 7)
    assert p.days == (day(2),) and p.after == {}


def test_a_changed_configuration_or_an_old_full_retrain_forces_a_full_retrain():
    production = plan(None, False, CONFIG, {day(1): ms(1)}, day(1), 7).record()
    changed = incremental.fingerprint("sarnet", {"learning_rate": 0.001}, {"features": [{"name": "user_id"}]},
                                      ["s1", "s2"])
    p = plan(production, True, changed, {day(1): ms(1), day(2): ms(2)}, day(2), 7)
    assert p.mode == FULL and p.days == (day(1), day(2)) and "hparams changed" in p.reason
    grown = incremental.fingerprint("sarnet", {"learning_rate": 0.003}, {"features": [{"name": "user_id"}]},
                                    ["s1", "s2", "s3"])
    assert "scenario vocabulary changed" in plan(production, True, grown, {day(2): ms(2)}, day(2), 7).reason
    assert plan(production, True, CONFIG, {day(7): ms(7)}, day(7), 7).mode == INCREMENTAL  # 6 days old
    p = plan(production, True, CONFIG, {day(7): ms(7), day(8): ms(8)}, day(8), 7)
    assert p.mode == FULL and "7 days old" in p.reason and p.last_full_retrain == day(8)
    assert plan(None, True, CONFIG, {day(2): ms(2)}, day(2), 7).reason == \
        "the production model has no record of its training"


def test_the_record_round_trips_through_the_exported_model(tmp_path):
    p = plan(None, False, CONFIG, {day(1): ms(1), day(2): ms(2, 0.6)}, day(2), 7)
    incremental.write_record(p, str(tmp_path))
    back = incremental.read_record(str(tmp_path))
    assert back["days"] == [day(1), day(2)] and back["fingerprint"] == CONFIG
    nxt = plan(back, True, CONFIG, {day(2): ms(2), day(3): ms(3, 0.6)}, day(3), 7)
    assert nxt.days == (day(2), day(3)) and nxt.after == {day(2): ms(2, 0.6)}
    assert incremental.read_record(str(tmp_path / "elsewhere")) is None


def test_days_and_their_newest_ts_are_read_from_the_examples_and_only_new_examples_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(incremental, "FILTER_BATCH", 4)  # the filter's batches end mid-day: order is kept across them
    path = os.path.join(tmp_path, "part-0.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        for i in range(30):
            ex = tf.train.Example(features=tf.train.Features(feature={
                "date": tf.train.Feature(bytes_list=tf.train.BytesList(value=[day(1 + i % 3).encode()])),
                "ts": tf.train.Feature(int64_list=tf.train.Int64List(value=[ms(1 + i % 3, i / 30)])),
                "click": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}))
            w.write(ex.SerializeToString())
    assert gzip.open(path).read(1)  # really gzipped
    newest: dict[str, int] = {}
    for batch in tf.data.TFRecordDataset([path], compression_type="GZIP").batch(7):  # days across batches
        parsed = tf.io.parse_example(batch, incremental.DAY_AND_TS)
        distinct, latest = incremental.newest_ts_of_batch(parsed["date"], parsed["ts"])
        incremental.fold_newest_ts(newest, distinct.numpy(), latest.numpy())
    assert newest == {day(1): ms(1, 27 / 30), day(2): ms(2, 28 / 30), day(3): ms(3, 29 / 30)}

    def kept(days, after):
        records = incremental.only_new(tf.data.TFRecordDataset([path], compression_type="GZIP"), days, after)
        return [tf.train.Example.FromString(r.numpy()).features.feature["click"].int64_list.value[0] for r in records]

    assert kept([day(2), day(3)], {}) == [i for i in range(30) if i % 3 != 0]
    # day 2 after its example 13 (ts 13/30 of the way): 16, 19 ...; day 3 whole
    assert kept([day(2), day(3)], {day(2): ms(2, 13 / 30)}) == [i for i in range(30) if i % 3 == 2 or
                                                                (i % 3 == 1 and i > 13)]
    assert kept([], {}) == []
