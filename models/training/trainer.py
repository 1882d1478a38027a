"""The TFX Trainer's run_fn: build the model chosen by name, warm start it from the last blessed
model, train it on the train split with the Fairness Coefficient as sample weight (when the model asks
for it), selecting the epoch on the val split (loop.train_model), and export the serving SavedModel.
The eval split is left to the Evaluator.

The pipeline's Trainer reads FairnessGen's examples and runs them through the Transform graph in its
input pipeline (Transform does not write transformed examples: TensorFlow applies the graph to a batch
in C++, where Beam wrote, re-read and re-encoded every example one at a time in Python). The model
benchmarks train many models on one window and read the examples Transform wrote for them.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable, Mapping, Sequence

import msrec  # noqa: F401
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from msrec.components.log_example_gen.examples import DATE_FEATURE, TS_FEATURE
from msrec.components.trainer.component import RUN_DATE_KEY
from msrec.schemas.feature_config import FAIRNESS_COEF, LABEL, FeatureConfig, FeatureSpec
from msrec.models.training import export, incremental, loop, warm_start, workers
from msrec.models.training.preprocessing import (FEATURE_CONFIG_KEY, SCENARIO_VOCAB_KEY, dense_scalar, scenario_index,
                                                 vocabulary_name)
from msrec.models.registry import build_model

log = logging.getLogger(__name__)
SPEC_FILE = "feature_spec.json"
TRAINING_STATS = "training_stats.json"
PRIOR_SMOOTHING = 100.0  # pseudo-samples at the overall click rate behind each scenario's prior


def feature_spec(config: FeatureConfig, tft_output: tft.TFTransformOutput, scenario_vocab: list[str]) -> FeatureSpec:
    sizes = {n: tft_output.vocabulary_size_by_name(vocabulary_name(n)) for n in config.categorical
             if n != "scenario_id"}
    sizes["scenario_id"] = len(scenario_vocab)
    return FeatureSpec.from_config(config, sizes)


def example_parser(tft_output: tft.TFTransformOutput, transformed: bool) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """A batch of serialized examples -> the model's (transformed) features: Transform's own output is
    parsed; raw examples are parsed and run through the Transform graph, as the serving signature runs
    a request. One traced function: the datasets that map it share its graph (tracing the Transform
    graph cost ~2 s per dataset)."""
    if transformed:
        spec = tft_output.transformed_feature_spec()
        body = lambda serialized: tf.io.parse_example(serialized, spec)  # noqa: E731
    else:
        raw_spec = tft_output.raw_feature_spec()
        layer = tft_output.transform_features_layer()
        body = lambda serialized: layer(tf.io.parse_example(serialized, raw_spec))  # noqa: E731
    return tf.function(body, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)


def dataset(file_patterns: list[str], parse: Callable[[tf.Tensor], dict[str, tf.Tensor]], batch_size: int,
            use_fc_weight: bool, shuffle: bool, seed: int = 0,
            plan: incremental.TrainingPlan | None = None, cache: bool = False) -> tf.data.Dataset:
    """(features, label, sample_weight) batches from gzipped examples that ``parse`` (an
    :func:`example_parser`) turns into features; those the training ``plan`` picks, when given.
    ``cache``: the batches are kept in memory after the first pass, for a split read again and again."""
    ds = _records(file_patterns)
    if plan is not None:
        ds = incremental.only_new(ds, plan.days, plan.after)
    if shuffle:
        ds = ds.shuffle(50 * batch_size, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)

    def split(features: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
        features = dict(features)
        label = tf.cast(features.pop(LABEL), tf.float32)
        features.pop(DATE_FEATURE, None)
        features.pop(TS_FEATURE, None)
        fc = features.get(FAIRNESS_COEF, tf.ones_like(label))
        weight = fc if use_fc_weight else tf.ones_like(label)
        return features, label, weight

    # several workers: each reads every example and keeps its share of each batch (files are too few
    # to split by)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # tf.data's autotuning thread held the end of every fit 18-35 s on the 2-core machine (the last
    # iterator's destructor waits for it); without it the epochs take as long, at the parallelism of
    # the cores
    options.autotune.enabled = False
    ds = ds.map(split)
    return (ds.cache() if cache else ds).prefetch(tf.data.AUTOTUNE).with_options(options)


def _records(file_patterns: list[str]) -> tf.data.Dataset:
    """The serialized examples of the files, one file after another. Parallel reads
    (``num_parallel_reads=AUTOTUNE``) of a split's gzipped file took 15 s and 13 s of CPU for the
    600k examples of a 1M day's train split, against 1.5 s and 2 s read in turn: CPU that the
    training steps on 2 cores did not get."""
    return tf.data.TFRecordDataset(_files(file_patterns), compression_type="GZIP")


def _files(file_patterns: list[str]) -> list[str]:
    files = sorted(f for p in file_patterns for f in tf.io.gfile.glob(p if "*" in p else os.path.join(p, "*")))
    if not files:
        raise FileNotFoundError(f"no transformed examples under {file_patterns}")
    return files


@dataclasses.dataclass(frozen=True)
class ExampleScan:
    """What the Trainer reads of its training examples before training, in one pass (each pass parses
    every example: 14 s over a 1M day's train split): the examples and clicks of each scenario index
    (the click-rate prior) and each day's newest ts (the incremental plan)."""

    samples: np.ndarray
    clicks: np.ndarray
    newest_ts_by_day: dict[str, int]

    def click_rates(self, smoothing: float = PRIOR_SMOOTHING) -> tuple[float, ...]:
        """Click rate of each scenario index, shrunk toward the overall rate.

        rate_s = (clicks_s + m * rate) / (samples_s + m) with m = ``smoothing`` pseudo-samples, so a
        scenario seen a handful of times (or never: padding, OOV) starts at the overall rate."""
        overall = float(np.clip(self.clicks.sum() / self.samples.sum(), 1e-4, 1 - 1e-4))
        return tuple(float(r) for r in (self.clicks + smoothing * overall) / (self.samples + smoothing))


def scan_examples(file_patterns: list[str], tft_output: tft.TFTransformOutput, spec: FeatureSpec,
                  days: bool = True, scenarios: Sequence[str] | None = None) -> ExampleScan:
    """One pass over the training examples (``days``: also their day and ts, which the Trainer's
    examples carry and a bare training set may not).

    ``scenarios``: the scenario registry, for raw examples: their scenario ids are indexed as the
    Transform graph indexes them (without running the whole graph for two columns). None: the
    examples are transformed."""
    start = time.perf_counter()
    parsed = tft_output.transformed_feature_spec() if scenarios is None else tft_output.raw_feature_spec()
    keys = {name: parsed[name] for name in (LABEL, spec.scenario_feature)}
    if days:
        keys.update(incremental.DAY_AND_TS)
    ds = _records(file_patterns)

    def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        batch = tf.io.parse_example(serialized, keys)
        if scenarios is not None:
            batch[LABEL] = dense_scalar(batch[LABEL], 0)
            batch[spec.scenario_feature] = scenario_index(dense_scalar(batch[spec.scenario_feature], ""),
                                                          list(scenarios))
        if days:
            batch[DATE_FEATURE], batch[TS_FEATURE] = incremental.newest_ts_of_batch(batch[DATE_FEATURE],
                                                                                  batch[TS_FEATURE])
        return batch

    ds = ds.batch(16384).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    samples = np.zeros(spec.num_scenarios)
    clicks = np.zeros(spec.num_scenarios)
    newest: dict[str, int] = {}
    for batch in ds.prefetch(tf.data.AUTOTUNE):
        s = batch[spec.scenario_feature].numpy().reshape(-1)
        if s.size and s.max() >= spec.num_scenarios:
            raise ValueError(f"scenario index {s.max()} is outside the {spec.num_scenarios} the model has")
        samples += np.bincount(s, minlength=spec.num_scenarios)
        clicks += np.bincount(s, weights=batch[LABEL].numpy().reshape(-1), minlength=spec.num_scenarios)
        if days:
            incremental.fold_newest_ts(newest, batch[DATE_FEATURE].numpy(), batch[TS_FEATURE].numpy())
    if samples.sum() == 0:
        raise ValueError(f"no training examples under {file_patterns}")
    log.info("Trainer: read %d training examples before training in %.1fs", int(samples.sum()),
             time.perf_counter() - start)
    return ExampleScan(samples, clicks, dict(sorted(newest.items())))


def with_prior(hparams: Mapping[str, Any], file_patterns: list[str], tft_output: tft.TFTransformOutput,
               spec: FeatureSpec, scan: ExampleScan | None = None,
               scenarios: Sequence[str] | None = None) -> dict[str, Any]:
    """``hparams`` with ``prior_ctr`` from the training data (``scan`` of it when given, else a scan of
    ``file_patterns``: raw examples with the registry ``scenarios``, transformed without), unless the
    user set it (``[]``: none)."""
    if "prior_ctr" in hparams:
        return dict(hparams)
    rates = (scan or scan_examples(file_patterns, tft_output, spec, days=False, scenarios=scenarios)).click_rates()
    log.info("Trainer: per-scenario click-rate prior from the training data (%.4f to %.4f)", min(rates), max(rates))
    return {**hparams, "prior_ctr": rates}


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point (GenericExecutor). ``eval_files`` are the val split (the pipeline's
    EvalArgs); custom_config carries model name, hparams and batch_size, max_epochs, patience, workers.
    With ``workers`` > 1 and no cluster in ``TF_CONFIG`` it starts the worker processes on this machine
    (workers.run_local); on a cluster, or alone, it trains here."""
    n = int(fn_args.custom_config.get("workers", 1))
    if n > 1 and workers.cluster() is None:
        workers.run_local(fn_args, n)
    else:
        train_and_export(fn_args)


def train_and_export(fn_args: Any) -> None:
    """Train, and export on the chief: alone, or as one task of the cluster ``TF_CONFIG`` names (under
    MultiWorkerMirroredStrategy, each task reading its share of every batch)."""
    cfg: Mapping[str, Any] = fn_args.custom_config
    strategy = workers.strategy()  # first: a cluster's collective ops are set up before TensorFlow runs anything
    index, chief = workers.task(strategy)
    config = FeatureConfig.from_dict(cfg[FEATURE_CONFIG_KEY])
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = feature_spec(config, tft_output, list(cfg[SCENARIO_VOCAB_KEY]))
    scan = scan_examples(fn_args.train_files, tft_output, spec, scenarios=list(cfg[SCENARIO_VOCAB_KEY]))
    hparams = with_prior(cfg.get("hparams") or {}, fn_args.train_files, tft_output, spec, scan)
    tf.keras.utils.set_random_seed(int(cfg.get("seed", 0)))
    with strategy.scope():  # variables (the optimizer's too: loop.train_model) mirrored on every task
        model = build_model(cfg["model"], spec, hparams)
    # the run's batch size, else the model's own (a paper's training setting), else the loop's
    batch_size = int(cfg.get("batch_size") or model.hparams.get("batch_size", loop.BATCH_SIZE))
    use_fc = bool(getattr(model, "fc_sample_weight", False))
    training = incremental.plan(
        incremental.read_record(fn_args.base_model) if fn_args.base_model else None, bool(fn_args.base_model),
        incremental.fingerprint(cfg["model"], cfg.get("hparams") or {}, cfg[FEATURE_CONFIG_KEY],
                                cfg[SCENARIO_VOCAB_KEY]),
        scan.newest_ts_by_day, cfg[RUN_DATE_KEY],
        int(cfg.get("full_retrain_days", incremental.FULL_RETRAIN_DAYS)))
    log.info("Trainer: %s training on %s: %s", training.mode, list(training.days), training.reason)
    parse = example_parser(tft_output, transformed=False)  # FairnessGen's examples
    train = dataset(fn_args.train_files, parse, batch_size, use_fc, shuffle=True, plan=training)
    # Unweighted: the epoch is selected by the AUC the Evaluator and the blessing measure. Cached: the
    # val split is read at every validation (a quarter into the second epoch, at each epoch's end), and
    # parsing and transforming it again took 1.4 of a pass's 3.1 s at 200k impressions (40k examples).
    val = dataset(fn_args.eval_files, parse, batch_size, use_fc_weight=False, shuffle=False, cache=True)
    with strategy.scope():
        model(next(iter(val))[0])  # build variables before warm start (train may hold no day)
        if training.warm_start and not warm_start.restore(model, spec, cfg["model"], fn_args.base_model,
                                                          tft_output):
            raise RuntimeError(f"cannot continue the production model {fn_args.base_model}: "
                               "its weights do not load")
    stats: dict[str, Any] = {"epochs_run": 0}  # no new day: the production model's weights carry over
    if training.days:
        learning_rate = float(model.hparams["learning_rate"])
        if training.warm_start:
            learning_rate *= float(cfg.get("incremental_lr_scale", loop.INCREMENTAL_LR_SCALE))
        stats = loop.train_model(
            model, train, val, learning_rate=learning_rate, batch_size=batch_size,
            max_epochs=int(cfg.get("max_epochs", loop.MAX_EPOCHS)), patience=int(cfg.get("patience", loop.PATIENCE)),
            callbacks=[tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq=50)])
        log.info("Trainer: %d epochs, best epoch %d with validation AUC %.4f", stats["epochs_run"],
                 stats["best_epoch"], stats["best_val_auc"])
    if workers.cluster():
        weights = model.get_weights()  # on every task: reading the synced-on-read variables is collective
        workers.report(fn_args.model_run_dir, index, stats, weights)
        if not chief:
            return
        # the chief exports a copy outside the strategy, so that saving it needs no other task
        model = build_model(cfg["model"], spec, hparams)
        model(next(iter(val))[0])
        model.set_weights(weights)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRAINING_STATS), "w") as fh:
        json.dump({"model": cfg["model"], "params": int(model.count_params()), **stats,
                   "mode": training.mode, "mode_reason": training.reason, "days": list(training.days)}, fh)
    export.export(model, tft_output, config, fn_args.serving_model_dir, cfg["model"])
    warm_start.save(model, spec, cfg["model"], fn_args.serving_model_dir)
    incremental.write_record(training, fn_args.serving_model_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.serving_model_dir, "assets.extra", SPEC_FILE), "w") as fh:
        json.dump({"model": cfg["model"], "feature_spec": spec.to_dict(), "hparams": hparams}, fh)
