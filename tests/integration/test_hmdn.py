"""HMDN (hmdn_mmoe, hmdn_pepnet) and its hierarchical multi-distribution representation refiner."""
import msrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from support.models import SMALL, assert_probabilities, assert_reload_predicts_the_same, batch, predict, small_spec
from msrec.models.registry import build_model

# no embedding L2, so that model.losses holds L_rq alone
HP = {
    "hmdn_mmoe": {**SMALL, "expert_units": (32, 16), "embeddings_l2": 0.0},
    "hmdn_pepnet": {**SMALL, "hidden_units": (32, 16), "gate_units": 16, "embeddings_l2": 0.0},
}
NAMES = sorted(HP)


@pytest.fixture(scope="module")
def spec():
    return small_spec()


def tensors(features):
    return {k: tf.constant(v) for k, v in features.items()}


def changed(features, name, spec):
    """The same examples with ``name`` moved to another in-vocabulary value."""
    out = dict(features)
    out[name] = features[name] % (spec.cardinality[name] - 2) + 1
    assert np.all(out[name] != features[name])
    return out


@pytest.mark.parametrize("name,overrides,rq_losses", [
    ("hmdn_mmoe", {"refiner": "explicit"}, 1),
    ("hmdn_mmoe", {"refiner": "none"}, 0),
    ("hmdn_mmoe", {"depth": 3, "codebook_size": 8}, 1),
    ("hmdn_pepnet", {"refiner": "explicit"}, 1),
    ("hmdn_pepnet", {"refiner": "none", "use_ppnet": False}, 0),
    ("hmdn_pepnet", {"use_ppnet": False}, 1),
])
def test_ablation_switches_build_and_run(spec, name, overrides, rq_losses):
    model = build_model(name, spec, {**HP[name], **overrides})
    x, _ = batch(spec, 16)
    assert_probabilities(model(tensors(x), training=True).numpy(), 16)  # the codebooks start from this batch
    assert_probabilities(model(tensors(batch(spec, 16, seed=1)[0]), training=True).numpy(), 16)
    assert len(model.losses) == rq_losses and all(float(l) > 0 for l in model.losses)
    assert (model.refiner is None) == (overrides.get("refiner") == "none")
    model(tensors(x), training=False)
    assert not model.losses  # L_rq is a training objective only


def test_unknown_refiner_is_rejected(spec):
    with pytest.raises(ValueError, match="refiner"):
        build_model("hmdn_mmoe", spec, {**HP["hmdn_mmoe"], "refiner": "vq"})
    with pytest.raises(ValueError, match="explicit_mode"):
        build_model("hmdn_mmoe", spec, {**HP["hmdn_mmoe"], "refiner": "explicit", "explicit_mode": "flat"})


def test_residual_quantization_matches_eq_1_to_5(spec):
    """Codes, s_D and L_rq recomputed with numpy from the codebooks and the distribution embeddings."""
    model = build_model("hmdn_mmoe", spec, HP["hmdn_mmoe"])
    x = tensors(batch(spec, 24)[0])
    out = model.refiner(x)
    embedded = model.refiner.embedding(x)
    residual = np.concatenate([embedded[n].numpy() for n in spec.distribution_features], axis=-1)
    codebooks = model.refiner.codebooks.numpy()
    assert codebooks.shape == (6, 64, 4 * SMALL["embedding_dim"])  # D = 6 levels over x_b
    codes, s_d, loss = [], 0.0, 0.0
    for codebook in codebooks:
        code = ((residual[:, None, :] - codebook[None]) ** 2).sum(-1).argmin(1)
        e = codebook[code]
        codes.append(code)
        s_d = s_d + e
        loss = loss + 1.25 * ((e - residual) ** 2).sum(-1)  # both eq. 5 terms have this value, beta = 0.25
        residual = residual - e
    np.testing.assert_array_equal(out.codes.numpy(), np.stack(codes, axis=1))
    np.testing.assert_allclose(out.representation.numpy(), s_d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(out.rq_loss), loss.mean(), rtol=1e-5)


def test_codes_change_when_a_distribution_feature_changes_and_only_then(spec):
    model = build_model("hmdn_mmoe", spec, HP["hmdn_mmoe"])
    x, _ = batch(spec, 64)
    codes = model.refiner(tensors(x)).codes.numpy()
    for name in ("gender", "city"):
        other = model.refiner(tensors(changed(x, name, spec))).codes.numpy()
        assert np.mean(np.any(other != codes, axis=1)) > 0.9, name
    for name in ("user_id", "item_id", "category", "hour"):  # not distribution features
        np.testing.assert_array_equal(model.refiner(tensors(changed(x, name, spec))).codes.numpy(), codes)


@pytest.mark.parametrize("mode", ["hierarchical", "independent"])
def test_explicit_extraction_gives_each_distribution_type_its_own_level(spec, mode):
    """A changed city moves the city level's code and never the levels above it; below it, only the
    hierarchical mode passes the change on (through the residual)."""
    model = build_model("hmdn_mmoe", spec, {**HP["hmdn_mmoe"], "refiner": "explicit", "explicit_mode": mode})
    x, _ = batch(spec, 64)
    codes = model.refiner(tensors(x)).codes.numpy()
    assert codes.shape == (64, len(spec.distribution_features))
    level = list(spec.distribution_features).index("city")
    assert 0 < level < codes.shape[1] - 1
    other = model.refiner(tensors(changed(x, "city", spec))).codes.numpy()
    assert np.mean(other[:, level] != codes[:, level]) > 0.5
    np.testing.assert_array_equal(other[:, :level], codes[:, :level])
    below = np.mean(np.any(other[:, level + 1:] != codes[:, level + 1:], axis=1))
    assert below > 0.2 if mode == "hierarchical" else below == 0.0


def explicit_quantization(parts, codebooks, hierarchical: bool):
    """Explicit extraction recomputed with numpy: (codes [B, D], s_D, L_rq with beta = 0.25)."""
    codes, s_d, loss, residual = [], 0.0, 0.0, np.zeros_like(parts[0])
    for part, codebook in zip(parts, codebooks):
        level_input = part + residual if hierarchical else part
        code = ((level_input[:, None, :] - codebook[None]) ** 2).sum(-1).argmin(1)
        e = codebook[code]
        codes.append(code)
        s_d = s_d + e
        loss = loss + 1.25 * ((e - level_input) ** 2).sum(-1)
        residual = level_input - e
    return np.stack(codes, axis=1), s_d, loss.mean()


@pytest.mark.parametrize("mode", ["hierarchical", "independent"])
def test_explicit_levels_chain_their_residuals_in_the_hierarchical_mode(spec, mode):
    """Hierarchical: level d+1 quantizes its feature's embedding plus what level d left unexplained
    (its residual); independent: its feature's embedding alone. The two readings give different
    level inputs, so L_rq (over the level inputs) tells them apart."""
    model = build_model("hmdn_mmoe", spec, {**HP["hmdn_mmoe"], "refiner": "explicit", "explicit_mode": mode})
    x = tensors(batch(spec, 32)[0])
    out = model.refiner(x)
    embedded = model.refiner.embedding(x)
    parts = [embedded[n].numpy() for n in spec.distribution_features]
    codebooks = model.refiner.codebooks.numpy()
    want = explicit_quantization(parts, codebooks, hierarchical=mode == "hierarchical")
    other = explicit_quantization(parts, codebooks, hierarchical=mode != "hierarchical")
    assert abs(other[2] - want[2]) > 1e-3 * want[2]
    np.testing.assert_array_equal(out.codes.numpy(), want[0])
    np.testing.assert_allclose(out.representation.numpy(), want[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(out.rq_loss), want[2], rtol=1e-5)


@pytest.mark.parametrize("overrides", [{"refiner": "implicit"}, {"refiner": "explicit"}])
def test_the_first_training_batch_initialises_the_codebooks_once(spec, overrides):
    """Every code of the first level starts as one of its inputs in the first training batch (distinct
    ones when the batch holds K), so that level uses every code, where the random initialisation leaves
    many unused; inference leaves the codebooks alone, later training batches re-draw nothing."""
    model = build_model("hmdn_mmoe", spec, {**HP["hmdn_mmoe"], **overrides, "codebook_size": 32})
    first, second = tensors(batch(spec, 256, seed=4)[0]), tensors(batch(spec, 256, seed=5)[0])
    random_codes = model.refiner(first).codes.numpy()
    random_books = model.refiner.codebooks.numpy()
    np.testing.assert_array_equal(model.refiner(second, training=False).codes.numpy(), model.refiner(second).codes)
    np.testing.assert_array_equal(model.refiner.codebooks.numpy(), random_books)
    out = model.refiner(first, training=True)
    books = model.refiner.codebooks.numpy()
    embedded = model.refiner.embedding(first)
    parts = [embedded[n].numpy() for n in spec.distribution_features]
    level_input = np.concatenate(parts, axis=-1) if overrides["refiner"] == "implicit" else parts[0]
    distance = ((books[0][:, None, :] - level_input[None]) ** 2).sum(-1).min(axis=1)
    np.testing.assert_allclose(distance, 0.0, atol=1e-10)  # every first-level code is an input
    if overrides["refiner"] == "implicit":  # 256 inputs of >= 32 distinct values: 32 distinct codes
        distinct = len(np.unique(books[0], axis=0))  # 32 rows of the batch, a few sharing their value
        assert len(np.unique(out.codes.numpy()[:, 0])) == distinct > len(np.unique(random_codes[:, 0])) + 8
    model.refiner(second, training=True)
    np.testing.assert_array_equal(model.refiner.codebooks.numpy(), books)


def test_gradients_stop_as_in_eq_5_with_a_straight_through_estimator(spec):
    """The CTR loss reaches the distribution embeddings through s_D but never the codebooks; the
    codebooks learn from L_rq."""
    model = build_model("hmdn_mmoe", spec, HP["hmdn_mmoe"])
    model(tensors(batch(spec, 32, seed=1)[0]), training=True)  # the first training batch sets the codebooks
    x, y = batch(spec, 32)
    with tf.GradientTape(persistent=True) as tape:
        bce = tf.reduce_mean(tf.keras.losses.binary_crossentropy(y[:, None], model(tensors(x), training=True)))
        (rq,) = model.losses
    codebooks = model.refiner.codebooks
    gender = model.refiner.embedding.tables["gender"].embeddings
    assert tape.gradient(bce, codebooks) is None
    assert np.abs(tf.convert_to_tensor(tape.gradient(bce, gender)).numpy()).sum() > 0
    assert np.abs(tape.gradient(rq, codebooks).numpy()).sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_saved_model_reload_predicts_the_same(spec, name, tmp_path):
    model = build_model(name, spec, HP[name])
    assert_reload_predicts_the_same(model, spec, batch(spec, 16)[0], tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_learns_the_planted_signal_while_the_rq_loss_falls(spec, name):
    tf.keras.utils.set_random_seed(0)
    x, y = batch(spec, 3000, seed=1)
    x_test, y_test = batch(spec, 1500, seed=2)
    model = build_model(name, spec, HP[name])
    probe = tensors(batch(spec, 256, seed=3)[0])
    before = float(model.refiner(probe).rq_loss)
    # Eagerly: tracing the training graph would cost more than these few steps.
    model.compile(optimizer=tf.keras.optimizers.Adam(5e-3), run_eagerly=True)
    model.fit(x, y, batch_size=256, epochs=3, verbose=0)
    assert float(model.refiner(probe).rq_loss) < 0.2 * before
    assert roc_auc_score(y_test, predict(model, x_test)[:, 0]) > 0.65
