"""The curated schema and feature config of the generated world, and the feature-config code.

The files are package data, read through ``importlib.resources``, so an installed wheel (or a remote
Beam worker) finds them wherever it lives; nothing locates them through the checkout.
"""
from __future__ import annotations

from importlib import resources


def resource_path(name: str) -> str:
    """Filesystem path of one of this package's data files (``schema.pbtxt``, ``feature_config.yaml``)."""
    path = resources.files(__name__) / name
    if not path.is_file():
        raise FileNotFoundError(f"msrec.schemas has no data file {name!r}")
    return str(path)


def default_schema() -> str:
    """The curated TFDV schema of the generator's world."""
    return resource_path("schema.pbtxt")


def default_feature_config() -> str:
    """The generator's feature config, also the documented example of the format."""
    return resource_path("feature_config.yaml")
