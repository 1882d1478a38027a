"""The blessing rule: floors and no regression beyond delta, overall and in every scenario big
enough to judge; the reason names what failed."""
import math

import pytest

from msrec.pipeline.evaluation import BlessingRule, decide
from msrec.pipeline.report import relaimpr

RULE = BlessingRule(auc_floor=0.6, auc_delta=0.01, min_slice_size=100)


def metrics(overall: float, **scenarios: tuple[float, int]) -> dict:
    return {"overall": {"auc": overall, "count": sum(n for _, n in scenarios.values())},
            "per_scenario": {s: {"auc": a, "count": n} for s, (a, n) in scenarios.items()}}


def test_blessed_when_every_gated_scenario_clears_the_floor_without_a_baseline():
    ok, reason = decide(metrics(0.7, s01=(0.65, 500), s02=(0.62, 300)), None, RULE)
    assert ok and "2 scenarios" in reason and "no blessed model yet" in reason


def test_a_scenario_below_the_floor_fails_and_is_named():
    ok, reason = decide(metrics(0.7, s01=(0.65, 500), s02=(0.58, 300)), None, RULE)
    assert not ok and "scenario s02" in reason and "floor" in reason and "s01" not in reason


def test_small_scenarios_are_reported_not_gated():
    ok, _ = decide(metrics(0.7, s01=(0.65, 500), tiny=(0.40, 99)), None, RULE)
    assert ok


def test_regression_against_the_blessed_model_beyond_delta_fails():
    base = metrics(0.7, s01=(0.70, 500))
    assert decide(metrics(0.7, s01=(0.695, 500)), base, RULE)[0]  # within delta
    ok, reason = decide(metrics(0.7, s01=(0.68, 500)), base, RULE)
    assert not ok and "scenario s01" in reason and "blessed model" in reason


def test_nan_auc_fails():
    ok, reason = decide(metrics(math.nan, s01=(0.7, 500)), None, RULE)
    assert not ok and "overall" in reason


def test_relaimpr_matches_the_papers_definition():
    assert relaimpr(0.6811, 0.6768) == pytest.approx(((0.1811 / 0.1768) - 1) * 100)
    assert relaimpr(0.7, 0.7) == 0.0
