"""SAR-Net: learning, the bias nets' serving contract, attention, the per-scenario transform, ablations."""
from __future__ import annotations

import dataclasses
import pathlib

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from msrec.schemas.feature_config import FAIRNESS_COEF, TIME_GAP_FEATURE, FeatureSpec
from msrec.models.papers.sarnet import TIME_GAP_BUCKETS, time_gap_bucket
from msrec.models.registry import build_model
from msrec.models.synthetic import PlantedBatch, planted_ctr_batch
from support.models import assert_reload_predicts_the_same, make_spec, tensors, without_fc

NUM_SCENARIOS_TRAINED = 4  # scenario_id vocabulary below: indices 1..4; 0 = padding, 5 = OOV


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    return make_spec(sequence_length=20, user_id=50, item_id=100, category=20, brand=20,
                     scenario_id=NUM_SCENARIOS_TRAINED)


@pytest.fixture(scope="module")
def test_batch(spec: FeatureSpec) -> PlantedBatch:
    return planted_ctr_batch(spec, 2000, seed=2, fairness=True)


@pytest.fixture(scope="module")
def trained(spec: FeatureSpec) -> tf.keras.Model:
    """SAR-Net trained on the planted data with the Bias Adapting Loss (FC as sample weight)."""
    train = planted_ctr_batch(spec, 12288, seed=1, fairness=True)
    tf.keras.utils.set_random_seed(0)
    model = build_model("sarnet", spec)
    assert model.fc_sample_weight
    model.compile(tf.keras.optimizers.Adam(3e-3))  # the loss: the model's task, BCE weighted by the FC
    model.fit(train.features, train.labels, sample_weight=train.features[FAIRNESS_COEF],
              batch_size=256, epochs=3, verbose=0)
    return model


@pytest.fixture
def model(trained: tf.keras.Model):
    """The trained model; restored afterwards, since a training=True call moves batch-norm statistics."""
    weights = trained.get_weights()
    yield trained
    trained.set_weights(weights)


def test_sarnet_learns_scenario_and_behaviour_signal(model: tf.keras.Model, test_batch: PlantedBatch) -> None:
    pred = model(tensors(without_fc(test_batch.features)), training=False).numpy().ravel()
    auc = roc_auc_score(test_batch.labels, pred)
    oracle = roc_auc_score(test_batch.labels, test_batch.click_prob)
    print(f"sarnet test AUC {auc:.3f} (oracle {oracle:.3f})")
    assert auc > 0.7


def _twin_without_bias_nets(model: tf.keras.Model, spec: FeatureSpec, features) -> tf.keras.Model:
    """A use_bias_net=False SAR-Net holding the trained model's weights (matched by name)."""
    twin = build_model("sarnet", spec, {"use_bias_net": False})
    twin(features, training=False)
    trained = {w.name: w for w in model.weights}
    assert all("bias_net" not in w.name and "bias_score" not in w.name for w in twin.weights)
    for w in twin.weights:
        w.assign(trained[w.name])
    return twin


def test_serving_is_the_training_graph_without_bias_nets(model: tf.keras.Model, spec: FeatureSpec,
                                                         test_batch: PlantedBatch) -> None:
    features = {k: tf.constant(v[:256]) for k, v in test_batch.features.items()}
    serving = without_fc(features)
    twin = _twin_without_bias_nets(model, spec, serving)
    served = model(serving, training=False).numpy()
    np.testing.assert_allclose(served, twin(serving, training=False), rtol=1e-5, atol=1e-7)
    # The bias nets' correction is anchored at FC = 1: an un-intervened sample scores as at serving.
    neutral = {**serving, FAIRNESS_COEF: tf.ones([256], tf.float32)}
    np.testing.assert_allclose(model(neutral, training=False), served, rtol=1e-5, atol=1e-7)
    # With the FC the bias nets reweigh the experts' scores.
    with_fc = model(features, training=False).numpy()
    assert np.abs(with_fc - served).max() > 1e-3
    trained_with_fc = model(features, training=True).numpy()
    trained_without = model(serving, training=True).numpy()
    assert np.abs(trained_with_fc - trained_without).max() > 1e-3


def test_attention_weights_are_zero_on_padding(model: tf.keras.Model, spec: FeatureSpec) -> None:
    features = tensors(planted_ctr_batch(spec, 64, seed=5).features)
    mask = features["seq_item_id"].numpy() != 0
    assert (~mask).any() and (~mask.any(axis=1)).any()  # padding, and users with no history
    weights = model.attention_weights(features).numpy()
    assert np.all(weights[~mask] == 0.0) and np.all(weights >= 0.0) and np.all(np.isfinite(weights))
    has_history = mask.any(axis=1)
    np.testing.assert_allclose(weights[has_history].sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(weights[~has_history] == 0.0)
    # Not uniform: the attentions discriminate between the behaviours of a user.
    long = mask.sum(axis=1) >= 5
    spread = [w[m].max() - w[m].min() for w, m in zip(weights[long], mask[long])]
    assert np.mean(spread) > 1e-3


@pytest.mark.parametrize("attention, renormalize", [("target", True), ("scenario", True), ("mean", True),
                                                    ("sarnet", False), ("concat", True), ("hierarchical", True),
                                                    ("hierarchical", False)])
def test_attention_modes_weights(attention: str, renormalize: bool, spec: FeatureSpec) -> None:
    features = tensors(planted_ctr_batch(spec, 32, seed=6).features)
    mask = features["seq_item_id"].numpy() != 0
    model = build_model("sarnet", spec, {"attention": attention, "renormalize_attention": renormalize})
    weights = model.attention_weights(features).numpy()
    assert np.all(weights[~mask] == 0.0)
    sums = weights[mask.any(axis=1)].sum(axis=1)
    if not renormalize:  # a product of two softmaxes taken literally sums below 1 ...
        several = mask.sum(axis=1) >= 2
        assert several.any() and np.all(weights[several].sum(axis=1) < 1.0)
        np.testing.assert_allclose(weights[mask.sum(axis=1) == 1].sum(axis=1), 1.0, rtol=1e-5)  # ... but one
    else:
        np.testing.assert_allclose(sums, 1.0, rtol=1e-5)
    if attention == "mean":
        lengths = mask.sum(axis=1)
        np.testing.assert_allclose(weights[mask], np.repeat(1.0 / lengths, lengths), rtol=1e-6)


def test_hierarchical_attention_is_the_concat_layer_times_the_scenario_layer(spec: FeatureSpec) -> None:
    """Table 4's hierarchical mode: the first layer's weights (query [p^i_t || p^s_t], keys
    [p^i_k || p^s_k], the concat mode's operator) times the second's (query p^s_t), renormalised."""
    features = tensors(planted_ctr_batch(spec, 32, seed=6).features)
    mask = tf.constant(features["seq_item_id"].numpy() != 0)
    model = build_model("sarnet", spec, {"attention": "hierarchical"})
    weights = model.attention_weights(features).numpy()
    extract, e = model.behavior_extract, model.embedding
    embedded = e(features)
    target, behaviours = model._scenario_context(embedded, features)
    first = extract.concat_attention((tf.concat([e.target_item(embedded), target], axis=-1),
                                      tf.concat([e.behaviour_items(embedded), behaviours], axis=-1)), mask=mask)
    second = extract.target_scenario_attention((target, behaviours), mask=mask)
    product = (first * second).numpy()
    has_history = mask.numpy().any(axis=1)
    product[has_history] /= product[has_history].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(weights, product, rtol=1e-5, atol=1e-7)
    assert np.abs(weights - first.numpy())[has_history].max() > 1e-4  # the second layer does reweigh


@pytest.mark.parametrize("attention", ["sarnet", "scenario", "concat", "hierarchical"])
def test_the_behaviour_time_gap_enters_the_scenario_context(attention: str, spec: FeatureSpec) -> None:
    """p^s_k = [scenario id || scenario type || behaviour time]: the optional seq_time_gap buckets move
    the attention weights and the prediction; all-unknown buckets equal leaving the feature out."""
    features = tensors(without_fc(planted_ctr_batch(spec, 64, seed=9, min_history=2).features))
    valid = features["seq_item_id"].numpy() != 0
    rng = np.random.default_rng(0)
    gaps = rng.exponential(86400.0, valid.shape) * np.arange(1, valid.shape[1] + 1)  # older further back
    recent = {**features, TIME_GAP_FEATURE: time_gap_bucket(gaps, valid)}
    old = {**features, TIME_GAP_FEATURE: time_gap_bucket(gaps + 40 * 86400.0, valid)}
    assert set(np.unique(recent[TIME_GAP_FEATURE].numpy()[valid])) != {TIME_GAP_BUCKETS - 1}
    model = build_model("sarnet", spec, {"attention": attention})
    out = model(recent, training=False).numpy()
    assert np.abs(out - model(old, training=False).numpy()).max() > 1e-6  # untrained: small, but not float noise
    weights = model.attention_weights(recent).numpy()
    assert np.all(weights[~valid] == 0.0)
    assert np.abs(weights - model.attention_weights(old).numpy()).max() > 1e-4
    unknown = {**features, TIME_GAP_FEATURE: tf.zeros_like(features["seq_item_id"])}
    np.testing.assert_allclose(model(unknown, training=False), model(features, training=False), rtol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="bucket past"):
        model({**features, TIME_GAP_FEATURE: tf.fill(valid.shape, tf.constant(TIME_GAP_BUCKETS, tf.int64))})


def test_scenario_specific_transform_is_gathered_per_scenario(model: tf.keras.Model, spec: FeatureSpec) -> None:
    transform = model.transform
    beta, gamma = transform.beta.table.numpy(), transform.gamma.table.numpy()
    trained_rows = range(1, NUM_SCENARIOS_TRAINED + 1)
    for a in trained_rows:  # every trained scenario has moved away from the identity, differently
        assert np.abs(beta[a] - 1.0).max() > 1e-3
        for b in trained_rows:
            if a < b:
                assert np.abs(beta[a] - beta[b]).max() > 1e-3 and np.abs(gamma[a] - gamma[b]).max() > 1e-3
    oov = spec.num_scenarios - 1  # never seen in training: still exactly the identity
    assert np.all(beta[[0, oov]] == 1.0) and np.all(gamma[[0, oov]] == 0.0)
    v = np.random.default_rng(0).normal(size=(3, beta.shape[1])).astype(np.float32)
    scenario = np.array([1, 3, oov], np.int32)
    np.testing.assert_allclose(transform(v, scenario), v * beta[scenario] + gamma[scenario], rtol=1e-6)


def test_changing_only_the_scenario_changes_the_prediction(model: tf.keras.Model, spec: FeatureSpec) -> None:
    features = tensors(without_fc(planted_ctr_batch(spec, 32, seed=7).features))
    scenario = features[spec.scenario_feature]
    moved = {**features, spec.scenario_feature: scenario % NUM_SCENARIOS_TRAINED + 1}
    delta = np.abs(model(moved, training=False).numpy() - model(features, training=False).numpy())
    assert np.all(delta > 1e-6)
    oov = {**features, spec.scenario_feature: tf.fill([32], tf.constant(spec.num_scenarios - 1, tf.int64))}
    out = model(oov, training=False).numpy()
    assert np.all(np.isfinite(out)) and np.all((out > 0) & (out < 1))


@pytest.mark.parametrize("hparams", [
    {"attention": "mean"}, {"attention": "target"}, {"attention": "scenario"}, {"attention": "concat"},
    {"attention": "hierarchical"},
    {"use_transform_layer": False}, {"use_bias_net": False}, {"use_fc_weighting": False},
    {"renormalize_attention": False},
])
def test_ablation_switches_build_and_train(hparams: dict, spec: FeatureSpec) -> None:
    batch = planted_ctr_batch(spec, 64, seed=8, fairness=True)
    features = tensors(batch.features)
    model = build_model("sarnet", spec, hparams)
    with tf.GradientTape() as tape:
        out = model(features, training=True)
        loss = tf.reduce_mean(tf.keras.losses.binary_crossentropy(batch.labels[:, None], out))
    grads = tape.gradient(loss, model.trainable_variables)
    assert out.shape == (64, 1) and np.all(np.isfinite(out))
    assert all(g is not None for g in grads)  # every module on the path is trained
    names = [w.name for w in model.weights]
    assert model.fc_sample_weight is hparams.get("use_fc_weighting", True)
    assert (model.transform is None) is (hparams.get("use_transform_layer") is False)
    assert any("bias_net" in n for n in names) is hparams.get("use_bias_net", True)
    extract = model.behavior_extract
    attention = hparams.get("attention", "sarnet")
    assert (extract.target_item_attention is not None) is (attention in ("sarnet", "target"))
    assert (extract.target_scenario_attention is not None) is (attention in ("sarnet", "scenario", "hierarchical"))
    assert (extract.concat_attention is not None) is (attention in ("concat", "hierarchical"))


def test_bad_attention_and_missing_sequences_are_clear_errors(spec: FeatureSpec) -> None:
    with pytest.raises(ValueError, match="attention must be one of"):
        build_model("sarnet", spec, {"attention": "din"})
    no_scenario_seq = dataclasses.replace(spec, sequence={
        s: base for s, base in spec.sequence.items() if s not in spec.sequence_scenario_features})
    with pytest.raises(ValueError, match="behaviour scenario context"):
        build_model("sarnet", no_scenario_seq)
    build_model("sarnet", no_scenario_seq, {"attention": "target"})


def test_savedmodel_roundtrip(model: tf.keras.Model, spec: FeatureSpec, test_batch: PlantedBatch,
                              tmp_path: pathlib.Path) -> None:
    features = {k: tf.constant(v[:64]) for k, v in without_fc(test_batch.features).items()}
    assert_reload_predicts_the_same(model, spec, features, tmp_path / "sarnet")
