"""FairnessGen: a Beam TFX component that adds ``fairness_coef`` to every example and writes
per-scenario statistics (the ScenarioStats artifact).

With a blessed model (from a Resolver) it runs that model's ``serving_tfexample`` signature over
the window's examples inside Beam (batched offline inference), sums the predictions per
(day, scenario, item) and computes SAR-Net's Fairness Coefficient (see ``fairness.py``). With no
blessed model yet it is bootstrapping: FC = 1 for every sample, and it says so.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import tempfile
from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import path_utils

import msrec  # noqa: F401
from msrec.components.fairness_gen import scenario_stats
from msrec.components.fairness_gen.fairness import DEFAULT_SHRINK_K, Exposure, fairness_coefficients, sum_exposures
from msrec.components.tfrecord_sink import WriteGzipTFRecords
from msrec.schemas.feature_config import FAIRNESS_COEF, LABEL
from msrec.signatures import EXAMPLE_INPUT, EXAMPLE_SIGNATURE, OUTPUT_KEY

log = logging.getLogger(__name__)


class ScenarioStats(types.Artifact):
    """Per-scenario and per-day statistics, FC table and distributions (JSON + HTML)."""

    TYPE_NAME = "msrec.ScenarioStats"


class FairnessGenSpec(ComponentSpec):
    PARAMETERS = {
        "shrink_k": ExecutionParameter(type=float),
        "batch_size": ExecutionParameter(type=int),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        "weighted_examples": ChannelParameter(type=standard_artifacts.Examples),
        "scenario_stats": ChannelParameter(type=ScenarioStats),
    }


_KEY_STRINGS = ("date", "scenario_id", "item_id", "user_id")


@dataclasses.dataclass
class ScoredBatch:
    """A batch of examples with their grouping keys, labels and the blessed model's predictions, as
    columns: every later step works on whole batches, so Beam's per-element cost is paid once per
    batch, not once per example and branch."""

    splits: list[str]
    serialized: list[bytes]
    keys: dict[str, list[str]]  # _KEY_STRINGS -> one value per example
    click: np.ndarray  # int64
    pred: np.ndarray  # float64


def _key_columns(batch: list[bytes]) -> tuple[dict[str, list[str]], np.ndarray]:
    """The grouping keys and the label of each serialized example, parsed for the whole batch at
    once (one vectorised parse instead of a Python proto per example)."""
    import tensorflow as tf  # imported in workers, not at module import

    spec = {name: tf.io.FixedLenFeature([], tf.string, default_value="") for name in _KEY_STRINGS}
    spec[LABEL] = tf.io.FixedLenFeature([], tf.int64, default_value=0)
    parsed = {k: v.numpy() for k, v in tf.io.parse_example(tf.constant(batch), spec).items()}
    keys = {k: [v.decode("utf-8", "replace") for v in parsed[k]] for k in _KEY_STRINGS}
    return keys, parsed[LABEL].astype(np.int64)


class _Predict(beam.DoFn):
    """Batched offline inference with the blessed model's tf.Example signature."""

    def __init__(self, model_dir: str | None):
        self._model_dir = model_dir
        self._fn = None

    def setup(self) -> None:
        if self._model_dir:
            import tensorflow as tf

            self._fn = tf.saved_model.load(self._model_dir).signatures[EXAMPLE_SIGNATURE]

    def process(self, batch: list[tuple[str, bytes]]) -> Iterator[ScoredBatch]:
        serialized = [b for _, b in batch]
        if self._fn is None:
            preds = np.ones(len(batch), np.float64)  # bootstrap: every sample weighs the same
        else:
            import tensorflow as tf

            out = self._fn(**{EXAMPLE_INPUT: tf.constant(serialized)})
            preds = np.reshape(out[OUTPUT_KEY].numpy(), [-1]).astype(np.float64)
        keys, click = _key_columns(serialized)
        yield ScoredBatch([s for s, _ in batch], serialized, keys, click, preds)


def _exposures(b: ScoredBatch) -> Iterator[tuple[tuple[str, str, str], Exposure]]:
    """The batch's exposure of each (day, scenario, item), summed within the batch."""
    pv: dict[tuple[str, str, str], int] = collections.Counter()
    f: dict[tuple[str, str, str], float] = collections.defaultdict(float)
    for key, p in zip(zip(b.keys["date"], b.keys["scenario_id"], b.keys["item_id"]), b.pred.tolist()):
        pv[key] += 1
        f[key] += p
    for key, n in pv.items():
        yield key, Exposure(n, f[key])


def _fc_per_scenario(kv: tuple[tuple[str, str], Iterable[tuple[str, Exposure]]], k: float
                     ) -> Iterator[tuple[tuple[str, str, str], tuple[int, float, float]]]:
    (date, scenario), items = kv
    exposures: dict[str, Exposure] = {}
    for item, e in items:
        exposures[item] = exposures.get(item, Exposure(0, 0.0)) + e
    fcs = fairness_coefficients(exposures, k)
    for item, e in exposures.items():
        yield (date, scenario, item), (e.pv, e.f, fcs[item])


class _AddFC(beam.DoFn):
    """Each example of a batch with its ``fairness_coef`` appended, to the output of its split."""

    def process(self, b: ScoredBatch, fc_table: dict) -> Iterator[beam.pvalue.TaggedOutput]:
        for split, serialized in zip(b.splits, with_fc(b, fc_table)):
            yield beam.pvalue.TaggedOutput(split, serialized)


def with_fc(b: ScoredBatch, fc_table: dict) -> list[bytes]:
    """The batch's examples with the FC of their (day, scenario, item) from the table appended (1, the
    neutral weight, for a key the table lacks)."""
    features: dict[float, bytes] = {}  # one serialized feature per distinct FC of the batch
    out = []
    for serialized, key in zip(b.serialized, zip(b.keys["date"], b.keys["scenario_id"], b.keys["item_id"])):
        pv_f_fc = fc_table.get(key)
        fc = pv_f_fc[2] if pv_f_fc else 1.0
        feature = features.get(fc)
        if feature is None:
            feature = features[fc] = _fc_feature(fc)
        out.append(serialized + feature)
    return out


def _fc_feature(fc: float) -> bytes:
    """A serialized tf.Example holding only ``fairness_coef``. Appended to another serialized
    Example it adds the feature: protobuf parses concatenated messages as their merge, so no
    example is parsed and re-serialized (the feature config reserves the name, so it is new)."""
    import tensorflow as tf

    feature = tf.train.Feature(float_list=tf.train.FloatList(value=[fc]))
    return tf.train.Example(features=tf.train.Features(feature={FAIRNESS_COEF: feature})).SerializeToString()


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        models = input_dict.get("model") or []
        model_dir = path_utils.serving_model_path(models[0].uri) if models else None
        out_examples = artifact_utils.get_single_instance(output_dict["weighted_examples"])
        stats_artifact = artifact_utils.get_single_instance(output_dict["scenario_stats"])
        k = float(exec_properties.get("shrink_k", DEFAULT_SHRINK_K))
        batch_size = int(exec_properties.get("batch_size", 1024))
        splits = artifact_utils.decode_split_names(examples.split_names)
        if model_dir:
            log.info("FairnessGen: FC from the blessed model at %s", model_dir)
        else:
            log.warning("FairnessGen: no blessed model yet, bootstrapping with FC = 1 for every sample")

        out_examples.split_names = artifact_utils.encode_split_names(splits)
        examples_utils.set_payload_format(out_examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(out_examples, "tfrecords_gzip")
        if examples.has_property("span"):
            out_examples.span = examples.span
        agg_dir = tempfile.mkdtemp(prefix="fairness-agg-", dir=os.path.dirname(stats_artifact.uri))
        with self._make_beam_pipeline() as p:
            reads = [
                p | f"Read[{s}]" >> beam.io.ReadFromTFRecord(
                    os.path.join(artifact_utils.get_split_uri([examples], s), "*"),
                    coder=beam.coders.BytesCoder())
                | f"Tag[{s}]" >> beam.Map(lambda b, s=s: (s, b))
                for s in splits
            ]
            scored = (
                reads | "Flatten" >> beam.Flatten()
                | "Batch" >> beam.BatchElements(min_batch_size=64, max_batch_size=batch_size)
                | "Predict" >> beam.ParDo(_Predict(model_dir))
            )
            fc_table = (
                scored
                | "Exposures" >> beam.FlatMap(_exposures)
                | "SumExposure" >> beam.CombinePerKey(sum_exposures)
                | "ByScenario" >> beam.Map(lambda kv: ((kv[0][0], kv[0][1]), (kv[0][2], kv[1])))
                | "GroupScenario" >> beam.GroupByKey()
                | "FC" >> beam.FlatMap(_fc_per_scenario, k)
            )
            weighted = scored | "AddFC" >> beam.ParDo(_AddFC(), beam.pvalue.AsDict(fc_table)).with_outputs(*splits)
            for s in splits:
                _ = weighted[s] | f"Write[{s}]" >> WriteGzipTFRecords(
                    os.path.join(artifact_utils.get_split_uri([out_examples], s), "data_tfrecord"))
            scenario_stats.aggregate(scored, fc_table, agg_dir)
        report = scenario_stats.build(agg_dir, bootstrap=model_dir is None, shrink_k=k)
        scenario_stats.write(report, agg_dir, stats_artifact.uri)
        stats_artifact.set_int_custom_property("bootstrap", int(model_dir is None))
        stats_artifact.set_float_custom_property("fc_mean", report["fc"]["mean"])


class FairnessGen(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = FairnessGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel | None = None,
                 shrink_k: float = DEFAULT_SHRINK_K, batch_size: int = 1024):
        super().__init__(spec=FairnessGenSpec(
            examples=examples, model=model, shrink_k=float(shrink_k), batch_size=int(batch_size),
            weighted_examples=types.Channel(type=standard_artifacts.Examples),
            scenario_stats=types.Channel(type=ScenarioStats)))


def load_stats(stats_uri: str) -> dict[str, Any]:
    with open(os.path.join(stats_uri, scenario_stats.JSON_NAME)) as fh:
        return json.load(fh)
