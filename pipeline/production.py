"""The production model: the Model artifact that the AtomicPusher pushed last.

Not the newest *blessed* model: when a run dies between ScenarioBlessing and the push, that model
was never served, and the next run must neither warm-start from it nor gate against it. The
strategy follows MLMD lineage from the newest PushedModel marked ``pushed`` back to the Model its
pusher execution read.
"""
from __future__ import annotations

from typing import Optional

import ml_metadata as mlmd
from tfx import types
from tfx import v1 as tfx
from tfx.dsl.components.common import resolver
from tfx.types import standard_artifacts

MODEL, PUSHED_MODEL = "model", "pushed_model"
PUSHED, BLESSED = "pushed", "blessed"  # which model is production: pushed last, or blessed last (Kubeflow)
_PUSHED = "pushed"  # custom property the Pusher executor sets to 1 on a push, 0 otherwise


def pushed_model_source(store: mlmd.MetadataStore, pushed_model_id: int) -> int | None:
    """Id of the Model that the execution producing ``pushed_model_id`` took as its ``model`` input."""
    producers = [e.execution_id for e in store.get_events_by_artifact_ids([pushed_model_id])
                 if e.type == mlmd.proto.Event.OUTPUT]
    for event in store.get_events_by_execution_ids(producers):
        if (event.type == mlmd.proto.Event.INPUT and event.path.steps
                and event.path.steps[0].key == MODEL):
            return event.artifact_id
    return None


class LatestPushedModelStrategy(resolver.ResolverStrategy):
    """Resolves ``model`` to the Model behind the newest pushed PushedModel (nothing before a push)."""

    def resolve_artifacts(self, store: mlmd.MetadataStore, input_dict: dict[str, list[types.Artifact]]
                          ) -> Optional[dict[str, list[types.Artifact]]]:
        models = {m.id: m for m in input_dict[MODEL]}
        pushes = sorted((p for p in input_dict[PUSHED_MODEL] if p.get_int_custom_property(_PUSHED) == 1),
                        key=lambda p: p.id, reverse=True)
        for push in pushes:
            model_id = pushed_model_source(store, push.id)
            if model_id in models:
                return {MODEL: [models[model_id]], PUSHED_MODEL: [push]}
        return {MODEL: [], PUSHED_MODEL: []}


def production_resolver(rule: str = PUSHED) -> tfx.dsl.Resolver:
    """The production Model as the resolver's ``model`` output; ``rule`` PUSHED or BLESSED (above)."""
    if rule == BLESSED:
        return tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
            model=tfx.dsl.Channel(type=standard_artifacts.Model),
            model_blessing=tfx.dsl.Channel(type=standard_artifacts.ModelBlessing),
        ).with_id("production_model")
    if rule != PUSHED:
        raise ValueError(f"production rule must be {PUSHED!r} or {BLESSED!r}, got {rule!r}")
    return tfx.dsl.Resolver(
        strategy_class=LatestPushedModelStrategy,
        model=tfx.dsl.Channel(type=standard_artifacts.Model),
        pushed_model=tfx.dsl.Channel(type=standard_artifacts.PushedModel),
    ).with_id("production_model")
