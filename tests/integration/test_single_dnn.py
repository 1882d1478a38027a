import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from support.models import (SMALL, assert_probabilities, assert_reload_predicts_the_same, batch, predict, small_spec,
                              train_auc, train_step, with_scenario)
from msrec.models.registry import build_model

HP = {**SMALL, "hidden_units": (16, 8)}


@pytest.fixture(scope="module")
def spec():
    return small_spec()


@pytest.mark.parametrize("overrides", [
    {"separate_embeddings": False},
    {"numeric": "concat"},
    {"embeddings_l2": 1e-4},
    {"dropout": 0.2},
])
def test_ablation_switches_build_and_run(spec, overrides):
    model = build_model("single", spec, {**HP, **overrides})
    x, y = batch(spec, 64)
    assert np.isfinite(train_step(model, x, y))
    assert_probabilities(predict(model, x), 64)


def test_every_scenario_has_its_own_embedding_table_rows(spec):
    model = build_model("single", spec, HP)
    x, _ = batch(spec, 4)
    predict(model, x)
    table = model.embedding.tables["item_id"]
    card = spec.cardinality["item_id"]
    assert table.shape == (spec.num_scenarios * card, 8)
    embedded = model.embedding({k: tf.constant(v) for k, v in x.items()}, tf.constant([1, 2, 1, 2]))
    np.testing.assert_array_equal(embedded["item_id"][0], table[card + x["item_id"][0]])
    np.testing.assert_array_equal(embedded["item_id"][1], table[2 * card + x["item_id"][1]])


def _step_on_scenario(model, spec, scenario):
    """One SGD step on examples of ``scenario`` only; predictions of scenarios 1 and 2 before and after."""
    x, y = batch(spec, 64, seed=7)
    probe, _ = batch(spec, 16, seed=8)
    before = {s: predict(model, with_scenario(probe, s, spec)) for s in (1, 2)}
    train_step(model, with_scenario(x, scenario, spec), y, tf.keras.optimizers.SGD(0.5))
    after = {s: predict(model, with_scenario(probe, s, spec)) for s in (1, 2)}
    return before, after


@pytest.mark.parametrize("overrides", [{}, {"embeddings_l2": 1e-3}])
def test_a_step_on_one_scenario_leaves_every_other_scenario_unchanged(spec, overrides):
    model = build_model("single", spec, {**HP, **overrides})
    before, after = _step_on_scenario(model, spec, scenario=1)
    assert np.abs(after[1] - before[1]).max() > 1e-4
    np.testing.assert_array_equal(after[2], before[2])


def test_shared_embeddings_let_one_scenarios_training_move_another(spec):
    model = build_model("single", spec, {**HP, "separate_embeddings": False})
    before, after = _step_on_scenario(model, spec, scenario=1)
    assert np.abs(after[2] - before[2]).max() > 0


def test_saved_model_reload_predicts_the_same(spec, tmp_path):
    model = build_model("single", spec, HP)
    assert_reload_predicts_the_same(model, spec, batch(spec, 16)[0], tmp_path)


def test_learns_the_planted_signal():
    assert train_auc("single", HP) > 0.65
