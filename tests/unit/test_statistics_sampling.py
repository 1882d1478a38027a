"""SampledStatisticsGen's rate per split: about MAX_EXAMPLES examples of a long split, every example of
a short one."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from msrec.components.statistics_gen.component import sample_rates


@given(st.dictionaries(st.sampled_from(["train", "val", "eval"]), st.integers(0, 10_000_000)),
       st.integers(1, 1_000_000))
def test_a_split_keeps_about_max_examples(counts, max_examples):
    rates = sample_rates(counts, max_examples)
    assert rates.keys() == counts.keys()
    for split, n in counts.items():
        assert 0.0 < rates[split] <= 1.0
        if n <= max_examples:
            assert rates[split] == 1.0  # a short split is profiled whole
        else:
            assert abs(rates[split] * n - max_examples) < 1e-6 * n
