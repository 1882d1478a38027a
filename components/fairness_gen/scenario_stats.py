"""ScenarioStats: per-scenario and per-day statistics computed in FairnessGen's Beam pipeline,
assembled into JSON and an HTML page with plots.

The Beam side (``aggregate``) only writes small aggregate files; ``build`` turns them into the
report so that nothing per-sample is ever collected in one process.
"""
from __future__ import annotations

import base64
import collections
import glob
import html
import io
import json
import os
import shutil
from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np

JSON_NAME = "scenario_stats.json"
HTML_NAME = "scenario_stats.html"
FC_TABLE_NAME = "fairness_coefficients.jsonl"
_QUANTILES = 10  # deciles of the per-sample FC


def _write(pcoll: beam.PCollection, agg_dir: str, name: str) -> None:
    _ = (pcoll | f"Json[{name}]" >> beam.Map(json.dumps)
         | f"Write[{name}]" >> beam.io.WriteToText(os.path.join(agg_dir, name), file_name_suffix=".jsonl"))


def _sum_pairs(values: Iterable[tuple[int, int]]) -> tuple[int, int]:
    samples = clicks = 0
    for n, c in values:
        samples, clicks = samples + n, clicks + c
    return samples, clicks


def _union(sets: Iterable[set]) -> set:
    out: set = set()
    for s in sets:
        out |= s
    return out


def _batch_counts(b: Any) -> Iterator[tuple[tuple[str, str], tuple[int, int]]]:
    """Samples and clicks of each (day, scenario) in a ScoredBatch."""
    counts: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
    for key, click in zip(zip(b.keys["date"], b.keys["scenario_id"]), b.click.tolist()):
        c = counts[key]
        c[0] += 1
        c[1] += click
    for key, (n, c) in counts.items():
        yield key, (n, c)


def _batch_distinct(b: Any, field: str) -> Iterator[tuple[tuple[str, str], set]]:
    """The distinct values of ``field`` of each (day, scenario) in a ScoredBatch."""
    seen: dict[tuple[str, str], set] = collections.defaultdict(set)
    for key, value in zip(zip(b.keys["date"], b.keys["scenario_id"]), b.keys[field]):
        seen[key].add(value)
    return iter(seen.items())


def _batch_user_scenarios(b: Any) -> Iterator[tuple[str, set]]:
    seen: dict[str, set] = collections.defaultdict(set)
    for user, scenario in zip(b.keys["user_id"], b.keys["scenario_id"]):
        seen[user].add(scenario)
    return iter(seen.items())


def aggregate(scored: beam.PCollection, fc_table: beam.PCollection, agg_dir: str) -> None:
    """Beam branches over ScoredBatches (FairnessGen's) and the FC table; each branch sums within a
    batch first, so its per-element cost is paid per batch. The FC distribution is not a branch:
    every sample's FC is its (day, scenario, item) row of the table, so ``build`` reads it from there,
    weighted by the row's sample count."""
    counts = (scored
              | "SampleClick" >> beam.FlatMap(_batch_counts)
              | "SumSampleClick" >> beam.CombinePerKey(_sum_pairs)
              | "CountsRow" >> beam.Map(lambda kv: {"date": kv[0][0], "scenario_id": kv[0][1],
                                                    "samples": kv[1][0], "clicks": kv[1][1]}))
    _write(counts, agg_dir, "counts")
    for field in ("user_id", "item_id"):
        distinct = (scored
                    | f"Values[{field}]" >> beam.FlatMap(_batch_distinct, field)
                    | f"Union[{field}]" >> beam.CombinePerKey(_union)
                    | f"Row[{field}]" >> beam.Map(lambda kv, f=field: {"date": kv[0][0], "scenario_id": kv[0][1],
                                                                         "field": f, "distinct": len(kv[1])}))
        _write(distinct, agg_dir, f"distinct_{field}")
    per_user = (scored
                | "UserScenarios" >> beam.FlatMap(_batch_user_scenarios)
                | "UnionUS" >> beam.CombinePerKey(_union)
                | "NoS" >> beam.Map(lambda kv: len(kv[1]))
                | "NoSHist" >> beam.combiners.Count.PerElement()
                | "NoSRow" >> beam.Map(lambda kv: {"scenarios": kv[0], "users": kv[1]}))
    _write(per_user, agg_dir, "scenarios_per_user")
    fc_rows = fc_table | "FCRow" >> beam.Map(
        lambda kv: {"date": kv[0][0], "scenario_id": kv[0][1], "item_id": kv[0][2],
                    "pv": kv[1][0], "f": kv[1][1], "fc": kv[1][2]})
    _write(fc_rows, agg_dir, "fc_table")


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, n: int = _QUANTILES) -> list[float]:
    """The 0, 1/n, ..., 1 quantiles of ``values`` each counted ``weights`` times: the lowest value
    whose cumulative weight reaches the fraction (exact, as of the repeated values)."""
    order = np.argsort(values, kind="stable")
    v, cum = np.asarray(values, np.float64)[order], np.cumsum(np.asarray(weights, np.float64)[order])
    targets = np.linspace(0.0, 1.0, n + 1) * cum[-1]
    idx = np.minimum(np.searchsorted(cum, targets, side="left"), len(v) - 1)
    return v[idx].tolist()


def _read(agg_dir: str, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(glob.glob(os.path.join(agg_dir, f"{name}-*.jsonl"))):
        with open(path) as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    return rows


def build(agg_dir: str, bootstrap: bool, shrink_k: float) -> dict[str, Any]:
    per: dict[tuple[str, str], dict[str, Any]] = collections.defaultdict(dict)
    for r in _read(agg_dir, "counts"):
        per[(r["date"], r["scenario_id"])].update(samples=r["samples"], clicks=r["clicks"])
    for field in ("user_id", "item_id"):
        for r in _read(agg_dir, f"distinct_{field}"):
            per[(r["date"], r["scenario_id"])][f"distinct_{field.split('_')[0]}s"] = r["distinct"]
    fc_rows = _read(agg_dir, "fc_table")
    by_key: dict[tuple[str, str], list[tuple[float, int]]] = collections.defaultdict(list)
    for r in fc_rows:
        by_key[(r["date"], r["scenario_id"])].append((r["fc"], r["pv"]))
    for key, pairs in by_key.items():
        fc, pv = np.array(pairs, dtype=np.float64).T
        q = weighted_quantiles(fc, pv)
        per[key].update(fc_p10=q[1], fc_p50=q[len(q) // 2], fc_p90=q[-2])
    day_totals = collections.Counter()
    for (date, _), v in per.items():
        day_totals[date] += v.get("samples", 0)
    rows = []
    for (date, scen), v in sorted(per.items()):
        samples = v.get("samples", 0)
        rows.append({"date": date, "scenario_id": scen, **v,
                     "share": samples / day_totals[date] if day_totals[date] else 0.0,
                     "ctr": v.get("clicks", 0) / samples if samples else 0.0})
    fc = np.array([r["fc"] for r in fc_rows] or [1.0], dtype=np.float64)
    pv = np.array([r["pv"] for r in fc_rows] or [1], dtype=np.float64)
    overall_q = weighted_quantiles(fc, pv)
    fc_mean = float(np.average(fc, weights=pv))  # the mean FC over samples
    nos = sorted((r["scenarios"], r["users"]) for r in _read(agg_dir, "scenarios_per_user"))
    return {
        "per_scenario_day": rows,
        "scenarios_per_user": [{"scenarios": n, "users": u} for n, u in nos],
        "share_drift": share_drift(rows),
        "fc": {"bootstrap": bootstrap, "shrink_k": shrink_k, "mean": float(fc_mean),
               "p10": float(overall_q[1]), "p50": float(overall_q[len(overall_q) // 2]),
               "p90": float(overall_q[-2])},
    }


def share_drift(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Day-over-day change of each scenario's traffic share, and the total variation distance."""
    shares: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for r in rows:
        shares[r["date"]][r["scenario_id"]] = r["share"]
    days = sorted(shares)
    out = []
    for prev, cur in zip(days, days[1:]):
        scen = set(shares[prev]) | set(shares[cur])
        delta = {s: shares[cur].get(s, 0.0) - shares[prev].get(s, 0.0) for s in sorted(scen)}
        out.append({"from": prev, "to": cur, "tvd": 0.5 * sum(abs(d) for d in delta.values()),
                    "delta": delta})
    return out


def write(report: dict[str, Any], agg_dir: str, uri: str) -> None:
    os.makedirs(uri, exist_ok=True)
    with open(os.path.join(uri, JSON_NAME), "w") as fh:
        json.dump(report, fh, indent=1)
    fc_rows = _read(agg_dir, "fc_table")
    with open(os.path.join(uri, FC_TABLE_NAME), "w") as fh:
        for r in fc_rows:
            fh.write(json.dumps(r) + "\n")
    with open(os.path.join(uri, HTML_NAME), "w") as fh:
        fh.write(render_html(report, fc_rows))
    shutil.rmtree(agg_dir, ignore_errors=True)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def render_html(report: dict[str, Any], fc_rows: list[dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["per_scenario_day"]
    days = sorted({r["date"] for r in rows})
    scen = sorted({r["scenario_id"] for r in rows})
    figs = []
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
    width = 0.8 / max(len(days), 1)
    for j, d in enumerate(days):
        by = {r["scenario_id"]: r for r in rows if r["date"] == d}
        x = np.arange(len(scen)) + j * width
        axes[0].bar(x, [by.get(s, {}).get("share", 0) * 100 for s in scen], width, label=d)
        axes[1].bar(x, [by.get(s, {}).get("ctr", 0) * 100 for s in scen], width, label=d)
    for ax, title in zip(axes, ("traffic share (%)", "CTR (%)")):
        ax.set_xticks(np.arange(len(scen)))
        ax.set_xticklabels(scen, rotation=90, fontsize=7)
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    figs.append(("Scenario shares and CTRs", _png(fig)))
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
    fcs = np.array([r["fc"] for r in fc_rows]) if fc_rows else np.ones(1)
    weights = np.array([r["pv"] for r in fc_rows]) if fc_rows else np.ones(1)
    axes[0].hist(fcs, bins=50, weights=weights)
    axes[0].set_title("Fairness Coefficient, weighted by samples" + (" (bootstrap: all 1)" if report["fc"]["bootstrap"] else ""))
    nos = report["scenarios_per_user"]
    axes[1].bar([n["scenarios"] for n in nos], [n["users"] for n in nos])
    axes[1].set_title("scenarios visited per user")
    figs.append(("Fairness Coefficients and cross-scenario users", _png(fig)))
    plt.close(fig)
    table = "".join(
        f"<tr><td>{html.escape(r['date'])}</td><td>{html.escape(r['scenario_id'])}</td><td>{r.get('samples', 0)}</td>"
        f"<td>{r['share']:.4f}</td><td>{r.get('clicks', 0)}</td><td>{r['ctr']:.4f}</td>"
        f"<td>{r.get('distinct_users', 0)}</td><td>{r.get('distinct_items', 0)}</td>"
        f"<td>{r.get('fc_p10', 1):.3f}</td><td>{r.get('fc_p50', 1):.3f}</td><td>{r.get('fc_p90', 1):.3f}</td></tr>"
        for r in rows)
    drift = "".join(f"<li>{d['from']} → {d['to']}: total variation {d['tvd']:.4f}</li>" for d in report["share_drift"])
    images = "".join(f"<h2>{t}</h2><img src='data:image/png;base64,{b}'/>" for t, b in figs)
    fc = report["fc"]
    return (
        "<html><head><meta charset='utf-8'><title>msrec scenario statistics</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}</style></head><body>"
        f"<h1>Scenario statistics</h1><p>FC: bootstrap={fc['bootstrap']}, mean={fc['mean']:.4f}, "
        f"p10={fc['p10']:.4f}, p90={fc['p90']:.4f}, shrinkage k={fc['shrink_k']}</p>{images}"
        f"<h2>Share drift</h2><ul>{drift or '<li>one day only</li>'}</ul>"
        "<h2>Per scenario and day</h2><table><tr><th>date</th><th>scenario</th><th>samples</th><th>share</th>"
        "<th>clicks</th><th>CTR</th><th>users</th><th>items</th><th>FC p10</th><th>FC p50</th><th>FC p90</th></tr>"
        f"{table}</table></body></html>")
