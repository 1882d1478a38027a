"""Who sees what, where and when: journeys, page views, slates and manual interventions.

A day's traffic is a set of *journeys*. A journey is one visit of a user (drawn by activity) that
passes through several page views; each page view is in one scenario and shows a slate of items at
positions 1..n. What a slate shows comes from the production recommender being logged: mostly the
user's interests in that scenario type, partly the scenario's theme, partly global popularity.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from msrec.data.world import DEVICES, MAX_POSITION, SCENARIO_TYPES, World

DAY_MS = 86_400_000
# Relative traffic by hour of day (UTC): quiet at night, a lunch bump, an evening peak.
HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 7, 8, 7, 6, 6, 6, 7, 8, 10, 11, 10, 7, 4], float)
HOUR_P = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()
# Pages per journey: loyal users 1 + Poisson(1.0) pages in their home scenario; explorers
# 2 + Poisson(1.5) pages, each in a scenario drawn by traffic share.
LOYAL_EXTRA_PAGES = 1.0
EXPLORER_EXTRA_PAGES = 1.5
PAGE_GAP_S = 45.0  # mean seconds between two page views of a journey
OTHER_DEVICE_P = 0.1  # a journey on another device than the user's usual one

# Slate composition by scenario type: (personalised, theme, global popularity).
SLATE_MIX = {
    "feed": (0.85, 0.0, 0.15),
    "search": (0.90, 0.0, 0.10),
    "theme": (0.35, 0.55, 0.10),
    "ad_slot": (0.50, 0.0, 0.50),
    "cart": (0.75, 0.0, 0.25),
    "detail": (0.85, 0.0, 0.15),
}
_MIX = np.array([SLATE_MIX[t] for t in SCENARIO_TYPES])

# Manual intervention on promotion days (SAR-Net's intervention bias): a pool of popular items is
# pushed into some scenarios and shown to whoever is there, whatever their interests.
PROMOTED_SCENARIO_FRACTION = 0.3
PROMOTED_POOL_SIZE = 6
PROMOTED_ITEMS_PER_SCENARIO = 3
PROMOTED_EXTRA_SHARE = 0.04  # extra impressions per item, as a share of the scenario's day
PROMOTION_CANDIDATES = 0.2  # the pool is drawn from this top share of items by popularity
CHUNK = 1 << 18


@dataclasses.dataclass(frozen=True)
class Impressions:
    """Columnar impressions; every array has one entry per impression."""

    user: np.ndarray
    scenario: np.ndarray
    item: np.ndarray
    position: np.ndarray
    ts_ms: np.ndarray  # milliseconds since the start of the day
    device: np.ndarray
    intervened: np.ndarray  # bool: the item was forced into the slot by an intervention

    def __len__(self) -> int:
        return len(self.user)

    @property
    def hour(self) -> np.ndarray:
        return self.ts_ms // 3_600_000

    def take(self, order: np.ndarray) -> "Impressions":
        return Impressions(**{f.name: getattr(self, f.name)[order] for f in dataclasses.fields(self)})


@dataclasses.dataclass(frozen=True)
class Intervention:
    scenario: int
    item: int
    extra_impressions: int


def _page_sizes(rng: np.random.Generator, world: World, page_scenario: np.ndarray) -> np.ndarray:
    mean = world.scenarios.mean_page_size[page_scenario]
    return np.minimum(rng.geometric(1.0 / mean), MAX_POSITION)


def _choose_categories(rng: np.random.Generator, world: World, user: np.ndarray,
                       scenario: np.ndarray) -> np.ndarray:
    sc, users, items = world.scenarios, world.users, world.items
    stype = sc.type_idx[scenario]
    mix = _MIX[stype]
    r = rng.random(len(user))
    component = (r >= mix[:, 0]).astype(np.int8) + (r >= mix[:, 0] + mix[:, 1])
    u = rng.random(len(user)).astype(np.float32)
    n_cat = users.affinity.shape[2]
    category = np.empty(len(user), dtype=np.int64)

    personal = component == 0
    cdf = users.exposure_cdf[user[personal], stype[personal]]
    category[personal] = (cdf < u[personal, None]).sum(axis=1)

    themed = component == 1
    theme_cdf = np.cumsum(sc.theme_mask / np.maximum(sc.theme_mask.sum(1, keepdims=True), 1), axis=1)
    category[themed] = (theme_cdf[scenario[themed]] < u[themed, None]).sum(axis=1)

    popular = component == 2
    global_cdf = np.cumsum(np.bincount(items.category, weights=items.popularity, minlength=n_cat))
    global_cdf /= global_cdf[-1]
    category[popular] = np.searchsorted(global_cdf, u[popular], side="right")
    # float rounding can leave a CDF's last entry a hair below 1
    return np.minimum(category, n_cat - 1)


def _choose_items(rng: np.random.Generator, world: World, category: np.ndarray) -> np.ndarray:
    items = world.items
    item = np.empty(len(category), dtype=np.int64)
    u = rng.random(len(category))
    for c, (members, cdf) in enumerate(zip(items.by_category, items.by_category_cdf)):
        rows = np.flatnonzero(category == c)
        pick = np.minimum(np.searchsorted(cdf, u[rows], side="right"), len(members) - 1)
        item[rows] = members[pick]
    return item


def _fill_pages(rng: np.random.Generator, world: World, page_user: np.ndarray, page_scenario: np.ndarray,
                page_ts_ms: np.ndarray, page_device: np.ndarray, page_size: np.ndarray) -> Impressions:
    page_of = np.repeat(np.arange(len(page_size)), page_size)
    first = np.cumsum(page_size) - page_size
    position = np.arange(len(page_of)) - first[page_of] + 1
    user = page_user[page_of]
    scenario = page_scenario[page_of]
    # in chunks: the per-impression category CDFs are (rows x categories) floats
    category = np.concatenate([_choose_categories(rng, world, user[k:k + CHUNK], scenario[k:k + CHUNK])
                               for k in range(0, max(len(user), 1), CHUNK)])
    return Impressions(user=user, scenario=scenario, item=_choose_items(rng, world, category),
                       position=position, ts_ms=page_ts_ms[page_of], device=page_device[page_of],
                       intervened=np.zeros(len(page_of), dtype=bool))


def _journey_pages(rng: np.random.Generator, world: World, n_journeys: int) -> tuple[np.ndarray, ...]:
    """Page views of ``n_journeys`` journeys: (user, scenario, ts_ms, device, size) per page."""
    users, sc = world.users, world.scenarios
    p_user = users.activity / users.activity.sum()
    user = rng.choice(len(p_user), n_journeys, p=p_user)
    loyal = users.loyal[user]
    extra = rng.poisson(np.where(loyal, LOYAL_EXTRA_PAGES, EXPLORER_EXTRA_PAGES))
    n_pages = np.where(loyal, 1, 2) + extra
    start_s = rng.choice(24, n_journeys, p=HOUR_P) * 3600.0 + rng.uniform(0.0, 3600.0, n_journeys)
    device = np.where(rng.random(n_journeys) < OTHER_DEVICE_P,
                      rng.integers(0, len(DEVICES), n_journeys), users.device[user])

    journey = np.repeat(np.arange(n_journeys), n_pages)
    page_user = user[journey]
    drawn = rng.choice(len(sc.ids), len(journey), p=sc.page_p)
    page_scenario = np.where(loyal[journey], users.home[page_user], drawn)
    # the first page of a journey is at its start, the next ones follow at random gaps
    gaps = rng.exponential(PAGE_GAP_S, len(journey))
    elapsed = np.cumsum(gaps)
    first = np.cumsum(n_pages) - n_pages
    offset_s = elapsed - elapsed[first][journey]
    ts_ms = np.minimum((start_s[journey] + offset_s) * 1000.0, DAY_MS - 1).astype(np.int64)
    return page_user, page_scenario, ts_ms, device[journey], _page_sizes(rng, world, page_scenario)


def simulate_day(world: World, rng: np.random.Generator, n_impressions: int) -> Impressions:
    """Exactly ``n_impressions`` impressions of one day, in time order (no interventions yet)."""
    sc = world.scenarios
    loyal_share = float(world.users.loyal.mean())
    pages_per_journey = loyal_share * (1 + LOYAL_EXTRA_PAGES) + (1 - loyal_share) * (2 + EXPLORER_EXTRA_PAGES)
    per_journey = pages_per_journey * float(sc.page_p @ sc.mean_page_size)
    batches: list[tuple[np.ndarray, ...]] = []
    total = 0
    while total < n_impressions:
        # draw a little more than needed; the surplus of the last batch is cut below
        n_journeys = int((n_impressions - total) / per_journey * 1.1) + 16
        batch = _journey_pages(rng, world, n_journeys)
        batches.append(batch)
        total += int(batch[-1].sum())
    page_user, page_scenario, ts_ms, device, size = (np.concatenate(cols) for cols in zip(*batches))
    cum = np.cumsum(size)
    last = int(np.searchsorted(cum, n_impressions))
    size = size[: last + 1].copy()
    size[last] -= int(cum[last]) - n_impressions
    keep = slice(0, last + 1)
    imps = _fill_pages(rng, world, page_user[keep], page_scenario[keep], ts_ms[keep], device[keep], size)
    return imps.take(np.argsort(imps.ts_ms, kind="stable"))


def intervene(world: World, rng: np.random.Generator, imps: Impressions) -> tuple[Impressions, list[Intervention]]:
    """A promotion day: force promoted items into random slots of some scenarios."""
    sc, items = world.scenarios, world.items
    n_scen = len(sc.ids)
    n_promoted = max(1, round(PROMOTED_SCENARIO_FRACTION * n_scen))
    promoted = np.sort(rng.choice(n_scen, n_promoted, replace=False, p=sc.share))
    n_candidates = max(PROMOTED_POOL_SIZE, int(PROMOTION_CANDIDATES * len(items.ids)))
    candidates = np.argsort(-items.popularity, kind="stable")[:n_candidates]
    pool = rng.choice(candidates, PROMOTED_POOL_SIZE, replace=False)
    item = imps.item.copy()
    forced = np.zeros(len(imps), dtype=bool)
    done: list[Intervention] = []
    for s in promoted:
        in_scenario = imps.scenario == s
        n_day = int(in_scenario.sum())
        for it in np.sort(rng.choice(pool, PROMOTED_ITEMS_PER_SCENARIO, replace=False)):
            free = np.flatnonzero(in_scenario & ~forced)
            extra = min(len(free), max(1, round(PROMOTED_EXTRA_SHARE * n_day)))
            if extra == 0:
                continue  # nobody visited this scenario today
            slots = rng.choice(free, extra, replace=False)
            item[slots] = it
            forced[slots] = True
            done.append(Intervention(scenario=int(s), item=int(it), extra_impressions=extra))
    return dataclasses.replace(imps, item=item, intervened=forced), done


def calibration_sample(world: World, rng: np.random.Generator, impressions_per_scenario: int) -> Impressions:
    """Organic traffic with the same number of impressions in every scenario (for calibration)."""
    sc, users = world.scenarios, world.users
    pages = np.ceil(impressions_per_scenario / sc.mean_page_size).astype(np.int64)
    page_scenario = np.repeat(np.arange(len(sc.ids)), pages)
    n = len(page_scenario)
    page_user = rng.choice(len(users.ids), n, p=users.activity / users.activity.sum())
    ts_ms = ((rng.choice(24, n, p=HOUR_P) + rng.random(n)) * 3_600_000).astype(np.int64)
    return _fill_pages(rng, world, page_user, page_scenario, ts_ms, users.device[page_user],
                       _page_sizes(rng, world, page_scenario))
