"""AnomalyGate: stops the run when ExampleValidator found anomalies, with a report naming each
feature. TFX's ExampleValidator only records anomalies; nothing downstream reads them, so without
this gate a day with a broken column would still train and push."""

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies


class AnomaliesFound(RuntimeError):
    """The day's examples do not match the schema; the message is the readable report."""


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
def AnomalyGate(anomalies: InputArtifact[ExampleAnomalies], report_path: Parameter[str] = "") -> None:
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    lines = anomaly_report(anomalies.uri, splits)
    if report_path:
        os.makedirs(os.path.dirname(report_path), exist_ok=True)
        with open(report_path, "w") as fh:
            fh.write("\n".join(lines) + ("\n" if lines else ""))
    if lines:
        raise AnomaliesFound("the examples do not match the schema:\n  " + "\n  ".join(lines))
