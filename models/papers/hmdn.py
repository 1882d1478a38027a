"""HMDN: Hierarchical Multi-Distribution Network (Lou et al. 2024) on its two backbones.

HMDN refines the mixed multi-distribution features (scenario x population ...: the spec's
``distribution_features``) into a hierarchical representation s_D with multi-level residual
quantization (the HMDRR module, :mod:`msrec.models.papers.hmdn_refiner`), and feeds s_D where a single
multi-distribution backbone would feed the distribution features x_b:

* ``hmdn_mmoe`` (§2.4, eq. 6-8): MMoE with the CTR as its one task. ``num_experts`` (3) experts over
  the whole input x, mixed by a softmax gate over s_D: y = sum_i G(s_D)_i E_i(x).
* ``hmdn_pepnet`` (§2.4, eq. 9-10): PEPNet. EPNet scales the whole input x element-wise by
  delta_b = GateNU(s_D); PPNet (PEPNet's parameter personalisation, ``use_ppnet``) scales the input of
  every DNN layer by a Gate NU over the persona prior [e_user_id || e_item_id || sg(EPNet output)].

x is the input every baseline reads (:class:`~msrec.models.layers.BehaviourFields`: all feature groups
and the target-attention-pooled behaviour sequence), so a comparison with ``mmoe`` / ``pepnet`` isolates
HMDN. The objective (eq. 11) is the BCE plus ``alpha`` * L_rq, added with ``add_loss`` during training.

Defaults are the paper's (§3.1.3): MLPs 128-64-32, 3 experts, D = 6, beta = 0.25, alpha = 1,
implicit extraction. The codebook size K is not given in the paper; 64 is our choice. Ablation
switches: ``refiner`` = "implicit" | "explicit" (Table 2) | "none" (the vanilla backbone, gated on
x_b), ``explicit_mode`` = "hierarchical" | "independent" (how the explicit levels relate, see
:mod:`msrec.models.papers.hmdn_refiner`), ``depth`` (Fig. 2), ``use_ppnet``.

HMDN has no per-scenario parameter: the scenario reaches the gates through s_D, whose codes a new
combination of distribution values (an OOV scenario included) shares with the known ones.
"""
from __future__ import annotations

from typing import Any, Mapping

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import FeatureSpec
from msrec.models.base import MultiScenarioModel
from msrec.models.papers.hmdn_refiner import HierarchicalRepresentationRefiner, distribution_spec
from msrec.models.layers import MLP, BehaviourFields, ExpertGroup, FeatureEmbedding, GateNU, PPNet, mix_experts
from msrec.models.registry import register
from msrec.models.layers.base import Layer

REFINERS = ("implicit", "explicit", "none")
PERSONA = ("user_id", "item_id")  # PEPNet's persona prior: the user and item ids

_HMDN_HPARAMS: Mapping[str, Any] = {
    "attention_units": (64, 32),
    "refiner": "implicit",
    "explicit_mode": "hierarchical",  # explicit extraction: levels chained by their residuals, or independent
    "depth": 6,
    "codebook_size": 64,
    "beta": 0.25,
    "alpha": 1.0,
}


class _HMDN(MultiScenarioModel):
    """The input x and the gate input (s_D, or x_b without the refiner) both backbones share."""

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        if hp["refiner"] not in REFINERS:
            raise ValueError(f"refiner must be one of {REFINERS}, got {hp['refiner']!r}")
        self.inputs_layer = BehaviourFields.from_hparams(spec, hp)
        if hp["refiner"] == "none":
            self.refiner = None
            self.distribution_embedding = FeatureEmbedding(distribution_spec(spec), hp["embedding_dim"],
                                                           hp["numeric"], hp["embeddings_l2"],
                                                           name="distribution_embedding")
        else:
            self.refiner = HierarchicalRepresentationRefiner(
                spec, hp["refiner"], hp["depth"], hp["codebook_size"], hp["beta"], hp["embedding_dim"],
                hp["numeric"], hp["embeddings_l2"], hp["explicit_mode"], name="hmdrr")

    def gate_input(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        """s_D (eq. 4), or x_b for the vanilla backbone; adds alpha * L_rq (eq. 11) when training."""
        if self.refiner is None:
            embedded = self.distribution_embedding(features)
            return tf.concat([embedded[n] for n in self.spec.distribution_features], axis=-1)
        refined = self.refiner(features, training=training)
        if training:
            self.add_loss(self.hparams["alpha"] * refined.rq_loss)
        return refined.representation


@register("hmdn_mmoe")
class HMDNMMoE(_HMDN):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        **_HMDN_HPARAMS,
        "num_experts": 3,
        "expert_units": (128, 64, 32),
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        self.experts = ExpertGroup(hp["num_experts"], tuple(hp["expert_units"]), name="experts")
        self.gate = tf.keras.layers.Dense(hp["num_experts"], activation="softmax", name="gate")  # eq. 7
        self.logit = tf.keras.layers.Dense(1, name="logit")

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        x = self.inputs_layer.vector(self.inputs_layer(features))
        gate = self.gate(self.gate_input(features, training))
        logit = self.logit(mix_experts(gate, self.experts(x, training=training)))  # eq. 8
        return self.click_probability(logit, features)


class EPNet(Layer):
    """Eq. 9-10: x' = delta_b * x with delta_b = GateNU(condition), one factor per input column."""

    def __init__(self, gate_units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gate_units = int(gate_units)

    def build(self, input_shape) -> None:
        self.gate = GateNU(int(input_shape[1][-1]), self.gate_units, name="gate_nu")
        super().build(input_shape)

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        condition, x = inputs
        return self.gate(condition) * x


@register("hmdn_pepnet")
class HMDNPEPNet(_HMDN):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        **_HMDN_HPARAMS,
        "hidden_units": (128, 64, 32),
        "gate_units": 64,  # hidden width of every Gate NU (PEPNet leaves it open)
        "use_ppnet": True,
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        self.epnet = EPNet(hp["gate_units"], name="epnet")
        units = tuple(hp["hidden_units"])
        self.ppnet = PPNet(units, hp["gate_units"], name="ppnet") if hp["use_ppnet"] else None
        self.dnn = None if hp["use_ppnet"] else MLP(units, name="dnn")
        self.logit = tf.keras.layers.Dense(1, name="logit")

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        fields = self.inputs_layer(features)
        x = self.epnet((self.gate_input(features, training), self.inputs_layer.vector(fields)))
        if self.ppnet is not None:
            h = self.ppnet((x, tf.concat([fields[n] for n in PERSONA], axis=-1)))
        else:
            h = self.dnn(x, training=training)
        return self.click_probability(self.logit(h), features)
