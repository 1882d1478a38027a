"""The report's gate plot (candidate vs production per scenario, with intervals) and the backfill's
AUC-by-day table and page."""
import base64
import math
import re

from msrec.pipeline import report


def metrics(overall, **scenarios):
    return {"overall": {"auc": overall, "count": 20_000, "mean_label": 0.03},
            "per_scenario": {s: {"auc": a, "count": n, "mean_label": 0.03, "logloss": 0.1}
                             for s, (a, n) in scenarios.items()}}


def day(date, auc, prod_auc, pushed, mode="incremental", days=("d",), epochs=3):
    return {"date": date, "model": "sarnet", "metrics": metrics(auc, s01=(auc, 5_000)),
            "blessed_model_metrics": metrics(prod_auc, s01=(prod_auc, 5_000)) if prod_auc else None,
            "blessed": pushed, "pushed_version": 100 + int(date[-1]) if pushed else None,
            "training": {"mode": mode, "days": list(days), "epochs_run": epochs, "mode_reason": "why"}}


def _pngs(page):
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]


def test_the_run_page_embeds_the_candidate_and_production_plot():
    rep = {**day("2026-11-02", 0.70, 0.68, True), "window": 2, "auc_floor": 0.55, "gated_scenarios": ["s01"],
           "counts": {"read": 1, "accepted": 1, "quarantined": 0}, "blessing_reason": "ok"}
    rep["metrics"]["per_scenario"]["s02"] = {"auc": 0.52, "count": 300, "mean_label": 0.03, "logloss": 0.1}
    page = report.render_html(rep)
    [png] = _pngs(page)
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    assert "training mode incremental (why), days trained on: d" in page


def test_a_slice_without_clicks_is_not_plotted_at_auc_zero():
    assert math.isnan(report.plotted_auc({"auc": 0.0, "mean_label": 0.0, "count": 146}))
    assert report.plotted_auc({"auc": 0.61, "mean_label": 0.05, "count": 146}) == 0.61


def test_the_backfill_table_sets_each_day_beside_the_oracle(tmp_path):
    reports = [day("2026-11-01", 0.60, None, True, "full", ("2026-11-01",)),
               day("2026-11-02", 0.65, 0.61, True, days=("2026-11-02",)),
               day("2026-11-03", 0.64, 0.66, False, days=("2026-11-03",), epochs=2)]
    oracle = {"2026-11-01": 0.75, "2026-11-02": 0.76, "2026-11-03": 0.74}
    expected = {"2026-11-02": {"candidate": 0.66, "oracle": 0.745}}
    lines = report.format_backfill(reports, oracle, expected).splitlines()
    assert lines[1].split()[:4] == ["2026-11-01", "0.6000", "0.7500", "0.1500"]
    assert lines[1].split()[4] == "nan" and "full" in lines[1]
    second = lines[2].split()
    assert second[:5] == ["2026-11-02", "0.6500", "0.7600", "0.1100", "0.6100"] and second[5:7] == ["True", "102"]
    assert lines[3].split()[5:9] == ["False", "None", "incremental", "2"]
    assert second[9:12] == ["0.6600", "0.7450", "0.0850"] and lines[3].split()[9:12] == ["nan"] * 3
    path = report.write_backfill(str(tmp_path), reports, oracle, expected)
    page = open(path).read()
    assert path.endswith("reports/backfill.html") and len(_pngs(page)) == 1 and "2026-11-03/report.html" in page
