"""The columns ``msrec generate`` writes and the feature config that describes them.

``schemas/feature_config.yaml`` is the same config as YAML; the generator writes this one beside its
logs so a generated dataset is self-describing (a test keeps the two equal).
"""
from __future__ import annotations

from msrec.schemas.feature_config import Feature, FeatureConfig, SequenceConfig

# Fields of an impression line, in the order they are written.
IMPRESSION_FIELDS = ("ts", "user_id", "item_id", "scenario_id", "click", "impression_id", "position", "hour",
                     "device", "session_id")
USER_COLUMNS = ("user_id", "gender", "age_bucket", "city", "is_new_user")
ITEM_COLUMNS = ("item_id", "category", "brand", "price_bucket")
SCENARIO_COLUMNS = ("scenario_id", "scenario_type", "theme")


def _f(name: str, source: str, group: str, kind: str = "categorical", top_k: int = 100_000,
       oov_buckets: int = 1) -> Feature:
    return Feature(name=name, source=source, group=group, kind=kind, top_k=top_k, oov_buckets=oov_buckets)


def dataset_feature_config() -> FeatureConfig:
    """Feature config of the generated dataset."""
    return FeatureConfig(
        features=(
            _f("user_id", "impression", "user", top_k=200_000, oov_buckets=10),
            _f("item_id", "impression", "item", top_k=200_000, oov_buckets=10),
            _f("scenario_id", "impression", "scenario", top_k=1000),
            _f("position", "impression", "context", kind="numeric"),
            _f("hour", "impression", "context", top_k=24),
            _f("device", "impression", "context", top_k=16),
            _f("gender", "users", "user", top_k=8),
            _f("age_bucket", "users", "user", top_k=16),
            _f("city", "users", "user", top_k=1000),
            _f("is_new_user", "users", "user", top_k=4),
            _f("category", "items", "item", top_k=1000),
            _f("brand", "items", "item", top_k=10_000),
            _f("price_bucket", "items", "item", top_k=32),
            _f("scenario_type", "scenarios", "scenario", top_k=64),
            _f("theme", "scenarios", "scenario", top_k=256),
        ),
        # time_gap off: it would add a required serving input that existing clients do not send
        sequence=SequenceConfig(length=50, lookback_days=30, item_features=("item_id", "category", "brand"),
                                scenario_features=("scenario_id", "scenario_type"), time_gap=False),
        distribution_features=("scenario_id", "gender", "city", "is_new_user"),
        scenario_specific_features=("scenario_id", "scenario_type", "theme", "position"),
        # carried into the examples for analysis, never a model input
        passthrough=("impression_id", "session_id"),
    )
