"""Per-scenario parameters, stacked [num_scenarios, ...] and gathered by each example's scenario index."""
from __future__ import annotations

from typing import Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.models.layers.dense import after_affine, glorot_stacked
from msrec.models.layers.base import Layer


class _StackedIdentity(tf.keras.initializers.Initializer):
    """Identity matrix in every [I, I] slice of a [..., I, I] kernel."""

    def __call__(self, shape, dtype=None, **kwargs):
        return tf.broadcast_to(tf.eye(shape[-1], dtype=dtype or tf.float32), shape)


class ScenarioParameter(Layer):
    """A parameter per scenario, stacked [num_scenarios, *shape], gathered by scenario index."""

    def __init__(self, num_scenarios: int, shape: Sequence[int], initializer="zeros", **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = int(num_scenarios)
        self.param_shape = tuple(int(s) for s in shape)
        self.initializer = tf.keras.initializers.get(initializer)

    def build(self, input_shape) -> None:
        self.table = self.add_weight(name="table", shape=(self.num_scenarios,) + self.param_shape,
                                     initializer=self.initializer)
        super().build(input_shape)

    def call(self, scenario: tf.Tensor) -> tf.Tensor:
        """scenario int [B] -> [B, *shape]."""
        return tf.gather(self.table, scenario)


def _block_sparse(x: tf.Tensor, scenario: tf.Tensor, num_scenarios: int) -> tf.SparseTensor:
    """x [B, G, I] as a sparse [B*G, S*G*I] whose row (b, g) holds x[b, g] in block (scenario[b], g)."""
    groups, fan_in = x.shape[1], x.shape[2]
    batch = tf.shape(x)[0]
    b = tf.range(batch)[:, tf.newaxis, tf.newaxis]
    g = tf.range(groups)[tf.newaxis, :, tf.newaxis]
    i = tf.range(fan_in)[tf.newaxis, tf.newaxis, :]
    s = tf.cast(scenario, tf.int32)[:, tf.newaxis, tf.newaxis]
    rows = tf.broadcast_to(b * groups + g, [batch, groups, fan_in])
    cols = (s * groups + g) * fan_in + i
    indices = tf.cast(tf.reshape(tf.stack([rows, cols], axis=-1), [-1, 2]), tf.int64)
    dense_shape = tf.cast(tf.stack([batch * groups, num_scenarios * groups * fan_in]), tf.int64)
    return tf.SparseTensor(indices, tf.reshape(x, [-1]), dense_shape)


def scenario_matmul(x: tf.Tensor, scenario: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Per-example ``x[b, g] @ kernel[scenario[b], g]``: x [B, G, I], kernel [S, G, I, O] -> [B, G, O].

    Written as one sparse x dense product (see :func:`_block_sparse`), so only the selected
    scenario's weights are read, FLOPs per example equal a plain dense layer's, and no
    per-example copy of a weight matrix is materialised (a gather of [B, I, O] kernels would
    take I times the activations' memory). The gradient is written out for the same reason:
    TensorFlow's generic one for the sparse operand gathers a kernel row per non-zero.
    """
    num_scenarios, groups, fan_in, fan_out = kernel.shape
    scenario = tf.cast(scenario, tf.int32)

    @tf.custom_gradient
    def matmul(x: tf.Tensor, kernel: tf.Tensor):
        sparse = _block_sparse(x, scenario, num_scenarios)
        flat_kernel = tf.reshape(kernel, [num_scenarios * groups * fan_in, fan_out])
        y = tf.reshape(tf.sparse.sparse_dense_matmul(sparse, flat_kernel), [-1, groups, fan_out])

        def grad(dy: tf.Tensor):
            d_kernel = tf.sparse.sparse_dense_matmul(sparse, tf.reshape(dy, [-1, fan_out]), adjoint_a=True)
            # d_x[b, g] = dy[b, g] @ kernel[scenario[b], g]^T: the same block product, transposed kernel.
            # (A plain op, not a nested custom gradient, so the gradient itself saves into a SavedModel.)
            flat_transposed = tf.reshape(tf.transpose(kernel, [0, 1, 3, 2]),
                                         [num_scenarios * groups * fan_out, fan_in])
            d_x = tf.sparse.sparse_dense_matmul(_block_sparse(dy, scenario, num_scenarios), flat_transposed)
            return tf.reshape(d_x, [-1, groups, fan_in]), tf.reshape(d_kernel, kernel.shape)

        return y, grad

    return matmul(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel))


class ScenarioDense(Layer):
    """A dense layer with its own kernel and bias per scenario (and per group slot).

    Input [B, I] or [B, G, I] (G parallel slots, e.g. a scenario's experts), plus the scenario
    index [B]. Output [B, O] or [B, G, O]. ``kernel_initializer="identity"`` starts every scenario
    at the identity map (needs I == O), which is what an untrained (e.g. OOV) scenario should do.
    """

    def __init__(self, units: int, num_scenarios: int, groups: int = 1, activation: str | None = None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.num_scenarios = int(num_scenarios)
        self.slots = int(groups)
        self.activation = tf.keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer

    def build(self, input_shape) -> None:
        fan_in = int(input_shape[-1])
        shape = (self.num_scenarios, self.slots, fan_in, self.units)
        if self.kernel_initializer == "identity":
            if fan_in != self.units:
                raise ValueError(f"identity init needs fan_in == units, got {fan_in} != {self.units}")
            init = _StackedIdentity()
        elif self.kernel_initializer == "glorot_uniform":
            init = glorot_stacked(fan_in, self.units)
        else:
            init = tf.keras.initializers.get(self.kernel_initializer)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=init)
        self.bias = (self.add_weight(name="bias", shape=(self.num_scenarios, self.slots, self.units),
                                     initializer="zeros") if self.use_bias else None)
        super().build(input_shape)

    def call(self, x: tf.Tensor, scenario: tf.Tensor) -> tf.Tensor:
        squeeze = x.shape.rank == 2
        if squeeze:
            x = x[:, tf.newaxis, :]
        y = scenario_matmul(x, scenario, self.kernel)
        if self.bias is not None:
            y = y + tf.gather(self.bias, scenario)
        y = self.activation(y)
        return y[:, 0, :] if squeeze else y


class ScenarioMLP(Layer):
    """A per-scenario tower: ScenarioDense -> activation per entry of ``units``."""

    def __init__(self, units: Sequence[int], num_scenarios: int, activation: str = "relu",
                 dropout: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dense = [ScenarioDense(u, num_scenarios, activation=activation, name=f"dense_{i}")
                      for i, u in enumerate(units)]
        self.dropout = tf.keras.layers.Dropout(dropout) if dropout else None

    def call(self, x: tf.Tensor, scenario: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        for dense in self.dense:
            x = dense(x, scenario)
            if self.dropout is not None:
                x = self.dropout(x, training=training)
        return x


class ScenarioGate(Layer):
    """Per-scenario single-layer softmax gate over ``num_experts`` (the MMoE / SAR-Net gate).

    Input [B, I] and scenario [B] -> weights [B, num_experts] summing to 1.
    """

    def __init__(self, num_experts: int, num_scenarios: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dense = ScenarioDense(num_experts, num_scenarios, activation="softmax", name="dense")

    def call(self, x: tf.Tensor, scenario: tf.Tensor) -> tf.Tensor:
        return self.dense(x, scenario)
