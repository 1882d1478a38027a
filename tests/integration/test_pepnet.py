import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from support.models import (SMALL, assert_probabilities, assert_reload_predicts_the_same,
                              assert_scenario_moves_every_prediction, batch, predict, small_spec, tensors, train_auc,
                              train_step, with_scenario)
from msrec.models.registry import build_model

HP = {**SMALL, "hidden_units": (16, 8), "gate_units": 8}


@pytest.fixture(scope="module")
def spec():
    return small_spec()


@pytest.mark.parametrize("overrides", [{"use_epnet": False}, {"use_ppnet": False},
                                       {"use_epnet": False, "use_ppnet": False}])
def test_ablation_switches_build_and_run(spec, overrides):
    model = build_model("pepnet", spec, {**HP, **overrides})
    x, y = batch(spec, 64)
    assert np.isfinite(train_step(model, x, y))
    assert_probabilities(predict(model, x), 64)
    assert (model.epnet is not None) == overrides.get("use_epnet", True)
    assert (model.ppnet is not None) == overrides.get("use_ppnet", True)


def test_prior_features_must_be_categorical_features(spec):
    with pytest.raises(ValueError, match="prior_features"):
        build_model("pepnet", spec, {**HP, "prior_features": ("user_id", "author_id")})


def test_epnet_scales_every_field_by_a_scenario_dependent_factor_in_0_2(spec):
    model = build_model("pepnet", spec, HP)
    x, _ = batch(spec, 16)
    fields = len(spec.categorical) + len(spec.numeric) + 1  # + the pooled behaviour sequence
    d1 = model.epnet_gate(tensors(with_scenario(x, 1, spec))).numpy()
    d2 = model.epnet_gate(tensors(with_scenario(x, 2, spec))).numpy()
    assert d1.shape == (16, fields)
    assert np.all((d1 > 0) & (d1 < 2))
    assert np.abs(d1 - d2).min() > 1e-7


def test_epnet_gate_does_not_train_the_general_embeddings(spec):
    """sg(E): the gate's gradient reaches the domain features' embeddings, not the others'."""
    model = build_model("pepnet", spec, HP)
    x, _ = batch(spec, 16)
    predict(model, x)
    tables = model.inputs_layer.embedding.tables
    with tf.GradientTape() as tape:
        delta = model.epnet_gate(tensors(x))
    grads = tape.gradient(delta, [tables["scenario_id"].embeddings, tables["user_id"].embeddings])
    assert np.abs(tf.convert_to_tensor(grads[0]).numpy()).sum() > 0
    assert grads[1] is None


def test_changing_only_the_scenario_changes_the_prediction(spec):
    model = build_model("pepnet", spec, HP)
    assert_scenario_moves_every_prediction(model, spec, batch(spec, 16)[0])


def test_saved_model_reload_predicts_the_same(spec, tmp_path):
    model = build_model("pepnet", spec, HP)
    assert_reload_predicts_the_same(model, spec, batch(spec, 16)[0], tmp_path)


def test_learns_the_planted_signal():
    assert train_auc("pepnet", HP) > 0.65
