import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from support.models import (SMALL, assert_probabilities, assert_scenario_rows_learn_only_from_their_scenario, batch,
                              predict, saved_model_predictions, small_spec, train_auc, train_step, with_scenario)
from msrec.models.registry import build_model
from msrec.models.baselines.star import PartitionedNormalization, StarTopologyDense, _rowwise_matmul

# Momentum 0.9: the moving statistics must settle within the few dozen steps of a test run.
HP = {**SMALL, "hidden_units": (16, 8), "auxiliary_units": (8,), "normalization_momentum": 0.9}


@pytest.fixture(scope="module")
def spec():
    return small_spec()


@pytest.mark.parametrize("overrides", [
    {"normalization": "batch"},
    {"normalization": "none"},
    {"use_star_topology": False},
    {"use_auxiliary_network": False},
    {"dropout": 0.3},
])
def test_ablation_switches_build_and_run(spec, overrides):
    model = build_model("star", spec, {**HP, **overrides})
    x, y = batch(spec, 64)
    assert np.isfinite(train_step(model, x, y))
    assert_probabilities(predict(model, x), 64)
    names = {v.name.split("/")[-1].split(":")[0] for v in model.weights}
    assert ("scenario_kernel" in names) == overrides.get("use_star_topology", True)
    assert any("auxiliary" in v.name for v in model.weights) == overrides.get("use_auxiliary_network", True)


def test_unknown_normalization_is_rejected(spec):
    with pytest.raises(ValueError, match="normalization"):
        build_model("star", spec, {**HP, "normalization": "layer"})


def test_partitioned_normalization_uses_each_scenarios_own_moments():
    pn = PartitionedNormalization(num_scenarios=4, momentum=0.0)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(5.0, 1.0, (200, 3)), rng.normal(-3.0, 4.0, (100, 3))]).astype(np.float32)
    scenario = tf.constant([1] * 200 + [2] * 100)
    z = pn(x, scenario, training=True).numpy()
    for rows in (slice(0, 200), slice(200, 300)):
        np.testing.assert_allclose(z[rows].mean(axis=0), 0.0, atol=1e-4)
        np.testing.assert_allclose(z[rows].std(axis=0), 1.0, atol=1e-2)
    # momentum 0: the moving statistics are the last batch's; scenarios 0 and 3 were absent.
    np.testing.assert_allclose(pn.moving_mean.numpy()[1], x[:200].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(pn.moving_variance.numpy()[2], x[200:].var(axis=0), rtol=1e-4)
    np.testing.assert_array_equal(pn.moving_mean.numpy()[[0, 3]], 0.0)
    np.testing.assert_array_equal(pn.moving_variance.numpy()[[0, 3]], 1.0)
    # Inference normalises with the scenario's moving statistics.
    z_inf = pn(x, scenario, training=False).numpy()
    np.testing.assert_allclose(z_inf[:200].mean(axis=0), 0.0, atol=1e-4)


def test_star_weights_are_the_shared_ones_times_the_scenarios():
    layer = StarTopologyDense(3, num_scenarios=4, activation=None)
    x = tf.constant(np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32))
    scenario = tf.constant([0, 1, 2, 2, 1, 3])
    np.testing.assert_allclose(layer(x, scenario), x @ layer.shared_kernel, rtol=1e-5, atol=1e-6)  # W_p = 1 at init
    w_p = np.random.default_rng(2).normal(size=(4, 5, 3)).astype(np.float32)
    b_p = np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32)
    layer.scenario_kernel.assign(w_p)
    layer.scenario_bias.assign(b_p)
    w, b = layer.shared_kernel.numpy(), layer.shared_bias.numpy()
    expected = np.stack([x.numpy()[i] @ (w_p[s] * w) + b_p[s] + b for i, s in enumerate(scenario.numpy())])
    np.testing.assert_allclose(layer(x, scenario), expected, rtol=1e-5, atol=1e-5)


def test_rowwise_matmul_and_its_gradient_match_a_gathered_einsum():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(7, 5)).astype(np.float32))
    kernels = tf.constant(rng.normal(size=(3, 5, 4)).astype(np.float32))
    position = tf.constant([0, 2, 1, 1, 0, 2, 2])
    weights = tf.constant(rng.normal(size=(7, 4)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernels])
        y = _rowwise_matmul(x, position, kernels)
        reference = tf.einsum("bi,bio->bo", x, tf.gather(kernels, position))
        loss, reference_loss = tf.reduce_sum(y * weights), tf.reduce_sum(reference * weights)
    np.testing.assert_allclose(y, reference, rtol=1e-5, atol=1e-5)
    for got, want in zip(tape.gradient(loss, [x, kernels]), tape.gradient(reference_loss, [x, kernels])):
        np.testing.assert_allclose(tf.convert_to_tensor(got), tf.convert_to_tensor(want), rtol=1e-5, atol=1e-5)


def test_changing_only_the_scenario_changes_the_prediction(spec):
    model = build_model("star", spec, HP)
    x, y = batch(spec, 64)
    train_step(model, x, y)  # moving statistics, W_p and b_p now differ by scenario
    p1, p2 = predict(model, with_scenario(x, 1, spec)), predict(model, with_scenario(x, 2, spec))
    assert np.abs(p1 - p2).min() > 1e-6


def test_a_scenarios_parameters_only_learn_from_its_own_examples(spec):
    tables = assert_scenario_rows_learn_only_from_their_scenario(build_model("star", spec, HP), spec)
    assert tables == 2 * 3 + 2  # W_p, b_p of 3 star layers; gamma_p, beta_p of PN


def test_saved_model_reload_predicts_the_same(spec, tmp_path):
    model = build_model("star", spec, HP)
    x, y = batch(spec, 16)
    train_step(model, x, y)
    expected = predict(model, x)
    np.testing.assert_allclose(saved_model_predictions(model, spec, x, str(tmp_path)), expected, rtol=1e-5, atol=1e-6)


def test_learns_the_planted_signal():
    assert train_auc("star", HP) > 0.65
