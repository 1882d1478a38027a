"""SampledStatisticsGen: TFX's StatisticsGen, profiling about ``MAX_EXAMPLES`` examples of each split.

The statistics feed only ExampleValidator (and the AnomalyGate behind it), which checks the shape of
the data against the schema: which features are present and how often, their types, value counts
and domains. TFDV samples whole record batches (Beam sizes them, at most 1,000 examples each), so a
split above the limit is profiled on at least a hundred batches spread over the split; that estimates
those fractions to about a percent, and LogExampleGen has already checked every record on its own (a
malformed one is quarantined with its reason, not left for the statistics to find). Profiling every example of a 1M-impression day
took 63 s; a split at most ``MAX_EXAMPLES`` long is profiled whole, as before. Each split's rate comes
from the example count LogExampleGen records on its artifact (``num_<split>``), through TFX's own
``sample_rate_by_split``.
"""
from __future__ import annotations

import json
from typing import Any

from tfx import types
from tfx.components import StatisticsGen
from tfx.components.statistics_gen import executor as statistics_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs

MAX_EXAMPLES = 100_000


def sample_rates(counts: dict[str, int], max_examples: int) -> dict[str, float]:
    """The rate that keeps about ``max_examples`` examples of each split (1.0: the whole split)."""
    return {split: min(1.0, max_examples / n) if n > 0 else 1.0 for split, n in counts.items()}


def split_counts(examples: types.Artifact) -> dict[str, int]:
    """Example count of each split, as LogExampleGen records them (splits without one are left out)."""
    counts = {}
    for split in artifact_utils.decode_split_names(examples.split_names):
        key = f"num_{split}"
        if examples.has_custom_property(key):
            counts[split] = int(examples.get_int_custom_property(key))
    return counts


class Executor(statistics_executor.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        examples = artifact_utils.get_single_instance(input_dict[standard_component_specs.EXAMPLES_KEY])
        rates = sample_rates(split_counts(examples), MAX_EXAMPLES)
        super().Do(input_dict, output_dict,
                   {**exec_properties, standard_component_specs.SAMPLE_RATE_BY_SPLIT_KEY: json.dumps(rates)})


class SampledStatisticsGen(StatisticsGen):
    """StatisticsGen whose splits are sampled down to ``MAX_EXAMPLES`` examples each."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
