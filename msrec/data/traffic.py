"""Who sees what, where and when: journeys, page views, slates and manual interventions.

A day's traffic is a set of *journeys* (sessions). A journey is one visit of a user (drawn by
activity) with an intent (a category and maybe a price level) that passes through several page views;
each page view is in one scenario and shows a slate of items at positions 1..n. What a slate shows
comes from the production recommender being logged: mostly the user's interests in that scenario
type, partly the scenario's theme, partly global popularity; a search box also sees the intent the
user typed. Optionally a scorer (the previously deployed model) re-ranks a wider candidate set, which
closes the feedback loop between what was shown and what gets shown next.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from msrec.data.world import DEVICES, INTENT_PRICE_P, MAX_POSITION, SCENARIO_TYPES, World

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
# A personalised search slot shows the journey's intent category with this probability (the user
# typed it); other scenario types do not see the intent.
SEARCH_SHOWS_INTENT = 0.5
# With a scorer, the logging policy draws this many organic candidates per slot and shows the
# page's best-scored ones, best first.
CANDIDATES_PER_SLOT = 3

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
    session: np.ndarray  # journey index within the day
    page: np.ndarray  # 0-based rank of the impression's page view within its journey
    intent: np.ndarray  # the journey's intent category
    intent_price: np.ndarray  # the journey's price intent: -1 cheap, 0 none, +1 premium
    intervened: np.ndarray  # bool: the item was forced into the slot by an intervention

    def __len__(self) -> int:
        return len(self.user)

    @property
    def hour(self) -> np.ndarray:
        return self.ts_ms // 3_600_000

    def take(self, order: np.ndarray) -> "Impressions":
        return Impressions(**{f.name: getattr(self, f.name)[order] for f in dataclasses.fields(self)})


# Scores candidates for the logging policy: (user, scenario, item, hour, device) index arrays in,
# one score per row out (higher is shown first), or None to keep the organic slates.
IndexScorer = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], Optional[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Pages:
    """Page views: one entry per page (the impressions are filled in by ``_fill_pages``)."""

    user: np.ndarray
    scenario: np.ndarray
    ts_ms: np.ndarray
    device: np.ndarray
    size: np.ndarray
    session: np.ndarray
    rank: np.ndarray  # 0-based rank within the journey
    intent: np.ndarray
    intent_price: np.ndarray

    def head(self, n: int) -> "Pages":
        return Pages(**{f.name: getattr(self, f.name)[:n] for f in dataclasses.fields(self)})


@dataclasses.dataclass(frozen=True)
class Intervention:
    scenario: int
    item: int
    extra_impressions: int


def _page_sizes(rng: np.random.Generator, world: World, page_scenario: np.ndarray) -> np.ndarray:
    mean = world.scenarios.mean_page_size[page_scenario]
    return np.minimum(rng.geometric(1.0 / mean), MAX_POSITION)


def _choose_categories(rng: np.random.Generator, world: World, user: np.ndarray, scenario: np.ndarray,
                       intent: np.ndarray) -> np.ndarray:
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

    typed = personal & (stype == SCENARIO_TYPES.index("search")) & (rng.random(len(user)) < SEARCH_SHOWS_INTENT)
    category[typed] = intent[typed]
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


def _organic_slots(rng: np.random.Generator, world: World, user: np.ndarray, scenario: np.ndarray,
                   intent: np.ndarray) -> np.ndarray:
    """The organic item of each slot; in chunks, as the per-slot category CDFs are (rows x categories)."""
    category = np.concatenate([
        _choose_categories(rng, world, user[k:k + CHUNK], scenario[k:k + CHUNK], intent[k:k + CHUNK])
        for k in range(0, max(len(user), 1), CHUNK)])
    return _choose_items(rng, world, category)


def _rank_candidates(rng: np.random.Generator, world: World, pages: Pages, page_of: np.ndarray,
                     scorer: IndexScorer) -> Optional[np.ndarray]:
    """Items of every slot when a scorer picks each page's best of CANDIDATES_PER_SLOT x size organic
    candidates (slots in page order, best first); None when the scorer declines."""
    cand_page = np.repeat(page_of, CANDIDATES_PER_SLOT)
    cand_item = _organic_slots(rng, world, pages.user[cand_page], pages.scenario[cand_page],
                               pages.intent[cand_page])
    scores = scorer(pages.user[cand_page], pages.scenario[cand_page], cand_item,
                    pages.ts_ms[cand_page] // 3_600_000, pages.device[cand_page])
    if scores is None:
        return None
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape != cand_item.shape or not np.isfinite(scores).all():
        raise ValueError(f"the scorer must return one finite score per candidate ({len(cand_item)}), "
                         f"got shape {scores.shape}")
    order = np.lexsort((-scores, cand_page))  # by page, best first
    first = np.cumsum(pages.size * CANDIDATES_PER_SLOT) - pages.size * CANDIDATES_PER_SLOT
    rank = np.arange(len(order)) - first[cand_page[order]]
    return cand_item[order[rank < pages.size[cand_page[order]]]]


def _fill_pages(rng: np.random.Generator, world: World, pages: Pages,
                scorer: Optional[IndexScorer] = None) -> Impressions:
    page_of = np.repeat(np.arange(len(pages.size)), pages.size)
    first = np.cumsum(pages.size) - pages.size
    position = np.arange(len(page_of)) - first[page_of] + 1
    item = None if scorer is None else _rank_candidates(rng, world, pages, page_of, scorer)
    if item is None:
        item = _organic_slots(rng, world, pages.user[page_of], pages.scenario[page_of], pages.intent[page_of])
    return Impressions(user=pages.user[page_of], scenario=pages.scenario[page_of], item=item,
                       position=position, ts_ms=pages.ts_ms[page_of], device=pages.device[page_of],
                       session=pages.session[page_of], page=pages.rank[page_of],
                       intent=pages.intent[page_of], intent_price=pages.intent_price[page_of],
                       intervened=np.zeros(len(page_of), dtype=bool))


def _intents(rng: np.random.Generator, world: World, user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A journey's intent: a category by the user's overall taste, and a price level."""
    u = rng.random(len(user)).astype(np.float32)
    n_cat = world.users.intent_cdf.shape[1]
    category = np.minimum((world.users.intent_cdf[user] < u[:, None]).sum(axis=1), n_cat - 1)
    price = rng.choice(np.array([-1, 0, 1], dtype=np.int8), len(user), p=INTENT_PRICE_P)
    return category.astype(np.int64), price


def _journey_pages(rng: np.random.Generator, world: World, n_journeys: int, first_session: int) -> Pages:
    """Page views of ``n_journeys`` journeys, numbered from ``first_session``."""
    users, sc = world.users, world.scenarios
    p_user = users.activity / users.activity.sum()
    user = rng.choice(len(p_user), n_journeys, p=p_user)
    loyal = users.loyal[user]
    extra = rng.poisson(np.where(loyal, LOYAL_EXTRA_PAGES, EXPLORER_EXTRA_PAGES))
    n_pages = np.where(loyal, 1, 2) + extra
    start_s = rng.choice(24, n_journeys, p=HOUR_P) * 3600.0 + rng.uniform(0.0, 3600.0, n_journeys)
    device = np.where(rng.random(n_journeys) < OTHER_DEVICE_P,
                      rng.integers(0, len(DEVICES), n_journeys), users.device[user])
    intent, intent_price = _intents(rng, world, user)

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
    return Pages(user=page_user, scenario=page_scenario, ts_ms=ts_ms, device=device[journey],
                 size=_page_sizes(rng, world, page_scenario), session=first_session + journey,
                 rank=np.arange(len(journey)) - first[journey], intent=intent[journey],
                 intent_price=intent_price[journey])


def simulate_day(world: World, rng: np.random.Generator, n_impressions: int,
                 scorer: Optional[IndexScorer] = None) -> Impressions:
    """Exactly ``n_impressions`` impressions of one day, in time order (no interventions yet);
    ``scorer``, when given, ranks each page's candidates (see ``_rank_candidates``)."""
    sc = world.scenarios
    loyal_share = float(world.users.loyal.mean())
    pages_per_journey = loyal_share * (1 + LOYAL_EXTRA_PAGES) + (1 - loyal_share) * (2 + EXPLORER_EXTRA_PAGES)
    per_journey = pages_per_journey * float(sc.page_p @ sc.mean_page_size)
    batches: list[Pages] = []
    total = sessions = 0
    while total < n_impressions:
        # draw a little more than needed; the surplus of the last batch is cut below
        n_journeys = int((n_impressions - total) / per_journey * 1.1) + 16
        batches.append(_journey_pages(rng, world, n_journeys, sessions))
        sessions += n_journeys
        total += int(batches[-1].size.sum())
    pages = Pages(**{f.name: np.concatenate([getattr(b, f.name) for b in batches])
                     for f in dataclasses.fields(Pages)})
    cum = np.cumsum(pages.size)
    last = int(np.searchsorted(cum, n_impressions))
    pages = pages.head(last + 1)
    pages.size[last] -= int(cum[last]) - n_impressions
    imps = _fill_pages(rng, world, pages, scorer)
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
    """Organic traffic with the same number of impressions in every scenario (for calibration):
    the pages are dealt at random into journeys of the usual length, each with its intent."""
    sc, users = world.scenarios, world.users
    pages = np.ceil(impressions_per_scenario / sc.mean_page_size).astype(np.int64)
    page_scenario = rng.permutation(np.repeat(np.arange(len(sc.ids)), pages))
    n = len(page_scenario)
    lengths = 2 + rng.poisson(EXPLORER_EXTRA_PAGES, n)
    lengths = lengths[: int(np.searchsorted(np.cumsum(lengths), n)) + 1]
    lengths[-1] -= int(lengths.sum()) - n
    journey = np.repeat(np.arange(len(lengths)), lengths)
    user = rng.choice(len(users.ids), len(lengths), p=users.activity / users.activity.sum())
    intent, intent_price = _intents(rng, world, user)
    first = np.cumsum(lengths) - lengths
    ts_ms = ((rng.choice(24, n, p=HOUR_P) + rng.random(n)) * 3_600_000).astype(np.int64)
    return _fill_pages(rng, world, Pages(
        user=user[journey], scenario=page_scenario, ts_ms=ts_ms, device=users.device[user[journey]],
        size=_page_sizes(rng, world, page_scenario), session=journey, rank=np.arange(n) - first[journey],
        intent=intent[journey], intent_price=intent_price[journey]))
