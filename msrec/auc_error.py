"""The sampling noise of an AUC: one home for the standard error that the blessing gate, the report's
intervals and the Trainer's early stopping all allow for."""
from __future__ import annotations

import math


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
