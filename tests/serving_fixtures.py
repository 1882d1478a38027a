"""Helpers for serving tests: a real toy SavedModel with the pushed-model contract, atomic pushes,
in-process reference predictions, waiting on a server's state.

``build_toy_model(path, bias=0.0)`` writes one version (see msrec/serving/toy_model.py); a
different ``bias`` gives different CTRs, so a version switch shows in the answers.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import grpc
import numpy as np
import tensorflow as tf

from msrec.features import FeatureConfig, load_feature_config
from msrec.serving.client import ServingClientError
from msrec.serving.toy_model import export_toy_model, random_features
from msrec.signatures import raw_input_specs

REPO = Path(__file__).resolve().parents[1]
FEATURE_CONFIG = REPO / "schemas" / "feature_config.yaml"


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
