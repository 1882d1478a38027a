"""The latent world behind the generated logs: scenarios, users and items with their hidden traits.

Everything here is drawn once per seed and shared by every day of a dataset. The hidden traits
(activity, interests, loyalty, popularity, quality) never reach the logs; the click model
(``clicks.py``) and the traffic simulator (``traffic.py``) read them.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# SAR-Net Table 1: share of the training data and average CTR of its 20 scenarios, in percent.
SARNET_SHARES_PCT = (11.20, 2.01, 5.30, 3.61, 2.39, 7.52, 3.44, 12.17, 8.51, 1.39,
                     4.33, 7.21, 3.99, 1.49, 6.63, 8.52, 4.25, 0.15, 2.78, 3.11)
SARNET_CTRS_PCT = (5.22, 2.14, 6.39, 3.52, 4.55, 6.83, 4.32, 5.01, 9.39, 1.23,
                   9.34, 3.61, 5.25, 2.21, 5.29, 6.52, 4.58, 3.66, 4.79, 6.12)
# Ranges used to draw shares and CTRs when the scenario count is not 20 (the span of Table 1).
SHARE_RANGE_PCT = (0.15, 12.0)
CTR_RANGE_PCT = (1.2, 9.4)

# SAR-Net Table 2: 11.21% of users visited fewer than two scenarios in 30 days. Here those are
# "loyal" users who only ever enter through one scenario; everybody else explores several.
LOYAL_USER_FRACTION = 0.1121

SCENARIO_TYPES = ("feed", "search", "theme", "ad_slot", "cart", "detail")
# Items shown per page view, by scenario type (an ad slot shows one or two, a feed many).
MEAN_PAGE_SIZE = {"feed": 10.0, "search": 8.0, "theme": 6.0, "ad_slot": 1.5, "cart": 4.0, "detail": 6.0}
MAX_POSITION = 50

CATEGORIES = ("hotel", "flight", "train", "bus", "car_rental", "cruise", "package_tour", "day_tour",
              "attraction", "theme_park", "museum", "show", "restaurant", "spa", "ski", "beach_resort",
              "visa", "insurance", "sim_card", "airport_transfer", "luggage", "outdoor_gear",
              "souvenir", "homestay")
# A theme channel favours a few categories: it shows them more and users there click them more.
THEMES = {
    "beach": ("beach_resort", "cruise", "flight"),
    "ski": ("ski", "outdoor_gear", "hotel"),
    "family": ("theme_park", "package_tour", "hotel"),
    "culture": ("museum", "show", "attraction"),
    "food": ("restaurant", "day_tour"),
    "budget": ("bus", "train", "homestay"),
    "luxury": ("spa", "cruise", "hotel"),
    "business": ("flight", "hotel", "airport_transfer"),
    "festival": ("show", "flight", "package_tour"),
    "outbound": ("visa", "insurance", "sim_card"),
}
GENERAL_THEME = "general"  # the theme of every scenario that is not a theme channel

GENDERS = ("f", "m", "u")
GENDER_P = (0.48, 0.47, 0.05)
AGE_BUCKETS = ("<18", "18-24", "25-34", "35-44", "45-54", "55+")
AGE_P = (0.04, 0.18, 0.32, 0.24, 0.14, 0.08)
NUM_CITIES = 80
CITY_TIER_BOUNDS = (4, 14, 34)  # cities ranked by size: 4 tier-1, 10 tier-2, 20 tier-3, the rest tier-4
NUM_CITY_TIERS = 4
NEW_USER_P = 0.08
DEVICES = ("ios", "android", "web", "mini_program")
DEVICE_P = (0.35, 0.45, 0.08, 0.12)
NUM_PRICE_BUCKETS = 10

# The logged recommender shows categories by softmax(EXPOSURE_SHARPNESS * affinity): it knows users'
# tastes well, so organic impressions are well matched and forced ones (interventions) are not.
EXPOSURE_SHARPNESS = 2.0

# Complementary categories: what a traveller who just picked one tends to add next (a cart page
# pushes these). Symmetric; the click model reads it through complement_matrix().
COMPLEMENTS = (
    ("hotel", "flight"), ("hotel", "train"), ("hotel", "airport_transfer"), ("hotel", "restaurant"),
    ("flight", "airport_transfer"), ("flight", "insurance"), ("flight", "luggage"), ("flight", "visa"),
    ("flight", "sim_card"), ("flight", "car_rental"), ("train", "day_tour"), ("bus", "attraction"),
    ("cruise", "insurance"), ("cruise", "spa"), ("package_tour", "insurance"), ("package_tour", "visa"),
    ("ski", "outdoor_gear"), ("ski", "homestay"), ("beach_resort", "spa"), ("beach_resort", "day_tour"),
    ("theme_park", "hotel"), ("museum", "restaurant"), ("show", "restaurant"), ("visa", "sim_card"),
    ("car_rental", "insurance"), ("homestay", "day_tour"), ("attraction", "souvenir"),
)
# Price sensitivity is reversed in this share of scenarios (at least one): premium channels where
# dearer items draw more clicks while everywhere else cheaper ones do. The smallest scenario is always
# one of them (a shared model drags it toward the majority), then theme channels with a premium
# theme, then random others; budget channels never are.
PRICE_REVERSED_FRACTION = 0.2
PREMIUM_THEMES = ("luxury", "business")
BUDGET_THEMES = ("budget",)

# A journey (session) comes with an intent: a category drawn from softmax(INTENT_SHARPNESS * the
# user's overall taste) and, with these probabilities, a price level (cheap, none, premium).
INTENT_SHARPNESS = 1.5
INTENT_PRICE_P = (0.25, 0.5, 0.25)

# Share of user / item ids that appear in the logs but not in the side tables (legal; ingestion copes).
MISSING_FROM_SIDE_TABLES = 0.005


@dataclasses.dataclass(frozen=True)
class Scenarios:
    ids: tuple[str, ...]
    share: np.ndarray  # configured share of impressions, sums to 1
    ctr: np.ndarray  # configured average CTR
    type_idx: np.ndarray  # index into SCENARIO_TYPES
    theme: tuple[str, ...]
    theme_mask: np.ndarray  # (S, C) bool: categories the scenario's theme favours
    mean_page_size: np.ndarray
    price_reversed: np.ndarray  # bool: dearer items draw more clicks here (premium channel)

    @property
    def page_p(self) -> np.ndarray:
        """Probability that a page view lands in each scenario, so that impressions follow ``share``."""
        w = self.share / self.mean_page_size
        return w / w.sum()


@dataclasses.dataclass(frozen=True)
class Users:
    ids: tuple[str, ...]
    gender: np.ndarray
    age: np.ndarray
    city: np.ndarray
    city_tier: np.ndarray
    is_new: np.ndarray
    device: np.ndarray  # primary device
    activity: np.ndarray  # heavy-tailed (log-normal) visit rate
    loyal: np.ndarray  # bool: only ever visits its home scenario
    home: np.ndarray  # home scenario of a loyal user
    propensity: np.ndarray  # personal click bias (logit)
    affinity: np.ndarray  # (U, T, C) float32 interest in a category when in a scenario type
    exposure_cdf: np.ndarray  # (U, T, C) float32 category CDF of a personalised slate
    intent_cdf: np.ndarray  # (U, C) float32 category CDF of a journey's intent
    in_side_table: np.ndarray  # bool


@dataclasses.dataclass(frozen=True)
class Items:
    ids: tuple[str, ...]
    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray  # price bucket 0..9
    popularity: np.ndarray  # Zipf-like exposure weight
    quality: np.ndarray  # logit bonus
    in_side_table: np.ndarray
    by_category: tuple[np.ndarray, ...]  # item indices of each category
    by_category_cdf: tuple[np.ndarray, ...]  # CDF of popularity within the category


@dataclasses.dataclass(frozen=True)
class World:
    seed: int
    scenarios: Scenarios
    users: Users
    items: Items


def _in_side_table(rng: np.random.Generator, n: int) -> np.ndarray:
    """All but a random MISSING_FROM_SIDE_TABLES share (at least one) of n ids."""
    return rng.permutation(n) >= max(1, round(MISSING_FROM_SIDE_TABLES * n))


def _ids(prefix: str, n: int, min_width: int) -> tuple[str, ...]:
    width = max(min_width, len(str(n - 1)))
    return tuple(f"{prefix}{i:0{width}d}" for i in range(n))


def _pinned_draw(rng: np.random.Generator, n: int, lo: float, hi: float, log: bool) -> np.ndarray:
    """n values in [lo, hi] whose extremes are exactly lo and hi (so the configured span is real)."""
    if n == 1:
        return np.array([np.sqrt(lo * hi) if log else (lo + hi) / 2])
    if log:
        vals = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    else:
        vals = rng.uniform(lo, hi, n)
    vals[:2] = (lo, hi)
    return rng.permutation(vals)


def complement_matrix() -> np.ndarray:
    """(C, C) bool: category b complements category a (symmetric, never a category with itself)."""
    m = np.zeros((len(CATEGORIES), len(CATEGORIES)), dtype=bool)
    for a, b in COMPLEMENTS:
        m[CATEGORIES.index(a), CATEGORIES.index(b)] = m[CATEGORIES.index(b), CATEGORIES.index(a)] = True
    return m


def _price_reversed(rng: np.random.Generator, share: np.ndarray, themes: list[str]) -> np.ndarray:
    n = len(share)
    n_reversed = max(1, round(PRICE_REVERSED_FRACTION * n))
    order = [int(np.argmin(share))]
    order += [s for s in rng.permutation(n).tolist() if themes[s] in PREMIUM_THEMES]
    order += [s for s in rng.permutation(n).tolist() if themes[s] not in PREMIUM_THEMES + BUDGET_THEMES]
    chosen = list(dict.fromkeys(order))[:n_reversed]
    reversed_ = np.zeros(n, dtype=bool)
    reversed_[chosen] = True
    return reversed_


def _build_scenarios(rng: np.random.Generator, n: int) -> Scenarios:
    if n == len(SARNET_SHARES_PCT):
        share = np.array(SARNET_SHARES_PCT) / 100.0
        ctr = np.array(SARNET_CTRS_PCT) / 100.0
    else:
        share = _pinned_draw(rng, n, *SHARE_RANGE_PCT, log=True) / 100.0
        ctr = _pinned_draw(rng, n, *CTR_RANGE_PCT, log=False) / 100.0
    share = share / share.sum()
    # Every type appears (when n allows), in a seeded order.
    type_idx = rng.permutation(np.arange(n) % len(SCENARIO_TYPES))
    theme_names = list(rng.permutation(sorted(THEMES)))
    themes: list[str] = []
    mask = np.zeros((n, len(CATEGORIES)), dtype=bool)
    n_channels = 0
    for s in range(n):
        name = GENERAL_THEME
        if SCENARIO_TYPES[type_idx[s]] == "theme":
            name = theme_names[n_channels % len(theme_names)]
            n_channels += 1
            mask[s, [CATEGORIES.index(c) for c in THEMES[name]]] = True
        themes.append(name)
    page = np.array([MEAN_PAGE_SIZE[SCENARIO_TYPES[t]] for t in type_idx])
    return Scenarios(ids=_ids("s", n, 2), share=share, ctr=ctr, type_idx=type_idx, theme=tuple(themes),
                     theme_mask=mask, mean_page_size=page, price_reversed=_price_reversed(rng, share, themes))


def _softmax_cdf(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    cdf = np.cumsum(z, axis=-1)
    cdf /= cdf[..., -1:]
    return cdf.astype(np.float32)


def _build_users(rng: np.random.Generator, n: int, scenarios: Scenarios) -> Users:
    n_types, n_cat = len(SCENARIO_TYPES), len(CATEGORIES)
    city_p = 1.0 / np.arange(1, NUM_CITIES + 1) ** 1.1
    city = rng.choice(NUM_CITIES, n, p=city_p / city_p.sum())
    # Interest = population taste + personal taste, then shifted per scenario type: a shared shift
    # (search leans to transport, cart to add-ons...) plus a personal one, so the scenario a past
    # click came from tells how to read it.
    population = rng.normal(0.0, 0.5, n_cat)
    type_shift = rng.normal(0.0, 0.5, (n_types, n_cat))
    base = population + rng.normal(0.0, 0.8, (n, n_cat))
    personal_shift = rng.normal(0.0, 0.6, (n, n_types, n_cat))
    affinity = (base[:, None, :] + type_shift[None] + personal_shift).astype(np.float32)
    return Users(
        ids=_ids("u", n, 6),
        gender=rng.choice(len(GENDERS), n, p=GENDER_P),
        age=rng.choice(len(AGE_BUCKETS), n, p=AGE_P),
        city=city,
        city_tier=np.searchsorted(CITY_TIER_BOUNDS, city, side="right"),
        is_new=rng.random(n) < NEW_USER_P,
        device=rng.choice(len(DEVICES), n, p=DEVICE_P),
        activity=rng.lognormal(0.0, 1.1, n),
        loyal=rng.permutation(n) < round(LOYAL_USER_FRACTION * n),  # exact share, random users
        home=rng.choice(len(scenarios.ids), n, p=scenarios.page_p),
        propensity=rng.normal(0.0, 0.35, n),
        affinity=affinity,
        exposure_cdf=_softmax_cdf(EXPOSURE_SHARPNESS * affinity),
        intent_cdf=_softmax_cdf(INTENT_SHARPNESS * affinity.mean(axis=1)),
        in_side_table=_in_side_table(rng, n),
    )


def _build_items(rng: np.random.Generator, n: int) -> Items:
    n_cat = len(CATEGORIES)
    cat_p = 1.0 / np.arange(1, n_cat + 1) ** 0.6
    cat_p = rng.permutation(cat_p / cat_p.sum())
    # Every category gets at least one item so any slate can be filled.
    category = np.concatenate([rng.permutation(n_cat), rng.choice(n_cat, n - n_cat, p=cat_p)])
    # Brands live inside one category, about 20 items each; a brand sets the price level.
    brands_per_cat = np.maximum(1, np.bincount(category, minlength=n_cat) // 20)
    brand_start = np.concatenate([[0], np.cumsum(brands_per_cat)[:-1]])
    brand = brand_start[category] + (rng.random(n) * brands_per_cat[category]).astype(np.int64)
    brand_price = rng.normal(0.0, 1.0, int(brands_per_cat.sum()))
    price = np.clip(np.round(4.5 + 1.5 * brand_price[brand] + rng.normal(0.0, 1.0, n)), 0,
                    NUM_PRICE_BUCKETS - 1).astype(np.int64)
    rank = rng.permutation(n)
    popularity = 1.0 / (rank + 1.0) ** 0.9
    log_pop = np.log(popularity)
    quality = 0.1 * (log_pop - log_pop.mean()) / log_pop.std() + rng.normal(0.0, 0.3, n)
    by_cat = tuple(np.flatnonzero(category == c) for c in range(n_cat))
    cdfs = []
    for members in by_cat:
        cdf = np.cumsum(popularity[members])
        cdfs.append(cdf / cdf[-1])
    return Items(ids=_ids("i", n, 5), category=category, brand=brand, price=price, popularity=popularity,
                 quality=quality, in_side_table=_in_side_table(rng, n),
                 by_category=by_cat, by_category_cdf=tuple(cdfs))


def build_world(seed: int, num_scenarios: int, num_users: int, num_items: int) -> World:
    """Draw the latent world for a seed. Deterministic: the same arguments give the same world."""
    if num_scenarios < 1:
        raise ValueError(f"the number of scenarios must be at least 1, got {num_scenarios}")
    if num_users < 1:
        raise ValueError(f"the number of users must be at least 1, got {num_users}")
    if num_items < len(CATEGORIES):
        raise ValueError(f"the number of items must be at least {len(CATEGORIES)} (one per category), "
                         f"got {num_items}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    scenarios = _build_scenarios(rng, num_scenarios)
    return World(seed=seed, scenarios=scenarios, users=_build_users(rng, num_users, scenarios),
                 items=_build_items(rng, num_items))
