"""The trainer: the per-scenario click-rate prior computed from transformed examples on disk, the
training objective (the models' tfrs Ranking task) and the training loop's epoch selection on the
validation split."""
from __future__ import annotations

import math

import pathlib

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score
from support.models import SMALL, small_spec, tensors

from msrec.models.registry import build_model
from msrec.models.synthetic import planted_ctr_batch
from msrec.models.training.loop import EarlyStopping, Validation, train_model
from msrec.models.training.trainer import scan_examples, with_prior
from msrec.schemas.feature_config import FAIRNESS_COEF, LABEL


class _TransformOutput:
    """The one method of tft.TFTransformOutput the prior reads: the transformed feature spec."""

    def transformed_feature_spec(self) -> dict[str, tf.io.FixedLenFeature]:
        return {LABEL: tf.io.FixedLenFeature([], tf.int64), "scenario_id": tf.io.FixedLenFeature([], tf.int64),
                "item_id": tf.io.FixedLenFeature([], tf.int64)}


def _write(path: pathlib.Path, scenarios: list[int], labels: list[int]) -> None:
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for s, y in zip(scenarios, labels):
            feature = {LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[y])),
                       "scenario_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[s])),
                       "item_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[7]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def test_click_rates_are_shrunk_toward_the_overall_rate(tmp_path: pathlib.Path) -> None:
    spec = small_spec()
    # scenario 1: 1000 samples, 100 clicks; scenario 2: 10 samples, 5 clicks; split over two files
    _write(tmp_path / "a.gz", [1] * 600 + [2] * 10, [1] * 60 + [0] * 540 + [1] * 5 + [0] * 5)
    _write(tmp_path / "b.gz", [1] * 400, [1] * 40 + [0] * 360)
    rates = scan_examples([str(tmp_path / "*.gz")], _TransformOutput(), spec, days=False).click_rates(smoothing=100.0)
    overall = 105 / 1010
    assert len(rates) == spec.num_scenarios
    assert rates[1] == pytest.approx((100 + 100 * overall) / 1100)
    assert rates[2] == pytest.approx((5 + 100 * overall) / 110)
    # never seen (padding, other scenarios, OOV): the overall rate
    unseen = [r for i, r in enumerate(rates) if i not in (1, 2)]
    np.testing.assert_allclose(unseen, overall)


class _RawOutput:
    """The one method of tft.TFTransformOutput a scan of raw examples reads: the raw feature spec."""

    def raw_feature_spec(self) -> dict[str, tf.io.FixedLenFeature | tf.io.VarLenFeature]:
        return {LABEL: tf.io.FixedLenFeature([], tf.int64), "scenario_id": tf.io.VarLenFeature(tf.string)}


def test_a_scan_of_raw_examples_indexes_their_scenarios_as_the_transform_graph_does(tmp_path: pathlib.Path) -> None:
    spec = small_spec()
    registry = ["s00", "s01"]
    # index 1 + position in the registry; the OOV slot (3) for an unknown id; 0 for a missing one
    names = ["s01"] * 5 + ["s00"] * 3 + ["zz"] * 2 + [None]
    labels = [1, 0, 0, 0, 0] + [1, 1, 0] + [1, 0] + [0]
    with tf.io.TFRecordWriter(str(tmp_path / "raw.gz"), options="GZIP") as writer:
        for name, y in zip(names, labels):
            feature = {LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[y]))}
            if name is not None:
                feature["scenario_id"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    scan = scan_examples([str(tmp_path / "*.gz")], _RawOutput(), spec, days=False, scenarios=registry)
    np.testing.assert_array_equal(scan.samples[:4], [1, 3, 5, 2])
    np.testing.assert_array_equal(scan.clicks[:4], [0, 2, 1, 1])
    assert scan.samples.sum() == len(names)


def test_a_prior_the_user_set_is_kept(tmp_path: pathlib.Path) -> None:
    spec = small_spec()
    assert with_prior({"prior_ctr": []}, [str(tmp_path / "none*")], _TransformOutput(), spec) == {"prior_ctr": []}
    with pytest.raises(FileNotFoundError):
        with_prior({}, [str(tmp_path / "none*")], _TransformOutput(), spec)


def test_a_scenario_index_outside_the_model_fails_clearly(tmp_path: pathlib.Path) -> None:
    spec = small_spec()
    _write(tmp_path / "a.gz", [1, spec.num_scenarios], [0, 1])
    with pytest.raises(ValueError, match="outside the"):
        scan_examples([str(tmp_path / "*.gz")], _TransformOutput(), spec, days=False)


def test_the_training_loss_is_the_fc_weighted_bce_plus_the_auxiliary_losses() -> None:
    """SAR-Net's Bias Adapting Loss: BCE weighted by the FC; HMDN's auxiliary RQ loss is added."""
    spec = small_spec()
    data = planted_ctr_batch(spec, 128, seed=1, fairness=True)
    x, y, fc = tensors(data.features), data.labels.astype(np.float32), data.features[FAIRNESS_COEF]
    for name in ("sarnet", "hmdn_mmoe"):
        tf.keras.utils.set_random_seed(0)
        model = build_model(name, spec, SMALL)
        model.compile(tf.keras.optimizers.SGD(0.0))  # a step that changes nothing: the same forward pass twice
        p = model(x, training=True).numpy()[:, 0]
        aux = float(tf.add_n(model.losses)) if model.losses else 0.0
        eps = 1e-7  # Keras clips probabilities to [eps, 1 - eps]
        p = np.clip(p, eps, 1 - eps)
        bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        got = model.train_on_batch(x, y, sample_weight=fc, return_dict=True)
        assert got["loss"] == pytest.approx(float(np.mean(fc * bce)) + aux, rel=1e-4), name
        assert (aux > 0) == (name == "hmdn_mmoe")


def _data(spec, n: int, seed: int, flip: bool = False) -> tf.data.Dataset:
    planted = planted_ctr_batch(spec, n, seed=seed)
    labels = 1 - planted.labels if flip else planted.labels
    return tf.data.Dataset.from_tensor_slices(
        (planted.features, labels.astype(np.float32), np.ones(n, np.float32))).batch(256)


class _EpochWeights(tf.keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.weights: list[list[np.ndarray]] = []

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.weights.append(self.model.get_weights())


class _BatchCount(tf.keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self.count += 1


class _ScriptedValAuc(tf.keras.callbacks.Callback):
    """Replaces each epoch's val_auc by the script's, before early stopping reads it."""

    def __init__(self, script: list[float]) -> None:
        super().__init__()
        self._script = script

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs["val_auc"] = self._script[epoch]


class _CountedPasses:
    """A dataset that counts how often it is read (each pass starts its generator once)."""

    def __init__(self, data: tf.data.Dataset) -> None:
        self._data, self.count = data, 0

    def dataset(self) -> tf.data.Dataset:
        def passes():
            self.count += 1
            yield from self._data.as_numpy_iterator()
        return tf.data.Dataset.from_generator(passes, output_signature=self._data.element_spec)


def _assert_weights(model: tf.keras.Model, expected: list[np.ndarray]) -> None:
    for got, want in zip(model.get_weights(), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def spec():
    return small_spec()


def _model(spec):
    tf.keras.utils.set_random_seed(0)
    return build_model("mix", spec, SMALL)


def test_a_validation_auc_that_falls_after_epoch_1_keeps_epoch_1s_weights(spec) -> None:
    """The validation labels are the planted signal's opposite: the better the model learns the
    training signal, the lower its validation AUC."""
    model, epochs = _model(spec), _EpochWeights()
    stats = train_model(model, _data(spec, 4096, 1), _data(spec, 1024, 2, flip=True), learning_rate=1e-2,
                        batch_size=256, max_epochs=8, patience=2, drop_z=math.inf, callbacks=[epochs])
    auc = stats["val_auc"]
    assert auc[1] < auc[0] and auc[2] < auc[0]
    assert (stats["epochs_run"], stats["best_epoch"], stats["best_val_auc"]) == (3, 1, auc[0])
    _assert_weights(model, epochs.weights[0])
    assert not np.array_equal(epochs.weights[0][0], epochs.weights[-1][0])  # later epochs did move them
    val = planted_ctr_batch(spec, 1024, seed=2)
    p = model(tensors(val.features), training=False).numpy()[:, 0]
    assert roc_auc_score(1 - val.labels, p) == pytest.approx(auc[0], abs=2e-3)


@pytest.mark.parametrize("script, patience, expected", [
    ([0.60, 0.72, 0.65, 0.70], 5, (4, 2)),  # runs to max_epochs: the best epoch is still restored
    ([0.70, 0.69, 0.71, 0.50, 0.40, 0.90], 2, (5, 3)),  # stops after 2 epochs without a better AUC
])
def test_early_stopping_restores_the_best_epoch_of_a_scripted_validation_auc(spec, script, patience,
                                                                             expected) -> None:
    model, epochs = _model(spec), _EpochWeights()
    stats = train_model(model, _data(spec, 512, 1), _data(spec, 256, 2), learning_rate=1e-2, batch_size=256,
                        max_epochs=4 if patience == 5 else 10, patience=patience, drop_z=math.inf,
                        second_epoch_check=None, callbacks=[_ScriptedValAuc(script), epochs])
    epochs_run, best = expected
    assert (stats["epochs_run"], stats["best_epoch"]) == expected
    assert stats["val_auc"] == pytest.approx(script[:epochs_run]) and stats["best_val_auc"] == script[best - 1]
    _assert_weights(model, epochs.weights[best - 1])


def test_a_significant_fall_of_the_validation_auc_stops_at_once_with_the_best_weights(spec) -> None:
    """The flipped validation labels of the test above: epoch 2's val AUC is far below epoch 1's (many
    standard errors of 1,024 examples), so training stops there instead of waiting out the patience."""
    model, epochs = _model(spec), _EpochWeights()
    stats = train_model(model, _data(spec, 4096, 1), _data(spec, 1024, 2, flip=True), learning_rate=1e-2,
                        batch_size=256, max_epochs=8, patience=3, callbacks=[epochs])
    assert (stats["epochs_run"], stats["best_epoch"], stats["stopped_on_drop"]) == (2, 1, True)
    _assert_weights(model, epochs.weights[0])


def test_a_fall_a_quarter_into_the_second_epoch_stops_there_with_the_first_epochs_weights(spec) -> None:
    """Epoch 1's val AUC scripted to 0.99: the real one a quarter into epoch 2 is far below it, so
    training stops after 4 of epoch 2's 16 batches with that AUC as the epoch's (the script's 0.5 here),
    and early stopping records the fall and restores epoch 1's weights."""
    model, epochs, batches, val = _model(spec), _EpochWeights(), _BatchCount(), _CountedPasses(_data(spec, 1024, 2))
    stats = train_model(model, _data(spec, 4096, 1), val.dataset(), learning_rate=1e-2, batch_size=256,
                        max_epochs=8, patience=3, callbacks=[_ScriptedValAuc([0.99, 0.5]), epochs, batches])
    assert (stats["epochs_run"], stats["best_epoch"], stats["stopped_on_drop"]) == (2, 1, True)
    assert stats["second_epoch_stopped_at"] == 0.25 and batches.count == 16 + 4
    # the check for an empty split, epoch 1, the check in epoch 2, and no second pass after the stop
    assert val.count == 3
    _assert_weights(model, epochs.weights[0])


def test_the_second_epoch_check_stops_nothing_that_still_learns(spec) -> None:
    """Validation labels drawn like the training ones: the val AUC a quarter into epoch 2 is not below
    epoch 1's, and training goes on through the whole epoch."""
    batches = _BatchCount()
    stats = train_model(_model(spec), _data(spec, 4096, 1), _data(spec, 1024, 2), learning_rate=1e-3,
                        batch_size=256, max_epochs=2, patience=2, callbacks=[batches])
    assert stats["second_epoch_stopped_at"] is None and batches.count == 2 * 16


@pytest.mark.parametrize("script, expected", [
    ([0.70, 0.55, 0.90], (2, 1, True)),  # 0.15 below the best: beyond 2 SE of 256 examples (~0.07)
    ([0.70, 0.67, 0.90], (3, 3, False)),  # 0.03 below: noise, patience goes on and epoch 3 wins
])
def test_only_a_fall_beyond_the_noise_of_the_validation_auc_stops_early(spec, script, expected) -> None:
    # the second epoch's own check would compare the real val AUC with the scripted one: off
    stats = train_model(_model(spec), _data(spec, 512, 1), _data(spec, 256, 2), learning_rate=1e-2,
                        batch_size=256, max_epochs=3, patience=2, second_epoch_check=None,
                        callbacks=[_ScriptedValAuc(script)])
    assert (stats["epochs_run"], stats["best_epoch"], stats["stopped_on_drop"]) == expected


def test_validation_gives_the_val_splits_auc_clicks_and_non_clicks(spec) -> None:
    model = _model(spec)
    train_model(model, _data(spec, 512, 1), _data(spec, 512, 2), learning_rate=1e-2, batch_size=256,
                max_epochs=1, patience=1)
    val = planted_ctr_batch(spec, 512, seed=2)
    auc, clicks, non_clicks = Validation(model, _data(spec, 512, 2), EarlyStopping(1)).evaluate()
    assert (clicks, non_clicks) == (int(np.sum(val.labels)), 512 - int(np.sum(val.labels)))
    p = model(tensors(val.features), training=False).numpy()[:, 0]
    assert auc == pytest.approx(roc_auc_score(val.labels, p), abs=2e-3)


def test_an_empty_validation_split_is_a_clear_error(spec) -> None:
    empty = _data(spec, 256, 2).take(0)
    with pytest.raises(ValueError, match="validation split is empty"):
        train_model(_model(spec), _data(spec, 256, 1), empty, learning_rate=1e-2, batch_size=256)


@pytest.mark.parametrize("prebuilt", [False, True])
def test_the_training_step_is_traced_once(spec, prebuilt: bool) -> None:
    """Adam's slots exist before the first step, so the step's tf.function is not traced again to
    drop the variable creation (the second trace of SAR-Net cost about 2 s a run)."""
    model = _model(spec)
    if prebuilt:  # the pipeline's Trainer builds the model before a warm start
        model(next(iter(_data(spec, 256, 2)))[0])
    # 4 full batches: a shorter last batch would be a trace of its own
    train_model(model, _data(spec, 1024, 1), _data(spec, 512, 2), learning_rate=1e-2, batch_size=256,
                max_epochs=2, patience=1, second_epoch_check=None)
    assert model.train_function.experimental_get_tracing_count() == 1
