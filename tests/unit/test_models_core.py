"""The model registry, the shared layers, and the model contract of every registered model."""
from __future__ import annotations

import pathlib

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from msrec.schemas.feature_config import FAIRNESS_COEF, TIME_GAP_FEATURE, FeatureSpec
from msrec.models import layers
from msrec.models.papers.sarnet import time_gap_bucket
from msrec.models.base import example_inputs
from msrec.models.registry import (UnknownModelError, build_model, default_hparams, merge_hparams,
                                   model_names)
from msrec.models.synthetic import planted_ctr_batch
from support.models import assert_reload_predicts_the_same, make_spec, tensors, without_fc

SEED_MODELS = ("sarnet", "mmoe", "shared_bottom", "mix")


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    return make_spec()


@pytest.fixture(scope="module")
def batch(spec: FeatureSpec) -> dict[str, tf.Tensor]:
    return tensors(planted_ctr_batch(spec, 16, seed=3, fairness=True).features)


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_seed_models() -> None:
    assert set(SEED_MODELS) <= set(model_names())


def test_unknown_model_names_the_known_ones(spec: FeatureSpec) -> None:
    with pytest.raises(UnknownModelError) as err:
        build_model("sarnett", spec)
    for name in SEED_MODELS:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ["sarnet", "mmoe", "pepnet"])
def test_embeddings_l2_penalises_every_table(spec: FeatureSpec, batch: dict[str, tf.Tensor], name: str) -> None:
    assert default_hparams(name)["embeddings_l2"] == 0.0
    model = build_model(name, spec, {"embeddings_l2": 1e-4})
    model(without_fc(batch), training=True)
    tables = [w for w in model.trainable_weights if "emb_" in w.name]
    assert tables
    penalty = sum(1e-4 * float(tf.reduce_sum(tf.square(w))) for w in tables if "time_gap" not in w.name)
    np.testing.assert_allclose(float(tf.add_n(model.losses)), penalty, rtol=1e-4)


def test_hparams_merge_defaults_and_reject_bad_overrides() -> None:
    defaults = default_hparams("mmoe")
    assert defaults["num_experts"] == 8 and defaults["embedding_dim"] == 16 and defaults["learning_rate"] == 3e-3
    merged = merge_hparams("mmoe", {"num_experts": 4.0, "expert_units": [32], "learning_rate": 1})
    assert merged["num_experts"] == 4 and isinstance(merged["num_experts"], int)
    assert merged["expert_units"] == (32,) and merged["learning_rate"] == 1.0
    with pytest.raises(ValueError, match="no hparams .*num_expert"):
        merge_hparams("mmoe", {"num_expert": 4})
    with pytest.raises(ValueError, match="num_experts"):
        merge_hparams("mmoe", {"num_experts": "8"})
    with pytest.raises(ValueError, match="num_experts"):
        merge_hparams("mmoe", {"num_experts": 2.5})
    with pytest.raises(ValueError, match="use_bias_net"):
        merge_hparams("sarnet", {"use_bias_net": 1})


# --------------------------------------------------------------------------- shared layers


def test_scenario_matmul_matches_a_per_example_gather() -> None:
    rng = np.random.default_rng(0)
    kernel = tf.Variable(rng.normal(size=(5, 3, 7, 4)).astype(np.float32))
    x = tf.constant(rng.normal(size=(11, 3, 7)).astype(np.float32))
    scenario = tf.constant(rng.integers(0, 5, 11), tf.int32)
    probe = tf.constant(rng.normal(size=(11, 3, 4)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        got = layers.scenario_matmul(x, scenario, kernel)
        want = tf.einsum("bgi,bgio->bgo", x, tf.gather(kernel, scenario))
        loss_got, loss_want = tf.reduce_sum(got * probe), tf.reduce_sum(want * probe)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(loss_got, x), tape.gradient(loss_want, x), rtol=1e-5, atol=1e-5)
    d_kernel = tape.gradient(loss_got, kernel)
    np.testing.assert_allclose(d_kernel, tf.convert_to_tensor(tape.gradient(loss_want, kernel)),
                               rtol=1e-5, atol=1e-5)
    unused = sorted(set(range(5)) - set(scenario.numpy().tolist()))
    assert unused and np.all(d_kernel.numpy()[unused] == 0.0)


def test_scenario_dense_uses_the_example_scenario_parameters() -> None:
    rng = np.random.default_rng(1)
    dense = layers.ScenarioDense(3, num_scenarios=4)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    scenario = np.array([0, 1, 2, 3, 1, 1], np.int32)
    dense(x, scenario)
    dense.bias.assign(rng.normal(size=dense.bias.shape).astype(np.float32))
    kernel, bias = dense.kernel.numpy()[:, 0], dense.bias.numpy()[:, 0]
    want = np.stack([x[b] @ kernel[s] + bias[s] for b, s in enumerate(scenario)])
    np.testing.assert_allclose(dense(x, scenario), want, rtol=1e-5, atol=1e-5)


def test_identity_initialised_scenario_dense_is_the_identity() -> None:
    x = np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32)
    dense = layers.ScenarioDense(6, num_scenarios=3, kernel_initializer="identity")
    np.testing.assert_allclose(dense(x, np.array([0, 1, 2, 2])), x, rtol=1e-6)
    with pytest.raises(ValueError, match="fan_in == units"):
        layers.ScenarioDense(5, num_scenarios=3, kernel_initializer="identity")(x, np.array([0, 1, 2, 2]))


def test_masked_softmax_puts_no_weight_on_padding() -> None:
    logits = tf.constant([[1.0, 5.0, -2.0, 3.0], [0.5, 0.5, 9.0, 9.0], [1.0, 2.0, 3.0, 4.0]])
    mask = tf.constant([[True, False, True, True], [True, True, False, False], [False] * 4])
    w = layers.masked_softmax(logits, mask).numpy()
    assert np.all(w[~mask.numpy()] == 0.0)
    np.testing.assert_allclose(w[:2].sum(axis=1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(w[1, :2], [0.5, 0.5], rtol=1e-6)
    assert np.all(w[2] == 0.0)  # nothing valid: zeros, not NaN


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 5), length=st.integers(1, 7), dim=st.integers(1, 9), query_dim=st.integers(1, 9),
       seed=st.integers(0, 2 ** 16))
def test_feed_forward_attention_is_the_mlp_over_the_concatenated_pair(batch: int, length: int, dim: int,
                                                                     query_dim: int, seed: int) -> None:
    """The regrouped first layer computes DIN's psi = MLP([k, q, k - q, k * q]) with the same weights."""
    rng = np.random.default_rng(seed)
    query = tf.constant(rng.normal(size=(batch, query_dim)), tf.float32)
    keys = tf.constant(rng.normal(size=(batch, length, dim)), tf.float32)
    mask = tf.constant(rng.random((batch, length)) < 0.7)
    att = layers.FeedForwardAttention((8, 4))
    weights = att((query, keys), mask=mask).numpy()
    q = att.query_projection(query) if att.query_projection is not None else query
    q = tf.broadcast_to(q[:, tf.newaxis, :], tf.shape(keys))
    logits = tf.squeeze(att.score(att.mlp(tf.concat([keys, q, keys - q, keys * q], axis=-1))), axis=-1)
    np.testing.assert_allclose(weights, layers.masked_softmax(logits, mask).numpy(), rtol=1e-5, atol=1e-6)


def test_feature_embedding_shares_tables_and_pools_multi_values(spec: FeatureSpec,
                                                                 batch: dict[str, tf.Tensor]) -> None:
    emb = layers.FeatureEmbedding(spec, dim=8)
    item = batch["item_id"].numpy()
    seq = np.array(batch["seq_item_id"])
    seq[0, 0] = item[0]
    out = emb({**batch, "seq_item_id": tf.constant(seq)})
    np.testing.assert_array_equal(out["seq_item_id"][0, 0], out["item_id"][0])  # one table
    assert out["seq_item_id"].shape == (16, spec.sequence_length, 8)
    assert emb.behaviour_items(out).shape == (16, spec.sequence_length, 8 * len(spec.sequence_item_features))
    assert emb.target_item(out).shape == (16, 8 * len(spec.sequence_item_features))
    # A multi-valued [B, K] feature: the mean of its non-padding values' embeddings.
    table = emb.tables["city"].embeddings.numpy()
    multi = emb._lookup("city", tf.constant([[1, 3, 0], [0, 0, 0]], tf.int64)).numpy()
    np.testing.assert_allclose(multi[0], (table[1] + table[3]) / 2, rtol=1e-6)
    assert np.all(multi[1] == 0.0)
    # [B, 1] ids embed like [B] ids.
    column = {**batch, "gender": batch["gender"][:, tf.newaxis]}
    np.testing.assert_array_equal(emb(column)["gender"], out["gender"])
    with pytest.raises(ValueError, match="lack features .*'brand'"):
        emb({k: v for k, v in batch.items() if k != "brand"})


def test_expert_group_shapes_and_scenario_ownership() -> None:
    x = tf.random.stateless_normal([5, 6], seed=[1, 2])
    shared = layers.ExpertGroup(3, (8, 4))
    out = shared(x)
    assert out.shape == (5, 3, 4)
    assert not np.allclose(out[:, 0], out[:, 1])  # independent experts
    owned = layers.ExpertGroup(2, (4,), num_scenarios=3)
    assert owned(x, tf.constant([0, 1, 2, 0, 1])).shape == (5, 2, 4)
    with pytest.raises(ValueError, match="scenario index"):
        layers.ExpertGroup(2, (4,), num_scenarios=3)(x)


# --------------------------------------------------------------------------- every registered model


@pytest.mark.parametrize("name", model_names())
def test_model_contract(name: str, spec: FeatureSpec, batch: dict[str, tf.Tensor]) -> None:
    model = build_model(name, spec)
    assert isinstance(model.fc_sample_weight, bool)
    assert dict(model.hparams) == merge_hparams(name)
    train_out = model(batch, training=True)  # with fairness_coef, as the trainer calls it
    serve_out = model(without_fc(batch), training=False)  # as the serving signature calls it
    for out in (train_out, serve_out):
        assert out.shape == (16, 1) and out.dtype == tf.float32
        assert np.all(np.isfinite(out)) and np.all((out > 0) & (out < 1))
    columns = {k: (v[:, tf.newaxis] if v.shape.rank == 1 else v) for k, v in without_fc(batch).items()}
    np.testing.assert_allclose(model(columns, training=False), serve_out, rtol=1e-6)  # [B, 1] inputs too
    # sequence.time_gap on: the inputs carry seq_time_gap buckets; SAR-Net reads them, the rest ignore them
    gaps = tf.random.stateless_uniform(batch["seq_item_id"].shape, [4, 2], 0, 40 * 86400.0)
    timed = {**without_fc(batch), TIME_GAP_FEATURE: time_gap_bucket(gaps, batch["seq_item_id"] != 0)}
    timed_out = model(timed, training=False).numpy()
    assert np.all(np.isfinite(timed_out)) and np.all((timed_out > 0) & (timed_out < 1))
    if name != "sarnet":
        np.testing.assert_allclose(timed_out, serve_out, rtol=1e-6)


@pytest.mark.parametrize("name", model_names())
def test_oov_and_scenario_index(name: str, spec: FeatureSpec, batch: dict[str, tf.Tensor]) -> None:
    """One training step on known scenarios; the OOV scenario (its slot never trained) stays finite,
    and changing nothing but the scenario index changes the prediction."""
    model = build_model(name, spec)
    labels = tf.constant(np.arange(16) % 2, tf.float32)[:, tf.newaxis]
    optimizer = tf.keras.optimizers.Adam(1e-2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.keras.losses.binary_crossentropy(labels, model(batch, training=True)))
        loss += tf.add_n(model.losses) if model.losses else 0.0
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients([(g, v) for g, v in zip(grads, model.trainable_variables) if g is not None])
    serving = without_fc(batch)
    oov = spec.num_scenarios - 1
    oov_batch = {**serving, spec.scenario_feature: tf.fill([16], tf.constant(oov, tf.int64))}
    oov_out = model(oov_batch, training=False).numpy()
    assert np.all(np.isfinite(oov_out)) and np.all((oov_out > 0) & (oov_out < 1))
    other = {**serving, spec.scenario_feature: (serving[spec.scenario_feature] % 2) + 1}
    moved = np.abs(model(other, training=False).numpy() - model(serving, training=False).numpy())
    changed = (other[spec.scenario_feature] != serving[spec.scenario_feature]).numpy()
    assert changed.any() and np.all(moved[changed] > 1e-6)
    np.testing.assert_allclose(moved[~changed], 0.0, atol=1e-6)  # other examples are untouched


@pytest.mark.parametrize("name", model_names())
def test_weights_restore_into_a_fresh_model(name: str, spec: FeatureSpec, batch: dict[str, tf.Tensor],
                                            tmp_path: pathlib.Path) -> None:
    model = build_model(name, spec)
    model(batch, training=False)
    want = model(without_fc(batch), training=False).numpy()
    model.save_weights(str(tmp_path / "ckpt"))
    fresh = build_model(name, spec)
    fresh(example_inputs(spec, fairness=True))
    assert not np.allclose(fresh(without_fc(batch), training=False), want)
    fresh.load_weights(str(tmp_path / "ckpt"))
    np.testing.assert_allclose(fresh(without_fc(batch), training=False), want, rtol=1e-6)


@pytest.mark.parametrize("name", model_names())
def test_prior_shifts_the_logit_by_the_scenario_log_odds(name: str, spec: FeatureSpec,
                                                          batch: dict[str, tf.Tensor]) -> None:
    """Identity: with the same weights, logit(with prior) - logit(without) = log(p_s / (1 - p_s))."""
    rates = np.linspace(0.01, 0.3, spec.num_scenarios)
    plain = build_model(name, spec)
    primed = build_model(name, spec, {"prior_ctr": tuple(rates)})
    serving = without_fc(batch)
    plain(serving, training=False)
    primed(serving, training=False)
    primed.set_weights(plain.get_weights())
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    shift = logit(primed(serving, training=False).numpy().astype(np.float64)) - logit(
        plain(serving, training=False).numpy().astype(np.float64))
    scenario = serving[spec.scenario_feature].numpy()
    np.testing.assert_allclose(shift.reshape(-1), logit(rates[scenario]), atol=2e-3)


def test_prior_must_give_one_rate_in_0_1_per_scenario(spec: FeatureSpec) -> None:
    with pytest.raises(ValueError, match="one per scenario"):
        build_model("mix", spec, {"prior_ctr": (0.1, 0.2)})
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        build_model("mix", spec, {"prior_ctr": (0.0,) * spec.num_scenarios})


def test_savedmodel_roundtrip(spec: FeatureSpec, batch: dict[str, tf.Tensor], tmp_path: pathlib.Path) -> None:
    """MMoE stands for the baselines (shared_bottom and mix use the same layer types); SAR-Net is
    exported in tests/test_sarnet.py. A SavedModel export costs ~10 s of CPU per model."""
    model = build_model("mmoe", spec, {"prior_ctr": tuple(np.linspace(0.01, 0.3, spec.num_scenarios))})
    model(batch, training=True)
    assert_reload_predicts_the_same(model, spec, without_fc(batch), tmp_path / "mmoe")  # the prior goes along


def test_mmoe_learns_scenario_and_behaviour_signal() -> None:
    spec = make_spec(sequence_length=20, user_id=50, item_id=100, category=20, brand=20)
    train = planted_ctr_batch(spec, 12288, seed=1)
    test = planted_ctr_batch(spec, 2000, seed=2)
    tf.keras.utils.set_random_seed(0)
    model = build_model("mmoe", spec)
    model.compile(tf.keras.optimizers.Adam(3e-3))
    model.fit(train.features, train.labels, batch_size=256, epochs=3, verbose=0)
    auc = roc_auc_score(test.labels, model(tensors(test.features), training=False).numpy().ravel())
    oracle = roc_auc_score(test.labels, test.click_prob)
    print(f"mmoe test AUC {auc:.3f} (oracle {oracle:.3f})")
    assert auc > 0.7
