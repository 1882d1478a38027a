"""The tf.Transform preprocessing_fn, generated from the feature config.

One graph serves training and serving (it is embedded in the exported signatures), so every rule
here is a serving rule too:

* categorical: frequency vocabulary capped at ``top_k`` with ``oov_buckets`` hash buckets; index 0
  is reserved for missing / padding (see msrec.schemas.feature_config). The behaviour sequence ``seq_<col>``
  looks its values up in the vocabulary of ``<col>``. Up to a ``top_k`` of 200k the vocabularies are
  tf.Transform's approximate ones (Misra-Gries, at most ``top_k`` counters): a combiner, so all of them
  are computed in one Beam pass instead of one sub-pipeline each (analysis of a 1M day's train split
  43 -> 35 s). A column with at most ``top_k`` distinct values gets exactly ``tft.vocabulary``'s file,
  same order; above the cap the values kept can differ at the tail, where counts are close. A larger
  ``top_k`` gets the exact vocabulary: a sketch of millions of counters, merged on one worker, costs
  more than it saves.
* ``scenario_id``: a *fixed* vocabulary (the workdir's append-only scenario registry, passed in
  ``custom_config``) instead of a frequency one, so a scenario keeps its index, and its
  per-scenario parameters, from one day to the next; an unseen scenario gets the OOV slot.
* multi-valued categorical: the first ``max_values`` values as [B, max_values] indices padded with
  0, one vocabulary over all the values.
* numeric: z-score; a missing value becomes the mean (0 after scaling). History counts
  (``source: history``) are log(1 + count) first.
* ``seq_time_gap`` (with ``sequence.time_gap``): seconds -> SAR-Net's behaviour-time bucket ids
  (``time_gap_bucket``), 0 where no behaviour is recorded.
* ``fairness_coef`` (training only) passes through, 1.0 when absent.
* ``date`` (training only, the example's day folder) and ``ts`` pass through: the Trainer picks the
  examples it trains on by them (models/training/incremental.py).
"""
from __future__ import annotations

from typing import Any, Mapping

import msrec  # noqa: F401
import tensorflow as tf
import tensorflow_transform as tft

from msrec.components.log_example_gen.examples import DATE_FEATURE, TS_FEATURE
from msrec.models.papers.sarnet import time_gap_bucket
from msrec.schemas.feature_config import FAIRNESS_COEF, LABEL, SEQ_PREFIX, TIME_GAP_FEATURE, FeatureConfig

SCENARIO_VOCAB_KEY = "scenario_vocabulary"
APPROXIMATE_UP_TO = 200_000  # the largest top_k given an approximate vocabulary (see _vocabulary)
FEATURE_CONFIG_KEY = "feature_config"


def vocabulary_name(feature: str) -> str:
    return f"vocab_{feature}"


def dense_scalar(x: tf.Tensor | tf.SparseTensor, default: Any) -> tf.Tensor:
    """A [B] dense tensor from a FixedLen [B] / [B,1] tensor or a VarLen (sparse) one."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(tf.sparse.reset_shape(x, [x.dense_shape[0], 1]), default_value=default)
    elif isinstance(x, tf.RaggedTensor):
        x = x.to_tensor(default_value=default, shape=[None, 1])
    return tf.reshape(x, [-1])


def dense_sequence(x: tf.Tensor | tf.SparseTensor, length: int, default: Any = "") -> tf.Tensor:
    """A [B, length] tensor, truncated or padded with ``default``."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x, default_value=default)
    elif isinstance(x, tf.RaggedTensor):
        x = x.to_tensor(default_value=default)
    x = tf.reshape(x, [tf.shape(x)[0], -1])[:, :length]
    pad = length - tf.shape(x)[1]
    # The reshape gives the static [None, length] shape a FixedLen transformed feature needs.
    return tf.reshape(tf.pad(x, [[0, 0], [0, pad]], constant_values=default), [-1, length])


def _vocabulary(values: tf.Tensor, top_k: int, filename: str) -> Any:
    """The frequency vocabulary of ``values``: approximate (a combiner) up to ``APPROXIMATE_UP_TO``
    entries, exact above, where tf.Transform's own guidance puts the sketch's counters past its gain."""
    if top_k <= APPROXIMATE_UP_TO:
        return tft.experimental.approximate_vocabulary(values, top_k, vocab_filename=filename)
    return tft.vocabulary(values, top_k=top_k, vocab_filename=filename)


def _index(values: tf.Tensor, vocab: Any, num_oov_buckets: int) -> tf.Tensor:
    """Vocabulary index shifted by one so that 0 stays 'missing'; OOV hashes into its buckets."""
    idx = tft.apply_vocabulary(values, vocab, num_oov_buckets=num_oov_buckets, default_value=0)
    return tf.where(tf.equal(values, ""), tf.zeros_like(idx), idx + 1)


def scenario_index(values: tf.Tensor, vocabulary: list[str]) -> tf.Tensor:
    """1 + position in the registry, len+1 (the OOV slot) when unknown, 0 when missing.

    A comparison against the registry rather than a lookup table: a table built inside the
    Transform graph is re-initialised on every serving call, and the registry is small."""
    vocab = tf.constant(vocabulary, tf.string)
    hits = tf.equal(tf.expand_dims(values, -1), vocab)
    index = tf.argmax(tf.cast(hits, tf.int32), axis=-1, output_type=tf.int64) + 1
    index = tf.where(tf.reduce_any(hits, axis=-1), index, tf.cast(len(vocabulary) + 1, tf.int64))
    return tf.where(tf.equal(values, ""), tf.zeros_like(index), index)


def preprocessing_fn(inputs: Mapping[str, Any], custom_config: Mapping[str, Any]) -> dict[str, tf.Tensor]:
    config = FeatureConfig.from_dict(custom_config[FEATURE_CONFIG_KEY])
    scenario_vocab = list(custom_config[SCENARIO_VOCAB_KEY])
    seq_len = config.sequence.length
    outputs: dict[str, tf.Tensor] = {}
    vocabs: dict[str, Any] = {}
    for f in config.features:
        if f.kind == "numeric":
            x = tf.cast(dense_scalar(inputs[f.name], float("nan")), tf.float32)
            if f.source == "history":  # counts: a long tail, which the log evens out
                x = tf.math.log1p(tf.maximum(x, 0.0))
            missing = tf.math.is_nan(x)
            x = tf.where(missing, tft.mean(tf.boolean_mask(x, tf.logical_not(missing))), x)
            outputs[f.name] = tft.scale_to_z_score(x)
            continue
        x = tf.strings.as_string(inputs[f.name]) if _is_numeric(inputs[f.name]) else inputs[f.name]
        x = dense_sequence(x, f.max_values) if f.kind == "multi" else dense_scalar(x, "")
        if f.name == "scenario_id":
            outputs[f.name] = scenario_index(x, scenario_vocab)
            continue
        vocabs[f.name] = _vocabulary(tf.boolean_mask(x, tf.not_equal(x, "")), f.top_k, vocabulary_name(f.name))
        outputs[f.name] = _index(x, vocabs[f.name], f.oov_buckets)
    behaviours = []  # per sequence column: True where a behaviour is recorded
    for col in config.sequence.columns:
        name = SEQ_PREFIX + col
        seq = dense_sequence(inputs[name], seq_len)
        behaviours.append(tf.not_equal(seq, ""))
        if col == "scenario_id":
            outputs[name] = scenario_index(seq, scenario_vocab)
        else:
            outputs[name] = _index(seq, vocabs[col], config.by_name[col].oov_buckets)
    if config.sequence.time_gap:
        # padding is told by the behaviour columns, not by the gap: a serving request pads the gaps
        # with 0, which is also a real gap of a click in the same second. A gap not given at all (an
        # example written without time_gap) is NaN, unknown.
        gaps = dense_sequence(tf.cast(inputs[TIME_GAP_FEATURE], tf.float32), seq_len, float("nan"))
        outputs[TIME_GAP_FEATURE] = time_gap_bucket(gaps, tf.reduce_any(tf.stack(behaviours), axis=0))
    if LABEL in inputs:
        outputs[LABEL] = tf.cast(dense_scalar(inputs[LABEL], 0), tf.int64)
    if FAIRNESS_COEF in inputs:
        outputs[FAIRNESS_COEF] = tf.cast(dense_scalar(inputs[FAIRNESS_COEF], 1.0), tf.float32)
    if DATE_FEATURE in inputs:
        outputs[DATE_FEATURE] = dense_scalar(inputs[DATE_FEATURE], "")
    if TS_FEATURE in inputs:
        outputs[TS_FEATURE] = tf.cast(dense_scalar(inputs[TS_FEATURE], 0), tf.int64)
    return outputs


def _is_numeric(x: Any) -> bool:
    return x.dtype != tf.string
