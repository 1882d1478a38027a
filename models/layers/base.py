"""The base of msrec's Keras layers and models: called without AutoGraph.

Keras runs AutoGraph over the ``call`` of every subclassed layer when it traces a function (the
train, test and predict steps, each export signature): a source-to-source rewrite of each method,
which cost ~15 s of every 200k-impression training run. msrec's layers write their data-dependent
control flow with ``tf.cond`` and tensor ops, and their Python loops run over layers and features
(fixed when traced), so there is nothing for AutoGraph to convert.
"""
from __future__ import annotations

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf


class NoAutoGraph:
    """Mixed into a Keras layer or model: its ``call`` is traced as written."""

    def _should_use_autograph(self) -> bool:  # tf_keras' hook, consulted on every __call__
        return False


class Layer(NoAutoGraph, tf.keras.layers.Layer):
    """Base of msrec's layers."""
