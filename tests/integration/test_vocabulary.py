"""The categorical vocabularies are tf.Transform's approximate (Misra-Gries) ones up to a top_k of
``APPROXIMATE_UP_TO``: for a column with at most ``top_k`` distinct values the file is exactly
``tft.vocabulary``'s, order included; above the cap every value the algorithm guarantees
(count > values / (top_k + 1)) is kept, and no more than top_k. A larger top_k gets the exact one."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import collections
import dataclasses
import functools
import random
from typing import Any

import apache_beam as beam
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_transform.tf_metadata import dataset_metadata

from msrec.models.training import preprocessing
from msrec.models.training.preprocessing import FEATURE_CONFIG_KEY, SCENARIO_VOCAB_KEY, dense_scalar, \
    preprocessing_fn, vocabulary_name
from msrec.schemas import default_feature_config
from msrec.schemas.feature_config import load_feature_config
from msrec.schemas.schema_gen import schema_from_config
from support.transform import raw_instances

N = 600
CAPPED = "brand"  # given more distinct values than its top_k below
UNDER = "city"    # fewer distinct values than its top_k, with ties in count
TOP_K = 8


def _pick(feature: Any, rnd: random.Random) -> list[str]:
    if feature.name == CAPPED:  # 40 values, geometric-ish counts: a head above the guarantee, a long tail
        return [f"b{min(int(rnd.expovariate(0.15)), 39):02d}"]
    if feature.name == UNDER:  # pairs of equally likely values: ties in count are likely
        return [f"c{rnd.randrange(12) // 2 * 2 + rnd.randrange(2)}"]
    return [f"{feature.name}{rnd.randrange(5)}"]


def _exact_next_to_ours(inputs: dict[str, Any], custom: dict[str, Any], config: Any) -> dict[str, tf.Tensor]:
    for name in (CAPPED, UNDER):
        x = dense_scalar(inputs[name], "")
        tft.vocabulary(tf.boolean_mask(x, tf.not_equal(x, "")), top_k=config.by_name[name].top_k,
                       vocab_filename=f"exact_{name}")
    return preprocessing_fn(inputs, custom)


@pytest.mark.parametrize("approximate_up_to", [preprocessing.APPROXIMATE_UP_TO, TOP_K - 1])
def test_vocabularies_match_tft_vocabulary_below_the_cap_and_keep_the_guaranteed_head_above(
        tmp_path: Any, monkeypatch: Any, approximate_up_to: int) -> None:
    # TOP_K - 1: the capped column's top_k is past the approximate range, so its vocabulary is exact
    monkeypatch.setattr(preprocessing, "APPROXIMATE_UP_TO", approximate_up_to)
    base = load_feature_config(default_feature_config())
    config = dataclasses.replace(base, features=tuple(
        dataclasses.replace(f, top_k=TOP_K) if f.name == CAPPED else f for f in base.features))
    rows = raw_instances(config, N, _pick)
    custom = {FEATURE_CONFIG_KEY: config.to_dict(), SCENARIO_VOCAB_KEY: ["scenario_id0"]}
    out = str(tmp_path / "transform")
    metadata = dataset_metadata.DatasetMetadata(schema_from_config(config))
    with beam.Pipeline(options=PipelineOptions([])) as p, tft_beam.Context(temp_dir=str(tmp_path / "tmp")):
        fn = (p | beam.Create(rows), metadata) | tft_beam.AnalyzeDataset(
            functools.partial(_exact_next_to_ours, custom=custom, config=config))
        _ = fn | tft_beam.WriteTransformFn(out)
    tft_output = tft.TFTransformOutput(out)

    def vocab(name: str) -> list[bytes]:
        return tft_output.vocabulary_by_name(name)

    counts = collections.Counter(r[UNDER][0] for r in rows)
    assert len(counts) <= config.by_name[UNDER].top_k and len(set(counts.values())) < len(counts)  # ties
    assert vocab(vocabulary_name(UNDER)) == vocab(f"exact_{UNDER}")

    counts = collections.Counter(r[CAPPED][0] for r in rows)
    assert len(counts) > TOP_K
    ours, exact = vocab(vocabulary_name(CAPPED)), vocab(f"exact_{CAPPED}")
    assert len(ours) <= TOP_K and len(exact) == TOP_K
    guaranteed = {v for v, n in counts.items() if n > N / (TOP_K + 1)}
    assert guaranteed and guaranteed <= set(ours)
    # the guaranteed head comes first, most frequent first, as in the exact file
    assert ours[:len(guaranteed)] == exact[:len(guaranteed)]
    if TOP_K > approximate_up_to:
        assert ours == exact
