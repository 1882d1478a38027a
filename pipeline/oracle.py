"""The oracle beside a run's AUC: the AUC of the true click probabilities (the generator's truth/)
on exactly the impressions of the run's eval split, overall and per scenario; and, free of the noise
of the day's click draws, the candidate's and the oracle's expected AUC on those rows."""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from msrec.data.truth import expected_auc, load_truth, oracle_auc

IMPRESSION_ID = "impression_id"


def _eval_batches(examples_uri: str) -> Any:
    """Batches of serialized examples of the eval split of a LogExampleGen Examples artifact."""
    import tensorflow as tf

    files = tf.io.gfile.glob(os.path.join(examples_uri, "Split-eval", "*"))
    if not files:
        raise FileNotFoundError(f"no eval split under {examples_uri}")
    return tf.data.TFRecordDataset(sorted(files), compression_type="GZIP").batch(4096)


def _ids(batch: Any) -> list[str]:
    import tensorflow as tf

    ids = tf.io.parse_example(batch, {IMPRESSION_ID: tf.io.FixedLenFeature([], tf.string)})[IMPRESSION_ID]
    return [v.decode() for v in ids.numpy()]


def eval_impression_ids(examples_uri: str) -> set[str]:
    """The impression ids of the eval split of a LogExampleGen Examples artifact."""
    return {i for batch in _eval_batches(examples_uri) for i in _ids(batch)}


def eval_predictions(model_dir: str, examples_uri: str) -> pd.DataFrame:
    """impression_id and ``ctr``: the model's prediction for each example of the eval split, through the
    model's tf.Example signature (the same path as the Evaluator's)."""
    import tensorflow as tf

    from msrec.signatures import EXAMPLE_INPUT, EXAMPLE_SIGNATURE, OUTPUT_KEY

    predict = tf.saved_model.load(model_dir).signatures[EXAMPLE_SIGNATURE]
    ids: list[str] = []
    ctr: list[np.ndarray] = []
    for batch in _eval_batches(examples_uri):
        ids += _ids(batch)
        ctr.append(np.reshape(predict(**{EXAMPLE_INPUT: batch})[OUTPUT_KEY].numpy(), [-1]))
    return pd.DataFrame({IMPRESSION_ID: ids, "ctr": np.concatenate(ctr) if ctr else np.zeros(0)})


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


def expected(rep: Mapping[str, Any], truth: str) -> dict[str, float]:
    """{"candidate": ..., "oracle": ...}: the expected AUC (:func:`expected_auc`) on the run's eval rows of
    the run's candidate model and of the true probabilities themselves."""
    predictions = eval_predictions(rep["model_uri"], rep["examples_uri"])
    scored = predictions.merge(load_truth(truth, rep["date"]), on=IMPRESSION_ID, validate="1:1")
    if len(scored) != len(predictions):
        raise ValueError(f"{rep['date']}: {len(predictions) - len(scored)} of {len(predictions)} eval impressions "
                         "have no truth")
    p = scored["p_click"].to_numpy()
    return {"candidate": expected_auc(scored["ctr"].to_numpy(), p), "oracle": expected_auc(p, p)}


def expected_by_day(reports: Iterable[Mapping[str, Any]], truth: str) -> dict[str, dict[str, float]]:
    """:func:`expected` of each run that trained a candidate."""
    return {r["date"]: expected(r, truth) for r in reports if r.get("examples_uri") and r.get("model_uri")}
