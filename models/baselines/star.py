"""STAR: Star Topology Adaptive Recommender (Sheng et al., CIKM 2021), scenarios as domains.

Modules, named as in the paper:

* **Partitioned Normalization (PN)** of the FCN input:
  z' = (gamma * gamma_p) (z - E) / sqrt(Var + eps) + (beta + beta_p), with gamma, beta shared and
  gamma_p, beta_p owned by scenario p. Training normalises with the batch moments of the
  example's own scenario (the paper trains on single-domain batches; here a mixed batch is
  partitioned by scenario, which gives the same moments); inference uses scenario p's moving
  averages E_p, Var_p. A scenario never seen in training keeps E = 0, Var = 1.
* **Star Topology FCN**: every layer of scenario p has the weights W_p (x) W and the bias
  b_p + b, where W, b are the centered (shared) parameters and W_p, b_p scenario p's; the output
  is phi((W_p (x) W)^T x + b_p + b). W_p starts at 1 and b_p at 0, so a scenario starts as (and
  an untrained one, e.g. the OOV index, stays) the shared network. The element-wise products are
  formed only for the scenarios present in the batch.
* **Auxiliary Network**: the scenario indicator's embedding and the other features that
  depict the scenario (the spec's scenario group) go through a small FCN to a logit s_a; the
  prediction is sigmoid(s_m + s_a), s_m being the star FCN's logit.

Input: the target-attention-pooled behaviour sequence and every feature group, as for every
baseline (:class:`~msrec.models.layers.BehaviourFields`). Paper ablations: ``normalization``
= "partitioned" | "batch" | "none", ``use_star_topology`` (False = the shared FCN only),
``use_auxiliary_network``. Hidden sizes follow the Mix baseline (OptMSM's setting for STAR).
"""
from __future__ import annotations

from typing import Any, Mapping

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import FeatureSpec
from msrec.models.base import MultiScenarioModel
from msrec.models.layers import MLP, BehaviourFields, ScenarioParameter, scenario_index
from msrec.models.registry import register
from msrec.models.layers.base import Layer

NORMALIZATIONS = ("partitioned", "batch", "none")


def _batch_scenarios(scenario: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(scenarios present in the batch [U], each example's position among them [B], count per one [U])."""
    present, position = tf.unique(scenario)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(scenario), position, tf.size(present))
    return present, position, counts


def _rowwise_matmul(x: tf.Tensor, position: tf.Tensor, kernels: tf.Tensor) -> tf.Tensor:
    """``x[b] @ kernels[position[b]]``: x [B, I], kernels [U, I, O] -> [B, O], U known only at run time.

    One sparse x dense product: row b of the sparse operand holds x[b] in the block of columns of
    kernel ``position[b]``, so FLOPs per example equal a plain dense layer's. The gradient is
    written out: TensorFlow's generic one for the sparse operand gathers a kernel row per non-zero
    (B * I * O floats).
    """
    fan_in, fan_out = x.shape[-1], kernels.shape[-1]

    @tf.custom_gradient
    def matmul(x: tf.Tensor, kernels: tf.Tensor):
        batch = tf.shape(x, out_type=tf.int64)[0]
        rows = tf.repeat(tf.range(batch), fan_in)
        cols = tf.reshape(tf.cast(position, tf.int64)[:, tf.newaxis] * fan_in
                          + tf.range(fan_in, dtype=tf.int64), [-1])
        sparse = tf.SparseTensor(tf.stack([rows, cols], axis=1), tf.reshape(x, [-1]),
                                 tf.stack([batch, tf.cast(tf.shape(kernels)[0], tf.int64) * fan_in]))
        y = tf.sparse.sparse_dense_matmul(sparse, tf.reshape(kernels, [-1, fan_out]))

        def grad(dy: tf.Tensor):
            d_kernels = tf.sparse.sparse_dense_matmul(sparse, dy, adjoint_a=True)
            d_x = _rowwise_matmul(dy, position, tf.transpose(kernels, [0, 2, 1]))
            return d_x, tf.reshape(d_kernels, tf.shape(kernels))

        return y, grad

    return matmul(tf.convert_to_tensor(x), tf.convert_to_tensor(kernels))


class PartitionedNormalization(Layer):
    """PN: batch normalisation with per-scenario statistics and per-scenario scale and shift."""

    def __init__(self, num_scenarios: int, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = int(num_scenarios)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape) -> None:
        dim = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(dim,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(dim,), initializer="zeros")
        self.gamma_p = ScenarioParameter(self.num_scenarios, (dim,), initializer="ones", name="gamma_p")
        self.beta_p = ScenarioParameter(self.num_scenarios, (dim,), initializer="zeros", name="beta_p")
        self.moving_mean = self.add_weight(name="moving_mean", shape=(self.num_scenarios, dim),
                                           initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(self.num_scenarios, dim),
                                               initializer="ones", trainable=False)
        super().build(input_shape)

    def _batch_moments(self, x: tf.Tensor, scenario: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Each example's scenario's batch mean and variance ([B, D] each); updates E_p, Var_p."""
        present, position, counts = _batch_scenarios(scenario)
        n = tf.cast(counts, x.dtype)[:, tf.newaxis]
        mean = tf.math.unsorted_segment_sum(x, position, tf.size(present)) / n
        centred = x - tf.gather(mean, position)
        variance = tf.math.unsorted_segment_sum(tf.square(centred), position, tf.size(present)) / n
        for moving, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            old = tf.gather(moving, present)
            moving.scatter_update(tf.IndexedSlices(old + (1.0 - self.momentum) * (value - old), present))
        return tf.gather(mean, position), tf.gather(variance, position)

    def call(self, x: tf.Tensor, scenario: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if training:
            mean, variance = self._batch_moments(x, scenario)
        else:
            mean, variance = tf.gather(self.moving_mean, scenario), tf.gather(self.moving_variance, scenario)
        z = (x - mean) * tf.math.rsqrt(variance + self.epsilon)
        return z * (self.gamma * self.gamma_p(scenario)) + (self.beta + self.beta_p(scenario))


class StarTopologyDense(Layer):
    """One star-topology FCN layer: phi(x (W_p (x) W) + b_p + b) for the example's scenario p."""

    def __init__(self, units: int, num_scenarios: int, activation: str | None = None,
                 use_star_topology: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.num_scenarios = int(num_scenarios)
        self.activation = tf.keras.activations.get(activation)
        self.use_star_topology = use_star_topology

    def build(self, input_shape) -> None:
        fan_in = int(input_shape[-1])
        self.shared_kernel = self.add_weight(name="shared_kernel", shape=(fan_in, self.units),
                                             initializer="glorot_uniform")
        self.shared_bias = self.add_weight(name="shared_bias", shape=(self.units,), initializer="zeros")
        if self.use_star_topology:
            self.scenario_kernel = self.add_weight(name="scenario_kernel",
                                                   shape=(self.num_scenarios, fan_in, self.units), initializer="ones")
            self.scenario_bias = self.add_weight(name="scenario_bias", shape=(self.num_scenarios, self.units),
                                                 initializer="zeros")
        super().build(input_shape)

    def call(self, x: tf.Tensor, scenario: tf.Tensor) -> tf.Tensor:
        if not self.use_star_topology:
            return self.activation(tf.matmul(x, self.shared_kernel) + self.shared_bias)
        present, position, _ = _batch_scenarios(scenario)
        kernels = tf.gather(self.scenario_kernel, present) * self.shared_kernel  # W_p (x) W, batch scenarios only
        y = _rowwise_matmul(x, position, kernels) + tf.gather(self.scenario_bias, scenario) + self.shared_bias
        return self.activation(y)


@register("star")
class STAR(MultiScenarioModel):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        "hidden_units": (256, 128, 64),
        "normalization": "partitioned",
        "normalization_momentum": 0.99,  # of the moving statistics, as Keras' batch normalisation
        "use_star_topology": True,
        "use_auxiliary_network": True,
        "auxiliary_units": (64,),  # plus its logit layer: the paper's 2-layer auxiliary FCN
        "dropout": 0.0,
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        if hp["normalization"] not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {hp['normalization']!r}")
        if hp["use_auxiliary_network"] and not spec.groups.get("scenario"):
            raise ValueError("the auxiliary network needs the scenario feature group")
        num_scenarios = spec.num_scenarios
        self.inputs_layer = BehaviourFields.from_hparams(spec, hp)
        momentum = hp["normalization_momentum"]
        self.partitioned_normalization = None
        self.batch_normalization = None
        if hp["normalization"] == "partitioned":
            self.partitioned_normalization = PartitionedNormalization(num_scenarios, momentum,
                                                                      name="partitioned_normalization")
        elif hp["normalization"] == "batch":
            self.batch_normalization = tf.keras.layers.BatchNormalization(momentum=momentum,
                                                                          name="batch_normalization")
        star = bool(hp["use_star_topology"])
        self.star_fcn = [StarTopologyDense(u, num_scenarios, "relu", star, name=f"star_fcn_{i}")
                         for i, u in enumerate(hp["hidden_units"])]
        self.star_logit = StarTopologyDense(1, num_scenarios, None, star, name="star_logit")
        self.dropout = tf.keras.layers.Dropout(hp["dropout"]) if hp["dropout"] else None
        self.auxiliary_network = (MLP(tuple(hp["auxiliary_units"]), name="auxiliary_network")
                                  if hp["use_auxiliary_network"] else None)
        self.auxiliary_logit = tf.keras.layers.Dense(1, name="auxiliary_logit") if hp["use_auxiliary_network"] else None

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        scenario = scenario_index(features, self.spec)
        fields = self.inputs_layer(features)
        x = self.inputs_layer.vector(fields)
        if self.partitioned_normalization is not None:
            x = self.partitioned_normalization(x, scenario, training=training)
        if self.batch_normalization is not None:
            x = self.batch_normalization(x, training=training)
        for layer in self.star_fcn:
            x = layer(x, scenario)
            if self.dropout is not None:
                x = self.dropout(x, training=training)
        logit = self.star_logit(x, scenario)  # s_m
        if self.auxiliary_network is not None:
            logit += self.auxiliary_logit(self.auxiliary_network(self.inputs_layer.group(fields, "scenario")))  # s_a
        return self.click_probability(logit, features)
