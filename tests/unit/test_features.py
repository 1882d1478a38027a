"""Feature config validation: a bad config fails with a message naming the problem."""
import pathlib

import pytest
import yaml

from msrec.schemas import default_feature_config
from msrec.schemas.feature_config import FeatureConfig, FeatureConfigError

CONFIG = pathlib.Path(default_feature_config())


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def test_the_shipped_config_is_valid(raw):
    assert "item_id" in FeatureConfig.from_dict(raw).by_name


@pytest.mark.parametrize("change, message", [
    (lambda r: r["features"].append(dict(r["features"][0])), "duplicate feature names"),
    (lambda r: r["features"].append({"name": "fairness_coef", "source": "impression", "group": "context",
                                     "kind": "numeric"}), "reserved for the Fairness Coefficient"),
    (lambda r: r["passthrough"].append("fairness_coef"), "reserved for the Fairness Coefficient"),
    (lambda r: r["sequence"]["item_features"].append("colour"), "not a declared feature"),
    (lambda r: r["sequence"].update(time_gap="yes"), "time_gap must be true or false"),
    (lambda r: r["features"].append({"name": "seq_time_gap", "source": "impression", "group": "context",
                                     "kind": "numeric"}), "reserved for sequence.time_gap"),
    (lambda r: r["features"].append({"name": "visits", "source": "history", "group": "user",
                                     "kind": "numeric"}), "counted from the user's log"),
    (lambda r: r["features"].append({"name": "hist_clicks", "source": "impression", "group": "user",
                                     "kind": "numeric"}), "counted from the user's log"),
    (lambda r: r["features"].append({"name": "hist_clicks", "source": "history", "group": "context",
                                     "kind": "numeric"}), "kind numeric, group user"),
])
def test_bad_configs_fail_with_the_reason(raw, change, message):
    change(raw)
    with pytest.raises(FeatureConfigError, match=message):
        FeatureConfig.from_dict(raw)


def test_time_gap_is_off_unless_set_and_leaves_an_existing_config_as_it_was(raw):
    """An existing config (no time_gap) keeps its dict, hence its training fingerprint: no full retrain."""
    config = FeatureConfig.from_dict(raw)
    assert not config.sequence.time_gap and "time_gap" not in config.to_dict()["sequence"]
    assert config.to_dict() == FeatureConfig.from_dict(config.to_dict()).to_dict()
    raw["sequence"]["time_gap"] = True
    on = FeatureConfig.from_dict(raw)
    assert on.sequence.time_gap and FeatureConfig.from_dict(on.to_dict()) == on
