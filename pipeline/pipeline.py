"""Assembly of the daily TFX pipeline."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence, Union

import msrec  # noqa: F401
from tfx import v1 as tfx

from msrec.components.anomaly_gate.component import AnomalyGate, DayGate, anomalies_path
from msrec.components.anomaly_gate.day_checks import DayLimits
from msrec.components.fairness_gen.component import FairnessGen
from msrec.components.log_example_gen.component import LogExampleGen
from msrec.components.log_example_gen.limits import IngestLimits
from msrec.components.atomic_pusher.component import AtomicPusher
from msrec.components.scenario_blessing.component import ScenarioBlessing
from msrec.components.scenario_blessing.rule import BlessingRule
from msrec.components.schema_projection.component import SchemaProjection
from msrec.components.statistics_gen.component import SampledStatisticsGen
from msrec.components.trainer.component import Trainer
from msrec.schemas.feature_config import FeatureConfig
from msrec.schemas.schema_gen import write_schema
from msrec.models.training import loop
from msrec.models.training.preprocessing import FEATURE_CONFIG_KEY, SCENARIO_VOCAB_KEY
from msrec.models.training.incremental import FULL_RETRAIN_DAYS
from msrec.pipeline import evaluation
from msrec.pipeline.local_runner import DEFAULT_PROCESSES
from msrec.pipeline.production import PUSHED, production_resolver

# A date that each run of a pipeline built once fills in (Airflow, Kubeflow); the local runner passes a string.
RunDate = Union[str, tfx.dsl.experimental.RuntimeParameter]
DATE_PARAMETER = "date"


def date_parameter(default: str | None = None) -> tfx.dsl.experimental.RuntimeParameter:
    """The run date as the pipeline's runtime parameter ``date`` (None: no default, every run names it).
    Every component that needs it takes it as a string execution property of its own, so an orchestrator
    can substitute it whole."""
    return tfx.dsl.experimental.RuntimeParameter(name=DATE_PARAMETER, ptype=str, default=default)


@dataclasses.dataclass
class DailyRun:
    """Everything one day's pipeline needs. ``date``: YYYY-MM-DD, or ``date_parameter(...)`` for a
    pipeline built once and run for many dates (then the per-date paths below are unknown)."""

    logs_dir: str
    date: RunDate
    workdir: str
    feature_config_path: str
    feature_config: FeatureConfig
    scenario_vocabulary: list[str]
    model: str = "sarnet"
    window: int = 2
    eval_days: int = 1  # the newest days of the window that are the eval split (LogExampleGen's splits.py)
    val_days: int = 1  # the days before them, the val split the Trainer selects its epoch on
    max_epochs: int = loop.MAX_EPOCHS
    patience: int = loop.PATIENCE
    batch_size: int = loop.BATCH_SIZE
    incremental_lr_scale: float = loop.INCREMENTAL_LR_SCALE  # an incremental run's share of the learning rate
    workers: int = 1  # training processes (MultiWorkerMirroredStrategy; models/training/workers.py)
    component_processes: int = DEFAULT_PROCESSES  # components at the same time in a local run
    hparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    full_retrain_days: int = FULL_RETRAIN_DAYS  # a full retrain once production's last one is this old
    auc_floor: float = 0.55
    auc_delta: float = 0.01
    min_slice_size: int = 1000
    auc_noise_z: float = 1.0
    seed: int = 0
    schema_path: str | None = None  # a TFDV schema the user curated; None: generated from the feature config
    # none: Beam's DirectRunner in process. TFX packages its own installation for remote Beam workers
    # whenever arguments are given without a dependency flag (--extra_packages, --setup_file ...): a copy
    # of ~50 MB and a second per Beam component, of no use to an in-process runner
    beam_pipeline_args: Sequence[str] = ()
    ingest_limits: IngestLimits = dataclasses.field(default_factory=IngestLimits)  # sizes, duplicates
    day_limits: DayLimits = dataclasses.field(default_factory=DayLimits)  # checked right after ingestion
    # "validation" or "transform" ends the run there: benchmarks that only need the examples
    stop_after: str = ""
    production: str = PUSHED  # production.py: the model pushed last; BLESSED where Kubeflow compiles the run

    @property
    def pipeline_name(self) -> str:
        return f"msrec_{self.model}"

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.workdir, "pipeline", self.model)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.workdir, "metadata.sqlite")

    @property
    def reports_dir(self) -> str:
        return os.path.join(self.workdir, "reports")

    @property
    def report_dir(self) -> str:
        return os.path.join(self.reports_dir, self.date)

    @property
    def generated_schema_path(self) -> str:
        # the same for every date: the feature config alone decides it (ImportSchemaGen copies it per run)
        return os.path.join(self.workdir, "schema.pbtxt")

    @property
    def anomalies_path(self) -> str:
        return anomalies_path(self.reports_dir, self.date)

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.workdir, "serving", self.model)


def create_pipeline(run: DailyRun) -> tfx.dsl.Pipeline:
    example_gen = LogExampleGen(logs_dir=run.logs_dir, date=run.date, window_days=run.window,
                                feature_config=run.feature_config_path, eval_days=run.eval_days,
                                val_days=run.val_days, limits=run.ingest_limits)
    day_gate = DayGate(quarantine=example_gen.outputs["quarantine"], limits=run.day_limits.to_json(),
                       reports_dir=run.reports_dir, date=run.date)
    statistics = SampledStatisticsGen(examples=example_gen.outputs["examples"])
    statistics.add_upstream_node(day_gate)  # an unfit day stops before anything reads its examples
    schema_file = run.schema_path or write_schema(run.feature_config, run.generated_schema_path)
    schema = tfx.components.ImportSchemaGen(schema_file=schema_file)
    validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    gate = AnomalyGate(anomalies=validator.outputs["anomalies"], reports_dir=run.reports_dir, date=run.date)
    components: list[Any] = [example_gen, day_gate, statistics, schema, validator, gate]
    if run.stop_after == "validation":
        return _pipeline(run, components)

    # production: the model pushed last; FC, warm start and the Evaluator's baseline all use it
    production = production_resolver(run.production)
    fairness = FairnessGen(examples=example_gen.outputs["examples"], model=production.outputs["model"])
    fairness.add_upstream_node(day_gate)
    transform_config = {FEATURE_CONFIG_KEY: run.feature_config.to_dict(),
                        SCENARIO_VOCAB_KEY: list(run.scenario_vocabulary)}
    # Only a run that stops here (the model benchmarks train many models on its window) writes
    # transformed examples. The Trainer runs FairnessGen's examples through the Transform graph in its
    # input pipeline, and the Evaluator scores the raw eval split through the model's tf.Example
    # signature, which holds the graph (Transform on a 200k day: 44 -> 30 s).
    materialize = run.stop_after == "transform"
    # Without materialized examples, Transform only analyses the train split, and no analyzer reads
    # ``fairness_coef``: it reads LogExampleGen's examples, so statistics, FairnessGen and Transform
    # are three independent branches that the local runner (local_runner.py) and Airflow or Kubeflow
    # run at the same time. Materialized examples must carry the FC, so they come from FairnessGen.
    transform = tfx.components.Transform(
        examples=fairness.outputs["weighted_examples"] if materialize else example_gen.outputs["examples"],
        schema=schema.outputs["schema"],
        preprocessing_fn="msrec.models.training.preprocessing.preprocessing_fn",
        splits_config=tfx.proto.SplitsConfig(analyze=["train"],
                                             transform=["train", "val", "eval"] if materialize else []),
        materialize=materialize,
        custom_config=transform_config,
        disable_statistics=True,  # StatisticsGen already profiled the raw examples
        # the cache is keyed by input artifact, and every run's window is a new one: never read, only written
        disable_analyzer_cache=True,
        # a graph-mode transform_fn: tracing and saving it costs a fraction of TF2's (Transform on a
        # 60k-impression day 55 -> 40 s); the outputs agree to float rounding of the z-scores
        force_tf_compat_v1=True)
    # materialized examples are trained on as they are: an anomaly stops them too
    transform.add_upstream_node(gate if materialize else day_gate)
    if run.stop_after == "transform":
        return _pipeline(run, components + [production, fairness, transform])
    trainer = Trainer(
        run_date=run.date,  # the full-retrain rule's "today"
        run_fn="msrec.models.training.trainer.run_fn",
        examples=fairness.outputs["weighted_examples"],
        transform_graph=transform.outputs["transform_graph"],
        base_model=production.outputs["model"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        # the Trainer's "eval" files are the val split: the eval day stays unseen until the Evaluator
        eval_args=tfx.proto.EvalArgs(splits=["val"]),
        custom_config={**transform_config, "model": run.model, "hparams": dict(run.hparams),
                       "max_epochs": run.max_epochs, "patience": run.patience, "batch_size": run.batch_size,
                       "incremental_lr_scale": run.incremental_lr_scale, "workers": run.workers,
                       "seed": run.seed, "full_retrain_days": run.full_retrain_days})
    trainer.add_upstream_node(gate)  # an anomaly stops the run before anything is trained
    evaluation_schema = SchemaProjection(schema=schema.outputs["schema"],
                                         features=",".join(evaluation.FEATURES)).with_id("EvaluationSchema")
    evaluator = tfx.components.Evaluator(
        examples=fairness.outputs["weighted_examples"], model=trainer.outputs["model"],
        baseline_model=production.outputs["model"], example_splits=["eval"],
        schema=evaluation_schema.outputs["projected"], eval_config=evaluation.eval_config())
    blessing = ScenarioBlessing(evaluation=evaluator.outputs["evaluation"], model=trainer.outputs["model"],
                                baseline_model=production.outputs["model"],
                                rule=BlessingRule(run.auc_floor, run.auc_delta, run.min_slice_size,
                                                  run.auc_noise_z))
    pusher = AtomicPusher(model=trainer.outputs["model"], model_blessing=blessing.outputs["scenario_blessing"],
                          base_directory=run.serving_dir)
    components += [production, fairness, transform, trainer, evaluation_schema, evaluator, blessing, pusher]
    return _pipeline(run, components)


def _pipeline(run: DailyRun, components: list[Any]) -> tfx.dsl.Pipeline:
    return tfx.dsl.Pipeline(
        pipeline_name=run.pipeline_name,
        pipeline_root=run.pipeline_root,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(run.metadata_path),
        components=components,
        enable_cache=False,
        beam_pipeline_args=list(run.beam_pipeline_args),
    )
