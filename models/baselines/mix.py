"""Mix: one shared DNN over the data of every scenario (the paper's "Mix-Scenario" baseline).

The scenario id is just another feature: no parameter is specific to a scenario. Like every
baseline it reads :class:`~msrec.models.layers.BehaviourInput` (all feature groups plus the
DIN-style target-attention pooling of the behaviour sequence), so that the comparison with the
multi-scenario models isolates their multi-scenario parts.
"""
from __future__ import annotations

from typing import Any, Mapping

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import FeatureSpec
from msrec.models.base import MultiScenarioModel
from msrec.models.layers import MLP, BehaviourInput
from msrec.models.registry import register


@register("mix")
class Mix(MultiScenarioModel):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        "hidden_units": (256, 128, 64),
        "batch_norm": False,
        "dropout": 0.0,
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        self.inputs_layer = BehaviourInput.from_hparams(spec, hp)
        self.dnn = MLP(tuple(hp["hidden_units"]), batch_norm=hp["batch_norm"], dropout=hp["dropout"], name="dnn")
        self.logit = tf.keras.layers.Dense(1, name="logit")

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        x = self.dnn(self.inputs_layer(features), training=training)
        return self.click_probability(self.logit(x), features)
