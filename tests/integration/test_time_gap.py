"""Inputs taken from the user's own log, through the pipeline: SAR-Net's behaviour time
(``sequence.time_gap``) and the history counts (``source: history``). A hand-built log ingested by
LogExampleGen's Beam code, those examples through Transform, SAR-Net exported with the Transform graph,
and serving_default requests built the way ``msrec query`` builds them."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import dataclasses
import glob
import json
import os
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
import yaml
from tensorflow_serving.apis import predict_pb2

from msrec.components.log_example_gen.beam_ingest import run_ingest
from msrec.schemas.feature_config import TIME_GAP_FEATURE, FeatureConfig, load_feature_config
from msrec.schemas.schema_gen import schema_from_config
from msrec.serving.candidates import build_candidates
from msrec.serving.client import as_columns, coerce_inputs
from msrec.serving.errors import InvalidArgument
from msrec.serving.limits import RequestLimits
from msrec.serving.servable import Servable
from msrec.serving.tensors import fill_tensor_proto
from msrec.serving.wire import parse_request
from support.ingest import DAY_MS, day_ms
from support.models import SMALL
from support.transform import transform_and_export

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
NOW = day_ms(DAYS[2]) + 12 * 3_600_000  # the impression whose behaviours the tests check
SEQ_LEN = 6
SCENARIOS = ["s1", "s2"]
SARNET = {**SMALL, "num_specific_experts": 1, "num_shared_experts": 2}  # fewer layers to trace when exporting


# A small config (few vocabularies keep Transform's analysis short) with SAR-Net's groups: the
# behaviours record item and scenario columns, and their times.
CONFIG = {
    "features": [
        {"name": "user_id", "source": "impression", "group": "user", "kind": "categorical"},
        {"name": "item_id", "source": "impression", "group": "item", "kind": "categorical"},
        {"name": "scenario_id", "source": "impression", "group": "scenario", "kind": "categorical"},
        {"name": "position", "source": "impression", "group": "context", "kind": "numeric"},
        {"name": "category", "source": "items", "group": "item", "kind": "categorical"},
        {"name": "scenario_type", "source": "scenarios", "group": "scenario", "kind": "categorical"},
        {"name": "hist_impressions", "source": "history", "group": "user", "kind": "numeric"},
        {"name": "hist_clicks", "source": "history", "group": "user", "kind": "numeric"},
    ],
    "sequence": {"length": SEQ_LEN, "item_features": ["item_id", "category"],
                 "scenario_features": ["scenario_id", "scenario_type"], "time_gap": True},
    "passthrough": ["impression_id"],
}


def _line(ts: int, user: str, item: str, scenario: str, click: int, name: str) -> str:
    return json.dumps({"ts": ts, "user_id": user, "item_id": item, "scenario_id": scenario, "click": click,
                       "position": 1, "impression_id": name}) + "\n"


def _write_logs(logs: str) -> str:
    """u1 clicked i1 two days before NOW and i2 90 s before it; other users' impressions give
    Transform vocabularies to learn."""
    days = {d: [] for d in DAYS}
    days[DAYS[0]].append(_line(NOW - 2 * DAY_MS, "u1", "i1", "s2", 1, "two_days_before"))
    days[DAYS[2]].append(_line(NOW - 90_000, "u1", "i2", "s1", 1, "90s_before"))
    days[DAYS[2]].append(_line(NOW, "u1", "i3", "s1", 0, "target"))
    for k in range(12):
        day = DAYS[k % 3]
        days[day].append(_line(day_ms(day) + 3_600_000 * (k + 1), f"u{2 + k % 3}", f"i{k % 4}", SCENARIOS[k % 2],
                               k % 2, f"other{k}"))
    for day, lines in days.items():
        os.makedirs(os.path.join(logs, day))
        with open(os.path.join(logs, day, "impressions-0.jsonl"), "w") as fh:
            fh.writelines(lines)
    tables = {"users": [{"user_id": f"u{k}"} for k in range(1, 5)],
              "items": [{"item_id": f"i{k}", "category": f"c{k % 2}"} for k in range(4)],
              "scenarios": [{"scenario_id": s, "scenario_type": "feed"} for s in SCENARIOS]}
    for name, rows in tables.items():
        with open(os.path.join(logs, f"{name}.jsonl"), "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    config_path = os.path.join(logs, "feature_config.yaml")
    with open(config_path, "w") as fh:
        yaml.safe_dump(CONFIG, fh)
    return config_path


def _read_examples(examples_dir: str) -> list[bytes]:
    files = sorted(glob.glob(os.path.join(examples_dir, "Split-*", "data_tfrecord-*.gz")))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _raw_row(serialized: bytes, config: FeatureConfig) -> dict[str, list]:
    """An ingested tf.Example as Transform's raw instance: every schema column, [] when absent."""
    features = tf.train.Example.FromString(serialized).features.feature
    row = {}
    for name in (f.name for f in schema_from_config(config).feature):
        kind = features[name].WhichOneof("kind") if name in features else None
        row[name] = list(getattr(features[name], kind).value) if kind else []
    return row


@dataclasses.dataclass
class Pipeline:
    logs: str
    config: FeatureConfig
    examples: list[bytes]  # what LogExampleGen wrote
    rows: list[dict[str, list]]  # the same examples as lists of values
    tft_output: Any
    export_dir: str


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    root = str(tmp_path_factory.mktemp("time_gap"))
    logs = os.path.join(root, "logs")
    config_path = _write_logs(logs)
    config = load_feature_config(config_path)
    examples = os.path.join(root, "examples")
    run_ingest(logs, DAYS[2], 1, config_path, examples, os.path.join(root, "quarantine"))
    serialized = _read_examples(examples)
    rows = [_raw_row(s, config) for s in serialized]
    tft_output, spec, export_dir = transform_and_export(root, config, rows, SCENARIOS, "sarnet", SARNET)
    assert spec.time_gap
    return Pipeline(logs, config, serialized, rows, tft_output, export_dir)


def _target(rows: list[dict[str, list]]) -> dict[str, list]:
    [row] = [r for r in rows if r["impression_id"] == [b"target"]]
    return row


def test_ingestion_writes_the_seconds_from_each_behaviour_and_the_client_sends_the_same(pipeline: Pipeline) -> None:
    target = _target(pipeline.rows)
    assert target["seq_item_id"] == [b"i2", b"i1"]  # newest first
    assert target[TIME_GAP_FEATURE] == [90.0, 2 * 86400.0]
    for row in pipeline.rows:  # one gap per behaviour, none negative
        assert len(row[TIME_GAP_FEATURE]) == len(row["seq_item_id"]) and all(g > 0 for g in row[TIME_GAP_FEATURE])
    request = build_candidates(pipeline.logs, "u1", "s1", ["i3"], now_ms=NOW, config=pipeline.config).rows[0]
    assert request[TIME_GAP_FEATURE] == [90.0, 2 * 86400.0] + [0.0] * (SEQ_LEN - 2)


def test_transform_buckets_the_gaps_by_the_documented_boundaries(pipeline: Pipeline) -> None:
    raw = tf.io.parse_example(pipeline.examples, pipeline.tft_output.raw_feature_spec())
    buckets = pipeline.tft_output.transform_raw_features(raw)[TIME_GAP_FEATURE].numpy()
    target = [r["impression_id"] for r in pipeline.rows].index([b"target"])
    # 90 s: 1 to 10 minutes, bucket 2; 2 days: 1 to 3 days, bucket 6; then padding
    np.testing.assert_array_equal(buckets[target], [2, 6] + [0] * (SEQ_LEN - 2))
    lengths = np.array([len(r["seq_item_id"]) for r in pipeline.rows])
    assert np.all((buckets > 0).sum(axis=1) == lengths)
    # an example written without the gaps (before time_gap was set): every behaviour's time unknown
    without = tf.train.Example.FromString(pipeline.examples[target])
    del without.features.feature[TIME_GAP_FEATURE]
    raw = tf.io.parse_example([without.SerializeToString()], pipeline.tft_output.raw_feature_spec())
    assert not pipeline.tft_output.transform_raw_features(raw)[TIME_GAP_FEATURE].numpy().any()


def test_the_served_model_takes_the_gaps_and_they_move_the_score(pipeline: Pipeline) -> None:
    servable = Servable("m", 1, pipeline.export_dir)
    assert servable.warm_up() > 0  # the warm-up requests carry seq_time_gap too
    signature = servable.signature("serving_default")
    assert signature.inputs[TIME_GAP_FEATURE].shape == (None, None)
    row = build_candidates(pipeline.logs, "u1", "s1", ["i3"], now_ms=NOW, config=pipeline.config).rows[0]
    older = {**row, TIME_GAP_FEATURE: [g + 40 * 86400.0 if g else 0.0 for g in row[TIME_GAP_FEATURE]]}
    inputs, notes = coerce_inputs(as_columns([row, older]), signature.inputs)
    assert not notes and inputs[TIME_GAP_FEATURE].dtype == np.float32
    ctr = signature.run(inputs)["ctr"]
    assert np.all((ctr > 0) & (ctr < 1))
    assert abs(ctr[0] - ctr[1]) > 1e-6  # only the behaviour times differ
    # the Evaluator's and FairnessGen's signature reads the gaps from the ingested examples
    scored = servable.signature("serving_tfexample").run({"examples": np.array(pipeline.examples, dtype=object)})
    assert scored["ctr"].shape == (len(pipeline.examples),) and np.all(np.isfinite(scored["ctr"]))
    # why the generated world leaves time_gap off: a client built on the signature without it is refused
    request = predict_pb2.PredictRequest()
    for name, values in inputs.items():
        if name != TIME_GAP_FEATURE:
            fill_tensor_proto(values, request.inputs[name])
    with pytest.raises(InvalidArgument, match="missing input.*seq_time_gap"):
        servable.predict(parse_request(request.SerializeToString()), RequestLimits())


def test_history_counts_are_ingested_transformed_served_and_move_the_score(pipeline: Pipeline) -> None:
    target = _target(pipeline.rows)
    assert (target["hist_impressions"], target["hist_clicks"]) == ([2.0], [2.0])  # the two clicks before NOW
    row = build_candidates(pipeline.logs, "u1", "s1", ["i3"], now_ms=NOW, config=pipeline.config).rows[0]
    assert (row["hist_impressions"], row["hist_clicks"]) == (2.0, 2.0)
    # Transform: the z-score of log(1 + count) over the examples it analysed
    raw = tf.io.parse_example(pipeline.examples, pipeline.tft_output.raw_feature_spec())
    transformed = pipeline.tft_output.transform_raw_features(raw)
    for name in ("hist_impressions", "hist_clicks"):
        x = np.log1p([r[name][0] for r in pipeline.rows])
        np.testing.assert_allclose(transformed[name].numpy().reshape(-1), (x - x.mean()) / x.std(), rtol=1e-4, atol=1e-5)
    signature = Servable("m", 1, pipeline.export_dir).signature("serving_default")
    assert signature.inputs["hist_clicks"].shape == (None,)
    inputs, notes = coerce_inputs(as_columns([row, {**row, "hist_clicks": 0.0}]), signature.inputs)
    assert not notes
    ctr = signature.run(inputs)["ctr"]
    assert abs(ctr[0] - ctr[1]) > 1e-6  # only the user's click count differs
