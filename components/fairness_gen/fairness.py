"""Fairness Coefficients (SAR-Net eq. 1) and the shrinkage rule for rarely seen items.

For a day d, a scenario s and an item i, with the blessed model's predicted CTR p over the day's
samples of i in s:

    F(i,s)  = sum of p            PV(i,s) = number of samples
    FC(i,s) = (F(i,s) / sum_i F(i,s)) / (PV(i,s) / sum_i PV(i,s))

which is the same as mean_p(i,s) / mean_p(s): an item whose exposure was inflated by manual
intervention is shown to users who want it less than the scenario's average user, so its
predicted CTR, and its FC, fall below 1.

Shrinkage: an item seen a handful of times has a noisy FC, so it is pulled toward the neutral 1
with a pseudo-count ``k`` of neutral samples:

    FC_shrunk = (PV * FC + k) / (PV + k)

At PV = 0 it is 1, at PV = k it is halfway, and as PV grows it tends to FC. k defaults to 20.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

import numpy as np

DEFAULT_SHRINK_K = 20.0


@dataclasses.dataclass(frozen=True)
class Exposure:
    pv: int  # number of samples
    f: float  # sum of predicted CTR

    def __add__(self, other: "Exposure") -> "Exposure":
        return Exposure(self.pv + other.pv, self.f + other.f)


def shrink(fc: np.ndarray | float, pv: np.ndarray | float, k: float = DEFAULT_SHRINK_K) -> np.ndarray:
    """Pull ``fc`` toward 1 with ``k`` pseudo-samples."""
    if k < 0:
        raise ValueError(f"shrinkage pseudo-count must be >= 0, got {k}")
    pv = np.asarray(pv, dtype=np.float64)
    denom = pv + k
    # No samples and no pseudo-count: nothing is known, so the item stays neutral.
    return np.where(denom > 0, (pv * np.asarray(fc, dtype=np.float64) + k) / np.where(denom > 0, denom, 1.0), 1.0)


def fairness_coefficients(exposures: Mapping[str, Exposure], k: float = DEFAULT_SHRINK_K) -> dict[str, float]:
    """FC of every item of ONE (day, scenario), from its items' exposures (eq. 1, then shrinkage)."""
    items = list(exposures)
    pv = np.array([exposures[i].pv for i in items], dtype=np.float64)
    f = np.array([exposures[i].f for i in items], dtype=np.float64)
    total_pv, total_f = pv.sum(), f.sum()
    if total_pv <= 0 or total_f <= 0:
        # A scenario whose predictions are all zero carries no exposure signal: stay neutral.
        return {i: 1.0 for i in items}
    raw = (f / total_f) / np.maximum(pv / total_pv, 1e-12)
    return dict(zip(items, shrink(raw, pv, k).tolist()))


def sum_exposures(values: Iterable[Exposure]) -> Exposure:
    total = Exposure(0, 0.0)
    for v in values:
        total = total + v
    return total
