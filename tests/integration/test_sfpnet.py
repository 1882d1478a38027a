"""SFPNet: the model contract, its ablations, SavedModel export, learning, and scenario-tailored behaviours."""
import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from support.models import (assert_probabilities, assert_reload_predicts_the_same, small_spec, train_on_planted,
                              with_scenario)
from msrec.schemas.feature_config import FeatureSpec
from msrec.models.registry import build_model, default_hparams
from msrec.models.training import loop
from msrec.models.papers.sfpnet import DistributionAwarePooling
from msrec.models.synthetic import planted_ctr_batch

# Narrow layers keep the tests fast; the structure (every module, two stacked blocks) is the paper's.
HP = {"embedding_dim": 8, "num_blocks": 2, "gate_units": 16, "aggregation_units": 32,
      "attention_units": (16,), "dnn_units": (32, 16)}


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    return small_spec()


@pytest.mark.parametrize("ablation", [
    {"use_dap": False}, {"use_sam": False}, {"use_rtm": False}, {"use_sdnn": False}, {"use_stb": False}])
def test_each_ablation_builds_and_every_remaining_weight_is_trained(spec, ablation):
    model = build_model("sfpnet", spec, {**HP, **ablation})
    data = planted_ctr_batch(spec, 32, seed=1)
    x = {k: tf.constant(v) for k, v in data.features.items()}
    with tf.GradientTape() as tape:
        p = model(x, training=True)
        loss = tf.keras.losses.binary_crossentropy(data.labels[:, None], p)
    assert_probabilities(p.numpy(), 32)
    grads = tape.gradient(loss, model.trainable_variables)
    dead = [v.name for v, g in zip(model.trainable_variables, grads)
            if g is None or not np.any(tf.convert_to_tensor(g).numpy())]
    assert not dead
    assert len(model.blocks) == (0 if "use_stb" in ablation else 2)


def test_distribution_aware_pooling_is_the_mean_and_std_of_the_valid_behaviours():
    values = np.array([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]], np.float32)  # the last one is padding
    mask = tf.constant([[True, True, False]])
    pooled = DistributionAwarePooling()(tf.constant(values), mask).numpy()
    np.testing.assert_allclose(pooled, [[2.0, 4.0, 1.0, 2.0]], atol=1e-3)
    mean_only = DistributionAwarePooling(use_std=False)(tf.constant(values), mask).numpy()
    np.testing.assert_allclose(mean_only, [[2.0, 4.0]], atol=1e-6)
    empty = DistributionAwarePooling()(tf.constant(values), tf.zeros([1, 3], tf.bool)).numpy()
    assert np.all(np.isfinite(empty)) and np.abs(empty).max() < 1e-2


def test_savedmodel_reload_gives_the_same_predictions(spec, tmp_path):
    model = build_model("sfpnet", spec, {**HP, "num_blocks": 1})  # one block holds every module type
    assert_reload_predicts_the_same(model, spec, planted_ctr_batch(spec, 24, seed=2).features, tmp_path)


@pytest.fixture(scope="module")
def trained(spec) -> tuple[tf.keras.Model, float, float]:
    """SFPNet after a short training run on the planted signal, its test AUC and the best AUC."""
    return train_on_planted("sfpnet", spec, HP, epochs=4)


def test_learns_the_planted_scenario_and_behaviour_signal(trained):
    _, auc, best = trained  # best: what the true click probabilities reach
    assert 0.68 < auc <= best + 0.02, (auc, best)


def test_tailored_behaviours_differ_between_scenarios_for_the_same_sequence(spec, trained):
    data = planted_ctr_batch(spec, 8, seed=3, min_history=2).features
    valid = data[spec.sequence_item_features[0]] != 0

    def scenario_gap(model: tf.keras.Model) -> np.ndarray:
        """Per real behaviour, the largest change of its tailored vector from scenario 1 to 2."""
        a = model.tailored_behaviours(with_scenario(data, 1, spec)).numpy()
        b = model.tailored_behaviours(with_scenario(data, 2, spec)).numpy()
        return np.abs(a - b).max(axis=-1)[valid]

    assert scenario_gap(trained[0]).min() > 1e-3  # every behaviour is re-encoded for the scenario
    # The scenario reaches the blocks only through SAM's gate: without SAM, or without any block,
    # the behaviour representations are exactly the same in every scenario.
    assert scenario_gap(build_model("sfpnet", spec, {**HP, "use_sam": False})).max() == 0.0
    assert scenario_gap(build_model("sfpnet", spec, {**HP, "use_stb": False})).max() == 0.0


def test_the_papers_training_settings_are_the_defaults_and_the_rate_decays_every_epoch(spec):
    """§5.2: Adam at 0.001 decayed by 0.9, batch size 512; the training loop applies the decay."""
    defaults = default_hparams("sfpnet")
    assert (defaults["learning_rate"], defaults["lr_decay"], defaults["batch_size"]) == (1e-3, 0.9, 512)
    tf.keras.utils.set_random_seed(0)
    model = build_model("sfpnet", spec, HP)
    data = planted_ctr_batch(spec, 1024, seed=1)
    train = tf.data.Dataset.from_tensor_slices((data.features, data.labels)).batch(defaults["batch_size"])
    val = tf.data.Dataset.from_tensor_slices((data.features, data.labels)).batch(1024)
    stats = loop.train_model(model, train, val, learning_rate=defaults["learning_rate"],
                             batch_size=defaults["batch_size"], max_epochs=3, patience=3)
    assert stats["epochs_run"] == 3
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3 * 0.9 ** 2, rel=1e-6)
    assert not loop.lr_decay(build_model("sfpnet", spec, {**HP, "lr_decay": 1.0}), 1e-3)
