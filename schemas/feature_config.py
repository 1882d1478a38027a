"""The feature config (what a dataset's columns mean) and the FeatureSpec models are built from.

The feature config is YAML (see ``schemas/feature_config.yaml``). Only the five required fields of
the raw-log contract are known to the code; every other column is named by the config.

Naming contract shared by ingestion, Transform and the models:

* a scalar feature keeps its column name (``gender``, ``position`` ...);
* the behaviour sequence is one list feature per column, ``seq_<column>`` (``seq_item_id``,
  ``seq_category``, ``seq_scenario_id`` ...), most recent click first, at most ``length`` long;
* after Transform a categorical feature is an int64 index where 0 means "missing / padding",
  1..V the vocabulary and V+1..V+oov the OOV buckets; a ``seq_<column>`` feature shares the
  vocabulary of ``<column>`` and is padded with 0 to ``length``;
* a numeric feature is a float32 (z-scored, missing -> 0);
* with ``sequence.time_gap``, ``seq_time_gap`` holds each behaviour's time: the seconds between the
  behaviour and the impression (float, as long as the other ``seq_`` lists) in the examples and the
  serving requests, a bucket id (0 = padding / unknown) after Transform;
* a feature with ``source: history`` is counted from the user's own log, not read from a column:
  ``hist_impressions`` and ``hist_clicks`` are the user's impressions and clicks (every scenario) in
  the ``sequence.lookback_days`` before the impression, strictly before its ts. Numeric, group user;
  Transform takes log(1 + count) before the z-score.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

import yaml

REQUIRED_FIELDS: tuple[str, ...] = ("ts", "user_id", "item_id", "scenario_id", "click")
LABEL = "click"
FAIRNESS_COEF = "fairness_coef"
SEQ_PREFIX = "seq_"
TIME_GAP_FEATURE = SEQ_PREFIX + "time_gap"
SOURCES = ("impression", "users", "items", "scenarios", "history")
HISTORY_IMPRESSIONS = "hist_impressions"
HISTORY_CLICKS = "hist_clicks"
HISTORY_FEATURES = (HISTORY_IMPRESSIONS, HISTORY_CLICKS)
GROUPS = ("user", "item", "context", "scenario")
KINDS = ("categorical", "numeric", "multi")
SIDE_TABLE_KEYS = {"users": "user_id", "items": "item_id", "scenarios": "scenario_id"}


class FeatureConfigError(ValueError):
    """The feature config is not usable; the message names the offending entry."""


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str
    source: str  # where the column lives: the impression itself or a side table
    group: str  # user / item / context / scenario
    kind: str  # categorical / numeric / multi (multi = list of categorical values)
    top_k: int = 100_000  # vocabulary size cap
    oov_buckets: int = 1
    max_values: int = 8  # multi only: the most values one example may carry (schema, model input width)


@dataclasses.dataclass(frozen=True)
class SequenceConfig:
    length: int = 50
    lookback_days: int = 30
    item_features: tuple[str, ...] = ("item_id",)  # item columns recorded per behaviour
    scenario_features: tuple[str, ...] = ("scenario_id",)  # scenario context per behaviour
    # Record each behaviour's time gap to the impression (SAR-Net's behaviour time). Off by default:
    # it adds a required serving input, which clients built on the signature without it do not send.
    time_gap: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return self.item_features + self.scenario_features

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(SEQ_PREFIX + c for c in self.columns)


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    features: tuple[Feature, ...]
    sequence: SequenceConfig = SequenceConfig()
    distribution_features: tuple[str, ...] = ()  # HMDN
    scenario_specific_features: tuple[str, ...] = ()  # OptMSM; the rest are shared
    passthrough: tuple[str, ...] = ()  # kept in examples (e.g. impression_id), never a model input

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise FeatureConfigError(f"duplicate feature names in {names}")
        if FAIRNESS_COEF in names + list(self.passthrough):
            # FairnessGen appends it to every example, and a second copy would be ambiguous
            raise FeatureConfigError(f"{FAIRNESS_COEF!r} is reserved for the Fairness Coefficient")
        for f in self.features:
            if f.source not in SOURCES:
                raise FeatureConfigError(f"feature {f.name!r}: source {f.source!r} not in {SOURCES}")
            if f.group not in GROUPS:
                raise FeatureConfigError(f"feature {f.name!r}: group {f.group!r} not in {GROUPS}")
            if f.kind not in KINDS:
                raise FeatureConfigError(f"feature {f.name!r}: kind {f.kind!r} not in {KINDS}")
            if f.kind == "multi" and f.max_values < 1:
                raise FeatureConfigError(f"feature {f.name!r}: max_values must be at least 1")
            if (f.source == "history") != (f.name in HISTORY_FEATURES):
                raise FeatureConfigError(f"feature {f.name!r}: the names {list(HISTORY_FEATURES)} are counted from "
                                         f"the user's log and take source 'history', and only they do")
            if f.source == "history" and (f.kind, f.group) != ("numeric", "user"):
                raise FeatureConfigError(f"feature {f.name!r}: a history count is kind numeric, group user")
        for required in ("user_id", "item_id", "scenario_id"):
            if required not in names:
                raise FeatureConfigError(f"the feature config must declare {required!r}")
        if TIME_GAP_FEATURE in names + list(self.passthrough):
            raise FeatureConfigError(f"{TIME_GAP_FEATURE!r} is reserved for sequence.time_gap")
        for col in self.sequence.columns:
            if col not in names:
                raise FeatureConfigError(f"sequence column {col!r} is not a declared feature")
            if self.by_name[col].kind != "categorical":
                raise FeatureConfigError(f"sequence column {col!r} must be categorical (one value per behaviour)")
        if not isinstance(self.sequence.time_gap, bool):
            raise FeatureConfigError(f"sequence.time_gap must be true or false, got {self.sequence.time_gap!r}")
        if self.sequence.time_gap and not self.sequence.columns:
            raise FeatureConfigError("sequence.time_gap needs a behaviour sequence (item or scenario features)")
        for col in self.distribution_features + self.scenario_specific_features:
            if col not in names:
                raise FeatureConfigError(f"{col!r} is named as a model feature but not declared")

    @property
    def by_name(self) -> dict[str, Feature]:
        return {f.name: f for f in self.features}

    def from_source(self, source: str) -> list[Feature]:
        return [f for f in self.features if f.source == source]

    @property
    def history_counts(self) -> tuple[str, ...]:
        """The history-count features the config declares (``source: history``)."""
        return tuple(f.name for f in self.from_source("history"))

    def group(self, group: str) -> list[str]:
        return [f.name for f in self.features if f.group == group]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind in ("categorical", "multi")]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def multi_valued(self) -> dict[str, int]:
        """Multi-valued feature -> its ``max_values``."""
        return {f.name: f.max_values for f in self.features if f.kind == "multi"}

    def to_dict(self) -> dict[str, Any]:
        sequence: dict[str, Any] = {
            "length": self.sequence.length,
            "lookback_days": self.sequence.lookback_days,
            "item_features": list(self.sequence.item_features),
            "scenario_features": list(self.sequence.scenario_features),
        }
        if self.sequence.time_gap:
            # only when on: a config without it keeps its dict, so its training fingerprint is unchanged
            sequence["time_gap"] = True
        return {
            "features": [dataclasses.asdict(f) for f in self.features],
            "sequence": sequence,
            "distribution_features": list(self.distribution_features),
            "scenario_specific_features": list(self.scenario_specific_features),
            "passthrough": list(self.passthrough),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "FeatureConfig":
        try:
            feats = tuple(Feature(**f) for f in raw["features"])
            seq_raw = dict(raw.get("sequence") or {})
            seq = SequenceConfig(
                length=int(seq_raw.get("length", 50)),
                lookback_days=int(seq_raw.get("lookback_days", 30)),
                item_features=tuple(seq_raw.get("item_features", ("item_id",))),
                scenario_features=tuple(seq_raw.get("scenario_features", ("scenario_id",))),
                time_gap=seq_raw.get("time_gap", False),
            )
        except (KeyError, TypeError) as e:
            raise FeatureConfigError(f"malformed feature config: {e}") from e
        return cls(
            features=feats,
            sequence=seq,
            distribution_features=tuple(raw.get("distribution_features", ())),
            scenario_specific_features=tuple(raw.get("scenario_specific_features", ())),
            passthrough=tuple(raw.get("passthrough", ())),
        )


def load_feature_config(path: str | os.PathLike[str]) -> FeatureConfig:
    with open(path) as fh:
        return FeatureConfig.from_dict(yaml.safe_load(fh))


def save_feature_config(config: FeatureConfig, path: str | os.PathLike[str]) -> None:
    with open(path, "w") as fh:
        yaml.safe_dump(config.to_dict(), fh, sort_keys=False)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """What a model needs to know about its (transformed) inputs.

    ``cardinality`` counts every index a categorical feature can take after Transform
    (0 = padding/missing, the vocabulary, the OOV buckets), so it is an embedding table's size.
    A multi-valued feature is a categorical one whose input is [B, K] ids padded with 0,
    K = ``multi_valued[name]``.
    """

    cardinality: Mapping[str, int]
    groups: Mapping[str, Sequence[str]]  # user/item/context/scenario -> scalar feature names
    numeric: Sequence[str]
    sequence: Mapping[str, str]  # seq feature -> the feature whose vocabulary it shares
    sequence_length: int
    scenario_feature: str = "scenario_id"
    distribution_features: Sequence[str] = ()
    scenario_specific_features: Sequence[str] = ()
    multi_valued: Mapping[str, int] = dataclasses.field(default_factory=dict)
    time_gap: bool = False  # the inputs hold ``seq_time_gap`` [B, sequence_length] bucket ids

    @property
    def num_scenarios(self) -> int:
        """Size of the scenario index space (padding + known scenarios + OOV)."""
        return int(self.cardinality[self.scenario_feature])

    @property
    def categorical(self) -> list[str]:
        return [n for g in GROUPS for n in self.groups.get(g, ()) if n in self.cardinality]

    @property
    def sequence_item_features(self) -> list[str]:
        """Sequence features whose vocabulary is an item feature's, aligned with ``item_features``."""
        item = set(self.groups.get("item", ()))
        return [s for s, base in self.sequence.items() if base in item]

    @property
    def sequence_scenario_features(self) -> list[str]:
        scen = set(self.groups.get("scenario", ()))
        return [s for s, base in self.sequence.items() if base in scen]

    @classmethod
    def from_config(cls, config: FeatureConfig, vocab_sizes: Mapping[str, int]) -> "FeatureSpec":
        """``vocab_sizes``: the size of each categorical feature's vocabulary from Transform."""
        cardinality = {}
        for name in config.categorical:
            f = config.by_name[name]
            cardinality[name] = 1 + int(vocab_sizes[name]) + f.oov_buckets
        groups = {g: tuple(config.group(g)) for g in GROUPS}
        return cls(
            cardinality=cardinality,
            groups=groups,
            numeric=tuple(config.numeric),
            sequence={SEQ_PREFIX + c: c for c in config.sequence.columns},
            sequence_length=config.sequence.length,
            distribution_features=config.distribution_features,
            scenario_specific_features=config.scenario_specific_features,
            multi_valued=config.multi_valued,
            time_gap=config.sequence.time_gap,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: (dict(v) if isinstance(v, Mapping) else list(v) if isinstance(v, (list, tuple)) else v)
                for k, v in d.items()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "FeatureSpec":
        fields = dict(raw)
        fields["groups"] = {g: tuple(v) for g, v in fields["groups"].items()}
        fields["multi_valued"] = dict(fields.get("multi_valued") or {})
        for key in ("numeric", "distribution_features", "scenario_specific_features"):
            fields[key] = tuple(fields.get(key, ()))
        return cls(**fields)
