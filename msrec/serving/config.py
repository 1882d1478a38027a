"""models.config (TF Serving's ModelServerConfig in text format): parsing, checks, version policy.

The same file drives ``msrec serve --model_config_file`` and the official
``tensorflow_model_server --model_config_file``; only the subset of it that TF Serving documents
for file-system models is accepted, everything else is refused with the entry named.
"""
from __future__ import annotations

import os
from typing import Iterable

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from msrec.serving.errors import ConfigError, clip, shown

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig


def parse_model_server_config(text: str, source: str = "<models.config>") -> ModelServerConfig:
    config = ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ConfigError(f"{source}: not a ModelServerConfig in text format: {e}") from e
    validate(config, source)
    return config


def load_model_server_config(path: str | os.PathLike[str]) -> ModelServerConfig:
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as e:
        raise ConfigError(f"cannot read the model config file: {e}") from e
    return parse_model_server_config(text, str(path))


def single_model_config(model_name: str, model_base_path: str) -> ModelServerConfig:
    """What ``--model_name`` / ``--model_base_path`` stand for: one model, latest version."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = model_base_path
    model.model_platform = "tensorflow"
    validate(config, "--model_name/--model_base_path")
    return config


def config_from_flags(model_name: str | None, model_base_path: str | None,
                      model_config_file: str | None) -> ModelServerConfig:
    """The three ways tensorflow_model_server is told what to serve, with its rules."""
    if model_config_file:
        if model_name or model_base_path:
            raise ConfigError("give either --model_config_file or --model_name/--model_base_path, "
                              "not both")
        return load_model_server_config(model_config_file)
    if not model_base_path:
        raise ConfigError("nothing to serve: give --model_base_path (and --model_name) or "
                          "--model_config_file")
    return single_model_config(model_name or "default", model_base_path)


def validate(config: ModelServerConfig, source: str) -> None:
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{source}: needs a model_config_list (custom_model_config is not supported)")
    seen: set[str] = set()
    for i, model in enumerate(config.model_config_list.config):
        where = f"{source}: config #{i + 1} ({clip(model.name) if model.name else 'unnamed'})"
        if not model.name:
            raise ConfigError(f"{where}: 'name' is required")
        if model.name in seen:
            raise ConfigError(f"{where}: model name {shown(model.name)} appears twice")
        seen.add(model.name)
        if not model.base_path:
            raise ConfigError(f"{where}: 'base_path' is required")
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"{where}: model_platform {shown(model.model_platform)} is not served here; "
                              f"only 'tensorflow' SavedModels are")
        policy = model.model_version_policy
        choice = policy.WhichOneof("policy_choice")
        if choice == "specific" and not policy.specific.versions:
            raise ConfigError(f"{where}: a 'specific' version policy needs at least one version")
        for label, version in model.version_labels.items():
            if not label:
                raise ConfigError(f"{where}: a version label needs a name")
            if choice == "specific" and version not in policy.specific.versions:
                raise ConfigError(f"{where}: label {shown(label)} points to version {version}, which the "
                                  f"'specific' policy does not serve {sorted(policy.specific.versions)}")


def desired_versions(model: ModelConfig, on_disk: Iterable[int], failed: Iterable[int] = ()) -> set[int]:
    """The versions the model's version policy wants served, out of those present on disk.

    ``failed``: versions whose last load attempt failed. Under ``latest`` they do not count toward
    ``num_versions``, so the newest *loadable* versions serve (a corrupt newest version must not
    leave the model with nothing); a failed version newer than those stays wanted, to be retried.
    """
    versions = sorted(set(on_disk))
    policy = model.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(versions)
    if choice == "specific":
        return set(versions) & set(policy.specific.versions)
    keep = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions else 1
    failed = set(failed)
    chosen = [v for v in versions if v not in failed][-keep:]
    return set(chosen) | {v for v in versions if v in failed and (not chosen or v > chosen[0])}


def describe_policy(model: ModelConfig) -> str:
    policy = model.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return "all"
    if choice == "specific":
        return f"specific {sorted(policy.specific.versions)}"
    return f"latest {policy.latest.num_versions or 1}"
