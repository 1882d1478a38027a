"""``msrec generate``: realistic multi-scenario impression logs, with their ground truth kept apart.

Output layout::

    OUT/logs/YYYY-MM-DD/impressions-00000.jsonl ...   one JSON object per line, <= 250k lines a shard
    OUT/logs/users.jsonl, items.jsonl, scenarios.jsonl  side tables (0.5% of ids left out on purpose)
    OUT/logs/feature_config.yaml                        the dataset's feature config
    OUT/truth/probabilities/YYYY-MM-DD.csv              impression_id,scenario_id,item_id,p_click,click,forced
    OUT/truth/interventions.jsonl                       {date, item_id, scenario_id, extra_impressions}
    OUT/truth/corruptions.json                          {reason: count} of deliberately broken lines
    OUT/world.json                                      the world card: every knob and what the seed drew

Generative model (what the papers' models can exploit is real in the true click probability):

* World (``world.py``), drawn once per seed. S scenarios with a traffic share and a base CTR (for
  S=20 exactly SAR-Net Table 1, otherwise drawn over the same span: shares 0.15%..12%, CTRs
  1.2%..9.4%), a type (feed, search, theme, ad_slot, cart, detail) that sets the page size, and a
  theme (a theme channel favours a few item categories). Users with gender, age bucket, city (Zipf,
  in four tiers), new-user flag, primary device, log-normal activity and interests over 24
  categories: ``affinity[u, type, c] = population[c] + base[u, c] + type_shift[type, c] +
  personal_shift[u, type, c]``, so the same user wants different things in a search box and in a
  feed. 11.21% of users are loyal to one home scenario (SAR-Net Table 2: users visiting fewer than
  two scenarios). Items with a category, a brand (inside one category, setting the price level), a
  price bucket, a Zipf popularity and a quality term.
* Traffic (``traffic.py``). A day is a stream of journeys (sessions, logged as ``session_id``): a
  user drawn by activity arrives with an intent (a category by their overall taste, and maybe a cheap
  or premium price level) and makes several page views (loyal users in their home scenario, others
  in scenarios drawn by share), each showing a slate at positions 1..n (page size by scenario type,
  so impression shares match the configured shares). A slate mixes the user's interests in that
  scenario type, the scenario's theme and global popularity, as the logged production recommender
  would; a search slate also shows the intent the user typed. Times follow a diurnal curve.
* Clicks (``clicks.py``): Bernoulli draws from p = sigmoid(logit). Interest, item quality, price
  and position act through slopes drawn per scenario around shared means (so a scenario's mapping
  is not its type's), scaled jointly by scenario type and user population (new user, city tier,
  age: interactions, not offsets); price sensitivity is reversed in about a fifth of the scenarios,
  the smallest one included (negative transfer for a shared model). The intent raises clicks on its
  category and price level; the journey's last click raises clicks on related items, by scenario
  type (a cart page on complements, a detail page on the same category), so clicks are drawn page
  by page. Implicit-pattern tables (gender x age x type, new user x type, device x type), an
  hour-of-day wave and a theme bonus add to the logit. The scenario offsets are solved numerically
  so each scenario's organic CTR is its base CTR; the oracle AUC is about 0.76.
* Feedback loop (optional, off by default): ``scorer`` re-ranks a wider organic candidate set with
  a model (e.g. the previous day's), so what was over-exposed keeps being shown.
* Manual intervention (SAR-Net's intervention bias): on promotion days (every other day, the
  phase set by the seed) a pool of six items from the top 20% by popularity is forced into random
  slots of about 30% of the scenarios, 4% of the scenario's day per item, shown to whoever is
  there. Organic slates match users' tastes and forced slots do not, so the items' observed CTR
  there falls below both the scenario's average and their own CTR elsewhere (typically to
  0.3-0.7x of each). Every
  (date, item, scenario) is recorded in ``truth/interventions.jsonl`` and every forced impression
  is flagged (``forced``) in the truth probabilities. ``--forced-click-lift L`` (default 0) adds L
  to the true click logit of forced impressions, the pull of how a promotion is shown (banner,
  pinned slot, badge), which no logged feature carries: the labels then hold the intervention bias
  too, not only the exposure (the truth's p_click includes it).
* ``--corrupt-fraction F`` replaces that share of lines with broken ones (``corrupt.py``), counted
  by reason in ``truth/corruptions.json``; their impressions are absent from the truth files.

Deterministic: the same arguments give byte-identical files.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from tqdm import tqdm

import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from msrec.data import clicks, corrupt, traffic, truth
from msrec.data.card import world_card
from msrec.data.columns import dataset_feature_config
from msrec.data.traffic import Impressions
from msrec.data.world import AGE_BUCKETS, CATEGORIES, DEVICES, GENDERS, SCENARIO_TYPES, World, build_world
from msrec.schemas.feature_config import save_feature_config

LOGS = "logs"
SHARD_LINES = 250_000
FEATURE_CONFIG = "feature_config.yaml"
MAX_SCENARIOS = 1000  # the feature config's scenario vocabulary
# The logging policy's model for a day: (date, candidate columns user_id / scenario_id / item_id
# (ids as logged), hour, device) -> one score per candidate (higher shown first), or None.
Scorer = Callable[[dt.date, dict[str, np.ndarray]], Optional[np.ndarray]]


class GenerateError(ValueError):
    """The generator's arguments or output folder are unusable; the message says why."""


@dataclasses.dataclass(frozen=True)
class GeneratedData:
    out_dir: Path
    logs_dir: Path
    truth_dir: Path
    feature_config: Path
    dates: list[str]


def default_users(impressions_per_day: int) -> int:
    return max(1000, impressions_per_day // 15)


def default_items(impressions_per_day: int) -> int:
    return max(500, impressions_per_day // 100)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent stream per purpose (and per day), so one day's draws never shift another's."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _check_args(days: int, impressions_per_day: int, scenarios: int, start: str, seed: int,
                users: int, items: int, corrupt_fraction: float, forced_click_lift: float) -> dt.date:
    checks = [
        (days >= 1, f"days must be at least 1, got {days}"),
        (impressions_per_day >= 1, f"impressions per day must be at least 1, got {impressions_per_day}"),
        (1 <= scenarios <= MAX_SCENARIOS, f"scenarios must be in 1..{MAX_SCENARIOS}, got {scenarios}"),
        (users >= 1, f"users must be at least 1, got {users}"),
        (items >= len(CATEGORIES), f"items must be at least {len(CATEGORIES)} (one per category), got {items}"),
        (seed >= 0, f"seed must be non-negative, got {seed}"),
        (0.0 <= corrupt_fraction < 1.0, f"corrupt fraction must be in [0, 1), got {corrupt_fraction}"),
        (bool(np.isfinite(forced_click_lift)), f"forced click lift must be a finite logit, got {forced_click_lift}"),
    ]
    for ok, message in checks:
        if not ok:
            raise GenerateError(message)
    try:
        return dt.date.fromisoformat(start)
    except (TypeError, ValueError):
        raise GenerateError(f"start must be a date YYYY-MM-DD, got {start!r}") from None


def _prepare(out: Path) -> tuple[Path, Path]:
    logs, truth_root = out / LOGS, out / truth.TRUTH
    for d in (logs, truth_root):
        if d.exists() and (not d.is_dir() or any(d.iterdir())):
            raise GenerateError(f"{d} already exists and is not empty; refusing to mix datasets "
                                f"(choose an empty --out)")
    logs.mkdir(parents=True, exist_ok=True)
    (truth_root / truth.PROBABILITIES).mkdir(parents=True, exist_ok=True)
    return logs, truth_root


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))


def _write_side_tables(world: World, logs: Path) -> None:
    us, it, sc = world.users, world.items, world.scenarios
    _write_jsonl(logs / "users.jsonl", [
        {"user_id": us.ids[u], "gender": GENDERS[us.gender[u]], "age_bucket": AGE_BUCKETS[us.age[u]],
         "city": f"c{us.city[u]:03d}", "is_new_user": int(us.is_new[u])}
        for u in np.flatnonzero(us.in_side_table)])
    _write_jsonl(logs / "items.jsonl", [
        {"item_id": it.ids[i], "category": CATEGORIES[it.category[i]], "brand": f"b{it.brand[i]:04d}",
         "price_bucket": int(it.price[i])}
        for i in np.flatnonzero(it.in_side_table)])
    _write_jsonl(logs / "scenarios.jsonl", [
        {"scenario_id": sc.ids[s], "scenario_type": SCENARIO_TYPES[sc.type_idx[s]], "theme": sc.theme[s]}
        for s in range(len(sc.ids))])


def _day_start_ms(date: dt.date) -> int:
    return int(dt.datetime(date.year, date.month, date.day, tzinfo=dt.timezone.utc).timestamp() * 1000)


def _session_ids(prefix: str, session: np.ndarray, width: int) -> list[str]:
    """The session id string of each impression (each distinct one formatted once)."""
    distinct, inverse = np.unique(session, return_inverse=True)
    return np.asarray([f"{prefix}-j{j:0{width}d}" for j in distinct.tolist()], dtype=object)[inverse].tolist()


def _log_lines(world: World, date: dt.date, imps: Impressions, click: np.ndarray, first: int,
               width: int) -> tuple[list[str], list[str]]:
    """JSON lines and impression ids of impressions ``first``.. of a day (string work only)."""
    prefix = date.strftime("%Y%m%d")
    ids = [f"{prefix}-{k:0{width}d}" for k in range(first, first + len(imps))]
    columns = zip(
        ids,
        (_day_start_ms(date) + imps.ts_ms).tolist(),
        np.asarray(world.users.ids, dtype=object)[imps.user].tolist(),
        np.asarray(world.items.ids, dtype=object)[imps.item].tolist(),
        np.asarray(world.scenarios.ids, dtype=object)[imps.scenario].tolist(),
        click.tolist(),
        imps.position.tolist(),
        imps.hour.tolist(),
        np.asarray(DEVICES, dtype=object)[imps.device].tolist(),
        _session_ids(prefix, imps.session, width),
    )
    lines = [f'{{"ts":{t},"user_id":"{u}","item_id":"{i}","scenario_id":"{s}","click":{c},'
             f'"impression_id":"{k}","position":{p},"hour":{h},"device":"{d}","session_id":"{j}"}}'
             for k, t, u, i, s, c, p, h, d, j in columns]
    return lines, ids


def _index_scorer(world: World, date: dt.date, scorer: Scorer) -> traffic.IndexScorer:
    """The day's scorer on the traffic simulator's index arrays (ids as the logs write them)."""
    def score(user: np.ndarray, scenario: np.ndarray, item: np.ndarray, hour: np.ndarray,
              device: np.ndarray) -> np.ndarray | None:
        return scorer(date, {
            "user_id": np.asarray(world.users.ids, dtype=object)[user],
            "scenario_id": np.asarray(world.scenarios.ids, dtype=object)[scenario],
            "item_id": np.asarray(world.items.ids, dtype=object)[item],
            "hour": hour, "device": np.asarray(DEVICES, dtype=object)[device]})
    return score


def _write_day(world: World, model: clicks.ClickModel, date: dt.date, day: int, seed: int, n: int,
               promotion: bool, corrupt_fraction: float, scorer: Scorer | None, logs: Path, truth_root: Path,
               bar: tqdm) -> tuple[list[traffic.Intervention], Counter]:
    rng = _rng(seed, 4, day)
    imps = traffic.simulate_day(world, rng, n, None if scorer is None else _index_scorer(world, date, scorer))
    interventions: list[traffic.Intervention] = []
    if promotion:
        imps, interventions = traffic.intervene(world, rng, imps)
    p_click, drawn = clicks.draw_clicks(model, world, imps, rng)
    click = drawn.astype(np.int64)
    forced = imps.intervened.astype(np.int64)
    corrupt_rng = _rng(seed, 5, day)
    broken, reasons = corrupt.plan(corrupt_rng, n, corrupt_fraction)
    width = max(7, len(str(n - 1)))

    day_dir = logs / date.isoformat()
    day_dir.mkdir()
    csv_path = truth_root / truth.PROBABILITIES / f"{date.isoformat()}.csv"
    with csv_path.open("w") as csv:
        csv.write(",".join(truth.TRUTH_COLUMNS) + "\n")
        # shard by shard, so memory does not grow with the day's size
        for shard, first in enumerate(range(0, n, SHARD_LINES)):
            part = np.arange(first, min(first + SHARD_LINES, n))
            lines, ids = _log_lines(world, date, imps.take(part), click[part], first, width)
            valid = np.ones(len(part), dtype=bool)
            lo, hi = np.searchsorted(broken, [first, first + len(part)])
            for k, reason in zip(broken[lo:hi].tolist(), reasons[lo:hi]):
                lines[k - first] = corrupt.corrupt(lines[k - first], reason, corrupt_rng)
                valid[k - first] = False
            text = "\n".join(lines) + "\n"
            (day_dir / f"impressions-{shard:05d}.jsonl").write_bytes(text.encode("utf-8", "surrogateescape"))

            keep = part[valid]
            scen = np.asarray(world.scenarios.ids, dtype=object)[imps.scenario[keep]].tolist()
            item = np.asarray(world.items.ids, dtype=object)[imps.item[keep]].tolist()
            csv.write("".join(f"{ids[k - first]},{s},{i},{p:.6f},{c},{f}\n" for k, s, i, p, c, f in zip(
                keep.tolist(), scen, item, p_click[keep].tolist(), click[keep].tolist(),
                forced[keep].tolist())))
            bar.update(len(part))
    return interventions, Counter(reasons)


def promotion_days(seed: int, days: int) -> list[bool]:
    """Which of ``days`` days are promotion days: every other day, the phase set by the seed."""
    phase = int(_rng(seed, 3).integers(2))
    return [(d + phase) % 2 == 0 for d in range(days)]


def generate(out_dir: str | os.PathLike[str], days: int = 3, impressions_per_day: int = 200_000,
             scenarios: int = 20, start: str = "2026-11-01", seed: int = 0, users: int | None = None,
             items: int | None = None, corrupt_fraction: float = 0.0, progress: bool = True,
             scorer: Scorer | None = None, forced_click_lift: float = 0.0) -> GeneratedData:
    """Write ``days`` days of logs and their truth under ``out_dir`` (see the module docstring).

    ``scorer``, when given, is the logging policy's model: called once per day (after the earlier
    days are written, so it may train on them) with the date and a batch of candidates, it returns
    one score per candidate, or None to show that day's organic slates.
    """
    users = default_users(impressions_per_day) if users is None else users
    items = default_items(impressions_per_day) if items is None else items
    first = _check_args(days, impressions_per_day, scenarios, start, seed, users, items, corrupt_fraction,
                        forced_click_lift)
    out = Path(out_dir)
    logs, truth_root = _prepare(out)

    world = build_world(seed, scenarios, users, items)
    model = clicks.build_click_model(world, clicks.calibration_size(impressions_per_day), forced_click_lift)
    _write_side_tables(world, logs)
    save_feature_config(dataset_feature_config(), logs / FEATURE_CONFIG)

    dates = [first + dt.timedelta(days=d) for d in range(days)]
    promotion = promotion_days(seed, days)
    interventions: list[dict] = []
    corrupted: Counter = Counter({reason: 0 for reason in corrupt.REASONS})
    for d, date in enumerate(dates):
        with tqdm(total=impressions_per_day, desc=f"generate {date}", unit="imp", file=sys.stderr,
                  disable=not progress) as bar:
            done, reasons = _write_day(world, model, date, d, seed, impressions_per_day, promotion[d],
                                       corrupt_fraction, scorer, logs, truth_root, bar)
        corrupted.update(reasons)
        interventions += [{"date": date.isoformat(), "item_id": world.items.ids[iv.item],
                           "scenario_id": world.scenarios.ids[iv.scenario],
                           "extra_impressions": iv.extra_impressions} for iv in done]

    _write_jsonl(truth_root / truth.INTERVENTIONS, interventions)
    day_names = [d.isoformat() for d in dates]
    summary = world_card(world, model, day_names, impressions_per_day,
                         [d.isoformat() for d, promo in zip(dates, promotion) if promo], scorer is not None,
                         corrupt_fraction)
    (out / truth.WORLD).write_text(json.dumps(summary, indent=1) + "\n")
    (truth_root / truth.CORRUPTIONS).write_text(
        json.dumps({r: corrupted[r] for r in corrupt.REASONS}, indent=1) + "\n")
    return GeneratedData(out_dir=out, logs_dir=logs, truth_dir=truth_root, feature_config=logs / FEATURE_CONFIG,
                         dates=day_names)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``msrec generate``."""
    try:
        data = generate(args.out, days=args.days, impressions_per_day=args.impressions_per_day,
                        scenarios=args.scenarios, start=args.start, seed=args.seed, users=args.users,
                        items=args.items, corrupt_fraction=args.corrupt_fraction,
                        forced_click_lift=args.forced_click_lift)
    except (ValueError, OSError) as e:
        print(f"msrec generate: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(data.dates)} day(s) x {args.impressions_per_day} impressions "
          f"({data.dates[0]}..{data.dates[-1]}) to {data.logs_dir}; truth in {data.truth_dir}")
    return 0
