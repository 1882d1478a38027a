"""OptMSM: Optimizing Multi-Scenario Modeling (Tang et al.), registered as ``optmsm``.

Modules, named as in the paper:

* **Input Features Partition Module** (§4.1, eq. 4): the spec's ``scenario_specific_features`` (e.g.
  scenario id, scenario type, theme, position) are the scenario-specific features x^m, every other
  feature is scenario-shared, x_c. The behaviour sequence ("user behaviors", a common feature in
  Table 1) enters x_c as one field: its target-attention pooling, as in every baseline.
* **Scenario Enhanced Learning Module** (§4.2):
  - the *adaptation gate* (eq. 5): an SE-Net per scenario, z^m = sigmoid(W^m [avg(e_c1) .. avg(e_ci)]
    + b^m), that rescales each shared field, e_c^m = [z^m_1 e_c1 || .. || z^m_i e_ci];
  - the pluggable *shared information transfer* (how to transfer, eq. 6-8): ``transfer`` = "fcn"
    (STAR's FCN: every layer's kernel is W_shared * W^m, its bias b_shared + b^m), "moe" (shared
    experts mixed by a per-scenario gate) or "cgc" (PLE's CGC: per-scenario and shared experts, a
    per-scenario gate), mapping e_c^m to the scenario-aware representation r^m;
  - the *orthogonality constraint* (what to transfer, eq. 9): each sample's representations for
    all scenarios {r^1 .. r^M} (the real one and its contrastive ones) should be orthogonal.
* **Scenario-Aware Representation Interaction Module** (§4.3): R_0 = r^m || e^m (eq. 10); a
  *hypernetwork* (eq. 11) turns R_0 into 2 * sigmoid(w_1 relu(w_0 R_0 + b_0) + b_1) for every layer l
  of the scenario-specific predictor, which scales that layer's input R_l (eq. 12); the predictor's
  classifier gives y^m = sigmoid(W R_{L-1} + b) (eq. 13). The hypernetwork's weights are shared: its
  input R_0 already carries the scenario.
* Objective (eq. 14): BCE + lambda * L_orth, the constraint added with ``add_loss`` while training.

The prediction path only touches the sample's own scenario: the SE gate, transfer and predictor
parameters are stacked over scenarios and gathered (:class:`~msrec.models.layers.ScenarioDense`,
:func:`~msrec.models.layers.scenario_matmul`). The contrastive representations exist only for the
loss, only in training, computed in one batched einsum per layer ([B, K, ...]).

Which scenarios enter eq. 9: those *present in the training batch* (padding excluded), not every row
of the scenario index space. Eq. 9 takes "all the scenarios" of the paper's datasets, each of which
has data; our index space also holds rows that never see an example (a scenario of the vocabulary
absent from the training window, the OOV bucket), and pushing their representations apart would
train parameters that no prediction has ever used, so that a new scenario would start from a row
shaped by the constraint alone instead of from its initial value (the shared network, for the FCN).
Present in the batch rather than seen over training because it needs no state (no counts to keep,
warm start or serve) and a row enters the loss exactly when the BCE trains it too; over a training
run every seen scenario is paired with the others it co-occurs with in batches. Up to
``contrastive_scenarios`` (32) present scenarios we take them all; past that, each training batch
draws that many of them uniformly and the loss is the mean over their pairs, an unbiased estimate of
the mean over all present pairs, at a cost that stops growing with the number of scenarios (a
deviation for platforms with hundreds of scenarios; the paper's datasets have a handful).
``orthogonal_scenarios="all"`` pairs every row of the index space instead (eq. 9 read literally, the
ablation). On a generated window (`msrec bench models --days 3 --impressions-per-day 40000`, FC from a
blessed SAR-Net, 3 seeds) the eval AUC is the same within noise, 0.6173 +- 0.0052 ("batch") vs
0.6189 +- 0.0036 ("all"): the rows without data serve no eval example, so the difference is where a new
scenario starts from, not today's AUC.

Deviation from eq. 9: the paper sums the signed cosines <r^i, r^j>, whose minimum is reached by
anti-parallel representations (the sum goes to -M), not orthogonal ones, although the text asks them to
be "perpendicular to each other". We penalise the squared cosine, which is zero exactly when the pair
is orthogonal and positive otherwise, and average it over pairs and samples (eq. 9 sums; the mean
keeps lambda independent of the batch size and the number of scenarios). The sum over the M(M-1)
pairs is vectorised with ||R R^T||_F = ||R^T R||_F, so it needs [B, min(M, d)^2] memory, never
[B, M, M] when M is large.

Defaults: the paper fixes hidden layers [256, 128, 32]; here the transfer module has (256, 128) and
the predictor (32,). It gives no lambda, hypernetwork width or expert counts; ours are 0.1, 64, and 4
(moe) / 2 + 2 (cgc). Ablation switches (Tables 5-6): ``use_priors`` (w/o priors: no partition, every
feature is shared and R_0 = r^m), ``use_constraint``, ``use_hypernetwork``; also ``use_adaptation_gate``
and ``transfer`` (Fig. 4).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import tensorflow as tf

from msrec.schemas.feature_config import GROUPS, FeatureSpec
from msrec.models.base import MultiScenarioModel
from msrec.models.layers import (BEHAVIOUR_FIELD, BehaviourFields, ExpertGroup, GateNU, ScenarioDense, mix_experts,
                                 scenario_index, scenario_matmul)
from msrec.models.registry import register
from msrec.models.layers.base import Layer

TRANSFERS = ("fcn", "moe", "cgc")


def every_scenario_dense(layer: ScenarioDense, x: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """A built :class:`ScenarioDense` applied with the parameters of each scenario in ``rows`` [K].

    x [B, G, I] (one input for all scenarios) or [B, K, G, I] (one per scenario) -> [B, K, G, O].
    """
    pattern = "bgi,mgio->bmgo" if x.shape.rank == 3 else "bmgi,mgio->bmgo"
    y = tf.einsum(pattern, x, tf.gather(layer.kernel, rows))
    if layer.bias is not None:
        y += tf.gather(layer.bias, rows)
    return layer.activation(y)


def orthogonality_loss(representations: tf.Tensor) -> tf.Tensor:
    """Mean squared cosine similarity over the pairs i != j of each sample's scenario representations.

    representations [B, M, d] -> scalar; zero iff every pair is orthogonal (a zero vector counts as
    orthogonal to everything) and when M < 2 (no pair). M may be dynamic (the scenarios of a batch).
    See the module docstring for how this relates to eq. 9.
    """
    m, d = tf.shape(representations)[1], representations.shape[2]
    r = tf.math.l2_normalize(representations, axis=-1)
    # sum_{i,j} cos_ij^2 = ||R R^T||_F^2 = ||R^T R||_F^2: take the smaller Gram matrix.
    all_pairs = tf.cond(m <= d,
                        lambda: tf.reduce_sum(tf.square(tf.einsum("bid,bjd->bij", r, r)), axis=[1, 2]),
                        lambda: tf.reduce_sum(tf.square(tf.einsum("bmi,bmj->bij", r, r)), axis=[1, 2]))
    diagonal = tf.reduce_sum(tf.square(tf.reduce_sum(tf.square(r), axis=-1)), axis=-1)  # sum_i ||r_i||^4
    pairs = tf.cast(m * (m - 1), representations.dtype)
    return tf.math.divide_no_nan(tf.reduce_mean(tf.maximum(all_pairs - diagonal, 0.0)), pairs)


class AdaptationGate(Layer):
    """Eq. 5: the per-scenario SE-Net gate over the scenario-shared fields."""

    def __init__(self, num_fields: int, num_scenarios: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dense = ScenarioDense(num_fields, num_scenarios, activation="sigmoid", name="excitation")

    @staticmethod
    def _squeeze(fields: Sequence[tf.Tensor]) -> tf.Tensor:
        return tf.stack([tf.reduce_mean(f, axis=-1) for f in fields], axis=-1)

    @staticmethod
    def _field_of_column(fields: Sequence[tf.Tensor]) -> tf.Tensor:
        return tf.constant(np.repeat(np.arange(len(fields)), [int(f.shape[-1]) for f in fields]), tf.int32)

    def call(self, fields: Sequence[tf.Tensor], scenario: tf.Tensor) -> tf.Tensor:
        """fields [B, w_k] each, scenario [B] -> e_c^m [B, sum w_k]."""
        z = self.dense(self._squeeze(fields), scenario)
        return tf.concat(fields, axis=-1) * tf.gather(z, self._field_of_column(fields), axis=-1)

    def every_scenario(self, fields: Sequence[tf.Tensor], rows: tf.Tensor) -> tf.Tensor:
        """e_c^m for every scenario m in ``rows`` [K] -> [B, K, sum w_k]."""
        z = every_scenario_dense(self.dense, self._squeeze(fields)[:, tf.newaxis, :], rows)[:, :, 0]
        return tf.concat(fields, axis=-1)[:, tf.newaxis, :] * tf.gather(z, self._field_of_column(fields), axis=-1)


class FCNTransfer(Layer):
    """Eq. 8 (STAR's FCN), per layer relu((W_shared * W^m) x + b_shared + b^m).

    W^m starts at ones and b^m at zero, so every scenario starts as the shared network.
    """

    def __init__(self, units: Sequence[int], num_scenarios: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = tuple(int(u) for u in units)
        self.num_scenarios = int(num_scenarios)

    def build(self, input_shape) -> None:
        fan_in = int(input_shape[-1])
        self.params = []
        for i, u in enumerate(self.units):
            self.params.append((
                self.add_weight(name=f"shared_kernel_{i}", shape=(fan_in, u), initializer="glorot_uniform"),
                self.add_weight(name=f"shared_bias_{i}", shape=(u,), initializer="zeros"),
                self.add_weight(name=f"scenario_kernel_{i}", shape=(self.num_scenarios, 1, fan_in, u),
                                initializer="ones"),
                self.add_weight(name=f"scenario_bias_{i}", shape=(self.num_scenarios, u), initializer="zeros"),
            ))
            fan_in = u
        super().build(input_shape)

    def call(self, x: tf.Tensor, scenario: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        for shared_kernel, shared_bias, kernel, bias in self.params:
            y = scenario_matmul(x[:, tf.newaxis, :], scenario, shared_kernel * kernel)[:, 0]
            x = tf.nn.relu(y + shared_bias + tf.gather(bias, scenario))
        return x

    def every_scenario(self, x: tf.Tensor, rows: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """x [B, K, I] (the input of scenario rows[k] in row k) -> [B, K, units[-1]]."""
        for shared_kernel, shared_bias, kernel, bias in self.params:
            y = tf.einsum("bmi,mio->bmo", x, shared_kernel * tf.gather(kernel, rows)[:, 0])
            x = tf.nn.relu(y + shared_bias + tf.gather(bias, rows))
        return x


def _flat_experts(experts: ExpertGroup, x: tf.Tensor, training: bool | None) -> tf.Tensor:
    """Shared experts on every scenario's input: x [B, M, I] -> [B, M, E, d]."""
    out = experts(tf.reshape(x, [-1, x.shape[-1]]), training=training)
    return tf.reshape(out, [tf.shape(x)[0], tf.shape(x)[1], out.shape[1], out.shape[2]])


class MoETransfer(Layer):
    """MMoE as the transfer: shared experts, mixed by a per-scenario softmax gate over e_c^m."""

    def __init__(self, units: Sequence[int], num_experts: int, num_scenarios: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.experts = ExpertGroup(num_experts, units, name="experts")
        self.gate = ScenarioDense(num_experts, num_scenarios, activation="softmax", name="gate")

    def call(self, x: tf.Tensor, scenario: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return mix_experts(self.gate(x, scenario), self.experts(x, training=training))

    def every_scenario(self, x: tf.Tensor, rows: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        gate = every_scenario_dense(self.gate, x[:, :, tf.newaxis, :], rows)[:, :, 0]
        return tf.einsum("bme,bmed->bmd", gate, _flat_experts(self.experts, x, training))


class CGCTransfer(Layer):
    """PLE's CGC as the transfer: each scenario's own experts and shared ones, a per-scenario gate."""

    def __init__(self, units: Sequence[int], num_specific: int, num_shared: int, num_scenarios: int,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if num_specific + num_shared < 1:
            raise ValueError("the cgc transfer needs at least one expert")
        self.num_specific = int(num_specific)
        self.specific = [ScenarioDense(u, num_scenarios, groups=num_specific, activation="relu", name=f"specific_{i}")
                         for i, u in enumerate(units)] if num_specific else []
        self.shared = ExpertGroup(num_shared, units, name="shared_experts") if num_shared else None
        self.gate = ScenarioDense(num_specific + num_shared, num_scenarios, activation="softmax", name="gate")

    def call(self, x: tf.Tensor, scenario: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        experts = []
        if self.specific:
            h = tf.broadcast_to(x[:, tf.newaxis, :], [tf.shape(x)[0], self.num_specific, x.shape[-1]])
            for layer in self.specific:
                h = layer(h, scenario)
            experts.append(h)
        if self.shared is not None:
            experts.append(self.shared(x, training=training))
        return mix_experts(self.gate(x, scenario), tf.concat(experts, axis=1))

    def every_scenario(self, x: tf.Tensor, rows: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        experts = []
        if self.specific:
            h = tf.broadcast_to(x[:, :, tf.newaxis, :], [tf.shape(x)[0], tf.shape(x)[1], self.num_specific, x.shape[-1]])
            for layer in self.specific:
                h = every_scenario_dense(layer, h, rows)
            experts.append(h)
        if self.shared is not None:
            experts.append(_flat_experts(self.shared, x, training))
        gate = every_scenario_dense(self.gate, x[:, :, tf.newaxis, :], rows)[:, :, 0]
        return tf.einsum("bme,bmed->bmd", gate, tf.concat(experts, axis=2))


class ScenarioSpecificPredictor(Layer):
    """Eq. 11-13: per-scenario ReLU layers and classifier; with the hypernetwork, every layer's input
    R_l is first scaled by the Gate NU of R_0 for that layer (2 * sigmoid averages 1 at init)."""

    def __init__(self, units: Sequence[int], num_scenarios: int, hypernetwork_units: int | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = tuple(int(u) for u in units)
        self.stack = [ScenarioDense(u, num_scenarios, activation="relu", name=f"dense_{i}")
                        for i, u in enumerate(self.units)]
        self.stack.append(ScenarioDense(1, num_scenarios, name="classifier"))
        self.hypernetwork_units = hypernetwork_units

    def build(self, input_shape) -> None:
        widths = (int(input_shape[-1]),) + self.units
        self.hypernetwork = ([GateNU(w, self.hypernetwork_units, name=f"hypernetwork_{l}")
                              for l, w in enumerate(widths)] if self.hypernetwork_units else [])
        super().build(input_shape)

    def call(self, r0: tf.Tensor, scenario: tf.Tensor) -> tf.Tensor:
        """R_0 [B, D], scenario [B] -> the click logit [B, 1]."""
        h = r0
        for l, layer in enumerate(self.stack):
            if self.hypernetwork:
                h = h * self.hypernetwork[l](r0)  # eq. 12
            h = layer(h, scenario)
        return h  # eq. 13 without the sigmoid, which the model applies


@register("optmsm")
class OptMSM(MultiScenarioModel):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        "use_priors": True,
        "use_adaptation_gate": True,
        "transfer": "fcn",
        "transfer_units": (256, 128),
        "num_experts": 4,  # moe
        "num_specific_experts": 2,  # cgc
        "num_shared_experts": 2,  # cgc
        "use_constraint": True,
        "orthogonality_weight": 0.1,  # lambda, eq. 14
        "contrastive_scenarios": 32,  # past this many scenarios, L_orth samples this many per batch
        # which scenario rows L_orth pairs: "batch" (those present in the training batch) or "all"
        # (every row of the index space, unseen and OOV included: the literal eq. 9, for the ablation)
        "orthogonal_scenarios": "batch",
        "use_hypernetwork": True,
        "hypernetwork_units": 64,
        "predictor_units": (32,),
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        if hp["transfer"] not in TRANSFERS:
            raise ValueError(f"transfer must be one of {TRANSFERS}, got {hp['transfer']!r}")
        if hp["orthogonal_scenarios"] not in ("batch", "all"):
            raise ValueError(f"orthogonal_scenarios must be 'batch' or 'all', got {hp['orthogonal_scenarios']!r}")
        if hp["contrastive_scenarios"] is not None and int(hp["contrastive_scenarios"]) < 2:
            raise ValueError("contrastive_scenarios must be at least 2 (a pair), or None for every scenario, "
                             f"got {hp['contrastive_scenarios']!r}")
        # The fields BehaviourFields returns, in its order: every scalar feature, then the behaviour.
        fields = [n for g in GROUPS for n in spec.groups.get(g, ()) if n in spec.cardinality or n in spec.numeric]
        if spec.sequence_item_features:
            fields.append(BEHAVIOUR_FIELD)
        self.specific_features = [n for n in fields if n in spec.scenario_specific_features] if hp["use_priors"] else []
        if hp["use_priors"] and not self.specific_features:
            raise ValueError("use_priors needs scenario_specific_features in the feature config "
                             "(or use_priors=False to treat every feature as shared)")
        self.shared_features = [n for n in fields if n not in self.specific_features]
        num_scenarios = spec.num_scenarios
        self.inputs_layer = BehaviourFields.from_hparams(spec, hp)
        self.adaptation_gate = (AdaptationGate(len(self.shared_features), num_scenarios, name="adaptation_gate")
                                if hp["use_adaptation_gate"] else None)
        units = tuple(hp["transfer_units"])
        if hp["transfer"] == "fcn":
            self.transfer = FCNTransfer(units, num_scenarios, name="fcn_transfer")
        elif hp["transfer"] == "moe":
            self.transfer = MoETransfer(units, hp["num_experts"], num_scenarios, name="moe_transfer")
        else:
            self.transfer = CGCTransfer(units, hp["num_specific_experts"], hp["num_shared_experts"], num_scenarios,
                                        name="cgc_transfer")
        self.predictor = ScenarioSpecificPredictor(
            tuple(hp["predictor_units"]), num_scenarios, hp["hypernetwork_units"] if hp["use_hypernetwork"] else None,
            name="scenario_specific_predictor")

    def _partition(self, features: Mapping[str, tf.Tensor]) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """Eq. 4: (scenario-shared fields e_c1..e_ci, scenario-specific embeddings e^m)."""
        fields = self.inputs_layer(features)
        return [fields[n] for n in self.shared_features], [fields[n] for n in self.specific_features]

    def contrastive_rows(self, scenario: tf.Tensor) -> tf.Tensor:
        """The scenario rows whose representations enter L_orth in one training batch: the scenarios
        present in the batch (``scenario`` [B], padding 0 excluded), all of them up to
        ``contrastive_scenarios``, past that a uniform random subset of that many, drawn per batch
        (every pair of present scenarios is then equally likely, so the mean over the subset's pairs
        is an unbiased estimate of the mean over all present pairs).
        """
        if self.hparams["orthogonal_scenarios"] == "all":
            rows = tf.range(1, self.spec.num_scenarios, dtype=scenario.dtype)
        else:
            present, _ = tf.unique(scenario)
            rows = tf.boolean_mask(present, present > 0)
        k = self.hparams["contrastive_scenarios"]
        return rows if k is None else tf.random.shuffle(rows)[:int(k)]

    def _every_scenario(self, shared: list[tf.Tensor], rows: tf.Tensor, training: bool | None) -> tf.Tensor:
        if self.adaptation_gate is not None:
            e_c = self.adaptation_gate.every_scenario(shared, rows)
        else:
            x = tf.concat(shared, axis=-1)
            e_c = tf.broadcast_to(x[:, tf.newaxis, :], [tf.shape(x)[0], tf.size(rows), x.shape[-1]])
        return self.transfer.every_scenario(e_c, rows, training=training)

    def scenario_representations(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Each sample's representation r^m in every scenario m = 1 .. num_scenarios - 1 -> [B, M, d]."""
        if not self.built:  # the per-scenario layers get their variables on the prediction path
            self(features, training=False)
        shared, _ = self._partition(features)
        return self._every_scenario(shared, tf.range(1, self.spec.num_scenarios), training=False)

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        scenario = scenario_index(features, self.spec)
        shared, specific = self._partition(features)
        e_c = (self.adaptation_gate(shared, scenario) if self.adaptation_gate is not None
               else tf.concat(shared, axis=-1))
        r = self.transfer(e_c, scenario, training=training)
        if training and self.hparams["use_constraint"]:
            representations = self._every_scenario(shared, self.contrastive_rows(scenario), training)
            self.add_loss(self.hparams["orthogonality_weight"] * orthogonality_loss(representations))  # eq. 9, 14
        return self.click_probability(self.predictor(tf.concat([r] + specific, axis=-1), scenario), features)  # eq. 10
