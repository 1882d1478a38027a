"""Keras layers shared by the multi-scenario models.

Every model reads the transformed feature dict of ``msrec.features`` (DESIGN §5):

* categorical feature -> int64 ``[B]`` or ``[B, 1]`` (0 = missing), or ``[B, K]`` for a
  multi-valued one (0 = padding);
* numeric feature -> float32 ``[B]`` or ``[B, 1]``;
* ``seq_<column>`` -> int64 ``[B, L]``, 0-padded, looked up in the table of ``<column>``.

Per-scenario parameters are stacked ``[num_scenarios, ...]`` and selected by each example's
scenario index (:class:`ScenarioParameter`, :func:`scenario_matmul`), so the cost per example
does not depend on how many scenarios the platform serves.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.features import FAIRNESS_COEF, GROUPS, FeatureSpec

# Large negative logit for masked positions: exp() underflows to exactly 0 in float32.
_MASKED_LOGIT = -1e9


# --------------------------------------------------------------------------- input helpers


def _as_column(t: tf.Tensor) -> tf.Tensor:
    """[B] or [B, 1] -> [B, 1]."""
    t = tf.convert_to_tensor(t)
    if t.shape.rank == 1:
        return t[:, tf.newaxis]
    return t


def scenario_index(features: Mapping[str, tf.Tensor], spec: FeatureSpec) -> tf.Tensor:
    """The scenario index of each example as int32 ``[B]``."""
    if spec.scenario_feature not in features:
        raise ValueError(f"the scenario feature {spec.scenario_feature!r} is missing from the inputs")
    return tf.cast(tf.reshape(features[spec.scenario_feature], [-1]), tf.int32)


def fairness_coef(features: Mapping[str, tf.Tensor]) -> tf.Tensor | None:
    """``fairness_coef`` as float32 ``[B, 1]``, or None when absent (serving)."""
    if FAIRNESS_COEF not in features:
        return None
    return tf.cast(_as_column(features[FAIRNESS_COEF]), tf.float32)


def sequence_mask(features: Mapping[str, tf.Tensor], spec: FeatureSpec) -> tf.Tensor | None:
    """bool ``[B, L]``: True where the behaviour sequence holds an item (first item sequence)."""
    items = spec.sequence_item_features
    if not items:
        return None
    return tf.not_equal(features[items[0]], 0)


def masked_softmax(logits: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor:
    """Softmax over the last axis that puts exactly zero weight on masked positions.

    A row with no valid position gets all-zero weights (not NaN).
    """
    if mask is None:
        return tf.nn.softmax(logits, axis=-1)
    logits = tf.where(mask, logits, tf.fill(tf.shape(logits), tf.constant(_MASKED_LOGIT, logits.dtype)))
    return tf.nn.softmax(logits, axis=-1) * tf.cast(mask, logits.dtype)


def masked_mean(values: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor:
    """Mean of ``values`` [B, L, D] over valid positions -> [B, D]; zeros when none is valid."""
    if mask is None:
        return tf.reduce_mean(values, axis=1)
    m = tf.cast(mask, values.dtype)[..., tf.newaxis]
    return tf.reduce_sum(values * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)


def weighted_sum(weights: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """``sum_k weights[b, k] * values[b, k, :]`` -> [B, D]."""
    return tf.einsum("bk,bkd->bd", weights, values)


def mix_experts(gate: tf.Tensor, experts: tf.Tensor) -> tf.Tensor:
    """Gate-weighted sum of expert outputs: gate [B, E], experts [B, E, D] -> [B, D]."""
    return tf.einsum("be,bed->bd", gate, experts)


# --------------------------------------------------------------------------- embedding


class FeatureEmbedding(tf.keras.layers.Layer):
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
            x = tf.cast(_as_column(features[name]), tf.float32)
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


# --------------------------------------------------------------------------- dense blocks


class MLP(tf.keras.layers.Layer):
    """Dense -> [BatchNorm] -> activation -> [Dropout], once per entry of ``units``."""

    def __init__(self, units: Sequence[int], activation: str = "relu", batch_norm: bool = False,
                 dropout: float = 0.0, l2: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        reg = tf.keras.regularizers.l2(l2) if l2 else None
        self.dense = [tf.keras.layers.Dense(u, kernel_regularizer=reg, use_bias=not batch_norm, name=f"dense_{i}")
                      for i, u in enumerate(units)]
        self.norms = ([tf.keras.layers.BatchNormalization(name=f"bn_{i}") for i in range(len(units))]
                      if batch_norm else [])
        self.activation = tf.keras.activations.get(activation)
        self.dropout = tf.keras.layers.Dropout(dropout) if dropout else None

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        for i, dense in enumerate(self.dense):
            x = _after_affine(self, i, dense(x), training)
        return x


def _after_affine(layer: tf.keras.layers.Layer, i: int, x: tf.Tensor, training: bool | None) -> tf.Tensor:
    """What follows the i-th affine map of an MLP-like ``layer``: [BatchNorm] -> activation -> [Dropout]."""
    if layer.norms:
        x = layer.norms[i](x, training=training)
    x = layer.activation(x)
    return x if layer.dropout is None else layer.dropout(x, training=training)


# --------------------------------------------------------------------------- attention


class FeedForwardAttention(tf.keras.layers.Layer):
    """The feed-forward attention operator psi(key, query) of DIN / SAR-Net, softmax-normalised.

    psi = MLP([k, q, k - q, k * q]) -> one logit per behaviour; the weights are a softmax over the
    valid positions (exactly zero on padding). A query of another width than the keys is first
    projected to the keys' width.
    """

    def __init__(self, units: Sequence[int] = (64, 32), activation: str = "relu", **kwargs) -> None:
        super().__init__(**kwargs)
        self.mlp = MLP(units, activation=activation, name="mlp")
        # No bias: a constant added to every score cancels in the softmax, so it could never learn.
        self.score = tf.keras.layers.Dense(1, use_bias=False, name="score")
        self.query_projection: tf.keras.layers.Dense | None = None

    def build(self, input_shape) -> None:
        query_shape, keys_shape = input_shape[0], input_shape[1]
        if query_shape[-1] != keys_shape[-1]:
            self.query_projection = tf.keras.layers.Dense(keys_shape[-1], use_bias=False, name="query_projection")
        super().build(input_shape)

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor], mask: tf.Tensor | None = None) -> tf.Tensor:
        """``(query [B, Dq], keys [B, L, Dk])``, mask [B, L] -> weights [B, L]."""
        query, keys = inputs
        if self.query_projection is not None:
            query = self.query_projection(query)
        q = tf.broadcast_to(query[:, tf.newaxis, :], tf.shape(keys))
        x = tf.concat([keys, q, keys - q, keys * q], axis=-1)
        logits = tf.squeeze(self.score(self.mlp(x)), axis=-1)
        return masked_softmax(logits, mask)


class TargetAttentionPooling(tf.keras.layers.Layer):
    """DIN-style target attention: pools the behaviour items by their relevance to the target item.

    Returns ``(pooled [B, D], weights [B, L])``.
    """

    def __init__(self, units: Sequence[int] = (64, 32), **kwargs) -> None:
        super().__init__(**kwargs)
        self.attention = FeedForwardAttention(units, name="attention")

    def call(self, query: tf.Tensor, keys: tf.Tensor, mask: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
        weights = self.attention((query, keys), mask=mask)
        return weighted_sum(weights, keys), weights


class BehaviourInput(tf.keras.layers.Layer):
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


# --------------------------------------------------------------------------- per-scenario parameters


def _glorot(fan_in: int, fan_out: int) -> tf.keras.initializers.Initializer:
    """Glorot-uniform for a stack of [fan_in, fan_out] kernels: each slice scaled as one dense kernel.

    (Keras' own Glorot treats leading axes as a convolution's receptive field and would shrink
    the weights by the number of scenarios / experts.)
    """
    limit = (6.0 / (fan_in + fan_out)) ** 0.5
    return tf.keras.initializers.RandomUniform(-limit, limit)


class _StackedIdentity(tf.keras.initializers.Initializer):
    """Identity matrix in every [I, I] slice of a [..., I, I] kernel."""

    def __call__(self, shape, dtype=None, **kwargs):
        return tf.broadcast_to(tf.eye(shape[-1], dtype=dtype or tf.float32), shape)


class ScenarioParameter(tf.keras.layers.Layer):
    """A parameter per scenario, stacked [num_scenarios, *shape], gathered by scenario index."""

    def __init__(self, num_scenarios: int, shape: Sequence[int], initializer="zeros", **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = int(num_scenarios)
        self.param_shape = tuple(int(s) for s in shape)
        self.initializer = tf.keras.initializers.get(initializer)

    def build(self, input_shape) -> None:
        self.table = self.add_weight(name="table", shape=(self.num_scenarios,) + self.param_shape,
                                     initializer=self.initializer)
        super().build(input_shape)

    def call(self, scenario: tf.Tensor) -> tf.Tensor:
        """scenario int [B] -> [B, *shape]."""
        return tf.gather(self.table, scenario)


def _block_sparse(x: tf.Tensor, scenario: tf.Tensor, num_scenarios: int) -> tf.SparseTensor:
    """x [B, G, I] as a sparse [B*G, S*G*I] whose row (b, g) holds x[b, g] in block (scenario[b], g)."""
    groups, fan_in = x.shape[1], x.shape[2]
    batch = tf.shape(x)[0]
    b = tf.range(batch)[:, tf.newaxis, tf.newaxis]
    g = tf.range(groups)[tf.newaxis, :, tf.newaxis]
    i = tf.range(fan_in)[tf.newaxis, tf.newaxis, :]
    s = tf.cast(scenario, tf.int32)[:, tf.newaxis, tf.newaxis]
    rows = tf.broadcast_to(b * groups + g, [batch, groups, fan_in])
    cols = (s * groups + g) * fan_in + i
    indices = tf.cast(tf.reshape(tf.stack([rows, cols], axis=-1), [-1, 2]), tf.int64)
    dense_shape = tf.cast(tf.stack([batch * groups, num_scenarios * groups * fan_in]), tf.int64)
    return tf.SparseTensor(indices, tf.reshape(x, [-1]), dense_shape)


def scenario_matmul(x: tf.Tensor, scenario: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Per-example ``x[b, g] @ kernel[scenario[b], g]``: x [B, G, I], kernel [S, G, I, O] -> [B, G, O].

    Written as one sparse x dense product (see :func:`_block_sparse`), so only the selected
    scenario's weights are read, FLOPs per example equal a plain dense layer's, and no
    per-example copy of a weight matrix is materialised (a gather of [B, I, O] kernels would
    take I times the activations' memory). The gradient is written out for the same reason:
    TensorFlow's generic one for the sparse operand gathers a kernel row per non-zero.
    """
    num_scenarios, groups, fan_in, fan_out = kernel.shape
    scenario = tf.cast(scenario, tf.int32)

    @tf.custom_gradient
    def matmul(x: tf.Tensor, kernel: tf.Tensor):
        sparse = _block_sparse(x, scenario, num_scenarios)
        flat_kernel = tf.reshape(kernel, [num_scenarios * groups * fan_in, fan_out])
        y = tf.reshape(tf.sparse.sparse_dense_matmul(sparse, flat_kernel), [-1, groups, fan_out])

        def grad(dy: tf.Tensor):
            d_kernel = tf.sparse.sparse_dense_matmul(sparse, tf.reshape(dy, [-1, fan_out]), adjoint_a=True)
            # d_x[b, g] = dy[b, g] @ kernel[scenario[b], g]^T: the same block product, transposed kernel.
            # (A plain op, not a nested custom gradient, so the gradient itself saves into a SavedModel.)
            flat_transposed = tf.reshape(tf.transpose(kernel, [0, 1, 3, 2]),
                                         [num_scenarios * groups * fan_out, fan_in])
            d_x = tf.sparse.sparse_dense_matmul(_block_sparse(dy, scenario, num_scenarios), flat_transposed)
            return tf.reshape(d_x, [-1, groups, fan_in]), tf.reshape(d_kernel, kernel.shape)

        return y, grad

    return matmul(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel))


class ScenarioDense(tf.keras.layers.Layer):
    """A dense layer with its own kernel and bias per scenario (and per group slot).

    Input [B, I] or [B, G, I] (G parallel slots, e.g. a scenario's experts), plus the scenario
    index [B]. Output [B, O] or [B, G, O]. ``kernel_initializer="identity"`` starts every scenario
    at the identity map (needs I == O), which is what an untrained (e.g. OOV) scenario should do.
    """

    def __init__(self, units: int, num_scenarios: int, groups: int = 1, activation: str | None = None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.num_scenarios = int(num_scenarios)
        self.slots = int(groups)
        self.activation = tf.keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer

    def build(self, input_shape) -> None:
        fan_in = int(input_shape[-1])
        shape = (self.num_scenarios, self.slots, fan_in, self.units)
        if self.kernel_initializer == "identity":
            if fan_in != self.units:
                raise ValueError(f"identity init needs fan_in == units, got {fan_in} != {self.units}")
            init = _StackedIdentity()
        elif self.kernel_initializer == "glorot_uniform":
            init = _glorot(fan_in, self.units)
        else:
            init = tf.keras.initializers.get(self.kernel_initializer)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=init)
        self.bias = (self.add_weight(name="bias", shape=(self.num_scenarios, self.slots, self.units),
                                     initializer="zeros") if self.use_bias else None)
        super().build(input_shape)

    def call(self, x: tf.Tensor, scenario: tf.Tensor) -> tf.Tensor:
        squeeze = x.shape.rank == 2
        if squeeze:
            x = x[:, tf.newaxis, :]
        y = scenario_matmul(x, scenario, self.kernel)
        if self.bias is not None:
            y = y + tf.gather(self.bias, scenario)
        y = self.activation(y)
        return y[:, 0, :] if squeeze else y


class ScenarioMLP(tf.keras.layers.Layer):
    """A per-scenario tower: ScenarioDense -> activation per entry of ``units``."""

    def __init__(self, units: Sequence[int], num_scenarios: int, activation: str = "relu",
                 dropout: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dense = [ScenarioDense(u, num_scenarios, activation=activation, name=f"dense_{i}")
                      for i, u in enumerate(units)]
        self.dropout = tf.keras.layers.Dropout(dropout) if dropout else None

    def call(self, x: tf.Tensor, scenario: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        for dense in self.dense:
            x = dense(x, scenario)
            if self.dropout is not None:
                x = self.dropout(x, training=training)
        return x


# --------------------------------------------------------------------------- experts and gates


class ExpertGroup(tf.keras.layers.Layer):
    """``num_experts`` independent MLP experts evaluated together (one einsum per layer).

    Input [B, I] (every expert reads the same vector) or [B, E, I] (each expert its own).
    Output [B, E, units[-1]]. With ``num_scenarios`` set, every scenario owns its own
    ``num_experts`` experts and the scenario index [B] selects them (:func:`scenario_matmul`).
    Batch norm, when on, normalises each (expert slot, unit) over the batch; for scenario-owned
    experts the statistics of a slot are shared by all scenarios.
    """

    def __init__(self, num_experts: int, units: Sequence[int], num_scenarios: int | None = None,
                 activation: str = "relu", batch_norm: bool = False, dropout: float = 0.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_experts = int(num_experts)
        self.units = tuple(int(u) for u in units)
        self.num_scenarios = num_scenarios
        self.activation = tf.keras.activations.get(activation)
        self.norms = ([tf.keras.layers.BatchNormalization(axis=[-2, -1], name=f"bn_{i}")
                       for i in range(len(self.units))] if batch_norm else [])
        self.dropout = tf.keras.layers.Dropout(dropout) if dropout else None
        if num_scenarios is not None:
            self.scenario_layers = [ScenarioDense(u, num_scenarios, groups=self.num_experts,
                                                  use_bias=not batch_norm, name=f"dense_{i}")
                                    for i, u in enumerate(self.units)]

    def build(self, input_shape) -> None:
        if self.num_scenarios is None:
            self.kernels, self.biases = [], []
            fan_in = int(input_shape[-1])
            for i, u in enumerate(self.units):
                self.kernels.append(self.add_weight(
                    name=f"kernel_{i}", shape=(self.num_experts, fan_in, u), initializer=_glorot(fan_in, u)))
                self.biases.append(None if self.norms else self.add_weight(
                    name=f"bias_{i}", shape=(self.num_experts, u), initializer="zeros"))
                fan_in = u
        super().build(input_shape)

    def call(self, x: tf.Tensor, scenario: tf.Tensor | None = None,
             training: bool | None = None) -> tf.Tensor:
        if x.shape.rank == 2:
            x = tf.broadcast_to(x[:, tf.newaxis, :], [tf.shape(x)[0], self.num_experts, x.shape[-1]])
        for i in range(len(self.units)):
            if self.num_scenarios is None:
                x = tf.einsum("bei,eio->beo", x, self.kernels[i])
                if self.biases[i] is not None:
                    x = x + self.biases[i]
            else:
                if scenario is None:
                    raise ValueError(f"{self.name}: scenario-owned experts need the scenario index")
                x = self.scenario_layers[i](x, scenario)
            x = _after_affine(self, i, x, training)
        return x


class ScenarioGate(tf.keras.layers.Layer):
    """Per-scenario single-layer softmax gate over ``num_experts`` (the MMoE / SAR-Net gate).

    Input [B, I] and scenario [B] -> weights [B, num_experts] summing to 1.
    """

    def __init__(self, num_experts: int, num_scenarios: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dense = ScenarioDense(num_experts, num_scenarios, activation="softmax", name="dense")

    def call(self, x: tf.Tensor, scenario: tf.Tensor) -> tf.Tensor:
        return self.dense(x, scenario)


class GateNU(tf.keras.layers.Layer):
    """The gate neural unit of PEPNet (Chang et al. 2023): ``scale * sigmoid(W2 relu(W1 x + b1) + b2)``.

    Output [B, units] in (0, scale); with scale 2 an untrained gate averages 1, so multiplying a
    layer by it starts close to the identity (PEPNet's Gate NU, OptMSM's hypernetwork eq. 11).
    """

    def __init__(self, units: int, hidden_units: int, scale: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = tf.keras.layers.Dense(hidden_units, activation="relu", name="hidden")
        self.out = tf.keras.layers.Dense(units, activation="sigmoid", name="out")
        self.scale = float(scale)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.scale * self.out(self.hidden(x))


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


class PPNet(tf.keras.layers.Layer):
    """PEPNet's PPNet (parameter personalisation): a ReLU DNN whose every layer input is scaled by its
    own :class:`GateNU` over [persona prior || sg(DNN input)], H^{l+1} = relu((delta^l * H^l) W^l + b^l).

    ``call((x [B, D], prior [B, P]))`` -> [B, units[-1]]. The stop-gradient keeps the gates from
    training the input's embeddings.
    """

    def __init__(self, units: Sequence[int], gate_units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = tuple(int(u) for u in units)
        self.dense = [tf.keras.layers.Dense(u, activation="relu", name=f"dense_{i}") for i, u in enumerate(self.units)]
        self.gate_units = int(gate_units)

    def build(self, input_shape) -> None:
        widths = (int(input_shape[0][-1]),) + self.units[:-1]
        self.gates = [GateNU(w, self.gate_units, name=f"gate_nu_{i}") for i, w in enumerate(widths)]
        super().build(input_shape)

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        x, prior = inputs
        condition = tf.concat([prior, tf.stop_gradient(x)], axis=-1)
        for gate, dense in zip(self.gates, self.dense):
            x = dense(gate(condition) * x)
        return x
