"""A small but real SavedModel that honours the pushed-model contract (msrec.signatures).

It exists so that the server, the client, the deploy configs and the serving benchmark can be
exercised without a trained pipeline model: same directory layout
(``<base>/<version>/saved_model.pb, variables/, assets.extra/tf_serving_warmup_requests``), same
signatures (``serving_default`` over raw features -> ``ctr``, ``serving_tfexample`` over serialized
``tf.Example`` -> ``ctr``), raw inputs named and typed from the feature config. The model hashes
every string into a shared embedding table, mean-pools the behaviour sequences, adds a weighted
numeric term and a ``bias`` (change it to make two versions answer differently), and counts its
calls in a variable so that warm-up replay can be observed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Mapping

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from msrec.schemas.feature_config import FeatureConfig
from msrec.serving.tensors import fill_tensor_proto
from msrec.signatures import EXAMPLE_INPUT, EXAMPLE_SIGNATURE, OUTPUT_KEY, WARMUP_FILE, raw_input_specs

OUTPUT = OUTPUT_KEY


class ToyCtrModel(tf.Module):
    def __init__(self, specs: Mapping[str, tf.TensorSpec], bias: float, buckets: int = 4096,
                 dim: int = 8, seed: int = 0) -> None:
        super().__init__(name="toy_ctr")
        rng = np.random.default_rng(seed)
        self._specs = dict(specs)
        self._buckets = buckets
        # float lists (seq_time_gap) are taken and not read: the toy answers the signature, nothing more
        self.numeric = sorted(n for n, s in specs.items() if s.dtype == tf.float32 and s.shape.rank == 1)
        self.scalar = sorted(n for n, s in specs.items() if s.dtype == tf.string and s.shape.rank == 1)
        self.lists = sorted(n for n, s in specs.items() if s.dtype == tf.string and s.shape.rank == 2)
        self.embedding = tf.Variable(rng.normal(0, 0.3, (buckets, dim)).astype(np.float32))
        self.w_out = tf.Variable(rng.normal(0, 0.5, (dim,)).astype(np.float32))
        self.w_numeric = tf.Variable(rng.normal(0, 0.1, (max(len(self.numeric), 1),)).astype(np.float32))
        self.bias = tf.Variable(np.float32(bias))
        self.calls = tf.Variable(0, dtype=tf.int64)

    def _ids(self, name: str, values: tf.Tensor) -> tf.Tensor:
        # the feature name is part of the hashed key so equal values of different features differ
        return tf.strings.to_hash_bucket_fast(tf.strings.join([name, values], "="), self._buckets)

    def ctr(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        self.calls.assign_add(1)
        batch = tf.shape(features[self.scalar[0]])[0]
        hidden = tf.zeros([batch, self.embedding.shape[1]])
        for name in self.scalar:
            hidden += tf.gather(self.embedding, self._ids(name, features[name]))
        for name in self.lists:
            values = features[name]
            mask = tf.cast(tf.not_equal(values, ""), tf.float32)[..., None]
            pooled = tf.reduce_sum(tf.gather(self.embedding, self._ids(name, values)) * mask, axis=1)
            hidden += pooled / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        logit = tf.reduce_sum(tf.tanh(hidden) * self.w_out, axis=1) + self.bias
        if self.numeric:
            numeric = tf.stack([features[n] for n in self.numeric], axis=1)
            logit += tf.reduce_sum(numeric * self.w_numeric, axis=1)
        return tf.sigmoid(logit)

    def parse_examples(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        spec: dict[str, tf.io.FixedLenFeature | tf.io.VarLenFeature] = {}
        for name in self.numeric:
            spec[name] = tf.io.FixedLenFeature([], tf.float32, default_value=0.0)
        for name in self.scalar:
            spec[name] = tf.io.FixedLenFeature([], tf.string, default_value="")
        for name in self.lists:
            spec[name] = tf.io.VarLenFeature(tf.string)
        parsed = tf.io.parse_example(serialized, spec)
        return {n: (tf.sparse.to_dense(v, default_value="") if n in self.lists else v)
                for n, v in parsed.items()}


def random_features(specs: Mapping[str, tf.TensorSpec], n: int, seq_len: int = 5,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible raw inputs for ``n`` candidates (numbers in [0, 10), strings from small pools)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, spec in sorted(specs.items()):
        if spec.dtype == tf.float32:
            out[name] = rng.uniform(0, 10, n if spec.shape.rank == 1 else (n, seq_len)).astype(np.float32)
            continue
        shape = (n,) if spec.shape.rank == 1 else (n, seq_len)
        values = np.array([f"{name}_{i}".encode() for i in rng.integers(0, 50, int(np.prod(shape)))],
                          dtype=object).reshape(shape)
        if spec.shape.rank == 2:
            values[:, seq_len - 1:] = b""  # exercise padding
        out[name] = values
    return out


def _write_warmup(export_dir: str, model_name: str, specs: Mapping[str, tf.TensorSpec],
                  requests: int, seq_len: int) -> None:
    os.makedirs(os.path.join(export_dir, "assets.extra"), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(export_dir, WARMUP_FILE)) as writer:
        for i in range(requests):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = "serving_default"
            for name, values in random_features(specs, n=3, seq_len=seq_len, seed=1000 + i).items():
                fill_tensor_proto(values, request.inputs[name])
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def export_toy_model(export_dir: str, config: FeatureConfig, bias: float = 0.0, seed: int = 0,
                     warmup_requests: int = 3, model_name: str = "toy") -> str:
    """Write one model version to ``export_dir`` (which must not exist yet).

    The export goes to a temporary folder beside ``export_dir`` and is renamed into place, the way
    the pipeline's Pusher publishes a version, so a polling server never sees half a model.
    """
    if os.path.exists(export_dir):
        raise FileExistsError(f"{export_dir} already exists; a model version is never overwritten")
    specs = raw_input_specs(config)
    module = ToyCtrModel(specs, bias=bias, seed=seed)

    @tf.function(input_signature=[specs])
    def serve(features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {OUTPUT: module.ctr(features)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLE_INPUT)])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT: module.ctr(module.parse_examples(examples))}

    parent = os.path.dirname(os.path.abspath(export_dir)) or "."
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        tf.saved_model.save(module, staging, signatures={
            "serving_default": serve.get_concrete_function(),
            EXAMPLE_SIGNATURE: serve_examples.get_concrete_function(),
        })
        if warmup_requests:
            _write_warmup(staging, model_name, specs, warmup_requests, config.sequence.length)
        os.rename(staging, export_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return export_dir
