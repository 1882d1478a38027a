"""TFMA configuration of the Evaluator: AUC, logloss, calibration and counts, overall and per scenario,
for the candidate and the production (baseline) model. ScenarioBlessing's rule reads them back.

They come from one TFMA metric of msrec's own, :class:`RankingMetrics`, instead of TFMA's AUC,
BinaryCrossEntropy, ExampleCount, MeanLabel, MeanPrediction and Calibration: TFMA feeds its metric
combiners one example at a time, and each of those six (through four combiners per model) looked the
example's label and prediction up again and updated its own state, 50 of the Evaluator's 120 s on a
1M-impression day. This one looks them up once for every model and keeps the scores; the AUC it
returns is the exact one from ranks, where TFMA's is interpolated over 10,000 thresholds.
"""
from __future__ import annotations

import array
import math
from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types

from msrec.auc import auc
from msrec.components.scenario_blessing.rule import BASELINE, CANDIDATE, SCENARIO_SLICE
from msrec.schemas.feature_config import LABEL
from msrec.signatures import EXAMPLE_SIGNATURE, OUTPUT_KEY

# the names ScenarioBlessing's rule reads (TFMA's names for the same metrics)
AUC, LOGLOSS, COUNT = "auc", "binary_crossentropy", "example_count"
MEAN_LABEL, MEAN_PREDICTION, CALIBRATION = "mean_label", "mean_prediction", "calibration"
NAMES = (AUC, LOGLOSS, COUNT, MEAN_LABEL, MEAN_PREDICTION, CALIBRATION)
# log(0) of a prediction of exactly 0 or 1 (float32 rounding of a large logit) would make the mean infinite
PROBABILITY_CLIP = 1e-7


# What the Evaluator reads of the examples besides the serialized bytes the models score: the label and
# the slice. Its schema names only these (SchemaProjection): TFMA decodes every feature its schema
# names (all of them without one) and splits each batch into per-example extracts holding them,
# 50-long behaviour sequences included (a 200k-impression day's Evaluator 18.5 -> 15.1 s, the same
# metrics).
FEATURES = (LABEL, SCENARIO_SLICE)


def eval_config() -> tfma.EvalConfig:
    common = dict(signature_name=EXAMPLE_SIGNATURE, label_key=LABEL, prediction_key=OUTPUT_KEY)
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(name=CANDIDATE, **common),
                     tfma.ModelSpec(name=BASELINE, is_baseline=True, **common)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[SCENARIO_SLICE])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name=RankingMetrics.__name__, module=__name__)])],
    )


def ranking_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Every metric of :data:`NAMES` of one model's predicted click probabilities on one slice."""
    labels = np.asarray(labels, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    count = len(labels)
    if count == 0:
        return {name: (0.0 if name == COUNT else math.nan) for name in NAMES}
    clipped = np.clip(p, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
    logloss = -np.mean(labels * np.log(clipped) + (1.0 - labels) * np.log(1.0 - clipped))
    clicks = labels.sum()
    return {AUC: auc(p, labels), LOGLOSS: float(logloss), COUNT: float(count), MEAN_LABEL: float(clicks / count),
            MEAN_PREDICTION: float(p.mean()), CALIBRATION: float(p.sum() / clicks) if clicks else math.nan}


def _leaf(value: Any, keys: Sequence[str]) -> float:
    """The single number under ``value``, descending through the dicts TFMA keys by model and output."""
    for key in keys:
        if isinstance(value, Mapping) and key in value:
            value = value[key]
    if isinstance(value, Mapping):
        raise ValueError(f"no value under the keys {list(keys)} in {sorted(value)}")
    flat = np.asarray(value).reshape(-1)
    if flat.size != 1:
        raise ValueError(f"expected one value per example, got {flat.size}")
    return float(flat[0])


class _Scores:
    """A slice's labels and every model's predictions, as compact arrays of doubles."""

    def __init__(self, models: int) -> None:
        self.labels = array.array("d")
        self.predictions = [array.array("d") for _ in range(models)]

    def extend(self, other: "_Scores") -> None:
        self.labels.extend(other.labels)
        for mine, theirs in zip(self.predictions, other.predictions):
            mine.extend(theirs)


class _RankingCombiner(beam.CombineFn):
    def __init__(self, model_names: Sequence[str], prediction_keys: Sequence[str], label_keys: Sequence[str],
                 keys: Sequence[Mapping[str, metric_types.MetricKey]]) -> None:
        self._models = list(model_names)
        self._prediction_keys = list(prediction_keys)
        self._label_keys = list(label_keys)
        self._keys = list(keys)

    def create_accumulator(self) -> _Scores:
        return _Scores(len(self._models))

    def add_input(self, acc: _Scores, element: metric_types.StandardMetricInputs) -> _Scores:
        # both models are scored against the same label column
        acc.labels.append(_leaf(element.labels, [self._models[0], self._label_keys[0]]))
        for predictions, model, key in zip(acc.predictions, self._models, self._prediction_keys):
            predictions.append(_leaf(element.predictions, [model, key]))
        return acc

    def merge_accumulators(self, accumulators: Iterable[_Scores]) -> _Scores:
        merged = self.create_accumulator()
        for acc in accumulators:
            merged.extend(acc)
        return merged

    def extract_output(self, acc: _Scores) -> dict[metric_types.MetricKey, float]:
        labels = np.frombuffer(acc.labels, dtype=np.float64) if acc.labels else np.zeros(0)
        out = {}
        for predictions, keys in zip(acc.predictions, self._keys):
            scores = np.frombuffer(predictions, dtype=np.float64) if predictions else np.zeros(0)
            out.update({keys[name]: value for name, value in ranking_metrics(labels, scores).items()})
        return out


def _computations(name: str, eval_config: tfma.EvalConfig, model_names: Sequence[str],
                  output_names: Sequence[str], example_weighted: bool) -> metric_types.MetricComputations:
    del name  # TFMA passes the metric's own name; each key carries one metric's name
    if example_weighted:
        raise ValueError("msrec's ranking metrics are unweighted: the eval config names no example weights")
    specs = {spec.name: spec for spec in eval_config.model_specs}
    models = list(model_names)
    # TFMA names a lone model "" whatever its spec calls it
    model_specs = [specs.get(m) or eval_config.model_specs[0] for m in models]
    computations = []
    for output in output_names or [""]:
        keys = [{metric: metric_types.MetricKey(name=metric, model_name=m, output_name=output,
                                                example_weighted=False) for metric in NAMES} for m in models]
        computations.append(metric_types.MetricComputation(
            keys=[k for per_model in keys for k in per_model.values()], preprocessors=None,
            combiner=_RankingCombiner(models, [s.prediction_key for s in model_specs],
                                      [s.label_key for s in model_specs], keys)))
    return computations


class RankingMetrics(metric_types.Metric):
    """AUC (exact), logloss, example count, mean label, mean prediction and calibration of every model
    in one pass over the examples."""

    def __init__(self, name: str = "ranking_metrics") -> None:
        super().__init__(_computations, name=name)
