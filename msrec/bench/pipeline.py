"""``msrec bench pipeline``: wall time per pipeline component for one day of N impressions, and
training examples/s per model, printed as a table with the machine noted."""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
from typing import Any, Sequence

import msrec  # noqa: F401
from msrec.bench.machine import format_machine, machine_info
from msrec.data.generator import generate
from msrec.pipeline import daily
from msrec.progress import ComponentClock, show_progress

DEFAULT_SIZES = (200_000, 1_000_000)
DEFAULT_MODELS = ("sarnet", "mmoe")


def bench_pipeline(sizes: Sequence[int], models: Sequence[str], out_dir: str) -> list[dict[str, Any]]:
    """Per size, one one-day run of the whole pipeline (eval = the day's last fifth) with the first
    model; each further model trains in-process on that run's transformed examples with the same
    budget, so its row has training figures only (the other components would time the same)."""
    from msrec.bench.models import train_and_evaluate, transformed_window

    rows = []
    for n in sizes:
        data_dir = os.path.join(out_dir, f"data-{n}")
        data = generate(data_dir, days=1, impressions_per_day=n, seed=0, progress=False)
        workdir = os.path.join(out_dir, f"work-{n}")
        first, *others = models
        clock = ComponentClock()
        absl_logger = logging.getLogger("absl")
        absl_logger.addHandler(clock)
        try:
            rep = daily.run_day(str(data.logs_dir), data.dates[0], workdir, model=first, window=1)
        finally:
            absl_logger.removeHandler(clock)
        cpu = {name: round(times[1], 2) for name, times in clock.times.items()}
        rows.append({"impressions": n, "model": first, "wall_s": rep["wall_s"], "timings_s": rep["timings_s"],
                     "cpu_s": cpu,
                     "training": rep.get("training", {}), "auc": rep.get("metrics", {}).get("overall", {}).get("auc"),
                     "error": rep.get("error")})
        if rep.get("error") or not others:
            continue
        window = transformed_window(os.path.join(data_dir, "logs"), os.path.join(data_dir, "truth"), workdir, first)
        for model in others:
            r = train_and_evaluate(model, 0, window)
            rows.append({"impressions": n, "model": model, "wall_s": math.nan, "timings_s": {}, "cpu_s": {},
                         "training": {"examples_per_s": r["train_examples_per_s"]}, "auc": r["auc"], "error": None})
    return rows


def _wall_cpu(wall: float, cpu: float) -> str:
    return "" if math.isnan(wall) else f"{wall:.1f} / {cpu:.1f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    components = list(dict.fromkeys(c for r in rows for c in r["timings_s"]))
    heads = [f"{r['impressions'] // 1000}k {r['model']}" for r in rows]
    width = max([14] + [len(h) + 2 for h in heads])
    lines = [f"{'wall / CPU s':<22}" + "".join(f"{h:>{width}}" for h in heads)]
    for c in components:
        lines.append(f"{c:<22}" + "".join(
            f"{_wall_cpu(r['timings_s'].get(c, math.nan), r['cpu_s'].get(c, math.nan)):>{width}}" for r in rows))
    lines.append(f"{'whole run':<22}" + "".join(f"{r['wall_s']:>{width}.1f}" for r in rows))
    lines.append(f"{'train examples/s':<22}" + "".join(
        f"{r['training'].get('examples_per_s', float('nan')):>{width}.0f}" for r in rows))
    lines.append(f"{'eval AUC':<22}" + "".join(f"{(r['auc'] or float('nan')):>{width}.4f}" for r in rows))
    for r in rows:
        if r["error"]:
            lines.append(f"{r['impressions']} {r['model']} FAILED: {r['error']}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if not args.out:  # the CLI sent library output to DIR/logs/msrec.log when --out was given
        show_progress()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(DEFAULT_SIZES)
    models = args.models.split(",") if args.models else list(DEFAULT_MODELS)
    out = args.out or tempfile.mkdtemp(prefix="msrec-bench-pipeline-")
    rows = bench_pipeline(sizes, models, out)
    table = format_table(rows)
    print(f"msrec bench pipeline: one day per run, DirectRunner in_memory\n{format_machine(machine_info())}\n{table}")
    with open(os.path.join(out, "bench_pipeline.json"), "w") as fh:
        json.dump({"machine": machine_info(), "rows": rows}, fh, indent=1)
    return 0 if not any(r["error"] for r in rows) else 1
