"""Accepted impressions (joined, with their behaviour sequences) as serialized tf.train.Examples.

Feature names follow the contract in msrec.schemas.feature_config: every config feature under its own name
(categorical and multi as bytes, numeric as float; absent when a side-table join missed), ``ts``
and ``click`` as int64, passthrough fields and ``date`` (the day folder) as bytes, and one
``seq_<column>`` bytes list per sequence column, all of equal length (possibly empty); with
``sequence.time_gap``, ``seq_time_gap`` as a float list of the same length: the seconds from each
behaviour to the impression.

Examples are encoded a batch at a time by tfx_bsl's C++ encoder from Arrow columns: building the
protos field by field in Python costs several times more, and encoding dominated ingestion's CPU.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
from tfx_bsl.coders import example_coder

from msrec.schemas.feature_config import LABEL, SEQ_PREFIX, TIME_GAP_FEATURE, FeatureConfig
from msrec.components.log_example_gen.records import Impression
from msrec.components.log_example_gen.sequences import Behaviour

TS_FEATURE = "ts"
DATE_FEATURE = "date"
_BYTES = pa.list_(pa.binary())
_ARROW_TYPE = {"categorical": _BYTES, "multi": _BYTES, "numeric": pa.list_(pa.float32())}


def _scalar_column(values: list[Any], value_type: pa.DataType) -> pa.Array:
    # One value per row: offsets 0..n over the flat values, without building per-row lists.
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values, type=value_type))


class ExampleEncoder:
    def __init__(self, config: FeatureConfig):
        self._features = [(f.name, f.kind) for f in config.features]
        self._passthrough = tuple(config.passthrough)
        self._seq_names = [SEQ_PREFIX + c for c in config.sequence.columns]
        self._time_gap = config.sequence.time_gap
        self._coder = example_coder.RecordBatchToExamplesEncoder()

    def encode(self, batch: Sequence[tuple[Impression, Sequence[Behaviour]]]) -> list[bytes]:
        """Serialized Examples of ``batch``, in its order."""
        # Arrow has no "absent" that the encoder leaves out (a null list becomes an empty feature
        # entry), so records are encoded in groups sharing the same set of present features.
        groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]] = {}
        for i, (record, _) in enumerate(batch):
            groups.setdefault((tuple(record.features), tuple(record.passthrough)), []).append(i)
        out: list[bytes] = [b""] * len(batch)
        for (features, passthrough), rows in groups.items():
            present = set(features) | set(passthrough)
            encoded = self._coder.encode(self._record_batch([batch[i] for i in rows], present))
            for i, serialized in zip(rows, encoded):
                out[i] = serialized
        return out

    def _record_batch(self, batch: Sequence[tuple[Impression, Sequence[Behaviour]]],
                      present: set[str]) -> pa.RecordBatch:
        records = [r for r, _ in batch]
        names: list[str] = []
        columns: list[pa.Array] = []
        for name, kind in self._features:
            if name not in present:
                continue
            names.append(name)
            if kind == "multi":
                columns.append(pa.array([r.features[name] for r in records], type=_BYTES))
            else:
                columns.append(_scalar_column([r.features[name] for r in records], _ARROW_TYPE[kind].value_type))
        for name in self._passthrough:
            if name in present:
                names.append(name)
                columns.append(_scalar_column([r.passthrough[name] for r in records], pa.binary()))
        names += [TS_FEATURE, LABEL, DATE_FEATURE]
        columns += [_scalar_column([r.ts for r in records], pa.int64()),
                    _scalar_column([r.click for r in records], pa.int64()),
                    _scalar_column([r.day for r in records], pa.binary())]
        for k, name in enumerate(self._seq_names):
            names.append(name)
            columns.append(pa.array([[b.values[k] for b in behaviours] for _, behaviours in batch], type=_BYTES))
        if self._time_gap:
            # the raw gap in seconds; Transform buckets it (one home for the boundaries)
            names.append(TIME_GAP_FEATURE)
            columns.append(pa.array([[(r.ts - b.ts) / 1000.0 for b in behaviours] for r, behaviours in batch],
                                    type=pa.list_(pa.float32())))
        return pa.RecordBatch.from_arrays(columns, names)
