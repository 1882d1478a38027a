import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest

from support.models import (SMALL, assert_probabilities, assert_reload_predicts_the_same,
                              assert_scenario_moves_every_prediction,
                              assert_scenario_rows_learn_only_from_their_scenario, batch, predict, small_spec,
                              train_auc, train_step, with_scenario)
from msrec.models.registry import build_model, default_hparams

HP = {**SMALL, "expert_units": (16,), "tower_units": (8,)}


@pytest.fixture(scope="module")
def spec():
    return small_spec()


@pytest.mark.parametrize("name", ["ple", "cgc"])
def test_output_is_a_probability_per_example(spec, name):
    x, _ = batch(spec, 32)
    assert_probabilities(predict(build_model(name, spec, HP), x), 32)


def test_cgc_is_ple_with_one_extraction_network(spec):
    assert default_hparams("cgc")["num_levels"] == 1 and default_hparams("ple")["num_levels"] == 2
    ple, cgc = build_model("ple", spec, HP), build_model("cgc", spec, HP)
    x, _ = batch(spec, 4)
    predict(ple, x), predict(cgc, x)
    assert len(ple.extraction_networks) == 2 and len(cgc.extraction_networks) == 1
    # The shared gate routes the shared branch to the next level, so only non-final levels have one.
    assert ple.extraction_networks[0].shared_gate is not None
    assert ple.extraction_networks[1].shared_gate is None and cgc.extraction_networks[0].shared_gate is None


@pytest.mark.parametrize("overrides", [
    {"num_levels": 3},
    {"num_specific_experts": 0},
    {"num_shared_experts": 0},
    {"batch_norm": True, "dropout": 0.2},
])
def test_ablation_switches_build_and_run(spec, overrides):
    model = build_model("ple", spec, {**HP, **overrides})
    x, y = batch(spec, 64)
    assert np.isfinite(train_step(model, x, y))
    assert_probabilities(predict(model, x), 64)


def test_no_expert_at_all_is_rejected(spec):
    with pytest.raises(ValueError, match="at least one expert"):
        build_model("ple", spec, {**HP, "num_specific_experts": 0, "num_shared_experts": 0})


def test_changing_only_the_scenario_changes_the_prediction(spec):
    model = build_model("ple", spec, HP)
    x, _ = batch(spec, 16)
    assert_scenario_moves_every_prediction(model, spec, x, 1e-6)
    oov = spec.num_scenarios - 1
    assert np.all(np.isfinite(predict(model, with_scenario(x, oov, spec))))


def test_scenario_parameters_are_gathered_not_computed_for_every_scenario(spec):
    """A batch of scenario 1 sends no gradient to scenario 2's experts, gates or tower."""
    tables = assert_scenario_rows_learn_only_from_their_scenario(build_model("ple", spec, HP), spec)
    assert tables >= 8  # per level: expert layer(s) and scenario gate; the tower and logit


def test_saved_model_reload_predicts_the_same(spec, tmp_path):
    model = build_model("ple", spec, HP)
    assert_reload_predicts_the_same(model, spec, batch(spec, 16)[0], tmp_path)


def test_learns_the_planted_signal():
    assert train_auc("ple", HP) > 0.7
