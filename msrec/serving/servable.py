"""One loaded model version: its signatures, Predict / Classify on it, and warm-up replay."""
from __future__ import annotations

import math
import os
from typing import Iterable, Mapping

import numpy as np
import tensorflow as tf
from google.protobuf import message, text_format
from tensorflow.core.example import example_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import classification_pb2, model_pb2, predict_pb2, prediction_log_pb2

from msrec.serving.errors import FailedPrecondition, InvalidArgument, ServingError, shown, shown_list
from msrec.serving.limits import RequestLimits
from msrec.serving.tensors import InputSpec, check_input_names, check_request_tensors, fill_tensor_proto, non_finite
from msrec.serving.wire import DecodedInputs, InputDecoder, decoded_dtype, parse_request
from msrec.signatures import DEFAULT_SIGNATURE, EXAMPLE_SIGNATURE, WARMUP_FILE

CTR_OUTPUT = "ctr"
MAX_WARMUP_RECORDS = 1000  # TF Serving's own cap on a warm-up file


class LoadError(Exception):
    """The version cannot be served; the message is what GetModelStatus reports."""


class Signature:
    """A signature's concrete function with its inputs read from the function itself."""

    def __init__(self, name: str, fn: tf.types.experimental.ConcreteFunction) -> None:
        args, kwargs = fn.structured_input_signature
        if args:
            raise LoadError(f"signature {name!r} takes positional inputs; a serving signature takes "
                            f"named inputs only")
        self.name = name
        self._fn = fn
        self._tf_dtypes = {k: spec.dtype for k, spec in kwargs.items()}
        self.inputs = {
            k: InputSpec(k, spec.dtype.as_datatype_enum,
                         None if spec.shape.rank is None else tuple(spec.shape.as_list()))
            for k, spec in kwargs.items()
        }
        self.outputs = sorted(fn.structured_outputs)
        self.decoder = InputDecoder(self.inputs)
        try:  # traced at load, so the first request does not pay for it
            self._run_decoded = tf.function(self._shaped_call, autograph=False, input_signature=[
                {k: tf.TensorSpec([None], decoded_dtype(spec.dtype)) for k, spec in self.inputs.items()},
                tf.TensorSpec([None], tf.int64), tf.TensorSpec([len(self.inputs)], tf.int32)]).get_concrete_function()
        except (TypeError, ValueError):  # an input dtype no request can carry: every request is refused by dtype
            self._run_decoded = None

    def _shaped_call(self, values: Mapping[str, tf.Tensor], dims: tf.Tensor, ranks: tf.Tensor) -> dict[str, tf.Tensor]:
        """The function on flat values, each broadcast (a single value) or reshaped to its dims."""
        inputs, ends = {}, tf.cumsum(ranks)
        for i, name in enumerate(self.decoder.names):
            shape = dims[ends[i] - ranks[i]:ends[i]]
            shaped = tf.reshape(tf.broadcast_to(values[name], tf.reshape(tf.reduce_prod(shape), [1])), shape)
            spec_shape = self.inputs[name].shape
            inputs[name] = shaped if spec_shape is None else tf.ensure_shape(shaped, spec_shape)
        return self._fn(**inputs)

    def run_decoded(self, decoded: DecodedInputs, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """One call on what ``self.decoder`` returned, once its headers have passed the checks."""
        if self._run_decoded is None:
            raise FailedPrecondition(f"signature {self.name!r} takes inputs of dtypes Predict cannot carry: "
                                     + "; ".join(spec.describe() for spec in self.inputs.values()))
        try:
            result = self._run_decoded(decoded.values, decoded.dims, decoded.ranks)
        except tf.errors.InvalidArgumentError as e:
            raise InvalidArgument(f"signature {self.name!r} rejected the inputs: {e.message}") from e
        return {k: result[k].numpy() for k in outputs or self.outputs}

    def run(self, inputs: Mapping[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """One call of the function with every input; model-side rejections become INVALID_ARGUMENT."""
        tensors = {k: tf.constant(v, dtype=self._tf_dtypes[k]) for k, v in inputs.items()}
        try:
            result = self._fn(**tensors)
        except tf.errors.InvalidArgumentError as e:
            raise InvalidArgument(f"signature {self.name!r} rejected the inputs: {e.message}") from e
        return {k: result[k].numpy() for k in outputs or self.outputs}


def read_signature_defs(export_dir: str) -> Mapping[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDef map of the serving meta graph, as GetModelMetadata returns it."""
    pb = os.path.join(export_dir, "saved_model.pb")
    pbtxt = os.path.join(export_dir, "saved_model.pbtxt")
    saved = saved_model_pb2.SavedModel()
    if os.path.exists(pb):
        with open(pb, "rb") as fh:
            saved.ParseFromString(fh.read())
    elif os.path.exists(pbtxt):
        with open(pbtxt) as fh:
            text_format.Parse(fh.read(), saved)
    else:
        raise LoadError(f"{export_dir} holds no saved_model.pb or saved_model.pbtxt")
    for graph in saved.meta_graphs:
        if "serve" in graph.meta_info_def.tags:
            return graph.signature_def
    raise LoadError(f"{export_dir}: no meta graph is tagged 'serve'")


class Servable:
    """A SavedModel version loaded into this process."""

    def __init__(self, model_name: str, version: int, export_dir: str) -> None:
        self.model_name = model_name
        self.version = version
        self.export_dir = export_dir
        try:
            self.signature_defs = read_signature_defs(export_dir)
            self.model = tf.saved_model.load(export_dir, tags=["serve"])
        except LoadError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to read an artifact is a load error
            raise LoadError(f"cannot load the SavedModel in {export_dir}: {type(e).__name__}: "
                            f"{_first_line(e)}") from e
        self.signatures = {k: Signature(k, fn) for k, fn in self.model.signatures.items()}

    def signature(self, name: str) -> Signature:
        try:
            return self.signatures[name]
        except KeyError:
            raise FailedPrecondition(f"serving signature key {shown(name)} not found in model "
                                     f"{self.model_name!r} version {self.version}; it has "
                                     f"{sorted(self.signatures)}") from None

    def predict(self, request: message.Message, limits: RequestLimits) -> predict_pb2.PredictResponse:
        """Answer a request parsed by ``wire.parse_request``: its inputs are serialized TensorProtos."""
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        sig = self.signature(name)
        check_input_names(request.inputs, sig.inputs, name)
        decoded = sig.decoder.decode(request.inputs)
        headers = decoded.headers
        check_request_tensors(headers, sig.inputs, name, limits)
        outputs = list(request.output_filter) or None
        if outputs:
            unknown = sorted(set(outputs) - set(sig.outputs))
            if unknown:
                raise InvalidArgument(f"output_filter names {shown_list(unknown)}, which signature "
                                      f"{name!r} does not have; its outputs: {sig.outputs}")
        not_finite = [headers[k] for k in sorted(headers) if not headers[k].finite]
        if not_finite:
            raise non_finite(not_finite[0], decoded.values[not_finite[0].name].numpy())
        result = sig.run_decoded(decoded, outputs)
        response = predict_pb2.PredictResponse()
        self._fill_spec(response.model_spec, name)
        for key, value in result.items():
            fill_tensor_proto(value, response.outputs[key])
        return response

    def classify(self, request: classification_pb2.ClassificationRequest,
                 limits: RequestLimits) -> classification_pb2.ClassificationResponse:
        """Binary click classification over tf.Examples: classes "0" and "1" scored 1-ctr and ctr."""
        name = request.model_spec.signature_name or EXAMPLE_SIGNATURE
        sig = self.signature(name)
        string_inputs = [s for s in sig.inputs.values() if s.dtype == tf.string.as_datatype_enum]
        if len(sig.inputs) != 1 or len(string_inputs) != 1:
            raise FailedPrecondition(f"signature {name!r} does not take serialized tf.Examples "
                                     f"({'; '.join(s.describe() for s in sig.inputs.values())}); "
                                     f"leave signature_name empty to use {EXAMPLE_SIGNATURE!r}")
        serialized = _serialized_examples(request, limits)
        output = CTR_OUTPUT if CTR_OUTPUT in sig.outputs else (sig.outputs[0] if len(sig.outputs) == 1 else None)
        if output is None:
            raise FailedPrecondition(f"signature {name!r} has outputs {sig.outputs}; Classify needs "
                                     f"{CTR_OUTPUT!r} or a single output")
        ctr = sig.run({string_inputs[0].name: serialized}, [output])[output].reshape(-1)
        if ctr.size != serialized.size:
            raise FailedPrecondition(f"signature {name!r} returned {ctr.size} scores for "
                                     f"{serialized.size} examples")
        response = classification_pb2.ClassificationResponse()
        self._fill_spec(response.model_spec, name)
        result = response.result
        for p in ctr.astype(np.float64).tolist():
            result.classifications.add().classes.extend([
                classification_pb2.Class(label="0", score=1.0 - p),
                classification_pb2.Class(label="1", score=p)])
        return response

    def warm_up(self) -> int:
        """Replay ``assets.extra/tf_serving_warmup_requests``; returns how many were replayed.

        The request limits of the server do not apply: the model's own warm-up is trusted.
        """
        limits = RequestLimits.unlimited()
        path = os.path.join(self.export_dir, WARMUP_FILE)
        if not os.path.exists(path):
            return 0
        replayed = 0
        try:
            records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
        except tf.errors.OpError as e:
            raise LoadError(f"cannot read the warm-up file {path}: {e.message}") from e
        if len(records) > MAX_WARMUP_RECORDS:
            raise LoadError(f"{path} holds {len(records)} warm-up records; at most "
                            f"{MAX_WARMUP_RECORDS} are allowed")
        for i, record in enumerate(records):
            log = prediction_log_pb2.PredictionLog()
            try:
                log.ParseFromString(record)
            except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError subclasses per backend
                raise LoadError(f"warm-up record #{i + 1} is not a PredictionLog: {e}") from e
            kind = log.WhichOneof("log_type")
            try:
                if kind == "predict_log":
                    self.predict(parse_request(log.predict_log.request.SerializeToString()), limits)
                elif kind == "classify_log":
                    self.classify(log.classify_log.request, limits)
                else:
                    raise LoadError(f"warm-up record #{i + 1} is a {kind}; only predict_log and "
                                    f"classify_log records can be replayed")
            except ServingError as e:
                raise LoadError(f"warm-up request #{i + 1} failed: {e.message}") from e
            replayed += 1
        return replayed

    def _fill_spec(self, spec: model_pb2.ModelSpec, signature_name: str) -> None:
        spec.name = self.model_name
        spec.version.value = self.version
        spec.signature_name = signature_name


def _serialized_examples(request: classification_pb2.ClassificationRequest, limits: RequestLimits) -> np.ndarray:
    kind = request.input.WhichOneof("kind")
    if kind == "example_list":
        examples, context = request.input.example_list.examples, b""
    elif kind == "example_list_with_context":
        examples = request.input.example_list_with_context.examples
        # serialized protos concatenate as a merge: the context's features, then each example's
        context = request.input.example_list_with_context.context.SerializeToString()
    else:
        raise InvalidArgument("the request has no input: set input.example_list.examples")
    if not examples:
        raise InvalidArgument("the request's example list is empty")
    if len(examples) > limits.max_candidates:
        raise InvalidArgument(f"the request holds {len(examples)} examples; this server accepts at "
                              f"most {limits.max_candidates} per request (--max_candidates): split the request")
    _check_value_lists(examples, limits)
    if kind == "example_list_with_context":
        _check_value_lists([request.input.example_list_with_context.context], limits, "the context")
    return np.array([context + e.SerializeToString() for e in examples], dtype=object)


def _check_value_lists(examples: Iterable[example_pb2.Example], limits: RequestLimits,
                       what: str = "example") -> None:
    """The checks Predict makes on its tensors, on each tf.Example's features: a list longer than
    a sequence may be would be padded to that length in every example once the model parses the
    batch, and a NaN or infinite float would come back as a NaN score."""
    for i, example in enumerate(examples):
        where = f"example #{i + 1}" if what == "example" else what
        for key, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = getattr(feature, kind).value if kind else ()
            if len(values) > limits.max_sequence_length:
                raise InvalidArgument(f"{where}: feature {shown(key)} holds {len(values)} values; this "
                                      f"server accepts at most {limits.max_sequence_length} per feature "
                                      f"(--max_sequence_length)")
            if kind == "float_list" and not all(math.isfinite(v) for v in values):
                bad = next(v for v in values if not math.isfinite(v))
                raise InvalidArgument(f"{where}: feature {shown(key)} holds {bad}; inputs must be finite")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no details"
