"""AdaSparse: adaptively sparse structures for multi-domain CTR prediction (Yang et al., CIKM 2022),
scenarios as domains.

Modules, named as in the paper:

* **Backbone**: an L-layer fully connected network over the domain-aware and domain-agnostic
  embeddings concatenated (here the input every baseline reads,
  :class:`~msrec.models.layers.BehaviourFields`), then a logit layer.
* **Domain-aware Pruner**: for each hidden layer l, a single fully connected layer maps
  [h^l (+) e_d] to z^l and a weighting factor pi^l per neuron; the layer's output becomes
  h^l (x) pi^l, so every scenario trains and serves its own sub-network. e_d is the domain
  embedding, the embeddings of the spec's scenario group. ``pruner_uses_hidden=False`` feeds e_d
  alone: then the pruned structure is a pure function of the scenario.
* **Weighting factors** (``weighting``):
  - "binarization": pi = 1[z > 0]. Training uses its smooth approximation sigmoid(alpha z),
    alpha growing linearly with the training step from ``alpha_init`` up to ``alpha_max``, so the
    factors harden into 0/1 as training goes on; inference uses the step function.
  - "scaling": pi = beta * sigmoid(z) in (0, beta); nothing is pruned, neurons are re-weighted.
  - "fusion": the scaling factor, set to exactly 0 where it is below ``epsilon`` (pruned).
* **Flexible sparsity regularisation** (for the methods that prune): with r^l the fraction of
  pruned neurons of layer l in the batch, the loss adds lambda^l * mean(pi^l) where lambda^l is
  +lambda when r^l < ``sparsity_min`` (push factors down: prune more), -lambda when
  r^l > ``sparsity_max`` (prune less) and 0 in between; it goes through ``add_loss``.

Defaults the paper's text does not fix are ours: beta = 2 (a factor of 1 at z = 0, like a Gate NU),
epsilon = 0.25, the alpha schedule, the sparsity band [0.2, 0.5] and lambda = 0.01. Hidden sizes
follow the Mix baseline. Ablation switches: ``use_pruner`` (the plain backbone), ``weighting``,
``pruner_uses_hidden``, ``sparsity_regularization``.
"""
from __future__ import annotations

from typing import Any, Mapping

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import FeatureSpec
from msrec.models.base import MultiScenarioModel
from msrec.models.layers import BehaviourFields
from msrec.models.registry import register
from msrec.models.layers.base import Layer

WEIGHTINGS = ("binarization", "scaling", "fusion")


class DomainAwarePruner(Layer):
    """Neuron-level weighting factors pi [B, units] of one hidden layer from its condition
    ([h (+) e_d] or e_d), and the flexible sparsity regulariser on them."""

    def __init__(self, units: int, weighting: str = "fusion", beta: float = 2.0, epsilon: float = 0.25,
                 alpha_init: float = 1.0, alpha_growth: float = 0.01, alpha_max: float = 10.0,
                 sparsity_regularization: bool = True, sparsity_lambda: float = 0.01,
                 sparsity_min: float = 0.2, sparsity_max: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if not 0.0 <= sparsity_min <= sparsity_max <= 1.0:
            raise ValueError(f"need 0 <= sparsity_min <= sparsity_max <= 1, got [{sparsity_min}, {sparsity_max}]")
        self.dense = tf.keras.layers.Dense(units, name="dense")
        self.weighting = weighting
        self.beta, self.epsilon = float(beta), float(epsilon)
        self.alpha_init, self.alpha_growth, self.alpha_max = float(alpha_init), float(alpha_growth), float(alpha_max)
        self.regularize = sparsity_regularization and weighting != "scaling"  # scaling prunes nothing
        self.sparsity_lambda = float(sparsity_lambda)
        self.sparsity_band = (float(sparsity_min), float(sparsity_max))

    def build(self, input_shape) -> None:
        # Training steps seen, for the binarization's alpha schedule (saved with the model).
        self.step = self.add_weight(name="step", shape=(), dtype=tf.float32, initializer="zeros", trainable=False)
        super().build(input_shape)

    @property
    def alpha(self) -> tf.Tensor:
        return tf.minimum(self.alpha_init + self.alpha_growth * self.step, self.alpha_max)

    def call(self, condition: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        z = self.dense(condition)
        if self.weighting == "binarization":
            pruned = z <= 0.0
            if training:
                soft = pi = tf.sigmoid(self.alpha * z)
                self.step.assign_add(1.0)
            else:
                soft = pi = tf.cast(tf.logical_not(pruned), z.dtype)
        else:
            soft = self.beta * tf.sigmoid(z)
            pruned = soft < self.epsilon if self.weighting == "fusion" else tf.zeros_like(z, tf.bool)
            pi = tf.where(pruned, tf.zeros_like(soft), soft)
        if training and self.regularize:
            self.add_loss(self._sparsity_loss(soft, pruned))
        return pi

    def _sparsity_loss(self, soft: tf.Tensor, pruned: tf.Tensor) -> tf.Tensor:
        ratio = tf.reduce_mean(tf.cast(pruned, soft.dtype))  # r^l, a statistic: no gradient
        low, high = self.sparsity_band
        sign = tf.where(ratio < low, 1.0, tf.where(ratio > high, -1.0, 0.0))
        return self.sparsity_lambda * sign * tf.reduce_mean(soft)


@register("adasparse")
class AdaSparse(MultiScenarioModel):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        "hidden_units": (256, 128, 64),
        "use_pruner": True,
        "weighting": "fusion",
        "pruner_uses_hidden": True,
        "beta": 2.0,
        "epsilon": 0.25,
        "alpha_init": 1.0,
        "alpha_growth": 0.01,
        "alpha_max": 10.0,
        "sparsity_regularization": True,
        "sparsity_lambda": 0.01,
        "sparsity_min": 0.2,
        "sparsity_max": 0.5,
        "dropout": 0.0,
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        if hp["use_pruner"] and not spec.groups.get("scenario"):
            raise ValueError("AdaSparse's pruner needs the scenario (domain) feature group")
        self.inputs_layer = BehaviourFields.from_hparams(spec, hp)
        units = tuple(hp["hidden_units"])
        self.backbone = [tf.keras.layers.Dense(u, activation="relu", name=f"backbone_{i}") for i, u in enumerate(units)]
        self.pruners = [
            DomainAwarePruner(u, hp["weighting"], hp["beta"], hp["epsilon"], hp["alpha_init"], hp["alpha_growth"],
                              hp["alpha_max"], hp["sparsity_regularization"], hp["sparsity_lambda"],
                              hp["sparsity_min"], hp["sparsity_max"], name=f"pruner_{i}")
            for i, u in enumerate(units)] if hp["use_pruner"] else []
        self.dropout = tf.keras.layers.Dropout(hp["dropout"]) if hp["dropout"] else None
        self.logit = tf.keras.layers.Dense(1, name="logit")

    def _hidden(self, features: Mapping[str, tf.Tensor], training: bool | None) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """The last hidden layer and every layer's weighting factors."""
        fields = self.inputs_layer(features)
        h = self.inputs_layer.vector(fields)
        e_d = self.inputs_layer.group(fields, "scenario")
        factors = []
        for i, dense in enumerate(self.backbone):
            h = dense(h)
            if self.pruners:
                condition = tf.concat([h, e_d], axis=-1) if self.hparams["pruner_uses_hidden"] else e_d
                pi = self.pruners[i](condition, training=training)
                h = h * pi
                factors.append(pi)
            if self.dropout is not None:
                h = self.dropout(h, training=training)
        return h, factors

    def weighting_factors(self, features: Mapping[str, tf.Tensor]) -> list[tf.Tensor]:
        """Each hidden layer's serving-time factors pi^l [B, units_l] (for inspection)."""
        return self._hidden(features, training=False)[1]

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        h, _ = self._hidden(features, training)
        return self.click_probability(self.logit(h), features)
