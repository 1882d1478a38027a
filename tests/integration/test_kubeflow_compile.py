"""``msrec compile kubeflow``: the daily pipeline compiles offline to one Kubeflow Pipelines v2 spec
whose runtime parameter ``date`` reaches every component that needs the day, with the image and the
Beam arguments on every task."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import json
import os
import re
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from msrec.cli import build_parser
from msrec.pipeline import daily
from msrec.pipeline.kubeflow_runner import write_spec
from msrec.pipeline.pipeline import create_pipeline
from support.ingest import write_fixture

IMAGE = "registry.example/msrec:test"
BEAM_ARGS = ["--runner=FlinkRunner", "--flink_master=flink:8081"]
PRODUCTION = "production_model"  # the resolver node: two query tasks on Kubeflow


def _compile(argv: list[str]) -> int:
    args = build_parser().parse_args(["compile", "kubeflow", *argv])
    return args.func(args)  # not cli.main: its log redirect would hold this process's descriptors


def test_the_daily_pipeline_compiles_to_one_spec_for_every_date(tmp_path: Any, capsys: Any) -> None:
    fx = write_fixture(str(tmp_path), ["2026-11-02"], per_day=20)
    out, workdir = str(tmp_path / "spec.json"), str(tmp_path / "work")
    assert _compile(["--out", out, "--image", IMAGE, "--logs", fx.logs, "--workdir", workdir,
                     "--beam-pipeline-args", " ".join(BEAM_ARGS), "--workers", "2", "--max-epochs", "3",
                     "--incremental-lr-scale", "0.25"]) == 0
    assert f"wrote {out}: pipeline msrec-sarnet" in capsys.readouterr().out

    with open(out) as fh:
        text = fh.read()
    spec_dict = json.loads(text)
    spec = json_format.ParseDict(spec_dict, pipeline_spec_pb2.PipelineSpec())  # strict: no unknown field
    assert spec.schema_version == "2.1.0" and spec.pipeline_info.name == "msrec-sarnet"
    assert spec.default_pipeline_root == os.path.join(workdir, "pipeline", "sarnet")
    write_spec(spec_dict, str(tmp_path / "spec.yaml"))  # the name kfp's client loads
    with open(tmp_path / "spec.yaml") as fh:
        assert yaml.safe_load(fh) == spec_dict

    # every component of the local daily pipeline is a task; production's resolver is two queries
    local = create_pipeline(daily.make_run(fx.logs, "2026-11-02", str(tmp_path / "local")))
    expected = {c.id for c in local.components} - {PRODUCTION}
    expected |= {f"{PRODUCTION}-model-blessing-resolver", f"{PRODUCTION}-model-resolver"}
    tasks = spec.root.dag.tasks
    assert set(tasks) == expected and len(expected) == 15

    # the date: a required string parameter of the pipeline, never a value compiled in
    params = spec.root.input_definitions.parameters
    assert list(params) == ["date"] and params["date"].parameter_type == pipeline_spec_pb2.ParameterType.STRING
    assert not params["date"].is_optional and not params["date"].HasField("default_value")
    takes_date = {name: key for name, t in tasks.items() for key, p in t.inputs.parameters.items()
                  if p.component_input_parameter == "date"}
    assert takes_date == {"LogExampleGen": "date", "DayGate": "date", "AnomalyGate": "date", "Trainer": "run_date"}
    assert not re.search(r"20\d\d-\d\d-\d\d", text)
    # the run's other options are compiled in
    trainer_config = json.loads(tasks["Trainer"].inputs.parameters["custom_config"].runtime_value.constant.string_value)
    assert trainer_config["workers"] == 2 and trainer_config["max_epochs"] == 3 and trainer_config["model"] == "sarnet"
    assert trainer_config["incremental_lr_scale"] == 0.25

    # production: the newest blessed Model (the queries the v2 compiler makes of LatestBlessedModelStrategy)
    executors = spec_dict["deploymentSpec"]["executors"]  # a Struct in the proto: read the JSON
    resolver = executors[f"{PRODUCTION}-model-blessing-resolver_executor"]["resolver"]
    assert "metadata.blessed.number_value=1" in resolver["outputArtifactQueries"]["model_blessing"]["filter"]
    for consumer in ("FairnessGen", "Trainer", "Evaluator", "ScenarioBlessing"):
        assert f"{PRODUCTION}-model-resolver" in tasks[consumer].dependent_tasks

    # the image and the Beam arguments on every task that runs a container
    containers = {name: e["container"] for name, e in executors.items() if "container" in e}
    assert len(containers) == len(expected) - 2
    for name, container in containers.items():
        assert container["image"] == IMAGE, name
        assert container["args"][-len(BEAM_ARGS):] == BEAM_ARGS, name
    assert containers["LogExampleGen_executor"]["args"][:2] == [
        "--executor_class_path", "msrec.components.log_example_gen.component.Executor"]


def test_a_missing_feature_config_is_a_clear_error(tmp_path: Any) -> None:
    with pytest.raises(SystemExit, match="msrec: feature config not found: .*--feature-config"):
        _compile(["--out", str(tmp_path / "spec.json"), "--logs", str(tmp_path), "--workdir", str(tmp_path / "w")])
    assert not os.path.exists(tmp_path / "spec.json")


@pytest.mark.parametrize("stop_after, materialized", [
    ("", []),  # the Trainer runs FairnessGen's examples through the Transform graph itself
    ("transform", ["train", "val", "eval"]),  # the benchmarks that stop at Transform train and evaluate on it
])
def test_transform_writes_examples_only_for_a_run_that_stops_there(tmp_path: Any, stop_after: str,
                                                                   materialized: list[str]) -> None:
    fx = write_fixture(str(tmp_path), ["2026-11-02"], per_day=20)
    graph = create_pipeline(daily.make_run(fx.logs, "2026-11-02", str(tmp_path / "w"), stop_after=stop_after))
    [transform] = [c for c in graph.components if c.id == "Transform"]
    splits = json.loads(transform.exec_properties["splits_config"])
    assert splits.get("analyze") == ["train"] and splits.get("transform", []) == materialized
    assert ("transformed_examples" in transform.outputs) == bool(materialized)
    trainers = [c for c in graph.components if c.id == "Trainer"]
    if trainers:  # the Trainer reads the examples FairnessGen wrote, with the Transform graph beside them
        [fairness] = [c for c in graph.components if c.id == "FairnessGen"]
        assert trainers[0].inputs["examples"] is fairness.outputs["weighted_examples"]
