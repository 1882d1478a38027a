"""Dense blocks: the MLP, PEPNet's Gate NU and PPNet, and the Glorot scale of stacked kernels."""
from __future__ import annotations

from typing import Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
from msrec.models.layers.base import Layer


class MLP(Layer):
    """Dense -> [BatchNorm] -> activation -> [Dropout], once per entry of ``units``."""

    def __init__(self, units: Sequence[int], activation: str = "relu", batch_norm: bool = False,
                 dropout: float = 0.0, l2: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        reg = tf.keras.regularizers.l2(l2) if l2 else None
        self.dense = [tf.keras.layers.Dense(u, kernel_regularizer=reg, use_bias=not batch_norm, name=f"dense_{i}")
                      for i, u in enumerate(units)]
        self.norms = ([tf.keras.layers.BatchNormalization(name=f"bn_{i}") for i in range(len(units))]
                      if batch_norm else [])
        self.activation = tf.keras.activations.get(activation)
        self.dropout = tf.keras.layers.Dropout(dropout) if dropout else None

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        for i, dense in enumerate(self.dense):
            x = after_affine(self, i, dense(x), training)
        return x


def after_affine(layer: tf.keras.layers.Layer, i: int, x: tf.Tensor, training: bool | None) -> tf.Tensor:
    """What follows the i-th affine map of an MLP-like ``layer``: [BatchNorm] -> activation -> [Dropout]."""
    if layer.norms:
        x = layer.norms[i](x, training=training)
    x = layer.activation(x)
    return x if layer.dropout is None else layer.dropout(x, training=training)


def glorot_stacked(fan_in: int, fan_out: int) -> tf.keras.initializers.Initializer:
    """Glorot-uniform for a stack of [fan_in, fan_out] kernels: each slice scaled as one dense kernel.

    (Keras' own Glorot treats leading axes as a convolution's receptive field and would shrink
    the weights by the number of scenarios / experts.)
    """
    limit = (6.0 / (fan_in + fan_out)) ** 0.5
    return tf.keras.initializers.RandomUniform(-limit, limit)


class GateNU(Layer):
    """The gate neural unit of PEPNet (Chang et al. 2023): ``scale * sigmoid(W2 relu(W1 x + b1) + b2)``.

    Output [B, units] in (0, scale); with scale 2 an untrained gate averages 1, so multiplying a
    layer by it starts close to the identity (PEPNet's Gate NU, OptMSM's hypernetwork eq. 11).
    """

    def __init__(self, units: int, hidden_units: int, scale: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = tf.keras.layers.Dense(hidden_units, activation="relu", name="hidden")
        self.out = tf.keras.layers.Dense(units, activation="sigmoid", name="out")
        self.scale = float(scale)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.scale * self.out(self.hidden(x))


class PPNet(Layer):
    """PEPNet's PPNet (parameter personalisation): a ReLU DNN whose every layer input is scaled by its
    own :class:`GateNU` over [persona prior || sg(DNN input)], H^{l+1} = relu((delta^l * H^l) W^l + b^l).

    ``call((x [B, D], prior [B, P]))`` -> [B, units[-1]]. The stop-gradient keeps the gates from
    training the input's embeddings.
    """

    def __init__(self, units: Sequence[int], gate_units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = tuple(int(u) for u in units)
        self.dense = [tf.keras.layers.Dense(u, activation="relu", name=f"dense_{i}") for i, u in enumerate(self.units)]
        self.gate_units = int(gate_units)

    def build(self, input_shape) -> None:
        widths = (int(input_shape[0][-1]),) + self.units[:-1]
        self.gates = [GateNU(w, self.gate_units, name=f"gate_nu_{i}") for i, w in enumerate(widths)]
        super().build(input_shape)

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        x, prior = inputs
        condition = tf.concat([prior, tf.stop_gradient(x)], axis=-1)
        for gate, dense in zip(self.gates, self.dense):
            x = dense(gate(condition) * x)
        return x
