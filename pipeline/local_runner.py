"""The local orchestrator: TFX's LocalDagRunner, except that components which do not depend on each
other run at the same time.

TFX's LocalDagRunner launches one node after another. After LogExampleGen, the daily graph has three
independent branches (statistics and validation, FairnessGen, Transform), each a Beam pipeline on
the in-process DirectRunner, which keeps one core busy (Python's GIL). This runner launches every
node whose upstream nodes have finished, up to ``processes`` at a time: one in this process, the
others in worker processes. The workers are started (spawn: TensorFlow is not fork-safe) when the
run starts, so they import TensorFlow and TFX while LogExampleGen runs here. Each launch is TFX's own
Launcher (driver, executor, publisher), as in LocalDagRunner; MLMD's SQLite store serialises the
writes of concurrent launches.

A failed node stops the run: nothing new starts, the nodes already running finish, and the first
failure is raised (a worker's exception comes back with the worker's traceback as its cause).
"""
from __future__ import annotations

import atexit
import concurrent.futures as cf
import dataclasses
import datetime
import logging as std_logging
import multiprocessing
import os
import pickle
import sys
import time
from typing import Any, Optional

from absl import logging
from tfx.dsl.compiler import constants
from tfx.orchestration import metadata
from tfx.orchestration.local import runner_utils
from tfx.orchestration.portable import launcher, runtime_parameter_utils, tfx_runner
from tfx.proto.orchestration import pipeline_pb2

from msrec.progress import cpu_seconds

# The daily graph has at most three branches at once; on two cores a third process still helps, as
# the branches are single-threaded and the operating system shares the cores between them.
DEFAULT_PROCESSES = 3


@dataclasses.dataclass(frozen=True)
class NodeLaunch:
    """What a process needs to launch one node (protocol buffers pickle)."""

    node: pipeline_pb2.PipelineNode
    pipeline_info: pipeline_pb2.PipelineInfo
    runtime_spec: pipeline_pb2.PipelineRuntimeSpec
    executor_spec: Any
    custom_driver_spec: Any
    connection_config: Any

    @property
    def node_id(self) -> str:
        return self.node.node_info.id


class WorkerStopped(RuntimeError):
    """A worker process ended while it ran a node (killed, out of memory)."""


def launch(job: NodeLaunch) -> float:
    """Run one node with TFX's launcher; returns the CPU seconds it took in this process."""
    started = cpu_seconds()
    launcher.Launcher(pipeline_node=job.node, mlmd_connection=metadata.Metadata(job.connection_config),
                      pipeline_info=job.pipeline_info, pipeline_runtime_spec=job.runtime_spec,
                      executor_spec=job.executor_spec, custom_driver_spec=job.custom_driver_spec).launch()
    return cpu_seconds() - started


def _launch_in_worker(job: NodeLaunch) -> float:
    try:
        return launch(job)
    except Exception as e:
        try:
            pickle.dumps(e)
        except Exception:  # the parent must get an error it can raise, whatever the library raised
            raise RuntimeError(f"{job.node_id}: {type(e).__name__}: {e}") from None
        raise


def _prepare_worker() -> None:
    """Import what the executors need, once per worker, and log at INFO like the parent."""
    import msrec  # noqa: F401  (sets up Keras 2 before TensorFlow is imported)
    import tensorflow  # noqa: F401
    import tfx.v1  # noqa: F401

    logging.set_verbosity(logging.INFO)
    # Registered last, so it runs first when the worker exits: the interpreter's teardown with
    # TensorFlow, Beam and TFX loaded takes 2-5 s, and the run waits for its workers to exit. Every
    # node the worker ran has been published by then; only the output streams need a flush.
    atexit.register(_exit_now)


def _exit_now() -> None:
    std_logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _ready() -> None:
    """A worker's first task: it finishes once the worker's start-up (the imports) has."""


class ParallelDagRunner(tfx_runner.IrBasedRunner):
    """Runs a TFX pipeline on this machine, independent nodes in parallel, at most ``processes`` at a
    time (1: one after another in this process, as LocalDagRunner)."""

    def __init__(self, processes: int = DEFAULT_PROCESSES) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.processes = processes

    def run_with_ir(self, pipeline: pipeline_pb2.Pipeline,
                    run_options: Optional[pipeline_pb2.RunOptions] = None, **kwargs: Any) -> None:
        if run_options is not None:
            raise ValueError("partial runs are not supported here: use tfx.orchestration.LocalDagRunner")
        runtime_parameter_utils.substitute_runtime_parameter(
            pipeline, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: datetime.datetime.now().isoformat()})
        deployment = runner_utils.extract_local_deployment_config(pipeline)
        connection = getattr(deployment.metadata_connection_config,
                             deployment.metadata_connection_config.WhichOneof("connection_config"))
        jobs = {}
        for node in pipeline.nodes:
            node_id = node.pipeline_node.node_info.id
            if node.pipeline_node.execution_options.HasField("skip"):
                logging.info("Skipping component %s.", node_id)
                continue
            jobs[node_id] = NodeLaunch(node.pipeline_node, pipeline.pipeline_info, pipeline.runtime_spec,
                                       runner_utils.extract_executor_spec(deployment, node_id),
                                       runner_utils.extract_custom_driver_spec(deployment, node_id), connection)
        self._run(jobs)

    def _run(self, jobs: dict[str, NodeLaunch]) -> None:
        upstream = {node_id: set(job.node.upstream_nodes) & set(jobs) for node_id, job in jobs.items()}
        pending = list(jobs)  # the IR lists nodes in topological order: the earliest ready goes first
        done: set[str] = set()
        spawn = multiprocessing.get_context("spawn")
        lanes = [_Lane(cf.ThreadPoolExecutor(1, thread_name_prefix="component"), in_worker=False)]
        lanes += [_Lane(cf.ProcessPoolExecutor(1, mp_context=spawn, initializer=_prepare_worker), in_worker=True)
                  for _ in range(self.processes - 1)]
        running: dict[cf.Future, tuple[str, _Lane, float]] = {}
        failure: BaseException | None = None
        try:
            while pending or running:
                # the workers start one after another while the first nodes run here: a worker's
                # import of TensorFlow takes a core for seconds, and LogExampleGen needs the other
                cold = [lane for lane in lanes if lane.in_worker and lane.warming is None]
                if cold and not any(lane.starting for lane in lanes):
                    cold[0].start_up()
                for node_id in [n for n in pending if upstream[n] <= done] if failure is None else []:
                    lane = next((lane for lane in lanes if lane.free and lane.warm), None)
                    if lane is None:
                        break
                    logging.info("Component %s is running.", node_id)
                    running[lane.start(jobs[node_id])] = (node_id, lane, time.monotonic())
                    pending.remove(node_id)
                if not running:
                    break  # a node failed: what depends on it never starts
                starting = [lane.warming for lane in lanes if lane.starting]
                finished, _ = cf.wait([*running, *starting], return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    if future not in running:
                        continue  # a worker is ready
                    node_id, lane, started = running.pop(future)
                    lane.free = True
                    try:
                        cpu = future.result()
                    except cf.process.BrokenProcessPool as e:
                        failure = failure or WorkerStopped(f"the worker process running {node_id} stopped "
                                                           f"(killed, or out of memory?): {e}")
                        logging.error("Component %s failed: its worker process stopped.", node_id)
                    except BaseException as e:
                        failure = failure or e
                        logging.error("Component %s failed: %s", node_id, e)
                    else:
                        done.add(node_id)
                        logging.info("Component %s is finished.", node_id,
                                     extra={"cpu_seconds": cpu, "wall_seconds": time.monotonic() - started})
        finally:
            for lane in lanes:  # not waiting only when interrupted (Ctrl-C): the workers got the signal too
                lane.executor.shutdown(wait=not running, cancel_futures=True)
        if failure is not None:
            raise failure


@dataclasses.dataclass
class _Lane:
    """Where one node at a time runs: this process, or a worker process that takes nodes once its
    start-up (the imports) has finished."""

    executor: cf.Executor
    in_worker: bool
    warming: cf.Future | None = None  # a worker's start-up, once begun
    free: bool = True

    @property
    def starting(self) -> bool:
        return self.warming is not None and not self.warming.done()

    @property
    def warm(self) -> bool:
        """Ready for nodes; a worker whose start-up failed is never used (the other lanes still are)."""
        return not self.in_worker or (self.warming is not None and self.warming.done()
                                      and self.warming.exception() is None)

    def start_up(self) -> None:
        self.warming = self.executor.submit(_ready)

    def start(self, job: NodeLaunch) -> cf.Future:
        self.free = False
        return self.executor.submit(_launch_in_worker if self.in_worker else launch, job)
