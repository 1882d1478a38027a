"""ScenarioBlessing: turns the Evaluator's per-scenario metrics into a ModelBlessing with a reason.

The artifact carries the same custom properties as the Evaluator's own blessing (``blessed``,
``current_model_id`` ...), so TFX's Pusher (and msrec's AtomicPusher) read it unchanged, plus
``blessing.json`` with the decision, its reason and the metrics of both models.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from msrec.components.scenario_blessing.rule import BASELINE, CANDIDATE, BlessingRule, decide, read_metrics

BLESSING_JSON = "blessing.json"


class ScenarioBlessingSpec(ComponentSpec):
    PARAMETERS = {
        "auc_floor": ExecutionParameter(type=float),
        "auc_delta": ExecutionParameter(type=float),
        "min_slice_size": ExecutionParameter(type=int),
        "noise_z": ExecutionParameter(type=float),
    }
    INPUTS = {
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    # not "blessing": the legacy launchers (Airflow) name an artifact by output key and run id, and the
    # Evaluator in the same pipeline has a "blessing" output already
    OUTPUTS = {"scenario_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing)}


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        evaluation = artifact_utils.get_single_instance(input_dict["evaluation"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        baseline_model = (input_dict.get("baseline_model") or [None])[0]
        blessing = artifact_utils.get_single_instance(output_dict["scenario_blessing"])
        rule = BlessingRule(float(exec_properties["auc_floor"]), float(exec_properties["auc_delta"]),
                            int(exec_properties["min_slice_size"]), float(exec_properties["noise_z"]))
        candidate = read_metrics(evaluation.uri, CANDIDATE)
        baseline = read_metrics(evaluation.uri, BASELINE) if baseline_model is not None else None
        blessed, reason = decide(candidate, baseline, rule)

        blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
        if baseline_model is not None:
            blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY,
                                                baseline_model.uri)
            blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline_model.id)
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                         constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE)
        blessing.set_string_custom_property("reason", reason)
        os.makedirs(blessing.uri, exist_ok=True)
        marker = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
        open(os.path.join(blessing.uri, marker), "w").close()
        with open(os.path.join(blessing.uri, BLESSING_JSON), "w") as fh:
            json.dump({"blessed": blessed, "reason": reason, "rule": dataclasses.asdict(rule),
                       "candidate": candidate, "baseline": baseline}, fh, indent=1)


class ScenarioBlessing(base_component.BaseComponent):
    SPEC_CLASS = ScenarioBlessingSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, evaluation: types.BaseChannel, model: types.BaseChannel,
                 baseline_model: types.BaseChannel | None, rule: BlessingRule):
        super().__init__(spec=ScenarioBlessingSpec(
            evaluation=evaluation, model=model, baseline_model=baseline_model,
            auc_floor=float(rule.auc_floor), auc_delta=float(rule.auc_delta), min_slice_size=int(rule.min_slice_size),
            noise_z=float(rule.noise_z),
            scenario_blessing=types.Channel(type=standard_artifacts.ModelBlessing)))


def load_blessing(blessing_uri: str) -> dict[str, Any]:
    with open(os.path.join(blessing_uri, BLESSING_JSON)) as fh:
        return json.load(fh)
