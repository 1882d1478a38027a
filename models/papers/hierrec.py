"""HierRec (Gao et al., CIKM 2024): scenario-aware hierarchical dynamic network.

Modules, named as in the paper (§2):

* **Scenario-Oriented Module** (virtual, eq. 1-2): ``L`` linear layers whose weights and biases
  are not parameters but slices of a *scenario condition* vector ``SC``; L = 2 with a bottleneck
  (fewer units in the first layer, §3.1.3).
* **Explicit Scenario-Aware Module** (eq. 3-5): the concatenated common-feature embeddings go
  through a shared FC layer into the global representation ``O^global``; the scenario embedding
  ``e_s`` goes through FC layers (Linear -> BN -> Dropout -> activation, eq. 5) into
  ``SC_explicit``, which instantiates the explicit scenario-oriented layer over ``O^global``
  -> ``O^explicit``.
* **Implicit Scenario-Aware Module** (eq. 6-8): a G-head scenario-aware attention, a softmax over
  the common features per head computed from ``e_s``, re-weights the common-feature embeddings
  into G implicit scenario representations ``P[g]``; one shared FC layer (eq. 8) turns each into
  ``SC_implicit[g]``, which instantiates the g-th implicit scenario-oriented layer over
  ``O^explicit`` -> ``O^implicit_g``.
* **Output layer** (eq. 9): FC layers over the concatenated ``O^implicit_1..G``, then a sigmoid.

Paper defaults: embedding size 16, G = 4 heads (Table 6), L = 2. FC sizes follow the authors'
released configuration: global FC (64,), scenario-oriented layers (16, 64), output FC (64,),
dropout 0.2. Ablation switches (§3.3): ``use_multi_head`` (False = −MI, one head),
``use_implicit`` (False = −I), ``use_explicit`` (False = −E).

Adaptation to msrec's inputs (the paper's datasets have no behaviour sequence): the explicit
scenario is the ``scenario`` feature group (scenario id and its side features, e.g. type and
theme); the common features are the user, item and context features plus the behaviour sequence,
pooled by DIN target attention like every baseline and split back into one field per sequence
column so that the implicit attention weighs each of them. The generated weights depend only on the
scenario embedding and the features, so the cost per example does not grow with the number of
scenarios, and an unseen (OOV) scenario still gets finite weights from its OOV embedding.

Initialisation (the paper gives none): the bias of the last FC of each condition network holds a
Glorot-initialised set of layer weights, so the generated layers start as ordinary random layers
that the scenario and the implicit patterns modulate (a zero start is a saddle: the gradient of
each generated matrix is proportional to the other). With eq. 8's single FC over the small
re-weighted embeddings, the implicit layers thus start close to one shared layer and become
example-specific only as far as training finds it useful.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import FeatureSpec
from msrec.models.base import MultiScenarioModel
from msrec.models.layers import MLP, FeatureEmbedding, TargetAttentionPooling, sequence_mask
from msrec.models.registry import register
from msrec.models.layers.base import Layer

_COMMON_GROUPS = ("user", "item", "context")


class _BaseLayerInitializer(tf.keras.initializers.Initializer):
    """A condition vector that instantiates Glorot-uniform weights and zero biases (module docstring)."""

    def __init__(self, layer_shapes: Sequence[tuple[int, int]]) -> None:
        self.layer_shapes = [(int(i), int(o)) for i, o in layer_shapes]

    def __call__(self, shape, dtype=None, **kwargs) -> tf.Tensor:
        dtype = dtype or tf.float32
        parts = []
        for fan_in, fan_out in self.layer_shapes:
            limit = (6.0 / (fan_in + fan_out)) ** 0.5
            parts.append(tf.random.uniform([fan_in * fan_out], -limit, limit, dtype=dtype))
            parts.append(tf.zeros([fan_out], dtype))
        return tf.reshape(tf.concat(parts, axis=0), shape)

    def get_config(self) -> dict[str, Any]:
        return {"layer_shapes": self.layer_shapes}


class ScenarioOrientedModule(Layer):
    """Eq. 1-2: ``h_{l+1} = W_l h_l + b_l`` with ``W_l, b_l = Reshape(SC)[l]``; no weights of its own.

    ``call(h [..., input_dim], condition [..., condition_size])`` -> ``[..., units[-1]]``; the
    leading dimensions of ``h`` and ``condition`` must agree (one generated layer per row).
    """

    def __init__(self, input_dim: int, units: Sequence[int], **kwargs) -> None:
        super().__init__(**kwargs)
        if not units:
            raise ValueError("a scenario-oriented module needs at least one layer")
        dims = [int(input_dim)] + [int(u) for u in units]
        self.layer_shapes = list(zip(dims[:-1], dims[1:]))

    @property
    def condition_size(self) -> int:
        """Length of the scenario condition vector: every layer's weights and bias."""
        return sum(fan_in * fan_out + fan_out for fan_in, fan_out in self.layer_shapes)

    def call(self, h: tf.Tensor, condition: tf.Tensor) -> tf.Tensor:
        leading = tf.shape(condition)[:-1]
        offset = 0
        for fan_in, fan_out in self.layer_shapes:
            w = tf.reshape(condition[..., offset:offset + fan_in * fan_out],
                           tf.concat([leading, [fan_in, fan_out]], axis=0))
            offset += fan_in * fan_out
            b = condition[..., offset:offset + fan_out]
            offset += fan_out
            h = tf.einsum("...i,...io->...o", h, w) + b
        return h


class ScenarioCondition(Layer):
    """FC layers that turn a representation into the scenario condition ``SC`` of ``module``.

    Hidden layers are Linear -> BN -> Dropout -> ReLU (eq. 5); a final linear layer emits the
    ``module.condition_size`` numbers the module reshapes into its weights. With no hidden layer
    it is the single shared FC of eq. 8. Works on ``[B, D]`` and on ``[B, G, D]`` (shared over
    the G heads).
    """

    def __init__(self, module: ScenarioOrientedModule, hidden_units: Sequence[int], dropout: float,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = MLP(hidden_units, batch_norm=True, dropout=dropout, name="fc") if hidden_units else None
        self.projection = tf.keras.layers.Dense(module.condition_size,
                                                bias_initializer=_BaseLayerInitializer(module.layer_shapes),
                                                name="projection")

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if self.hidden is not None:
            x = self.hidden(x, training=training)
        return self.projection(x)


class ScenarioAwareAttention(Layer):
    """Eq. 6-7: G softmax distributions over the I common features, computed from ``e_s``.

    ``call(e_s [B, Ds], common [B, sum(widths)])`` -> ``(P [B, G, sum(widths)], weights [B, G, I])``;
    each field of the common vector is scaled by its head's weight.
    """

    def __init__(self, num_heads: int, field_widths: Sequence[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.field_widths = [int(w) for w in field_widths]
        self.fc = tf.keras.layers.Dense(self.num_heads * len(self.field_widths), name="fc")

    def call(self, e_s: tf.Tensor, common: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        weight_ori = tf.reshape(self.fc(e_s), [-1, self.num_heads, len(self.field_widths)])
        weight_norm = tf.nn.softmax(weight_ori, axis=-1)
        per_unit = tf.repeat(weight_norm, self.field_widths, axis=-1)
        return per_unit * common[:, tf.newaxis, :], weight_norm


@register("hierrec")
class HierRec(MultiScenarioModel):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        "attention_units": (64, 32),  # DIN pooling of the behaviour sequence into common features
        "global_units": (64,),  # the shared FC giving O^global
        "explicit_condition_units": (64,),  # hidden FC layers of eq. 4-5 before SC_explicit
        "implicit_condition_units": (),  # hidden FC layers before SC_implicit; () = eq. 8's single FC
        "explicit_units": (16, 64),  # explicit scenario-oriented layer: L = 2, bottleneck first
        "implicit_units": (16, 64),  # each implicit scenario-oriented layer
        "num_heads": 4,  # G (Table 6)
        "output_units": (64,),  # FC of the output layer (eq. 9)
        "dropout": 0.2,
        "use_multi_head": True,  # False: the −MI ablation (one head)
        "use_implicit": True,  # False: the −I ablation
        "use_explicit": True,  # False: the −E ablation
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        dim, dropout = int(hp["embedding_dim"]), float(hp["dropout"])
        self.embedding = FeatureEmbedding(spec, dim, hp["numeric"], hp["embeddings_l2"], name="embedding")
        side = [n for n in spec.groups.get("scenario", ()) if n != spec.scenario_feature]
        self.scenario_fields = [spec.scenario_feature] + side  # e_s: the id and its side features
        self.common_fields = [n for g in _COMMON_GROUPS for n in spec.groups.get(g, ())]
        numeric_width = dim if hp["numeric"] == "project" else 1
        widths = [numeric_width if n in spec.numeric else dim for n in self.common_fields]
        self.behaviour_pooling = None
        if spec.sequence_item_features:
            self.behaviour_pooling = TargetAttentionPooling(tuple(hp["attention_units"]), name="behaviour_pooling")
            widths += [dim] * len(spec.sequence_item_features)
        if not widths:
            raise ValueError("HierRec needs at least one common (user, item, context or sequence) feature")

        self.global_fc = MLP(tuple(hp["global_units"]), batch_norm=True, dropout=dropout, name="global_fc")
        width = int(hp["global_units"][-1])
        self.explicit_layer = self.explicit_condition = None
        if hp["use_explicit"]:
            self.explicit_layer = ScenarioOrientedModule(width, tuple(hp["explicit_units"]),
                                                         name="explicit_scenario_oriented_layer")
            self.explicit_condition = ScenarioCondition(self.explicit_layer, tuple(hp["explicit_condition_units"]),
                                                        dropout, name="explicit_scenario_condition")
            width = int(hp["explicit_units"][-1])
        self.num_heads = int(hp["num_heads"]) if hp["use_multi_head"] else 1
        self.implicit_layer = self.implicit_condition = self.implicit_attention = None
        if hp["use_implicit"]:
            self.implicit_attention = ScenarioAwareAttention(self.num_heads, widths,
                                                             name="scenario_aware_attention")
            self.implicit_layer = ScenarioOrientedModule(width, tuple(hp["implicit_units"]),
                                                         name="implicit_scenario_oriented_layers")
            self.implicit_condition = ScenarioCondition(self.implicit_layer, tuple(hp["implicit_condition_units"]),
                                                        dropout, name="implicit_scenario_condition")
        self.output_fc = MLP(tuple(hp["output_units"]), batch_norm=True, dropout=dropout, name="output_fc")
        self.logit = tf.keras.layers.Dense(1, name="logit")

    def _embed(self, features: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """The explicit scenario embedding e_s [B, Ds] and the common features E_c [B, sum(widths)]."""
        embedded = self.embedding(features)
        e_s = tf.concat([embedded[n] for n in self.scenario_fields], axis=-1)
        fields = [embedded[n] for n in self.common_fields]
        if self.behaviour_pooling is not None:
            pooled, _ = self.behaviour_pooling(self.embedding.target_item(embedded),
                                               self.embedding.behaviour_items(embedded),
                                               sequence_mask(features, self.spec))
            fields += tf.split(pooled, len(self.spec.sequence_item_features), axis=-1)
        return e_s, tf.concat(fields, axis=-1)

    def _conditions(self, e_s: tf.Tensor, e_c: tf.Tensor,
                    training: bool | None) -> tuple[tf.Tensor | None, tf.Tensor | None]:
        """SC_explicit [B, P_e] (eq. 4) and SC_implicit [B, G, P_i] (eq. 6-8); None when ablated."""
        explicit = implicit = None
        if self.explicit_condition is not None:
            explicit = self.explicit_condition(e_s, training=training)
        if self.implicit_attention is not None:
            p, _ = self.implicit_attention(e_s, e_c)
            implicit = self.implicit_condition(p, training=training)
        return explicit, implicit

    def scenario_conditions(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor | None]:
        """The generated weights of the scenario-oriented layers (inference mode), for inspection."""
        explicit, implicit = self._conditions(*self._embed(features), training=False)
        return {"explicit": explicit, "implicit": implicit}

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        e_s, e_c = self._embed(features)
        sc_explicit, sc_implicit = self._conditions(e_s, e_c, training)
        o = self.global_fc(e_c, training=training)  # O^global
        if sc_explicit is not None:
            o = self.explicit_layer(o, sc_explicit)  # O^explicit
        if sc_implicit is not None:
            o = tf.broadcast_to(o[:, tf.newaxis, :], [tf.shape(o)[0], self.num_heads, o.shape[-1]])
            o = self.implicit_layer(o, sc_implicit)  # O^implicit_g, g = 1..G
            o = tf.reshape(o, [-1, self.num_heads * o.shape[-1]])
        return self.click_probability(self.logit(self.output_fc(o, training=training)), features)  # eq. 9
