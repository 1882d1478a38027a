"""The trainer's per-scenario click-rate prior, computed from transformed examples on disk."""
from __future__ import annotations

import pathlib

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf
from support.models import small_spec

from msrec.schemas.feature_config import LABEL
from msrec.models.training.trainer import scenario_click_rates, with_prior


class _TransformOutput:
    """The one method of tft.TFTransformOutput the prior reads: the transformed feature spec."""

    def transformed_feature_spec(self) -> dict[str, tf.io.FixedLenFeature]:
        return {LABEL: tf.io.FixedLenFeature([], tf.int64), "scenario_id": tf.io.FixedLenFeature([], tf.int64),
                "item_id": tf.io.FixedLenFeature([], tf.int64)}


def _write(path: pathlib.Path, scenarios: list[int], labels: list[int]) -> None:
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for s, y in zip(scenarios, labels):
            feature = {LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[y])),
                       "scenario_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[s])),
                       "item_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[7]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def test_click_rates_are_shrunk_toward_the_overall_rate(tmp_path: pathlib.Path) -> None:
    spec = small_spec()
    # scenario 1: 1000 samples, 100 clicks; scenario 2: 10 samples, 5 clicks; split over two files
    _write(tmp_path / "a.gz", [1] * 600 + [2] * 10, [1] * 60 + [0] * 540 + [1] * 5 + [0] * 5)
    _write(tmp_path / "b.gz", [1] * 400, [1] * 40 + [0] * 360)
    rates = scenario_click_rates([str(tmp_path / "*.gz")], _TransformOutput(), spec, smoothing=100.0)
    overall = 105 / 1010
    assert len(rates) == spec.num_scenarios
    assert rates[1] == pytest.approx((100 + 100 * overall) / 1100)
    assert rates[2] == pytest.approx((5 + 100 * overall) / 110)
    # never seen (padding, other scenarios, OOV): the overall rate
    unseen = [r for i, r in enumerate(rates) if i not in (1, 2)]
    np.testing.assert_allclose(unseen, overall)


def test_a_prior_the_user_set_is_kept(tmp_path: pathlib.Path) -> None:
    spec = small_spec()
    assert with_prior({"prior_ctr": []}, [str(tmp_path / "none*")], _TransformOutput(), spec) == {"prior_ctr": []}
    with pytest.raises(FileNotFoundError):
        with_prior({}, [str(tmp_path / "none*")], _TransformOutput(), spec)


def test_a_scenario_index_outside_the_model_fails_clearly(tmp_path: pathlib.Path) -> None:
    spec = small_spec()
    _write(tmp_path / "a.gz", [1, spec.num_scenarios], [0, 1])
    with pytest.raises(ValueError, match="outside the"):
        scenario_click_rates([str(tmp_path / "*.gz")], _TransformOutput(), spec)
