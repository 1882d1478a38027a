"""OptMSM: feature partition, per-scenario SE gate, pluggable transfer, orthogonality constraint, hypernetwork."""
import itertools

import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from support.models import (SMALL, assert_probabilities, assert_reload_predicts_the_same, batch, predict,
                              scenario_tables, small_spec, tensors, with_scenario)
from msrec.models.layers import BEHAVIOUR_FIELD
from msrec.models.papers.optmsm import orthogonality_loss
from msrec.models.registry import build_model

# no embedding L2, so that model.losses holds the orthogonality loss alone
HP = {**SMALL, "transfer_units": (64, 32), "predictor_units": (16,), "hypernetwork_units": 16, "embeddings_l2": 0.0}


@pytest.fixture(scope="module")
def spec():
    return small_spec()


def squared_cosines(reps: np.ndarray) -> float:
    """Eq. 9 with squared cosines, pair by pair: mean over samples and ordered pairs i != j."""
    unit = reps / np.maximum(np.linalg.norm(reps, axis=-1, keepdims=True), 1e-12)
    m = reps.shape[1]
    pairs = [(unit[:, i] * unit[:, j]).sum(-1) ** 2 for i, j in itertools.permutations(range(m), 2)]
    return float(np.mean(pairs))


def test_orthogonality_loss_is_zero_for_orthogonal_representations_and_positive_otherwise():
    rng = np.random.default_rng(0)
    # Each sample's 4 scenario representations: scaled rows of a random orthogonal matrix.
    orthogonal = np.stack([np.linalg.qr(rng.normal(size=(6, 6)))[0][:4] * rng.uniform(0.5, 3.0, (4, 1))
                           for _ in range(8)]).astype(np.float32)
    assert float(orthogonality_loss(tf.constant(orthogonal))) == pytest.approx(0.0, abs=1e-6)
    tilted = orthogonal.copy()
    tilted[0, 1] += tilted[0, 0]  # one pair of one sample no longer orthogonal
    loss = float(orthogonality_loss(tf.constant(tilted)))
    assert loss > 1e-3 and loss == pytest.approx(squared_cosines(tilted), rel=1e-4)
    parallel = np.repeat(rng.normal(size=(8, 1, 6)), 4, axis=1).astype(np.float32)
    assert float(orthogonality_loss(tf.constant(parallel))) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("m,d", [(5, 16), (12, 3)])  # both Gram forms: [M, M] and [d, d]
def test_orthogonality_loss_equals_the_pairwise_sum(m, d):
    reps = np.random.default_rng(m).normal(size=(7, m, d)).astype(np.float32)
    reps[0, 2] = 0.0  # a dead representation counts as orthogonal, not NaN
    assert float(orthogonality_loss(tf.constant(reps))) == pytest.approx(squared_cosines(reps), rel=1e-4)


def test_the_loss_over_a_uniform_scenario_subset_is_unbiased():
    """Averaged over every k-subset of the M scenarios, the subset's loss is exactly the full loss."""
    reps = np.random.default_rng(4).normal(size=(5, 6, 4)).astype(np.float32)
    subsets = [list(c) for c in itertools.combinations(range(6), 3)]
    mean = np.mean([float(orthogonality_loss(tf.constant(reps[:, c]))) for c in subsets])
    assert mean == pytest.approx(float(orthogonality_loss(tf.constant(reps))), rel=1e-5)
    assert np.std([float(orthogonality_loss(tf.constant(reps[:, c]))) for c in subsets]) > 0.01 * mean


def test_many_scenarios_sample_the_contrastive_representations_per_batch(spec):
    """Past contrastive_scenarios, L_orth is the loss over that many distinct scenarios, redrawn per batch."""
    assert spec.num_scenarios - 1 > 3
    model = build_model("optmsm", spec, {**HP, "contrastive_scenarios": 3})
    x = tensors(batch(spec, 16)[0])
    model(x)
    for var in model.transfer.weights:  # every scenario starts as the shared FCN: make them differ
        if "scenario_kernel" in var.name:
            var.assign(tf.random.stateless_uniform(var.shape, seed=[len(var.name), 0], minval=-1.0, maxval=2.0))
    reps = model.scenario_representations(x).numpy()
    by_subset = {c: 0.1 * squared_cosines(reps[:, list(c)])
                 for c in itertools.combinations(range(reps.shape[1]), 3)}
    drawn = set()
    for _ in range(8):
        model(x, training=True)
        (added,) = model.losses
        matches = [c for c, loss in by_subset.items() if loss == pytest.approx(float(added), rel=1e-4)]
        assert matches, float(added)
        drawn.add(matches[0])
    assert len(drawn) > 1
    with pytest.raises(ValueError, match="contrastive_scenarios"):
        build_model("optmsm", spec, {**HP, "contrastive_scenarios": 1})


@pytest.mark.parametrize("overrides", [
    {"use_priors": False},
    {"use_constraint": False},
    {"use_hypernetwork": False},
    {"use_adaptation_gate": False},
    {"transfer": "moe", "num_experts": 3},
    {"transfer": "cgc", "num_specific_experts": 1, "num_shared_experts": 2},
    {"transfer": "cgc", "num_shared_experts": 0},
])
def test_ablation_switches_build_and_run(spec, overrides):
    model = build_model("optmsm", spec, {**HP, **overrides})
    x, _ = batch(spec, 16)
    assert_probabilities(model(tensors(x), training=True).numpy(), 16)
    assert len(model.losses) == (0 if overrides.get("use_constraint") is False else 1)
    model(tensors(x), training=False)
    assert not model.losses  # the all-scenario representations are computed for training only


def test_ablations_change_the_architecture(spec):
    full = build_model("optmsm", spec, HP)
    no_priors = build_model("optmsm", spec, {**HP, "use_priors": False})
    assert full.specific_features == ["position", "scenario_id", "scenario_type", "theme"]
    assert not no_priors.specific_features and set(full.specific_features) < set(no_priors.shared_features)
    x = tensors(batch(spec, 4)[0])
    full(x), no_priors(x)
    assert len(full.predictor.hypernetwork) == 2  # scales R_0 and the one hidden layer
    plain = build_model("optmsm", spec, {**HP, "use_hypernetwork": False})
    plain(x)
    assert not plain.predictor.hypernetwork
    with pytest.raises(ValueError, match="transfer"):
        build_model("optmsm", spec, {**HP, "transfer": "star"})


def test_training_adds_lambda_times_the_loss_over_the_scenarios_of_the_batch(spec):
    model = build_model("optmsm", spec, {**HP, "orthogonality_weight": 0.5})
    x, _ = batch(spec, 16)
    x[spec.scenario_feature] = np.resize([1, 3, 4], 16)  # scenario 2 and the OOV row 5 are absent
    model(tensors(x), training=True)
    reps = model.scenario_representations(tensors(x))
    assert reps.shape == (16, spec.num_scenarios - 1, 32)  # every scenario but padding
    (added,) = model.losses
    assert float(added) == pytest.approx(0.5 * squared_cosines(reps.numpy()[:, [0, 2, 3]]), rel=1e-4)
    assert float(added) > 0
    model(tensors(with_scenario(x, 2, spec)), training=True)  # one scenario: no pair, no loss
    assert float(model.losses[0]) == 0.0


@pytest.mark.parametrize("transfer", ["fcn", "moe", "cgc"])
def test_every_scenario_path_equals_the_gathered_path(spec, transfer):
    """Row m of the contrastive representations is what the prediction path computes in scenario m."""
    model = build_model("optmsm", spec, {**HP, "transfer": transfer})
    x, _ = batch(spec, 8)
    model(tensors(x))
    dim = SMALL["embedding_dim"]
    widths = [3 * dim if n == BEHAVIOUR_FIELD else dim for n in model.shared_features]  # 3 behaviour item features
    fields = [tf.random.stateless_normal([8, w], seed=[i, 1]) for i, w in enumerate(widths)]
    rows = tf.range(1, spec.num_scenarios)
    gated = model.adaptation_gate.every_scenario(fields, rows)
    reps = model.transfer.every_scenario(gated, rows)
    for m in range(1, spec.num_scenarios):
        scenario = tf.fill([8], m)
        e_c = model.adaptation_gate(fields, scenario)
        np.testing.assert_allclose(gated[:, m - 1].numpy(), e_c.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(reps[:, m - 1].numpy(), model.transfer(e_c, scenario).numpy(), rtol=1e-4, atol=1e-5)


def test_prediction_path_gathers_scenario_parameters(spec):
    """Scenario 1's batch: its BCE sends gradient to scenario 1's rows only."""
    model = build_model("optmsm", spec, HP)
    x, y = batch(spec, 32)
    x = tensors(with_scenario(x, 1, spec))
    with tf.GradientTape() as tape:
        bce = tf.reduce_mean(tf.keras.losses.binary_crossentropy(y[:, None], model(x, training=True)))
    stacked = scenario_tables(model, spec)
    assert len(stacked) >= 10  # SE gate, transfer kernels and biases, predictor layers and classifier
    for var, grad in zip(stacked, tape.gradient(bce, stacked)):
        grad = tf.convert_to_tensor(grad).numpy()
        assert np.abs(grad[1]).sum() > 0 and np.all(grad[2] == 0), var.name


@pytest.mark.parametrize("transfer", ["fcn", "cgc"])
def test_the_constraint_gives_no_gradient_to_a_scenario_without_training_examples(spec, transfer):
    """Scenarios 1, 2, 4 in the batch: L_orth moves their rows of the SE gate and the transfer, and
    leaves scenario 3's row, the OOV row and padding exactly where they are."""
    model = build_model("optmsm", spec, {**HP, "transfer": transfer})
    x, _ = batch(spec, 32)
    x[spec.scenario_feature] = np.resize([1, 2, 4], 32)
    oov = spec.num_scenarios - 1
    with tf.GradientTape() as tape:
        model(tensors(x), training=True)
        (orth,) = model.losses
    stacked = scenario_tables(model, spec)
    touched = 0
    for var, grad in zip(stacked, tape.gradient(orth, stacked)):
        if grad is None:  # the predictor and classifier: not on the constraint's path
            continue
        grad = tf.convert_to_tensor(grad).numpy()
        assert all(np.abs(grad[m]).sum() > 0 for m in (1, 2, 4)), var.name
        assert np.all(grad[[0, 3, oov]] == 0.0), var.name
        touched += 1
    assert touched >= 3  # the SE gate's kernel and bias and the transfer's per-scenario parameters


def test_the_all_scenarios_ablation_pairs_every_row_of_the_index_space(spec):
    """orthogonal_scenarios="all" (eq. 9 read literally, the ablation) moves the unseen and OOV rows too."""
    model = build_model("optmsm", spec, {**HP, "orthogonal_scenarios": "all"})
    x, _ = batch(spec, 32)
    x[spec.scenario_feature] = np.resize([1, 2, 4], 32)
    with tf.GradientTape() as tape:
        model(tensors(x), training=True)
        (orth,) = model.losses
    grads = [g for g in tape.gradient(orth, scenario_tables(model, spec)) if g is not None]
    assert grads
    for grad in map(lambda g: tf.convert_to_tensor(g).numpy(), grads):
        assert all(np.abs(grad[m]).sum() > 0 for m in range(1, spec.num_scenarios)) and np.all(grad[0] == 0)


def test_saved_model_reload_predicts_the_same(spec, tmp_path):
    model = build_model("optmsm", spec, HP)
    assert_reload_predicts_the_same(model, spec, batch(spec, 16)[0], tmp_path)


def test_learns_the_planted_signal_while_disentangling_the_scenarios(spec):
    tf.keras.utils.set_random_seed(0)
    x, y = batch(spec, 4000, seed=1)
    x_test, y_test = batch(spec, 1500, seed=2)
    model = build_model("optmsm", spec, HP)
    probe = tensors(batch(spec, 256, seed=3)[0])
    before = float(orthogonality_loss(model.scenario_representations(probe)))
    # Eagerly: tracing the training graph would cost more than these few steps.
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), run_eagerly=True)
    model.fit(x, y, batch_size=256, epochs=4, verbose=0)
    assert float(orthogonality_loss(model.scenario_representations(probe))) < 0.5 * before
    assert roc_auc_score(y_test, predict(model, x_test)[:, 0]) > 0.65
