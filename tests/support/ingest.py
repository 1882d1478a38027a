"""Small raw logs in the raw-log layout for the ingestion tests, with every kind of bad line.

The fixture keeps what it wrote (valid rows with their file and line number, the bad lines with the
reason each must be quarantined for, the side tables) so the tests can recompute the expected
output independently of the ingestion code.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import os
import random
from typing import Any

import yaml

from msrec.schemas import default_feature_config

FEATURE_CONFIG = default_feature_config()
DAY_MS = 86_400_000
N_USERS, N_ITEMS, N_SCENARIOS = 30, 40, 5
# The last id of each kind appears in impressions but not in its side table.
MISSING_USER, MISSING_ITEM, MISSING_SCENARIO = f"u{N_USERS - 1}", f"i{N_ITEMS - 1}", f"s{N_SCENARIOS - 1}"
SCENARIO_TYPES = ("feed", "cart", "channel")


def day_ms(day: str) -> int:
    return (dt.date.fromisoformat(day) - dt.date(1970, 1, 1)).days * DAY_MS


@dataclasses.dataclass
class Row:
    fields: dict[str, Any]
    day: str
    file: str
    line_no: int


@dataclasses.dataclass
class Fixture:
    logs: str
    config_path: str
    seq_length: int
    rows: list[Row]  # every valid impression line, all days
    bad: dict[tuple[str, int], str]  # (file, line_no) -> expected reason, every day
    bad_side: dict[tuple[str, int], str]
    users: dict[str, dict[str, Any]]  # as ingestion must see them (first row of a duplicated key)
    items: dict[str, dict[str, Any]]
    scenarios: dict[str, dict[str, Any]]


def _bad_lines(day: str) -> list[tuple[bytes, str]]:
    t = day_ms(day) + 3_600_000
    good = {"ts": t, "user_id": "u1", "item_id": "i1", "scenario_id": "s1", "click": 0,
            "position": 1, "hour": 1, "device": "ios", "impression_id": "bad"}

    def row(**changes: Any) -> bytes:
        r = {**good, **changes}
        return json.dumps({k: v for k, v in r.items() if v is not ...}).encode()

    return [
        (b'{"ts": 1, "user_id": "\xff\xfe"}', "undecodable_bytes"),
        (b'{"ts": 17', "bad_json"),
        (b"", "bad_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (row(item_id=...), "missing_field"),
        (row(device=...), "missing_field"),
        (row(scenario_id=None), "missing_field"),
        (row(user_id=42), "bad_type"),
        (row(ts=float(t)), "bad_type"),
        (row(position="near the top"), "bad_type"),
        (row(click="1"), "bad_type"),
        (row(click=2), "bad_click"),
        (row(ts=-5), "bad_ts"),
        (row(ts=day_ms("1989-12-31")), "bad_ts"),
        (row(ts=day_ms(day) + 3 * DAY_MS), "bad_ts"),
    ]


def write_fixture(root: str, days: list[str], per_day: int = 120, seq_length: int = 8,
                  seed: int = 7) -> Fixture:
    rnd = random.Random(seed)
    logs = os.path.join(root, "logs")
    os.makedirs(logs)
    scenarios = {f"s{k}": {"scenario_id": f"s{k}", "scenario_type": SCENARIO_TYPES[k % 3], "theme": f"t{k}"}
                 for k in range(N_SCENARIOS - 1)}
    items = {f"i{k}": {"item_id": f"i{k}", "category": f"c{k % 6}", "brand": f"b{k % 9}", "price_bucket": k % 4}
             for k in range(N_ITEMS - 1)}
    users = {f"u{k}": {"user_id": f"u{k}", "gender": "fm"[k % 2], "age_bucket": k % 5, "city": f"city{k % 4}",
                       "is_new_user": k % 3 == 0} for k in range(N_USERS - 1)}
    bad_side: dict[tuple[str, int], str] = {}
    users_path = os.path.join(logs, "users.jsonl")
    with open(users_path, "wb") as fh:
        lines = [json.dumps(u).encode() for u in users.values()]
        lines.append(json.dumps({**users["u1"], "gender": "x"}).encode())  # duplicate: first row wins
        bad_side[(users_path, len(lines))] = "duplicate_key"
        lines.append(b'{"user_id": ')
        bad_side[(users_path, len(lines))] = "bad_json"
        fh.write(b"\n".join(lines) + b"\n")
    for name, table in (("items", items), ("scenarios", scenarios)):
        with open(os.path.join(logs, f"{name}.jsonl"), "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in table.values())

    rows: list[Row] = []
    bad: dict[tuple[str, int], str] = {}
    for day in days:
        folder = os.path.join(logs, day)
        os.makedirs(folder)
        lines: list[tuple[bytes, Any]] = []
        # Late events (ts on the day before the folder's) are valid: tolerance is one day.
        offsets = rnd.sample(range(-600_000, DAY_MS), per_day)
        for n, off in enumerate(offsets):
            ts = day_ms(day) + off
            fields = {"ts": ts, "user_id": f"u{rnd.randrange(N_USERS)}", "item_id": f"i{rnd.randrange(N_ITEMS)}",
                      "scenario_id": f"s{rnd.randrange(N_SCENARIOS)}", "click": int(rnd.random() < 0.35),
                      "position": rnd.randrange(1, 20), "hour": (off // 3_600_000) % 24,
                      "device": rnd.choice(["ios", "android", "web"]), "impression_id": f"{day}-{n}"}
            lines.append((json.dumps(fields).encode(), fields))
        # A click and a non-click of one user at the same ms: neither may see the other.
        tie = day_ms(day) + DAY_MS // 2
        for n, (item, click) in enumerate([("i2", 1), ("i3", 0), ("i4", 1)]):
            fields = {"ts": tie, "user_id": "u0", "item_id": item, "scenario_id": "s0", "click": click,
                      "position": 2, "hour": 12, "device": "web", "impression_id": f"{day}-tie{n}"}
            lines.append((json.dumps(fields).encode(), fields))
        lines += _bad_lines(day)
        rnd.shuffle(lines)
        half = len(lines) // 2
        for shard, chunk in enumerate([lines[:half], lines[half:]]):
            path = os.path.join(folder, f"impressions-{shard:05d}.jsonl" + (".gz" if shard else ""))
            with (gzip.open if shard else open)(path, "wb") as fh:
                fh.write(b"\n".join(raw for raw, _ in chunk) + b"\n")
            for line_no, (raw, what) in enumerate(chunk, start=1):
                if isinstance(what, str):
                    bad[(path, line_no)] = what
                else:
                    rows.append(Row(what, day, path, line_no))

    with open(FEATURE_CONFIG) as fh:
        config = yaml.safe_load(fh)
    config["sequence"]["length"] = seq_length
    config_path = os.path.join(logs, "feature_config.yaml")
    with open(config_path, "w") as fh:
        yaml.safe_dump(config, fh)
    return Fixture(logs, config_path, seq_length, rows, bad, bad_side, users, items, scenarios)


def expected_sequence(fx: Fixture, row: Row, days_read: set[str]) -> list[tuple[str, ...]]:
    """Brute force: the user's clicks strictly before the impression, newest first, at most L."""
    clicks = [r for r in fx.rows if r.day in days_read and r.fields["user_id"] == row.fields["user_id"]
              and r.fields["click"] == 1 and r.fields["ts"] < row.fields["ts"]]
    clicks.sort(key=lambda r: (r.fields["ts"], r.file, r.line_no), reverse=True)
    out = []
    for c in clicks[: fx.seq_length]:
        item = fx.items.get(c.fields["item_id"], {})
        scen = fx.scenarios.get(c.fields["scenario_id"], {})
        out.append((c.fields["item_id"], item.get("category", ""), item.get("brand", ""),
                    c.fields["scenario_id"], scen.get("scenario_type", "")))
    return out
