"""LogExampleGen as a TFX component: run by LocalDagRunner, read by (Sampled)StatisticsGen and ExampleValidator."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import glob
import json
import os
from typing import Any

from ml_metadata.metadata_store import metadata_store
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx import v1 as tfx

from support.ingest import write_fixture
from msrec.components.log_example_gen.component import LogExampleGen
from msrec.components.statistics_gen import component as statistics_gen
from msrec.schemas import default_schema

DAYS = ["2026-11-01", "2026-11-02"]


def _props(artifact: Any) -> dict[str, Any]:
    def value(v: Any) -> Any:
        return getattr(v, v.WhichOneof("value"))
    return {**{k: value(v) for k, v in artifact.properties.items()},
            **{k: value(v) for k, v in artifact.custom_properties.items()}}


def test_log_example_gen_runs_in_a_local_dag_and_feeds_statistics_and_validation(tmp_path: Any, monkeypatch: Any
                                                                                  ) -> None:
    # a split longer than this is profiled on a sample; the fixture's train and eval splits are, val is not
    monkeypatch.setattr(statistics_gen, "MAX_EXAMPLES", 40)
    fx = write_fixture(str(tmp_path), DAYS, per_day=80)
    gen = LogExampleGen(logs_dir=fx.logs, date=DAYS[-1], window_days=2, feature_config=fx.config_path)
    stats = statistics_gen.SampledStatisticsGen(examples=gen.outputs["examples"])
    schema = tfx.components.ImportSchemaGen(schema_file=default_schema())
    validator = tfx.components.ExampleValidator(statistics=stats.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    db = os.path.join(str(tmp_path), "metadata.sqlite")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="ingest_test", pipeline_root=os.path.join(str(tmp_path), "root"),
        components=[gen, stats, schema, validator],
        # no Beam arguments, as msrec's local runs: TFX then builds no package of itself under /tmp
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(db))
    tfx.orchestration.LocalDagRunner().run(pipeline)

    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(db))
    [examples] = store.get_artifacts_by_type("Examples")
    [quarantine] = store.get_artifacts_by_type("msrec.Quarantine")
    with open(os.path.join(quarantine.uri, "counts.json")) as fh:
        counts = json.load(fh)
    valid = sum(r.day == DAYS[1] for r in fx.rows) + sum(r.day == DAYS[0] for r in fx.rows)
    p = _props(examples)
    assert json.loads(p["split_names"]) == ["train", "val", "eval"]
    assert p["span"] == _props(quarantine)["span"] == 20759  # 2026-11-02, in days since 1970-01-01
    assert p["payload_format"] == "FORMAT_TF_EXAMPLE" and p["file_format"] == "tfrecords_gzip"
    assert p["accepted"] == counts["accepted"] == valid
    assert p["quarantined"] == _props(quarantine)["quarantined"] == len(fx.bad)
    assert p["num_train"] + p["num_val"] + p["num_eval"] == valid
    for split in ("train", "val", "eval"):
        assert glob.glob(os.path.join(examples.uri, f"Split-{split}", "data_tfrecord-*.gz"))
    lines = [json.loads(line) for path in glob.glob(os.path.join(quarantine.uri, "quarantine-*.jsonl"))
             for line in open(path)]
    assert {(q["file"], q["line_no"]) for q in lines} == set(fx.bad) | set(fx.bad_side)

    [anomalies] = store.get_artifacts_by_type("ExampleAnomalies")
    for split in ("train", "eval"):
        with open(os.path.join(anomalies.uri, f"Split-{split}", "SchemaDiff.pb"), "rb") as fh:
            found = anomalies_pb2.Anomalies.FromString(fh.read())
        assert not found.anomaly_info, found

    [statistics] = store.get_artifacts_by_type("ExampleStatistics")
    rates = json.loads(_props(statistics)["sample_rate_by_split"]["__value__"])  # TFX wraps the JSON in a Struct
    assert rates == statistics_gen.sample_rates({s: p[f"num_{s}"] for s in ("train", "val", "eval")}, 40)
    assert rates["train"] < 1.0 and rates["eval"] < 1.0 and p["num_val"] <= 40 and rates["val"] == 1.0
    # The train split was sampled at rates["train"]. TFDV keeps or drops whole record batches, and Beam sizes
    # them by timing, so how many train examples were profiled varies from run to run (0 and all of them
    # included, for a split this small); the val split, at rate 1.0, is profiled whole.
    with open(os.path.join(statistics.uri, "Split-val", "FeatureStats.pb"), "rb") as fh:
        profiled = statistics_pb2.DatasetFeatureStatisticsList.FromString(fh.read()).datasets[0].num_examples
    assert profiled == p["num_val"]
