"""``msrec serve``: a gRPC server that speaks TensorFlow Serving's API.

It implements ``tensorflow.serving.PredictionService`` (Predict, Classify, GetModelMetadata) and
``tensorflow.serving.ModelService`` (GetModelStatus, HandleReloadConfigRequest) from the official
``tensorflow-serving-api`` protos, and takes ``tensorflow_model_server``'s flags, so a client and
a model base path move between this server and the official one unchanged.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import logging
import signal
import socket
import sys
import threading
from typing import Callable, TypeVar

import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import grpc
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, model_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc, regression_pb2, status_pb2)

from msrec.serving.config import ModelServerConfig, config_from_flags
from msrec.serving.errors import (ConfigError, FailedPrecondition, InvalidArgument, ServingError, Unimplemented,
                                  shown_list, status_message)
from msrec.serving.limits import (DEFAULT_MAX_CANDIDATES, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_SEQUENCE_LENGTH,
                                  RequestLimits)
from msrec.serving.model_manager import ModelManager, ServerCore
from msrec.serving.servable import Servable
from msrec.serving.wire import parse_request

log = logging.getLogger("msrec.serving")

SIGNATURE_DEF_FIELD = "signature_def"
T = TypeVar("T")


def _answer(context: grpc.ServicerContext, method: str, work: Callable[[], T]) -> T:
    """Run one RPC; refusals become their status code, anything unexpected INTERNAL (logged)."""
    try:
        return work()
    except ServingError as e:
        code, message = e.code, e.message
    except Exception as e:  # noqa: BLE001 - a failing request must not take the server down
        log.exception("%s failed", method)
        code, message = grpc.StatusCode.INTERNAL, f"{method} failed inside the server: {type(e).__name__}: {e}"
    context.abort(code, status_message(message))  # raises: the RPC ends with this status


def _route(core: ServerCore, spec: model_pb2.ModelSpec) -> tuple[ModelManager, int | None, str | None]:
    """The model a request names, and the version or label it asks for (None: the newest)."""
    if not spec.name:
        raise InvalidArgument("model_spec.name is required; served models: " + ", ".join(core.model_names))
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    return core.manager(spec.name), version, label


def _refuse(message: str) -> Callable[[], T]:
    def work() -> T:
        raise Unimplemented(message)
    return work


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServerCore) -> None:
        self._core = core

    def _with_servable(self, spec: model_pb2.ModelSpec, answer: Callable[[Servable], T]) -> Callable[[], T]:
        """The RPC's work: lease the version the request routes to, answer with it, release it."""
        def work() -> T:
            manager, version, label = _route(self._core, spec)
            with manager.lease(version, label) as servable:
                return answer(servable)
        return work

    def Predict(self, request: bytes,  # noqa: N802 - gRPC method names
                context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        """Takes the request's wire bytes (see ``add_prediction_service``): ``wire`` decodes them."""
        def work() -> predict_pb2.PredictResponse:
            frame = parse_request(request)
            return self._with_servable(
                frame.model_spec, lambda servable: servable.predict(frame, self._core.limits))()
        return _answer(context, "Predict", work)

    def Classify(self, request: classification_pb2.ClassificationRequest,  # noqa: N802
                 context: grpc.ServicerContext) -> classification_pb2.ClassificationResponse:
        return _answer(context, "Classify", self._with_servable(
            request.model_spec, lambda servable: servable.classify(request, self._core.limits)))

    def Regress(self, request: regression_pb2.RegressionRequest,  # noqa: N802
                context: grpc.ServicerContext) -> regression_pb2.RegressionResponse:
        return _answer(context, "Regress", _refuse(
            "Regress is not served: msrec models answer a click probability; "
            "use Predict (raw features) or Classify (tf.Examples)"))

    def MultiInference(self, request: inference_pb2.MultiInferenceRequest,  # noqa: N802
                       context: grpc.ServicerContext) -> inference_pb2.MultiInferenceResponse:
        return _answer(context, "MultiInference", _refuse(
            "MultiInference is not served; send one Predict or Classify request per task"))

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,  # noqa: N802
                         context: grpc.ServicerContext) -> get_model_metadata_pb2.GetModelMetadataResponse:
        def metadata(servable: Servable) -> get_model_metadata_pb2.GetModelMetadataResponse:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.model_name
            response.model_spec.version.value = servable.version
            signatures = get_model_metadata_pb2.SignatureDefMap()
            for key, signature in servable.signature_defs.items():
                signatures.signature_def[key].CopyFrom(signature)
            response.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
            return response
        lease = self._with_servable(request.model_spec, metadata)

        def work() -> get_model_metadata_pb2.GetModelMetadataResponse:
            fields = list(request.metadata_field)  # the request's own arguments first, as TF Serving does
            if fields != [SIGNATURE_DEF_FIELD]:
                raise InvalidArgument(f"metadata_field must be [{SIGNATURE_DEF_FIELD!r}] (the only "
                                      f"metadata served), got {shown_list(fields)}")
            return lease()
        return _answer(context, "GetModelMetadata", work)


def add_prediction_service(servicer: PredictionServicer, server: grpc.Server) -> None:
    """The generated registration, with Predict taking the undeserialized request bytes: the
    server looks handlers up in the order they were added, so this Predict comes first."""
    raw_predict = grpc.unary_unary_rpc_method_handler(
        servicer.Predict, request_deserializer=None, response_serializer=predict_pb2.PredictResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService", {"Predict": raw_predict}),))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServerCore) -> None:
        self._core = core

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,  # noqa: N802
                       context: grpc.ServicerContext) -> get_model_status_pb2.GetModelStatusResponse:
        def work():
            manager, version, label = _route(self._core, request.model_spec)
            response = get_model_status_pb2.GetModelStatusResponse()
            for s in manager.status(version, label):
                response.model_version_status.add(
                    version=s.version, state=s.state,
                    status=status_pb2.StatusProto(error_code=s.error_code, error_message=s.error_message))
            return response
        return _answer(context, "GetModelStatus", work)

    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,  # noqa: N802
                                  context: grpc.ServicerContext) -> model_management_pb2.ReloadConfigResponse:
        def work():
            try:
                self._core.reload(request.config)
            except ConfigError as e:
                log.error("config reload refused: %s", status_message(str(e)))
                raise InvalidArgument(f"config reload refused: {e}") from e
            failures = self._core.load_failures()
            if failures:  # the config holds (versions not given up are retried), but nothing serves
                log.error("config reloaded, but %s", status_message("; ".join(failures)))
                raise FailedPrecondition("config reloaded, but " + "; ".join(failures))
            log.info("config reloaded: serving %s", ", ".join(self._core.model_names))
            return model_management_pb2.ReloadConfigResponse(
                status=status_pb2.StatusProto(error_code=error_codes_pb2.OK))
        return _answer(context, "HandleReloadConfigRequest", work)


@dataclasses.dataclass
class ServerHandle:
    """A running server: ``port`` is the bound port (useful when started with port 0)."""

    host: str
    port: int
    core: ServerCore
    _server: grpc.Server

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def stop(self, grace: float = 5.0) -> None:
        """Refuse new RPCs, let those in flight finish (up to ``grace`` s), then unload models."""
        self._server.stop(grace).wait()
        self.core.stop()


def start_server(model_name: str | None = None, model_base_path: str | None = None,
                 model_config_file: str | None = None, port: int = 0, host: str = "127.0.0.1",
                 poll_seconds: float = 1.0, max_num_load_retries: int = 5,
                 max_candidates: int = DEFAULT_MAX_CANDIDATES,
                 max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 ssl_cert: str | None = None, ssl_key: str | None = None,
                 model_server_config: ModelServerConfig | None = None,
                 max_workers: int = 16) -> ServerHandle:
    """Bind ``host:port`` (0 = any free port), load the models, then start serving.

    The port is bound first, so a taken port fails in seconds rather than after every model has
    loaded. Raises ``ConfigError`` for an unusable configuration and ``OSError`` if the port
    cannot be bound.
    """
    if bool(ssl_cert) != bool(ssl_key):
        raise ConfigError("TLS needs both --ssl_cert and --ssl_key")
    limits = RequestLimits(max_candidates, max_sequence_length, max_message_bytes)
    config = model_server_config or config_from_flags(model_name, model_base_path, model_config_file)
    core = ServerCore(poll_seconds, max_num_load_retries, limits)
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="msrec-grpc"),
        options=[("grpc.max_receive_message_length", max_message_bytes),
                 ("grpc.max_send_message_length", max_message_bytes),
                 ("grpc.so_reuseport", 0)])  # a port already in use is an error, not shared
    add_prediction_service(PredictionServicer(core), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core), server)
    bound = _bind(server, host, port, ssl_cert, ssl_key)
    try:
        core.reload(config)
        server.start()
    except BaseException:
        server.stop(None)
        core.stop()
        raise
    core.start_polling()
    handle = ServerHandle(host, bound, core, server)
    log.info("serving %s on %s (%s)", ", ".join(core.model_names), handle.target,
             "TLS" if ssl_cert else "plaintext")
    return handle


def _bind(server: grpc.Server, host: str, port: int, ssl_cert: str | None, ssl_key: str | None) -> int:
    """Bind the listening port (not serving yet); the bound port number."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if port:
        _check_free(host, port, address)
    try:
        if ssl_cert:
            with open(ssl_key, "rb") as k, open(ssl_cert, "rb") as c:
                credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as e:
        raise OSError(f"cannot bind {address}: {e}") from None
    if not bound:
        raise OSError(f"cannot bind {address} (in use, or not an address of this machine)")
    return bound


def _check_free(host: str, port: int, address: str) -> None:
    """Try the bind with a plain socket first: gRPC reports a taken port as several log lines."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise OSError(f"cannot bind {address}: {e.strerror}") from None
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            try:
                probe.bind(sockaddr)
            except OSError as e:
                raise OSError(f"cannot bind {address}: {e.strerror}") from None


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    # installed before the models load, so a signal during a long first load still stops cleanly
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            handle = start_server(
                model_name=args.model_name, model_base_path=args.model_base_path,
                model_config_file=args.model_config_file, port=args.port, host=args.host,
                poll_seconds=args.file_system_poll_wait_seconds,
                max_num_load_retries=args.max_num_load_retries, max_candidates=args.max_candidates,
                max_sequence_length=args.max_sequence_length, max_message_bytes=args.max_message_bytes,
                ssl_cert=args.ssl_cert, ssl_key=args.ssl_key)
        except (ConfigError, OSError) as e:
            print(f"msrec serve: {e}", file=sys.stderr)
            return 1
        while not stop.wait(1.0):
            pass
        handle.stop()
        log.info("stopped")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
