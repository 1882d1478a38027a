"""Transform and export in this process, as the pipeline's Transform and Trainer do, for the tests of
the serving contract: raw examples in, a SavedModel with the Transform graph inside out."""
from __future__ import annotations

import functools
import os
import random
from typing import Any, Callable, Mapping, Sequence

import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

from msrec.models.base import example_inputs
from msrec.models.registry import build_model
from msrec.models.training.export import export
from msrec.models.training.preprocessing import FEATURE_CONFIG_KEY, SCENARIO_VOCAB_KEY, preprocessing_fn
from msrec.models.training.trainer import feature_spec
from msrec.schemas.feature_config import FeatureConfig, FeatureSpec
from msrec.schemas.schema_gen import schema_from_config


def raw_instances(config: FeatureConfig, n: int, pick: Callable[[Any, random.Random], list[str]]
                  ) -> list[dict[str, Any]]:
    """``n`` raw examples as ingestion writes them (lists of values). ``pick(feature, rnd)``: the values of
    a categorical feature (a behaviour sequence draws each of its positions from its column's)."""
    rnd = random.Random(3)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {}
        for f in config.features:
            row[f.name] = ([float(rnd.randrange(1, 10))] if f.kind == "numeric"
                           else [v.encode() for v in pick(f, rnd)])
        for col, name in zip(config.sequence.columns, config.sequence.feature_names):
            length = rnd.randrange(0, config.sequence.length + 1)
            row[name] = [pick(config.by_name[col], rnd)[0].encode() for _ in range(length)]
        row.update({name: [f"{name}{i}".encode()] for name in config.passthrough})
        row.update({"ts": [1_700_000_000_000 + i], "click": [int(i % 3 == 0)], "date": [b"2023-11-14"],
                    "fairness_coef": []})
        rows.append(row)
    return rows


def transform_and_export(root: str, config: FeatureConfig, rows: Sequence[Mapping[str, Any]],
                         scenarios: list[str], model: str, hparams: Mapping[str, Any]
                         ) -> tuple[tft.TFTransformOutput, FeatureSpec, str]:
    """Analyse and transform ``rows`` (raw examples as lists of values) with the pipeline's
    preprocessing_fn, build ``model`` untrained (seed 0) and export it; (the Transform output, the
    model's FeatureSpec, the export folder)."""
    custom = {FEATURE_CONFIG_KEY: config.to_dict(), SCENARIO_VOCAB_KEY: scenarios}
    metadata = dataset_metadata.DatasetMetadata(schema_from_config(config))
    transform_dir = os.path.join(root, "transform")
    with beam.Pipeline(options=PipelineOptions([])) as p, tft_beam.Context(temp_dir=os.path.join(root, "tmp")):
        raw = p | beam.Create(list(rows))
        # the transform graph alone: the tests transform with it, as serving does
        transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(functools.partial(preprocessing_fn,
                                                                                  custom_config=custom))
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    # the raw schema beside the transform graph, as TFX's Transform writes it (export reads its feature spec)
    metadata_io.write_metadata(metadata, os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    tft_output = tft.TFTransformOutput(transform_dir)
    spec = feature_spec(config, tft_output, scenarios)
    tf.keras.utils.set_random_seed(0)
    keras_model = build_model(model, spec, hparams)
    keras_model(example_inputs(spec), training=False)
    export_dir = os.path.join(root, "export")
    export(keras_model, tft_output, config, export_dir, "m")
    return tft_output, spec, export_dir
