"""Keras layers shared by the multi-scenario models, one module per kind.

Every model reads the transformed feature dict (``msrec.schemas.feature_config``):

* categorical feature -> int64 ``[B]`` or ``[B, 1]`` (0 = missing), or ``[B, K]`` for a
  multi-valued one (0 = padding);
* numeric feature -> float32 ``[B]`` or ``[B, 1]``;
* ``seq_<column>`` -> int64 ``[B, L]``, 0-padded, looked up in the table of ``<column>``.

Per-scenario parameters are stacked ``[num_scenarios, ...]`` and selected by each example's
scenario index (:class:`ScenarioParameter`, :func:`scenario_matmul`), so the cost per example
does not depend on how many scenarios the platform serves.
"""
from msrec.models.layers.attention import FeedForwardAttention, TargetAttentionPooling
from msrec.models.layers.dense import MLP, GateNU, PPNet
from msrec.models.layers.embedding import BEHAVIOUR_FIELD, BehaviourFields, BehaviourInput, FeatureEmbedding
from msrec.models.layers.experts import ExpertGroup
from msrec.models.layers.ops import (fairness_coef, masked_mean, masked_softmax, mix_experts, scenario_index,
                                     sequence_mask, weighted_sum)
from msrec.models.layers.scenario import ScenarioDense, ScenarioGate, ScenarioMLP, ScenarioParameter, scenario_matmul

__all__ = ["BEHAVIOUR_FIELD", "BehaviourFields", "BehaviourInput", "ExpertGroup", "FeatureEmbedding",
           "FeedForwardAttention", "GateNU", "MLP", "PPNet", "ScenarioDense", "ScenarioGate", "ScenarioMLP",
           "ScenarioParameter", "TargetAttentionPooling", "fairness_coef", "masked_mean", "masked_softmax",
           "mix_experts", "scenario_index", "scenario_matmul", "sequence_mask", "weighted_sum"]
