"""Properties of the Fairness Coefficient (SAR-Net eq. 1) and of its shrinkage rule."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from msrec.components.fairness_gen.fairness import Exposure, fairness_coefficients, shrink, sum_exposures

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


def test_fairness_gen_reads_keys_in_batches_and_appends_the_fc_without_touching_the_rest():
    import tensorflow as tf

    from msrec.components.fairness_gen.component import ScoredBatch, _exposures, _key_columns, with_fc

    def example(user: str, item: str, click: int) -> bytes:
        b = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))  # noqa: E731
        return tf.train.Example(features=tf.train.Features(feature={
            "date": b("2026-11-01"), "scenario_id": b("s01"), "item_id": b(item), "user_id": b(user),
            "click": tf.train.Feature(int64_list=tf.train.Int64List(value=[click])),
            "seq_item_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"i1", b"i2"]))})).SerializeToString()

    batch = [example("u1", "i7", 1), example("u2", "i9", 0), example("u3", "i7", 0)]
    keys, click = _key_columns(batch)
    assert keys == {"date": ["2026-11-01"] * 3, "scenario_id": ["s01"] * 3, "item_id": ["i7", "i9", "i7"],
                    "user_id": ["u1", "u2", "u3"]}
    assert click.tolist() == [1, 0, 0]
    scored = ScoredBatch(["train", "eval", "train"], batch, keys, click, np.array([0.5, 0.25, 0.125]))
    # exposures are summed within the batch: one row per (day, scenario, item)
    assert dict(_exposures(scored)) == {("2026-11-01", "s01", "i7"): Exposure(2, 0.625),
                                        ("2026-11-01", "s01", "i9"): Exposure(1, 0.25)}
    # an (item, scenario, day) missing from the table is neutral
    out = with_fc(scored, {("2026-11-01", "s01", "i7"): (2, 0.625, 0.25)})
    for serialized, user, fc in zip(out, ("u1", "u2", "u3"), (0.25, 1.0, 0.25)):
        parsed = tf.train.Example.FromString(serialized).features.feature
        assert parsed["fairness_coef"].float_list.value[:] == [fc]
        assert parsed["seq_item_id"].bytes_list.value[:] == [b"i1", b"i2"]
        assert parsed["user_id"].bytes_list.value[:] == [user.encode()]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=0.01, max_value=5.0), st.integers(min_value=1, max_value=20)),
                min_size=1, max_size=40))
def test_weighted_quantiles_are_the_quantiles_of_the_repeated_values(rows):
    """The FC distribution over samples, read from the FC table (one row per item with its sample
    count), is the distribution of the samples' FCs."""
    from msrec.components.fairness_gen.scenario_stats import weighted_quantiles

    values, weights = (np.array(c, dtype=np.float64) for c in zip(*rows))
    repeated = np.repeat(values, weights.astype(int))
    expected = np.quantile(repeated, np.linspace(0, 1, 11), method="inverted_cdf")
    np.testing.assert_array_equal(weighted_quantiles(values, weights), expected)
