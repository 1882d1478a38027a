"""PLE: Progressive Layered Extraction (Tang et al., RecSys 2020), and CGC, its single-level form,
adapted to scenarios as tasks (as SAR-Net, HierRec, OptMSM and SFPNet compare against them).

Modules, named as in the paper:

* **Customized Gate Control (CGC)**: each scenario k owns ``num_specific_experts`` experts
  E_k and all scenarios share ``num_shared_experts`` experts E_s. Scenario k's gate is a
  single-layer softmax over the selector input, w^k(x) = softmax(W^k_g x), and weighs
  S^k(x) = [E_k,1..E_k,m_k, E_s,1..E_s,m_s]: g^k(x) = w^k(x) S^k(x). A tower t^k per scenario
  turns g^k into the click logit.
* **Extraction Network**: PLE stacks ``num_levels`` extraction networks. At level j the
  experts of scenario k read g^{k,j-1} (the scenario-k output of the level below) and the shared
  experts read g^{s,j-1}, the output of the level's **shared gate**; the shared gate exists at
  every level but the last. The first level reads the input vector x.

Adaptation to many scenarios. In multi-task PLE every example passes through every task, and the
shared gate weighs the experts of *all* tasks. Here an example belongs to one scenario, and its
scenario-specific experts, gates and towers are gathered by its scenario index so that its cost
does not depend on the number of scenarios; its shared gate therefore weighs the experts it
computes, its own scenario's and the shared ones (the shared gate's parameters are shared by all
scenarios, as in the paper). The experts of other scenarios are never evaluated on it.

Input: :class:`~msrec.models.layers.BehaviourInput`, the same for every baseline (all feature
groups plus target attention over the behaviour sequence). Ablation switches: ``num_levels`` (1 =
CGC), ``num_specific_experts`` = 0 (shared experts only: MMoE with scenario gates) or
``num_shared_experts`` = 0 (scenario experts only: no sharing above the input).
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
from msrec.models.layers.base import Layer


class ExtractionNetwork(Layer):
    """One PLE level: scenario-specific and shared expert groups, the scenario gate and (except at
    the last level) the shared gate.

    ``call(x_specific, x_shared, scenario)`` -> ``(g_specific [B, D], g_shared [B, D] or None)``.
    """

    def __init__(self, num_specific: int, num_shared: int, units: tuple[int, ...], num_scenarios: int,
                 shared_gate: bool, batch_norm: bool = False, dropout: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_specific + num_shared < 1:
            raise ValueError("an extraction network needs at least one expert")
        self.specific_experts = (ExpertGroup(num_specific, units, num_scenarios=num_scenarios,
                                             batch_norm=batch_norm, dropout=dropout, name="specific_experts")
                                 if num_specific else None)
        self.shared_experts = (ExpertGroup(num_shared, units, batch_norm=batch_norm, dropout=dropout,
                                           name="shared_experts") if num_shared else None)
        self.scenario_gate = ScenarioGate(num_specific + num_shared, num_scenarios, name="scenario_gate")
        self.shared_gate = (tf.keras.layers.Dense(num_specific + num_shared, activation="softmax",
                                                  name="shared_gate") if shared_gate else None)

    def call(self, x_specific: tf.Tensor, x_shared: tf.Tensor, scenario: tf.Tensor,
             training: bool | None = None) -> tuple[tf.Tensor, tf.Tensor | None]:
        outputs = []
        if self.specific_experts is not None:
            outputs.append(self.specific_experts(x_specific, scenario, training=training))
        if self.shared_experts is not None:
            outputs.append(self.shared_experts(x_shared, training=training))
        experts = tf.concat(outputs, axis=1)  # S^k(x): [B, m_k + m_s, D]
        g_specific = mix_experts(self.scenario_gate(x_specific, scenario), experts)
        g_shared = mix_experts(self.shared_gate(x_shared), experts) if self.shared_gate is not None else None
        return g_specific, g_shared


@register("ple")
class PLE(MultiScenarioModel):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        "num_levels": 2,
        "num_specific_experts": 2,
        "num_shared_experts": 2,
        "expert_units": (128, 64),  # the MLP of every expert, at every level
        "tower_units": (64,),
        "batch_norm": False,
        "dropout": 0.0,
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        levels = int(hp["num_levels"])
        if levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {levels}")
        self.inputs_layer = BehaviourInput.from_hparams(spec, hp)
        self.extraction_networks = [
            ExtractionNetwork(hp["num_specific_experts"], hp["num_shared_experts"], tuple(hp["expert_units"]),
                              spec.num_scenarios, shared_gate=j < levels - 1, batch_norm=hp["batch_norm"],
                              dropout=hp["dropout"], name=f"extraction_network_{j}")
            for j in range(levels)]
        self.tower = ScenarioMLP(tuple(hp["tower_units"]), spec.num_scenarios, dropout=hp["dropout"],
                                 name="scenario_tower")
        self.logit = ScenarioDense(1, spec.num_scenarios, name="scenario_logit")

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        scenario = scenario_index(features, self.spec)
        g_specific = g_shared = self.inputs_layer(features)
        for level in self.extraction_networks:
            g_specific, g_shared = level(g_specific, g_shared, scenario, training=training)
        x = self.tower(g_specific, scenario, training=training)
        return self.click_probability(self.logit(x, scenario), features)


@register("cgc")
class CGC(PLE):
    """CGC = PLE with one extraction network (no shared gate)."""

    DEFAULT_HPARAMS: Mapping[str, Any] = {**PLE.DEFAULT_HPARAMS, "num_levels": 1}
