"""Does a model's cost per example grow with the number of scenarios?

For every registered model: training examples/s and inference milliseconds per batch on synthetic
transformed inputs, with the feature config's scenario vocabulary overridden to 20 and to 200
scenarios, and the ratio 200/20. Per-scenario parameters are gathered by scenario index, so the
forward pass should cost about the same at both sizes (ratio ~1); what can grow is the optimizer's
update, which touches every scenario's slice of the stacked parameters.

    python benchmarks/scenario_scaling.py                      # every model, 20 vs 200 scenarios
    python benchmarks/scenario_scaling.py --models sarnet star --scenarios 20 1000

A model that fails to build or run is reported with its error and the others still run. Timings are
wall clock on whatever else the machine is doing: compare ratios, and rerun on a quiet machine for
absolute numbers.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Sequence

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from msrec.schemas.feature_config import FeatureSpec, load_feature_config
from msrec.models.registry import build_model, model_names
from msrec.models.synthetic import planted_ctr_batch

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "schemas", "feature_config.yaml")
# Vocabulary sizes of a mid-sized dataset; features not listed get DEFAULT_VOCAB.
VOCAB = {"user_id": 5000, "item_id": 5000, "brand": 500, "city": 300, "category": 100, "theme": 64,
         "hour": 24, "scenario_type": 16}
DEFAULT_VOCAB = 8


def scenario_spec(num_scenarios: int) -> FeatureSpec:
    """The feature config's spec with ``num_scenarios`` scenario ids (plus padding and OOV)."""
    config = load_feature_config(CONFIG)
    sizes = {n: VOCAB.get(n, DEFAULT_VOCAB) for n in config.categorical}
    sizes["scenario_id"] = num_scenarios
    return FeatureSpec.from_config(config, sizes)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
        with open("/proc/meminfo") as fh:
            ram = next(int(line.split()[1]) / 2**20 for line in fh if line.startswith("MemTotal"))
        ram_text = f"{ram:.1f} GiB RAM"
    except (OSError, StopIteration):
        ram_text = "RAM unknown"
    return (f"{cpu}, {os.cpu_count()} cores, {ram_text}, TensorFlow {tf.__version__}, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


class _Cell:
    """One model at one scenario count, with its traced training step and inference on one batch."""

    def __init__(self, name: str, spec: FeatureSpec, batch_size: int) -> None:
        data = planted_ctr_batch(spec, batch_size, seed=0, min_history=5)
        self.features = {k: tf.constant(v) for k, v in data.features.items()}
        self.labels = tf.constant(data.labels[:, None])
        model = build_model(name, spec)
        optimizer = tf.keras.optimizers.Adam(1e-3)
        bce = tf.keras.losses.BinaryCrossentropy()

        # Inputs are arguments, not captured constants (Grappler would fold the index arithmetic over
        # them). No autograph: the models branch on Python values only, and converting Keras' and the
        # optimizer's code takes most of a trace.
        @tf.function(autograph=False)
        def train_step(x: dict[str, tf.Tensor], y: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                loss = bce(y, model(x, training=True)) + tf.add_n([tf.constant(0.0)] + model.losses)
            variables = model.trainable_variables
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        @tf.function(autograph=False)
        def infer(x: dict[str, tf.Tensor]) -> tf.Tensor:
            return model(x, training=False)

        model(self.features)  # build the variables outside the traced functions
        self._train_step, self._infer = train_step, infer

    def train_seconds(self) -> float:
        start = time.perf_counter()
        self._train_step(self.features, self.labels).numpy()
        return time.perf_counter() - start

    def infer_seconds(self) -> float:
        start = time.perf_counter()
        self._infer(self.features).numpy()
        return time.perf_counter() - start


def measure(name: str, specs: Sequence[FeatureSpec], batch_size: int, train_steps: int,
            infer_batches: int) -> list[tuple[float, float]]:
    """(training examples/s, inference ms per batch) of model ``name`` (default hparams) per spec.

    The specs' timed calls are interleaved and the fastest one kept: on a shared machine, slower
    calls measure the neighbours, and interleaving spreads any drift over every spec alike.
    """
    cells = [_Cell(name, spec, batch_size) for spec in specs]
    for cell in cells:  # trace, and let the allocator and the optimizer's slots settle
        cell.train_seconds(), cell.train_seconds(), cell.infer_seconds()
    train = infer = [float("inf")] * len(cells)
    for _ in range(train_steps):
        train = [min(t, c.train_seconds()) for t, c in zip(train, cells)]
    for _ in range(infer_batches):
        infer = [min(t, c.infer_seconds()) for t, c in zip(infer, cells)]
    tf.keras.backend.clear_session()  # free the models before the next ones are built
    return [(batch_size / t, 1000.0 * i) for t, i in zip(train, infer)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None, help="model names (default: every registered one)")
    parser.add_argument("--scenarios", nargs=2, type=int, default=(20, 200), metavar=("FEW", "MANY"))
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--train-steps", type=int, default=4, help="timed training steps per model and size")
    parser.add_argument("--infer-batches", type=int, default=5, help="timed inference batches per model and size")
    args = parser.parse_args(argv)
    names = args.models or model_names()
    few, many = args.scenarios
    specs = {s: scenario_spec(s) for s in (few, many)}
    tf.keras.utils.set_random_seed(0)

    print(f"machine: {machine()}")
    print(f"batch {args.batch_size}, sequence length {specs[few].sequence_length}, default hparams, "
          f"fastest of {args.train_steps} training steps and of {args.infer_batches} inference batches per cell\n")
    header = (f"{'model':<14} {'train ex/s @' + str(few):>16} {'@' + str(many):>10} {'ratio':>6}   "
              f"{'infer ms @' + str(few):>14} {'@' + str(many):>10} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    failures = 0
    for name in names:
        try:
            (train_few, infer_few), (train_many, infer_many) = measure(
                name, [specs[few], specs[many]], args.batch_size, args.train_steps, args.infer_batches)
        except Exception as error:  # report and go on: one broken model must not hide the others
            failures += 1
            print(f"{name:<14} failed: {type(error).__name__}: {str(error).splitlines()[0][:100]}")
            continue
        print(f"{name:<14} {train_few:>16.0f} {train_many:>10.0f} {train_many / train_few:>6.2f}   "
              f"{infer_few:>14.1f} {infer_many:>10.1f} {infer_many / infer_few:>6.2f}", flush=True)
    print(f"\nratio = value at {many} scenarios / value at {few} "
          "(train: below 1 is slower; inference: above 1 is slower)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
