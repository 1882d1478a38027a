"""The pushed-model contract shared by the exporter, the server and its test model:
signature names, the output key, the warm-up file and the raw ``serving_default`` inputs.
Kept apart from the exporter so that serving does not import tf.Transform."""
from __future__ import annotations

import os

import msrec  # noqa: F401
import tensorflow as tf

from msrec.schemas.feature_config import TIME_GAP_FEATURE, FeatureConfig

DEFAULT_SIGNATURE = "serving_default"
EXAMPLE_SIGNATURE = "serving_tfexample"
EXAMPLE_INPUT = "examples"
OUTPUT_KEY = "ctr"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def raw_input_specs(config: FeatureConfig) -> dict[str, tf.TensorSpec]:
    """The serving_default inputs, in a stable order: categorical -> string [None], numeric ->
    float32 [None], multi-valued categorical and behaviour sequences ``seq_<col>`` -> string
    [None, None] padded with ''; with ``sequence.time_gap``, ``seq_time_gap`` -> float32 [None, None],
    the seconds since each behaviour, padded with 0."""
    specs: dict[str, tf.TensorSpec] = {}
    for f in config.features:
        dtype = tf.float32 if f.kind == "numeric" else tf.string
        specs[f.name] = tf.TensorSpec([None, None] if f.kind == "multi" else [None], dtype, name=f.name)
    for name in config.sequence.feature_names:
        specs[name] = tf.TensorSpec([None, None], tf.string, name=name)
    if config.sequence.time_gap:
        specs[TIME_GAP_FEATURE] = tf.TensorSpec([None, None], tf.float32, name=TIME_GAP_FEATURE)
    return specs
