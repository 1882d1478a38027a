"""The one training loop: the pipeline's Trainer and ``msrec bench models`` both train with
:func:`train_model`, so the benchmark measures what the pipeline ships.

Model selection is on the validation split, never on the eval day: up to ``max_epochs`` epochs,
stopped when the validation AUC has not improved for ``patience`` epochs, and the weights of the
best epoch restored (also when training runs to ``max_epochs``). An epoch whose validation AUC falls
below the best by more than ``DROP_Z`` of its standard errors stops training at once: CTR models
that overfit from their second epoch on (the "one-epoch" phenomenon) do not come back, and waiting
``patience`` epochs for them costs whole epochs (at 1M impressions a day, 140 s each on 2 cores).
The fall comes as soon as the examples are seen again, so the val AUC is also taken a quarter into
the second epoch (``SECOND_EPOCH_CHECK``), with the same rule: most of that epoch is saved when the
model has already peaked.
The loss and metrics are the models' own (base.MultiScenarioModel's tfrs Ranking task).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.auc import auc_standard_error

log = logging.getLogger(__name__)

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
# The one-epoch phenomenon (Zhang et al. 2022, overfitting of deep CTR models): the val AUC falls from
# the first steps of the second epoch. At 1M impressions SAR-Net's fell from 0.685 to 0.644 over it.
SECOND_EPOCH_CHECK = 0.25


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


class Validation(tf.keras.callbacks.Callback):
    """The val AUC after every epoch, as ``val_auc`` in the epoch's logs (the model's own AUC metric
    config, so the number Keras' validation would give), and ``fraction`` of the way into the second
    epoch: a fall there of more than ``drop_z`` standard errors below the first epoch's stops training
    at once, and that AUC is the stopped epoch's (its weights have not changed since: no second pass).
    Every worker of a cluster validates on the whole val split, so all stop at the same epoch."""

    def __init__(self, model: tf.keras.Model, val: tf.data.Dataset, stopping: "EarlyStopping",
                 fraction: float | None = SECOND_EPOCH_CHECK, drop_z: float = DROP_Z) -> None:
        super().__init__()
        self._val, self._stopping, self._fraction, self._drop_z = val, stopping, fraction, drop_z
        # made here, outside fit's distribution scope: under several workers a metric made inside it
        # would be a replica-summed variable, which this plain pass over the val split cannot update
        self._metric = _auc_metric(model)
        self._model_ref = model
        self._update = tf.function(self._update_state, autograph=False, reduce_retracing=True)
        self._epoch = 0
        self._first_epoch_batches = 0
        self._stopped: tuple[float, int, int] | None = None
        self.counts = (0, 0)  # clicks and non-clicks of the last validation
        self.stopped_at: float | None = None  # the fraction of the second epoch run before the stop

    def _update_state(self, features: dict[str, tf.Tensor], label: tf.Tensor) -> None:
        self._metric.update_state(tf.reshape(label, [-1, 1]), self._model_ref(features, training=False))

    def evaluate(self) -> tuple[float, int, int]:
        """(AUC, clicks, non-clicks) of the model on the val split."""
        self._metric.reset_state()
        for batch in self._val:
            features, label, _ = tf.keras.utils.unpack_x_y_sample_weight(batch)
            self._update(features, label)
        # at its lowest threshold the metric predicts every example a click: its true positives are
        # the clicks and its false positives the non-clicks
        return (float(self._metric.result()), round(float(self._metric.true_positives[0])),
                round(float(self._metric.false_positives[0])))

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._epoch == 0:
            self._first_epoch_batches = batch + 1
        elif (self._fraction and self._epoch == 1
              and batch + 1 == max(1, int(self._first_epoch_batches * self._fraction))):
            auc, positives, negatives = self.evaluate()
            if _falls_beyond_noise(float(self._stopping.best), auc, positives, negatives, self._drop_z):
                self._stopped = auc, positives, negatives
                self.stopped_at = round((batch + 1) / self._first_epoch_batches, 3)
                self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        auc, *counts = self._stopped or self.evaluate()
        self._stopped = None
        self.counts = (counts[0], counts[1])
        if logs is not None:
            logs[MONITOR] = auc
        log.info("epoch %d: loss %.4f, val AUC %.4f", epoch + 1, float((logs or {}).get("loss", float("nan"))), auc)


class EarlyStopping(tf.keras.callbacks.EarlyStopping):
    """Stops after ``patience`` epochs without a better validation AUC, or at once when an epoch's
    validation AUC is more than ``drop_z`` standard errors below the best (the standard error from the
    val split's ``counts``: clicks and non-clicks); at the end of training (early or at the last
    epoch) the model holds the best epoch's weights."""

    def __init__(self, patience: int, drop_z: float = DROP_Z) -> None:
        super().__init__(monitor=MONITOR, mode="max", patience=patience, restore_best_weights=True)
        self.drop_z = drop_z
        self.stopped_on_drop = False
        self.counts: Callable[[], tuple[int, int]] = lambda: (0, 0)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        current = (logs or {}).get(MONITOR)
        if current is None or epoch == self.best_epoch:
            return
        if _falls_beyond_noise(float(self.best), float(current), *self.counts(), self.drop_z):
            self.stopped_on_drop = True
            self.model.stop_training = True


def _falls_beyond_noise(best: float, current: float, positives: int, negatives: int, drop_z: float) -> bool:
    count = positives + negatives
    se = auc_standard_error(best, count, positives / count if count else float("nan"))
    return se > 0 and best - current > drop_z * se


def _auc_metric(model: tf.keras.Model) -> tf.keras.metrics.AUC:
    """A fresh AUC metric configured like the model's own (Keras' default AUC when it has none)."""
    template = next((m for m in model.metrics if isinstance(m, tf.keras.metrics.AUC) and m.name == "auc"), None)
    return tf.keras.metrics.AUC() if template is None else tf.keras.metrics.AUC.from_config(template.get_config())


def lr_decay(model: tf.keras.Model, learning_rate: float) -> list[tf.keras.callbacks.Callback]:
    """The learning rate times the model's hparam ``lr_decay`` after every epoch (none without it)."""
    decay = float(getattr(model, "hparams", {}).get("lr_decay", 1.0))
    if decay == 1.0:
        return []
    return [tf.keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate * decay ** epoch)]


def train_model(model: tf.keras.Model, train: tf.data.Dataset, val: tf.data.Dataset, *, learning_rate: float,
                batch_size: int, max_epochs: int = MAX_EPOCHS, patience: int = PATIENCE, drop_z: float = DROP_Z,
                second_epoch_check: float | None = SECOND_EPOCH_CHECK,
                callbacks: Sequence[tf.keras.callbacks.Callback] = ()) -> dict[str, Any]:
    """Train ``model`` on ``train`` ((features, label, sample_weight) batches of ``batch_size``)
    with Adam, selecting the epoch on ``val``; returns the training statistics. ``second_epoch_check``:
    how far into the second epoch :class:`Validation` looks (None: not at all). ``callbacks`` see
    each epoch's ``val_auc`` in its logs."""
    if max_epochs < 1 or patience < 1:
        raise ValueError(f"max_epochs and patience must be at least 1, got {max_epochs} and {patience}")
    first = next(iter(val.take(1)), None)
    if first is None:
        raise ValueError("the validation split is empty: there is nothing to select the epoch on "
                         "(a longer window, or more impressions on the newest day, gives it rows)")
    with model.distribute_strategy.scope():  # the optimizer's variables beside the model's (several workers)
        if not model.built:
            model(tf.keras.utils.unpack_x_y_sample_weight(first)[0])
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate))
        # Every variable exists before the first step: a tf.function whose first call creates
        # variables (Adam's slots, made lazily) is traced a second time, 2-3 s for SAR-Net.
        model.optimizer.build(model.trainable_variables)
    throughput = Throughput(batch_size)
    stopping = EarlyStopping(patience, drop_z)
    # every callback after it (early stopping too) reads the val AUC it puts in the logs; the throughput
    # first, so that its timing of a batch leaves out the check's validation
    validation = Validation(model, val, stopping, second_epoch_check, drop_z)
    stopping.counts = lambda: validation.counts
    history = model.fit(train, epochs=max_epochs, verbose=0,
                        callbacks=[throughput, validation, *callbacks, *lr_decay(model, learning_rate), stopping])
    val_auc = [round(float(a), 6) for a in history.history[MONITOR]]
    return {"epochs_run": len(val_auc), "max_epochs": max_epochs, "patience": patience,
            "stopped_on_drop": stopping.stopped_on_drop, "second_epoch_stopped_at": validation.stopped_at,
            "best_epoch": stopping.best_epoch + 1, "best_val_auc": val_auc[stopping.best_epoch],
            "val_auc": val_auc, "learning_rate": learning_rate, "batch_size": batch_size, **throughput.stats()}
