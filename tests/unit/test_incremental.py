"""Incremental training: a candidate continues production on the days production has not trained on;
full retrains when there is nothing to continue from, when the configuration changed, or on a period."""
import datetime as dt
import gzip
import os

import tensorflow as tf

from msrec.models.training import incremental
from msrec.models.training.incremental import FULL, INCREMENTAL, plan

CONFIG = incremental.fingerprint("sarnet", {"learning_rate": 0.003}, {"features": [{"name": "user_id"}]}, ["s1", "s2"])


def day(n: int) -> str:
    return (dt.date(2026, 11, 1) + dt.timedelta(days=n - 1)).isoformat()


def test_no_production_model_is_a_full_retrain_on_the_whole_window():
    p = plan(None, False, CONFIG, [day(2), day(1)], day(2), 7)
    assert (p.mode, p.days, p.newest_day, p.last_full_retrain) == (FULL, (day(1), day(2)), day(2), day(2))
    assert not p.warm_start and "no production model" in p.reason


def test_an_incremental_candidate_never_trains_on_a_day_the_production_model_trained_on():
    """Ten days, a two-day training window (yesterday and the first part of today), days 4 and 5
    rejected: every candidate continues production on exactly the days newer than all the data
    behind production's weights, and a rejected day's data is picked up by the next candidate."""
    production, lineage = None, set()  # lineage: every day behind production's weights
    rejected = {4, 5}
    for n in range(1, 11):
        window = [day(k) for k in (n - 1, n) if k >= 1]
        p = plan(production.record() if production else None, production is not None, CONFIG, window, day(n), 30)
        if production is None:
            assert p.mode == FULL
        else:
            assert p.mode == INCREMENTAL and p.warm_start
            assert not set(p.days) & lineage
            assert list(p.days) == [d for d in window if d > max(lineage)]
        trained = (lineage if p.warm_start else set()) | set(p.days)
        assert p.newest_day == max(trained)
        if n not in rejected:
            production, lineage = p, trained
    assert lineage == {day(n) for n in range(1, 11)} - {day(4)}  # day 4 fell out of every window


def test_nothing_new_carries_production_over():
    production = plan(None, False, CONFIG, [day(1), day(2)], day(2), 7)
    p = plan(production.record(), True, CONFIG, [day(1), day(2)], day(3), 7)
    assert p.mode == INCREMENTAL and p.days == () and p.newest_day == day(2) and "carry over" in p.reason


def test_a_changed_configuration_or_an_old_full_retrain_forces_a_full_retrain():
    production = plan(None, False, CONFIG, [day(1)], day(1), 7).record()
    changed = incremental.fingerprint("sarnet", {"learning_rate": 0.001}, {"features": [{"name": "user_id"}]},
                                      ["s1", "s2"])
    p = plan(production, True, changed, [day(1), day(2)], day(2), 7)
    assert p.mode == FULL and p.days == (day(1), day(2)) and "hparams changed" in p.reason
    grown = incremental.fingerprint("sarnet", {"learning_rate": 0.003}, {"features": [{"name": "user_id"}]},
                                    ["s1", "s2", "s3"])
    assert "scenario vocabulary changed" in plan(production, True, grown, [day(2)], day(2), 7).reason
    assert plan(production, True, CONFIG, [day(7)], day(7), 7).mode == INCREMENTAL  # 6 days old
    p = plan(production, True, CONFIG, [day(7), day(8)], day(8), 7)
    assert p.mode == FULL and "7 days old" in p.reason and p.last_full_retrain == day(8)
    assert plan(None, True, CONFIG, [day(2)], day(2), 7).reason == "the production model has no record of its training"


def test_the_record_round_trips_through_the_exported_model(tmp_path):
    p = plan(None, False, CONFIG, [day(1), day(2)], day(2), 7)
    incremental.write_record(p, str(tmp_path))
    back = incremental.read_record(str(tmp_path))
    assert back["days"] == [day(1), day(2)] and back["fingerprint"] == CONFIG
    assert plan(back, True, CONFIG, [day(2), day(3)], day(3), 7).days == (day(3),)
    assert incremental.read_record(str(tmp_path / "elsewhere")) is None


def test_days_are_read_from_the_examples_and_only_the_chosen_days_are_kept(tmp_path):
    path = os.path.join(tmp_path, "part-0.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        for i in range(30):
            ex = tf.train.Example(features=tf.train.Features(feature={
                "date": tf.train.Feature(bytes_list=tf.train.BytesList(value=[day(1 + i % 3).encode()])),
                "click": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}))
            w.write(ex.SerializeToString())
    assert gzip.open(path).read(1)  # really gzipped
    assert incremental.days_in([path]) == [day(1), day(2), day(3)]
    kept = incremental.only_days(tf.data.TFRecordDataset([path], compression_type="GZIP"), [day(2), day(3)])
    clicks = [tf.train.Example.FromString(r.numpy()).features.feature["click"].int64_list.value[0] for r in kept]
    assert clicks == [i for i in range(30) if i % 3 != 0]
    assert not list(incremental.only_days(tf.data.TFRecordDataset([path], compression_type="GZIP"), []))
