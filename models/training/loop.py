"""The one training loop: the pipeline's Trainer and ``msrec bench models`` both train with
:func:`train_model`, so the benchmark measures what the pipeline ships.

Model selection is on the validation split, never on the eval day: up to ``max_epochs`` epochs,
stopped when the validation AUC has not improved for ``patience`` epochs, and the weights of the
best epoch restored (also when training runs to ``max_epochs``). The loss and metrics are the
models' own (base.MultiScenarioModel's tfrs Ranking task).
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

# With early stopping max_epochs is a cap, not a budget: training ends when the val AUC stops rising.
# Batch 512 with Adam at 3e-3 (the models' default learning_rate) beat 2048 and 1e-3 on the eval day
# of generated windows of 20k and 150k impressions a day (SAR-Net; the table in the README).
MAX_EPOCHS = 10
PATIENCE = 2
BATCH_SIZE = 512
MONITOR = "val_auc"


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


def early_stopping(patience: int) -> tf.keras.callbacks.EarlyStopping:
    """Stops after ``patience`` epochs without a better validation AUC; at the end of training
    (early or at the last epoch) the model holds the best epoch's weights."""
    return tf.keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=patience,
                                            restore_best_weights=True)


def lr_decay(model: tf.keras.Model, learning_rate: float) -> list[tf.keras.callbacks.Callback]:
    """The learning rate times the model's hparam ``lr_decay`` after every epoch (none without it)."""
    decay = float(getattr(model, "hparams", {}).get("lr_decay", 1.0))
    if decay == 1.0:
        return []
    return [tf.keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate * decay ** epoch)]


def train_model(model: tf.keras.Model, train: tf.data.Dataset, val: tf.data.Dataset, *, learning_rate: float,
                batch_size: int, max_epochs: int = MAX_EPOCHS, patience: int = PATIENCE,
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
    stopping = early_stopping(patience)
    history = model.fit(train, validation_data=val, epochs=max_epochs, verbose=verbose,
                        callbacks=[*callbacks, *lr_decay(model, learning_rate), throughput, stopping])
    val_auc = [round(float(a), 6) for a in history.history[MONITOR]]
    return {"epochs_run": len(val_auc), "max_epochs": max_epochs, "patience": patience,
            "best_epoch": stopping.best_epoch + 1, "best_val_auc": val_auc[stopping.best_epoch],
            "val_auc": val_auc, "learning_rate": learning_rate, "batch_size": batch_size, **throughput.stats()}
