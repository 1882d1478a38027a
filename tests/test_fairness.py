"""Properties of the Fairness Coefficient (SAR-Net eq. 1) and of its shrinkage rule."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from msrec.components.fairness import Exposure, fairness_coefficients, shrink, sum_exposures

# One scenario-day: for each item, the predicted CTRs of its samples.
samples = st.dictionaries(
    keys=st.text(alphabet="abcdefgh", min_size=1, max_size=3),
    values=st.lists(st.floats(min_value=1e-4, max_value=1.0), min_size=1, max_size=30),
    min_size=1, max_size=12)


def _exposures(preds: dict[str, list[float]]) -> dict[str, Exposure]:
    return {i: sum_exposures(Exposure(1, p) for p in ps) for i, ps in preds.items()}


@settings(max_examples=200, deadline=None)
@given(samples)
def test_fc_is_item_mean_prediction_over_scenario_mean_prediction(preds):
    fc = fairness_coefficients(_exposures(preds), k=0.0)
    scenario_mean = np.mean([p for ps in preds.values() for p in ps])
    for item, ps in preds.items():
        assert np.isclose(fc[item], np.mean(ps) / scenario_mean, rtol=1e-9)


@settings(max_examples=200, deadline=None)
@given(samples)
def test_unshrunk_fc_averages_to_one_over_samples(preds):
    """sum_i PV(i,s) FC(i,s) = sum_i PV(i,s): the coefficients redistribute, never inflate."""
    exp = _exposures(preds)
    fc = fairness_coefficients(exp, k=0.0)
    assert np.isclose(sum(exp[i].pv * fc[i] for i in exp), sum(e.pv for e in exp.values()))


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.01, max_value=20), st.integers(min_value=0, max_value=10_000),
       st.floats(min_value=0.0, max_value=500))
def test_shrinkage_moves_toward_one_and_never_past_it(fc, pv, k):
    s = float(shrink(fc, pv, k))
    assert min(fc, 1.0) - 1e-9 <= s <= max(fc, 1.0) + 1e-9
    assert abs(s - 1.0) <= abs(fc - 1.0) + 1e-9


def test_shrinkage_rule_values():
    assert float(shrink(0.2, 0, 20)) == 1.0  # never seen: neutral
    assert np.isclose(float(shrink(0.2, 20, 20)), 0.6)  # PV = k: halfway
    assert np.isclose(float(shrink(0.2, 1e9, 20)), 0.2, atol=1e-6)  # plenty of data: the raw FC


def test_inflated_item_gets_fc_below_one():
    # An item pushed to uninterested users: many samples with low predicted CTR.
    exp = {"organic": Exposure(100, 100 * 0.06), "pushed": Exposure(400, 400 * 0.02)}
    fc = fairness_coefficients(exp, k=20)
    assert fc["pushed"] < 1.0 < fc["organic"]


def test_all_zero_predictions_are_neutral():
    assert fairness_coefficients({"a": Exposure(3, 0.0), "b": Exposure(2, 0.0)}) == {"a": 1.0, "b": 1.0}
