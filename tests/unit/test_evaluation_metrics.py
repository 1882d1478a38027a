"""The AUC from ranks and the Evaluator's one-pass TFMA metric (RankingMetrics): its formulas, its
combiner's merge identity, and agreement with TFMA's own metrics on the same examples."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msrec.auc import auc
from msrec.components.scenario_blessing.rule import BASELINE, CANDIDATE, read_metrics
from msrec.pipeline import evaluation
from msrec.pipeline.evaluation import NAMES, RankingMetrics, ranking_metrics


def test_auc_ranks_and_ties():
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == pytest.approx(0.5)
    # a tie between one positive and one negative counts half
    assert auc(np.array([0.2, 0.6, 0.6, 0.9]), np.array([0, 0, 1, 1])) == pytest.approx(0.875)
    assert np.isnan(auc(np.array([0.1, 0.2]), np.array([1, 1])))
    with pytest.raises(ValueError, match="shape"):
        auc(np.array([0.1, 0.2]), np.array([1]))


def test_ranking_metrics_formulas():
    labels, p = np.array([0, 1, 0, 1, 0]), np.array([0.1, 0.8, 0.3, 0.4, 0.5])
    m = ranking_metrics(labels, p)
    assert m["auc"] == pytest.approx(5 / 6)
    assert m["binary_crossentropy"] == pytest.approx(
        -(np.log(0.9) + np.log(0.8) + np.log(0.7) + np.log(0.4) + np.log(0.5)) / 5)
    assert (m["example_count"], m["mean_label"], m["mean_prediction"]) == (5, pytest.approx(0.4), pytest.approx(0.42))
    assert m["calibration"] == pytest.approx(2.1 / 2)
    # a prediction of exactly 0 or 1 (a float32 sigmoid of a large logit) keeps the logloss finite
    assert math.isfinite(ranking_metrics(np.array([1, 0]), np.array([0.0, 1.0]))["binary_crossentropy"])
    empty = ranking_metrics(np.zeros(0), np.zeros(0))
    assert empty["example_count"] == 0 and all(math.isnan(empty[n]) for n in NAMES if n != "example_count")
    assert math.isnan(ranking_metrics(np.array([0, 0]), np.array([0.2, 0.3]))["calibration"])  # no clicks


def _combiner(models):
    import tensorflow_model_analysis as tfma

    config = evaluation.eval_config()
    [computation] = RankingMetrics().computations(eval_config=config, model_names=models, output_names=[""])
    inputs = tfma.metrics.StandardMetricInputs
    return computation.combiner, inputs


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0.001, 0.999), st.floats(0.001, 0.999)),
                min_size=1, max_size=60),
       st.lists(st.integers(0, 60), max_size=4))
def test_combiner_merge_of_any_split_equals_one_pass(rows, cuts):
    """Beam may split a slice's examples over any number of accumulators: merged, they give the
    metrics of one pass over all of them, for each model."""
    combiner, inputs = _combiner([CANDIDATE, BASELINE])
    bounds = [0, *sorted(min(c, len(rows)) for c in cuts), len(rows)]
    accumulators = []
    for lo, hi in zip(bounds, bounds[1:]):
        acc = combiner.create_accumulator()
        for label, cand, base in rows[lo:hi]:
            acc = combiner.add_input(acc, inputs(
                labels={CANDIDATE: np.array([label]), BASELINE: np.array([label])},
                predictions={CANDIDATE: {"ctr": np.array([cand], np.float32)},
                             BASELINE: {"ctr": np.array([base], np.float32)}}))
        accumulators.append(acc)
    out = combiner.extract_output(combiner.merge_accumulators(accumulators))
    labels = np.array([r[0] for r in rows])
    for i, model in ((1, CANDIDATE), (2, BASELINE)):
        want = ranking_metrics(labels, np.array([r[i] for r in rows], np.float32))
        got = {k.name: v for k, v in out.items() if k.model_name == model}
        assert got.keys() == want.keys()
        for name in NAMES:
            assert got[name] == pytest.approx(want[name], nan_ok=True), (model, name)


def test_combiner_refuses_an_example_with_several_predictions():
    combiner, inputs = _combiner([""])
    with pytest.raises(ValueError, match="one value per example"):
        combiner.add_input(combiner.create_accumulator(),
                           inputs(labels=np.array([1]), predictions={"ctr": np.array([0.2, 0.3])}))


def test_agrees_with_tfma_own_metrics(tmp_path):
    """On the same examples (model-agnostic: the predictions are a feature) TFMA's AUC,
    BinaryCrossEntropy, ExampleCount, MeanLabel, MeanPrediction and Calibration give the same numbers
    overall and per scenario; TFMA's AUC is interpolated over 10,000 thresholds, so it agrees to 1e-3."""
    import tensorflow as tf
    import tensorflow_model_analysis as tfma

    rng = np.random.default_rng(0)
    n = 3000
    scenario = rng.choice(["s0", "s1", "s2"], n)
    p = rng.uniform(0.01, 0.6, n)
    click = (rng.random(n) < p * np.where(scenario == "s1", 0.5, 1.0)).astype(np.int64)
    data = str(tmp_path / "eval.tfrecord")
    with tf.io.TFRecordWriter(data) as w:
        for s, q, c in zip(scenario, p, click):
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "scenario_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[s.encode()])),
                "ctr": tf.train.Feature(float_list=tf.train.FloatList(value=[q])),
                "click": tf.train.Feature(int64_list=tf.train.Int64List(value=[c]))})).SerializeToString())

    def evaluate(metrics, name):
        config = evaluation.eval_config()
        del config.model_specs[1]
        config.model_specs[0].ClearField("signature_name")
        del config.metrics_specs[0].metrics[:]
        config.metrics_specs[0].metrics.extend(metrics)
        tfma.run_model_analysis(eval_config=config, data_location=data, output_path=str(tmp_path / name))
        return read_metrics(str(tmp_path / name))

    ours = evaluate([tfma.MetricConfig(class_name="RankingMetrics", module=evaluation.__name__)], "ours")
    theirs = evaluate([tfma.MetricConfig(class_name=c) for c in ("AUC", "BinaryCrossEntropy", "ExampleCount",
                                                                 "MeanLabel", "MeanPrediction", "Calibration")],
                      "tfma")
    assert sorted(ours["per_scenario"]) == ["s0", "s1", "s2"]
    for where in ["overall", "s0", "s1", "s2"]:
        a = ours["overall"] if where == "overall" else ours["per_scenario"][where]
        b = theirs["overall"] if where == "overall" else theirs["per_scenario"][where]
        assert a["count"] == b["count"]
        assert a["auc"] == pytest.approx(b["auc"], abs=1e-3)
        for name in ("logloss", "mean_label", "mean_prediction", "calibration"):
            assert a[name] == pytest.approx(b[name], rel=1e-5), (where, name)
    assert ours["overall"]["auc"] == pytest.approx(auc(p.astype(np.float32), click))  # the exact AUC
