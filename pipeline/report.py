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

from msrec.auc import auc_standard_error
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
        "examples_uri": _uri_path(gen.get("examples")),
    }
    stats_art = outputs.get("FairnessGen", {}).get("scenario_stats")
    if stats_art is not None:
        stats = load_stats(stats_art.uri)
        rep["fc"] = {k: stats["fc"][k] for k in ("bootstrap", "mean", "p10", "p90")}
        rep["scenario_stats_html"] = os.path.join(stats_art.uri, "scenario_stats.html")
    blessing = outputs.get("ScenarioBlessing", {}).get("scenario_blessing")
    if blessing is not None:
        decision = load_blessing(blessing.uri)
        rep["metrics"] = decision["candidate"]
        rep["blessed"], rep["blessing_reason"] = decision["blessed"], decision["reason"]
        rep["auc_floor"] = decision["rule"]["auc_floor"]
        rep["gated_scenarios"] = sorted(s for s, m in decision["candidate"]["per_scenario"].items()
                                        if m["count"] >= decision["rule"]["min_slice_size"])
        if decision["baseline"]:
            rep["blessed_model_metrics"] = decision["baseline"]
            rep["relaimpr_vs_blessed_pct"] = relaimpr(decision["candidate"]["overall"]["auc"],
                                                      decision["baseline"]["overall"]["auc"])
    pushed = outputs.get("AtomicPusher", {}).get("pushed_model")
    if pushed is not None:
        rep["pushed_version"] = int(_custom(pushed, "pushed_version")) if _custom(pushed, "pushed") else None
    model = outputs.get("Trainer", {}).get("model")
    if model is not None:
        from tfx.utils import path_utils

        rep["model_uri"] = path_utils.serving_model_path(model.uri)  # the candidate, pushed or not
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


CI_Z = 1.96  # the plots' 95% confidence intervals


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _stop_reason(training: Mapping[str, Any]) -> str:
    if not training.get("stopped_on_drop"):
        return ""
    into = training.get("second_epoch_stopped_at")
    return f"; stopped {into:.0%} into epoch 2 on a fall beyond the noise" if into else \
        "; stopped on a fall beyond the noise"


def plotted_auc(row: Mapping[str, Any]) -> float:
    """A slice's AUC, NaN when it holds one class only (TFMA then reports 0, which is no AUC)."""
    return math.nan if row.get("mean_label") in (0.0, 1.0) else row.get("auc", math.nan)


def _auc_plot(rep: Mapping[str, Any]) -> str:
    """Candidate and production AUC per scenario with 95% intervals (Hanley-McNeil), the floor, and
    the gated scenarios' labels in bold."""
    plt = _pyplot()
    models = [("candidate", rep["metrics"], "C0")]
    if rep.get("blessed_model_metrics"):
        models.append(("production", rep["blessed_model_metrics"], "C1"))
    names = ["overall", *sorted(rep["metrics"]["per_scenario"])]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names)), 4))
    for k, (label, metrics, color) in enumerate(models):
        rows = [metrics["overall"] if n == "overall" else metrics["per_scenario"].get(n, {}) for n in names]
        auc = [plotted_auc(r) for r in rows]
        err = [CI_Z * auc_standard_error(a, r.get("count", 0), r.get("mean_label", math.nan)) for a, r in zip(auc, rows)]
        x = [i + (k - (len(models) - 1) / 2) * 0.25 for i in range(len(names))]
        ax.errorbar(x, auc, yerr=err, fmt="o", ms=4, capsize=2, color=color, label=f"{label} (95% CI)")
    floor = rep.get("auc_floor")
    if floor is not None:
        ax.axhline(floor, color="r", ls=":", lw=1, label=f"floor {floor:g}")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    gated = set(rep.get("gated_scenarios", []))
    for tick, name in zip(ax.get_xticklabels(), names):
        tick.set_fontweight("bold" if name == "overall" or name in gated else "normal")
    ax.set_ylabel("AUC on the eval split")
    ax.set_title(f"{rep['model']} {rep['date']}: candidate vs production, per scenario (bold: gated)")
    ax.legend(fontsize=8)
    return _png(fig)


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
        lines.append(f"RelaImpr vs the production model: {rep['relaimpr_vs_blessed_pct']:+.2f}%")
    if "blessed" in rep:
        lines.append(f"blessed {rep['blessed']}: {rep['blessing_reason']}")
    if "pushed_version" in rep:
        lines.append(f"pushed version {rep['pushed_version']}" if rep["pushed_version"] else "not pushed")
    if rep.get("training"):
        t = rep["training"]
        if "mode" in t:
            lines.append(f"training mode {t['mode']} ({t['mode_reason']}), days trained on: "
                         f"{', '.join(t['days']) or 'none'}")
        if "examples" in t:
            lines.append(f"training: {t['examples']} examples in {t['seconds']:.1f}s = "
                         f"{t['examples_per_s']:.0f} examples/s, {t['params']} parameters")
        if "best_epoch" in t:
            lines.append(f"  epochs {t['epochs_run']} of at most {t['max_epochs']} at learning rate {t['learning_rate']:g}, "
                         f"best epoch {t['best_epoch']}: "
                         f"validation AUC {t['best_val_auc']:.4f} (per epoch: "
                         + " ".join(f"{a:.4f}" for a in t["val_auc"]) + ")"
                         + _stop_reason(t))
    if rep.get("timings_s"):
        lines.append("component wall times: " + ", ".join(f"{k} {v:.1f}s" for k, v in rep["timings_s"].items()))
    if rep.get("error"):
        lines.append(f"RUN FAILED: {rep['error']}")
    return "\n".join(lines)


def print_report(rep: Mapping[str, Any]) -> None:
    print(format_report(rep), flush=True)


def format_summary(rep: Mapping[str, Any]) -> str:
    """A few lines per day of a backfill; the whole report is in the day's report.json / report.html."""
    c = rep.get("counts", {})
    lines = [f"  read {c.get('read', 0)}  accepted {c.get('accepted', 0)}  quarantined {c.get('quarantined', 0)}"]
    if "metrics" in rep:
        lines[0] += f"  ·  eval AUC {rep['metrics']['overall'].get('auc', math.nan):.4f}"
    if "relaimpr_vs_blessed_pct" in rep:
        lines[0] += f"  ·  RelaImpr vs production {rep['relaimpr_vs_blessed_pct']:+.2f}%"
    if "mode" in rep.get("training", {}):
        t = rep["training"]
        lines.append(f"  {t['mode']} training on {', '.join(t['days']) or 'no new day'}, {t['epochs_run']} epochs: "
                     f"{t['mode_reason']}")
    if "blessed" in rep:
        pushed = f"pushed version {rep['pushed_version']}" if rep.get("pushed_version") else "not pushed"
        lines.append(f"  blessed {rep['blessed']}, {pushed}: {rep['blessing_reason']}")
    if rep.get("error"):
        lines.append(f"  RUN FAILED: {rep['error']}")
    return "\n".join(lines)


BACKFILL_HTML = "backfill.html"


def _overall_auc(metrics: Mapping[str, Any] | None) -> float:
    return (metrics or {}).get("overall", {}).get("auc", math.nan)


Expected = Mapping[str, Mapping[str, float]]  # date -> {"candidate", "oracle"}: oracle.expected_by_day


def format_backfill(reports: list[Mapping[str, Any]], oracle: Mapping[str, float] | None = None,
                    expected: Expected | None = None) -> str:
    """One line per day: the candidate's eval AUC (beside the oracle's when known), production's on
    the same rows, the decision, how the candidate was trained, and (when known) the candidate's and
    the oracle's expected AUC over the click draws and the gap between them."""
    oracle, expected = oracle or {}, expected or {}
    lines = [f"{'date':<12}{'AUC':>8}{'oracle':>8}{'gap':>8}{'prod AUC':>9}{'blessed':>8}{'pushed':>12}"
             f"{'mode':>12}{'epochs':>7}{'E[AUC]':>8}{'E[orcl]':>8}{'E[gap]':>8}  days trained on"]
    for r in reports:
        auc, gold = _overall_auc(r.get("metrics")), oracle.get(r["date"], math.nan)
        mean = expected.get(r["date"], {})
        e_auc, e_gold = mean.get("candidate", math.nan), mean.get("oracle", math.nan)
        t = r.get("training", {})
        lines.append(f"{r['date']:<12}{auc:>8.4f}{gold:>8.4f}{gold - auc:>8.4f}"
                     f"{_overall_auc(r.get('blessed_model_metrics')):>9.4f}{str(r.get('blessed')):>8}"
                     f"{str(r.get('pushed_version')):>12}{t.get('mode', '-'):>12}{t.get('epochs_run', '-'):>7}"
                     f"{e_auc:>8.4f}{e_gold:>8.4f}{e_gold - e_auc:>8.4f}  {', '.join(t.get('days', [])) or '-'}")
    return "\n".join(lines)


def print_backfill(reports: list[Mapping[str, Any]], oracle: Mapping[str, float] | None = None,
                   expected: Expected | None = None) -> None:
    print("\n" + format_backfill(reports, oracle, expected), flush=True)


def _backfill_plot(reports: list[Mapping[str, Any]], oracle: Mapping[str, float], expected: Expected) -> str:
    plt = _pyplot()
    dates = [r["date"] for r in reports]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(dates)), 4))
    ax.plot(dates, [_overall_auc(r.get("metrics")) for r in reports], "o-", label="candidate")
    ax.plot(dates, [_overall_auc(r.get("blessed_model_metrics")) for r in reports], "s--",
            label="production (on the same eval rows)")
    if oracle:
        ax.plot(dates, [oracle.get(d, math.nan) for d in dates], "k^:", label="oracle (true click probabilities)")
    if expected:
        for key, style, label in (("candidate", "C0x-.", "candidate, expected over click draws"),
                                  ("oracle", "kv-.", "oracle, expected over click draws")):
            ax.plot(dates, [expected.get(d, {}).get(key, math.nan) for d in dates], style, alpha=0.6, label=label)
    for i, r in enumerate(reports):
        if r.get("pushed_version"):
            ax.annotate("pushed", (i, _overall_auc(r.get("metrics"))), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=7)
    ax.set_ylabel("overall AUC on the eval split")
    ax.set_title(f"{reports[0]['model']}: AUC by day")
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    ax.legend(fontsize=8)
    return _png(fig)


def write_backfill(workdir: str, reports: list[Mapping[str, Any]], oracle: Mapping[str, float] | None = None,
                   expected: Expected | None = None) -> str:
    """<workdir>/reports/backfill.html: the AUC-by-day plot and the table; returns its path."""
    path = os.path.join(workdir, "reports", BACKFILL_HTML)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    parts = [f"<h1>msrec backfill {html.escape(reports[0]['date'])} .. {html.escape(reports[-1]['date'])}</h1>",
             f"<img src='data:image/png;base64,{_backfill_plot(reports, oracle or {}, expected or {})}'/>",
             f"<pre>{html.escape(format_backfill(reports, oracle, expected))}</pre>"]
    parts += [f"<p><a href='{html.escape(r['date'])}/{REPORT_HTML}'>{html.escape(r['date'])}</a></p>" for r in reports]
    with open(path, "w") as fh:
        fh.write("<html><head><meta charset='utf-8'></head><body style='font-family:sans-serif'>"
                 + "".join(parts) + "</body></html>")
    return path


def finish_backfill(workdir: str, reports: list[Mapping[str, Any]], truth: str | None = None) -> str:
    """Print the backfill's table and write its page, with the oracle and the expected AUCs from
    ``truth`` (the generator's truth/ folder) when given; returns the page's path."""
    from msrec.pipeline.oracle import expected_by_day, oracle_by_day

    oracle = oracle_by_day(reports, truth) if truth else None
    expected = expected_by_day(reports, truth) if truth else None
    print_backfill(reports, oracle, expected)
    return write_backfill(workdir, reports, oracle, expected)
