"""Single-scenario DNNs: one separate model per scenario, all held in one Keras model.

SAR-Net's "Single-Scenario" baselines (Table 3: Wide&Deep, PNN, DIN "trained using single scenario
data independently") share nothing between scenarios. Here every scenario owns a complete DIN-style
DNN, and each example runs only its own scenario's, gathered by the scenario index:

* **embeddings**: every categorical feature has a table per scenario (stacked as one
  [num_scenarios * cardinality, dim] table: scenario s reads row s * cardinality + id), and every
  numeric feature its own projection per scenario;
* **target attention**: the DIN attention MLP over the behaviour sequence, per scenario;
* **DNN**: the hidden layers and the logit layer, per scenario.

So one model trained on the mixed data equals a separate DNN trained on each scenario's own data:
a scenario's parameters receive gradients from its own examples only (the embedding L2, when on,
penalises the rows an example reads, not whole tables, for the same reason), and a step on one
scenario's examples leaves every other scenario's predictions unchanged. An unseen scenario (the
OOV index) has no data of its own and is served by its untrained DNN: finite, uninformed
predictions, the known weakness of single-scenario models on small scenarios.

Memory is num_scenarios times the embeddings of one model. ``separate_embeddings=False`` shares the
embedding tables instead (attention and DNN stay per scenario): affordable at any scale, but then
the scenarios do share their embeddings, and training one moves the others' predictions.

Per-scenario tables are warm-started only when their shape is unchanged; their rows are not
remapped token by token like the shared ``emb_<feature>`` tables.
"""
from __future__ import annotations

from typing import Any, Mapping

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import GROUPS, FeatureSpec
from msrec.models.base import MultiScenarioModel
from msrec.models.layers import (FeatureEmbedding, ScenarioDense, ScenarioMLP, ScenarioParameter, masked_mean,
                                 masked_softmax, scenario_index, sequence_mask, weighted_sum)
from msrec.models.registry import register
from msrec.models.layers.base import Layer


class ScenarioEmbedding(Layer):
    """Per-scenario embedding tables (and numeric projections) with FeatureEmbedding's outputs:
    ``call(features, scenario)`` -> scalar feature [B, dim] (or [B, 1]), sequence feature [B, L, dim]."""

    def __init__(self, spec: FeatureSpec, dim: int = 16, numeric: str = "project", embeddings_l2: float = 0.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if numeric not in ("project", "concat"):
            raise ValueError(f"numeric must be 'project' or 'concat', got {numeric!r}")
        self.spec = spec
        self.dim = int(dim)
        self.numeric_mode = numeric
        self.embeddings_l2 = float(embeddings_l2)

    def build(self, input_shape) -> None:
        num_scenarios = self.spec.num_scenarios
        self.tables = {
            name: self.add_weight(name=f"scenario_emb_{name}", shape=(num_scenarios * int(card), self.dim),
                                  initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
            for name, card in self.spec.cardinality.items()}
        if self.numeric_mode == "project":
            self.numeric_kernel = {n: ScenarioParameter(num_scenarios, (self.dim,), tf.keras.initializers.RandomNormal(
                stddev=0.05), name=f"num_{n}_w") for n in self.spec.numeric}
            self.numeric_bias = {n: ScenarioParameter(num_scenarios, (self.dim,), name=f"num_{n}_b")
                                 for n in self.spec.numeric}
        super().build(input_shape)

    def _lookup(self, name: str, ids: tf.Tensor, scenario: tf.Tensor, training: bool | None) -> tf.Tensor:
        """ids [B] / [B, 1] / [B, K] (multi-valued) / [B, L] (sequence) in scenario's table."""
        ids = tf.convert_to_tensor(ids)
        if ids.shape.rank == 2 and ids.shape[-1] == 1:
            ids = ids[:, 0]
        offset = tf.cast(scenario, ids.dtype) * int(self.spec.cardinality[name])
        rows = ids + (offset if ids.shape.rank == 1 else offset[:, tf.newaxis])
        vectors = tf.gather(self.tables[name], rows)
        if training and self.embeddings_l2:
            self.add_loss(self.embeddings_l2 * tf.reduce_mean(tf.reduce_sum(
                tf.reshape(tf.square(vectors), [tf.shape(vectors)[0], -1]), axis=-1)))
        return vectors

    def call(self, features: Mapping[str, tf.Tensor], scenario: tf.Tensor,
             training: bool | None = None) -> dict[str, tf.Tensor]:
        out: dict[str, tf.Tensor] = {}
        for name in self.spec.categorical:
            ids = tf.convert_to_tensor(features[name])
            vectors = self._lookup(name, ids, scenario, training)
            multi = ids.shape.rank == 2 and ids.shape[-1] != 1
            out[name] = masked_mean(vectors, tf.not_equal(ids, 0)) if multi else vectors
        for name in self.spec.numeric:
            x = tf.reshape(tf.cast(features[name], tf.float32), [-1, 1])
            out[name] = (x * self.numeric_kernel[name](scenario) + self.numeric_bias[name](scenario)
                         if self.numeric_mode == "project" else x)
        for seq, base in self.spec.sequence.items():
            out[seq] = self._lookup(base, features[seq], scenario, training)
        return out


class ScenarioTargetAttention(Layer):
    """DIN target attention whose MLP psi([k, q, k - q, k * q]) belongs to the example's scenario.

    Each example's kernels are gathered ([B, I, H]) and applied to its L behaviours at once.
    ``call(query [B, D], keys [B, L, D], valid [B, L], scenario [B])`` -> pooled [B, D].
    """

    def __init__(self, units: tuple[int, ...], num_scenarios: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = tuple(int(u) for u in units) + (1,)  # hidden layers, then the score
        self.num_scenarios = int(num_scenarios)

    def build(self, input_shape) -> None:
        fan_in = 4 * int(input_shape[-1])
        self.kernels, self.biases = [], []
        for i, units in enumerate(self.units):
            limit = (6.0 / (fan_in + units)) ** 0.5  # Glorot-uniform per scenario's kernel
            self.kernels.append(self.add_weight(name=f"kernel_{i}", shape=(self.num_scenarios, fan_in, units),
                                                initializer=tf.keras.initializers.RandomUniform(-limit, limit)))
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(self.num_scenarios, units),
                                               initializer="zeros"))
            fan_in = units
        super().build(input_shape)

    def call(self, query: tf.Tensor, keys: tf.Tensor, valid: tf.Tensor | None, scenario: tf.Tensor) -> tf.Tensor:
        q = tf.broadcast_to(query[:, tf.newaxis, :], tf.shape(keys))
        x = tf.concat([keys, q, keys - q, keys * q], axis=-1)
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            x = tf.einsum("bli,bio->blo", x, tf.gather(kernel, scenario)) + tf.gather(bias, scenario)[:, tf.newaxis]
            if i < len(self.kernels) - 1:
                x = tf.nn.relu(x)
        return weighted_sum(masked_softmax(x[..., 0], valid), keys)


@register("single")
class SingleScenarioDNN(MultiScenarioModel):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        "hidden_units": (256, 128, 64),
        "separate_embeddings": True,
        "dropout": 0.0,
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        num_scenarios = spec.num_scenarios
        args = (spec, hp["embedding_dim"], hp["numeric"], hp["embeddings_l2"])
        self.separate_embeddings = bool(hp["separate_embeddings"])
        self.embedding = (ScenarioEmbedding(*args, name="scenario_embedding") if self.separate_embeddings
                          else FeatureEmbedding(*args, name="embedding"))
        self.attention = (ScenarioTargetAttention(tuple(hp["attention_units"]), num_scenarios,
                                                  name="scenario_target_attention")
                          if spec.sequence_item_features else None)
        self.dnn = ScenarioMLP(tuple(hp["hidden_units"]), num_scenarios, dropout=hp["dropout"], name="scenario_dnn")
        self.logit = ScenarioDense(1, num_scenarios, name="scenario_logit")

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        scenario = scenario_index(features, self.spec)
        embedded = (self.embedding(features, scenario, training=training) if self.separate_embeddings
                    else self.embedding(features))
        parts = [embedded[n] for g in GROUPS for n in self.spec.groups.get(g, ()) if n in embedded]
        if self.attention is not None:
            items = self.spec.sequence_item_features
            behaviours = tf.concat([embedded[s] for s in items], axis=-1)
            target = tf.concat([embedded[self.spec.sequence[s]] for s in items], axis=-1)
            parts.append(self.attention(target, behaviours, sequence_mask(features, self.spec), scenario))
        x = self.dnn(tf.concat(parts, axis=-1), scenario, training=training)
        return self.click_probability(self.logit(x, scenario), features)
