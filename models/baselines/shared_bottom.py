"""Shared-Bottom (hard parameter sharing, Caruana 1997): a bottom MLP shared by all scenarios and a
tower per scenario.

The towers are stacked over scenarios and gathered by the scenario index
(:class:`~msrec.models.layers.ScenarioMLP`), so an example only pays for its own tower. Input:
:class:`~msrec.models.layers.BehaviourInput`, the same for every baseline (target attention over
the behaviour sequence).
"""
from __future__ import annotations

from typing import Any, Mapping

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import FeatureSpec
from msrec.models.base import MultiScenarioModel
from msrec.models.layers import MLP, BehaviourInput, ScenarioDense, ScenarioMLP, scenario_index
from msrec.models.registry import register


@register("shared_bottom")
class SharedBottom(MultiScenarioModel):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        "bottom_units": (256, 128),
        "tower_units": (64,),
        "batch_norm": False,
        "dropout": 0.0,
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        self.inputs_layer = BehaviourInput.from_hparams(spec, hp)
        self.bottom = MLP(tuple(hp["bottom_units"]), batch_norm=hp["batch_norm"], dropout=hp["dropout"],
                          name="shared_bottom")
        self.tower = ScenarioMLP(tuple(hp["tower_units"]), spec.num_scenarios, dropout=hp["dropout"],
                                 name="scenario_tower")
        self.logit = ScenarioDense(1, spec.num_scenarios, name="scenario_logit")

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        scenario = scenario_index(features, self.spec)
        x = self.bottom(self.inputs_layer(features), training=training)
        x = self.tower(x, scenario, training=training)
        return self.click_probability(self.logit(x, scenario), features)
