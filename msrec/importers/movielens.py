"""``msrec import movielens``: MovieLens-100K or -1M files into msrec's raw-log contract.

Input (whichever the folder holds, read as latin-1):

* 100K: ``u.data`` (user \\t item \\t rating \\t timestamp), ``u.user`` (user|age|gender|occupation|zip),
  ``u.item`` (item|title|release date|video date|url|19 genre flags), ``u.genre`` optional (name|flag);
* 1M: ``ratings.dat`` (user::item::rating::timestamp), ``users.dat`` (user::gender::age code::occupation::zip),
  ``movies.dat`` (item::title (year)::genre|genre...).

Output in OUT: one impression per rating, ``click`` = rating >= 4, in day folders by UTC date
(an empty file for a day without ratings, so every window is contiguous); the scenario is the
user's age group (``age_lt25``, ``age_25_34``, ``age_ge35``); ``users.jsonl`` (gender, age bucket,
occupation, zip prefix), ``items.jsonl`` (genres as a multi-valued feature, the first genre, the
release decade), ``scenarios.jsonl``; ``feature_config.yaml``. Context features are the UTC hour
and weekday of the rating.

``ts`` = timestamp * 1000: the day folders are the ratings' own UTC days.

Lines that cannot be used (malformed, a rating of a user without an age) are written with their
reason to ``OUT/import_rejects.jsonl`` and counted in ``OUT/import_report.json``.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import json
import os
import re
import sys
from typing import Any, Iterator

from msrec.schemas.feature_config import Feature, FeatureConfig, SequenceConfig, save_feature_config

ENCODING = "latin-1"
CLICK_MIN_RATING = 4
SCENARIOS = {"age_lt25": "under 25", "age_25_34": "25-34", "age_ge35": "35 and over"}
# MovieLens-1M's age codes are each range's lower bound; 100K's real ages fall in the same ranges.
AGE_BUCKETS = ((18, "under_18"), (25, "18_24"), (35, "25_34"), (45, "35_44"), (50, "45_49"), (56, "50_55"))
GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western")
MAX_GENRES = 6  # the most genres a MovieLens movie lists
REJECTS_FILE = "import_rejects.jsonl"
REPORT_FILE = "import_report.json"
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


class MovieLensError(ValueError):
    """The source folder cannot be converted; the message says what is missing."""


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    ratings: str
    users: str
    items: str
    separator: str


ML_100K = Layout("MovieLens-100K", "u.data", "u.user", "u.item", "|")
ML_1M = Layout("MovieLens-1M", "ratings.dat", "users.dat", "movies.dat", "::")


class Rejects:
    """Every line that is not converted, with its reason: written out and counted, never dropped."""

    def __init__(self, path: str):
        self._fh = open(path, "w")
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def add(self, file: str, line_no: int, reason: str, raw: str) -> None:
        self.counts[(file, reason)] += 1
        self._fh.write(json.dumps({"file": file, "line_no": line_no, "reason": reason, "raw": raw[:500]}) + "\n")

    def close(self) -> None:
        self._fh.close()

    def by_file(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (file, reason), n in sorted(self.counts.items()):
            out.setdefault(file, {})[reason] = n
        return out


def detect_layout(src: str) -> Layout:
    for layout in (ML_100K, ML_1M):
        if os.path.isfile(os.path.join(src, layout.ratings)):
            missing = [f for f in (layout.users, layout.items) if not os.path.isfile(os.path.join(src, f))]
            if missing:
                raise MovieLensError(f"{src} holds {layout.ratings} ({layout.name}) but not {', '.join(missing)}")
            return layout
    raise MovieLensError(f"{src} holds neither u.data (MovieLens-100K) nor ratings.dat (MovieLens-1M)")


def _fields(src: str, name: str, separator: str, count: int | None, rejects: Rejects
            ) -> Iterator[tuple[int, list[str], str]]:
    """(line number, fields, raw line) of each line of ``name``; wrong field counts are rejected."""
    with open(os.path.join(src, name), encoding=ENCODING, newline="") as fh:
        for line_no, line in enumerate(fh, start=1):
            raw = line.rstrip("\r\n")
            if not raw.strip():
                rejects.add(name, line_no, "empty_line", raw)
                continue
            parts = raw.split(separator)
            if count is not None and len(parts) != count:
                rejects.add(name, line_no, f"expected_{count}_fields", raw)
                continue
            yield line_no, parts, raw


def age_bucket(age: int) -> str:
    return next((label for bound, label in AGE_BUCKETS if age < bound), "56_plus")


def scenario_of(age: int) -> str:
    return "age_lt25" if age < 25 else "age_25_34" if age < 35 else "age_ge35"


def _decade(year: int) -> str:
    return f"{year // 10 * 10}s"


def read_users(src: str, layout: Layout, rejects: Rejects) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """users.jsonl rows by user id, and each user's age (the scenario key)."""
    users, ages = {}, {}
    is_1m = layout is ML_1M
    for line_no, f, raw in _fields(src, layout.users, layout.separator, 5, rejects):
        user, gender, age_text, occupation, zipcode = (
            (f[0], f[1], f[2], f[3], f[4]) if is_1m else (f[0], f[2], f[1], f[3], f[4]))
        if not user or not age_text.isdigit():
            rejects.add(layout.users, line_no, "bad_user_or_age", raw)
            continue
        if user in users:
            rejects.add(layout.users, line_no, "duplicate_user", raw)
            continue
        ages[user] = int(age_text)
        users[user] = {"user_id": user, "gender": gender, "age_bucket": age_bucket(int(age_text)),
                       "occupation": occupation, "zip_prefix": zipcode[:3]}
    return users, ages


def read_items(src: str, layout: Layout, rejects: Rejects) -> dict[str, dict[str, Any]]:
    genre_names = _genres_100k(src) if layout is ML_100K else ()
    items = {}
    for line_no, f, raw in _fields(src, layout.items, layout.separator,
                                   None if layout is ML_100K else 3, rejects):
        if layout is ML_100K:
            if len(f) != 5 + len(genre_names) or any(flag not in ("0", "1") for flag in f[5:]):
                rejects.add(layout.items, line_no, f"expected_{5 + len(genre_names)}_fields_with_0_1_flags", raw)
                continue
            genres = [g for g, flag in zip(genre_names, f[5:]) if flag == "1"]
            year_text = f[2][-4:]
        else:
            genres = [g for g in f[2].split("|") if g]
            match = _YEAR_IN_TITLE.search(f[1])
            year_text = match.group(1) if match else ""
        if not f[0]:
            rejects.add(layout.items, line_no, "missing_item_id", raw)
            continue
        if f[0] in items:
            rejects.add(layout.items, line_no, "duplicate_item", raw)
            continue
        row: dict[str, Any] = {"item_id": f[0], "title": f[1], "genres": genres}
        if genres:
            row["genre"] = genres[0]
        if year_text.isdigit():
            row["release_decade"] = _decade(int(year_text))
        items[f[0]] = row
    return items


def _genres_100k(src: str) -> tuple[str, ...]:
    """Genre names in flag order: u.genre when present, else the documented list."""
    path = os.path.join(src, "u.genre")
    if not os.path.isfile(path):
        return GENRES_100K
    with open(path, encoding=ENCODING) as fh:
        pairs = [line.strip().split("|") for line in fh if line.strip()]
    return tuple(name for name, _ in sorted(((p[0], int(p[1])) for p in pairs if len(p) == 2 and p[1].isdigit()),
                                            key=lambda p: p[1]))


@dataclasses.dataclass
class Rating:
    user: str
    item: str
    rating: int
    ts_ms: int


def read_ratings(src: str, layout: Layout, ages: dict[str, int], rejects: Rejects) -> list[Rating]:
    separator = "\t" if layout is ML_100K else layout.separator
    ratings = []
    for line_no, f, raw in _fields(src, layout.ratings, separator, 4, rejects):
        user, item, rating, ts = f
        if not (user and item and rating.isdigit() and ts.isdigit()):
            rejects.add(layout.ratings, line_no, "bad_rating_or_timestamp", raw)
        elif user not in ages:
            rejects.add(layout.ratings, line_no, "user_without_age", raw)
        else:
            ratings.append(Rating(user, item, int(rating), int(ts) * 1000))
    return ratings


def feature_config() -> FeatureConfig:
    """The feature config of the converted logs."""
    features = (
        Feature("user_id", "impression", "user", "categorical", top_k=100_000, oov_buckets=10),
        Feature("item_id", "impression", "item", "categorical", top_k=100_000, oov_buckets=10),
        Feature("scenario_id", "impression", "scenario", "categorical", top_k=16),
        Feature("hour", "impression", "context", "categorical", top_k=24),
        Feature("weekday", "impression", "context", "categorical", top_k=7),
        Feature("gender", "users", "user", "categorical", top_k=4),
        Feature("age_bucket", "users", "user", "categorical", top_k=8),
        Feature("occupation", "users", "user", "categorical", top_k=32),
        Feature("zip_prefix", "users", "user", "categorical", top_k=1000),
        Feature("genres", "items", "item", "multi", top_k=32, max_values=MAX_GENRES),
        Feature("genre", "items", "item", "categorical", top_k=32),
        Feature("release_decade", "items", "item", "categorical", top_k=16),
        Feature("age_range", "scenarios", "scenario", "categorical", top_k=16),
        # how many films the user rated, and liked, in the lookback before this rating: most eval
        # users are new, and these counts are what tells a generous rater from a severe one
        Feature("hist_impressions", "history", "user", "numeric"),
        Feature("hist_clicks", "history", "user", "numeric"),
    )
    # A sequence column holds one value per behaviour, so the multi-valued genres enter the
    # sequence through each movie's first genre.
    return FeatureConfig(
        features=features,
        sequence=SequenceConfig(length=50, lookback_days=30, item_features=("item_id", "genre"),
                                scenario_features=("scenario_id",)),
        distribution_features=("scenario_id", "gender", "age_bucket", "occupation"),
        scenario_specific_features=("scenario_id", "age_range", "hour", "weekday"),
        passthrough=("rating",))


def _write_jsonl(path: str, rows: Any) -> int:
    n = 0
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def _day(ts_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.timezone.utc).date()


def convert(src: str, out: str) -> dict[str, Any]:
    """Convert the MovieLens files in ``src`` into the contract under ``out`` (a new or empty
    folder); returns the report (also written to ``out/import_report.json``)."""
    layout = detect_layout(src)
    if os.path.exists(out) and os.listdir(out):
        raise MovieLensError(f"{out} is not empty; the import writes into a new folder")
    os.makedirs(out, exist_ok=True)
    rejects = Rejects(os.path.join(out, REJECTS_FILE))
    try:
        users, ages = read_users(src, layout, rejects)
        items = read_items(src, layout, rejects)
        ratings = read_ratings(src, layout, ages, rejects)
    finally:
        rejects.close()
    if not ratings:
        raise MovieLensError(f"no usable rating in {os.path.join(src, layout.ratings)}; see {REJECTS_FILE}")
    by_day: dict[dt.date, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in sorted(ratings, key=lambda r: (r.ts_ms, r.user, r.item)):
        ts = r.ts_ms
        moment = dt.datetime.fromtimestamp(ts / 1000, dt.timezone.utc)
        by_day[moment.date()].append({
            "ts": ts, "user_id": r.user, "item_id": r.item, "scenario_id": scenario_of(ages[r.user]),
            "click": int(r.rating >= CLICK_MIN_RATING), "hour": moment.hour, "weekday": moment.weekday(),
            "rating": r.rating})
    first, last = min(by_day), max(by_day)
    empty_days = 0
    for offset in range((last - first).days + 1):
        day = first + dt.timedelta(days=offset)
        folder = os.path.join(out, day.isoformat())
        os.makedirs(folder)
        empty_days += day not in by_day
        _write_jsonl(os.path.join(folder, "impressions-00000.jsonl"), by_day.get(day, ()))
    _write_jsonl(os.path.join(out, "users.jsonl"), users.values())
    _write_jsonl(os.path.join(out, "items.jsonl"), items.values())
    _write_jsonl(os.path.join(out, "scenarios.jsonl"),
                 ({"scenario_id": s, "age_range": label} for s, label in SCENARIOS.items()))
    save_feature_config(feature_config(), os.path.join(out, "feature_config.yaml"))
    report = {
        "source": layout.name, "impressions": len(ratings),
        "clicks": sum(r.rating >= CLICK_MIN_RATING for r in ratings),
        "users": len(users), "items": len(items), "first_day": first.isoformat(), "last_day": last.isoformat(),
        "days": (last - first).days + 1, "empty_days": empty_days,
        "per_scenario": dict(sorted(collections.Counter(scenario_of(ages[r.user]) for r in ratings).items())),
        "rejected": rejects.by_file(), "rejected_total": sum(rejects.counts.values()),
    }
    with open(os.path.join(out, REPORT_FILE), "w") as fh:
        json.dump(report, fh, indent=2, sort_keys=True)
    return report


def main(args: argparse.Namespace) -> int:
    """Entry point of ``msrec import movielens``."""
    try:
        report = convert(args.src, args.out)
    except (MovieLensError, OSError) as e:
        print(f"msrec import movielens: error: {e}", file=sys.stderr)
        return 2
    print(f"{report['source']}: {report['impressions']} impressions ({report['clicks']} clicks) of "
          f"{report['users']} users on {report['items']} items, {report['first_day']}..{report['last_day']} "
          f"({report['days']} day folders, {report['empty_days']} empty) -> {args.out}")
    print(f"impressions per scenario: {report['per_scenario']}")
    if report["rejected_total"]:
        print(f"{report['rejected_total']} lines not converted (reasons in {REPORT_FILE}, lines in "
              f"{REJECTS_FILE}): {report['rejected']}")
    return 0
