"""A Python client of TensorFlow Serving's gRPC API, and ``msrec query``.

Only the official ``tensorflow_serving.apis`` stubs are used, so the same client talks to
``msrec serve`` and to the official ``tensorflow/serving`` image.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Mapping, Sequence

import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import grpc
import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_management_pb2, model_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2

from msrec.components.log_example_gen.limits import IngestLimits, dedup_fields
from msrec.serving.candidates import build_candidates, parse_context, parse_now
from msrec.serving.tensors import InputSpec, dtype_name, fill_tensor_proto, numpy_dtype, to_ndarray

DEFAULT_SIGNATURE = "serving_default"
ITEM_KEY = "item_id"
_STRING = types_pb2.DT_STRING
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ServingClientError(RuntimeError):
    """The server refused or failed a call; ``code`` is the gRPC status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def _model_spec(spec: model_pb2.ModelSpec, model_name: str, version: int | None,
                version_label: str | None, signature: str | None) -> None:
    if version is not None and version_label:
        raise ValueError("give a version or a version label, not both")
    spec.name = model_name
    if version is not None:
        spec.version.value = int(version)
    elif version_label:
        spec.version_label = version_label
    if signature:
        spec.signature_name = signature


class PredictClient:
    """``PredictClient("127.0.0.1:8500").predict("sarnet", {"user_id": np.array([...]), ...})``."""

    def __init__(self, target: str, timeout: float = 10.0, root_certificates: bytes | None = None,
                 max_message_bytes: int = _MAX_MESSAGE_BYTES) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if root_certificates is not None:
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates), options)
        else:
            self._channel = grpc.insecure_channel(target, options)
        self.target = target
        self.timeout = timeout
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "PredictClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
            if code == grpc.StatusCode.UNAVAILABLE:
                details = f"cannot reach a model server at {self.target}: {details}"
            raise ServingClientError(code, details) from None

    # ---- PredictionService --------------------------------------------------------------------
    def predict(self, model_name: str, inputs: Mapping[str, np.ndarray], version: int | None = None,
                version_label: str | None = None, signature: str = DEFAULT_SIGNATURE,
                output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """The signature's outputs for ``inputs`` (one array per input name, one row per candidate)."""
        return self.predict_with_version(model_name, inputs, version, version_label, signature, output_filter)[0]

    def predict_with_version(self, model_name: str, inputs: Mapping[str, np.ndarray], version: int | None = None,
                             version_label: str | None = None, signature: str = DEFAULT_SIGNATURE,
                             output_filter: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], int]:
        """Like ``predict``, with the version that answered (a server may swap versions any time)."""
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        _model_spec(request.model_spec, model_name, version, version_label, signature)
        for name, values in inputs.items():
            fill_tensor_proto(np.asarray(values), request.inputs[name])
        response = self._call(self._prediction.Predict, request)
        outputs = {k: to_ndarray(v, k) for k, v in response.outputs.items()}
        return outputs, response.model_spec.version.value

    def classify(self, model_name: str, examples: Sequence[example_pb2.Example | bytes],
                 version: int | None = None, version_label: str | None = None,
                 signature: str = "") -> np.ndarray:
        """P(click) per tf.Example (the score of class "1"); the server's tf.Example signature."""
        request = classification_pb2.ClassificationRequest()
        _model_spec(request.model_spec, model_name, version, version_label, signature)
        target = request.input.example_list.examples
        for example in examples:
            if isinstance(example, bytes):
                target.add().ParseFromString(example)
            else:
                target.add().CopyFrom(example)
        response = self._call(self._prediction.Classify, request)
        scores = []
        for classification in response.result.classifications:
            by_label = {c.label: c.score for c in classification.classes}
            if "1" not in by_label:
                raise ValueError(f"Classify answered classes {sorted(by_label)}; a click model answers '0' and '1'")
            scores.append(by_label["1"])
        return np.asarray(scores, dtype=np.float32)

    def metadata(self, model_name: str, version: int | None = None,
                 version_label: str | None = None) -> tuple[int, dict[str, meta_graph_pb2.SignatureDef]]:
        """(the answering version, its SignatureDef map)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        _model_spec(request.model_spec, model_name, version, version_label, None)
        response = self._call(self._prediction.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return response.model_spec.version.value, dict(signatures.signature_def)

    def input_specs(self, model_name: str, signature: str = DEFAULT_SIGNATURE, version: int | None = None,
                    version_label: str | None = None) -> dict[str, InputSpec]:
        """Input names, dtypes and shapes of a signature, read from the server."""
        _, signatures = self.metadata(model_name, version, version_label)
        if signature not in signatures:
            raise ServingClientError(grpc.StatusCode.FAILED_PRECONDITION,
                                     f"model {model_name!r} has no signature {signature!r}; it has "
                                     f"{sorted(signatures)}")
        specs = {}
        for name, info in signatures[signature].inputs.items():
            shape = None if info.tensor_shape.unknown_rank else \
                tuple(None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
            specs[name] = InputSpec(name, info.dtype, shape)
        return specs

    # ---- ModelService -------------------------------------------------------------------------
    def status(self, model_name: str, version: int | None = None,
               version_label: str | None = None) -> list[dict[str, Any]]:
        request = get_model_status_pb2.GetModelStatusRequest()
        _model_spec(request.model_spec, model_name, version, version_label, None)
        response = self._call(self._models.GetModelStatus, request)
        state = get_model_status_pb2.ModelVersionStatus.State
        return [{"version": s.version, "state": state.Name(s.state),
                 "error_code": s.status.error_code, "error_message": s.status.error_message}
                for s in response.model_version_status]

    def reload_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        request = model_management_pb2.ReloadConfigRequest(config=config)
        self._call(self._models.HandleReloadConfigRequest, request)

    # ---- ranking ------------------------------------------------------------------------------
    def rank(self, model_name: str, candidates: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
             version: int | None = None, version_label: str | None = None,
             output: str = "ctr") -> list[tuple[str, float]]:
        """Candidates (dicts, or one list per feature) ranked by the model's ``output``, best first."""
        return self._rank(model_name, candidates, version, version_label, output)[0]

    def _rank(self, model_name: str, candidates: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
              version: int | None, version_label: str | None,
              output: str) -> tuple[list[tuple[str, float]], int, list[str]]:
        specs = self.input_specs(model_name, DEFAULT_SIGNATURE, version, version_label)
        columns = as_columns(candidates)
        inputs, notes = coerce_inputs(columns, specs)
        outputs, answered = self.predict_with_version(model_name, inputs, version, version_label,
                                                      DEFAULT_SIGNATURE, [output])
        scores = outputs[output].reshape(-1).tolist()
        n = len(scores)
        items = [str(v) for v in columns.get(ITEM_KEY, [f"#{i + 1}" for i in range(n)])]
        order = sorted(range(n), key=lambda i: -scores[i])
        return [(items[i], float(scores[i])) for i in order], answered, notes


def as_columns(candidates: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """One list per feature, from candidate dicts or from ``{"inputs": {feature: [...]}}`` columns."""
    if isinstance(candidates, Mapping):
        columns = {k: list(v) for k, v in candidates.items()}
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"every feature needs one value per candidate; lengths differ: {lengths}")
        return columns
    rows = list(candidates)
    if not rows:
        raise ValueError("no candidates to rank")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"candidate #{i + 1} is a {type(row).__name__}, not an object of features")
    names = sorted({k for row in rows for k in row})
    return {k: [row.get(k) for row in rows] for k in names}


def _category(name: str, value: Any) -> bytes:
    # the ingestion's spelling (msrec.components.log_example_gen.records): ints as decimals, JSON booleans as true/false
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode()
    raise ValueError(f"feature {name!r}: {value!r} is a {type(value).__name__}; a categorical value "
                     f"is a string or an integer")


def coerce_inputs(columns: Mapping[str, Sequence[Any]],
                  specs: Mapping[str, InputSpec]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Arrays of the signature's dtypes and ranks; missing features become "" / 0 and are noted.

    Returns (inputs, notes): a note per filled feature and per column the signature does not take.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    if n == 0:
        raise ValueError("no candidates to rank")
    notes = []
    ignored = sorted(set(columns) - set(specs))
    if ignored:
        notes.append(f"not model inputs, ignored: {ignored}")
    filled = sorted(set(specs) - set(columns))
    if filled:
        notes.append(f"missing features sent as empty / 0 (unknown to the model): {filled}")
    inputs: dict[str, np.ndarray] = {}
    for name, spec in specs.items():
        values = list(columns.get(name, [None] * n))
        rank = 1 if spec.shape is None else len(spec.shape)
        if rank == 2:
            # lists padded with "" (strings) or 0 (numbers: seq_time_gap's seconds)
            lists = [[] if v is None else (v if isinstance(v, (list, tuple)) else [v]) for v in values]
            width = max(1, max(len(v) for v in lists))  # at least one (padding) column
            if spec.dtype == _STRING:
                array = np.full((n, width), b"", dtype=object)
                for i, row in enumerate(lists):
                    array[i, :len(row)] = [_category(name, v) for v in row]
            else:
                array = np.zeros((n, width), dtype=numpy_dtype(spec.dtype))
                for i, row in enumerate(lists):
                    try:
                        array[i, :len(row)] = [0 if v is None else v for v in row]
                    except (TypeError, ValueError) as e:
                        raise ValueError(f"feature {name!r} needs lists of numbers "
                                         f"({dtype_name(spec.dtype)}): {e}") from None
        elif spec.dtype == _STRING and rank == 1:
            array = np.array([_category(name, v) for v in values], dtype=object)
        elif rank == 1:
            numbers = [0 if v is None else v for v in values]
            try:
                array = np.asarray(numbers, dtype=numpy_dtype(spec.dtype))
            except (TypeError, ValueError) as e:
                raise ValueError(f"feature {name!r} needs numbers ({dtype_name(spec.dtype)}): {e}") from None
        else:
            raise ValueError(f"input {spec.describe()} cannot be built from candidate features")
        inputs[name] = array
    return inputs, notes


def load_request_file(path: str) -> Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]:
    """``{"inputs": {feature: [value per candidate]}}`` or a list of candidate objects."""
    with open(path) as fh:
        try:
            raw = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not JSON: {e}") from None
    if isinstance(raw, dict) and isinstance(raw.get("inputs"), dict):
        return raw["inputs"]
    if isinstance(raw, list):
        return raw
    raise ValueError(f"{path}: expected {{\"inputs\": {{feature: [values]}}}} or a list of candidate objects")


def format_ranking(ranking: Sequence[tuple[str, float]], title: str) -> str:
    width = max([len(ITEM_KEY)] + [len(item) for item, _ in ranking])
    lines = [title, f"{'rank':>4}  {ITEM_KEY:<{width}}  {'ctr':>8}"]
    lines += [f"{i:>4}  {item:<{width}}  {score:>8.6f}" for i, (item, score) in enumerate(ranking, 1)]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """``msrec query``: rank candidates from a JSON file or assembled from the logs."""
    try:
        if args.request:
            candidates, notes = load_request_file(args.request), []
            who = f"from {args.request}"
        elif args.logs and args.user and args.scenario and args.items:
            items = [i.strip() for i in args.items.split(",") if i.strip()]
            limits = IngestLimits(dedup_key=dedup_fields(args.dedup_key), keep_duplicates=args.keep_duplicates)
            assembled = build_candidates(args.logs, args.user, args.scenario, items,
                                         now_ms=parse_now(args.now), context=parse_context(args.context),
                                         limits=limits)
            candidates, notes = assembled.rows, assembled.notes
            who = (f"for user {args.user} in scenario {args.scenario} "
                   f"({assembled.history_length} past clicks)")
        else:
            print("msrec query: give --request FILE.json, or --logs DIR with --user, --scenario and "
                  "--items", file=sys.stderr)
            return 2
        with PredictClient(args.server, timeout=args.timeout) as client:
            ranking, version, coerce_notes = client._rank(args.model, candidates, None, None, "ctr")
    except (OSError, ValueError) as e:
        print(f"msrec query: {e}", file=sys.stderr)
        return 1
    except ServingClientError as e:
        print(f"msrec query: the server answered {e}", file=sys.stderr)
        return 1
    for note in notes + coerce_notes:
        print(f"note: {note}", file=sys.stderr)
    print(format_ranking(ranking, f"model {args.model} version {version}: {len(ranking)} candidates {who}"))
    return 0
