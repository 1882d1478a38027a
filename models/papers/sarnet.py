"""SAR-Net: Scenario-Aware Ranking Network (Shen et al., CIKM 2021).

Modules, named as in the paper:

* **Embedding Layer** (§4.2): one table per categorical feature over the user-profile, target-item,
  scenario-context and cross-scenario-behaviour groups (:class:`~msrec.models.layers.FeatureEmbedding`).
* **Cross-Scenario Behavior Extract Layer** (§4.3, eq. 4-7): target-item attention alpha^i
  (query: the target item p^i_t, keys: the behaviour items p^i_k) and target-scenario attention
  alpha^s (query: the current scenario context p^s_t, keys: the scenario context p^s_k of each
  behaviour when it happened, with its time gap to the impression), each a softmax of the
  feed-forward attention operator psi over the non-padding behaviours; v_cb = sum_k alpha^i_k * alpha^s_k * p^i_k (the product renormalised
  over the behaviours by default, see :class:`CrossScenarioBehaviorExtract`).
* **Scenario-Specific Transform Layer** (§4.4, eq. 8): v' = v * beta_s + gamma_s with
  v = [v_cb || v_u || v_ti || v_s]; beta, gamma start at the identity (1, 0) so a scenario that
  has seen no data (e.g. the OOV one) is served by the shared parts unchanged.
* **Mixture of Debias Experts** (§4.5): each scenario owns ``num_specific_experts`` (2) experts
  and all scenarios share ``num_shared_experts`` (8); every expert is a *Main net* (fully
  connected + batch norm, then a linear score) over v' and a *Bias net* (fully connected + batch
  norm) over the Fairness Coefficient.
* **Multi-Gate Network & Prediction** (§4.6, eq. 9-10): scenario k's single-layer softmax gate
  over v' weighs S^k = [o_k,1..o_k,m_k, o_s,1..o_s,m_s]; y^k = w^k(x) S^k is the click logit.
* **Bias Adapting Loss** (§4.7, eq. 11): the BCE weighted by the Fairness Coefficient; the model
  sets ``fc_sample_weight`` so the trainer uses ``fairness_coef`` as the sample weight.

How the bias net reweighs the main net, and why. Manual intervention over-exposes some items, so
their logged clicks reflect the intervention as well as the user's interest; the Fairness
Coefficient FC (eq. 1) is small for such over-exposed (item, scenario) pairs and about 1 for
un-intervened ones. The paper lets each expert's bias net "predict the degree of intervention bias
to reweigh the predicted score of the main net" during training only, so that the main net need not
explain the intervention and learns the user's unbiased interest. Here expert j's score is

    o_j = m_j(v') + log(FC) * b_j(log FC)

i.e. the bias net multiplies the main net's click *odds* by exp(log(FC) * b_j(log FC)). The factor
log(FC) anchors the correction at exactly zero for an un-intervened sample (FC = 1) whatever the
bias net has learnt (our design choice; the paper leaves the form open). Removing the bias nets at
serving, as the paper does, is therefore the same as predicting every item as if it had not been
intervened on: the model without ``fairness_coef`` equals the model with FC = 1 and is exactly the
training graph minus the bias nets.

Per-scenario parameters (beta, gamma, the specific experts, the gates) are stacked over scenarios
and gathered by the scenario index, so the cost per example does not depend on the number of
scenarios. Ablation switches (paper §5.3): ``attention`` = "sarnet" | "mean" | "target" |
"scenario" | "concat" | "hierarchical" (Table 4, see :class:`CrossScenarioBehaviorExtract`),
``use_transform_layer``, ``use_bias_net``, ``use_fc_weighting``.

The scenario context of a behaviour p^s_k holds the behaviour time as well (§4.3: "scenario id,
scenario type, behavior time"), as the bucketised gap between the behaviour and the impression: the
optional input ``seq_time_gap`` (see ``SARNet._scenario_context``), which the pipeline feeds when the
feature config sets ``sequence.time_gap`` (Transform buckets the seconds with :func:`time_gap_bucket`).
"""
from __future__ import annotations

from typing import Any, Mapping

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import TIME_GAP_FEATURE, FeatureSpec
from msrec.models.base import MultiScenarioModel
from msrec.models.layers import (ExpertGroup, FeatureEmbedding, FeedForwardAttention, ScenarioGate,
                                 ScenarioParameter, fairness_coef, masked_mean, scenario_index,
                                 sequence_mask, weighted_sum)
from msrec.models.registry import register
from msrec.models.layers.base import Layer

ATTENTIONS = ("sarnet", "mean", "target", "scenario", "concat", "hierarchical")
# Which attention operators each mode uses (Table 4): psi over the items (query p^i_t), over the
# scenario contexts (query p^s_t), and over both concatenated (query [p^i_t || p^s_t]).
_ITEM_ATTENTION = ("sarnet", "target")
_SCENARIO_ATTENTION = ("sarnet", "scenario", "hierarchical")
_JOINT_ATTENTION = ("concat", "hierarchical")
# FC is a ratio of shares; clip before the log so that a degenerate value cannot blow up the score.
_FC_RANGE = (1e-3, 1e3)

# The behaviour time of p^s_k, as the gap between the behaviour and the impression, in buckets:
# 0 = padding / unknown, 1 = under a minute (the impression itself: gap 0), then up to 10 min, 1 h,
# 6 h, 1 day, 3 days, 7 days, 30 days, and the last bucket for 30 days and more. Log-like spacing:
# a click seconds ago and one an hour ago say different things about intent, a click 20 or 25 days
# ago much the same.
TIME_GAP_BOUNDARIES_S = (60, 600, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)
TIME_GAP_BUCKETS = len(TIME_GAP_BOUNDARIES_S) + 2  # with padding and the open last bucket
_NOW_BUCKET = 1


def time_gap_bucket(gap_seconds: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """The ``seq_time_gap`` bucket of each behaviour (Transform's rule, so also the serving one):
    ``gap_seconds`` = impression ts - behaviour ts, ``valid`` False on padding -> int64 buckets, 0 on
    padding. A negative or non-finite gap (a client's clock behind the log's) is unknown, 0, as well."""
    gap = tf.cast(gap_seconds, tf.float32)
    boundaries = tf.constant(TIME_GAP_BOUNDARIES_S, tf.float32)
    bucket = 1 + tf.reshape(tf.searchsorted(boundaries, tf.reshape(gap, [-1]), side="right", out_type=tf.int64),
                            tf.shape(gap))
    known = tf.logical_and(valid, tf.logical_and(tf.math.is_finite(gap), gap >= 0))
    return tf.where(known, bucket, tf.zeros_like(bucket))


class CrossScenarioBehaviorExtract(Layer):
    """Eq. 5-7 and the alternatives of Table 4: pools the behaviour items p^i_k by attention weights.

    ``call(target_item, behaviour_items, target_scenario, behaviour_scenarios, mask)`` returns
    ``(v_cb [B, D_item], weights [B, L])``; the weights are exactly zero on padding. ``attention``:

    * ``sarnet`` (eq. 5-7): alpha^i_k * alpha^s_k, the item attention (query p^i_t, keys p^i_k) times
      the scenario attention (query p^s_t, keys p^s_k), each a softmax over the behaviours;
    * ``mean``: mean pooling (SAR-Net*, Table 4's base); ``target``: alpha^i alone; ``scenario``:
      alpha^s alone; each sums to 1;
    * ``concat`` (Concatenate Attention): one softmax of psi with the query [p^i_t || p^s_t] and the
      keys [p^i_k || p^s_k]; sums to 1;
    * ``hierarchical`` (Hierarchical Attention): a first layer with the concatenated query (as
      ``concat``) times a second layer with the scenario context as query (alpha^s).

    The two product modes (``sarnet``, ``hierarchical``) are divided by their sum over the behaviours
    when ``renormalize`` (equivalently a softmax of the summed psi's), so that they sum to 1 as well.
    A product of two softmaxes as printed sums to about 1/L, so v_cb is ~L times smaller than any
    other input of the experts. On the planted-signal data of :mod:`msrec.models.synthetic` (4
    epochs, oracle AUC 0.869) the literal product learnt no better than mean pooling (test AUC 0.729
    vs 0.735), target attention alone reached 0.778 and the renormalised product 0.801. Table 4's
    comparison on a generated window (`msrec bench models --days 3 --impressions-per-day 40000`, FC
    from a blessed SAR-Net, 3 seeds, overall eval AUC): sarnet 0.6343 +- 0.0059, concat 0.6354 +-
    0.0057, hierarchical 0.6343 +- 0.0058; with ``sequence.time_gap`` on the same days 0.6337, 0.6362
    and 0.6334. The paper's ordering (product best) does not show: all within seed noise, on one
    40k-impression training day (best epoch 2-3); a larger window may separate them.
    ``renormalize=False`` is eq. 7 literally (the sum then lies below 1 with two or more behaviours).
    """

    def __init__(self, attention: str = "sarnet", units: tuple[int, ...] = (64, 32), renormalize: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.mode = attention
        self.renormalize = renormalize
        self.target_item_attention = (FeedForwardAttention(units, name="target_item_attention")
                                      if attention in _ITEM_ATTENTION else None)
        self.target_scenario_attention = (FeedForwardAttention(units, name="target_scenario_attention")
                                          if attention in _SCENARIO_ATTENTION else None)
        self.concat_attention = (FeedForwardAttention(units, name="concat_attention")
                                 if attention in _JOINT_ATTENTION else None)

    def call(self, target_item: tf.Tensor, behaviour_items: tf.Tensor, target_scenario: tf.Tensor | None,
             behaviour_scenarios: tf.Tensor | None, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if self.mode == "mean":
            valid = tf.cast(mask, behaviour_items.dtype)
            weights = valid / tf.maximum(tf.reduce_sum(valid, axis=1, keepdims=True), 1.0)
            return masked_mean(behaviour_items, mask), weights
        weights = tf.ones_like(tf.cast(mask, behaviour_items.dtype))
        if self.concat_attention is not None:
            weights *= self.concat_attention((tf.concat([target_item, target_scenario], axis=-1),
                                              tf.concat([behaviour_items, behaviour_scenarios], axis=-1)), mask=mask)
        if self.target_item_attention is not None:
            weights *= self.target_item_attention((target_item, behaviour_items), mask=mask)  # eq. 5
        if self.target_scenario_attention is not None:
            weights *= self.target_scenario_attention((target_scenario, behaviour_scenarios), mask=mask)  # eq. 6
        if self.mode in ("sarnet", "hierarchical") and self.renormalize:
            weights /= tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1e-12)
        return weighted_sum(weights, behaviour_items), weights  # eq. 7


class ScenarioSpecificTransform(Layer):
    """Eq. 8: v' = v * beta_s + gamma_s, beta and gamma gathered by scenario (identity at init)."""

    def __init__(self, num_scenarios: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = num_scenarios

    def build(self, input_shape) -> None:
        dim = int(input_shape[-1])
        self.beta = ScenarioParameter(self.num_scenarios, (dim,), initializer="ones", name="beta")
        self.gamma = ScenarioParameter(self.num_scenarios, (dim,), initializer="zeros", name="gamma")
        super().build(input_shape)

    def call(self, v: tf.Tensor, scenario: tf.Tensor) -> tf.Tensor:
        return v * self.beta(scenario) + self.gamma(scenario)


class DebiasExperts(Layer):
    """A group of debias experts: main nets over v', and (training only) bias nets over the FC.

    Returns the expert scores [B, num_experts]. ``num_scenarios`` set -> each scenario owns its
    experts (scenario-specific experts); None -> the experts are shared by all scenarios.
    """

    def __init__(self, num_experts: int, main_units: tuple[int, ...], bias_units: tuple[int, ...],
                 use_bias_net: bool, num_scenarios: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.main_net = ExpertGroup(num_experts, main_units, num_scenarios=num_scenarios,
                                    batch_norm=True, name="main_net")
        self.main_score = ExpertGroup(num_experts, (1,), num_scenarios=num_scenarios,
                                      activation="linear", name="main_score")
        self.bias_net = self.bias_score = None
        if use_bias_net:
            self.bias_net = ExpertGroup(num_experts, bias_units, num_scenarios=num_scenarios,
                                        batch_norm=True, name="bias_net")
            self.bias_score = ExpertGroup(num_experts, (1,), num_scenarios=num_scenarios,
                                          activation="linear", name="bias_score")

    def call(self, v: tf.Tensor, scenario: tf.Tensor, log_fc: tf.Tensor | None,
             training: bool | None = None) -> tf.Tensor:
        scores = self.main_score(self.main_net(v, scenario, training=training), scenario)[..., 0]
        if self.bias_net is not None and log_fc is not None:
            bias = self.bias_score(self.bias_net(log_fc, scenario, training=training), scenario)[..., 0]
            scores += log_fc * bias  # odds reweighing, anchored at FC = 1 (module docstring)
        return scores


@register("sarnet")
class SARNet(MultiScenarioModel):
    DEFAULT_HPARAMS: Mapping[str, Any] = {
        "attention": "sarnet",
        "renormalize_attention": True,  # alpha^i * alpha^s divided by its sum (see CrossScenarioBehaviorExtract)
        "use_transform_layer": True,
        "use_bias_net": True,
        "use_fc_weighting": True,
        "num_specific_experts": 2,
        "num_shared_experts": 8,
        "expert_units": (64,),  # paper §5.3.3: a single-layer expert after the transform layer
        "bias_units": (16,),
    }

    def __init__(self, spec: FeatureSpec, hparams: Mapping[str, Any], **kwargs) -> None:
        super().__init__(spec, hparams, **kwargs)
        hp = self.hparams
        if not spec.sequence_item_features:
            raise ValueError("SAR-Net needs a behaviour item sequence (sequence.item_features)")
        if hp["attention"] in _SCENARIO_ATTENTION + _JOINT_ATTENTION and not spec.sequence_scenario_features:
            raise ValueError(f"attention={hp['attention']!r} needs behaviour scenario context "
                             "(sequence.scenario_features); use attention='target' or 'mean'")
        self.fc_sample_weight = bool(hp["use_fc_weighting"])
        num_scenarios = spec.num_scenarios
        self.embedding = FeatureEmbedding(spec, hp["embedding_dim"], hp["numeric"], hp["embeddings_l2"],
                                          name="embedding")
        self.behavior_extract = CrossScenarioBehaviorExtract(
            hp["attention"], tuple(hp["attention_units"]), hp["renormalize_attention"],
            name="cross_scenario_behavior_extract")
        # e_behaviorTime of p^s (see _scenario_context); only the scenario-aware modes read p^s.
        self.time_gap_embedding = (
            tf.keras.layers.Embedding(TIME_GAP_BUCKETS, hp["embedding_dim"], name="emb_time_gap",
                                      embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
            if hp["attention"] in _SCENARIO_ATTENTION + _JOINT_ATTENTION else None)
        self.transform = (ScenarioSpecificTransform(num_scenarios, name="scenario_specific_transform")
                          if hp["use_transform_layer"] else None)
        expert_units, bias_units = tuple(hp["expert_units"]), tuple(hp["bias_units"])
        self.specific_experts = DebiasExperts(hp["num_specific_experts"], expert_units, bias_units,
                                              hp["use_bias_net"], num_scenarios, name="specific_experts")
        self.shared_experts = DebiasExperts(hp["num_shared_experts"], expert_units, bias_units,
                                            hp["use_bias_net"], None, name="shared_experts")
        self.gate = ScenarioGate(hp["num_specific_experts"] + hp["num_shared_experts"], num_scenarios,
                                 name="multi_gate")

    def _scenario_context(self, embedded: Mapping[str, tf.Tensor],
                          features: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor | None, tf.Tensor | None]:
        """(p^s_t [B, D_s], p^s_k [B, L, D_s]): [e_scenarioId || e_scenarioType || .. || e_behaviorTime].

        The behaviour time is the ``seq_time_gap`` bucket of each behaviour (:func:`time_gap_bucket`),
        an optional input, fed by the pipeline when the feature config sets ``sequence.time_gap``.
        Bucket 0 (padding, unknown) embeds to zeros and an absent feature counts as all unknown, so the
        model runs with or without it; the impression's own time, in p^s_t, is the gap-0 bucket. A model
        trained with the gaps must be served with them (without, it sees every behaviour's time as unknown).
        """
        e = self.embedding
        target, behaviours = e.target_scenario(embedded), e.behaviour_scenarios(embedded)
        if self.time_gap_embedding is None or behaviours is None:
            return target, behaviours
        if TIME_GAP_FEATURE in features:
            buckets = tf.cast(features[TIME_GAP_FEATURE], tf.int32)
            if buckets.shape.rank != 2:
                raise ValueError(f"{TIME_GAP_FEATURE}: expected [B, L] bucket indices, got shape {buckets.shape}")
            checks = [tf.debugging.assert_equal(tf.shape(buckets), tf.shape(behaviours)[:2],
                                                message=f"{TIME_GAP_FEATURE} must be as long as the behaviours"),
                      tf.debugging.assert_non_negative(buckets, message=f"{TIME_GAP_FEATURE}: negative bucket"),
                      tf.debugging.assert_less(buckets, TIME_GAP_BUCKETS,
                                               message=f"{TIME_GAP_FEATURE}: bucket past {TIME_GAP_BUCKETS - 1}")]
            with tf.control_dependencies(checks):
                buckets = tf.identity(buckets)
        else:
            buckets = tf.zeros(tf.shape(behaviours)[:2], tf.int32)
        known = tf.cast(buckets > 0, behaviours.dtype)[..., tf.newaxis]
        behaviour_time = self.time_gap_embedding(buckets) * known
        now = self.time_gap_embedding(tf.fill(tf.shape(buckets)[:1], _NOW_BUCKET))
        return tf.concat([target, now], axis=-1), tf.concat([behaviours, behaviour_time], axis=-1)

    def _behaviour(self, embedded: Mapping[str, tf.Tensor],
                   features: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        e = self.embedding
        target_scenario, behaviour_scenarios = self._scenario_context(embedded, features)
        return self.behavior_extract(e.target_item(embedded), e.behaviour_items(embedded),
                                     target_scenario, behaviour_scenarios, sequence_mask(features, self.spec))

    def attention_weights(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """The pooling weights alpha^i * alpha^s of the behaviours, [B, L] (for inspection)."""
        return self._behaviour(self.embedding(features), features)[1]

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        embedded = self.embedding(features)
        scenario = scenario_index(features, self.spec)
        v_cb, _ = self._behaviour(embedded, features)
        e = self.embedding
        v = tf.concat([v_cb, e.groups(embedded, ("user", "item", "context", "scenario"))], axis=-1)
        if self.transform is not None:
            v = self.transform(v, scenario)
        fc = fairness_coef(features)
        log_fc = None
        if fc is not None and self.hparams["use_bias_net"]:
            # A non-finite FC (an upstream bug) counts as un-intervened instead of poisoning the batch.
            fc = tf.where(tf.math.is_finite(fc), fc, tf.ones_like(fc))
            log_fc = tf.math.log(tf.clip_by_value(fc, *_FC_RANGE))
        scores = tf.concat([self.specific_experts(v, scenario, log_fc, training=training),
                            self.shared_experts(v, scenario, log_fc, training=training)], axis=-1)  # eq. 9
        logit = tf.reduce_sum(self.gate(v, scenario) * scores, axis=-1, keepdims=True)  # eq. 10
        return self.click_probability(logit, features)
