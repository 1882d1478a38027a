import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from support.models import (SMALL, assert_probabilities, assert_reload_predicts_the_same,
                              assert_scenario_moves_every_prediction, batch, predict, small_spec, tensors, train_auc,
                              train_step, with_scenario)
from msrec.models.baselines.adasparse import DomainAwarePruner
from msrec.models.registry import build_model

HP = {**SMALL, "hidden_units": (16, 8)}


@pytest.fixture(scope="module")
def spec():
    return small_spec()


@pytest.mark.parametrize("overrides", [
    {"weighting": "binarization"},
    {"weighting": "scaling"},
    {"pruner_uses_hidden": False},
    {"sparsity_regularization": False},
    {"use_pruner": False},
    {"dropout": 0.2},
])
def test_ablation_switches_build_and_run(spec, overrides):
    model = build_model("adasparse", spec, {**HP, **overrides})
    x, y = batch(spec, 64)
    assert np.isfinite(train_step(model, x, y))
    assert_probabilities(predict(model, x), 64)
    assert len(model.pruners) == (0 if overrides.get("use_pruner") is False else 2)


def test_bad_weighting_or_sparsity_band_is_rejected(spec):
    with pytest.raises(ValueError, match="weighting"):
        build_model("adasparse", spec, {**HP, "weighting": "sign"})
    with pytest.raises(ValueError, match="sparsity_min"):
        build_model("adasparse", spec, {**HP, "sparsity_min": 0.6, "sparsity_max": 0.4})


def test_binarized_structure_is_a_per_scenario_subnetwork(spec):
    tf.keras.utils.set_random_seed(3)
    model = build_model("adasparse", spec, {**HP, "weighting": "binarization", "pruner_uses_hidden": False,
                                            "hidden_units": (64, 32)})
    x, _ = batch(spec, 16)
    for name in spec.groups["scenario"]:  # one scenario profile (type, theme ...) for every example
        x[name] = np.full_like(x[name], x[name][0])
    masks = {s: model.weighting_factors(tensors(with_scenario(x, s, spec))) for s in (1, 2)}
    for s, layers in masks.items():
        for pi in layers:
            pi = pi.numpy()
            assert set(np.unique(pi)) <= {0.0, 1.0}
            assert np.all(pi == pi[0])  # e_d only: one structure for the whole scenario
    assert any(np.any(a.numpy()[0] != b.numpy()[0]) for a, b in zip(masks[1], masks[2]))


def test_fusion_prunes_the_factors_below_epsilon(spec):
    tf.keras.utils.set_random_seed(4)
    model = build_model("adasparse", spec, {**HP, "epsilon": 1.0, "hidden_units": (64, 32)})
    x, _ = batch(spec, 32)
    factors = np.concatenate([pi.numpy().ravel() for pi in model.weighting_factors(tensors(x))])
    kept = factors[factors > 0]
    assert 0 < kept.size < factors.size
    assert np.all((kept >= 1.0) & (kept < 2.0))


@pytest.mark.parametrize("band, sign", [((0.9, 1.0), 1.0), ((0.0, 0.0), -1.0), ((0.0, 1.0), 0.0)])
def test_flexible_sparsity_regulariser_pushes_the_pruned_ratio_into_its_band(band, sign):
    tf.keras.utils.set_random_seed(5)
    pruner = DomainAwarePruner(32, "binarization", sparsity_lambda=0.01, sparsity_min=band[0], sparsity_max=band[1])
    condition = tf.constant(np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32))
    pi = pruner(condition, training=True)
    ratio = np.mean(pruner.dense(condition).numpy() <= 0)
    assert 0.0 < ratio < 0.9
    [loss] = pruner.losses
    np.testing.assert_allclose(float(loss), sign * 0.01 * float(tf.reduce_mean(pi)), rtol=1e-6)
    assert float(pruner.step) == 1.0 and float(pruner.alpha) == pytest.approx(1.01)
    pruner(condition, training=False)
    assert pruner.losses == []  # a training-only objective


def test_changing_only_the_scenario_changes_the_prediction(spec):
    model = build_model("adasparse", spec, HP)
    assert_scenario_moves_every_prediction(model, spec, batch(spec, 16)[0])


def test_saved_model_reload_predicts_the_same(spec, tmp_path):
    model = build_model("adasparse", spec, HP)
    assert_reload_predicts_the_same(model, spec, batch(spec, 16)[0], tmp_path)


def test_learns_the_planted_signal():
    assert train_auc("adasparse", HP) > 0.65
