"""Embedding of the transformed feature dict, and the input vector every baseline shares."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.models.layers.attention import TargetAttentionPooling
from msrec.models.layers.ops import as_column, masked_mean, sequence_mask
from msrec.schemas.feature_config import GROUPS, FeatureSpec
from msrec.models.layers.base import Layer


class FeatureEmbedding(Layer):
    """Embeds the transformed feature dict.

    One table per categorical feature of the spec; a ``seq_<column>`` feature is looked up in the
    table of ``<column>`` so that behaviour items and the target item live in one space. A
    multi-valued feature ([B, K]) is the mean of its non-padding embeddings. Numeric features are
    either projected to ``dim`` (``numeric="project"``: value times a learned vector plus a learned
    offset, like a field embedding) or passed through as one column (``numeric="concat"``).

    ``call`` returns a dict: scalar feature -> [B, dim] (or [B, 1] for a concatenated numeric
    feature); sequence feature -> [B, L, dim]. The helpers below assemble the groups the models
    need from that dict.
    """

    def __init__(self, spec: FeatureSpec, dim: int = 16, numeric: str = "project",
                 embeddings_l2: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if numeric not in ("project", "concat"):
            raise ValueError(f"numeric must be 'project' or 'concat', got {numeric!r}")
        missing = [s for s, base in spec.sequence.items() if base not in spec.cardinality]
        if missing:
            raise ValueError(f"sequence features {missing} share no categorical feature's vocabulary")
        self.spec = spec
        self.dim = int(dim)
        self.numeric_mode = numeric
        reg = tf.keras.regularizers.l2(embeddings_l2) if embeddings_l2 else None
        self.tables = {
            name: tf.keras.layers.Embedding(
                int(card), self.dim, embeddings_regularizer=reg,
                embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05),
                name=f"emb_{name}")
            for name, card in spec.cardinality.items()
        }

    def build(self, input_shape) -> None:
        if self.numeric_mode == "project":
            self.numeric_kernel = {
                n: self.add_weight(name=f"num_{n}_w", shape=(self.dim,),
                                   initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
                for n in self.spec.numeric}
            self.numeric_bias = {
                n: self.add_weight(name=f"num_{n}_b", shape=(self.dim,), initializer="zeros")
                for n in self.spec.numeric}
        super().build(input_shape)

    def _lookup(self, name: str, ids: tf.Tensor) -> tf.Tensor:
        table = self.tables[name]
        if ids.shape.rank == 1:
            return table(ids)
        if ids.shape.rank == 2 and ids.shape[-1] == 1:
            return table(ids[:, 0])
        if ids.shape.rank == 2:  # multi-valued: mean over the non-padding values
            return masked_mean(table(ids), tf.not_equal(ids, 0))
        raise ValueError(f"feature {name!r}: expected [B], [B, 1] or [B, K] ids, got shape {ids.shape}")

    def call(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        needed = list(self.spec.categorical) + list(self.spec.numeric) + list(self.spec.sequence)
        absent = [n for n in needed if n not in features]
        if absent:
            raise ValueError(f"model inputs lack features {absent}; got {sorted(features)}")
        out: dict[str, tf.Tensor] = {}
        for name in self.spec.categorical:
            out[name] = self._lookup(name, tf.convert_to_tensor(features[name]))
        for name in self.spec.numeric:
            x = tf.cast(as_column(features[name]), tf.float32)
            if self.numeric_mode == "project":
                out[name] = x * self.numeric_kernel[name] + self.numeric_bias[name]
            else:
                out[name] = x
        for seq, base in self.spec.sequence.items():
            ids = tf.convert_to_tensor(features[seq])
            if ids.shape.rank != 2:
                raise ValueError(f"sequence feature {seq!r}: expected [B, L] ids, got shape {ids.shape}")
            out[seq] = self.tables[base](ids)
        return out

    # ---- group assembly over the embedded dict

    def group(self, embedded: Mapping[str, tf.Tensor], group: str) -> tf.Tensor | None:
        """Concatenation of a feature group's vectors ([B, n*dim]), None for an empty group."""
        if group not in GROUPS:
            raise ValueError(f"unknown group {group!r}; groups are {GROUPS}")
        parts = [embedded[n] for n in self.spec.groups.get(group, ()) if n in embedded]
        return tf.concat(parts, axis=-1) if parts else None

    def groups(self, embedded: Mapping[str, tf.Tensor], groups: Sequence[str] = GROUPS) -> tf.Tensor:
        """Concatenation of several groups, in order, skipping empty ones."""
        parts = [g for g in (self.group(embedded, name) for name in groups) if g is not None]
        return tf.concat(parts, axis=-1)

    def behaviour_items(self, embedded: Mapping[str, tf.Tensor]) -> tf.Tensor | None:
        """Behaviour item vectors p^i_k = [e_item_id || e_category || ...] -> [B, L, k*dim]."""
        seqs = self.spec.sequence_item_features
        return tf.concat([embedded[s] for s in seqs], axis=-1) if seqs else None

    def target_item(self, embedded: Mapping[str, tf.Tensor]) -> tf.Tensor | None:
        """The target item's vector aligned with :meth:`behaviour_items` -> [B, k*dim]."""
        seqs = self.spec.sequence_item_features
        return tf.concat([embedded[self.spec.sequence[s]] for s in seqs], axis=-1) if seqs else None

    def behaviour_scenarios(self, embedded: Mapping[str, tf.Tensor]) -> tf.Tensor | None:
        """Scenario context of each behaviour p^s_k -> [B, L, k*dim]."""
        seqs = self.spec.sequence_scenario_features
        return tf.concat([embedded[s] for s in seqs], axis=-1) if seqs else None

    def target_scenario(self, embedded: Mapping[str, tf.Tensor]) -> tf.Tensor | None:
        """The current scenario's vector aligned with :meth:`behaviour_scenarios` -> [B, k*dim]."""
        seqs = self.spec.sequence_scenario_features
        return tf.concat([embedded[self.spec.sequence[s]] for s in seqs], axis=-1) if seqs else None


class BehaviourInput(Layer):
    """The input vector of the baselines: every feature group plus the target-attention-pooled
    behaviour sequence, ``[user || item || context || scenario || pooled behaviour items]``.

    All baselines share it so that a comparison with them isolates the multi-scenario parts.
    """

    def __init__(self, spec: FeatureSpec, dim: int = 16, numeric: str = "project", embeddings_l2: float = 0.0,
                 attention_units: Sequence[int] = (64, 32), **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.embedding = FeatureEmbedding(spec, dim, numeric, embeddings_l2, name="embedding")
        self.attention = (TargetAttentionPooling(attention_units, name="target_attention")
                          if spec.sequence_item_features else None)

    @classmethod
    def from_hparams(cls, spec: FeatureSpec, hp: Mapping[str, Any]) -> "BehaviourInput":
        """The layer as every baseline builds it from its hyper-parameters."""
        return cls(spec, hp["embedding_dim"], hp["numeric"], hp["embeddings_l2"], tuple(hp["attention_units"]),
                   name="behaviour_input")

    def call(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        embedded = self.embedding(features)
        parts = [self.embedding.groups(embedded)]
        if self.attention is not None:
            pooled, _ = self.attention(self.embedding.target_item(embedded),
                                       self.embedding.behaviour_items(embedded),
                                       sequence_mask(features, self.spec))
            parts.append(pooled)
        return tf.concat(parts, axis=-1)


class BehaviourFields(BehaviourInput):
    """:class:`BehaviourInput` kept as its fields, for models that treat feature groups differently
    (a gate over the scenario features, a per-field scale, a prior from the id features).

    ``call`` returns a dict: every scalar feature's vector (as :class:`FeatureEmbedding` gives it)
    plus :data:`BEHAVIOUR_FIELD` -> the target-attention-pooled behaviour items when the spec has a
    behaviour sequence. :meth:`vector` concatenates them exactly as :class:`BehaviourInput` does.
    """

    def call(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        embedded = self.embedding(features)
        fields = {n: embedded[n] for g in GROUPS for n in self.spec.groups.get(g, ()) if n in embedded}
        if self.attention is not None:
            fields[BEHAVIOUR_FIELD], _ = self.attention(self.embedding.target_item(embedded),
                                                        self.embedding.behaviour_items(embedded),
                                                        sequence_mask(features, self.spec))
        return fields

    def vector(self, fields: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """[user || item || context || scenario || pooled behaviour items], as BehaviourInput."""
        return tf.concat(list(fields.values()), axis=-1)

    def group(self, fields: Mapping[str, tf.Tensor], group: str) -> tf.Tensor | None:
        """Concatenation of one feature group's fields ([B, n*dim]); None for an empty group."""
        parts = [fields[n] for n in self.spec.groups.get(group, ()) if n in fields]
        return tf.concat(parts, axis=-1) if parts else None


BEHAVIOUR_FIELD = "behaviour"  # the pooled behaviour sequence's entry in BehaviourFields' dict
