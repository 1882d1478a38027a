"""Serving pieces without a server: tensor coding and checks, models.config, deploy/ files."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2, types_pb2

from msrec.serving import tfs_protos
from msrec.serving.config import (config_from_flags, desired_versions, load_model_server_config,
                                  parse_model_server_config)
from msrec.serving.errors import ConfigError, InvalidArgument, shown, shown_list, status_message
from msrec.serving.limits import DEFAULT_MAX_CANDIDATES, RequestLimits
from msrec.serving.tensors import InputSpec, check_request_tensors, non_finite, to_ndarray, to_tensor_proto
from msrec.serving.wire import InputDecoder
from support.serving import REPO

DEPLOY = REPO / "deploy"


# ---- tensors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("array", [
    np.array([0.5, -1.25, 3.0], np.float32),
    np.array([[1, 2], [3, 4]], np.int64),
    np.array([True, False]),
    np.array([[b"a", b""], [b"\xff\x00", b"ccc"]], dtype=object),
    np.array(["caf\u00e9", "x"]),
    np.zeros((0, 3), np.float32),
])
def test_arrays_round_trip_through_tensor_proto(array):
    proto = to_tensor_proto(array)
    decoded = to_ndarray(tensor_pb2.TensorProto.FromString(proto.SerializeToString()))
    expected = np.char.encode(array, "utf-8").astype(object) if array.dtype.kind == "U" else array
    assert decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, expected)


def test_tensor_content_is_decoded_in_bulk():
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=values.tobytes())
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=3)
    np.testing.assert_array_equal(to_ndarray(proto), values)


def test_a_single_value_is_broadcast_and_a_wrong_count_refused():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"web"])
    proto.tensor_shape.dim.add(size=3)
    assert to_ndarray(proto).tolist() == [b"web"] * 3
    proto.string_val.append(b"ios")
    with pytest.raises(InvalidArgument, match=r"'device': shape \[3\] needs 3 values but the tensor holds 2"):
        to_ndarray(proto, "device")


def test_unsupported_dtype_is_named():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_COMPLEX64)
    with pytest.raises(InvalidArgument, match="DT_COMPLEX64 is not supported"):
        to_ndarray(proto, "x")


SPECS = {"user_id": InputSpec("user_id", types_pb2.DT_STRING, (None,)),
         "position": InputSpec("position", types_pb2.DT_FLOAT, (None,)),
         "seq_item_id": InputSpec("seq_item_id", types_pb2.DT_STRING, (None, None)),
         "embedding": InputSpec("embedding", types_pb2.DT_FLOAT, (None, 4))}


def _request(n=3, **override):
    arrays = {"user_id": np.array([b"u"] * n, dtype=object), "position": np.ones(n, np.float32),
              "seq_item_id": np.full((n, 2), b"i", dtype=object), "embedding": np.zeros((n, 4), np.float32)}
    arrays.update(override)
    return {k: to_tensor_proto(v) for k, v in arrays.items()}


DECODER = InputDecoder(SPECS)


def _headers(protos):
    """The headers the server checks: the protos serialized and decoded as a request's are."""
    known = {k: v.SerializeToString() for k, v in protos.items() if k in SPECS}
    return {**DECODER.decode(known).headers, **{k: None for k in protos if k not in SPECS}}  # unknown: refused by name


LIMITS = RequestLimits(max_candidates=3, max_sequence_length=4)


_ALL_KINDS = {name: InputSpec(name, dtype, (None, 2)) for name, dtype in [
    ("f", types_pb2.DT_FLOAT), ("d", types_pb2.DT_DOUBLE), ("i", types_pb2.DT_INT32), ("l", types_pb2.DT_INT64),
    ("b", types_pb2.DT_BOOL), ("s", types_pb2.DT_STRING)]}


def _unpacked(proto: tensor_pb2.TensorProto) -> bytes:
    """``proto`` with its float_val written one tagged value at a time (proto2 style), which a
    parser must read as the packed list it equals."""
    values = list(proto.float_val)
    proto.ClearField("float_val")
    return proto.SerializeToString() + b"".join(b"\x2d" + np.float32(v).tobytes() for v in values)


@pytest.mark.parametrize("seed", range(5))
def test_the_decoder_reads_every_encoding_as_the_protobuf_library_does(seed):
    """Property: for random tensors of every dtype, in the value fields, in tensor_content, as one
    broadcast value and with unpacked floats, the in-graph decoding gives the values and header
    that parsing the TensorProto in Python gives."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 5))
    arrays = {"f": rng.normal(size=(n, 2)).astype(np.float32), "d": rng.normal(size=(n, 2)),
              "i": rng.integers(-2**31, 2**31, (n, 2)).astype(np.int32), "l": rng.integers(-2**62, 2**62, (n, 2)),
              "b": rng.random((n, 2)) < 0.5,
              "s": np.array([[bytes(rng.integers(0, 256, int(rng.integers(0, 6))).astype(np.uint8)) for _ in range(2)]
                             for _ in range(n)], dtype=object).reshape(n, 2)}
    protos = {k: to_tensor_proto(v) for k, v in arrays.items()}
    blobs = {k: p.SerializeToString() for k, p in protos.items()}
    variants = [blobs, {**blobs, "f": _unpacked(tensor_pb2.TensorProto.FromString(blobs["f"]))}]
    for k in ("f", "d", "i", "l", "b"):  # tensor_content instead of the value field
        content = tensor_pb2.TensorProto(dtype=protos[k].dtype, tensor_shape=protos[k].tensor_shape,
                                         tensor_content=arrays[k].tobytes())
        variants.append({**blobs, k: content.SerializeToString()})
    broadcast = _broadcast("s", types_pb2.DT_STRING, [n, 2], string_val=[b"one"])
    variants.append({**blobs, "s": broadcast.SerializeToString()})
    decoder = InputDecoder(_ALL_KINDS)
    for variant in variants:
        decoded = decoder.decode(variant)
        for k, blob in variant.items():
            proto = tensor_pb2.TensorProto.FromString(blob)
            header = decoded.headers[k]
            assert header.dtype == proto.dtype and header.dims == (n, 2) and not header.unknown_rank
            expected = to_ndarray(proto, k).reshape(-1)
            values = decoded.values[k].numpy()
            if values.size == expected.size:
                np.testing.assert_array_equal(values, expected)
            else:  # one value, broadcast when the model is called
                assert values.size == 1 and np.all(expected == values[0])
            if k == "s":
                assert header.string_bytes == sum(len(v) for v in values)


def test_a_signature_with_an_input_predict_cannot_carry_loads_and_refuses_by_dtype(tmp_path):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from msrec.serving.servable import Servable
    from msrec.serving.wire import parse_request

    class Half(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.half), tf.TensorSpec([None], tf.float32)])
        def score(self, a, b):
            return {"ctr": tf.cast(a, tf.float32) + b}

    module = Half()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.score})
    servable = Servable("half", 1, str(tmp_path / "1"))
    request = predict_pb2.PredictRequest()
    request.inputs["a"].CopyFrom(tf.make_tensor_proto(np.ones(2, np.float16)))
    request.inputs["b"].CopyFrom(tf.make_tensor_proto(np.ones(2, np.float32)))
    with pytest.raises(InvalidArgument, match="dtype DT_HALF is not supported"):
        servable.predict(parse_request(request.SerializeToString()), LIMITS)


def test_a_well_formed_request_passes_the_checks():
    check_request_tensors(_headers(_request()), SPECS, "serving_default", LIMITS)


@pytest.mark.parametrize("request_, message", [
    (_request(embedding=np.zeros((3, 5), np.float32)), r"'embedding' has shape \[3, 5\]; dimension 1 must be 4"),
    (_request(4), r"holds 4 candidates; this server accepts at most 3 per request \(--max_candidates\)"),
    (_request(position=np.ones(3, np.float64)), "'position' has dtype DT_DOUBLE; .* expects position: DT_FLOAT"),
])
def test_request_checks_say_what_is_wrong(request_, message):
    with pytest.raises(InvalidArgument, match=message):
        check_request_tensors(_headers(request_), SPECS, "serving_default", LIMITS)


def _broadcast(name, dtype, shape, **values):
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


@pytest.mark.parametrize("override, message", [
    # one value broadcast to [3, 5]: within 3 candidates, over 3 x 4 for a [?, ?] input
    ({"seq_item_id": _broadcast("s", types_pb2.DT_STRING, [3, 5], string_val=[b"i"])},
     r"'seq_item_id' has shape \[3, 5\]: 15 elements after broadcasting; seq_item_id: DT_STRING \[\?, \?\] "
     r"may hold at most 12 here"),
    ({"seq_item_id": _broadcast("s", types_pb2.DT_STRING, [3, 2_000_000], string_val=[b"i"])},
     r"6,000,000 elements after broadcasting; .* at most 12 here"),
    # within the element budget, but the broadcast string decodes to 3 x 4 x 10 bytes > 100
    ({"seq_item_id": _broadcast("s", types_pb2.DT_STRING, [3, 4], string_val=[b"x" * 10])},
     r"decodes to [0-9,]+ bytes \(broadcasts included\); this server accepts at most 100 \(--max_message_bytes\)"),
])
def test_elements_after_broadcasting_are_bounded_per_input_and_request(override, message):
    limits = RequestLimits(max_candidates=3, max_sequence_length=4, max_message_bytes=100)
    request_ = _request(**{k: np.zeros((3, 4), np.float32) for k in ["embedding"]})
    request_.update(override)
    with pytest.raises(InvalidArgument, match=message):
        check_request_tensors(_headers(request_), SPECS, "serving_default", limits)
    assert limits.max_elements((None, None)) == 12 and limits.max_elements((None, 4)) == 12
    assert limits.max_elements(None) == 12 and limits.max_elements((None,)) == 3


def test_tensor_content_of_a_wrong_length_and_non_finite_floats_are_refused():
    proto = _broadcast("p", types_pb2.DT_FLOAT, [3], tensor_content=b"\0" * 11)
    with pytest.raises(InvalidArgument, match=r"'position': tensor_content holds 11 bytes, not a multiple "
                                              r"of the 4 bytes of one DT_FLOAT"):
        check_request_tensors(_headers({**_request(), "position": proto}), SPECS, "serving_default", LIMITS)
    with pytest.raises(InvalidArgument, match="tensor_content holds 11 bytes"):
        to_ndarray(proto, "position")
    for bad in (np.nan, np.inf, -np.inf):
        for proto in (to_tensor_proto(np.array([1.0, bad, 2.0], np.float32)),
                      _broadcast("p", types_pb2.DT_FLOAT, [3], tensor_content=np.array([1.0, bad, 2.0], np.float32).tobytes())):
            decoded = DECODER.decode({k: v.SerializeToString() for k, v in {**_request(), "position": proto}.items()})
            headers, values = decoded.headers, decoded.values
            assert not headers["position"].finite and headers["embedding"].finite
            assert re.fullmatch(rf"input 'position' holds {bad} at flat index 1; inputs must be finite",
                                non_finite(headers["position"], values["position"].numpy()).message)
            assert np.isnan(to_ndarray(proto)[1]) == np.isnan(bad)  # responses may carry them


def test_user_strings_in_messages_are_cut():
    assert shown("abc") == "'abc'"
    assert shown("x" * 10_000) == "'" + "x" * 100 + "'... (10000 characters)"
    assert shown_list(["a" * 200] * 50) == "[" + ", ".join(["'" + "a" * 100 + "'... (200 characters)"] * 5) + ", ... 45 more]"
    request_ = _request(**{"n" * 10_000: np.zeros(3, np.float32)})
    with pytest.raises(InvalidArgument) as info:
        check_request_tensors(_headers(request_), SPECS, "s" * 10_000, LIMITS)
    assert len(info.value.message) < 1000
    assert "unknown input(s) ['" + "n" * 100 + "'... (10000 characters)]" in info.value.message
    # the last guard on a whole message counts UTF-8 bytes: gRPC percent-encodes each non-ASCII one
    cut = status_message("\u4e2d" * 5000)
    assert cut == "\u4e2d" * 666 + "... (15000 bytes)" and status_message("short") == "short"


# ---- models.config -----------------------------------------------------------------------------

def _model(policy: str = ""):
    return parse_model_server_config(
        f'model_config_list {{ config {{ name: "m" base_path: "/b" {policy} }} }}').model_config_list.config[0]


@pytest.mark.parametrize("policy, wanted", [
    ("", {9}),
    ("model_version_policy { latest { num_versions: 2 } }", {7, 9}),
    ("model_version_policy { all {} }", {1, 7, 9}),
    ("model_version_policy { specific { versions: 1 versions: 5 } }", {1}),
])
def test_version_policies_pick_from_the_versions_on_disk(policy, wanted):
    assert desired_versions(_model(policy), [7, 1, 9]) == wanted



def test_latest_counts_only_versions_that_load():
    latest, two = _model(), _model("model_version_policy { latest { num_versions: 2 } }")
    assert desired_versions(latest, [1, 2, 3, 4], failed=[4]) == {3, 4}  # 3 serves, 4 is retried
    assert desired_versions(latest, [1, 2, 3, 4], failed=[3, 4]) == {2, 3, 4}
    assert desired_versions(latest, [1, 2, 3, 4], failed=[2]) == {4}  # an older failure changes nothing
    assert desired_versions(two, [1, 2, 3, 4], failed=[4]) == {2, 3, 4}
    assert desired_versions(latest, [4], failed=[4]) == {4}
    assert desired_versions(_model("model_version_policy { specific { versions: 4 } }"), [3, 4], failed=[4]) == {4}

@pytest.mark.parametrize("text, message", [
    ('model_config_list { config { base_path: "/b" } }', "'name' is required"),
    ('model_config_list { config { name: "m" } }', "'base_path' is required"),
    ('model_config_list { config { name: "m" base_path: "/a" } config { name: "m" base_path: "/b" } }',
     "appears twice"),
    ('model_config_list { config { name: "m" base_path: "/b" model_platform: "pytorch" } }',
     "model_platform 'pytorch' is not served"),
    ('model_config_list { config { name: "m" base_path: "/b" model_version_policy { specific {} } } }',
     "needs at least one version"),
    ('model_config_list { config { name: "m" base_path: "/b" '
     'model_version_policy { specific { versions: 1 } } version_labels { key: "x" value: 2 } } }',
     "label 'x' points to version 2"),
    ('custom_model_config {}', "needs a model_config_list"),
    ('model_config_list { config { nme: "m" } }', "not a ModelServerConfig in text format"),
])
def test_bad_model_configs_name_the_problem(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_model_server_config(text)


def test_flags_stand_for_a_one_model_config():
    config = config_from_flags("sarnet", "/srv/sarnet", None)
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("sarnet", "/srv/sarnet", "tensorflow")
    assert config_from_flags(None, "/srv/x", None).model_config_list.config[0].name == "default"
    with pytest.raises(ConfigError, match="nothing to serve"):
        config_from_flags(None, None, None)
    with pytest.raises(ConfigError, match="not both"):
        config_from_flags("m", "/b", str(DEPLOY / "models.config"))


# ---- deploy/ -----------------------------------------------------------------------------------

def test_deploy_models_config_is_a_model_server_config():
    config = load_model_server_config(DEPLOY / "models.config")
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("sarnet", "/models/sarnet", "tensorflow")
    assert model.model_version_policy.latest.num_versions == 1


def test_deploy_monitoring_and_batching_parse_with_tf_serving_messages():
    monitoring = tfs_protos.parse_text((DEPLOY / "monitoring.config").read_text(), tfs_protos.MonitoringConfig)
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"
    batching = tfs_protos.parse_text((DEPLOY / "batching_parameters.txt").read_text(), tfs_protos.BatchingParameters)
    assert batching.max_batch_size.value == DEFAULT_MAX_CANDIDATES  # the same cap as msrec serve
    assert batching.enable_large_batch_splitting.value
    assert batching.max_execution_batch_size.value <= batching.max_batch_size.value
    assert not batching.pad_variable_length_inputs  # TF Serving would pad sequences with a real item
    with pytest.raises(text_format.ParseError, match="no field named"):
        tfs_protos.parse_text("max_batch_size { value: 1 }\nmax_batch: 2", tfs_protos.BatchingParameters)


def _flags(args):
    return dict(a.lstrip("-").split("=", 1) for a in args)


def _config_file_flags_exist(flags):
    for flag in ("model_config_file", "monitoring_config_file", "batching_parameters_file"):
        assert (DEPLOY / Path(flags[flag]).name).exists(), flag


def test_docker_compose_runs_the_official_image_on_the_pushed_layout():
    (compose,) = list(yaml.safe_load_all((DEPLOY / "docker-compose.yml").read_text()))
    service = compose["services"]["tf-serving"]
    assert service["image"] == "tensorflow/serving:2.16.1"
    assert service["entrypoint"] == ["tensorflow_model_server"]
    flags = _flags(service["command"])
    assert (flags["port"], flags["rest_api_port"]) == ("8500", "8501")
    _config_file_flags_exist(flags)
    assert any(v.endswith(":/models:ro") for v in service["volumes"])  # models.config's base path root
    assert [p.rsplit(":", 1)[1] for p in service["ports"]] == ["8500", "8501"]
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])
    assert "/v1/models/sarnet" in " ".join(service["healthcheck"]["test"])


def test_kubernetes_manifests_agree_with_each_other():
    docs = {}
    for name in ("deployment.yaml", "service.yaml", "hpa.yaml"):
        for doc in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()):
            docs[doc["kind"]] = doc
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "tensorflow/serving:2.16.1"
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    flags = _flags(container["args"])
    _config_file_flags_exist(flags)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/models"] == "models" and Path(flags["model_config_file"]).parent.as_posix() in mounts
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    assert "/v1/models/sarnet" in probe and "AVAILABLE" in probe
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]
    assert {p["port"] for p in service["spec"]["ports"]} == {8500, 8501}
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in container["resources"]["requests"]  # utilisation is measured against the request
