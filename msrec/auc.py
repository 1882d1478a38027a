"""AUC: its exact value from ranks (the Evaluator's metric, the oracle, the benchmarks) and its sampling
noise, the standard error that the blessing gate, the report's intervals and the Trainer's early
stopping all allow for."""
from __future__ import annotations

import math

import numpy as np


def auc_standard_error(auc: float, count: int, mean_label: float) -> float:
    """Hanley & McNeil (1982) standard error of an AUC over ``count`` examples with the given click
    rate; 0 when the click rate is unknown (the strict rule then applies)."""
    if math.isnan(auc) or math.isnan(mean_label) or count <= 0:
        return 0.0
    n1 = round(count * mean_label)
    n0 = count - n1
    if n1 < 1 or n0 < 1:
        return 0.0
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (n1 - 1) * (q1 - auc * auc) + (n0 - 1) * (q2 - auc * auc)) / (n1 * n0)
    return math.sqrt(max(variance, 0.0))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC from ranks (Mann-Whitney U); tied scores share their average rank.

    NaN when the labels hold only one class, where AUC is undefined.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # 1-based average rank of each tie group
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
