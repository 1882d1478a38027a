"""Trainer: TFX's Trainer (GenericExecutor, a ``run_fn``) with the run date as an execution property of
its own.

The run date drives the full-retrain rule (msrec.models.training.incremental). Inside the Trainer's
JSON ``custom_config`` it would be fixed when the pipeline is built; as its own string property it can
be a RuntimeParameter that each Airflow or Kubeflow run fills in. The executor hands it to ``run_fn``
as ``custom_config["run_date"]``. The class keeps TFX's name, so its node id, its pipeline-root folder
and its MLMD execution type still read ``Trainer``.
"""
from __future__ import annotations

from typing import Any, Mapping

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.components.trainer import fn_args_utils
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

RUN_DATE_KEY = "run_date"


class TrainerSpec(standard_component_specs.TrainerSpec):
    PARAMETERS = {**standard_component_specs.TrainerSpec.PARAMETERS, RUN_DATE_KEY: ExecutionParameter(type=str)}


class Executor(trainer_executor.GenericExecutor):
    def _GetFnArgs(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
                   exec_properties: dict[str, Any]) -> fn_args_utils.FnArgs:
        fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
        fn_args.custom_config = {**(fn_args.custom_config or {}), RUN_DATE_KEY: exec_properties[RUN_DATE_KEY]}
        return fn_args


class Trainer(base_component.BaseComponent):
    """Trains ``run_fn`` on ``examples`` (raw: ``run_fn`` applies ``transform_graph``) for the run of
    ``run_date`` (YYYY-MM-DD, or a RuntimeParameter of type str)."""

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, run_date: str | data_types.RuntimeParameter, examples: types.BaseChannel,
                 transform_graph: types.BaseChannel, base_model: types.BaseChannel, run_fn: str,
                 train_args: trainer_pb2.TrainArgs, eval_args: trainer_pb2.EvalArgs,
                 custom_config: Mapping[str, Any]):
        super().__init__(spec=TrainerSpec(
            examples=examples, transform_graph=transform_graph, base_model=base_model, run_fn=run_fn,
            train_args=train_args, eval_args=eval_args, custom_config=json_utils.dumps(dict(custom_config)),
            run_date=run_date,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun)))
