"""HierRec: the model contract, its ablations, SavedModel export, learning, and its dynamic weights."""
import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from support.models import SMALL, assert_probabilities, assert_reload_predicts_the_same, small_spec, train_on_planted
from msrec.schemas.feature_config import FeatureSpec
from msrec.models.registry import build_model
from msrec.models.synthetic import planted_ctr_batch


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    return small_spec()


@pytest.mark.parametrize("ablation, explicit, heads", [
    ({}, True, 4),
    ({"use_multi_head": False}, True, 1),  # −MI
    ({"use_implicit": False}, True, None),  # −I
    ({"use_explicit": False}, False, 4),  # −E
])
def test_each_ablation_removes_its_module_and_every_remaining_weight_is_trained(spec, ablation, explicit, heads):
    model = build_model("hierrec", spec, ablation)
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
    conditions = model.scenario_conditions(x)
    assert (conditions["explicit"] is not None) == explicit
    if heads is None:
        assert conditions["implicit"] is None
    else:
        assert conditions["implicit"].shape[:2] == (32, heads)


def test_savedmodel_reload_gives_the_same_predictions(spec, tmp_path):
    model = build_model("hierrec", spec, SMALL)
    assert_reload_predicts_the_same(model, spec, planted_ctr_batch(spec, 24, seed=2).features, tmp_path)


@pytest.fixture(scope="module")
def trained(spec) -> tuple[tf.keras.Model, float, float]:
    """HierRec after a short training run on the planted signal, its test AUC and the best AUC."""
    return train_on_planted("hierrec", spec, SMALL, epochs=5)


def test_learns_the_planted_scenario_and_behaviour_signal(trained):
    _, auc, best = trained  # best: what the true click probabilities reach
    assert 0.65 < auc <= best + 0.02, (auc, best)


def _in_scenario(features: dict[str, np.ndarray], spec: FeatureSpec, index: int) -> dict[str, np.ndarray]:
    """The same examples moved to one scenario: every scenario feature (id, type, theme) set to ``index``."""
    return {k: np.full_like(v, index) if k in spec.groups["scenario"] else v for k, v in features.items()}


def test_generated_weights_depend_on_the_scenario_not_only_on_the_features(spec, trained):
    model = trained[0]
    x = planted_ctr_batch(spec, 8, seed=3).features
    in_a = model.scenario_conditions(_in_scenario(x, spec, 1))
    in_b = model.scenario_conditions(_in_scenario(x, spec, 2))

    def gap(a: tf.Tensor, b: tf.Tensor) -> np.ndarray:
        """Largest difference per example; exactly 0 where the inputs of a row do not matter."""
        return np.abs(a.numpy() - b.numpy()).reshape(a.shape[0], -1).max(axis=1)

    # Same features, other scenario: every example gets other generated weights, for the explicit
    # layer and for the implicit layers (through the scenario-aware attention).
    assert gap(in_a["explicit"], in_b["explicit"]).min() > 1e-3
    assert gap(in_a["implicit"], in_b["implicit"]).min() > 1e-5
    # Within one scenario the explicit weights are the scenario's alone (coarse-grained); the implicit
    # weights also follow each example's common features (fine-grained).
    explicit, implicit = in_a["explicit"], in_a["implicit"]
    assert gap(explicit, tf.broadcast_to(explicit[:1], explicit.shape)).max() < 1e-6
    assert gap(implicit, tf.broadcast_to(implicit[:1], implicit.shape))[1:].min() > 1e-5
