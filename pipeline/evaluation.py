"""TFMA configuration of the Evaluator: AUC, logloss, calibration and counts, overall and per scenario,
for the candidate and the production (baseline) model. ScenarioBlessing's rule reads them back."""
from __future__ import annotations

import tensorflow_model_analysis as tfma

from msrec.components.scenario_blessing.rule import BASELINE, CANDIDATE, SCENARIO_SLICE
from msrec.schemas.feature_config import LABEL
from msrec.signatures import EXAMPLE_SIGNATURE, OUTPUT_KEY


def eval_config() -> tfma.EvalConfig:
    common = dict(signature_name=EXAMPLE_SIGNATURE, label_key=LABEL, prediction_key=OUTPUT_KEY)
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(name=CANDIDATE, **common),
                     tfma.ModelSpec(name=BASELINE, is_baseline=True, **common)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[SCENARIO_SLICE])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="AUC"),
            # TFMA's own combiner; Keras's "BinaryCrossentropy" would go through its much slower
            # Keras-metric path
            tfma.MetricConfig(class_name="BinaryCrossEntropy"),
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="MeanLabel"),
            tfma.MetricConfig(class_name="MeanPrediction"),
            tfma.MetricConfig(class_name="Calibration"),
        ])],
    )
