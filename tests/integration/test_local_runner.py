"""The local runner: independent components at the same time (one here, others in worker processes),
dependents after what they depend on, failures raised as they are and stopping what depends on them."""
from __future__ import annotations

import logging
import os

import pytest
from tfx import v1 as tfx

from msrec.pipeline.local_runner import ParallelDagRunner, WorkerStopped
from msrec.progress import ComponentClock
from support.runner_nodes import Step, StepFailed, finished, started


def _run(tmp_path, processes: int, steps: dict[str, tuple[dict, tuple[str, ...]]]) -> dict:
    """Runs the steps (name -> (Step arguments, upstream names)); returns the clock's times."""
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    nodes = {}
    for name, (kwargs, upstream) in steps.items():
        node = Step(name=name, folder=str(marks), main_pid=os.getpid(), **kwargs).with_id(name)
        for other in upstream:
            node.add_upstream_node(nodes[other])
        nodes[name] = node
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="runner_test", pipeline_root=str(tmp_path / "root"),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite")),
        components=list(nodes.values()), enable_cache=False)
    clock, absl_logger = ComponentClock(), logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.addHandler(clock)
    absl_logger.setLevel(logging.INFO)
    try:
        ParallelDagRunner(processes).run(pipeline)
    finally:
        absl_logger.removeHandler(clock)
        absl_logger.setLevel(level)
    return clock.times


def _finished_before_started(marks, first: str, then: str) -> bool:
    return os.path.getmtime(marks / f"{first}.finished") <= started(str(marks), then)["time"]


def test_independent_components_run_at_the_same_time_and_dependents_after_them(tmp_path):
    times = _run(tmp_path, 2, {"a": ({}, ()),
                               "b": ({"meet": "c"}, ("a",)),  # each waits for the other to start
                               "c": ({"meet": "b"}, ("a",)),
                               "d": ({}, ("b", "c"))})
    marks = tmp_path / "marks"
    assert all(finished(str(marks), name) for name in "abcd")
    pids = {started(str(marks), name)["pid"] for name in "bc"}
    assert len(pids) == 2 and os.getpid() in pids  # one here, one in the worker process
    assert _finished_before_started(marks, "a", "b") and _finished_before_started(marks, "a", "c")
    assert _finished_before_started(marks, "b", "d") and _finished_before_started(marks, "c", "d")
    # every component's wall and CPU time, also of the one that ran in the worker
    assert set(times) == set("abcd") and all(wall >= 0 and cpu >= 0 for wall, cpu in times.values())


def test_one_process_runs_the_components_one_after_another_here(tmp_path):
    _run(tmp_path, 1, {name: ({}, ()) for name in "abc"})
    marks = tmp_path / "marks"
    assert {started(str(marks), name)["pid"] for name in "abc"} == {os.getpid()}
    order = sorted("abc", key=lambda name: started(str(marks), name)["time"])
    assert all(_finished_before_started(marks, x, y) for x, y in zip(order, order[1:]))


def test_a_failure_in_a_worker_is_raised_as_is_and_stops_what_depends_on_it(tmp_path):
    # b and c run together; the one in the worker process fails, the one here finishes
    with pytest.raises(StepFailed, match="failed"):
        _run(tmp_path, 2, {"b": ({"meet": "c", "fail": "in_worker"}, ()),
                           "c": ({"meet": "b", "fail": "in_worker"}, ()),
                           "d": ({}, ("b", "c"))})
    marks = tmp_path / "marks"
    assert [finished(str(marks), name) for name in "bc"].count(True) == 1
    assert not (marks / "d.started").exists()


def test_a_failure_here_is_raised_as_is_and_stops_what_depends_on_it(tmp_path):
    with pytest.raises(StepFailed, match="b failed"):
        _run(tmp_path, 1, {"a": ({}, ()), "b": ({"fail": "always"}, ("a",)), "d": ({}, ("b",))})
    assert not (tmp_path / "marks" / "d.started").exists()


def test_a_worker_process_that_dies_is_named_in_the_error(tmp_path):
    with pytest.raises(WorkerStopped) as failure:
        _run(tmp_path, 2, {"b": ({"meet": "c", "fail": "exit_in_worker"}, ()),
                           "c": ({"meet": "b", "fail": "exit_in_worker"}, ()),
                           "d": ({}, ("b", "c"))})
    marks = tmp_path / "marks"
    died = next(name for name in "bc" if started(str(marks), name)["pid"] != os.getpid())
    assert f"running {died} stopped" in str(failure.value)
    assert finished(str(marks), "c" if died == "b" else "b")
    assert not (marks / "d.started").exists()
