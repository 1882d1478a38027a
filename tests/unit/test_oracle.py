"""The oracle beside a run's AUC is computed on exactly the run's eval rows."""
import math
import os

import tensorflow as tf

from msrec.data.generator import generate
from msrec.data.truth import load_truth, oracle_auc
from msrec.pipeline.oracle import oracle, oracle_by_day


def test_the_oracle_uses_the_eval_split_rows_only(tmp_path):
    data = generate(tmp_path / "data", days=1, impressions_per_day=3_000, seed=3, progress=False)
    date = data.dates[0]
    truth = load_truth(data.truth_dir, date)
    tail = truth.iloc[len(truth) // 2:]  # the eval split: the second half of the day
    examples = tmp_path / "examples"
    os.makedirs(examples / "Split-eval")
    with tf.io.TFRecordWriter(str(examples / "Split-eval" / "data-0.gz"), options="GZIP") as w:
        for iid in tail["impression_id"]:
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "impression_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[iid.encode()]))}))
                .SerializeToString())
    rep = {"date": date, "examples_uri": str(examples)}
    got = oracle(rep, str(tmp_path / "data"))
    assert got["overall"] == oracle_auc(tail) != oracle_auc(truth)
    expected = oracle_auc(tail, by_scenario=True)
    assert got["per_scenario"].keys() == expected.keys()
    assert all(got["per_scenario"][s] == a or math.isnan(a) and math.isnan(got["per_scenario"][s])
               for s, a in expected.items())
    assert oracle_by_day([rep, {"date": date, "error": "failed before ingestion"}], str(data.truth_dir)) == \
        {date: got["overall"]}
