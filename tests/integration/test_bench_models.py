"""The arithmetic of ``msrec bench models``' table: the sample-weighted per-scenario AUC and the
summary over seeds."""
import math

import pytest

from msrec.bench.models import format_table, parse_models, reusable_runs, scenario_auc, summarise


def test_scenario_auc_is_the_sample_weighted_mean_of_known_scenarios():
    assert scenario_auc({"a": 0.7, "b": 0.7}, {"a": 10, "b": 990}) == pytest.approx(0.7)
    assert scenario_auc({"a": 0.6, "b": 0.8}, {"a": 1, "b": 3}) == pytest.approx(0.75)
    # a scenario without eval samples, or with one class only (NaN AUC), carries no weight
    assert scenario_auc({"a": 0.6, "b": math.nan, "oov": 0.9}, {"a": 5, "b": 5}) == pytest.approx(0.6)


def test_summary_averages_seeds_and_measures_relaimpr_against_the_best_baseline():
    counts = {"s1": 100, "s2": 300}

    def run(model, seed, auc, s1, s2):
        return {"model": model, "seed": seed, "auc": auc, "per_scenario": {"s1": s1, "s2": s2}, "logloss": 0.2,
                "params": 10, "train_examples_per_s": 1000.0, "infer_ms_per_2000": 5.0}

    runs = [run("sarnet", 0, 0.72, 0.70, 0.70), run("sarnet", 1, 0.74, 0.70, 0.74),
            run("mix", 0, 0.70, 0.66, 0.66), run("mmoe", 0, 0.69, 0.65, 0.65)]
    oracle = {"overall": 0.8, "per_scenario": {"s1": 0.78, "s2": 0.79}, "scenario_weighted": 0.7875}
    summary = summarise(runs, ["sarnet", "mix", "mmoe"], oracle, counts)
    sarnet = summary["models"]["sarnet"]
    assert summary["best_baseline"] == "mix" and summary["best_baseline_scenario_auc"] == "mix"
    assert sarnet["auc_mean"] == pytest.approx(0.73) and sarnet["auc_std"] == pytest.approx(0.01)
    assert sarnet["scenario_auc_mean"] == pytest.approx((0.70 + 0.73) / 2)
    assert sarnet["relaimpr_vs_best_baseline_pct"] == pytest.approx((0.23 / 0.20 - 1) * 100)
    assert summary["models"]["mix"]["relaimpr_scenario_auc_pct"] == pytest.approx(0.0)
    table = format_table(summary)
    assert "scen. AUC" in table and "overall AUC" in table
    sarnet_line = next(line for line in table.splitlines() if line.startswith("sarnet "))
    assert "0.7300" in sarnet_line and "0.7150" in sarnet_line  # a row per model: overall, scenario AUC


def test_a_resumed_run_trains_again_what_an_older_recipe_trained():
    journal = [{"model": "mix", "seed": 0, "auc": 0.70},  # before the prior: no "prior" recorded
               {"model": "mix", "seed": 1, "prior": False, "auc": 0.70, "best_epoch": 2},
               {"model": "mmoe", "seed": 1, "prior": True, "auc": 0.70},  # before early stopping
               {"model": "mmoe", "seed": 0, "prior": True, "auc": 0.71, "best_epoch": 3}]
    rows = {"mix": {}, "mmoe": {}}
    assert reusable_runs(journal, rows) == {("mmoe", 0): journal[3]}
    assert reusable_runs(journal, {"mix": {}}) == {}  # not a row of this table
    tuned = [{**journal[3], "hparams": {"embedding_dim": 8}}]
    assert reusable_runs(tuned, rows) == {}
    assert reusable_runs(tuned, {"mmoe": {"embedding_dim": 8}}) == {("mmoe", 0): tuned[0]}


def test_models_parse_into_rows_with_their_overrides():
    rows = parse_models("sarnet, sarnet[attention=concat],hmdn_mmoe[refiner=explicit,depth=4,use_x=true],mix")
    assert rows == [("sarnet", "sarnet", {}), ("sarnet[attention=concat]", "sarnet", {"attention": "concat"}),
                    ("hmdn_mmoe[refiner=explicit,depth=4,use_x=true]", "hmdn_mmoe",
                     {"refiner": "explicit", "depth": 4, "use_x": True}),
                    ("mix", "mix", {})]
    for bad in ("sarnet[attention]", "sarnet[attention=concat", "sarnet]"):
        with pytest.raises(ValueError):
            parse_models(bad)


def test_an_unknown_hparam_of_an_ablation_row_fails_before_the_window_is_prepared(capsys):
    from msrec.cli import main

    assert main(["bench", "models", "--models", "mix,sarnet[no_such_hparam=1]"]) == 2
    err = capsys.readouterr().err
    assert "msrec bench models: error:" in err and "no_such_hparam" in err
