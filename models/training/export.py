"""Exporting a trained model as a TF Serving SavedModel with the Transform graph inside.

Signatures:
* ``serving_default``: one input per raw feature (categorical -> string [None], multi-valued
  categorical -> string [None, None] padded with '', numeric -> float32
  [None], behaviour sequences ``seq_<col>`` -> string [None, None] padded with '', and with
  ``sequence.time_gap`` ``seq_time_gap`` -> float32 [None, None] seconds padded with 0; see
  msrec.signatures.raw_input_specs), output ``ctr`` float32 [None]. No label, no ``fairness_coef``: SAR-Net's bias nets are training-only.
* ``serving_tfexample``: serialized raw tf.Examples -> ``ctr``, for TFMA, Classify and FairnessGen.

Warm-up requests for TF Serving are written to ``assets.extra/tf_serving_warmup_requests``.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import msrec  # noqa: F401
import tensorflow as tf
import tensorflow_transform as tft
from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope

from msrec.components.log_example_gen.examples import DATE_FEATURE, TS_FEATURE
from msrec.schemas.feature_config import FAIRNESS_COEF, LABEL, FeatureConfig
from msrec.signatures import DEFAULT_SIGNATURE, EXAMPLE_INPUT, EXAMPLE_SIGNATURE, OUTPUT_KEY, WARMUP_FILE, \
    raw_input_specs

_NOT_SERVED = (LABEL, FAIRNESS_COEF, DATE_FEATURE, TS_FEATURE)  # training-only inputs


def _to_raw_spec(value: tf.Tensor, spec: Any) -> tf.Tensor | tf.SparseTensor:
    """Dense request tensors -> what the Transform graph was traced with (FixedLen or VarLen)."""
    if isinstance(spec, tf.io.FixedLenFeature):
        return tf.reshape(tf.cast(value, spec.dtype), [-1] + list(spec.shape))
    value = tf.cast(value, spec.dtype) if value.dtype != tf.string else value
    if value.shape.rank == 1:
        value = value[:, None]
    if value.dtype == tf.string:
        return tf.sparse.from_dense(value)  # '' is "missing"
    # A numeric optional feature: every given value is present, zero included.
    idx = tf.where(tf.ones_like(value, tf.bool))
    return tf.SparseTensor(idx, tf.gather_nd(value, idx), tf.shape(value, out_type=tf.int64))


class ServingModule(tf.Module):
    """Tracks the model's variables and the Transform layer (its tables and vocabularies), which the
    signatures capture. The Keras model itself is not tracked: saving it would trace every layer's
    call for Keras' own loader (10 s of a 16 s export), and every reader of the export (TF Serving,
    msrec serve, TFMA, FairnessGen) uses the signatures."""

    def __init__(self, model: tf.keras.Model, tft_output: tft.TFTransformOutput, config: FeatureConfig):
        super().__init__()
        self.model_variables = list(model.variables)
        self._setattr_tracking = False
        self.model = model
        self._setattr_tracking = True
        self.tft_layer = tft_output.transform_features_layer()
        self._raw_spec = {k: v for k, v in tft_output.raw_feature_spec().items() if k not in _NOT_SERVED}
        self._inputs = raw_input_specs(config)

    def _predict(self, raw: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = self.tft_layer(dict(raw))
        features = {k: v for k, v in transformed.items() if k not in _NOT_SERVED}
        return {OUTPUT_KEY: tf.reshape(self.model(features, training=False), [-1])}

    def signatures(self) -> dict[str, Any]:
        names = list(self._inputs)
        raw_spec = self._raw_spec

        @tf.function(input_signature=list(self._inputs.values()), autograph=False)
        def serve_raw(*values: tf.Tensor) -> dict[str, tf.Tensor]:
            given = dict(zip(names, values))
            raw = {k: _to_raw_spec(given[k], spec) for k, spec in raw_spec.items() if k in given}
            return self._predict(raw)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLE_INPUT)], autograph=False)
        def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
            return self._predict(tf.io.parse_example(examples, raw_spec))

        return {DEFAULT_SIGNATURE: serve_raw.get_concrete_function(),
                EXAMPLE_SIGNATURE: serve_examples.get_concrete_function()}


def write_warmup(export_dir: str, config: FeatureConfig, model_name: str, batch_sizes: tuple[int, ...] = (1, 64)
                 ) -> None:
    """TF Serving replays these before a version goes AVAILABLE, so the first user request does not
    pay for graph initialisation. Shapes and dtypes are what matters, so the values are neutral."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    specs = raw_input_specs(config)
    with tf.io.TFRecordWriter(path) as writer:
        for n in batch_sizes:
            req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
                name=model_name, signature_name=DEFAULT_SIGNATURE))
            for name, spec in specs.items():
                shape = [n] if spec.shape.rank == 1 else [n, config.sequence.length]
                value = tf.zeros(shape, tf.float32) if spec.dtype == tf.float32 else tf.fill(shape, "")
                req.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req))
            writer.write(log.SerializeToString())


def export(model: tf.keras.Model, tft_output: tft.TFTransformOutput, config: FeatureConfig, export_dir: str,
           model_name: str) -> None:
    module = ServingModule(model, tft_output, config)
    # The Transform layer is a Keras model, which Keras would trace once more for its own loader (5 of
    # a 12 s export); without the traces its tables and vocabularies are saved all the same.
    with keras_option_scope(save_traces=False):
        tf.saved_model.save(module, export_dir, signatures=module.signatures())
    write_warmup(export_dir, config, model_name)
