"""What a run did, read back from ML Metadata: its executions' output artifacts and wall times."""
from __future__ import annotations

import os
from typing import Any

from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx

from msrec.pipeline.pipeline import DailyRun


def store(run: DailyRun) -> metadata_store.MetadataStore:
    return metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(run.metadata_path))


def max_execution_id(run: DailyRun) -> int:
    if not os.path.exists(run.metadata_path):
        return 0
    return max((e.id for e in store(run).get_executions()), default=0)


def run_outputs(run: DailyRun, after_execution_id: int) -> dict[str, Any]:
    """Output artifacts and wall times of the executions of this run (ids above the mark: a local run
    is the only writer of its workdir's store while it runs, so they are exactly this run's)."""
    mlmd = store(run)
    return _outputs(mlmd, [e for e in mlmd.get_executions() if e.id > after_execution_id])


def orchestrated_run_outputs(run: DailyRun, run_id: str) -> dict[str, Any]:
    """The same for the run ``run_id`` of an orchestrator (Airflow): the executions in its MLMD run
    context, ``<pipeline name>.<run id>``."""
    mlmd = store(run)
    context = mlmd.get_context_by_type_and_name("run", f"{run.pipeline_name}.{run_id}")
    executions = mlmd.get_executions_by_context(context.id) if context is not None else []
    return _outputs(mlmd, sorted(executions, key=lambda e: e.id))


def _outputs(mlmd: metadata_store.MetadataStore, executions: list[Any]) -> dict[str, Any]:
    types = {t.id: t.name for t in mlmd.get_execution_types()}
    outputs: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    events = mlmd.get_events_by_execution_ids([e.id for e in executions])
    artifacts = {a.id: a for a in mlmd.get_artifacts_by_id([ev.artifact_id for ev in events])}
    by_exec: dict[int, str] = {}
    for e in executions:
        name = types[e.type_id].split(".")[-1]
        by_exec[e.id] = name
        timings[name] = (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000.0
    for ev in events:
        if ev.type != ev.OUTPUT:
            continue
        key = ev.path.steps[0].key if ev.path.steps else "output"
        outputs.setdefault(by_exec[ev.execution_id], {})[key] = artifacts[ev.artifact_id]
    return {"outputs": outputs, "timings": timings}
