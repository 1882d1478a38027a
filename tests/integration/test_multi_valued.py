"""A multi-valued categorical feature (an item's tags) end to end: every registered model, and
Transform + the exported serving signature as ``msrec query`` calls it."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import random
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
import yaml

from msrec.models.base import example_inputs
from msrec.models.registry import build_model, model_names
from msrec.models.synthetic import planted_ctr_batch
from msrec.schemas import default_feature_config
from msrec.schemas.feature_config import FeatureConfig, FeatureSpec
from msrec.serving.client import as_columns, coerce_inputs
from msrec.serving.servable import Servable, read_signature_defs
from msrec.serving.tensors import InputSpec
from support.transform import raw_instances, transform_and_export

TAGS = "tags"
MAX_TAGS = 4
SEQ_LEN = 4
SMALL = {"embedding_dim": 8, "attention_units": (16,)}
TAG_VOCAB = [f"tag{k}" for k in range(10)]
SCENARIOS = ["s0", "s1", "s2"]


def config_with_tags() -> FeatureConfig:
    """The generated world's feature config plus a multi-valued item feature."""
    with open(default_feature_config()) as fh:
        raw = yaml.safe_load(fh)
    raw["features"].append({"name": TAGS, "source": "items", "group": "item", "kind": "multi",
                            "top_k": 100, "oov_buckets": 1, "max_values": MAX_TAGS})
    raw["sequence"]["length"] = SEQ_LEN
    return FeatureConfig.from_dict(raw)


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    config = config_with_tags()
    return FeatureSpec.from_config(config, {n: 6 for n in config.categorical})


def test_the_spec_and_the_model_inputs_carry_k_values(spec: FeatureSpec) -> None:
    assert spec.multi_valued == {TAGS: MAX_TAGS} and TAGS in spec.groups["item"]
    assert example_inputs(spec)[TAGS].shape == (2, MAX_TAGS)
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    planted = planted_ctr_batch(spec, 50, seed=0).features[TAGS]
    assert planted.shape == (50, MAX_TAGS) and (planted[:, 0] > 0).all() and (planted == 0).any()


@pytest.mark.parametrize("name", model_names())
def test_every_model_reads_the_multi_valued_feature(name: str, spec: FeatureSpec) -> None:
    tf.keras.utils.set_random_seed(0)
    model = build_model(name, spec, SMALL)
    features = planted_ctr_batch(spec, 32, seed=1).features
    before = model({k: tf.constant(v) for k, v in features.items()}, training=False).numpy()
    assert before.shape == (32, 1) and np.isfinite(before).all()
    shuffled = dict(features)
    shuffled[TAGS] = np.roll(features[TAGS], 1, axis=0)  # other examples' tags
    after = model({k: tf.constant(v) for k, v in shuffled.items()}, training=False).numpy()
    assert np.isfinite(after).all()
    assert np.abs(after - before).max() > 1e-6, f"{name} ignores {TAGS}"
    # A mean over the values: neither their order nor where the padding sits matters.
    reversed_ = dict(features)
    reversed_[TAGS] = features[TAGS][:, ::-1].copy()
    np.testing.assert_allclose(model({k: tf.constant(v) for k, v in reversed_.items()}, training=False).numpy(),
                               before, rtol=1e-5, atol=1e-6)


# ---- Transform and the serving signature -------------------------------------------------------

def _pick(feature: Any, rnd: random.Random) -> list[str]:
    if feature.kind == "multi":  # a few tags per item
        return rnd.sample(TAG_VOCAB, rnd.randrange(0, MAX_TAGS + 2))
    return [rnd.choice(SCENARIOS) if feature.name == "scenario_id" else f"{feature.name}{rnd.randrange(5)}"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[FeatureConfig, str]:
    config = config_with_tags()
    tft_output, spec, export_dir = transform_and_export(str(tmp_path_factory.mktemp("multi_export")), config,
                                                        raw_instances(config, 60, _pick), SCENARIOS, "sarnet", SMALL)
    assert tft_output.transformed_feature_spec()[TAGS] == tf.io.FixedLenFeature([MAX_TAGS], tf.int64)
    assert spec.cardinality[TAGS] == 1 + len(TAG_VOCAB) + 1
    return config, export_dir


def test_the_serving_signature_takes_a_list_per_candidate(exported: tuple[FeatureConfig, str]) -> None:
    config, export_dir = exported
    inputs = read_signature_defs(export_dir)["serving_default"].inputs
    assert [d.size for d in inputs[TAGS].tensor_shape.dim] == [-1, -1]
    specs = {name: InputSpec(name, info.dtype, tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim))
             for name, info in inputs.items()}
    base = {f.name: (0.0 if f.kind == "numeric" else f"{f.name}1") for f in config.features}
    base.update({"scenario_id": "s1", **{name: ["item_id2", "item_id3"] for name in config.sequence.feature_names}})
    tag_lists = (["tag1", "tag2"], ["tag7"], ["tag7", "tag1", "tag2", "tag3", "tag4"], [], "tag1",
                 ["tag2", "tag1"], ["tag7", "tag1", "tag2", "tag3"])
    arrays, _ = coerce_inputs(as_columns([dict(base, tags=tags) for tags in tag_lists]), specs)
    assert arrays[TAGS].shape == (7, 5)
    servable = Servable("m", 1, export_dir)
    assert servable.warm_up() > 0
    ctr = servable.signature("serving_default").run(arrays)["ctr"]
    assert ctr.shape == (7,) and np.isfinite(ctr).all() and ((ctr > 0) & (ctr < 1)).all()
    assert min(abs(ctr[0] - ctr[k]) for k in (1, 3, 4)) > 1e-6  # the tags change the score
    assert ctr[0] == pytest.approx(ctr[5], abs=1e-6)  # a mean over the tags: their order does not matter
    assert ctr[2] == pytest.approx(ctr[6], abs=1e-6)  # the first MAX_TAGS values count, the 5th is cut
