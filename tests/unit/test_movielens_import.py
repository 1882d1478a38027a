"""``msrec import movielens``: tiny MovieLens-100K and -1M folders written here, converted, ingested."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import collections
import datetime as dt
import glob
import json
import os
from typing import Any

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv

from msrec.cli import main as cli_main
from msrec.components.log_example_gen.beam_ingest import run_ingest
from msrec.importers.movielens import GENRES_100K, REJECTS_FILE, MovieLensError, convert
from msrec.schemas.feature_config import load_feature_config
from msrec.schemas.schema_gen import schema_from_config
from msrec.serving.candidates import build_candidates
from msrec.serving.client import as_columns, coerce_inputs
from msrec.serving.tensors import InputSpec
from msrec.signatures import raw_input_specs

DAY_S = 86_400
# user -> (age or 1M age code, gender, occupation, zip)
USERS = {"1": (19, "F", "student", "94043"), "2": (30, "M", "engineer", "10001"),
         "3": (42, "F", "writer", "60614"), "4": (24, "M", "artist", "02139"), "5": (35, "M", "lawyer", "73301")}
# item -> (title, release year, genres)
ITEMS = {"10": ("Toy Story", 1995, ["Animation", "Children's", "Comedy"]), "11": ("Heat", 1995, ["Action", "Crime"]),
         "12": ("Casablanca", 1942, ["Drama", "Romance", "War"]), "13": ("Alien", 1979, ["Horror", "Sci-Fi"]),
         "14": ("Fargo", 1996, ["Crime", "Drama", "Thriller"])}


def ratings(start: dt.datetime) -> list[tuple[str, str, int, int]]:
    """(user, item, rating, unix seconds) on days 0, 1 and 3 after ``start`` (day 2 has none)."""
    out = []
    base = int(start.replace(tzinfo=dt.timezone.utc).timestamp())
    for day in (0, 1, 3):
        for k, user in enumerate(USERS):
            for j, item in enumerate(ITEMS):
                if (k + j + day) % 2 == 0:
                    out.append((user, item, 1 + (k * 3 + j + day) % 5, base + day * DAY_S + 3600 * (k + 1) + j))
    return out


def write_100k(src: str) -> list[tuple[str, str, int, int]]:
    os.makedirs(src)
    rows = ratings(dt.datetime(1997, 9, 20))
    with open(os.path.join(src, "u.data"), "w", encoding="latin-1") as fh:
        fh.writelines(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)
        fh.write("1\t10\tfive\t874965758\n")  # bad rating
        fh.write("99\t10\t4\t874965758\n")  # a user without an age
    with open(os.path.join(src, "u.user"), "w", encoding="latin-1") as fh:
        fh.writelines(f"{u}|{a}|{g}|{o}|{z}\n" for u, (a, g, o, z) in USERS.items())
        fh.write("7|x|M|none|00000\n")  # no age
    with open(os.path.join(src, "u.item"), "w", encoding="latin-1") as fh:
        for item, (title, year, genres) in ITEMS.items():
            flags = "|".join("1" if g in genres else "0" for g in GENRES_100K)
            fh.write(f"{item}|{title} ({year})|01-Jan-{year}||http://x|{flags}\n")
        fh.write("15|Caf\xe9 (1990)|01-Jan-1990||http://x|0|1\n")  # too few genre flags
    return rows


def write_1m(src: str) -> list[tuple[str, str, int, int]]:
    os.makedirs(src)
    rows = ratings(dt.datetime(2000, 12, 30))
    codes = {19: 18, 30: 25, 42: 35, 24: 18, 35: 35}  # 1M stores each age range's lower bound
    with open(os.path.join(src, "ratings.dat"), "w", encoding="latin-1") as fh:
        fh.writelines(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows)
        fh.write("1::10::4\n")  # a field missing
    with open(os.path.join(src, "users.dat"), "w", encoding="latin-1") as fh:
        fh.writelines(f"{u}::{g}::{codes[a]}::{k}::{z}\n" for k, (u, (a, g, _, z)) in enumerate(USERS.items()))
    with open(os.path.join(src, "movies.dat"), "w", encoding="latin-1") as fh:
        fh.writelines(f"{i}::{t} ({y})::{'|'.join(g)}\n" for i, (t, y, g) in ITEMS.items())
        fh.write("16::Am\xe9lie (2001)::Comedy|Romance\n")
    return rows


def read_jsonl(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def examples(examples_dir: str) -> list[dict[str, list]]:
    out = []
    for path in glob.glob(os.path.join(examples_dir, "Split-*", "*.gz")):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            ex = tf.train.Example.FromString(record.numpy())
            out.append({k: list(getattr(v, v.WhichOneof("kind")).value) for k, v in ex.features.feature.items()})
    return out


@pytest.mark.parametrize("fmt", ["100k", "1m"])
def test_convert_then_ingest(fmt: str, tmp_path: Any) -> None:
    src, out = str(tmp_path / "src"), str(tmp_path / "logs")
    rows = (write_100k if fmt == "100k" else write_1m)(src)
    report = convert(src, out)

    assert report["impressions"] == len(rows)
    assert report["clicks"] == sum(r >= 4 for _, _, r, _ in rows)
    assert report["days"] == 4 and report["empty_days"] == 1
    scenario = {"1": "age_lt25", "4": "age_lt25", "2": "age_25_34", "3": "age_ge35", "5": "age_ge35"}
    assert report["per_scenario"] == dict(sorted(collections.Counter(scenario[u] for u, *_ in rows).items()))
    if fmt == "100k":
        assert report["first_day"] == "1997-09-20"  # the ratings' own days, not moved
        assert report["rejected"] == {"u.data": {"bad_rating_or_timestamp": 1, "user_without_age": 1},
                                      "u.item": {"expected_24_fields_with_0_1_flags": 1},
                                      "u.user": {"bad_user_or_age": 1}}
    else:
        assert report["first_day"] == "2000-12-30"
        assert report["rejected"] == {"ratings.dat": {"expected_4_fields": 1}}
    assert len(read_jsonl(os.path.join(out, REJECTS_FILE))) == report["rejected_total"]
    users = {u["user_id"]: u for u in read_jsonl(os.path.join(out, "users.jsonl"))}
    assert users["3"] == {"user_id": "3", "gender": "F", "age_bucket": "35_44",
                          "occupation": "writer" if fmt == "100k" else "2", "zip_prefix": "606"}
    items = {i["item_id"]: i for i in read_jsonl(os.path.join(out, "items.jsonl"))}
    assert items["12"]["genres"] == ["Drama", "Romance", "War"] and items["12"]["genre"] == "Drama"
    assert items["12"]["release_decade"] == "1940s"
    assert {s["scenario_id"] for s in read_jsonl(os.path.join(out, "scenarios.jsonl"))} == {
        "age_lt25", "age_25_34", "age_ge35"}

    # `msrec query --logs` assembles the same columns: genres as a list, padded to one width
    config = load_feature_config(os.path.join(out, "feature_config.yaml"))
    end_ms = (dt.date.fromisoformat(report["last_day"]) - dt.date(1970, 1, 1)).days * DAY_S * 1000 + DAY_S * 1000
    request = build_candidates(out, "3", "age_ge35", ["12", "10", "99"], now_ms=end_ms, config=config)
    assert [row["genres"] for row in request.rows] == [ITEMS["12"][2], ITEMS["10"][2], ""]
    specs = {n: InputSpec(n, s.dtype.as_datatype_enum, tuple(s.shape.as_list()))
             for n, s in raw_input_specs(config).items()}
    arrays, _ = coerce_inputs(as_columns(request.rows), specs)
    assert arrays["genres"].shape == (3, 3) and list(arrays["genres"][2]) == [b"", b"", b""]
    assert request.history_length > 0

    last = report["last_day"]
    counts = run_ingest(out, last, 3, os.path.join(out, "feature_config.yaml"), str(tmp_path / "examples"),
                        str(tmp_path / "quarantine"))
    first_day_s = min(t for *_, t in rows) // DAY_S * DAY_S
    in_window = sum(t >= first_day_s + DAY_S for *_, t in rows)  # days 1, 2 (empty) and 3
    assert counts["read"] == counts["accepted"] == in_window > 20 and counts["quarantined"] == 0
    assert counts["join_missed"] == {} or not any(counts["join_missed"].values())
    written = examples(str(tmp_path / "examples"))
    assert len(written) == in_window
    for ex in written:
        assert ex["click"] == [int(int(ex["rating"][0]) >= 4)]
        assert [g.decode() for g in ex["genres"]] == ITEMS[ex["item_id"][0].decode()][2]
        assert ex["seq_genre"] == [items[i.decode()]["genre"].encode() for i in ex["seq_item_id"]]
    assert max(len(ex["seq_item_id"]) for ex in written) >= 3  # day 0 clicks reach later days
    # history counts: the user's ratings (and likes) of the 30 days strictly before, as the client counts
    lookback_s = config.sequence.lookback_days * DAY_S
    for ex in written:
        user, ts_s = ex["user_id"][0].decode(), ex["ts"][0] // 1000
        before = [r for u, _, r, t in rows if u == user and ts_s - lookback_s <= t < ts_s]
        assert (ex["hist_impressions"], ex["hist_clicks"]) == ([len(before)], [sum(r >= 4 for r in before)])
        row = build_candidates(out, user, ex["scenario_id"][0].decode(), ["12"], now_ms=ex["ts"][0],
                               config=config).rows[0]
        assert (row["hist_impressions"], row["hist_clicks"]) == (len(before), sum(r >= 4 for r in before))
    assert max(ex["hist_impressions"][0] for ex in written) >= 2
    schema = schema_from_config(load_feature_config(os.path.join(out, "feature_config.yaml")))
    stats = tfdv.generate_statistics_from_tfrecord(os.path.join(str(tmp_path / "examples"), "Split-*", "*.gz"))
    assert not tfdv.validate_statistics(stats, schema, environment="TRAINING").anomaly_info


def test_the_command_line(tmp_path: Any, capsys: Any) -> None:
    src, out = str(tmp_path / "src"), str(tmp_path / "logs")
    write_1m(src)
    assert cli_main(["import", "movielens", "--src", src, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert f"MovieLens-1M: {len(ratings(dt.datetime(2000, 12, 30)))} impressions" in printed
    assert "1 lines not converted" in printed
    assert cli_main(["import", "movielens", "--src", src, "--out", out]) == 2  # out is not empty
    assert "is not empty" in capsys.readouterr().err
    os.remove(os.path.join(src, "movies.dat"))
    with pytest.raises(MovieLensError, match="movies.dat"):
        convert(src, str(tmp_path / "other"))
