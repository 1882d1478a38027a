"""The one training loop: the pipeline's Trainer and ``msrec bench models`` both train with
:func:`train_model`, so the benchmark measures what the pipeline ships.

Model selection is on the validation split, never on the eval day: up to ``max_epochs`` epochs,
stopped when the validation AUC has not improved for ``patience`` epochs, and the weights of the
best epoch restored (also when training runs to ``max_epochs``). An epoch whose validation AUC falls
below the best by more than ``DROP_Z`` of its standard errors stops training at once: CTR models
that overfit from their second epoch on (the "one-epoch" phenomenon) do not come back, and waiting
``patience`` epochs for them costs whole epochs (at 1M impressions a day, 140 s each on 2 cores).
The loss and metrics are the models' own (base.MultiScenarioModel's tfrs Ranking task).
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.auc import auc_standard_error

# With early stopping max_epochs is a cap, not a budget: training ends when the val AUC stops rising.
# Batch 512 with Adam at 3e-3 (the models' default learning_rate) beat 2048 and 1e-3 on the eval day
# of generated windows of 20k and 150k impressions a day (SAR-Net; the table in the README).
MAX_EPOCHS = 10
PATIENCE = 2
BATCH_SIZE = 512
# An incremental candidate continues a trained model with a fresh Adam, whose first steps move every
# weight by about the learning rate whatever its gradient: at the full 3e-3 the production model got
# worse on val in its first epoch (7-day backfill, README). A tenth of it learns the new days instead.
INCREMENTAL_LR_SCALE = 0.1
MONITOR = "val_auc"
# A fall of two standard errors (Hanley-McNeil, of one AUC on the val split) is beyond the noise of
# the val AUC; the error of a difference of two AUCs on the same examples is smaller still.
DROP_Z = 2.0


class Throughput(tf.keras.callbacks.Callback):
    """Training examples per second over the epochs (validation excluded). The first batch is left
    out because it traces the graph; a partial last batch is counted as full, which overstates the
    count by less than one batch per epoch."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self._batch_size = batch_size
        self.examples = 0
        self.seconds = 0.0
        self._batch_start = 0.0
        self._traced = False

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if not self._traced:
            self._traced = True
            return
        self.seconds += time.perf_counter() - self._batch_start
        self.examples += self._batch_size

    def stats(self) -> dict[str, float]:
        return {"examples": self.examples, "seconds": round(self.seconds, 3),
                "examples_per_s": round(self.examples / self.seconds, 1) if self.seconds else 0.0}


class EarlyStopping(tf.keras.callbacks.EarlyStopping):
    """Stops after ``patience`` epochs without a better validation AUC, or at once when an epoch's
    validation AUC is more than ``drop_z`` standard errors below the best; at the end of training
    (early or at the last epoch) the model holds the best epoch's weights."""

    def __init__(self, patience: int, drop_z: float = DROP_Z) -> None:
        super().__init__(monitor=MONITOR, mode="max", patience=patience, restore_best_weights=True)
        self.drop_z = drop_z
        self.stopped_on_drop = False

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        current = (logs or {}).get(MONITOR)
        if self.model.stop_training or current is None or epoch == self.best_epoch:
            return
        positives, negatives = validation_counts(self.model)
        count = positives + negatives
        se = auc_standard_error(float(self.best), count, positives / count if count else float("nan"))
        if se > 0 and self.best - float(current) > self.drop_z * se:
            self.stopped_on_drop = True
            self.model.stop_training = True


def validation_counts(model: tf.keras.Model) -> tuple[int, int]:
    """Clicks and non-clicks of the validation pass that just ended, read from the model's AUC metric
    (Keras resets the metrics before validating, so at the end of an epoch they hold the val split's):
    at its lowest threshold every example is predicted a click, so its true positives are the clicks
    and its false positives the non-clicks. (0, 0) when the model has no AUC metric."""
    for metric in model.metrics:
        if isinstance(metric, tf.keras.metrics.AUC) and metric.name == "auc":
            return int(round(float(metric.true_positives[0]))), int(round(float(metric.false_positives[0])))
    return 0, 0


def lr_decay(model: tf.keras.Model, learning_rate: float) -> list[tf.keras.callbacks.Callback]:
    """The learning rate times the model's hparam ``lr_decay`` after every epoch (none without it)."""
    decay = float(getattr(model, "hparams", {}).get("lr_decay", 1.0))
    if decay == 1.0:
        return []
    return [tf.keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate * decay ** epoch)]


def train_model(model: tf.keras.Model, train: tf.data.Dataset, val: tf.data.Dataset, *, learning_rate: float,
                batch_size: int, max_epochs: int = MAX_EPOCHS, patience: int = PATIENCE, drop_z: float = DROP_Z,
                callbacks: Sequence[tf.keras.callbacks.Callback] = (), verbose: int = 0) -> dict[str, Any]:
    """Train ``model`` on ``train`` ((features, label, sample_weight) batches of ``batch_size``)
    with Adam, selecting the epoch on ``val``; returns the training statistics."""
    if max_epochs < 1 or patience < 1:
        raise ValueError(f"max_epochs and patience must be at least 1, got {max_epochs} and {patience}")
    if not any(True for _ in val.take(1)):
        raise ValueError("the validation split is empty: there is nothing to select the epoch on "
                         "(a longer window, or more impressions on the newest day, gives it rows)")
    with model.distribute_strategy.scope():  # the optimizer's variables beside the model's (several workers)
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate))
    throughput = Throughput(batch_size)
    stopping = EarlyStopping(patience, drop_z)
    history = model.fit(train, validation_data=val, epochs=max_epochs, verbose=verbose,
                        callbacks=[*callbacks, *lr_decay(model, learning_rate), throughput, stopping])
    val_auc = [round(float(a), 6) for a in history.history[MONITOR]]
    return {"epochs_run": len(val_auc), "max_epochs": max_epochs, "patience": patience,
            "stopped_on_drop": stopping.stopped_on_drop,
            "best_epoch": stopping.best_epoch + 1, "best_val_auc": val_auc[stopping.best_epoch],
            "val_auc": val_auc, "learning_rate": learning_rate, "batch_size": batch_size, **throughput.stats()}
