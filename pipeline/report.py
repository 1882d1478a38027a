"""The run report: ``reports/<date>/report.json`` (stable keys), a printed table, and an HTML page
with the per-scenario AUC plot beside the scenario statistics."""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from typing import Any, Mapping

from msrec.pipeline.pipeline import DailyRun

# From counts.json: read = accepted + quarantined + duplicates_dropped
COUNT_KEYS = ("read", "accepted", "quarantined", "quarantine_rate", "duplicates", "duplicates_dropped")
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


def _custom(artifact: Any, key: str) -> Any:
    if artifact is None or key not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[key]
    return getattr(value, value.WhichOneof("value"))


def _uri_path(artifact: Any) -> str | None:
    return artifact.uri if artifact is not None else None


def _read_json(path: str | None) -> dict[str, Any] | None:
    if path and os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)
    return None


def relaimpr(auc: float, base_auc: float) -> float:
    """RelaImpr (SAR-Net eq. 13), in percent: relative AUC lift over a random model's 0.5."""
    return ((auc - 0.5) / (base_auc - 0.5) - 1.0) * 100.0


def build(run: DailyRun, outputs: Mapping[str, Mapping[str, Any]], timings: Mapping[str, float], wall_s: float,
          error: BaseException | None) -> dict[str, Any]:
    from msrec.components.fairness_gen.component import load_stats
    from msrec.components.scenario_blessing.component import load_blessing
    from msrec.components.log_example_gen.layout import COUNTS_FILE

    gen = outputs.get("LogExampleGen", {})
    counts = _read_json(os.path.join(gen["quarantine"].uri, COUNTS_FILE)) if "quarantine" in gen else None
    rep: dict[str, Any] = {
        "date": run.date,
        "model": run.model,
        "window": run.window,
        "counts": {k: (counts or {}).get(k) for k in COUNT_KEYS},
        "quarantine_reasons": (counts or {}).get("reasons", {}),
        # how much of the day could not be read: damaged (truncated, corrupt) files
        "damaged_files": (counts or {}).get("damaged_files", []),
        "quarantine_uri": _uri_path(gen.get("quarantine")),
    }
    stats_art = outputs.get("FairnessGen", {}).get("scenario_stats")
    if stats_art is not None:
        stats = load_stats(stats_art.uri)
        rep["fc"] = {k: stats["fc"][k] for k in ("bootstrap", "mean", "p10", "p90")}
        rep["scenario_stats_html"] = os.path.join(stats_art.uri, "scenario_stats.html")
    blessing = outputs.get("ScenarioBlessing", {}).get("blessing")
    if blessing is not None:
        decision = load_blessing(blessing.uri)
        rep["metrics"] = decision["candidate"]
        rep["blessed"], rep["blessing_reason"] = decision["blessed"], decision["reason"]
        if decision["baseline"]:
            rep["blessed_model_metrics"] = decision["baseline"]
            rep["relaimpr_vs_blessed_pct"] = relaimpr(decision["candidate"]["overall"]["auc"],
                                                      decision["baseline"]["overall"]["auc"])
    pushed = outputs.get("AtomicPusher", {}).get("pushed_model")
    if pushed is not None:
        rep["pushed_version"] = int(_custom(pushed, "pushed_version")) if _custom(pushed, "pushed") else None
    run_art = outputs.get("Trainer", {}).get("model_run")
    training = _read_json(os.path.join(run_art.uri, "training_stats.json")) if run_art is not None else None
    if training:
        rep["training"] = training
    rep["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    rep["wall_s"] = round(wall_s, 2)
    if error is not None:
        anomalies = open(run.anomalies_path).read().strip() if os.path.exists(run.anomalies_path) else ""
        rep["error"] = f"anomalies in the day's data:\n{anomalies}" if anomalies else f"{type(error).__name__}: {error}"
    return rep


def clear_stale(run: DailyRun) -> None:
    """Remove what an earlier run of the same date left that this run's report would read as its
    own (the gates' anomalies), so a report only ever shows its run."""
    if os.path.exists(run.anomalies_path):
        os.remove(run.anomalies_path)


def write(run: DailyRun, rep: Mapping[str, Any]) -> None:
    os.makedirs(run.report_dir, exist_ok=True)
    with open(os.path.join(run.report_dir, REPORT_JSON), "w") as fh:
        json.dump(rep, fh, indent=1, default=str)
    with open(os.path.join(run.report_dir, REPORT_HTML), "w") as fh:
        fh.write(render_html(rep))


def _auc_plot(rep: Mapping[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = rep["metrics"]["per_scenario"]
    names = sorted(per)
    fig, ax = plt.subplots(figsize=(12, 3.5))
    ax.bar(names, [per[n]["auc"] for n in names])
    ax.axhline(rep["metrics"]["overall"].get("auc", math.nan), color="k", ls="--", label="overall")
    ax.set_ylim(0.45, 1.0)
    ax.set_title(f"{rep['model']}: per-scenario AUC on {rep['date']}")
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def render_html(rep: Mapping[str, Any]) -> str:
    parts = [f"<h1>msrec run {html.escape(rep['date'])} ({html.escape(rep['model'])})</h1>",
             f"<pre>{html.escape(format_report(rep))}</pre>"]
    if rep.get("metrics", {}).get("per_scenario"):
        parts.append(f"<img src='data:image/png;base64,{_auc_plot(rep)}'/>")
    if rep.get("scenario_stats_html"):
        parts.append(f"<p><a href='file://{html.escape(rep['scenario_stats_html'])}'>scenario statistics, "
                     "shares and FC distribution</a></p>")
    return "<html><head><meta charset='utf-8'></head><body style='font-family:sans-serif'>" + "".join(parts) + "</body></html>"


def format_report(rep: Mapping[str, Any]) -> str:
    c = rep["counts"]
    lines = [f"date {rep['date']}  model {rep['model']}  window {rep['window']}  wall {rep.get('wall_s', 0):.0f}s",
             f"read {c['read']}  accepted {c['accepted']}  quarantined {c['quarantined']}"]
    if c.get("quarantine_rate") is not None:
        lines[-1] += (f" ({c['quarantine_rate']:.2%})  duplicates {c['duplicates']}"
                      f" ({c['duplicates_dropped']} dropped)")
    for reason, n in sorted(rep.get("quarantine_reasons", {}).items()):
        lines.append(f"  quarantine {reason:<20} {n}")
    for d in rep.get("damaged_files", []):
        lines.append(f"  damaged file {d['file']}: {d['reason']}, {d['lines_read']} lines read, "
                     + (f"{d['bytes_unread']} bytes unread" if d["bytes_unread"] else "its end is missing"))
    if "fc" in rep:
        fc = rep["fc"]
        lines.append(f"FC bootstrap={fc['bootstrap']}  mean {fc['mean']:.4f}  p10 {fc['p10']:.4f}  p90 {fc['p90']:.4f}")
    if "metrics" in rep:
        o = rep["metrics"]["overall"]
        lines.append(f"overall AUC {o.get('auc', math.nan):.4f}  logloss {o.get('logloss', math.nan):.4f}  "
                     f"n {o.get('count', 0)}")
        lines.append(f"  {'scenario':<12}{'AUC':>8}{'logloss':>9}{'count':>8}")
        for sid, m in sorted(rep["metrics"]["per_scenario"].items()):
            lines.append(f"  {sid:<12}{m['auc']:>8.4f}{m['logloss']:>9.4f}{m['count']:>8}")
    if "relaimpr_vs_blessed_pct" in rep:
        lines.append(f"RelaImpr vs the blessed model: {rep['relaimpr_vs_blessed_pct']:+.2f}%")
    if "blessed" in rep:
        lines.append(f"blessed {rep['blessed']}: {rep['blessing_reason']}")
    if "pushed_version" in rep:
        lines.append(f"pushed version {rep['pushed_version']}" if rep["pushed_version"] else "not pushed")
    if rep.get("training"):
        t = rep["training"]
        lines.append(f"training: {t['examples']} examples in {t['seconds']:.1f}s = {t['examples_per_s']:.0f} examples/s, "
                     f"{t['params']} parameters")
    if rep.get("timings_s"):
        lines.append("component wall times: " + ", ".join(f"{k} {v:.1f}s" for k, v in rep["timings_s"].items()))
    if rep.get("error"):
        lines.append(f"RUN FAILED: {rep['error']}")
    return "\n".join(lines)


def print_report(rep: Mapping[str, Any]) -> None:
    print(format_report(rep), flush=True)


def print_backfill(reports: list[Mapping[str, Any]]) -> None:
    print(f"\n{'date':<12}{'blessed':>8}{'pushed':>12}{'AUC':>8}{'FC boot':>8}{'FC mean':>9}")
    for r in reports:
        auc = r.get("metrics", {}).get("overall", {}).get("auc", math.nan)
        print(f"{r['date']:<12}{str(r.get('blessed')):>8}{str(r.get('pushed_version')):>12}{auc:>8.4f}"
              f"{str(r.get('fc', {}).get('bootstrap')):>8}{r.get('fc', {}).get('mean', math.nan):>9.4f}")
