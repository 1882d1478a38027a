"""Training on two workers: the Trainer's run_fn, given what the backfill's first Trainer got (its
transformed examples, Transform graph and custom_config) and ``workers: 2``, starts two worker
processes under MultiWorkerMirroredStrategy in a network namespace that has only loopback (TensorFlow's
gRPC servers bind every interface). Both must end at the same epoch with the same weights, and the
chief's export must serve them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from sklearn.metrics import roc_auc_score
from tfx import v1 as tfx

from msrec.models.training import warm_start, workers
from msrec.signatures import EXAMPLE_INPUT, EXAMPLE_SIGNATURE, OUTPUT_KEY

RUN = ("import json, sys, types; from msrec.models.training.trainer import run_fn; "
        "run_fn(types.SimpleNamespace(**json.load(open(sys.argv[1]))))")


def first_trainer(workdir: str) -> tuple[dict[str, str], dict[str, Any]]:
    """URIs of the input artifacts of the workdir's first Trainer execution (the smallest training
    split: one day), and its custom_config."""
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(os.path.join(workdir, "metadata.sqlite")))
    types = {t.id: t.name for t in store.get_execution_types()}
    trainer = min((e for e in store.get_executions() if types[e.type_id].endswith("Trainer")), key=lambda e: e.id)
    inputs = {ev.artifact_id: ev.path.steps[0].key for ev in store.get_events_by_execution_ids([trainer.id])
              if ev.type == ev.INPUT}
    uris = {inputs[a.id]: a.uri for a in store.get_artifacts_by_id(list(inputs))}
    return uris, json.loads(trainer.custom_properties["custom_config"].string_value)


def _raw_eval_examples(workdir: str, n: int) -> tuple[list[bytes], np.ndarray]:
    """n serialized raw examples of the newest day's eval split and their labels."""
    split = max(Path(workdir, "pipeline", "sarnet", "LogExampleGen", "examples").iterdir(),
                key=lambda p: int(p.name)) / "Split-eval"
    records = list(tf.data.TFRecordDataset(sorted(map(str, split.glob("*.gz"))), "GZIP").take(n).as_numpy_iterator())
    labels = [tf.train.Example.FromString(r).features.feature["click"].int64_list.value[0] for r in records]
    return records, np.array(labels)  # a list: a numpy bytes array would drop their trailing zero bytes


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare for a loopback-only network namespace")
def test_two_workers_stop_at_the_same_epoch_with_the_same_weights_and_the_export_serves(e2e_backfill, e2e_data,
                                                                                        tmp_path: Path) -> None:
    workdir, _ = e2e_backfill
    uris, config = first_trainer(workdir)
    fn_args = {"train_files": [os.path.join(uris["examples"], "Split-train")],
               "eval_files": [os.path.join(uris["examples"], "Split-val")],
               "transform_output": uris["transform_graph"], "base_model": None,
               "serving_model_dir": str(tmp_path / "model" / "Format-Serving"), "model_run_dir": str(tmp_path / "run"),
               "custom_config": {"run_date": e2e_data.dates[0], **config, "workers": 2, "max_epochs": 2,
                                 "patience": 1, "batch_size": 1024}}
    (tmp_path / "fn_args.json").write_text(json.dumps(fn_args))
    done = subprocess.run(["unshare", "-n", "bash", "-c", 'ip link set lo up && exec "$0" -c "$1" "$2"',
                           sys.executable, RUN, str(tmp_path / "fn_args.json")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    chief, worker = workers.read_reports(str(tmp_path / "run"), 2)
    assert chief.pop("task") == 0 and worker.pop("task") == 1
    assert chief == worker and 1 <= chief["epochs_run"] <= 2
    stats = json.loads((tmp_path / "run" / "training_stats.json").read_text())
    assert (stats["epochs_run"], stats["val_auc"]) == (chief["epochs_run"], chief["val_auc"])
    # the weights the chief exported are the ones both workers ended with
    saved = np.load(tmp_path / "model" / warm_start.WARM_DIR / warm_start.WEIGHTS)
    assert workers.checksum([saved[k] for k in saved.files]) == chief["weights_sha256"]

    examples, labels = _raw_eval_examples(workdir, 4000)
    served = tf.saved_model.load(fn_args["serving_model_dir"]).signatures[EXAMPLE_SIGNATURE]
    ctr = served(**{EXAMPLE_INPUT: tf.constant(examples)})[OUTPUT_KEY].numpy()
    assert ctr.shape == (len(examples),) and np.all((ctr > 0) & (ctr < 1))
    assert roc_auc_score(labels, ctr) > 0.55
