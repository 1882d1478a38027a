"""Attention over the behaviour sequence: DIN's feed-forward operator and target-attention pooling."""
from __future__ import annotations

from typing import Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.models.layers.dense import MLP, after_affine
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
        # the MLP is applied piecewise (_hidden), never called whole: build it, and its first layer, here
        pair_shape = tf.TensorShape([None, None, 4 * keys_shape[-1]])
        self.mlp.build(pair_shape)
        self.mlp.dense[0].build(pair_shape)
        super().build(input_shape)

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor], mask: tf.Tensor | None = None) -> tf.Tensor:
        """``(query [B, Dq], keys [B, L, Dk])``, mask [B, L] -> weights [B, L]."""
        query, keys = inputs
        if self.query_projection is not None:
            query = self.query_projection(query)
        logits = tf.squeeze(self.score(self._hidden(query, keys)), axis=-1)
        return masked_softmax(logits, mask)

    def _hidden(self, query: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
        """``mlp([k, q, k - q, k * q])`` with its first layer's kernel [Wk; Wq; Wd; Wp] regrouped as
        ``[k, k * q] [Wk + Wd; Wp] + q (Wq - Wd)``: the same function of the same weights, but the
        query's share is computed once per example instead of once per behaviour, and the per-behaviour
        product is half as wide (the first layer is most of the attention's cost)."""
        first = self.mlp.dense[0]
        w_k, w_q, w_d, w_p = tf.split(first.kernel, 4, axis=0)
        per_behaviour = tf.concat([keys, keys * query[:, tf.newaxis, :]], axis=-1)
        per_example = tf.matmul(query, w_q - w_d)
        if first.use_bias:
            per_example += first.bias
        x = tf.einsum("bld,du->blu", per_behaviour, tf.concat([w_k + w_d, w_p], axis=0)) + per_example[:, tf.newaxis, :]
        x = after_affine(self.mlp, 0, x, None)
        for i, dense in enumerate(self.mlp.dense[1:], start=1):
            x = after_affine(self.mlp, i, dense(x), None)
        return x


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
