"""The gates that stop a bad day before anything is trained, each writing its reasons to the run's
anomalies report. DayGate: right after ingestion, the day's counts (quarantine rate, split sizes,
day_checks.py). AnomalyGate: ExampleValidator's anomalies, naming each feature; TFX's
ExampleValidator only records anomalies and nothing downstream reads them, so without this gate a
day with a broken column would still train and push."""

import json
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies

from msrec.components.anomaly_gate.day_checks import DayLimits, day_problems
from msrec.components.log_example_gen.component import Quarantine
from msrec.components.log_example_gen.layout import COUNTS_FILE


class AnomaliesFound(RuntimeError):
    """The day's data is unfit to train on; the message is the readable report."""


ANOMALIES_TXT = "anomalies.txt"


def anomalies_path(reports_dir: str, date: str) -> str:
    """Where a run's gates write their reasons: ``<reports_dir>/<date>/anomalies.txt``."""
    return os.path.join(reports_dir, date, ANOMALIES_TXT)


def _write_report(reports_dir: str, date: str, lines: list[str]) -> None:
    # the folder and the date are two properties: the date may be known only when the run starts
    if reports_dir:
        path = anomalies_path(reports_dir, date)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write("\n".join(lines) + ("\n" if lines else ""))


def anomaly_report(anomalies_uri: str, splits: list[str]) -> list[str]:
    lines = []
    for split in splits:
        path = os.path.join(anomalies_uri, f"Split-{split}", "SchemaDiff.pb")
        if not os.path.exists(path):
            continue
        found = anomalies_pb2.Anomalies()
        with open(path, "rb") as fh:
            found.ParseFromString(fh.read())
        for feature, info in sorted(found.anomaly_info.items()):
            reasons = "; ".join(f"{r.short_description}: {r.description}" for r in info.reason) or info.description
            lines.append(f"[{split}] feature '{feature}': {reasons}")
        if found.HasField("dataset_anomaly_info"):
            lines.append(f"[{split}] dataset: {found.dataset_anomaly_info.description}")
    return lines


@component
def AnomalyGate(anomalies: InputArtifact[ExampleAnomalies], reports_dir: Parameter[str] = "",
                date: Parameter[str] = "") -> None:
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    lines = anomaly_report(anomalies.uri, splits)
    _write_report(reports_dir, date, lines)
    if lines:
        raise AnomaliesFound("the examples do not match the schema:\n  " + "\n  ".join(lines))


@component
def DayGate(quarantine: InputArtifact[Quarantine], limits: Parameter[str] = "", reports_dir: Parameter[str] = "",
            date: Parameter[str] = "") -> None:
    """Stops the run when the ingested day breaks ``limits`` (DayLimits as JSON)."""
    with open(os.path.join(quarantine.uri, COUNTS_FILE)) as fh:
        lines = day_problems(json.load(fh), DayLimits.from_json(limits))
    _write_report(reports_dir, date, lines)
    if lines:
        raise AnomaliesFound("the ingested day is unfit to train on: " + "; ".join(lines))
