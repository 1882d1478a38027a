"""Tensor helpers shared by the layers: reading the feature dict, masked softmax and means, mixing."""
from __future__ import annotations

from typing import Mapping

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import FAIRNESS_COEF, FeatureSpec


# Large negative logit for masked positions: exp() underflows to exactly 0 in float32.
_MASKED_LOGIT = -1e9


# --------------------------------------------------------------------------- input helpers


def as_column(t: tf.Tensor) -> tf.Tensor:
    """[B] or [B, 1] -> [B, 1]."""
    t = tf.convert_to_tensor(t)
    if t.shape.rank == 1:
        return t[:, tf.newaxis]
    return t


def scenario_index(features: Mapping[str, tf.Tensor], spec: FeatureSpec) -> tf.Tensor:
    """The scenario index of each example as int32 ``[B]``."""
    if spec.scenario_feature not in features:
        raise ValueError(f"the scenario feature {spec.scenario_feature!r} is missing from the inputs")
    return tf.cast(tf.reshape(features[spec.scenario_feature], [-1]), tf.int32)


def fairness_coef(features: Mapping[str, tf.Tensor]) -> tf.Tensor | None:
    """``fairness_coef`` as float32 ``[B, 1]``, or None when absent (serving)."""
    if FAIRNESS_COEF not in features:
        return None
    return tf.cast(as_column(features[FAIRNESS_COEF]), tf.float32)


def sequence_mask(features: Mapping[str, tf.Tensor], spec: FeatureSpec) -> tf.Tensor | None:
    """bool ``[B, L]``: True where the behaviour sequence holds an item (first item sequence)."""
    items = spec.sequence_item_features
    if not items:
        return None
    return tf.not_equal(features[items[0]], 0)


def masked_softmax(logits: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor:
    """Softmax over the last axis that puts exactly zero weight on masked positions.

    A row with no valid position gets all-zero weights (not NaN).
    """
    if mask is None:
        return tf.nn.softmax(logits, axis=-1)
    logits = tf.where(mask, logits, tf.fill(tf.shape(logits), tf.constant(_MASKED_LOGIT, logits.dtype)))
    return tf.nn.softmax(logits, axis=-1) * tf.cast(mask, logits.dtype)


def masked_mean(values: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor:
    """Mean of ``values`` [B, L, D] over valid positions -> [B, D]; zeros when none is valid."""
    if mask is None:
        return tf.reduce_mean(values, axis=1)
    m = tf.cast(mask, values.dtype)[..., tf.newaxis]
    return tf.reduce_sum(values * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)


def weighted_sum(weights: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """``sum_k weights[b, k] * values[b, k, :]`` -> [B, D]."""
    return tf.einsum("bk,bkd->bd", weights, values)


def mix_experts(gate: tf.Tensor, experts: tf.Tensor) -> tf.Tensor:
    """Gate-weighted sum of expert outputs: gate [B, E], experts [B, E, D] -> [B, D]."""
    return tf.einsum("be,bed->bd", gate, experts)
