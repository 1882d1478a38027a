"""Helpers for serving tests: a real toy SavedModel with the pushed-model contract, atomic pushes,
in-process reference predictions, waiting on a server's state.

``build_toy_model(path, bias=0.0)`` writes one version (see msrec/serving/toy_model.py); a
different ``bias`` gives different CTRs, so a version switch shows in the answers.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from msrec.schemas import default_feature_config
from msrec.schemas.feature_config import FeatureConfig, load_feature_config
from msrec.serving.client import PredictClient, ServingClientError
from msrec.serving.server import start_server
from msrec.serving.tensors import fill_tensor_proto
from msrec.serving.toy_model import export_toy_model, random_features
from msrec.signatures import raw_input_specs

REPO = Path(__file__).resolve().parents[2]
FEATURE_CONFIG = default_feature_config()


def feature_config() -> FeatureConfig:
    return load_feature_config(FEATURE_CONFIG)


def build_toy_model(path: str | os.PathLike[str], bias: float = 0.0, config: FeatureConfig | None = None,
                    warmup_requests: int = 3) -> str:
    """One toy model version at ``path`` (written beside and renamed into place)."""
    return export_toy_model(str(path), config or feature_config(), bias=bias, warmup_requests=warmup_requests)


def push_version(base_path: str | os.PathLike[str], version: int, source: str | os.PathLike[str]) -> str:
    """Publish a copy of ``source`` as ``base_path/version`` the way the Pusher does: atomically."""
    os.makedirs(base_path, exist_ok=True)
    staging = os.path.join(base_path, f".push-{version}-{uuid.uuid4().hex}")
    shutil.copytree(source, staging)
    target = os.path.join(base_path, str(version))
    os.rename(staging, target)
    return target


def push_corrupt_version(base_path: str | os.PathLike[str], version: int) -> str:
    """A version folder whose saved_model.pb is garbage (what a truncated upload looks like)."""
    staging = os.path.join(base_path, f".push-{version}-{uuid.uuid4().hex}")
    os.makedirs(os.path.join(staging, "variables"))
    with open(os.path.join(staging, "saved_model.pb"), "wb") as fh:
        fh.write(b"\x08\x96\x01 this is not a SavedModel \xff\xfe")
    target = os.path.join(base_path, str(version))
    os.rename(staging, target)
    return target


def sample_inputs(n: int, seed: int = 0, config: FeatureConfig | None = None) -> dict[str, np.ndarray]:
    return random_features(raw_input_specs(config or feature_config()), n, seed=seed)


def in_process_ctr(export_dir: str | os.PathLike[str], inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The reference answer: the SavedModel's serving_default called in this process."""
    fn = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    return fn(**{k: tf.constant(v, specs[k].dtype) for k, v in inputs.items()})["ctr"].numpy()


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def states(client: Any, model: str) -> dict[int, str]:
    """version -> state name; {} while the server knows no version of the model."""
    try:
        return {s["version"]: s["state"] for s in client.status(model)}
    except ServingClientError as e:
        if e.code == grpc.StatusCode.NOT_FOUND and "has no versions yet" in e.details:
            return {}
        raise


def check_swap_fails_no_request(base: Path, model: str, first: str, second: str,
                                inputs: Mapping[str, np.ndarray]) -> None:
    """Three clients loop Predict while ``second`` is pushed over ``first``: no request fails, every
    answer equals its version's in-process answer, and requests sent after the swap get ``second``."""
    push_version(base, 1, first)
    handle = start_server(model_name=model, model_base_path=str(base), poll_seconds=0.1)
    expected = {1: in_process_ctr(first, inputs), 2: in_process_ctr(second, inputs)}
    assert not np.allclose(expected[1], expected[2]), "the two versions must answer differently"
    answers: list[tuple[float, int, np.ndarray]] = []
    errors: list[ServingClientError] = []
    stop = threading.Event()

    def loop() -> None:
        with PredictClient(handle.target) as client:
            for _ in range(20_000):  # bounded; stopped by the test long before
                if stop.is_set():
                    return
                started = time.monotonic()
                try:
                    outputs, version = client.predict_with_version(model, inputs)
                    answers.append((started, version, outputs["ctr"]))
                except ServingClientError as e:
                    errors.append(e)

    threads = [threading.Thread(target=loop) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(answers) >= 10, what="requests to version 1")
        push_version(base, 2, second)
        with PredictClient(handle.target) as client:
            wait_for(lambda: states(client, model) == {1: "END", 2: "AVAILABLE"}, what="the swap")
        swapped_at = time.monotonic()
        count = len(answers)
        wait_for(lambda: len(answers) >= count + 10, what="requests after the swap")
    finally:
        stop.set()
        for t in threads:
            t.join()
        handle.stop()
    assert errors == []
    assert {version for _, version, _ in answers} == {1, 2}
    for _, version, ctr in answers:
        np.testing.assert_allclose(ctr, expected[version], rtol=1e-5, atol=1e-7)
    assert {version for started, version, _ in answers if started > swapped_at} == {2}


def check_corrupt_version_leaves_the_old_one(base: Path, model: str, first: str, later: str,
                                             inputs: Mapping[str, np.ndarray]) -> None:
    """A corrupt version 2 fails to load with the error in GetModelStatus while version 1 keeps
    answering; the next good push (version 3) replaces version 1."""
    push_version(base, 1, first)
    handle = start_server(model_name=model, model_base_path=str(base), poll_seconds=0.1, max_num_load_retries=1)
    client = PredictClient(handle.target)
    try:
        push_corrupt_version(base, 2)
        wait_for(lambda: states(client, model).get(2) == "END", what="version 2 to fail")
        failed = client.status(model, version=2)[0]
        assert failed["error_code"] != 0
        assert "cannot load the SavedModel" in failed["error_message"]
        assert "attempt 2 of 2" in failed["error_message"]  # one retry, then it gave up
        assert states(client, model) == {1: "AVAILABLE", 2: "END"}
        outputs, version = client.predict_with_version(model, inputs)
        assert version == 1
        np.testing.assert_allclose(outputs["ctr"], in_process_ctr(first, inputs), rtol=1e-5, atol=1e-7)
        push_version(base, 3, later)
        wait_for(lambda: states(client, model) == {1: "END", 2: "END", 3: "AVAILABLE"}, what="version 3")
        assert client.predict_with_version(model, inputs)[1] == 3
    finally:
        client.close()
        handle.stop()


def memory_mib(pid: int | str = "self", field: str = "VmRSS") -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak) of a process, from /proc/<pid>/status, in MiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def reset_peak_memory(pid: int | str = "self") -> None:
    """Start a new VmHWM measurement (Linux: writing 5 to clear_refs resets the peak)."""
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")


def predict_request(n: int, model: str = "toy", seed: int = 0) -> predict_pb2.PredictRequest:
    """A valid PredictRequest for ``n`` toy candidates, for tests that then break one part of it."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for name, values in sample_inputs(n, seed=seed).items():
        fill_tensor_proto(values, request.inputs[name])
    return request
