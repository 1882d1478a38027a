"""Warm start from the last blessed model.

Weights are saved beside the exported model as an .npz keyed by variable name, with the model name
and FeatureSpec. A new day's model takes every variable of the blessed one whose name and shape
match. Embedding tables are special: the day's vocabularies are rebuilt by frequency, so row r of
yesterday's table is not row r of today's; their rows are remapped token by token through both
days' vocabulary files (tokens new today keep their fresh initialisation).
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import msrec  # noqa: F401
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from msrec.schemas.feature_config import FeatureSpec
from msrec.models.training.preprocessing import vocabulary_name

log = logging.getLogger(__name__)
WARM_DIR = "WarmStart"
WEIGHTS = "weights.npz"
META = "meta.json"


def _warm_dir(serving_model_dir: str) -> str:
    return os.path.join(os.path.dirname(serving_model_dir.rstrip("/")), WARM_DIR)


def save(model: tf.keras.Model, spec: FeatureSpec, model_name: str, serving_model_dir: str) -> None:
    out = _warm_dir(serving_model_dir)
    tf.io.gfile.makedirs(out)
    buf = io.BytesIO()  # np.savez needs a seekable file; GFile (any filesystem) is not
    np.savez(buf, **{v.name: v.numpy() for v in model.weights})
    with tf.io.gfile.GFile(os.path.join(out, WEIGHTS), "wb") as fh:
        fh.write(buf.getvalue())
    with tf.io.gfile.GFile(os.path.join(out, META), "w") as fh:
        json.dump({"model": model_name, "feature_spec": spec.to_dict()}, fh)


def embedding_feature(var_name: str, spec: FeatureSpec) -> str | None:
    """The categorical feature whose embedding table this variable is, from its name
    (the shared FeatureEmbedding layer names its tables ``emb_<feature>``)."""
    m = re.search(r"(?:^|/)emb_([A-Za-z0-9_]+)/embeddings", var_name)
    return m.group(1) if m and m.group(1) in spec.cardinality else None


def _tokens(path: str) -> list[str]:
    with tf.io.gfile.GFile(path) as fh:
        return [line.rstrip("\n") for line in fh]


def _remap_rows(new: np.ndarray, old: np.ndarray, new_vocab: list[str], old_vocab: list[str]) -> tuple[np.ndarray, int]:
    """Rows are [padding, vocabulary..., oov buckets...]; copy padding and every shared token."""
    out = new.copy()
    out[0] = old[0]
    old_row = {t: i + 1 for i, t in enumerate(old_vocab)}
    hits = 0
    for j, tok in enumerate(new_vocab):
        i = old_row.get(tok)
        if i is not None and i < old.shape[0]:
            out[j + 1] = old[i]
            hits += 1
    return out, hits


def restore(model: tf.keras.Model, spec: FeatureSpec, model_name: str, base_serving_dir: str,
            tft_output: tft.TFTransformOutput) -> bool:
    """Warm start ``model`` in place; False (and a log line saying why) when it cannot."""
    src = _warm_dir(base_serving_dir)
    if not tf.io.gfile.exists(os.path.join(src, WEIGHTS)):
        log.info("warm start: %s has no saved weights; training from scratch", base_serving_dir)
        return False
    with tf.io.gfile.GFile(os.path.join(src, META)) as fh:
        meta = json.load(fh)
    if meta["model"] != model_name:
        log.info("warm start: blessed model is %s, not %s; training from scratch", meta["model"], model_name)
        return False
    with tf.io.gfile.GFile(os.path.join(src, WEIGHTS), "rb") as fh:
        old = dict(np.load(io.BytesIO(fh.read())))
    copied = remapped = 0
    for var in model.weights:
        value = old.get(var.name)
        if value is None:
            continue
        feature = embedding_feature(var.name, spec)
        if feature is not None and feature != spec.scenario_feature:
            new_vocab = _tokens(tft_output.vocabulary_file_by_name(vocabulary_name(feature)))
            old_vocab = _tokens(os.path.join(base_serving_dir, "assets", vocabulary_name(feature)))
            rows, hits = _remap_rows(var.numpy(), value, new_vocab, old_vocab)
            var.assign(rows)
            remapped += hits
        elif tuple(value.shape) == tuple(var.shape):
            var.assign(value)
            copied += 1
    log.info("warm start from %s: %d variables copied, %d embedding rows remapped by token",
             base_serving_dir, copied, remapped)
    return copied > 0
