"""The TFDV schema of the Examples LogExampleGen writes, derived from a feature config.

It declares every column ingestion puts into an Example (see
msrec.components.log_example_gen.examples), so any dataset that follows the raw-log contract is
validated without a hand-written schema:

* impression columns (the contract ids and the config's context features) and history counts are
  present once in every example; side-table features are optional, because a missed join leaves
  them absent;
* categorical features are BYTES, numeric ones FLOAT, one value each; a multi-valued feature is
  BYTES with 0..``max_values`` values;
* ``ts`` and ``click`` INT, ``date`` BYTES, passthrough fields optional BYTES;
* every ``seq_<column>`` is present with 0..``sequence.length`` values, and so is ``seq_time_gap``
  (FLOAT seconds, at least 0) when the config sets ``sequence.time_gap``;
* ``fairness_coef`` (added by FairnessGen) is optional FLOAT, so Transform can read it.

Environments: TRAINING holds everything; SERVING lacks the label, ``date``, the passthrough fields
and ``fairness_coef``, which a serving request never carries.
"""
from __future__ import annotations

import os
from typing import Sequence

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from msrec.components.log_example_gen.examples import DATE_FEATURE, TS_FEATURE
from msrec.components.log_example_gen.records import TS_MAX_MS, TS_MIN_MS
from msrec.schemas.feature_config import FAIRNESS_COEF, LABEL, TIME_GAP_FEATURE, FeatureConfig

SCHEMA_FILE = "schema.pbtxt"  # the file name TFX's SchemaGen and ImportSchemaGen give a Schema artifact's
TRAINING = "TRAINING"
SERVING = "SERVING"

_TYPES = {"categorical": schema_pb2.BYTES, "multi": schema_pb2.BYTES, "numeric": schema_pb2.FLOAT}


def _feature(schema: schema_pb2.Schema, name: str, type_: int, required: bool, min_values: int,
             max_values: int, training_only: bool = False) -> schema_pb2.Feature:
    f = schema.feature.add(name=name, type=type_)
    if required:
        f.presence.min_fraction = 1.0
        f.presence.min_count = 1
    else:
        f.presence.min_count = 0
    f.value_count.min = min_values
    f.value_count.max = max_values
    if training_only:
        f.not_in_environment.append(SERVING)
    return f


def schema_from_config(config: FeatureConfig) -> schema_pb2.Schema:
    """The schema of the examples ingestion writes for ``config``."""
    schema = schema_pb2.Schema()
    schema.default_environment.extend([TRAINING, SERVING])
    ts = _feature(schema, TS_FEATURE, schema_pb2.INT, True, 1, 1)
    ts.int_domain.min, ts.int_domain.max = TS_MIN_MS, TS_MAX_MS
    label = _feature(schema, LABEL, schema_pb2.INT, True, 1, 1, training_only=True)
    label.int_domain.min, label.int_domain.max = 0, 1
    _feature(schema, DATE_FEATURE, schema_pb2.BYTES, True, 1, 1, training_only=True)
    for name in config.passthrough:
        _feature(schema, name, schema_pb2.BYTES, False, 1, 1, training_only=True)
    for f in config.features:
        multi = f.kind == "multi"
        _feature(schema, f.name, _TYPES[f.kind], f.source in ("impression", "history"),
                 0 if multi else 1, f.max_values if multi else 1)
    for name in config.sequence.feature_names:
        _feature(schema, name, schema_pb2.BYTES, True, 0, config.sequence.length)
    if config.sequence.time_gap:
        gap = _feature(schema, TIME_GAP_FEATURE, schema_pb2.FLOAT, True, 0, config.sequence.length)
        gap.float_domain.min = 0.0
    fc = _feature(schema, FAIRNESS_COEF, schema_pb2.FLOAT, False, 1, 1, training_only=True)
    fc.float_domain.min = 0.0
    return schema


def projection(schema: schema_pb2.Schema, names: Sequence[str]) -> schema_pb2.Schema:
    """``schema`` cut to the features ``names`` (all of them must be in it)."""
    by_name = {f.name: f for f in schema.feature}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"the schema declares no feature {', '.join(map(repr, missing))}")
    cut = schema_pb2.Schema()
    cut.default_environment.extend(schema.default_environment)
    cut.feature.extend(by_name[n] for n in names)
    return cut


def write_schema(config: FeatureConfig, path: str | os.PathLike[str]) -> str:
    """Write the schema of ``config`` as text to ``path`` (folders created); returns the path."""
    return write_schema_proto(schema_from_config(config), path, "from the feature config")


def write_schema_proto(schema: schema_pb2.Schema, path: str | os.PathLike[str], origin: str) -> str:
    """Write ``schema`` as text to ``path`` (folders created), saying where it comes from; returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # written beside and renamed: a scheduler re-parsing the pipeline rewrites it while a run reads it
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "w") as fh:
        fh.write(f"# Generated {origin} by msrec.schemas.schema_gen; do not edit.\n")
        fh.write(text_format.MessageToString(schema))
    os.replace(partial, path)
    return str(path)


def read_schema(path: str | os.PathLike[str]) -> schema_pb2.Schema:
    with open(path) as fh:
        return text_format.Parse(fh.read(), schema_pb2.Schema())
