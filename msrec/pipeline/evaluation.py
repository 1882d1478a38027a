"""TFMA configuration of the Evaluator and reading its results back for the run report.

Blessing rule: overall and in every scenario with at least ``min_slice_size`` eval samples, the
candidate's AUC is at or above ``auc_floor`` and not below the blessed model's by more than
``auc_delta``. Smaller slices are reported but not gated: their AUC is too noisy to block a push.
"""
from __future__ import annotations

import math
from typing import Any

import tensorflow_model_analysis as tfma

from msrec.features import LABEL
from msrec.models.export import EXAMPLE_SIGNATURE, OUTPUT_KEY

SCENARIO_SLICE = "scenario_id"


def eval_config(auc_floor: float, auc_delta: float, min_slice_size: int = 200) -> tfma.EvalConfig:
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": auc_floor}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -auc_delta}))
    common = dict(signature_name=EXAMPLE_SIGNATURE, label_key=LABEL, prediction_key=OUTPUT_KEY)
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(name="candidate", **common),
                     tfma.ModelSpec(name="baseline", is_baseline=True, **common)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[SCENARIO_SLICE])],
        options=tfma.Options(min_slice_size={"value": min_slice_size}),
        metrics_specs=[tfma.MetricsSpec(
            metrics=[
                tfma.MetricConfig(class_name="AUC", threshold=auc_threshold),
                tfma.MetricConfig(class_name="BinaryCrossentropy"),
                tfma.MetricConfig(class_name="ExampleCount"),
                tfma.MetricConfig(class_name="MeanLabel"),
                tfma.MetricConfig(class_name="MeanPrediction"),
                tfma.MetricConfig(class_name="Calibration"),
            ],
            per_slice_thresholds={"auc": tfma.PerSliceMetricThresholds(thresholds=[
                tfma.PerSliceMetricThreshold(
                    slicing_specs=[tfma.SlicingSpec(feature_keys=[SCENARIO_SLICE])], threshold=auc_threshold)])},
        )],
    )


def _slice_name(slice_key: Any) -> str:
    for single in slice_key.single_slice_keys:
        kind = single.WhichOneof("kind")
        return single.bytes_value.decode() if kind == "bytes_value" else str(getattr(single, kind))
    return "overall"


def read_metrics(evaluation_uri: str) -> dict[str, Any]:
    """{"overall": {...}, "per_scenario": {scenario_id: {...}}} with auc, logloss, count, calibration."""
    out: dict[str, Any] = {"overall": {}, "per_scenario": {}}
    for m in tfma.load_metrics(evaluation_uri):
        values = {}
        for kv in m.metric_keys_and_values:
            k = kv.key
            if k.is_diff or k.model_name not in ("", "candidate"):
                continue
            values[k.name] = float(kv.value.double_value.value)
        row = {"auc": values.get("auc", math.nan), "logloss": values.get("binary_crossentropy", math.nan),
               "count": int(values.get("example_count", 0)), "mean_label": values.get("mean_label", math.nan),
               "mean_prediction": values.get("mean_prediction", math.nan),
               "calibration": values.get("calibration", math.nan)}
        name = _slice_name(m.slice_key)
        if name == "overall":
            out["overall"] = row
        else:
            out["per_scenario"][name] = row
    return out


def read_validation(evaluation_uri: str) -> tuple[bool, str]:
    """(blessed, reason). The reason names the scenario and the metric that failed."""
    result = tfma.load_validation_result(evaluation_uri)
    if result.validation_ok:
        return True, "every gated scenario's AUC is above the floor and within delta of the blessed model"
    problems = []
    for per_slice in result.metric_validations_per_slice:
        where = _slice_name(per_slice.slice_key)
        where = "overall" if where == "overall" else f"scenario {where}"
        for f in per_slice.failures:
            problems.append(f"{where}: {f.metric_key.name} {'change ' if f.metric_key.is_diff else ''}"
                            f"{f.metric_value.double_value.value:.4f} fails {_threshold_text(f.metric_threshold)}")
    if not problems and result.missing_slices:
        problems.append(f"missing slices: {list(result.missing_slices)}")
    return False, "; ".join(problems) or "validation failed without a named metric"


def _threshold_text(t: Any) -> str:
    if t.HasField("value_threshold"):
        return f"floor {t.value_threshold.lower_bound.value:.4f}"
    if t.HasField("change_threshold"):
        return f"allowed change {t.change_threshold.absolute.value:+.4f} vs blessed"
    return str(t)
