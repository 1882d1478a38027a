"""MMoE (Ma et al., KDD 2018) adapted to scenarios as tasks: shared experts, and per scenario one
softmax gate over them and one tower.

Gates and towers are stacked over scenarios and gathered by the scenario index, so an example only
pays for its own gate and tower. Input: :class:`~msrec.models.layers.BehaviourInput`, the same for
every baseline (target attention over the behaviour sequence).
"""
from __future__ import annotations

from typing import Any, Mapping

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import FeatureSpec
from msrec.models.base import MultiScenarioModel
from msrec.models.layers import (BehaviourInput, ExpertGroup, ScenarioDense, ScenarioGate, ScenarioMLP,
                                 mix_experts, scenario_index)
from msrec.models.registry import register


@register("mmoe")
class MMoE(MultiScenarioModel):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        "num_experts": 8,
        "expert_units": (128, 64),
        "tower_units": (64,),
        "batch_norm": False,
        "dropout": 0.0,
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        self.inputs_layer = BehaviourInput.from_hparams(spec, hp)
        self.experts = ExpertGroup(hp["num_experts"], tuple(hp["expert_units"]), batch_norm=hp["batch_norm"],
                                   dropout=hp["dropout"], name="experts")
        self.gate = ScenarioGate(hp["num_experts"], spec.num_scenarios, name="scenario_gate")
        self.tower = ScenarioMLP(tuple(hp["tower_units"]), spec.num_scenarios, dropout=hp["dropout"],
                                 name="scenario_tower")
        self.logit = ScenarioDense(1, spec.num_scenarios, name="scenario_logit")

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        scenario = scenario_index(features, self.spec)
        x = self.inputs_layer(features)
        mixed = mix_experts(self.gate(x, scenario), self.experts(x, training=training))
        x = self.tower(mixed, scenario, training=training)
        return self.click_probability(self.logit(x, scenario), features)
