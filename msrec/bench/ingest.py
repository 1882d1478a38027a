"""``msrec bench ingest``: throughput of the log generator and of ingestion."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from msrec.bench.machine import format_machine, machine_info
from msrec.data.generator import generate
from msrec.components.log_example_gen.beam_ingest import run_ingest


def bench_generator(sizes: Iterable[int], workdir: str | None = None) -> list[dict]:
    """Time ``msrec generate`` for one day of each size; rows: impressions, seconds, records/s.

    Each run writes into a fresh temporary folder (under ``workdir`` when given) that is removed
    afterwards; the time covers the whole run: world, calibration, simulation and writing.
    """
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="msrec-bench-gen-", dir=workdir) as tmp:
            started = time.perf_counter()
            generate(Path(tmp) / "data", days=1, impressions_per_day=int(size), progress=False)
            seconds = time.perf_counter() - started
        rows.append({"impressions": int(size), "seconds": round(seconds, 3), "records/s": round(size / seconds)})
    return rows


# Ingestion runs as `msrec run` runs it by default: Beam's DirectRunner, in memory.
INGEST_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
DEFAULT_SIZES = (200_000, 1_000_000)
RESULT_FILE = "bench_ingest.json"


def bench_ingestion(sizes: Iterable[int], workdir: str | None = None,
                    beam_pipeline_args: Sequence[str] = INGEST_BEAM_ARGS) -> list[dict]:
    """Time ingestion of N impressions, for each size N, with a 1-day and a 2-day window.

    The logs hold two days of N/2 impressions. The 2-day window turns all N into examples; the
    1-day window turns the newest N/2 into examples and reads the older day as its lookback (parsed,
    its clicks joined and sequenced), so both runs read N lines. records/s = lines read / seconds.
    """
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="msrec-bench-ingest-", dir=workdir) as tmp:
            data = generate(Path(tmp) / "data", days=2, impressions_per_day=int(size) // 2, progress=False)
            for window in (1, 2):
                out = Path(tmp) / f"window{window}"
                started, cpu_started = time.perf_counter(), time.process_time()
                counts = run_ingest(str(data.logs_dir), data.dates[-1], window, str(data.feature_config),
                                    str(out / "examples"), str(out / "quarantine"), beam_pipeline_args)
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
                lines = counts["read"] + counts["lookback_read"]
                rows.append({"impressions": int(size), "window_days": window, "lines_read": lines,
                             "examples": counts["accepted"], "seconds": round(seconds, 3),
                             "cpu_seconds": round(cpu, 3), "records/s": round(lines / seconds),
                             "examples/s": round(counts["accepted"] / seconds)})
    return rows


def format_table(generator: list[dict], ingestion: list[dict]) -> str:
    head = (f"{'impressions':>11} | {'generate s':>10} {'rec/s':>7} | {'1-day window s':>14} {'cpu s':>6} "
            f"{'rec/s':>6} {'ex/s':>6} | {'2-day window s':>14} {'cpu s':>6} {'rec/s':>6} {'ex/s':>6}")
    lines = [head, "-" * len(head)]
    for gen in generator:
        row = f"{gen['impressions']:>11} | {gen['seconds']:>10.1f} {gen['records/s']:>7}"
        for window in (1, 2):
            r = next(r for r in ingestion if r["impressions"] == gen["impressions"] and r["window_days"] == window)
            row += (f" | {r['seconds']:>14.1f} {r['cpu_seconds']:>6.1f} {r['records/s']:>6} "
                    f"{r['examples/s']:>6}")
        lines.append(row)
    lines.append("generate: one day of N impressions. ingest: two days of N/2 impressions; the 1-day window "
                 "emits the newest day and reads the older one as lookback, the 2-day window emits both. "
                 "rec/s = lines read per wall-clock second, ex/s = examples written per second, cpu s = CPU "
                 f"time of the process. Beam: {' '.join(INGEST_BEAM_ARGS)}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``msrec bench ingest``."""
    try:
        sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else DEFAULT_SIZES
    except ValueError:
        print(f"msrec bench ingest: --sizes must be comma-separated integers, got {args.sizes!r}", file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="msrec-bench-ingest-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    generator = bench_generator(sizes, workdir=str(out))
    ingestion = bench_ingestion(sizes, workdir=str(out))
    info = machine_info()
    print(format_table(generator, ingestion))
    print(format_machine(info))
    path = out / RESULT_FILE
    path.write_text(json.dumps({"machine": info, "beam_pipeline_args": list(INGEST_BEAM_ARGS),
                                "generator": generator, "ingestion": ingestion}, indent=2))
    print(f"written to {path}")
    return 0
