"""Synthetic transformed batches with a planted multi-scenario click signal, for model tests.

The batch follows the model input contract of any :class:`~msrec.schemas.feature_config.FeatureSpec`, and its
labels depend on exactly two things a multi-scenario model must learn:

* a scenario x topic interaction: ``W[scenario, topic(target item)]``, a different table row
  per scenario (topic = the target's value of the second behaviour item feature, e.g. category,
  or its item id when the sequence records only item ids);
* the behaviour sequence: whether the user clicked an item of the target's topic before.

Each categorical feature draws from its vocabulary ``1 .. cardinality - 2``: index 0 is padding
and the last index is left to the OOV bucket, which no generated example uses.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from msrec.schemas.feature_config import FAIRNESS_COEF, FeatureSpec

NUM_TOPICS = 16
INTEREST_WEIGHT = 1.5  # logit bonus (or penalty) for a target whose topic the user clicked before
INTERACTION_SCALE = 1.5  # std of the planted scenario x topic logits


def _vocab(spec: FeatureSpec, name: str) -> int:
    size = int(spec.cardinality[name]) - 2
    if size < 1:
        raise ValueError(f"feature {name!r}: cardinality {spec.cardinality[name]} leaves no vocabulary")
    return size


def _derived(values: np.ndarray, size: int, salt: int) -> np.ndarray:
    """A fixed function of another feature's index (e.g. an item's brand), in 1..size; 0 stays 0."""
    return np.where(values > 0, 1 + (values * (2 * salt + 7) + salt) % size, 0).astype(np.int64)


class PlantedBatch(NamedTuple):
    features: dict[str, np.ndarray]
    labels: np.ndarray  # float32 [n], 0/1 drawn from click_prob
    click_prob: np.ndarray  # float64 [n], the true click probability (the best any model can do)


def planted_ctr_batch(spec: FeatureSpec, n: int, seed: int = 0, min_history: int = 0,
                      fairness: bool = False) -> PlantedBatch:
    """``n`` examples of transformed features with their labels and true click probabilities.

    The planted signal (``W``) depends on ``spec`` only, not on ``seed``: batches drawn with
    different seeds share it, so one can be the training set and another the test set.
    With ``fairness`` the features include a log-normal ``fairness_coef``.
    """
    if not spec.sequence_item_features:
        raise ValueError("the planted signal needs a behaviour item sequence in the spec")
    rng = np.random.default_rng(seed)
    length = int(spec.sequence_length)
    item_seq = spec.sequence_item_features[0]
    item = spec.sequence[item_seq]
    topic_seq = spec.sequence_item_features[1] if len(spec.sequence_item_features) > 1 else item_seq
    scen = spec.scenario_feature
    num_topics = min(NUM_TOPICS, _vocab(spec, spec.sequence[topic_seq]))
    num_scen = _vocab(spec, scen)

    out: dict[str, np.ndarray] = {}
    out[item] = rng.integers(1, _vocab(spec, item) + 1, n).astype(np.int64)
    out[scen] = rng.integers(1, num_scen + 1, n).astype(np.int64)
    hist_len = rng.integers(min(min_history, length), length + 1, n)
    valid = np.arange(length)[np.newaxis, :] < hist_len[:, np.newaxis]
    out[item_seq] = np.where(valid, rng.integers(1, _vocab(spec, item) + 1, (n, length)), 0).astype(np.int64)
    scen_seqs = [s for s in spec.sequence_scenario_features if spec.sequence[s] == scen]
    for s in scen_seqs:
        out[s] = np.where(valid, rng.integers(1, num_scen + 1, (n, length)), 0).astype(np.int64)

    # Other sequence columns are fixed functions of the item (category, brand ...) or of the
    # scenario (scenario type ...), so the target and its behaviours agree.
    items = set(spec.groups.get("item", ()))
    anchors = {"item": (item, item_seq), "scenario": (scen, scen_seqs[0] if scen_seqs else None)}
    for k, (seq, base) in enumerate(spec.sequence.items()):
        if seq in out:
            continue
        target_anchor, seq_anchor = anchors["item" if base in items else "scenario"]
        size = num_topics if seq == topic_seq else _vocab(spec, base)
        if seq_anchor is None or (base not in items and base not in spec.groups.get("scenario", ())):
            out[seq] = np.where(valid, rng.integers(1, size + 1, (n, length)), 0).astype(np.int64)
            continue
        out[base] = _derived(out[target_anchor], size, k)
        out[seq] = _derived(out[seq_anchor], size, k)
    for name in spec.categorical:
        if name in spec.multi_valued:  # 1..K values, padded with 0
            width = int(spec.multi_valued[name])
            present = np.arange(width)[np.newaxis, :] < rng.integers(1, width + 1, n)[:, np.newaxis]
            out[name] = np.where(present, rng.integers(1, _vocab(spec, name) + 1, (n, width)), 0).astype(np.int64)
        elif name not in out:
            out[name] = rng.integers(1, _vocab(spec, name) + 1, n).astype(np.int64)
    for name in spec.numeric:
        out[name] = rng.standard_normal(n).astype(np.float32)

    topic_base = spec.sequence[topic_seq]
    topic = out[topic_base] if topic_seq != item_seq else 1 + out[item] % num_topics
    behaviour_topics = out[topic_seq] if topic_seq != item_seq else np.where(valid, 1 + out[item_seq] % num_topics, 0)
    interest = (behaviour_topics == topic[:, np.newaxis]).any(axis=1)
    interaction = np.random.default_rng(12345).normal(0.0, INTERACTION_SCALE, (num_scen + 1, num_topics + 1))
    logit = interaction[out[scen], topic] + INTEREST_WEIGHT * np.where(interest, 1.0, -1.0)
    prob = 1.0 / (1.0 + np.exp(-logit))
    labels = (rng.random(n) < prob).astype(np.float32)
    if fairness:
        out[FAIRNESS_COEF] = np.exp(rng.normal(0.0, 0.5, n)).astype(np.float32)
    return PlantedBatch(out, labels, prob)
