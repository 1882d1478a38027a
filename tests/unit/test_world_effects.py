"""The effects the generated world carries beyond per-scenario offsets: per-scenario slopes, reversed
price effects, population x scenario-type slopes, session intent, carry-over between pages and the
click lift of forced impressions."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import msrec  # noqa: F401
from msrec.data import clicks, traffic
from msrec.data.clicks import build_click_model, centred_price, draw_clicks
from msrec.data.world import AGE_BUCKETS, CATEGORIES, NUM_PRICE_BUCKETS, SCENARIO_TYPES, build_world, \
    complement_matrix

SEED, USERS, ITEMS, PER_DAY = 0, 8000, 1500, 150_000


@pytest.fixture(scope="module")
def world():
    return build_world(SEED, 20, USERS, ITEMS)


@pytest.fixture(scope="module")
def model(world):
    return build_click_model(world, 200_000)


@pytest.fixture(scope="module")
def day(world, model):
    """One organic day: impressions, true p_click, drawn clicks, the true logit."""
    imps = traffic.simulate_day(world, np.random.default_rng(11), PER_DAY)
    p, click = draw_clicks(model, world, imps, np.random.default_rng(12))
    return imps, p, click, np.log(p / (1 - p))


def _ols_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of y on x (with intercept) and its standard error."""
    xc = x - x.mean()
    slope = float(xc @ (y - y.mean()) / (xc @ xc))
    resid = y - y.mean() - slope * xc
    return slope, float(np.sqrt(resid @ resid / (len(x) - 2) / (xc @ xc)))


def test_each_scenario_has_its_own_slopes(world, model, day):
    """Slopes are drawn per scenario around shared means, so scenarios of one type differ; the true
    logit's slope on log(position), measured in each well-filled scenario, is the configured one
    (position is independent of everything else on a page)."""
    imps, _, _, logit = day
    for name in ("interest", "quality", "price", "position"):
        slopes = np.abs(getattr(model, name))
        for t in range(len(SCENARIO_TYPES)):
            same_type = slopes[world.scenarios.type_idx == t]
            if len(same_type) >= 2:
                assert same_type.max() / same_type.min() > 1.05, (name, SCENARIO_TYPES[t], same_type)
    configured = model.slopes(world, imps)["position"]
    measured, expected = {}, {}
    for s in range(len(world.scenarios.ids)):
        rows = imps.scenario == s
        if rows.sum() < 5000:
            continue
        slope, se = _ols_slope(np.log(imps.position[rows]), logit[rows])
        expected[s] = configured[rows].mean()
        assert abs(slope - expected[s]) < 5 * se + 0.05 * abs(expected[s]), (s, slope, expected[s], se)
        measured[s] = slope
    assert len(measured) >= 8
    assert min(measured.values()) / max(measured.values()) > 1.5  # both negative: a real spread


def _true_price_effect(world, model, imps) -> np.ndarray:
    """Per impression: logit with the item at the top price bucket minus at the bottom one."""
    def logits_at(bucket: int) -> np.ndarray:
        items = dataclasses.replace(world.items, price=np.full(len(world.items.ids), bucket))
        return model.logits(dataclasses.replace(world, items=items), imps)
    return logits_at(NUM_PRICE_BUCKETS - 1) - logits_at(0)


def test_price_effect_is_reversed_in_premium_scenarios(world, model, day):
    imps, _, click, _ = day
    reversed_ = world.scenarios.price_reversed
    assert 1 <= reversed_.sum() <= len(reversed_) // 2
    smallest = int(np.argmin(world.scenarios.share))
    assert reversed_[smallest]  # a small scenario a shared model would drag toward the majority
    effect = _true_price_effect(world, model, imps)
    for s in range(len(world.scenarios.ids)):
        rows = imps.scenario == s
        assert np.sign(effect[rows].mean()) == (1 if reversed_[s] else -1), s
    # In the drawn clicks (where exposure and item mix blur it): dear items beat cheap ones in
    # premium scenarios and lose to them elsewhere.
    price = world.items.price[imps.item]
    ratio, err = {}, {}
    for flag in (True, False):
        rows = reversed_[imps.scenario] == flag
        dear, cheap = click[rows & (price >= 6)], click[rows & (price <= 3)]
        ratio[flag] = dear.mean() / cheap.mean()
        err[flag] = ratio[flag] * np.hypot(1 / np.sqrt(dear.sum()), 1 / np.sqrt(cheap.sum()))
    assert ratio[True] > 1 > ratio[False] + 3 * err[False], (ratio, err)
    assert ratio[True] - ratio[False] > 3 * np.hypot(err[True], err[False]), (ratio, err)


def test_slopes_interact_with_the_user_population(world, model, day):
    """Within one scenario the slope of log(position) differs between age groups, and the slope of
    price between city tiers, as the population x type tables say: interactions, not offsets."""
    imps, _, _, logit = day
    users = world.users
    s = int(np.argmax(world.scenarios.share))
    t = world.scenarios.type_idx[s]
    in_s = imps.scenario == s
    age = users.age[imps.user]
    common = [AGE_BUCKETS.index(a) for a in ("18-24", "25-34", "35-44")]
    lo, hi = sorted(common, key=lambda a: model.position_pop[t, a])[::2]
    assert model.position_pop[t, hi] / model.position_pop[t, lo] > 1.3
    configured = model.slopes(world, imps)["position"]
    fits = {}
    for a in (lo, hi):
        rows = in_s & (age == a)
        fits[a] = _ols_slope(np.log(imps.position[rows]), logit[rows])
        expected = configured[rows].mean()
        assert abs(fits[a][0] - expected) < 5 * fits[a][1] + 0.1 * abs(expected), (a, fits[a], expected)
    assert fits[lo][0] - fits[hi][0] > 5 * np.hypot(fits[lo][1], fits[hi][1]), fits

    # price: the true effect of price per city tier, in the price-averse scenario whose type's tiers
    # differ most
    averse = np.flatnonzero(~world.scenarios.price_reversed)
    spread = model.price_pop.max(axis=1) / model.price_pop.min(axis=1)
    s = averse[np.argmax(spread[world.scenarios.type_idx[averse]])]
    t = world.scenarios.type_idx[s]
    in_s = imps.scenario == s
    effect = _true_price_effect(world, model, imps)
    tier = users.city_tier[imps.user]
    per_tier, expected = [], []
    for k in range(model.price_pop.shape[1]):
        rows = in_s & (tier == k)
        per_tier.append(effect[rows].mean())
        # the price intent of the journeys adds its own slope; the tier scales the scenario's
        intent = clicks.INTENT_PRICE_SLOPE * imps.intent_price[rows].mean()
        expected.append(2 * (model.price[s] * model.price_pop[t, k] + intent))
    per_tier = np.array(per_tier)
    assert np.allclose(per_tier, expected, rtol=1e-6), (per_tier, expected)
    assert per_tier.min() / per_tier.max() > 1.3  # all negative


def test_session_intent_raises_the_click_probability_of_matching_items(world, model, day):
    """The same impressions with the journeys' intents dealt out at random: items matching the true
    intent lose clicks, and a premium intent favours dear items over a cheap intent."""
    imps, p, click, _ = day
    rng = np.random.default_rng(3)
    n_sessions = imps.session.max() + 1
    shuffled = rng.permutation(n_sessions)
    intent_of = np.zeros(n_sessions, dtype=np.int64)
    intent_of[imps.session] = imps.intent
    other = dataclasses.replace(imps, intent=intent_of[shuffled][imps.session])
    p_other, click_other = draw_clicks(model, world, other, np.random.default_rng(12))
    match = world.items.category[imps.item] == imps.intent
    assert 0.05 < match.mean() < 0.5
    assert p[match].mean() > 1.3 * p_other[match].mean()
    assert click[match].sum() > click_other[match].sum() + 4 * np.sqrt(click_other[match].sum())

    price = centred_price(world.items.price[imps.item])
    dear = price > 0.3
    ctr = {k: click[(imps.intent_price == k) & dear].mean() / click[(imps.intent_price == k) & ~dear].mean()
           for k in (-1, 1)}
    assert ctr[1] > 1.2 * ctr[-1], ctr


def _last_click_before(imps, click, category) -> np.ndarray:
    """Per impression, the category of its journey's last click on an earlier page (-1: none)."""
    order = np.lexsort((imps.position, imps.page, imps.session))
    last = np.full(len(imps), -1)
    current = {}
    prev_page = (-1, -1)
    pending: dict[int, int] = {}
    for k in order.tolist():
        key = (int(imps.session[k]), int(imps.page[k]))
        if key != prev_page:
            current.update(pending)
            pending = {}
            prev_page = key
        last[k] = current.get(key[0], -1)
        if click[k]:
            pending[key[0]] = int(category[k])
    return last


def test_cart_pages_favour_complements_of_the_last_click(world, day):
    """After a click, a cart page's complements of it draw clicks far more than other items, a search
    page's do not: the relation of a past click to the candidate depends on the scenario type."""
    imps, _, click, _ = day
    category = world.items.category[imps.item]
    last = _last_click_before(imps, click, category)
    complement = (last >= 0) & complement_matrix()[np.maximum(last, 0), category]
    unrelated = (last >= 0) & ~complement & (category != last)
    stype = world.scenarios.type_idx[imps.scenario]
    lift = {}
    for name in ("cart", "search"):
        rows = stype == SCENARIO_TYPES.index(name)
        comp, rest = click[rows & complement], click[rows & unrelated]
        assert comp.sum() >= 20, (name, comp.sum())
        lift[name] = (comp.mean() / rest.mean(), 1 / np.sqrt(comp.sum()))
    assert lift["cart"][0] > 1.6 and lift["cart"][0] > lift["search"][0] * (1 + 3 * lift["cart"][1]), lift
    assert len(CATEGORIES) == complement_matrix().shape[0] and not complement_matrix().diagonal().any()
    assert (complement_matrix() == complement_matrix().T).all()
    assert clicks.SESSION_TRANSFER["cart"][1] > clicks.SESSION_TRANSFER["search"][1]


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _fitted_lift(click: np.ndarray, offset: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood b of click ~ Bernoulli(sigmoid(offset + b)) (Newton) and its standard error."""
    b = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-(offset + b)))
        step = (click - p).sum() / (p * (1 - p)).sum()
        b += step
        if abs(step) < 1e-10:
            break
    p = 1 / (1 + np.exp(-(offset + b)))
    return b, float(1 / np.sqrt((p * (1 - p)).sum()))


def test_forced_click_lift_raises_the_log_odds_of_forced_impressions_by_exactly_the_lift(world, model):
    """A promotion day drawn twice with the same random numbers, without and with forced_lift L: where
    the journey's earlier clicks came out the same (so the session terms are equal), the true logit of
    a forced impression is higher by exactly L and an organic one's is unchanged; the clicks drawn on
    forced impressions fit a log-odds shift of about L over their logits without it (and of about 0
    without the lift)."""
    lift = 0.7
    imps = traffic.simulate_day(world, np.random.default_rng(21), PER_DAY)
    imps, _ = traffic.intervene(world, np.random.default_rng(22), imps)
    forced = imps.intervened
    assert forced.sum() > 3000
    p0, click0 = draw_clicks(model, world, imps, np.random.default_rng(23))
    p1, click1 = draw_clicks(dataclasses.replace(model, forced_lift=lift), world, imps, np.random.default_rng(23))
    # a page sees the clicks of its journey's earlier pages only: up to the first page where a click
    # differs, both draws share the history
    flipped = click0 != click1
    first_flip = np.full(imps.session.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(first_flip, imps.session[flipped], imps.page[flipped])
    same_history = imps.page <= first_flip[imps.session]
    assert same_history[forced].mean() > 0.8
    gap = _logit(p1) - _logit(p0)
    np.testing.assert_allclose(gap[same_history & forced], lift, atol=1e-9)
    np.testing.assert_allclose(gap[same_history & ~forced], 0.0, atol=1e-9)

    fitted, se = _fitted_lift(click1[forced], _logit(p1[forced]) - lift)
    unlifted, se0 = _fitted_lift(click0[forced], _logit(p0[forced]))
    assert se < 0.1 and abs(fitted - lift) < 4 * se, (fitted, se)
    assert abs(unlifted) < 4 * se0, (unlifted, se0)
