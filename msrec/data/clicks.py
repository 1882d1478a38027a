"""The ground-truth click model: p(click) of an impression, calibrated per scenario.

    logit = offset[scenario]                              calibrated to the scenario's base CTR
          + INTEREST_WEIGHT * affinity[user, scenario type, item category]
          + quality[item] + propensity[user]
          + gender_age_type[gender, age, scenario type]   implicit patterns inside a scenario
          + price_tier[price bucket, city tier]            (HierRec / HMDN kind)
          + new_user_type[is_new_user, scenario type]
          + device_type[device, scenario type] + hour[hour]
          + THEME_BONUS * (item category favoured by the scenario's theme)
          - POSITION_SLOPE * log(position)

The offsets are solved numerically (Newton) so that the mean p(click) of organic traffic in each
scenario equals its configured CTR; interventions are left out of the calibration on purpose, so a
scenario's observed CTR drops on the days its slots are forced.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from msrec.data.traffic import Impressions, calibration_sample
from msrec.data.world import AGE_BUCKETS, DEVICES, GENDERS, NUM_CITY_TIERS, NUM_PRICE_BUCKETS, \
    SCENARIO_TYPES, World

INTEREST_WEIGHT = 0.6
THEME_BONUS = 0.4
POSITION_SLOPE = 0.3
HOUR_AMPLITUDE = 0.12
PEAK_HOUR = 21
# Price sensitivity by city tier: tier-1 cities click pricier items, tier-4 cheaper ones.
PRICE_SLOPE_BY_TIER = (0.4, 0.15, -0.1, -0.35)
# Organic impressions the offsets are solved on, spread evenly over the scenarios and drawn in
# rounds to bound memory. Page views cluster one user's impressions, so it takes about 100k per
# scenario to pin a base CTR within 1%; smaller datasets, whose own noise is larger, use fewer.
CALIBRATION_MAX_IMPRESSIONS = 2_000_000
CALIBRATION_MIN_PER_SCENARIO = 2_000
CALIBRATION_ROUND = 500_000


@dataclasses.dataclass(frozen=True)
class ClickModel:
    offset: np.ndarray  # (S,)
    gender_age_type: np.ndarray  # (genders, ages, types)
    price_tier: np.ndarray  # (price buckets, city tiers)
    new_user_type: np.ndarray  # (2, types)
    device_type: np.ndarray  # (devices, types)
    hour: np.ndarray  # (24,)

    def logits(self, world: World, imps: Impressions) -> np.ndarray:
        users, items, sc = world.users, world.items, world.scenarios
        u, i, s = imps.user, imps.item, imps.scenario
        t = sc.type_idx[s]
        cat = items.category[i]
        z = self.offset[s] + INTEREST_WEIGHT * users.affinity[u, t, cat]
        z += items.quality[i] + users.propensity[u]
        z += self.gender_age_type[users.gender[u], users.age[u], t]
        z += self.price_tier[items.price[i], users.city_tier[u]]
        z += self.new_user_type[users.is_new[u].astype(np.int64), t]
        z += self.device_type[imps.device, t] + self.hour[imps.hour]
        z += THEME_BONUS * sc.theme_mask[s, cat]
        z -= POSITION_SLOPE * np.log(imps.position)
        return z

    def p_click(self, world: World, imps: Impressions) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(world, imps)))


def _solve_offsets(z: np.ndarray, scenario: np.ndarray, ctr: np.ndarray) -> np.ndarray:
    """Per-scenario offsets b with mean(sigmoid(z + b[s])) == ctr[s] over the sample (Newton)."""
    n = np.bincount(scenario, minlength=len(ctr)).astype(float)
    b = np.log(ctr / (1 - ctr)) - np.bincount(scenario, weights=z, minlength=len(ctr)) / n
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(z + b[scenario])))
        gap = np.bincount(scenario, weights=p, minlength=len(ctr)) / n - ctr
        if np.abs(gap).max() < 1e-10:
            break
        slope = np.bincount(scenario, weights=p * (1 - p), minlength=len(ctr)) / n
        b -= gap / slope
    return b


def calibration_size(impressions_per_day: int) -> int:
    """Calibration sample for a dataset: ten days' worth, at most CALIBRATION_MAX_IMPRESSIONS."""
    return min(CALIBRATION_MAX_IMPRESSIONS, 10 * impressions_per_day)


def build_click_model(world: World, sample_size: int = CALIBRATION_MAX_IMPRESSIONS) -> ClickModel:
    """Draw the effect tables for the world's seed and calibrate the scenario offsets on a sample
    of about ``sample_size`` organic impressions."""
    rng = np.random.default_rng(np.random.SeedSequence([world.seed, 2]))
    n_types = len(SCENARIO_TYPES)
    tier_slope = np.array(PRICE_SLOPE_BY_TIER[:NUM_CITY_TIERS]) + rng.normal(0.0, 0.1, NUM_CITY_TIERS)
    centred_price = (np.arange(NUM_PRICE_BUCKETS) - (NUM_PRICE_BUCKETS - 1) / 2) / ((NUM_PRICE_BUCKETS - 1) / 2)
    hours = np.arange(24)
    model = ClickModel(
        offset=np.zeros(len(world.scenarios.ids)),
        gender_age_type=rng.normal(0.0, 0.3, (len(GENDERS), len(AGE_BUCKETS), n_types)),
        price_tier=np.outer(centred_price, tier_slope) + rng.normal(0.0, 0.1, (NUM_PRICE_BUCKETS, NUM_CITY_TIERS)),
        new_user_type=np.vstack([np.zeros(n_types), rng.normal(0.0, 0.3, n_types)]),
        device_type=rng.normal(0.0, 0.15, (len(DEVICES), n_types)),
        hour=HOUR_AMPLITUDE * np.cos(2 * np.pi * (hours - PEAK_HOUR) / 24),
    )
    n_scen = len(world.scenarios.ids)
    per_scenario = max(CALIBRATION_MIN_PER_SCENARIO, sample_size // n_scen)
    per_round = max(1, CALIBRATION_ROUND // n_scen)
    logits, scenario = [], []
    for _ in range(-(-per_scenario // per_round)):
        sample = calibration_sample(world, rng, per_round)
        logits.append(model.logits(world, sample))
        scenario.append(sample.scenario)
    offset = _solve_offsets(np.concatenate(logits), np.concatenate(scenario), world.scenarios.ctr)
    return dataclasses.replace(model, offset=offset)
