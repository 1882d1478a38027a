"""The oracle beside a run's AUC is computed on exactly the run's eval rows; so are the expected AUCs
of the candidate and the oracle."""
import math
import os

import pytest
import tensorflow as tf

from msrec.data.generator import generate
from msrec.data.truth import expected_auc, load_truth, oracle_auc
from msrec.pipeline.oracle import expected, expected_by_day, oracle, oracle_by_day
from msrec.signatures import EXAMPLE_SIGNATURE, OUTPUT_KEY


def _feature(value) -> tf.train.Feature:
    if isinstance(value, str):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))


def _eval_split(examples, rows, score=None) -> str:
    """An Examples folder whose eval split holds ``rows``' impressions (with a ``score`` each when given)."""
    os.makedirs(examples / "Split-eval")
    with tf.io.TFRecordWriter(str(examples / "Split-eval" / "data-0.gz"), options="GZIP") as w:
        for i, iid in enumerate(rows["impression_id"]):
            feature = {"impression_id": _feature(iid)}
            if score is not None:
                feature["score"] = _feature(float(score[i]))
            w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(examples)


def _score_model(path) -> str:
    """A SavedModel whose tf.Example signature answers each example's ``score``."""
    class Scores(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, examples):
            return {OUTPUT_KEY: tf.io.parse_example(examples, {"score": tf.io.FixedLenFeature([], tf.float32)})["score"]}

    module = Scores()
    tf.saved_model.save(module, str(path), signatures={EXAMPLE_SIGNATURE: module.serve})
    return str(path)


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    data = generate(tmp_path_factory.mktemp("oracle") / "data", days=1, impressions_per_day=3_000, seed=3,
                    progress=False)
    truth = load_truth(data.truth_dir, data.dates[0])
    return data, truth, truth.iloc[len(truth) // 2:]  # the eval split: the second half of the day


def test_the_oracle_uses_the_eval_split_rows_only(day, tmp_path):
    data, truth, tail = day
    date = data.dates[0]
    rep = {"date": date, "examples_uri": _eval_split(tmp_path / "examples", tail)}
    got = oracle(rep, str(data.out_dir))
    assert got["overall"] == oracle_auc(tail) != oracle_auc(truth)
    expected_per = oracle_auc(tail, by_scenario=True)
    assert got["per_scenario"].keys() == expected_per.keys()
    assert all(got["per_scenario"][s] == a or math.isnan(a) and math.isnan(got["per_scenario"][s])
               for s, a in expected_per.items())
    assert oracle_by_day([rep, {"date": date, "error": "failed before ingestion"}], str(data.truth_dir)) == \
        {date: got["overall"]}


def test_the_expected_auc_scores_the_candidate_on_the_eval_rows(day, tmp_path):
    data, _, tail = day
    p = tail["p_click"].to_numpy()
    rep = {"date": data.dates[0], "model_uri": _score_model(tmp_path / "model")}
    knows = expected({**rep, "examples_uri": _eval_split(tmp_path / "truth", tail, p)}, str(data.out_dir))
    assert knows["candidate"] == pytest.approx(knows["oracle"]) == pytest.approx(expected_auc(p, p))
    assert 0.7 < knows["oracle"] < 0.85
    backwards = {**rep, "examples_uri": _eval_split(tmp_path / "reversed", tail, -p)}
    assert expected(backwards, str(data.out_dir))["candidate"] == pytest.approx(1.0 - knows["oracle"])
    # a run that trained no candidate has nothing to score
    assert list(expected_by_day([backwards, {"date": "2026-11-02", "examples_uri": "x"}], str(data.out_dir))) \
        == [data.dates[0]]
