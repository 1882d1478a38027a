"""The model contract every registered model follows.

* ``call(features, training)``: ``features`` is the transformed feature dict (see
  :mod:`msrec.models.layers`), optionally with ``fairness_coef`` float32 [B] (training only);
  returns the click probability float32 [B, 1], ``click_probability(logit, features)``. Auxiliary
  losses go through ``add_loss``.
* ``fc_sample_weight``: True when the trainer must weight the BCE by ``fairness_coef``.
* Training (``fit``/``evaluate``): the loss and metrics of the tfrs Ranking ``task``, BCE weighted
  by the sample weight (with the FC as weight, SAR-Net's Bias Adapting Loss) plus the model's
  auxiliary losses, and the AUC; compile with an optimizer only.
* ``hparams``: the merged hyper-parameters the model was built with (read-only).
"""
from __future__ import annotations

import types
from typing import Any, Mapping

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from msrec.schemas.feature_config import FAIRNESS_COEF, TIME_GAP_FEATURE, FeatureSpec
from msrec.models.layers import scenario_index
from msrec.models.layers.base import NoAutoGraph


class MultiScenarioModel(NoAutoGraph, tf.keras.Model):
    """Base class: keeps the spec and hyper-parameters; subclasses implement ``call``."""

    fc_sample_weight: bool = False

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        # A mapping proxy, not a dict: Keras would wrap a dict attribute into a tracked
        # structure that tf.saved_model then tries (and fails) to serialise.
        self._hparams = types.MappingProxyType(dict(hparams))
        self._prior_logit = prior_logits(self._hparams.get("prior_ctr", ()), spec.num_scenarios)
        # Per-example losses, averaged in _objective: under a tf.distribute strategy (several training
        # workers) each replica's loss must be its share of the global batch's mean.
        per_example_bce = tf.keras.losses.BinaryCrossentropy(reduction=tf.keras.losses.Reduction.NONE)
        self.task = tfrs.tasks.Ranking(loss=per_example_bce, metrics=[tf.keras.metrics.AUC(name="auc")])
        self._loss_tracker = tf.keras.metrics.Mean(name="loss")

    def _objective(self, data: Any, training: bool) -> tf.Tensor:
        """The task's loss on one (features, label[, sample_weight]) batch plus the auxiliary
        losses the forward pass added; updates the metrics."""
        features, labels, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        predictions = self(features, training=training)
        # [B, 1] like the predictions: a [B] label would make the BCE average over the batch
        # before the sample weights are applied
        labels = tf.reshape(tf.cast(labels, predictions.dtype), [-1, 1])
        per_example = self.task(labels=labels, predictions=predictions, sample_weight=sample_weight,
                                training=training)
        # the weighted BCE summed over the replica's examples / the global batch size (= the batch's
        # mean without a strategy); the auxiliary losses / the number of replicas
        loss = tf.nn.compute_average_loss(per_example)
        if self.losses:
            loss += tf.nn.scale_regularization_loss(tf.add_n(self.losses))
        # the metric reports the loss of the whole batch, as without a strategy
        self._loss_tracker.update_state(loss * tf.distribute.get_strategy().num_replicas_in_sync)
        return loss

    # Keras traces the steps with AutoGraph, which would rewrite everything they call (the task, the
    # metrics, the optimizer: ~20 s of every training run); nothing in them branches on a tensor
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = self._objective(data, training=True)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return {m.name: m.result() for m in self.metrics}

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        self._objective(data, training=False)
        return {m.name: m.result() for m in self.metrics}

    def click_probability(self, logit: tf.Tensor, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """sigmoid(logit + log-odds of the example's scenario click rate in the training data).

        The offset is a constant, not a weight: the model starts from each scenario's base rate
        instead of 0.5 (a 5% click rate is a logit of -2.9, hundreds of steps away from 0 at the
        paper's learning rate), and its parameters learn only the difference from it."""
        if self._prior_logit is None:
            return tf.sigmoid(logit)
        return tf.sigmoid(logit + tf.gather(self._prior_logit, scenario_index(features, self.spec))[:, tf.newaxis])

    @property
    def hparams(self) -> Mapping[str, Any]:
        return self._hparams

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec.to_dict(),
                "hparams": {k: list(v) if isinstance(v, tuple) else v for k, v in self._hparams.items()}}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], custom_objects=None) -> "MultiScenarioModel":
        hparams = {k: tuple(v) if isinstance(v, list) else v for k, v in config["hparams"].items()}
        return cls(FeatureSpec.from_dict(config["spec"]), hparams, name=config["name"])


def prior_logits(prior_ctr: Any, num_scenarios: int) -> tf.Tensor | None:
    """Log-odds of the per-scenario click rates (index = scenario index), None when there are none."""
    if not prior_ctr:
        return None
    rates = np.asarray(prior_ctr, np.float64)
    if rates.shape != (num_scenarios,) or not np.all((rates > 0) & (rates < 1)):
        raise ValueError(f"hparam prior_ctr must hold {num_scenarios} click rates in (0, 1), one per scenario "
                         f"index; got {len(rates)} values in [{rates.min():.3g}, {rates.max():.3g}]")
    return tf.constant(np.log(rates / (1 - rates)), tf.float32)


def feature_signature(spec: FeatureSpec, fairness: bool = False) -> dict[str, tf.TensorSpec]:
    """TensorSpecs of the transformed inputs (batch dimension left open) for tf.function exports."""
    sig = {n: tf.TensorSpec([None] + ([spec.multi_valued[n]] if n in spec.multi_valued else []), tf.int64, name=n)
           for n in spec.categorical}
    sig.update({n: tf.TensorSpec([None], tf.float32, name=n) for n in spec.numeric})
    sig.update({n: tf.TensorSpec([None, spec.sequence_length], tf.int64, name=n) for n in spec.sequence})
    if spec.time_gap:
        sig[TIME_GAP_FEATURE] = tf.TensorSpec([None, spec.sequence_length], tf.int64, name=TIME_GAP_FEATURE)
    if fairness:
        sig[FAIRNESS_COEF] = tf.TensorSpec([None], tf.float32, name=FAIRNESS_COEF)
    return sig


def example_inputs(spec: FeatureSpec, batch_size: int = 2, fairness: bool = False) -> dict[str, tf.Tensor]:
    """An all-padding / all-zero input batch, e.g. to build a model's variables before load_weights.

    Pass ``fairness=True`` to build the training-only parts too (SAR-Net's bias nets).
    """
    return {name: tf.zeros([batch_size] + [d or 1 for d in s.shape[1:]], s.dtype)
            for name, s in feature_signature(spec, fairness).items()}
