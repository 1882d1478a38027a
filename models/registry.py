"""The model registry: ``build_model(name, spec, hparams)``.

Adding a model = one module that decorates its class with ``@register("name")`` and declares
``DEFAULT_HPARAMS``, plus one line in ``MODEL_MODULES`` below. Modules are imported only when
their model is built, so listing the models does not import TensorFlow.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar

from msrec.schemas.feature_config import FeatureSpec

if TYPE_CHECKING:
    import tensorflow as tf

# name -> module that registers it.
MODEL_MODULES: dict[str, str] = {
    "sarnet": "msrec.models.papers.sarnet",
    "mmoe": "msrec.models.baselines.mmoe",
    "shared_bottom": "msrec.models.baselines.shared_bottom",
    "mix": "msrec.models.baselines.mix",
    "hierrec": "msrec.models.papers.hierrec",
    "sfpnet": "msrec.models.papers.sfpnet",
    "ple": "msrec.models.baselines.ple",
    "cgc": "msrec.models.baselines.ple",
    "hmdn_mmoe": "msrec.models.papers.hmdn",
    "hmdn_pepnet": "msrec.models.papers.hmdn",
    "optmsm": "msrec.models.papers.optmsm",
    "star": "msrec.models.baselines.star",
    "pepnet": "msrec.models.baselines.pepnet",
    "adasparse": "msrec.models.baselines.adasparse",
    "single": "msrec.models.baselines.single_dnn",
}

# Hyper-parameters every model understands; a model's DEFAULT_HPARAMS override these.
COMMON_HPARAMS: dict[str, Any] = {
    "embedding_dim": 16,
    "numeric": "project",  # numeric features: "project" to embedding_dim or "concat" as is
    # L2 on every embedding table; off by default: it pulls item ids toward the shared features, and the
    # FC of intervened items, which comes from the item's own predicted CTR, drifted to 1 with 1e-4.
    # Small logs gain from 1e-4 (README, "Splits and model selection").
    "embeddings_l2": 0.0,
    "attention_units": (64, 32),  # the DIN target attention that pools the behaviour sequence
    "learning_rate": 3e-3,  # read by the trainer (Adam): see msrec.models.training.loop
    # click rate per scenario index the output starts from (base.MultiScenarioModel.click_probability);
    # the trainer fills it from the training data, empty = start from 0.5
    "prior_ctr": (),
}

_REGISTRY: dict[str, type] = {}
_T = TypeVar("_T", bound=type)


class UnknownModelError(ValueError):
    """The model name is not in the registry; the message lists the known ones."""


def register(name: str) -> Callable[[_T], _T]:
    """Class decorator: make a model class buildable as ``name``."""

    def wrap(cls: _T) -> _T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        if not isinstance(getattr(cls, "DEFAULT_HPARAMS", None), Mapping):
            raise TypeError(f"{cls.__qualname__} must declare DEFAULT_HPARAMS (a mapping)")
        _REGISTRY[name] = cls
        return cls

    return wrap


def model_names() -> list[str]:
    """Every model name that :func:`build_model` accepts."""
    return sorted(set(MODEL_MODULES) | set(_REGISTRY))


def _model_class(name: str) -> type:
    if name not in _REGISTRY:
        if name not in MODEL_MODULES:
            raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
        importlib.import_module(MODEL_MODULES[name])
        if name not in _REGISTRY:
            raise UnknownModelError(f"module {MODEL_MODULES[name]} did not register model {name!r}")
    return _REGISTRY[name]


def default_hparams(name: str) -> dict[str, Any]:
    """The hyper-parameters ``name`` is built with when none are overridden."""
    return {**COMMON_HPARAMS, **_model_class(name).DEFAULT_HPARAMS}


def _coerce(name: str, key: str, default: Any, value: Any) -> Any:
    """Check an override against the default's type (a typo'd or mistyped hparam fails loudly)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"model {name!r}: hparam {key!r} must be a bool, got {value!r}")
        return value
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, float) and numeric:
        return float(value)
    if isinstance(default, int) and numeric and float(value).is_integer():
        return int(value)
    if isinstance(default, (tuple, list)) and isinstance(value, (tuple, list)):
        return tuple(value)
    if isinstance(default, str) and isinstance(value, str):
        return value
    raise ValueError(f"model {name!r}: hparam {key!r} expects {type(default).__name__} "
                     f"like {default!r}, got {value!r}")


def merge_hparams(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``name`` with ``overrides`` applied; unknown keys are an error."""
    merged = default_hparams(name)
    unknown = sorted(set(overrides or ()) - set(merged))
    if unknown:
        raise ValueError(f"model {name!r} has no hparams {unknown}; it knows {sorted(merged)}")
    for key, value in (overrides or {}).items():
        merged[key] = _coerce(name, key, merged[key], value)
    return merged


def build_model(name: str, spec: FeatureSpec, hparams: Mapping[str, Any] | None = None) -> "tf.keras.Model":
    """Build the registered model ``name`` (a ``tf.keras.Model``) for ``spec``."""
    cls = _model_class(name)
    return cls(spec, merge_hparams(name, hparams), name=name)
