"""The main job on embedded defaults: generate logs, backfill the daily pipeline, serve the pushed
model, query it over gRPC for one user in two scenarios, and print the report."""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from typing import Any, Mapping

import msrec  # noqa: F401
from msrec.data.generator import generate
from msrec.pipeline import daily


def auc_table(rep: Mapping[str, Any], oracle: Mapping[str, float], oracle_overall: float) -> str:
    """Per-scenario AUC of the model beside the oracle AUC of the true click probabilities."""
    lines = [f"{'scenario':<10}{'count':>8}{'AUC':>8}{'oracle':>8}{'logloss':>9}"]
    per = rep["metrics"]["per_scenario"]
    for sid in sorted(per):
        m = per[sid]
        lines.append(f"{sid:<10}{m['count']:>8}{m['auc']:>8.4f}{oracle.get(sid, math.nan):>8.4f}{m['logloss']:>9.4f}")
    o = rep["metrics"]["overall"]
    lines.append(f"{'overall':<10}{o['count']:>8}{o['auc']:>8.4f}{oracle_overall:>8.4f}{o['logloss']:>9.4f}")
    return "\n".join(lines)


def pick_user(logs_dir: str, date: str, n_items: int = 8) -> tuple[str, list[str], list[str]]:
    """A user of ``date`` who visited several scenarios, their two busiest scenarios, and candidates:
    items shown to them that day."""
    import pandas as pd

    day = os.path.join(logs_dir, date)
    df = pd.concat(pd.read_json(os.path.join(day, f), lines=True, dtype=False) for f in sorted(os.listdir(day)))
    per_user = df.groupby("user_id").scenario_id.nunique()
    user = per_user[per_user >= 2].sort_values(kind="stable").index[-1]
    mine = df[df.user_id == user]
    scenarios = mine.scenario_id.value_counts().index[:2].tolist()
    items = list(dict.fromkeys(mine.item_id.tolist()))[:n_items]
    return user, scenarios, items


def serve_and_query(logs_dir: str, workdir: str, model: str, date: str) -> int:
    """Start ``msrec serve`` on the pushed model, rank one user's candidates in two scenarios over
    gRPC through the official TF Serving stubs, stop the server."""
    import datetime as dt

    from msrec.serving.candidates import build_candidates
    from msrec.serving.client import PredictClient, format_ranking
    from msrec.serving.server import start_server

    base = os.path.join(workdir, "serving", model)
    if not os.path.isdir(base) or not any(v.isdigit() for v in os.listdir(base)):
        print(f"no pushed model under {base}: nothing to serve", file=sys.stderr)
        return 1
    user, scenarios, items = pick_user(logs_dir, date)
    end_of_day = int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc).timestamp() * 1000) + 86_400_000
    handle = start_server(model_name=model, model_base_path=base, port=0)
    print(f"\n== msrec serve listening on {handle.target}; querying user {user} in scenarios {scenarios}")
    try:
        with PredictClient(handle.target) as client:
            for scenario in scenarios:
                request = build_candidates(logs_dir, user, scenario, items, now_ms=end_of_day)
                ranking = client.rank(model, request.rows)
                print(format_ranking(ranking, f"{model}: user {user} in scenario {scenario} "
                                              f"({request.history_length} past clicks)"))
    finally:
        handle.stop()
    return 0


def main(args: argparse.Namespace) -> int:
    out = os.path.abspath(args.out)
    data_dir, workdir = os.path.join(out, "data"), os.path.join(out, "work")
    for folder in (data_dir, workdir):  # the demo always starts from nothing (its log is already open)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"== generating {args.days} days x {args.impressions_per_day} impressions into {data_dir}", flush=True)
    data = generate(data_dir, days=args.days, impressions_per_day=args.impressions_per_day, seed=0)
    print(f"== backfilling {data.dates[0]}..{data.dates[-1]} with {args.model} (workdir {workdir})", flush=True)
    reports = daily.backfill(str(data.logs_dir), data.dates[0], data.dates[-1], workdir, model=args.model,
                             window=2, batch_size=512, hparams={"learning_rate": 3e-3})
    from msrec.pipeline.oracle import oracle
    from msrec.pipeline.report import finish_backfill

    backfill_page = finish_backfill(workdir, reports, str(data.truth_dir))
    last = reports[-1]
    if last.get("error"):
        print(f"the run of {last['date']} failed: {last['error']}", file=sys.stderr)
        return 1
    gold = oracle(last, str(data.truth_dir))
    print(f"\n== {args.model} on the eval split of {last['date']} beside the oracle (true click probabilities)")
    print(auc_table(last, gold["per_scenario"], gold["overall"]))
    fc = last["fc"]
    print(f"\nFairness Coefficients: bootstrap={fc['bootstrap']} mean={fc['mean']:.4f} "
          f"p10={fc['p10']:.4f} p90={fc['p90']:.4f}")
    rc = serve_and_query(str(data.logs_dir), workdir, args.model, last["date"])
    print(f"\nreports: {backfill_page}, {workdir}/reports/<date>/report.html · scenario statistics: "
          f"{last.get('scenario_stats_html')}")
    return rc
