"""The oracle beside a run's AUC: the AUC of the true click probabilities (the generator's truth/)
on exactly the impressions of the run's eval split, overall and per scenario."""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

import pandas as pd

from msrec.data.truth import load_truth, oracle_auc

IMPRESSION_ID = "impression_id"


def eval_impression_ids(examples_uri: str) -> set[str]:
    """The impression ids of the eval split of a LogExampleGen Examples artifact."""
    import tensorflow as tf

    files = tf.io.gfile.glob(os.path.join(examples_uri, "Split-eval", "*"))
    if not files:
        raise FileNotFoundError(f"no eval split under {examples_uri}")
    spec = {IMPRESSION_ID: tf.io.VarLenFeature(tf.string)}
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(8192).map(
        lambda b: tf.io.parse_example(b, spec)[IMPRESSION_ID].values)
    return {v.decode() for batch in ds for v in batch.numpy()}


def eval_truth(rep: Mapping[str, Any], truth: str) -> pd.DataFrame:
    """The truth rows of the run's eval split."""
    day = load_truth(truth, rep["date"])
    return day[day[IMPRESSION_ID].isin(eval_impression_ids(rep["examples_uri"]))]


def oracle(rep: Mapping[str, Any], truth: str) -> dict[str, Any]:
    """{"overall": auc, "per_scenario": {scenario: auc}} of the true probabilities on the eval split."""
    rows = eval_truth(rep, truth)
    return {"overall": oracle_auc(rows), "per_scenario": oracle_auc(rows, by_scenario=True)}


def oracle_by_day(reports: Iterable[Mapping[str, Any]], truth: str) -> dict[str, float]:
    """Overall oracle AUC of each run's eval split (runs that got as far as ingestion)."""
    return {r["date"]: oracle(r, truth)["overall"] for r in reports if r.get("examples_uri")}
