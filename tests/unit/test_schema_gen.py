"""The TFDV schema generated from a feature config validates what ingestion writes."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import dataclasses
import os
from typing import Any

import pytest
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from msrec.components.log_example_gen.beam_ingest import run_ingest
from msrec.data.generator import generate
from msrec.schemas import default_feature_config, default_schema
from msrec.schemas.feature_config import Feature, FeatureConfig, SequenceConfig, load_feature_config
from msrec.schemas.schema_gen import projection, read_schema, schema_from_config, write_schema

TRAINING_ONLY = ("click", "date", "impression_id", "session_id")


def without(stats: statistics_pb2.DatasetFeatureStatisticsList, names: tuple[str, ...]
            ) -> statistics_pb2.DatasetFeatureStatisticsList:
    """The same statistics as if the examples had no column in ``names``."""
    out = statistics_pb2.DatasetFeatureStatisticsList()
    out.CopyFrom(stats)
    features = out.datasets[0].features
    for i in reversed(range(len(features))):
        if features[i].path.step[0] in names:
            del features[i]
    return out


def anomalies(stats: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema,
              environment: str) -> dict[str, Any]:
    found = tfdv.validate_statistics(stats, schema, environment=environment)
    return {name: [r.type for r in info.reason] for name, info in found.anomaly_info.items()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, statistics_pb2.DatasetFeatureStatisticsList]:
    root = tmp_path_factory.mktemp("schema_gen")
    data = generate(root / "gen", days=2, impressions_per_day=1500, corrupt_fraction=0.01, progress=False)
    examples = str(root / "examples")
    counts = run_ingest(str(data.logs_dir), data.dates[-1], 2, str(data.feature_config), examples,
                        str(root / "quarantine"))
    assert counts["accepted"] > 2800
    stats = tfdv.generate_statistics_from_tfrecord(os.path.join(examples, "Split-*", "*.gz"))
    return str(data.feature_config), stats


def test_the_generated_world_validates_against_the_generated_and_the_curated_schema(generated: Any,
                                                                                     tmp_path: Any) -> None:
    config_path, stats = generated
    path = write_schema(load_feature_config(config_path), tmp_path / "run" / "schema.pbtxt")
    for schema in (read_schema(path), read_schema(default_schema())):
        assert anomalies(stats, schema, "TRAINING") == {}
        # A serving request carries no label: valid in SERVING only.
        serving = without(stats, TRAINING_ONLY)
        assert anomalies(serving, schema, "SERVING") == {}
        assert "click" in anomalies(serving, schema, "TRAINING")


def test_the_generated_schema_declares_every_column_with_the_curated_types(generated: Any) -> None:
    config_path, stats = generated
    schema = schema_from_config(load_feature_config(config_path))
    curated = read_schema(default_schema())
    assert ({f.name: f.type for f in schema.feature} == {f.name: f.type for f in curated.feature})
    written = {f.path.step[0] for f in stats.datasets[0].features}
    assert written == {f.name for f in schema.feature} - {"fairness_coef"}  # FairnessGen adds it later


def test_a_missing_required_column_is_an_anomaly(generated: Any) -> None:
    config_path, stats = generated
    schema = schema_from_config(load_feature_config(config_path))
    assert anomalies(without(stats, ("device",)), schema, "TRAINING") == {
        "device": [anomalies_pb2.AnomalyInfo.SCHEMA_MISSING_COLUMN]}
    # A side-table feature is optional (a missed join leaves it absent), a sequence is not.
    assert anomalies(without(stats, ("brand",)), schema, "TRAINING") == {}
    assert "seq_brand" in anomalies(without(stats, ("seq_brand",)), schema, "TRAINING")


def test_multi_valued_and_sequence_value_counts() -> None:
    config = FeatureConfig(
        features=(Feature("user_id", "impression", "user", "categorical"),
                  Feature("item_id", "impression", "item", "categorical"),
                  Feature("scenario_id", "impression", "scenario", "categorical"),
                  Feature("tags", "items", "item", "multi", max_values=5),
                  Feature("slots", "impression", "context", "multi", max_values=3),
                  Feature("price", "items", "item", "numeric")),
        sequence=SequenceConfig(length=7, item_features=("item_id",), scenario_features=()),
        passthrough=("impression_id",))
    f = {x.name: x for x in schema_from_config(config).feature}
    assert (f["tags"].type, f["tags"].value_count.min, f["tags"].value_count.max) == (schema_pb2.BYTES, 0, 5)
    assert f["tags"].presence.min_fraction == 0 and f["slots"].presence.min_fraction == 1
    assert (f["seq_item_id"].value_count.min, f["seq_item_id"].value_count.max) == (0, 7)
    assert f["price"].type == schema_pb2.FLOAT and list(f["impression_id"].not_in_environment) == ["SERVING"]
    assert "seq_scenario_id" not in f and list(f["click"].not_in_environment) == ["SERVING"]


def test_time_gap_is_a_float_sequence_served_and_trained_on_only_when_on() -> None:
    config = load_feature_config(default_feature_config())
    assert "seq_time_gap" not in {x.name for x in schema_from_config(config).feature}
    on = dataclasses.replace(config, sequence=dataclasses.replace(config.sequence, time_gap=True))
    gap = {x.name: x for x in schema_from_config(on).feature}["seq_time_gap"]
    assert (gap.type, gap.value_count.min, gap.value_count.max) == (schema_pb2.FLOAT, 0, config.sequence.length)
    assert gap.presence.min_fraction == 1 and gap.float_domain.min == 0 and not gap.not_in_environment


def test_the_evaluation_schema_holds_only_the_label_and_the_scenario_of_the_run_schema(tmp_path):
    from msrec.pipeline.evaluation import FEATURES

    for source in (default_schema(), write_schema(load_feature_config(default_feature_config()),
                                                  tmp_path / "generated.pbtxt")):
        full = read_schema(source)
        cut = projection(full, FEATURES)
        assert [f.name for f in cut.feature] == ["click", "scenario_id"]
        by_name = {f.name: f for f in full.feature}
        assert all(f == by_name[f.name] for f in cut.feature)  # each as the run's schema declares it
        assert list(cut.default_environment) == list(full.default_environment)
    without_label = schema_pb2.Schema()
    without_label.feature.extend(f for f in read_schema(default_schema()).feature if f.name != "click")
    with pytest.raises(ValueError, match="no feature 'click'"):
        projection(without_label, FEATURES)
