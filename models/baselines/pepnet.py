"""PEPNet: Parameter and Embedding Personalized Network (Chang et al., KDD 2023), single task.

Modules, named as in the paper:

* **Gate Neural Unit (Gate NU)**: delta = gamma * sigmoid(W2 relu(W1 x + b1) + b2), gamma = 2, so
  an untrained gate scales by about 1 (:class:`~msrec.models.layers.GateNU`).
* **EPNet** (embedding personalisation): delta_domain = GateNU(E(F_d) (+) sg(E)) with one factor
  per feature field; O_ep = delta_domain (x) E. F_d are the domain-side features, here the spec's
  scenario group (scenario id and its profile); E is every field of the general input; sg is the
  stop-gradient, so the gate does not train the general embeddings.
* **PPNet** (parameter personalisation): each DNN layer's input is scaled by its own Gate NU over
  the persona prior and the stop-gradient EPNet output, delta^l = GateNU^l(O_prior (+) sg(O_ep)),
  H^{l+1} = relu((delta^l (x) H^l) W^l + b^l). O_prior are the embeddings of ``prior_features``
  (the paper's user / item / author ids; here the user and item ids).

The paper serves several tasks with one PPNet tower each; CTR is the only task here, so there is
one tower. The fields of E are the inputs every baseline reads
(:class:`~msrec.models.layers.BehaviourFields`): every scalar feature and the target-attention-pooled
behaviour sequence. The scenario reaches the model only through F_d (and its embedding in E): PEPNet
has no per-scenario parameter table, so an unseen scenario is served through its profile features.
Ablation switches: ``use_epnet``, ``use_ppnet`` (a plain DNN without it).
"""
from __future__ import annotations

from typing import Any, Mapping

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import FeatureSpec
from msrec.models.base import MultiScenarioModel
from msrec.models.layers import MLP, BehaviourFields, GateNU, PPNet
from msrec.models.registry import register
from msrec.models.layers.base import Layer


class EPNet(Layer):
    """delta_domain = GateNU(E(F_d) (+) sg(E)), one factor per field; O_ep = delta_domain (x) E."""

    def __init__(self, gate_units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gate_units = int(gate_units)

    def build(self, input_shape) -> None:
        self.gate = GateNU(len(input_shape[1]), self.gate_units, name="gate_nu")
        super().build(input_shape)

    def call(self, inputs: tuple[tf.Tensor, list[tf.Tensor]]) -> tuple[list[tf.Tensor], tf.Tensor]:
        """(E(F_d) [B, Dd], the fields of E) -> (the scaled fields, delta_domain [B, num_fields])."""
        domain, fields = inputs
        delta = self.gate(tf.concat([domain, tf.stop_gradient(tf.concat(fields, axis=-1))], axis=-1))
        return [delta[:, k:k + 1] * f for k, f in enumerate(fields)], delta


@register("pepnet")
class PEPNet(MultiScenarioModel):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        "hidden_units": (256, 128, 64),
        "gate_units": 64,  # hidden width of every Gate NU (the paper leaves it open)
        "prior_features": ("user_id", "item_id"),
        "use_epnet": True,
        "use_ppnet": True,
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        if not spec.groups.get("scenario"):
            raise ValueError("PEPNet's EPNet needs the scenario (domain) feature group")
        missing = [n for n in hp["prior_features"] if n not in spec.cardinality]
        if hp["use_ppnet"] and missing:
            raise ValueError(f"prior_features {missing} are not categorical features of the spec")
        self.inputs_layer = BehaviourFields.from_hparams(spec, hp)
        self.epnet = EPNet(hp["gate_units"], name="epnet") if hp["use_epnet"] else None
        units = tuple(hp["hidden_units"])
        self.ppnet = PPNet(units, hp["gate_units"], name="ppnet") if hp["use_ppnet"] else None
        self.dnn = None if hp["use_ppnet"] else MLP(units, name="dnn")
        self.logit = tf.keras.layers.Dense(1, name="logit")

    def _epnet(self, fields: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor | None]:
        """O_ep (the general input, personalised when EPNet is on) and delta_domain."""
        general = list(fields.values())
        if self.epnet is None:
            return tf.concat(general, axis=-1), None
        scaled, delta = self.epnet((self.inputs_layer.group(fields, "scenario"), general))
        return tf.concat(scaled, axis=-1), delta

    def epnet_gate(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """delta_domain [B, num_fields], EPNet's per-field scale of each example (for inspection)."""
        if self.epnet is None:
            raise ValueError("this PEPNet was built with use_epnet=False")
        return self._epnet(self.inputs_layer(features))[1]

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        fields = self.inputs_layer(features)
        o_ep, _ = self._epnet(fields)
        if self.ppnet is not None:
            prior = tf.concat([fields[n] for n in self.hparams["prior_features"]], axis=-1)
            h = self.ppnet((o_ep, prior))
        else:
            h = self.dnn(o_ep, training=training)
        return self.click_probability(self.logit(h), features)
