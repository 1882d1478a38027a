"""The Transform rules that also run at serving time: scenario index, padding, missing values."""
import numpy as np
import tensorflow as tf

import msrec  # noqa: F401
from msrec.models.papers.sarnet import TIME_GAP_BUCKETS, time_gap_bucket
from msrec.models.training.preprocessing import scenario_index, dense_scalar, dense_sequence


def testscenario_index_is_stable_with_an_oov_slot_and_zero_for_missing():
    registry = ["s00", "s01", "s02"]
    got = scenario_index(tf.constant(["s02", "", "s99", "s00"]), registry).numpy()
    np.testing.assert_array_equal(got, [3, 0, 4, 1])
    # The same registry grown by one keeps every old index: per-scenario parameters stay put.
    np.testing.assert_array_equal(scenario_index(tf.constant(["s02", "s00"]), registry + ["s03"]).numpy(), [3, 1])


def testscenario_index_of_a_sequence_keeps_its_shape():
    got = scenario_index(tf.constant([["s01", "s00", ""], ["zz", "", ""]]), ["s00", "s01"]).numpy()
    np.testing.assert_array_equal(got, [[2, 1, 0], [3, 0, 0]])


def test_sequences_are_truncated_or_padded_to_a_static_length():
    ragged = tf.sparse.from_dense(tf.constant([["a", "b", "c"], ["d", "", ""]]))
    out = dense_sequence(ragged, 2)
    assert out.shape[1] == 2
    np.testing.assert_array_equal(out.numpy(), [[b"a", b"b"], [b"d", b""]])
    np.testing.assert_array_equal(dense_sequence(tf.constant([["a"]]), 3).numpy(), [[b"a", b"", b""]])


def test_missing_scalar_values_get_the_default():
    sparse = tf.SparseTensor(indices=[[0, 0], [2, 0]], values=["x", "z"], dense_shape=[3, 1])
    np.testing.assert_array_equal(dense_scalar(sparse, "").numpy(), [b"x", b"", b"z"])
    np.testing.assert_array_equal(dense_scalar(tf.constant([[1.5], [2.0]]), 0.0).numpy(), [1.5, 2.0])


def test_time_gaps_fall_in_the_documented_buckets():
    """SAR-Net's behaviour time: under a minute, 10 min, 1 h, 6 h, 1 day, 3 days, 7 days, 30 days, more
    (buckets 1..9); padding, a negative gap (a client clock behind the log's) and NaN are unknown, 0."""
    minute, hour, day = 60.0, 3600.0, 86400.0
    edges = [(0.0, 1), (59.9, 1), (minute, 2), (10 * minute - 1, 2), (10 * minute, 3), (hour - 1, 3), (hour, 4),
             (6 * hour - 1, 4), (6 * hour, 5), (day - 1, 5), (day, 6), (3 * day - 1, 6), (3 * day, 7),
             (7 * day - 1, 7), (7 * day, 8), (30 * day - 1, 8), (30 * day, 9), (400 * day, 9)]
    gaps = [g for g, _ in edges] + [5.0, -1.0, float("nan")]
    valid = [True] * len(edges) + [False, True, True]
    got = time_gap_bucket(tf.constant([gaps]), tf.constant([valid])).numpy()
    np.testing.assert_array_equal(got, [[b for _, b in edges] + [0, 0, 0]])
    assert TIME_GAP_BUCKETS == 10 and got.dtype == np.int64
