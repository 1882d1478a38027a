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
])
def test_bad_configs_fail_with_the_reason(raw, change, message):
    change(raw)
    with pytest.raises(FeatureConfigError, match=message):
        FeatureConfig.from_dict(raw)
