"""Helpers shared by the model tests: the generated world's FeatureSpec with small vocabularies,
a small FeatureSpec from the project's feature config, planted-signal data, a short training run,
and a SavedModel round trip.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from msrec.schemas import default_feature_config
from msrec.schemas.feature_config import FAIRNESS_COEF, FeatureSpec, load_feature_config
from msrec.models.base import feature_signature
from msrec.models.registry import build_model
from msrec.models.synthetic import planted_ctr_batch

CONFIG = default_feature_config()
SEQUENCE_LENGTH = 8
# Small fake vocabularies: the tests exercise the models' logic, not their capacity.
VOCAB = {"user_id": 40, "item_id": 60, "scenario_id": 4, "category": 8, "brand": 12, "city": 6,
         "theme": 5, "scenario_type": 3}
# Narrow layers keep every model's tests fast on two shared cores.
SMALL = {"embedding_dim": 8, "attention_units": (16,)}


def small_spec(vocab: Mapping[str, int] | None = None) -> FeatureSpec:
    config = load_feature_config(CONFIG)
    sizes = {name: (vocab or VOCAB).get(name, 4) for name in config.categorical}
    return dataclasses.replace(FeatureSpec.from_config(config, sizes), sequence_length=SEQUENCE_LENGTH)


def make_spec(sequence_length: int | None = None, **vocab: int) -> FeatureSpec:
    """The generated dataset's FeatureSpec with small fake vocabularies (4 unless given)."""
    config = load_feature_config(CONFIG)
    spec = FeatureSpec.from_config(config, {n: vocab.get(n, 4) for n in config.categorical})
    return dataclasses.replace(spec, sequence_length=sequence_length or spec.sequence_length)


def without_fc(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {k: v for k, v in features.items() if k != FAIRNESS_COEF}


def batch(spec: FeatureSpec, n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(features, labels)`` of ``n`` planted-signal examples."""
    planted = planted_ctr_batch(spec, n, seed=seed, min_history=2)
    return planted.features, planted.labels


def tensors(features: Mapping[str, np.ndarray]) -> dict[str, tf.Tensor]:
    return {k: tf.constant(v) for k, v in features.items()}


def predict(model: tf.keras.Model, features: Mapping[str, np.ndarray]) -> np.ndarray:
    return model(tensors(features), training=False).numpy()


def with_scenario(features: Mapping[str, np.ndarray], scenario: int, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """The same examples with only the scenario index changed."""
    out = dict(features)
    out[spec.scenario_feature] = np.full_like(features[spec.scenario_feature], scenario)
    return out


def train_auc(name: str, hparams: Mapping[str, Any], n_train: int = 3000, n_test: int = 1500,
              epochs: int = 3, learning_rate: float = 1e-2) -> float:
    """Test AUC after a short training run on the planted signal."""
    tf.keras.utils.set_random_seed(0)
    spec = small_spec()
    x, y = batch(spec, n_train, seed=1)
    x_test, y_test = batch(spec, n_test, seed=2)
    model = build_model(name, spec, hparams)
    # Eager: for a few dozen small steps, tracing the train function costs more than it saves.
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate), run_eagerly=True)
    model.fit(x, y, batch_size=256, epochs=epochs, verbose=0)
    return float(roc_auc_score(y_test, predict(model, x_test)[:, 0]))


def train_on_planted(name: str, spec: FeatureSpec, hparams: Mapping[str, Any],
                     epochs: int) -> tuple[tf.keras.Model, float, float]:
    """``name`` after a short training run on planted_ctr_batch's signal, its test AUC and the AUC
    the true click probabilities reach."""
    tf.keras.utils.set_random_seed(0)
    model = build_model(name, spec, hparams)
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3))
    train, test = planted_ctr_batch(spec, 4000, seed=10), planted_ctr_batch(spec, 1500, seed=11)
    model.fit(train.features, train.labels, batch_size=128, epochs=epochs, verbose=0)
    auc = roc_auc_score(test.labels, predict(model, test.features)[:, 0])
    return model, auc, roc_auc_score(test.labels, test.click_prob)


def scenario_tables(model: tf.keras.Model, spec: FeatureSpec) -> list[tf.Variable]:
    """The model's per-scenario parameter tables (first axis = scenario index), embeddings aside."""
    return [v for v in model.trainable_variables if v.shape.rank and v.shape[0] == spec.num_scenarios
            and "emb_" not in v.name]


def assert_scenario_rows_learn_only_from_their_scenario(model: tf.keras.Model, spec: FeatureSpec) -> int:
    """A batch of scenario 1 sends BCE gradient to scenario 1's row of every per-scenario table and
    none to scenario 2's (parameters gathered by scenario index); returns the number of tables."""
    x, y = batch(spec, 32)
    x = with_scenario(x, 1, spec)
    with tf.GradientTape() as tape:
        loss = tf.keras.losses.binary_crossentropy(y[:, None], model(tensors(x), training=True))
    tables = scenario_tables(model, spec)
    for var, grad in zip(tables, tape.gradient(loss, tables)):
        grad = tf.convert_to_tensor(grad).numpy()
        assert np.abs(grad[1]).sum() > 0, var.name
        assert np.all(grad[2] == 0), var.name
    return len(tables)


def train_step(model: tf.keras.Model, features: Mapping[str, np.ndarray], labels: np.ndarray,
               optimizer: tf.keras.optimizers.Optimizer | None = None) -> float:
    """One eager Adam (or ``optimizer``) step of the model's own training (its task's BCE plus the
    auxiliary losses); the loss."""
    model.compile(optimizer=optimizer or tf.keras.optimizers.Adam(1e-3), run_eagerly=True)
    return float(model.train_on_batch({k: tf.constant(v) for k, v in features.items()}, labels,
                                      return_dict=True)["loss"])


class _Serving(tf.Module):
    def __init__(self, model: tf.keras.Model, spec: FeatureSpec) -> None:
        super().__init__()
        self.model = model
        self.serve = tf.function(lambda features: {"ctr": self.model(features, training=False)},
                                 input_signature=[feature_signature(spec)])


def saved_model_predictions(model: tf.keras.Model, spec: FeatureSpec, features: Mapping[str, np.ndarray],
                            export_dir: str) -> np.ndarray:
    """Save ``model`` in a tf.Module wrapper, reload it, and predict ``features`` with the reload."""
    tf.saved_model.save(_Serving(model, spec), export_dir)
    loaded = tf.saved_model.load(export_dir)
    return loaded.serve({k: tf.constant(v) for k, v in features.items()})["ctr"].numpy()


def assert_reload_predicts_the_same(model: tf.keras.Model, spec: FeatureSpec, features: Mapping[str, np.ndarray],
                                    export_dir: Any) -> None:
    """The model saved as a SavedModel and reloaded predicts what it predicted before saving."""
    expected = predict(model, features)
    np.testing.assert_allclose(saved_model_predictions(model, spec, features, str(export_dir)), expected,
                               rtol=1e-5, atol=1e-6)


def assert_scenario_moves_every_prediction(model: tf.keras.Model, spec: FeatureSpec,
                                           features: Mapping[str, np.ndarray], tolerance: float = 1e-7) -> None:
    """Changing only the scenario index (1 -> 2) changes every example's prediction."""
    p1, p2 = predict(model, with_scenario(features, 1, spec)), predict(model, with_scenario(features, 2, spec))
    assert np.abs(p1 - p2).min() > tolerance


def assert_probabilities(p: np.ndarray, n: int) -> None:
    assert p.shape == (n, 1) and p.dtype == np.float32
    assert np.all(np.isfinite(p)) and np.all((p > 0.0) & (p < 1.0))
