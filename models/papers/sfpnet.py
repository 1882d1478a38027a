"""SFPNet (Zhang et al., SIGIR 2024): Scenario-Adaptive Fine-Grained Personalization Network.

Modules, named as in the paper (§4):

* **Scenario-Tailoring Block** (STB), stacked ``L`` times; each is
  - a **Scenario-Adaptive Module** (SAM, §4.1): *Distribution-Aware Pooling* compresses the
    behaviour sequence into its mean and standard deviation ``B^l`` (eq. 2), then *gate
    personalisation* re-weights ``x_1 ⊕ .. ⊕ x_n ⊕ B^l`` element-wise by
    ``σ(W1 LN(ReLU(W0 (x ⊕ B ⊕ s_m) + b0)) + b1)`` (eq. 3-4);
  - a **Residual-Tailoring Module** (RTM, §4.2): the *aggregation interaction* step turns the
    scenario-adapted vector into one context slice per feature, ``C^l`` (eq. 5); the
    *context-aware tailoring* step re-encodes every feature with its own weights,
    ``x_i^l = ReLU(W x_i + b) + σ(W' x_i + b') ⊗ c_i`` (eq. 6), and every behaviour with shared
    weights and the sequence's context slice, ``v_i^l = ReLU(W4 v_i + b4) + σ(W5 v_i + b5) ⊗ c_b``
    (eq. 7), so each behaviour's representation depends on the scenario.
* **Scenario-specific prediction** (§4.3): DIN target attention over the tailored behaviours
  (eq. 8), then the **Scenario-Aware DNN** (S-DNN): before each ReLU layer the input is re-weighted
  by a gate of the same form as SAM's, fed with the layer input and the scenario (eq. 10-11).

Paper defaults (§5): embedding size 40, L = 3 blocks (§5.6, the industrial setting), prediction
DNN (256, 128, 64); training with Adam at 0.001, "a decay rate of 0.9" and batch size 512, declared
as the hparams ``learning_rate``, ``lr_decay``, ``batch_size`` that the trainer reads. The paper does
not say how often the rate decays; here once per epoch (Adam's own first-moment decay is 0.9 already,
the other possible reading). Xavier initialisation: every dense kernel here is Glorot (Xavier)
uniform, Keras' default; the embedding tables keep the shared N(0, 0.05) of every model. The paper does not give the gates' and the aggregation's hidden widths; they
are hyper-parameters here. Ablation switches (§5.5): ``use_dap`` (False = w/o DAP: mean pooling
only), ``use_sam``, ``use_rtm``, ``use_sdnn`` (False = a plain DNN), ``use_stb`` (False = no block:
S-DNN over the raw embeddings).

Reading of the paper where it is ambiguous:

* a behaviour ``b_i`` is the mean of the embeddings of its item columns (item id, category,
  brand ...), "a pooled embedding that combines the clicked item embedding and the embeddings of
  its associated attribute features" (§3); the DIN query is the target item pooled the same way
  from its tailored fields;
* the scenario prior ``s_m`` is the ``scenario`` feature group (scenario id and its side
  features); the features ``x_1..x_n`` are the user, item and context features;
* eq. 5 declares ``C^l`` with two slices of width ``d`` for the sequence, but eq. 7 multiplies the
  sequence slice with a ``d``-wide vector; ``C^l`` here has one ``d``-wide slice for the sequence
  (a linear map of two slices to one is the same function class as emitting one);
* every block keeps the embedding width (``d_l = d``).

No parameter is stacked per scenario: the scenario acts through its embedding in every gate, so
the cost per example does not depend on the number of scenarios and an OOV scenario gets its OOV
embedding.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import FeatureSpec
from msrec.models.base import MultiScenarioModel
from msrec.models.layers import (ExpertGroup, FeatureEmbedding, TargetAttentionPooling, masked_mean,
                                 sequence_mask)
from msrec.models.registry import register
from msrec.models.layers.base import Layer

_FEATURE_GROUPS = ("user", "item", "context")
# Inside the square root of eq. 2: keeps the gradient finite for a constant (or empty) sequence.
_VARIANCE_EPSILON = 1e-6


class DistributionAwarePooling(Layer):
    """Eq. 2: mean and standard deviation of the valid behaviours -> [B, 2D]; mean only -> [B, D].

    The variance is computed centred (the same value as eq. 2's E[b²] - E[b]², without its
    cancellation); an empty sequence pools to zeros.
    """

    def __init__(self, use_std: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.use_std = use_std

    def call(self, behaviours: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        mean = masked_mean(behaviours, mask)
        if not self.use_std:
            return mean
        valid = tf.cast(mask, behaviours.dtype)[..., tf.newaxis]
        count = tf.maximum(tf.reduce_sum(valid, axis=1), 1.0)
        variance = tf.reduce_sum(valid * tf.square(behaviours - mean[:, tf.newaxis, :]), axis=1) / count
        return tf.concat([mean, tf.sqrt(variance + _VARIANCE_EPSILON)], axis=-1)


class GatePersonalization(Layer):
    """``x ⊗ σ(W1 LN(ReLU(W0 (x ⊕ s) + b0)) + b1)``: SAM's gate (eq. 3-4) and each S-DNN gate (eq. 10-11).

    ``call(x [B, D], scenario [B, Ds])`` -> [B, D]; the gate's weights lie in (0, 1).
    """

    def __init__(self, hidden_units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = tf.keras.layers.Dense(int(hidden_units), activation="relu", name="hidden")
        self.norm = tf.keras.layers.LayerNormalization(name="layer_norm")

    def build(self, input_shape) -> None:
        self.gate = tf.keras.layers.Dense(int(input_shape[-1]), activation="sigmoid", name="gate")
        super().build(input_shape)

    def call(self, x: tf.Tensor, scenario: tf.Tensor) -> tf.Tensor:
        return x * self.gate(self.norm(self.hidden(tf.concat([x, scenario], axis=-1))))


class ResidualTailoringModule(Layer):
    """Eq. 5-7: context per feature from the scenario-adapted vector, then residual tailoring.

    ``call(adapted [B, F], fields [B, n, d_in], behaviours [B, L, d_in])`` ->
    ``(fields [B, n, dim], behaviours [B, L, dim])``.
    """

    def __init__(self, num_features: int, dim: int, aggregation_units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_features, self.dim = int(num_features), int(dim)
        self.aggregation = tf.keras.layers.Dense(int(aggregation_units), activation="relu", name="aggregation")
        self.context = tf.keras.layers.Dense((self.num_features + 1) * self.dim, name="context")
        # Eq. 6: each feature its own W_{x_i,1}, W_{x_i,2} (one slot per feature, one einsum).
        self.feature_transform = ExpertGroup(self.num_features, (self.dim,), name="feature_transform")
        self.feature_gate = ExpertGroup(self.num_features, (self.dim,), activation="sigmoid", name="feature_gate")
        # Eq. 7: W4, W5 shared by every behaviour.
        self.behaviour_transform = tf.keras.layers.Dense(self.dim, activation="relu", name="behaviour_transform")
        self.behaviour_gate = tf.keras.layers.Dense(self.dim, activation="sigmoid", name="behaviour_gate")

    def call(self, adapted: tf.Tensor, fields: tf.Tensor, behaviours: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        c = tf.reshape(self.context(self.aggregation(adapted)), [-1, self.num_features + 1, self.dim])  # C^l
        fields = self.feature_transform(fields) + self.feature_gate(fields) * c[:, :self.num_features]
        c_b = c[:, self.num_features:]  # [B, 1, dim]: broadcast over the behaviours
        behaviours = self.behaviour_transform(behaviours) + self.behaviour_gate(behaviours) * c_b
        return fields, behaviours


class ScenarioTailoringBlock(Layer):
    """One STB: SAM (pooling + gate personalisation) then RTM; either can be switched off.

    ``call(fields [B, n, d], behaviours [B, L, d], mask [B, L], scenario [B, Ds])`` -> the
    block's ``(fields, behaviours)``.
    """

    def __init__(self, num_features: int, dim: int, gate_units: int, aggregation_units: int,
                 use_dap: bool = True, use_sam: bool = True, use_rtm: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pooling = DistributionAwarePooling(use_dap, name="distribution_aware_pooling")
        self.sam = GatePersonalization(gate_units, name="scenario_adaptive_module") if use_sam else None
        self.rtm = (ResidualTailoringModule(num_features, dim, aggregation_units, name="residual_tailoring_module")
                    if use_rtm else None)

    def call(self, fields: tf.Tensor, behaviours: tf.Tensor, mask: tf.Tensor,
             scenario: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        n, width = fields.shape[1], fields.shape[2]
        x = tf.concat([tf.reshape(fields, [-1, n * width]), self.pooling(behaviours, mask)], axis=-1)  # X^l
        if self.sam is not None:
            x = self.sam(x, scenario)  # X̂^l
        adapted_fields = tf.reshape(x[:, :n * width], [-1, n, width])
        if self.rtm is None:
            return adapted_fields, behaviours
        return self.rtm(x, adapted_fields, behaviours)


class ScenarioAwareDNN(Layer):
    """Eq. 10-11: ``H^j = ReLU(W8 (H^{j-1} ⊗ A_p^j) + b8)`` with a scenario gate ``A_p^j`` per layer.

    ``use_gate=False`` is the w/o S-DNN ablation: a plain ReLU DNN.
    """

    def __init__(self, units: Sequence[int], gate_units: int, use_gate: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gates = ([GatePersonalization(gate_units, name=f"gate_{j}") for j in range(len(units))]
                      if use_gate else [])
        self.dense = [tf.keras.layers.Dense(int(u), activation="relu", name=f"dense_{j}")
                      for j, u in enumerate(units)]

    def call(self, h: tf.Tensor, scenario: tf.Tensor) -> tf.Tensor:
        for j, dense in enumerate(self.dense):
            if self.gates:
                h = self.gates[j](h, scenario)
            h = dense(h)
        return h


@register("sfpnet")
class SFPNet(MultiScenarioModel):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        # §5, implementation details: Adam at 0.001 with a decay rate of 0.9, batch size 512. The
        # trainer reads all three (models/training: the learning rate times lr_decay after every
        # epoch; the batch size unless the run sets one). Measured against the other models' 3e-3 without
        # decay on a generated window (bench models, 3 days x 40k, 3 seeds): eval AUC 0.6499 +- 0.0022
        # vs 0.6374 +- 0.0019.
        "learning_rate": 1e-3,
        "lr_decay": 0.9,
        "batch_size": 512,
        "embedding_dim": 40,  # §5, implementation details
        "num_blocks": 3,  # L, the number of Scenario-Tailoring Blocks (§5.6)
        "gate_units": 128,  # hidden width of every gate (SAM, S-DNN)
        "aggregation_units": 256,  # hidden width of the aggregation interaction (eq. 5)
        "attention_units": (64, 32),  # DIN target attention (eq. 8)
        "dnn_units": (256, 128, 64),  # S-DNN (§5, implementation details)
        "use_dap": True,  # False: w/o DAP (mean pooling only)
        "use_sam": True,  # False: w/o SAM
        "use_rtm": True,  # False: w/o RTM
        "use_sdnn": True,  # False: w/o S-DNN (a plain DNN)
        "use_stb": True,  # False: w/o STB (no block at all)
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        if not spec.sequence_item_features:
            raise ValueError("SFPNet needs a behaviour item sequence (sequence.item_features)")
        if hp["numeric"] != "project":
            raise ValueError("SFPNet tailors every feature as a d-wide field: it needs numeric='project'")
        dim = int(hp["embedding_dim"])
        self.embedding = FeatureEmbedding(spec, dim, hp["numeric"], hp["embeddings_l2"], name="embedding")
        self.feature_names = [n for g in _FEATURE_GROUPS for n in spec.groups.get(g, ())]
        # The target item's fields, aligned with the behaviour item columns (for the DIN query).
        self.target_fields = [self.feature_names.index(spec.sequence[s]) for s in spec.sequence_item_features]
        scenario_side = [n for n in spec.groups.get("scenario", ()) if n != spec.scenario_feature]
        self.scenario_fields = [spec.scenario_feature] + scenario_side
        self.blocks = [
            ScenarioTailoringBlock(len(self.feature_names), dim, hp["gate_units"], hp["aggregation_units"],
                                   hp["use_dap"], hp["use_sam"], hp["use_rtm"], name=f"scenario_tailoring_block_{i}")
            for i in range(int(hp["num_blocks"]) if hp["use_stb"] else 0)]
        self.target_attention = TargetAttentionPooling(tuple(hp["attention_units"]), name="target_attention")
        self.sdnn = ScenarioAwareDNN(tuple(hp["dnn_units"]), hp["gate_units"], hp["use_sdnn"],
                                     name="scenario_aware_dnn")
        self.logit = tf.keras.layers.Dense(1, name="logit")

    def _tailor(self, features: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """The last block's fields [B, n, d] and behaviours [B, L, d], the scenario s_m and the mask."""
        embedded = self.embedding(features)
        fields = tf.stack([embedded[n] for n in self.feature_names], axis=1)
        behaviours = tf.add_n([embedded[s] for s in self.spec.sequence_item_features]) / len(
            self.spec.sequence_item_features)  # b_i: the behaviour's item columns, mean-pooled
        scenario = tf.concat([embedded[n] for n in self.scenario_fields], axis=-1)
        mask = sequence_mask(features, self.spec)
        for block in self.blocks:
            fields, behaviours = block(fields, behaviours, mask, scenario)
        return fields, behaviours, scenario, mask

    def tailored_behaviours(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """The behaviour representations ``v_i^L`` after the last block, [B, L, d] (for inspection)."""
        return self._tailor(features)[1]

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        fields, behaviours, scenario, mask = self._tailor(features)
        target = tf.reduce_mean(tf.gather(fields, self.target_fields, axis=1), axis=1)
        interest, _ = self.target_attention(target, behaviours, mask)  # V, eq. 8
        h = tf.concat([tf.reshape(fields, [-1, fields.shape[1] * fields.shape[2]]), interest], axis=-1)  # H^1
        return self.click_probability(self.logit(self.sdnn(h, scenario)), features)  # eq. 9
