"""The world card (``OUT/world.json``): every knob of the generator and what the seed drew from them.

It is what a reader needs to know which effects a dataset holds (per-scenario slopes, reversed
price scenarios, population slopes, session intent, interventions, the feedback loop) without
reading the code. Like the truth files, no model may read it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from msrec.data import clicks, traffic, world as world_module
from msrec.data.clicks import ClickModel
from msrec.data.world import AGE_BUCKETS, NUM_CITY_TIERS, SCENARIO_TYPES, World

DIGITS = 6  # drawn values are rounded for reading; the card is compared as written


def _r(x: float) -> float:
    return round(float(x), DIGITS)


def _by_type(table: np.ndarray, columns: tuple[str, ...]) -> dict[str, dict[str, float]]:
    return {t: {c: _r(v) for c, v in zip(columns, row)} for t, row in zip(SCENARIO_TYPES, table)}


def knobs() -> dict[str, Any]:
    """The generator's named constants, by module."""
    return {
        "world": {
            "loyal_user_fraction": world_module.LOYAL_USER_FRACTION,
            "new_user_p": world_module.NEW_USER_P,
            "num_cities": world_module.NUM_CITIES,
            "missing_from_side_tables": world_module.MISSING_FROM_SIDE_TABLES,
            "mean_page_size": dict(world_module.MEAN_PAGE_SIZE),
            "exposure_sharpness": world_module.EXPOSURE_SHARPNESS,
            "price_reversed_fraction": world_module.PRICE_REVERSED_FRACTION,
            "premium_themes": list(world_module.PREMIUM_THEMES),
            "budget_themes": list(world_module.BUDGET_THEMES),
            "intent_sharpness": world_module.INTENT_SHARPNESS,
            "intent_price_p": {"cheap": world_module.INTENT_PRICE_P[0], "none": world_module.INTENT_PRICE_P[1],
                               "premium": world_module.INTENT_PRICE_P[2]},
            "complements": [list(pair) for pair in world_module.COMPLEMENTS],
        },
        "traffic": {
            "loyal_extra_pages": traffic.LOYAL_EXTRA_PAGES,
            "explorer_extra_pages": traffic.EXPLORER_EXTRA_PAGES,
            "page_gap_s": traffic.PAGE_GAP_S,
            "other_device_p": traffic.OTHER_DEVICE_P,
            "slate_mix": {t: dict(zip(("personal", "theme", "popular"), mix))
                          for t, mix in traffic.SLATE_MIX.items()},
            "search_shows_intent": traffic.SEARCH_SHOWS_INTENT,
            "candidates_per_slot": traffic.CANDIDATES_PER_SLOT,
            "promoted_scenario_fraction": traffic.PROMOTED_SCENARIO_FRACTION,
            "promoted_pool_size": traffic.PROMOTED_POOL_SIZE,
            "promoted_items_per_scenario": traffic.PROMOTED_ITEMS_PER_SCENARIO,
            "promoted_extra_share": traffic.PROMOTED_EXTRA_SHARE,
        },
        "click_model": {
            "interest_weight": clicks.INTEREST_WEIGHT,
            "quality_weight": clicks.QUALITY_WEIGHT,
            "price_slope": clicks.PRICE_SLOPE,
            "position_slope": clicks.POSITION_SLOPE,
            "scenario_slope_spread": clicks.SCENARIO_SLOPE_SPREAD,
            "population_slope_spread": clicks.POPULATION_SLOPE_SPREAD,
            "theme_bonus": clicks.THEME_BONUS,
            "hour_amplitude": clicks.HOUR_AMPLITUDE,
            "peak_hour": clicks.PEAK_HOUR,
            "intent_bonus": dict(clicks.INTENT_BONUS),
            "intent_price_slope": clicks.INTENT_PRICE_SLOPE,
            "session_transfer": {t: {"same_category": same, "complement": comp}
                                 for t, (same, comp) in clicks.SESSION_TRANSFER.items()},
        },
    }


def world_card(world: World, model: ClickModel, dates: list[str], impressions_per_day: int,
               promotion_dates: list[str], feedback_loop: bool, corrupt_fraction: float) -> dict[str, Any]:
    """The card of a generated dataset (JSON-ready)."""
    sc, us, it = world.scenarios, world.users, world.items
    return {
        "seed": world.seed,
        "dates": dates,
        "impressions_per_day": impressions_per_day,
        "num_users": len(us.ids),
        "num_items": len(it.ids),
        "num_scenarios": len(sc.ids),
        "missing_from_side_tables": {"users": int((~us.in_side_table).sum()),
                                     "items": int((~it.in_side_table).sum())},
        "loyal_user_fraction": {"configured": world_module.LOYAL_USER_FRACTION, "drawn": float(us.loyal.mean())},
        "promotion_dates": promotion_dates,
        "forced_click_lift": model.forced_lift,
        "feedback_loop": feedback_loop,
        "corrupt_fraction": corrupt_fraction,
        "knobs": knobs(),
        "population_slopes": {
            "interest_by_new_user": _by_type(model.interest_pop, ("returning", "new")),
            "price_by_city_tier": _by_type(model.price_pop, tuple(f"tier{k + 1}" for k in range(NUM_CITY_TIERS))),
            "position_by_age": _by_type(model.position_pop, AGE_BUCKETS),
        },
        "scenarios": [
            {"scenario_id": sc.ids[s], "scenario_type": SCENARIO_TYPES[sc.type_idx[s]], "theme": sc.theme[s],
             "share": round(float(sc.share[s]), 8), "ctr": round(float(sc.ctr[s]), 8),
             "mean_page_size": float(sc.mean_page_size[s]), "logit_offset": _r(model.offset[s]),
             "price_reversed": bool(sc.price_reversed[s]),
             "slopes": {"interest": _r(model.interest[s]), "quality": _r(model.quality[s]),
                        "price": _r(model.price[s]), "position": _r(model.position[s])}}
            for s in range(len(sc.ids))],
    }
