"""The terminal progress lines: one per finished component with its wall and CPU time, and a closed terminal never fails the run
(an exception from a logging handler would surface in the component that logged)."""
import io
import logging

import pytest

from msrec.progress import ComponentClock, ComponentProgress


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("absl", logging.INFO, __file__, 1, message, None, None)


def test_one_line_per_finished_component_with_its_name() -> None:
    stream = io.StringIO()
    handler = ComponentProgress(stream)
    for message in ("Component Trainer is running.", "unrelated", "Component Trainer is finished."):
        handler.handle(_record(message))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].split()[0] == "Trainer" and "CPU" in lines[0]


def test_the_clock_counts_the_cpu_the_component_burns() -> None:
    clock = ComponentClock()
    clock.handle(_record("Component Transform is running."))
    total = sum(i * i for i in range(2_000_000))  # CPU work between the two lines
    clock.handle(_record("Component Transform is finished."))
    wall, cpu = clock.times["Transform"]
    assert total > 0 and wall > 0 and cpu > 0.01


def test_a_closed_stream_does_not_raise_into_the_logging_component(monkeypatch) -> None:
    monkeypatch.setattr(logging, "raiseExceptions", False)  # handleError stays silent, as in production
    stream = io.StringIO()
    handler = ComponentProgress(stream)
    stream.close()
    handler.handle(_record("Component Trainer is running."))
    handler.handle(_record("Component Trainer is finished."))


@pytest.mark.parametrize("bench", ["ingest", "pipeline", "serve", "models", "fairness"])
def test_every_benchmark_sends_library_output_to_its_out_folder(bench):
    """main() sends library output to <out>/logs/msrec.log for a command with --out and --verbose."""
    from msrec.cli import build_parser

    args = build_parser().parse_args(["bench", bench, "--out", "x"])
    assert args.out == "x" and args.verbose is False
