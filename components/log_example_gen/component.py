"""LogExampleGen: the custom TFX ExampleGen that ingests raw impression logs (msrec.ingest).

Outputs a standard ``Examples`` artifact (Split-train / -val / -eval, gzipped TFRecords of
tf.Example, span = days since the epoch of the run date) and a ``Quarantine`` artifact holding
quarantine-*.jsonl and counts.json. Beam runs with the pipeline's ``beam_pipeline_args``.
"""
from __future__ import annotations

from typing import Any

import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.types.system_artifacts import Dataset

from msrec.components.log_example_gen.beam_ingest import run_ingest
from msrec.components.log_example_gen.limits import IngestLimits
from msrec.components.log_example_gen.splits import SPLITS

# Counts copied onto both artifacts as custom properties, so MLMD queries can see them.
COUNT_PROPERTIES = ("read", "accepted", "quarantined", "duplicates", "lookback_quarantined")


class Quarantine(types.Artifact):
    """Malformed input lines (quarantine-*.jsonl: reason, detail, file, line_no, raw) and counts.json.

    No PROPERTIES: Kubeflow's v2 compiler gives a type outside TFX's standard ones an empty property
    schema and rejects any declared property, so the span is a custom property, like the counts."""

    TYPE_NAME = "msrec.Quarantine"
    TYPE_ANNOTATION = Dataset


class LogExampleGenSpec(ComponentSpec):
    PARAMETERS = {
        "logs_dir": ExecutionParameter(type=str),
        "date": ExecutionParameter(type=str),
        "window_days": ExecutionParameter(type=int),
        "feature_config": ExecutionParameter(type=str),
        "eval_days": ExecutionParameter(type=int),
        "val_days": ExecutionParameter(type=int),
        "limits": ExecutionParameter(type=str),  # IngestLimits as JSON
    }
    INPUTS: dict[str, ChannelParameter] = {}
    OUTPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "quarantine": ChannelParameter(type=Quarantine),
    }


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        quarantine = artifact_utils.get_single_instance(output_dict["quarantine"])
        counts = run_ingest(
            logs_dir=exec_properties["logs_dir"],
            date=exec_properties["date"],
            window_days=int(exec_properties["window_days"]),
            feature_config_path=exec_properties["feature_config"],
            eval_days=int(exec_properties["eval_days"]),
            val_days=int(exec_properties["val_days"]),
            limits=IngestLimits.from_json(exec_properties["limits"]),
            examples_dir=examples.uri,
            quarantine_dir=quarantine.uri,
            make_pipeline=self._make_beam_pipeline,
        )
        examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
        examples.span = counts["span"]
        quarantine.set_int_custom_property("span", counts["span"])
        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        for artifact in (examples, quarantine):
            for key in COUNT_PROPERTIES:
                artifact.set_int_custom_property(key, counts[key])
        for split, n in counts["splits"].items():
            examples.set_int_custom_property(f"num_{split}", n)


class LogExampleGen(base_beam_component.BaseBeamComponent):
    """Ingests the window of day folders ending on ``date`` from ``logs_dir``.

    ``feature_config``: path of the feature config YAML (msrec.schemas.feature_config) naming the columns.
    ``eval_days``, ``val_days``: the newest days that are the eval and val splits (splits.py).
    ``limits``: line and field sizes, and how duplicate impressions are found and handled.
    """

    SPEC_CLASS = LogExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, logs_dir: str, date: str, window_days: int, feature_config: str,
                 eval_days: int = 1, val_days: int = 1, limits: IngestLimits = IngestLimits()):
        spec = LogExampleGenSpec(
            logs_dir=logs_dir, date=date, window_days=window_days, feature_config=feature_config,
            eval_days=eval_days, val_days=val_days, limits=limits.to_json(),
            examples=types.Channel(type=standard_artifacts.Examples),
            quarantine=types.Channel(type=Quarantine),
        )
        super().__init__(spec=spec)
