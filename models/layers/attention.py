"""Attention over the behaviour sequence: DIN's feed-forward operator and target-attention pooling."""
from __future__ import annotations

from typing import Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.models.layers.dense import MLP
from msrec.models.layers.ops import masked_softmax, weighted_sum
from msrec.models.layers.base import Layer


class FeedForwardAttention(Layer):
    """The feed-forward attention operator psi(key, query) of DIN / SAR-Net, softmax-normalised.

    psi = MLP([k, q, k - q, k * q]) -> one logit per behaviour; the weights are a softmax over the
    valid positions (exactly zero on padding). A query of another width than the keys is first
    projected to the keys' width.
    """

    def __init__(self, units: Sequence[int] = (64, 32), activation: str = "relu", **kwargs) -> None:
        super().__init__(**kwargs)
        self.mlp = MLP(units, activation=activation, name="mlp")
        # No bias: a constant added to every score cancels in the softmax, so it could never learn.
        self.score = tf.keras.layers.Dense(1, use_bias=False, name="score")
        self.query_projection: tf.keras.layers.Dense | None = None

    def build(self, input_shape) -> None:
        query_shape, keys_shape = input_shape[0], input_shape[1]
        if query_shape[-1] != keys_shape[-1]:
            self.query_projection = tf.keras.layers.Dense(keys_shape[-1], use_bias=False, name="query_projection")
        super().build(input_shape)

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor], mask: tf.Tensor | None = None) -> tf.Tensor:
        """``(query [B, Dq], keys [B, L, Dk])``, mask [B, L] -> weights [B, L]."""
        query, keys = inputs
        if self.query_projection is not None:
            query = self.query_projection(query)
        q = tf.broadcast_to(query[:, tf.newaxis, :], tf.shape(keys))
        x = tf.concat([keys, q, keys - q, keys * q], axis=-1)
        logits = tf.squeeze(self.score(self.mlp(x)), axis=-1)
        return masked_softmax(logits, mask)


class TargetAttentionPooling(Layer):
    """DIN-style target attention: pools the behaviour items by their relevance to the target item.

    Returns ``(pooled [B, D], weights [B, L])``.
    """

    def __init__(self, units: Sequence[int] = (64, 32), **kwargs) -> None:
        super().__init__(**kwargs)
        self.attention = FeedForwardAttention(units, name="attention")

    def call(self, query: tf.Tensor, keys: tf.Tensor, mask: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
        weights = self.attention((query, keys), mask=mask)
        return weighted_sum(weights, keys), weights
