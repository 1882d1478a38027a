"""The ground-truth click model: p(click) of an impression, calibrated per scenario.

    logit = offset[scenario]                                   calibrated to the scenario's base CTR
          + interest[s] * interest_pop[type, new user] * affinity[user, scenario type, item category]
          + quality[s] * quality[item] + propensity[user]
          + price[s] * price_pop[type, city tier] * centred price     (sign reversed in premium channels)
          - position[s] * position_pop[type, age] * log(position)
          + gender_age_type[gender, age, type] + new_user_type[is_new_user, type]
          + device_type[device, type] + hour[hour]
          + THEME_BONUS * (item category favoured by the scenario's theme)
          + intent[type] * (item category == the journey's intent)
          + INTENT_PRICE_SLOPE * price intent * centred price
          + transfer[type, same] * (category == the journey's last clicked category)
          + transfer[type, complement] * (category complements the last clicked category)
          + forced_lift * (the impression was forced by an intervention)

Every scenario draws its own interest, quality, price and position slopes around shared means, so a
scenario's mapping from features to clicks is its own, not its type's; the population tables scale
those slopes jointly with the scenario type and the user's population (new or returning user, city
tier, age), so the populations differ in slope and not only in level. The last two terms make clicks
depend on earlier clicks of the same journey, with a relation set by the scenario type (a cart page
favours complements of what was just clicked, a detail page similar items); clicks are therefore
drawn page view by page view (``draw_clicks``).

``forced_lift`` (``msrec generate --forced-click-lift``, default 0) models how a promotion is shown:
a banner, a pinned slot or a badge draws clicks beyond the item's relevance. No logged feature
carries it, so a model trained on the logs credits the lift to the item (its id, category...) and
over-rates it on organic traffic: intervention bias in the labels, not only in the exposure.

The offsets are solved numerically (Newton) so that the mean p(click) of organic traffic in each
scenario equals its configured CTR; interventions are left out of the calibration on purpose, so a
scenario's observed CTR drops on the days its slots are forced.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from msrec.data.traffic import Impressions, calibration_sample
from msrec.data.world import AGE_BUCKETS, DEVICES, GENDERS, NUM_CITY_TIERS, NUM_PRICE_BUCKETS, \
    SCENARIO_TYPES, World, complement_matrix

# Shared means of the per-scenario slopes (price: the magnitude; its sign is -1, cheaper is better,
# except in price-reversed scenarios).
INTEREST_WEIGHT = 0.6
QUALITY_WEIGHT = 1.0
PRICE_SLOPE = 0.7
POSITION_SLOPE = 0.3
# Log-normal spread of each scenario's slopes around the shared means, and of the population x type
# multipliers of the slopes.
SCENARIO_SLOPE_SPREAD = 0.6
POPULATION_SLOPE_SPREAD = 0.6
THEME_BONUS = 0.4
HOUR_AMPLITUDE = 0.12
PEAK_HOUR = 21
# Logit bonus of an item of the journey's intent category, by scenario type (a search box is where
# intent shows most), and the slope of price along the journey's price intent.
INTENT_BONUS = {"feed": 0.4, "search": 0.9, "theme": 0.3, "ad_slot": 0.5, "cart": 0.5, "detail": 0.7}
INTENT_PRICE_SLOPE = 0.4
# Logit bonus of a candidate related to the journey's last click, by scenario type:
# (same category, complementary category).
SESSION_TRANSFER = {"feed": (0.3, 0.1), "search": (0.4, 0.0), "theme": (0.2, 0.2),
                    "ad_slot": (0.1, 0.3), "cart": (-0.2, 0.9), "detail": (0.6, 0.3)}
# Organic impressions the offsets are solved on, spread evenly over the scenarios and drawn in
# rounds to bound memory. Page views cluster one user's impressions, so it takes about 100k per
# scenario to pin a base CTR within 1%; smaller datasets, whose own noise is larger, use fewer.
CALIBRATION_MAX_IMPRESSIONS = 2_000_000
CALIBRATION_MIN_PER_SCENARIO = 2_000
CALIBRATION_ROUND = 500_000

_COMPLEMENT = complement_matrix()


def centred_price(price_bucket: np.ndarray) -> np.ndarray:
    """Price bucket mapped onto [-1, 1]."""
    half = (NUM_PRICE_BUCKETS - 1) / 2
    return (price_bucket - half) / half


@dataclasses.dataclass(frozen=True)
class ClickModel:
    offset: np.ndarray  # (S,)
    interest: np.ndarray  # (S,) slopes
    quality: np.ndarray  # (S,)
    price: np.ndarray  # (S,) signed
    position: np.ndarray  # (S,)
    interest_pop: np.ndarray  # (types, 2) multiplier by new user
    price_pop: np.ndarray  # (types, city tiers) multiplier
    position_pop: np.ndarray  # (types, ages) multiplier
    gender_age_type: np.ndarray  # (genders, ages, types)
    new_user_type: np.ndarray  # (2, types)
    device_type: np.ndarray  # (devices, types)
    hour: np.ndarray  # (24,)
    intent: np.ndarray  # (types,)
    transfer: np.ndarray  # (types, 2): same category, complement
    forced_lift: float = 0.0  # logit added to forced impressions (the promotion's display treatment)

    def slopes(self, world: World, imps: Impressions) -> dict[str, np.ndarray]:
        """Per-impression slopes of interest, quality, price and log(position) (the latter negated)."""
        users, s = world.users, imps.scenario
        t, u = world.scenarios.type_idx[s], imps.user
        return {
            "interest": self.interest[s] * self.interest_pop[t, users.is_new[u].astype(np.int64)],
            "quality": self.quality[s],
            "price": self.price[s] * self.price_pop[t, users.city_tier[u]],
            "position": -self.position[s] * self.position_pop[t, users.age[u]],
        }

    def logits(self, world: World, imps: Impressions) -> np.ndarray:
        """Logits without the session transfer terms (which need the journey's earlier clicks)."""
        users, items, sc = world.users, world.items, world.scenarios
        u, i, s = imps.user, imps.item, imps.scenario
        t = sc.type_idx[s]
        cat = items.category[i]
        price = centred_price(items.price[i])
        k = self.slopes(world, imps)
        z = self.offset[s] + k["interest"] * users.affinity[u, t, cat]
        z += k["quality"] * items.quality[i] + users.propensity[u]
        z += (k["price"] + INTENT_PRICE_SLOPE * imps.intent_price) * price
        z += k["position"] * np.log(imps.position)
        z += self.gender_age_type[users.gender[u], users.age[u], t]
        z += self.new_user_type[users.is_new[u].astype(np.int64), t]
        z += self.device_type[imps.device, t] + self.hour[imps.hour]
        z += THEME_BONUS * sc.theme_mask[s, cat]
        z += self.intent[t] * (cat == imps.intent)
        z += self.forced_lift * imps.intervened
        return z

    def transfer_logits(self, stype: np.ndarray, category: np.ndarray, last_click: np.ndarray) -> np.ndarray:
        """The session terms of impressions of scenario types ``stype`` showing ``category``, given
        the last clicked category of their journey (-1: none yet)."""
        clicked = last_click >= 0
        same = clicked & (category == last_click)
        complement = clicked & _COMPLEMENT[np.maximum(last_click, 0), category]
        return self.transfer[stype, 0] * same + self.transfer[stype, 1] * complement


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def draw_clicks(model: ClickModel, world: World, imps: Impressions, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """p(click) and the drawn clicks (bool), page rank by page rank so that each impression sees
    the earlier clicks of its journey (the last one: latest page, lowest on it)."""
    z, click = _draw_logits(model, world, imps, rng)
    return _sigmoid(z), click


def _draw_logits(model: ClickModel, world: World, imps: Impressions, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    z = model.logits(world, imps)
    click = np.zeros(len(imps), dtype=bool)
    last = np.full(int(imps.session.max(initial=-1)) + 1, -1, dtype=np.int64)
    category = world.items.category[imps.item]
    stype = world.scenarios.type_idx[imps.scenario]
    order = np.argsort(imps.page, kind="stable")
    bounds = np.searchsorted(imps.page[order], np.arange(int(imps.page.max(initial=-1)) + 2))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rows = order[lo:hi]
        z[rows] += model.transfer_logits(stype[rows], category[rows], last[imps.session[rows]])
        click[rows] = rng.random(len(rows)) < _sigmoid(z[rows])
        hit = rows[click[rows]]
        hit = hit[np.argsort(-imps.position[hit], kind="stable")]  # lowest on the page first
        sessions, first = np.unique(imps.session[hit], return_index=True)
        last[sessions] = category[hit[first]]
    return z, click


def _solve_offsets(z: np.ndarray, scenario: np.ndarray, ctr: np.ndarray) -> np.ndarray:
    """Per-scenario offsets b with mean(sigmoid(z + b[s])) == ctr[s] over the sample (Newton)."""
    n = np.bincount(scenario, minlength=len(ctr)).astype(float)
    b = np.log(ctr / (1 - ctr)) - np.bincount(scenario, weights=z, minlength=len(ctr)) / n
    for _ in range(100):
        p = _sigmoid(z + b[scenario])
        gap = np.bincount(scenario, weights=p, minlength=len(ctr)) / n - ctr
        if np.abs(gap).max() < 1e-10:
            break
        slope = np.bincount(scenario, weights=p * (1 - p), minlength=len(ctr)) / n
        b -= gap / slope
    return b


def calibration_size(impressions_per_day: int) -> int:
    """Calibration sample for a dataset: ten days' worth, at most CALIBRATION_MAX_IMPRESSIONS."""
    return min(CALIBRATION_MAX_IMPRESSIONS, 10 * impressions_per_day)


def _multipliers(rng: np.random.Generator, spread: float, shape: tuple[int, ...]) -> np.ndarray:
    """Log-normal factors with mean 1."""
    return np.exp(rng.normal(-spread ** 2 / 2, spread, shape))


def build_click_model(world: World, sample_size: int = CALIBRATION_MAX_IMPRESSIONS,
                      forced_lift: float = 0.0) -> ClickModel:
    """Draw the effect tables for the world's seed and calibrate the scenario offsets on a sample
    of about ``sample_size`` organic impressions; ``forced_lift`` is the logit added to forced
    impressions (organic calibration never sees it)."""
    rng = np.random.default_rng(np.random.SeedSequence([world.seed, 2]))
    n_types, n_scen = len(SCENARIO_TYPES), len(world.scenarios.ids)
    hours = np.arange(24)
    sign = np.where(world.scenarios.price_reversed, 1.0, -1.0)
    model = ClickModel(
        offset=np.zeros(n_scen),
        interest=INTEREST_WEIGHT * _multipliers(rng, SCENARIO_SLOPE_SPREAD, (n_scen,)),
        quality=QUALITY_WEIGHT * _multipliers(rng, SCENARIO_SLOPE_SPREAD, (n_scen,)),
        price=sign * PRICE_SLOPE * _multipliers(rng, SCENARIO_SLOPE_SPREAD, (n_scen,)),
        position=POSITION_SLOPE * _multipliers(rng, SCENARIO_SLOPE_SPREAD, (n_scen,)),
        interest_pop=_multipliers(rng, POPULATION_SLOPE_SPREAD, (n_types, 2)),
        price_pop=_multipliers(rng, POPULATION_SLOPE_SPREAD, (n_types, NUM_CITY_TIERS)),
        position_pop=_multipliers(rng, POPULATION_SLOPE_SPREAD, (n_types, len(AGE_BUCKETS))),
        gender_age_type=rng.normal(0.0, 0.3, (len(GENDERS), len(AGE_BUCKETS), n_types)),
        new_user_type=np.vstack([np.zeros(n_types), rng.normal(0.0, 0.3, n_types)]),
        device_type=rng.normal(0.0, 0.15, (len(DEVICES), n_types)),
        hour=HOUR_AMPLITUDE * np.cos(2 * np.pi * (hours - PEAK_HOUR) / 24),
        intent=np.array([INTENT_BONUS[t] for t in SCENARIO_TYPES]),
        transfer=np.array([SESSION_TRANSFER[t] for t in SCENARIO_TYPES]),
        forced_lift=float(forced_lift),
    )
    per_scenario = max(CALIBRATION_MIN_PER_SCENARIO, sample_size // n_scen)
    per_round = max(1, CALIBRATION_ROUND // n_scen)
    # The session terms depend on clicks, which depend on the offsets: the first round's offsets
    # (solved without session terms) draw every round's clicks, then the offsets are solved again
    # on the full logits.
    logits, scenario = [], []
    offset = None
    for _ in range(-(-per_scenario // per_round)):
        sample = calibration_sample(world, rng, per_round)
        z = model.logits(world, sample)
        if offset is None:
            offset = _solve_offsets(z, sample.scenario, world.scenarios.ctr)
        z, _ = _draw_logits(dataclasses.replace(model, offset=offset), world, sample, rng)
        logits.append(z - offset[sample.scenario])
        scenario.append(sample.scenario)
    offset = _solve_offsets(np.concatenate(logits), np.concatenate(scenario), world.scenarios.ctr)
    return dataclasses.replace(model, offset=offset)
