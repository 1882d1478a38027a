"""The daily pipeline for Kubeflow Pipelines v2: ``msrec compile kubeflow`` writes its pipeline spec.

TFX's KubeflowV2DagRunner compiles the same ``create_pipeline`` that ``msrec run`` runs, offline, with
the run date the pipeline's runtime parameter ``date``: one spec serves every day. Every task runs
``--image``, which must hold msrec's wheel and its locked dependencies; nothing is built or pushed.

What differs from a local run: the pipeline's name is DNS-safe (``msrec-sarnet``: Kubeflow rejects
``_``) and production is the newest blessed model (production.py: the v2 compiler accepts only TFX's
own resolver strategies). The feature config and the scenario vocabulary are read here and compiled
in, like every option: compile again when they change.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import version
from typing import Any

import yaml

import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from msrec.pipeline.pipeline import DailyRun

DEFAULT_IMAGE = f"msrec:{version('msrec')}"


def kubeflow_name(name: str) -> str:
    """Kubeflow's pipeline names are DNS labels: lower case, digits and '-'."""
    return name.lower().replace("_", "-")


def compile_spec(run: DailyRun, image: str) -> dict[str, Any]:
    """The PipelineSpec of ``create_pipeline(run)`` as a JSON dict, its pipeline root the run's.

    The bare spec (what the kfp SDK's compiler writes), not TFX's PipelineJob around it: KFP's client
    and UI load only the spec; Vertex AI takes either."""
    from tfx import v1 as tfx

    from msrec.pipeline.pipeline import create_pipeline

    pipeline = create_pipeline(run)
    pipeline.pipeline_info.pipeline_name = kubeflow_name(run.pipeline_name)
    # schema 2.1.0, typed parameters, as the kfp 2 SDK writes; TFX's default is the older 2.0.0
    config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image, use_pipeline_spec_2_1=True)
    job = tfx.orchestration.experimental.KubeflowV2DagRunner(config=config).run(pipeline, write_out=False)
    return {**job["pipelineSpec"], "defaultPipelineRoot": job["runtimeConfig"]["gcsOutputDirectory"]}


def write_spec(spec: dict[str, Any], path: str) -> None:
    """JSON, or YAML for a .yaml/.yml path (kfp's Client.create_run_from_pipeline_package wants that name)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        if path.endswith((".yaml", ".yml")):
            yaml.safe_dump(spec, fh, sort_keys=True)
        else:
            json.dump(spec, fh, indent=1, sort_keys=True)


def compile_command(args: argparse.Namespace) -> int:
    """``msrec compile kubeflow``: the spec for the command's options, written to ``--out``."""
    from msrec.pipeline import commands, daily
    from msrec.pipeline.pipeline import date_parameter
    from msrec.pipeline.production import BLESSED

    image = args.image or DEFAULT_IMAGE
    try:
        # no default date: a run must name its day (the v2 compiler would drop a default anyway)
        run = daily.make_run(date=date_parameter(), production=BLESSED, **commands.pipeline_options(args))
        spec = compile_spec(run, image)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"msrec: {e}") from None
    write_spec(spec, args.out)
    print(f"wrote {args.out}: pipeline {spec['pipelineInfo']['name']}, {len(spec['root']['dag']['tasks'])} tasks, "
          f"image {image}; each run's parameter date (YYYY-MM-DD) is the day it processes", file=sys.stdout,
          flush=True)
    return 0
