"""A group of MLP experts evaluated together, shared or per scenario."""
from __future__ import annotations

from typing import Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.models.layers.dense import after_affine, glorot_stacked
from msrec.models.layers.scenario import ScenarioDense
from msrec.models.layers.base import Layer


class ExpertGroup(Layer):
    """``num_experts`` independent MLP experts evaluated together (one einsum per layer).

    Input [B, I] (every expert reads the same vector) or [B, E, I] (each expert its own).
    Output [B, E, units[-1]]. With ``num_scenarios`` set, every scenario owns its own
    ``num_experts`` experts and the scenario index [B] selects them (:func:`scenario_matmul`).
    Batch norm, when on, normalises each (expert slot, unit) over the batch; for scenario-owned
    experts the statistics of a slot are shared by all scenarios.
    """

    def __init__(self, num_experts: int, units: Sequence[int], num_scenarios: int | None = None,
                 activation: str = "relu", batch_norm: bool = False, dropout: float = 0.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_experts = int(num_experts)
        self.units = tuple(int(u) for u in units)
        self.num_scenarios = num_scenarios
        self.activation = tf.keras.activations.get(activation)
        self.norms = ([tf.keras.layers.BatchNormalization(axis=[-2, -1], name=f"bn_{i}")
                       for i in range(len(self.units))] if batch_norm else [])
        self.dropout = tf.keras.layers.Dropout(dropout) if dropout else None
        if num_scenarios is not None:
            self.scenario_layers = [ScenarioDense(u, num_scenarios, groups=self.num_experts,
                                                  use_bias=not batch_norm, name=f"dense_{i}")
                                    for i, u in enumerate(self.units)]

    def build(self, input_shape) -> None:
        if self.num_scenarios is None:
            self.kernels, self.biases = [], []
            fan_in = int(input_shape[-1])
            for i, u in enumerate(self.units):
                self.kernels.append(self.add_weight(
                    name=f"kernel_{i}", shape=(self.num_experts, fan_in, u), initializer=glorot_stacked(fan_in, u)))
                self.biases.append(None if self.norms else self.add_weight(
                    name=f"bias_{i}", shape=(self.num_experts, u), initializer="zeros"))
                fan_in = u
        super().build(input_shape)

    def call(self, x: tf.Tensor, scenario: tf.Tensor | None = None,
             training: bool | None = None) -> tf.Tensor:
        if x.shape.rank == 2:
            x = tf.broadcast_to(x[:, tf.newaxis, :], [tf.shape(x)[0], self.num_experts, x.shape[-1]])
        for i in range(len(self.units)):
            if self.num_scenarios is None:
                x = tf.einsum("bei,eio->beo", x, self.kernels[i])
                if self.biases[i] is not None:
                    x = x + self.biases[i]
            else:
                if scenario is None:
                    raise ValueError(f"{self.name}: scenario-owned experts need the scenario index")
                x = self.scenario_layers[i](x, scenario)
            x = after_affine(self, i, x, training)
        return x
