"""``msrec bench fairness`` on a tiny window with a click lift on forced impressions: FC from a blessed
model, three variants over seeds, organic and all AUC, top-K exposure of intervened items."""
import json
import math

import pytest

from msrec.bench.fairness import RESULTS, VARIANTS, FairnessBenchError, format_table, run
from msrec.data.truth import load_world

SEEDS = 2
LIFT = 0.7


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("fairness")
    run(str(out), days=4, per_day=6000, seeds=SEEDS, top_k=3, downsample_keep=0.2, forced_click_lift=LIFT,
        max_epochs=1)
    with open(out / RESULTS) as fh:
        return out, json.load(fh)


def test_every_variant_has_one_value_per_seed_in_range(bench):
    out, res = bench
    for key in ("organic_auc", "all_auc", "topk_intervened_share"):
        assert set(res[key]) == set(VARIANTS)
        for values in res[key].values():
            assert len(values) == SEEDS
            assert all(not math.isnan(v) and 0.0 <= v <= 1.0 for v in values)
    assert (out / "fairness.png").stat().st_size > 0
    assert res["machine"]["cores"] >= 1 and res["settings"]["seeds"] == SEEDS


def test_the_window_carries_the_forced_click_lift(bench):
    out, res = bench
    assert res["settings"]["forced_click_lift"] == LIFT
    assert load_world(out / "data")["forced_click_lift"] == LIFT
    assert format_table(res).splitlines()[0].startswith(f"forced click lift {LIFT:g} ")


def test_fc_comes_from_the_first_days_model_and_is_not_all_one(bench):
    _, res = bench
    fc = res["fc_train"]
    assert res["settings"]["fc_model_date"] < res["settings"]["train_dates"][0]
    assert fc["share_not_1"] > 0.5 and fc["min"] < 1.0 < fc["max"]


def test_downsample_trains_on_fewer_forced_impressions(bench):
    _, res = bench
    forced, total = res["train_forced_impressions"], res["train_impressions"]
    assert forced["sarnet_fc"] == forced["sarnet_no_fc"] > 0
    assert forced["downsample"] < 0.5 * forced["sarnet_no_fc"]
    # only forced impressions are dropped
    assert total["sarnet_no_fc"] - total["downsample"] == forced["sarnet_no_fc"] - forced["downsample"]
    assert res["eval"]["forced"] > 0 and res["eval"]["requests_over_k"] > 0


def test_too_short_a_window_is_a_clear_error(tmp_path):
    with pytest.raises(FairnessBenchError, match="at least 4"):
        run(str(tmp_path), days=3)


def test_a_second_run_reuses_the_window_the_train_files_and_the_runs(bench):
    out, res = bench
    again = run(str(out), days=4, per_day=6000, seeds=SEEDS, top_k=3, downsample_keep=0.2,
                forced_click_lift=LIFT, max_epochs=1)
    for key in ("organic_auc", "all_auc", "topk_intervened_share", "train_forced_impressions", "fc_train"):
        assert again[key] == res[key]
