"""msrec serve over gRPC with the official stubs: answers, metadata, errors, swaps, policies."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import re

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (get_model_metadata_pb2, inference_pb2, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)
from tensorflow_serving.config import model_server_config_pb2

from msrec.serving.client import PredictClient, ServingClientError
from msrec.serving.server import start_server
from msrec.serving.tensors import fill_tensor_proto
from msrec.signatures import raw_input_specs
from support.serving import (build_toy_model, check_corrupt_version_leaves_the_old_one, check_swap_fails_no_request,
                              feature_config, in_process_ctr, memory_mib, predict_request, push_corrupt_version,
                              push_version, reset_peak_memory, sample_inputs, states, wait_for)

MODEL = "toy"
MAX_CANDIDATES = 64
MAX_MESSAGE_BYTES = 1 << 20


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two versions that answer differently: bias 0 and bias 3."""
    root = tmp_path_factory.mktemp("toy-models")
    return {"a": build_toy_model(root / "a", bias=0.0), "b": build_toy_model(root / "b", bias=3.0)}


@pytest.fixture(scope="module")
def served(models, tmp_path_factory):
    base = tmp_path_factory.mktemp("serving") / MODEL
    push_version(base, 1, models["a"])
    handle = start_server(model_name=MODEL, model_base_path=str(base), poll_seconds=0.2,
                          max_candidates=MAX_CANDIDATES, max_message_bytes=MAX_MESSAGE_BYTES)
    with handle.core.manager(MODEL).lease() as servable:  # before any request reaches the model
        calls_at_start = int(servable.model.calls.numpy())
    client = PredictClient(handle.target)
    yield {"handle": handle, "client": client, "calls_at_start": calls_at_start}
    client.close()
    handle.stop()


def _error(call) -> ServingClientError:
    with pytest.raises(ServingClientError) as info:
        call()
    return info.value


def test_binds_loopback_by_default(served):
    assert served["handle"].host == "127.0.0.1"
    assert served["handle"].target.startswith("127.0.0.1:")


def test_predict_equals_the_saved_model_in_process(served, models):
    inputs = sample_inputs(7, seed=11)
    outputs, version = served["client"].predict_with_version(MODEL, inputs)
    assert version == 1
    assert outputs["ctr"].dtype == np.float32 and outputs["ctr"].shape == (7,)
    np.testing.assert_allclose(outputs["ctr"], in_process_ctr(models["a"], inputs), rtol=1e-6)


def test_predict_answers_in_float_val_like_tf_serving(served):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    for name, values in sample_inputs(3).items():
        fill_tensor_proto(values, request.inputs[name])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(served["client"]._channel)
    response = stub.Predict(request, timeout=10)
    assert len(response.outputs["ctr"].float_val) == 3
    assert response.model_spec.name == MODEL and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


def test_warmup_requests_are_replayed_before_the_version_serves(served):
    status = served["handle"].core.manager(MODEL).status()
    assert [(s.version, s.warmup_replayed) for s in status] == [(1, 3)]
    assert served["calls_at_start"] == 3  # the model itself counted the three warm-up calls


def test_classify_scores_tf_examples_like_predict(served):
    inputs = sample_inputs(4, seed=5)
    examples = []
    for i in range(4):
        example = tf.train.Example()
        for name, values in inputs.items():
            feature = example.features.feature[name]
            if values.dtype == np.float32:
                feature.float_list.value.append(float(values[i]))
            elif values.ndim == 2:
                feature.bytes_list.value.extend([v for v in values[i] if v])
            else:
                feature.bytes_list.value.append(values[i])
        examples.append(example)
    scores = served["client"].classify(MODEL, examples)
    np.testing.assert_allclose(scores, served["client"].predict(MODEL, inputs)["ctr"], rtol=1e-5)


def test_metadata_lists_the_signatures_from_the_saved_model(served):
    version, signatures = served["client"].metadata(MODEL)
    assert version == 1
    assert {"serving_default", "serving_tfexample"} <= set(signatures)
    expected = raw_input_specs(feature_config())
    default = signatures["serving_default"]
    assert set(default.inputs) == set(expected)
    for name, info in default.inputs.items():
        assert info.dtype == expected[name].dtype.as_datatype_enum
        assert len(info.tensor_shape.dim) == expected[name].shape.rank
    assert list(default.outputs) == ["ctr"]
    assert list(signatures["serving_tfexample"].inputs) == ["examples"]


def test_status_shows_the_available_version(served):
    assert served["client"].status(MODEL) == [
        {"version": 1, "state": "AVAILABLE", "error_code": 0, "error_message": ""}]


def _with(inputs, **changes):
    out = dict(inputs)
    for name, value in changes.items():
        if value is None:
            out.pop(name)
        else:
            out[name] = value
    return out


@pytest.mark.parametrize("change, expected", [
    ({"colour": np.array([b"red"] * 3, dtype=object)}, ["unknown input(s) ['colour']", "expected inputs:", "user_id"]),
    ({"user_id": None}, ["missing input(s) ['user_id']", "expected inputs:"]),
    ({"position": np.array([b"1", b"2", b"3"], dtype=object)}, ["'position' has dtype DT_STRING", "DT_FLOAT"]),
    ({"position": np.zeros((3, 2), np.float32)}, ["'position' has shape [3, 2] (rank 2)", "(rank 1)"]),
    ({"seq_item_id": np.array([b"i1", b"i2", b"i3"], dtype=object)}, ["'seq_item_id' has shape [3] (rank 1)"]),
    ({"position": np.zeros(2, np.float32)}, ["disagree on the batch size", "2 rows in ['position']", "3 rows in"]),
])
def test_malformed_inputs_are_invalid_argument_with_the_reason(served, change, expected):
    error = _error(lambda: served["client"].predict(MODEL, _with(sample_inputs(3), **change)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    for text in expected:
        assert text in error.details


def test_values_that_do_not_fill_the_shape_are_invalid_argument(served):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    for name, values in sample_inputs(3).items():
        fill_tensor_proto(values, request.inputs[name])
    del request.inputs["position"].float_val[1:]
    request.inputs["position"].float_val.append(1.0)  # 2 values for shape [3]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(served["client"]._channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "shape [3] needs 3 values but the tensor holds 2" in info.value.details()


@pytest.mark.parametrize("corrupt, expected", [
    (lambda raw: b"\xff" * 8, "the request is not a serialized PredictRequest"),
    # a well-formed envelope around an input that is not a TensorProto
    (lambda raw: raw + b"\x12\x0f\x0a\x08position\x12\x03\xff\xff\xff", "input 'position' is not a serialized TensorProto"),
])
def test_bytes_that_do_not_parse_are_invalid_argument(served, corrupt, expected):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    for name, values in sample_inputs(3).items():
        fill_tensor_proto(values, request.inputs[name])
    predict = served["client"]._channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                                   request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        predict(corrupt(request.SerializeToString()), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in info.value.details()


def test_unknown_output_filter_and_signature(served):
    inputs = sample_inputs(2)
    error = _error(lambda: served["client"].predict(MODEL, inputs, output_filter=["score"]))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "outputs: ['ctr']" in error.details
    error = _error(lambda: served["client"].predict(MODEL, inputs, signature="ranking"))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "'ranking' not found" in error.details and "serving_tfexample" in error.details


def test_too_many_candidates_is_invalid_argument(served):
    error = _error(lambda: served["client"].predict(MODEL, sample_inputs(MAX_CANDIDATES + 1)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"holds {MAX_CANDIDATES + 1} candidates" in error.details
    assert f"at most {MAX_CANDIDATES}" in error.details


def test_message_over_the_size_limit_is_resource_exhausted(served):
    inputs = sample_inputs(50)
    inputs["item_id"] = np.array([b"x" * 30_000] * 50, dtype=object)  # 1.5 MB > 1 MiB
    error = _error(lambda: served["client"].predict(MODEL, inputs))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("kwargs, model, expected", [
    ({}, "nope", "model 'nope' is not served here; served models: ['toy']"),
    ({"version": 7}, MODEL, "model 'toy' version 7 is not available (never seen under the base path); "
                            "available versions: [1]"),
    ({"version_label": "stable"}, MODEL, "model 'toy' has no version label 'stable'"),
])
def test_unknown_model_version_or_label_is_not_found(served, kwargs, model, expected):
    error = _error(lambda: served["client"].predict(model, sample_inputs(2), **kwargs))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert expected in error.details


def test_regress_and_multi_inference_are_unimplemented(served):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(served["client"]._channel)
    for call, request in [(stub.Regress, regression_pb2.RegressionRequest()),
                          (stub.MultiInference, inference_pb2.MultiInferenceRequest())]:
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "not served" in info.value.details()


def test_metadata_needs_the_signature_def_field(served):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(served["client"]._channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["graph"])
    request.model_spec.name = MODEL
    with pytest.raises(grpc.RpcError) as info:
        stub.GetModelMetadata(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'signature_def'" in info.value.details()
    request.model_spec.name = "no_such_model"  # the request's own arguments are checked before routing
    with pytest.raises(grpc.RpcError) as info:
        stub.GetModelMetadata(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_pushed_version_swaps_in_without_failing_a_request(models, tmp_path):
    check_swap_fails_no_request(tmp_path / MODEL, MODEL, models["a"], models["b"], sample_inputs(16, seed=2))


def test_a_corrupt_version_leaves_the_old_one_serving(models, tmp_path):
    check_corrupt_version_leaves_the_old_one(tmp_path / MODEL, MODEL, models["a"], models["b"],
                                             sample_inputs(5, seed=9))


def test_a_server_waits_for_the_first_version(models, tmp_path):
    base = tmp_path / MODEL  # does not exist yet
    handle = start_server(model_name=MODEL, model_base_path=str(base), poll_seconds=0.1)
    client = PredictClient(handle.target)
    try:
        error = _error(lambda: client.predict(MODEL, sample_inputs(2)))
        assert error.code == grpc.StatusCode.NOT_FOUND and "no available version yet" in error.details
        error = _error(lambda: client.status(MODEL))
        assert error.code == grpc.StatusCode.NOT_FOUND
        assert "has no versions yet" in error.details and "cannot list the base path" in error.details
        push_version(base, 5, models["a"])
        wait_for(lambda: states(client, MODEL) == {5: "AVAILABLE"}, what="version 5")
        assert client.predict_with_version(MODEL, sample_inputs(2))[1] == 5
    finally:
        client.close()
        handle.stop()


SPECIFIC_CONFIG = """
model_config_list {
  config {
    name: "toy"
    base_path: "%s"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 3 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 3 }
  }
}
"""


def test_specific_versions_and_labels_from_a_models_config(models, tmp_path):
    base = tmp_path / MODEL
    for version, source in [(1, models["a"]), (2, models["a"]), (3, models["b"])]:
        push_version(base, version, source)
    config_file = tmp_path / "models.config"
    config_file.write_text(SPECIFIC_CONFIG % base)
    handle = start_server(model_config_file=str(config_file), poll_seconds=0.1)
    client = PredictClient(handle.target)
    inputs = sample_inputs(4, seed=4)
    ctr_a, ctr_b = in_process_ctr(models["a"], inputs), in_process_ctr(models["b"], inputs)
    try:
        assert states(client, MODEL) == {1: "AVAILABLE", 3: "AVAILABLE"}  # 2 is never loaded
        outputs, version = client.predict_with_version(MODEL, inputs, version_label="canary")
        assert version == 3
        np.testing.assert_allclose(outputs["ctr"], ctr_b, rtol=1e-6)
        outputs, version = client.predict_with_version(MODEL, inputs, version_label="stable")
        assert version == 1
        np.testing.assert_allclose(outputs["ctr"], ctr_a, rtol=1e-6)
        assert client.predict_with_version(MODEL, inputs)[1] == 3  # no version named: the newest
        assert _error(lambda: client.predict(MODEL, inputs, version=2)).code == grpc.StatusCode.NOT_FOUND

        # labels may only name versions the policy serves, and only once they are available
        bad = text_format.Parse(SPECIFIC_CONFIG % base, model_server_config_pb2.ModelServerConfig())
        bad.model_config_list.config[0].version_labels["broken"] = 2
        error = _error(lambda: client.reload_config(bad))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "label 'broken' points to version 2, which the 'specific' policy does not serve" in error.details
        bad.model_config_list.config[0].model_version_policy.specific.versions.append(2)
        bad.model_config_list.config[0].version_labels["broken"] = 4
        bad.model_config_list.config[0].model_version_policy.specific.versions.append(4)
        error = _error(lambda: client.reload_config(bad))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "label 'broken' points to version 4, which is not available (never seen" in error.details
        assert states(client, MODEL) == {1: "AVAILABLE", 2: "AVAILABLE", 3: "AVAILABLE"}  # the new policy holds
        assert client.predict_with_version(MODEL, inputs, version_label="stable")[1] == 1  # old labels stay

        # reload to "latest": version 1 goes, and so do the labels
        latest = model_server_config_pb2.ModelServerConfig()
        model = latest.model_config_list.config.add(name=MODEL, base_path=str(base), model_platform="tensorflow")
        model.model_version_policy.latest.num_versions = 1
        client.reload_config(latest)
        assert states(client, MODEL) == {1: "END", 2: "END", 3: "AVAILABLE"}
        error = _error(lambda: client.predict(MODEL, inputs, version_label="stable"))
        assert error.code == grpc.StatusCode.NOT_FOUND and "no version label 'stable'" in error.details
    finally:
        client.close()
        handle.stop()


def _self_signed(tmp_path):
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"), cert_pem


def test_tls_serves_clients_that_trust_the_certificate(models, tmp_path):
    push_version(tmp_path / MODEL, 1, models["a"])
    cert, key, cert_pem = _self_signed(tmp_path)
    handle = start_server(model_name=MODEL, model_base_path=str(tmp_path / MODEL), poll_seconds=0,
                          ssl_cert=cert, ssl_key=key)
    inputs = sample_inputs(3)
    try:
        with PredictClient(handle.target, root_certificates=cert_pem) as client:
            np.testing.assert_allclose(client.predict(MODEL, inputs)["ctr"], in_process_ctr(models["a"], inputs),
                                       rtol=1e-6)
        with PredictClient(handle.target, timeout=5) as plaintext:
            assert _error(lambda: plaintext.status(MODEL)).code == grpc.StatusCode.UNAVAILABLE
    finally:
        handle.stop()


# ---- hardening: each class of failure a review found, with its status code, message and outcome ----

def _stub(served):
    return prediction_service_pb2_grpc.PredictionServiceStub(served["client"]._channel)


def _rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value


def _still_serves(served):
    outputs, version = served["client"].predict_with_version(MODEL, sample_inputs(3))
    assert version == 1 and outputs["ctr"].shape == (3,)


def _latest_config(base):
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(name=MODEL, base_path=str(base), model_platform="tensorflow")
    return config


def test_a_restart_or_reload_serves_the_newest_version_that_loads(models, tmp_path):
    """Three good versions and a corrupt newest one: version 3 serves, GetModelStatus shows 4's error."""
    bases = {}
    for name in ("restart", "reload", "broken"):
        bases[name] = tmp_path / name
        if name != "broken":
            for version, source in [(1, models["a"]), (2, models["a"]), (3, models["b"])]:
                push_version(bases[name], version, source)
        push_corrupt_version(bases[name], 4)
    inputs = sample_inputs(4, seed=8)
    handle = start_server(model_name=MODEL, model_base_path=str(bases["restart"]), poll_seconds=0,
                          max_num_load_retries=0)
    client = PredictClient(handle.target)
    try:
        for base in ("restart", "reload"):
            outputs, version = client.predict_with_version(MODEL, inputs)
            assert version == 3
            np.testing.assert_allclose(outputs["ctr"], in_process_ctr(models["b"], inputs), rtol=1e-6)
            failed = client.status(MODEL)
            assert [(s["version"], s["state"]) for s in failed] == [(3, "AVAILABLE"), (4, "END")]
            assert failed[1]["error_code"] != 0
            assert f"cannot load the SavedModel in {bases[base]}/4" in failed[1]["error_message"]
            assert "attempt 1 of 1" in failed[1]["error_message"]
            if base == "restart":
                client.reload_config(_latest_config(bases["reload"]))  # OK: version 3 serves
        # a reload to a base path where nothing loads says so, and the server stays up
        error = _error(lambda: client.reload_config(_latest_config(bases["broken"])))
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "config reloaded, but model 'toy' serves no version: 4: END: cannot load" in error.details
        assert _error(lambda: client.predict(MODEL, inputs)).code == grpc.StatusCode.NOT_FOUND
        assert states(client, MODEL) == {4: "END"}
    finally:
        client.close()
        handle.stop()


def test_broadcasts_and_oversized_inputs_are_refused_before_decoding(served):
    """A ~1 KB request broadcasting one value to [1, 2,000,000] once grew the server by 1.1 GB."""
    request = predict_request(1)
    request.inputs["seq_item_id"].ClearField("string_val")
    request.inputs["seq_item_id"].string_val.append(b"i")
    request.inputs["seq_item_id"].tensor_shape.dim[1].size = 2_000_000
    assert request.ByteSize() < 2000
    reset_peak_memory()
    before = memory_mib()
    error = _rpc_error(_stub(served).Predict, request)
    assert memory_mib(field="VmHWM") - before < 20  # nothing was allocated for it
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("input 'seq_item_id' has shape [1, 2000000]: 2,000,000 elements after broadcasting; "
            f"seq_item_id: DT_STRING [?, ?] may hold at most {MAX_CANDIDATES * 100:,} here") in error.details()
    # within the element budget, a broadcast 1 KB string still decodes to more than a message may carry
    request = predict_request(MAX_CANDIDATES)
    sequence = request.inputs["seq_item_id"]
    sequence.ClearField("string_val")
    sequence.string_val.append(b"x" * 1000)
    sequence.tensor_shape.dim[1].size = 100  # 64 x 100 elements: the most it may hold
    error = _rpc_error(_stub(served).Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(r"decodes to [0-9,]+ bytes \(broadcasts included\); this server accepts at most "
                     rf"{MAX_MESSAGE_BYTES:,} \(--max_message_bytes\)", error.details())
    # Classify: a feature list longer than a sequence may be would be padded into every example
    examples = [tf.train.Example() for _ in range(3)]
    examples[2].features.feature["seq_item_id"].bytes_list.value.extend([b"i"] * 101)
    error = _error(lambda: served["client"].classify(MODEL, examples))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details == ("example #3: feature 'seq_item_id' holds 101 values; this server accepts at "
                             "most 100 per feature (--max_sequence_length)")
    _still_serves(served)


def test_malformed_tensor_content_and_non_finite_floats_are_invalid_argument(served):
    request = predict_request(3)
    request.inputs["position"].ClearField("float_val")
    request.inputs["position"].tensor_content = b"\0" * 11
    error = _rpc_error(_stub(served).Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == ("input 'position': tensor_content holds 11 bytes, not a multiple of the 4 "
                               "bytes of one DT_FLOAT")
    for bad in (float("nan"), float("inf"), -float("inf")):
        request = predict_request(3)
        request.inputs["position"].float_val[2] = bad
        error = _rpc_error(_stub(served).Predict, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"input 'position' holds {bad} at flat index 2; inputs must be finite" == error.details()
    # Classify: the same rules on the tf.Examples' features
    examples = [tf.train.Example() for _ in range(3)]
    examples[1].features.feature["position"].float_list.value.append(float("nan"))
    error = _error(lambda: served["client"].classify(MODEL, examples))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details == "example #2: feature 'position' holds nan; inputs must be finite"
    _still_serves(served)


@pytest.mark.parametrize("part, code, expected", [
    ("signature_name", grpc.StatusCode.FAILED_PRECONDITION, "serving signature key 'sss"),
    ("name", grpc.StatusCode.NOT_FOUND, "model 'sss"),
    ("version_label", grpc.StatusCode.NOT_FOUND, "model 'toy' has no version label 'sss"),
    ("input", grpc.StatusCode.INVALID_ARGUMENT, "unknown input(s) ['sss"),
    ("output_filter", grpc.StatusCode.INVALID_ARGUMENT, "output_filter names ['sss"),
])
def test_long_user_strings_are_cut_in_error_messages(served, part, code, expected):
    """A 10 KB name once came back as RESOURCE_EXHAUSTED (metadata over 8 KiB) instead of the error."""
    long = "s" * 10_000
    request = predict_request(2)
    if part == "input":
        fill_tensor_proto(np.zeros(2, np.float32), request.inputs[long])
    elif part == "output_filter":
        request.output_filter.append(long)
    elif part == "name":
        request.model_spec.name = long
    else:
        setattr(request.model_spec, part, long)
    error = _rpc_error(_stub(served).Predict, request)
    assert error.code() == code
    assert expected + "s" * 97 + "'... (10000 characters)" in error.details()
    assert len(error.details()) < 1000
    _still_serves(served)
