"""Ingestion: quarantine, side-table joins, point-in-time sequences, temporal splits, schema."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import collections
import dataclasses
import datetime as dt
import glob
import gzip
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from support.ingest import (DAY_MS, MISSING_ITEM, MISSING_SCENARIO, MISSING_USER, FEATURE_CONFIG, Fixture, day_ms,
                            expected_sequence, write_fixture)
from msrec.data.generator import generate
from msrec.serving.candidates import build_candidates
from msrec.schemas import default_schema
from msrec.schemas.feature_config import Feature, FeatureConfig, SequenceConfig, load_feature_config
from msrec.components.log_example_gen.beam_ingest import run_ingest
from msrec.components.log_example_gen.examples import ExampleEncoder
from msrec.components.log_example_gen.layout import IngestError, plan_ingest
from msrec.components.log_example_gen.records import Impression, ImpressionParser
from msrec.components.log_example_gen.sequences import Behaviour, HistoryCounts, build_sequences
from msrec.components.log_example_gen.splits import SplitPlan, split_of, split_plan, time_cuts

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
SEQ_COLUMNS = ("item_id", "category", "brand", "scenario_id", "scenario_type")
SCHEMA = default_schema()


@dataclasses.dataclass
class Run:
    fx: Fixture
    counts: dict[str, Any]
    examples: dict[str, list[dict[str, list]]]  # split -> parsed examples
    quarantine: list[dict[str, Any]]
    examples_dir: str

    def all_examples(self) -> list[dict[str, list]]:
        return self.examples["train"] + self.examples["val"] + self.examples["eval"]


def _values(feature: tf.train.Feature) -> list:
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def read_examples(examples_dir: str) -> dict[str, list[dict[str, list]]]:
    out = {}
    for split in ("train", "val", "eval"):
        files = sorted(glob.glob(os.path.join(examples_dir, f"Split-{split}", "data_tfrecord-*.gz")))
        assert files, f"no files in Split-{split}"
        out[split] = [{k: _values(v) for k, v in tf.train.Example.FromString(r.numpy()).features.feature.items()}
                      for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    return out


def ingest(fx: Fixture, root: str, date: str, window: int, beam_args: tuple[str, ...] = (), eval_days: int = 1,
           val_days: int = 1) -> Run:
    examples_dir, quarantine_dir = os.path.join(root, "examples"), os.path.join(root, "quarantine")
    counts = run_ingest(fx.logs, date, window, fx.config_path, examples_dir, quarantine_dir,
                        beam_pipeline_args=beam_args, eval_days=eval_days, val_days=val_days)
    quarantine = []
    for path in glob.glob(os.path.join(quarantine_dir, "quarantine-*.jsonl")):
        with open(path) as fh:
            quarantine += [json.loads(line) for line in fh]
    with open(os.path.join(quarantine_dir, "counts.json")) as fh:
        assert json.load(fh) == counts
    return Run(fx, counts, read_examples(examples_dir), quarantine, examples_dir)


@pytest.fixture(scope="module")
def two_day(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Window 11-02..11-03, with 11-01 as lookback."""
    root = str(tmp_path_factory.mktemp("two_day"))
    return ingest(write_fixture(root, DAYS), root, DAYS[-1], 2)


def seq(example: dict[str, list]) -> list[tuple[str, ...]]:
    lists = [example["seq_" + c] for c in SEQ_COLUMNS]
    assert len({len(v) for v in lists}) == 1, "seq_ lists of one example differ in length"
    return list(zip(*lists))


def rows_by_impression(fx: Fixture) -> dict[str, Any]:
    return {r.fields["impression_id"]: r for r in fx.rows}


# ---- parsing, one rule at a time ------------------------------------------------------------------

def test_parser_normalises_a_valid_line() -> None:
    parser = ImpressionParser(load_feature_config(FEATURE_CONFIG))
    day = dt.date(2026, 11, 2)
    line = {"ts": day_ms("2026-11-02") + 5, "user_id": "u1", "item_id": "i1", "scenario_id": "s1", "click": 1,
            "position": 3, "hour": 7, "device": "ios", "impression_id": 12, "extra": {"ignored": True}}
    rec = parser.parse(json.dumps(line).encode(), file="f", line_no=4, day=day, in_window=True)
    assert isinstance(rec, Impression)
    assert rec.features == {"user_id": "u1", "item_id": "i1", "scenario_id": "s1", "position": 3.0,
                            "hour": "7", "device": "ios"}
    assert rec.passthrough == {"impression_id": "12"}
    assert (rec.ts, rec.click, rec.day, rec.line_no) == (line["ts"], 1, "2026-11-02", 4)


def test_parser_quarantines_each_kind_of_bad_line(tmp_path: Any) -> None:
    fx = write_fixture(str(tmp_path), ["2026-11-02"], per_day=5)
    parser = ImpressionParser(load_feature_config(fx.config_path))
    day = dt.date(2026, 11, 2)
    seen = collections.Counter()
    for (path, line_no), reason in fx.bad.items():
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
            raw = fh.read().split(b"\n")[line_no - 1]
        q = parser.parse(raw, file=path, line_no=line_no, day=day, in_window=True)
        assert isinstance(q, dict) and q["reason"] == reason, (raw, q)
        assert (q["file"], q["line_no"]) == (path, line_no) and q["detail"]
        seen[reason] += 1
    assert set(seen) == {"bad_json", "undecodable_bytes", "not_an_object", "missing_field", "bad_type",
                         "bad_click", "bad_ts"}


def test_quarantine_raw_is_truncated_and_escaped() -> None:
    parser = ImpressionParser(load_feature_config(FEATURE_CONFIG))
    raw = b'{"user_id": "\xff' + b"x" * 1000
    q = parser.parse(raw, file="f", line_no=1, day=dt.date(2026, 11, 2), in_window=True)
    assert q["reason"] == "undecodable_bytes"
    assert q["raw"].startswith('{"user_id": "\\xff') and len(q["raw"]) == 500


# ---- sequences and splits as pure functions -------------------------------------------------------

def _rec(ts: int, click: int, item: str, in_window: bool = True, line_no: int = 0) -> Impression:
    return Impression(ts=ts, user_id="u", click=click, features={"item_id": item}, passthrough={},
                      day="2026-11-02", in_window=in_window, file="f", line_no=line_no)


def test_build_sequences_is_strictly_before_bounded_and_newest_first() -> None:
    records = [_rec(10, 1, "a", in_window=False), _rec(20, 1, "b"), _rec(30, 0, "c"), _rec(30, 1, "d", line_no=1),
               _rec(40, 1, "e"), _rec(50, 0, "f")]
    out = {r.features["item_id"]: [(b.values[0], b.ts) for b in beh]
           for r, beh in build_sequences(records[::-1], ["item_id"], 2)}
    assert out == {"b": [("a", 10)], "c": [("b", 20), ("a", 10)], "d": [("b", 20), ("a", 10)],
                   "e": [("d", 30), ("b", 20)], "f": [("e", 40), ("d", 30)]}


def test_history_counts_are_the_lookback_strictly_before_the_impression() -> None:
    """hist_impressions / hist_clicks: the user's impressions and clicks in [ts - lookback, ts); the
    impressions sharing a ts do not count each other, and older ones leave the lookback."""
    day = 86_400_000
    records = [_rec(0, 1, "a", in_window=False), _rec(day // 2, 0, "b"), _rec(day, 1, "c"),
               _rec(day, 0, "d", line_no=1), _rec(day + 1, 1, "e"), _rec(2 * day + 1, 0, "f")]
    out = {r.features["item_id"]: (r.features["hist_impressions"], r.features["hist_clicks"])
           for r, _ in build_sequences(records[::-1], ["item_id"], 2, ("hist_impressions", "hist_clicks"), 1)}
    # "c" and "d" share a ts: each sees a and b only; at 2 days + 1 ms only e (at day + 1 ms) is left
    assert out == {"b": (1.0, 1.0), "c": (2.0, 1.0), "d": (2.0, 1.0), "e": (3.0, 1.0), "f": (1.0, 1.0)}
    assert "a" not in out  # a lookback record is history only
    # without counts in the config the records pass through untouched
    assert all(set(r.features) == {"item_id"} for r, _ in build_sequences(records, ["item_id"], 2))
    counter = HistoryCounts(1)
    for r in records[:5]:
        counter.add(r.ts, r.click)
    assert counter.before(2 * day + 1) == {"hist_impressions": 1.0, "hist_clicks": 1.0}


def test_time_cuts_are_the_last_two_fifths_and_keep_ties_in_the_earlier_split() -> None:
    assert time_cuts(range(10, 0, -1)) == (6, 8)  # val = {7, 8}, eval = {9, 10}
    assert time_cuts([5, 1, 3, 3, 3]) == (3, 3)  # ties at both cuts: val is empty, eval = {5}
    assert time_cuts([4]) == (4, 4)  # one impression: train
    assert time_cuts([]) is None
    assert time_cuts(range(10, 0, -1), cut_eval=False) == (8, None)  # val = {9, 10}, no eval part


def test_split_plan_takes_eval_then_val_days_from_the_newest_and_cuts_a_day_when_short() -> None:
    days = [f"2026-11-0{d}" for d in range(1, 7)]
    assert split_plan(days, eval_days=3, val_days=1) == SplitPlan({
        "2026-11-01": "train", "2026-11-02": "train", "2026-11-03": "val",
        "2026-11-04": "eval", "2026-11-05": "eval", "2026-11-06": "eval"})
    assert split_plan(days[-3:], 1, 1) == SplitPlan({"2026-11-04": "train", "2026-11-05": "val", "2026-11-06": "eval"})
    # no room for a train day: the eval day stays whole, the day before it is cut into train and val
    assert split_plan(days[-2:], 1, 1) == SplitPlan({"2026-11-06": "eval"}, "2026-11-05", cut_eval=False)
    assert split_plan(days, 3, 3) == SplitPlan({"2026-11-01": "train", "2026-11-02": "train", "2026-11-04": "eval",
                                                "2026-11-05": "eval", "2026-11-06": "eval"}, "2026-11-03")
    # no day before the eval days: the newest day holds all three splits
    assert split_plan(days[-1:], 1, 1) == SplitPlan({}, "2026-11-06", cut_eval=True)
    assert split_plan(days[-2:], 2, 1) == SplitPlan({"2026-11-05": "train"}, "2026-11-06", cut_eval=True)
    with pytest.raises(ValueError, match="at least 1"):
        split_plan(days, 0, 1)


def test_split_of_a_cut_day_goes_by_ts_and_whole_days_by_day() -> None:
    def record(day: str, ts: int) -> Any:
        return _rec(ts, 0, "a")._replace(day=day)

    short = split_plan(["2026-11-05", "2026-11-06"], 1, 1)
    cuts = time_cuts(range(10), cut_eval=False)
    assert [split_of(record("2026-11-05", t), short, cuts) for t in (0, 7, 8, 9)] == ["train", "train", "val", "val"]
    assert split_of(record("2026-11-06", 0), short, cuts) == "eval"
    one = split_plan(["2026-11-06"], 1, 1)
    cuts = time_cuts(range(10))
    assert [split_of(record("2026-11-06", t), one, cuts) for t in (5, 6, 7, 8, 9)] == ["train", "val", "val", "eval", "eval"]


@pytest.mark.parametrize("time_gap", [False, True])
def test_encoder_writes_each_feature_with_its_type_and_leaves_missing_ones_out(time_gap: bool) -> None:
    config = FeatureConfig(
        features=(Feature("user_id", "impression", "user", "categorical"),
                  Feature("item_id", "impression", "item", "categorical"),
                  Feature("scenario_id", "impression", "scenario", "categorical"),
                  Feature("position", "impression", "context", "numeric"),
                  Feature("tags", "items", "item", "multi"),
                  Feature("gender", "users", "user", "categorical")),
        sequence=SequenceConfig(length=3, item_features=("item_id",), scenario_features=("scenario_id",),
                                time_gap=time_gap),
        passthrough=("impression_id",))
    base = {"user_id": "u1", "item_id": "i1", "scenario_id": "s1", "position": 2.5}
    records = [
        (Impression(100_000, "u1", 1, {**base, "tags": ["a", "b"], "gender": "f"}, {"impression_id": "x"},
                    "2026-11-02", True, "f", 1), (Behaviour(10_000, ("i9", "s2")), Behaviour(500, ("i8", "s1")))),
        (Impression(200, "u1", 0, dict(base), {}, "2026-11-03", True, "f", 2), ()),
        (Impression(300, "u1", 0, {**base, "gender": "m"}, {"impression_id": "z"}, "2026-11-03", True, "f", 3),
         (Behaviour(250, ("i7", "s3")),)),
    ]

    def expected(rec: Impression, behaviours: tuple) -> tf.train.Example:
        ex = tf.train.Example()
        f = ex.features.feature
        for name in ("user_id", "item_id", "scenario_id", "gender"):
            if name in rec.features:
                f[name].bytes_list.value.append(rec.features[name].encode())
        f["position"].float_list.value.append(rec.features["position"])
        if "tags" in rec.features:
            f["tags"].bytes_list.value.extend(t.encode() for t in rec.features["tags"])
        if rec.passthrough:
            f["impression_id"].bytes_list.value.append(rec.passthrough["impression_id"].encode())
        f["ts"].int64_list.value.append(rec.ts)
        f["click"].int64_list.value.append(rec.click)
        f["date"].bytes_list.value.append(rec.day.encode())
        for k, name in enumerate(("seq_item_id", "seq_scenario_id")):
            f[name].bytes_list.SetInParent()
            f[name].bytes_list.value.extend(b.values[k].encode() for b in behaviours)
        if time_gap:  # seconds from each behaviour to the impression
            f["seq_time_gap"].float_list.SetInParent()
            f["seq_time_gap"].float_list.value.extend((rec.ts - b.ts) / 1000 for b in behaviours)
        return ex

    encoded = ExampleEncoder(config).encode(records)
    assert [tf.train.Example.FromString(s) for s in encoded] == [expected(r, b) for r, b in records]
    assert "seq_item_id" in tf.train.Example.FromString(encoded[1]).features.feature  # present, empty


# ---- the day plan ------------------------------------------------------------------------------------

def _touch_days(root: str, days: list[str]) -> str:
    for d in days + ["not-a-date"]:
        os.makedirs(os.path.join(root, d))
        open(os.path.join(root, d, "impressions-0.jsonl"), "w").close()
    for t in ("users", "items", "scenarios"):
        open(os.path.join(root, f"{t}.jsonl"), "w").close()
    return root


def test_plan_errors_name_the_missing_day(tmp_path: Any) -> None:
    config = load_feature_config(FEATURE_CONFIG)
    logs = _touch_days(str(tmp_path), ["2026-10-31", "2026-11-01", "2026-11-03"])
    with pytest.raises(IngestError, match="2026-11-02"):
        plan_ingest(logs, dt.date(2026, 11, 3), 3, config)
    with pytest.raises(IngestError, match="2026-11-04"):
        plan_ingest(logs, dt.date(2026, 11, 4), 1, config)
    plan = plan_ingest(logs, dt.date(2026, 11, 1), 4, config)  # clipped to the first day of the logs
    assert [d.day.isoformat() for d in plan.window] == ["2026-10-31", "2026-11-01"]
    assert plan.lookback == ()
    plan = plan_ingest(logs, dt.date(2026, 11, 3), 1, config)
    assert [d.day.isoformat() for d in plan.lookback] == ["2026-10-31", "2026-11-01"]
    os.remove(os.path.join(logs, "items.jsonl"))
    with pytest.raises(IngestError, match="items.jsonl"):
        plan_ingest(logs, dt.date(2026, 11, 3), 1, config)


# ---- the Beam pipeline on the fixture ----------------------------------------------------------------

def test_every_line_is_accepted_or_quarantined_with_its_reason(two_day: Run) -> None:
    fx, c = two_day.fx, two_day.counts
    window = set(c["window"])
    assert c["window"] == DAYS[1:] and c["lookback"] == DAYS[:1]
    valid = [r for r in fx.rows if r.day in window]
    bad = {k: v for k, v in fx.bad.items() if os.path.basename(os.path.dirname(k[0])) in window}
    assert c["read"] == c["accepted"] + c["quarantined"] == len(valid) + len(bad)
    assert c["accepted"] == len(valid) == len(two_day.all_examples())
    assert c["reasons"] == dict(collections.Counter(bad.values()))
    got = {(q["file"], q["line_no"]): q["reason"] for q in two_day.quarantine}
    assert got == {**bad, **fx.bad_side}
    assert len(two_day.quarantine) == c["quarantine_records"] == len(bad) + len(fx.bad_side)
    lookback_bad = len(fx.bad) - len(bad)
    assert c["lookback_quarantined"] == lookback_bad > 0
    assert c["lookback_read"] == lookback_bad + sum(r.day == DAYS[0] for r in fx.rows)
    assert c["side_tables"]["users"]["reasons"]["duplicate_key"] == 1
    assert c["side_tables"]["users"]["rows"] == len(fx.users)


def test_the_same_logs_are_written_in_the_same_order_by_a_fresh_process(two_day: Run, tmp_path: Any) -> None:
    """The write order decides the training batches, so it must depend on the logs alone: not on the
    process's hash seed or random state (a fresh interpreter has other ones)."""
    fx = two_day.fx
    examples_dir = str(tmp_path / "examples")
    code = ("import sys; from msrec.components.log_example_gen.beam_ingest import run_ingest; "
            "run_ingest(sys.argv[1], sys.argv[2], 2, sys.argv[3], sys.argv[4], sys.argv[5])")
    subprocess.run([sys.executable, "-c", code, fx.logs, DAYS[-1], fx.config_path, examples_dir,
                    str(tmp_path / "quarantine")], check=True, capture_output=True)
    again = read_examples(examples_dir)
    for split, examples in two_day.examples.items():
        assert [e["impression_id"] for e in again[split]] == [e["impression_id"] for e in examples], split


def test_sequences_are_point_in_time_and_match_brute_force(two_day: Run) -> None:
    rows = rows_by_impression(two_day.fx)
    days_read = set(DAYS)
    lengths = []
    for ex in two_day.all_examples():
        row = rows[ex["impression_id"][0]]
        assert seq(ex) == expected_sequence(two_day.fx, row, days_read), ex["impression_id"]
        lengths.append(len(seq(ex)))
    assert max(lengths) == two_day.fx.seq_length and min(lengths) == 0  # truncated and empty both occur
    # The three impressions of u0 at one ms see the same history: none sees the others' clicks.
    for day in DAYS[1:]:
        ties = [ex for ex in two_day.all_examples() if ex["impression_id"][0].startswith(f"{day}-tie")]
        assert len(ties) == 3 and len({tuple(seq(ex)) for ex in ties}) == 1
        assert ties[0]["ts"][0] == day_ms(day) + DAY_MS // 2


def test_serving_candidates_see_the_sequences_ingestion_wrote(two_day: Run) -> None:
    """The client builds a request's behaviour sequence with the ingestion's rules (one home): for
    every ingested impression, the candidate row at its ts carries the example's sequence."""
    config = load_feature_config(two_day.fx.config_path)
    for ex in two_day.all_examples():
        row = build_candidates(two_day.fx.logs, ex["user_id"][0], ex["scenario_id"][0], [ex["item_id"][0]],
                               now_ms=ex["ts"][0], config=config).rows[0]
        for column in SEQ_COLUMNS:
            built = row["seq_" + column]
            assert built == ex["seq_" + column] + [""] * (len(built) - len(ex["seq_" + column])), \
                (ex["impression_id"], column)


def test_sequences_cross_scenarios(two_day: Run) -> None:
    other = [ex for ex in two_day.all_examples() if any(b[3] != ex["scenario_id"][0] for b in seq(ex))]
    assert other
    assert max(len({b[3] for b in seq(ex)}) for ex in two_day.all_examples()) >= 3


def test_lookback_clicks_reach_the_first_window_impressions(two_day: Run) -> None:
    fx, rows = two_day.fx, rows_by_impression(two_day.fx)
    first: dict[str, dict] = {}
    for ex in two_day.all_examples():
        user = ex["user_id"][0]
        if user not in first or ex["ts"][0] < first[user]["ts"][0]:
            first[user] = ex
    checked = 0
    for user, ex in first.items():
        lookback_only = expected_sequence(fx, rows[ex["impression_id"][0]], {DAYS[0]})
        if lookback_only:
            assert seq(ex) == lookback_only
            checked += 1
    assert checked >= 10


def _ids_after(day_rows: list[Any], fifths: int) -> set[str]:
    """Impression ids of one day with a ts above the documented cut: the ceil(fifths/5 n)-th ts,
    computed here from the rows."""
    ts = sorted(r.fields["ts"] for r in day_rows)
    cut = ts[-(-fifths * len(ts) // 5) - 1]
    return {r.fields["impression_id"] for r in day_rows if r.fields["ts"] > cut}


def _time_split_ids(day_rows: list[Any]) -> tuple[set[str], set[str]]:
    """(val, eval) impression ids of a day cut in three."""
    eval_ids = _ids_after(day_rows, 4)
    return _ids_after(day_rows, 3) - eval_ids, eval_ids


def test_two_day_window_evaluates_on_the_whole_newest_day_and_validates_on_the_last_fifth_before(two_day: Run) -> None:
    newest = [r for r in two_day.fx.rows if r.day == DAYS[2]]
    before = [r for r in two_day.fx.rows if r.day == DAYS[1]]
    val_ids = _ids_after(before, 4)
    ids = {split: {ex["impression_id"][0] for ex in two_day.examples[split]} for split in ("train", "val", "eval")}
    assert ids["eval"] == {r.fields["impression_id"] for r in newest}
    assert ids["val"] == val_ids and len(val_ids) == len(before) // 5
    assert {ex["date"][0] for ex in two_day.examples["train"]} == {DAYS[1]}
    assert max(ex["ts"][0] for ex in two_day.examples["train"]) < min(ex["ts"][0] for ex in two_day.examples["val"])
    assert two_day.counts["splits"] == {"train": len(before) - len(val_ids), "val": len(val_ids), "eval": len(newest)}


def test_eval_days_3_evaluates_on_the_newest_three_days_and_validates_on_the_day_before(tmp_path: Any) -> None:
    root = str(tmp_path)
    days = [f"2026-11-0{d}" for d in range(1, 7)]
    fx = write_fixture(root, days, per_day=40, seed=5)
    run = ingest(fx, root, days[-1], 5, eval_days=3, val_days=1)
    assert run.counts["window"] == days[1:]
    by_split = {split: {ex["date"][0] for ex in run.examples[split]} for split in ("train", "val", "eval")}
    assert by_split == {"train": {days[1]}, "val": {days[2]}, "eval": set(days[3:])}
    assert {ex["impression_id"][0] for ex in run.examples["eval"]} == {
        r.fields["impression_id"] for r in fx.rows if r.day in days[3:]}
    assert run.counts["splits"] == {split: sum(r.day in d for r in fx.rows)
                                    for split, d in (("train", days[1:2]), ("val", days[2:3]), ("eval", days[3:]))}


def test_missing_side_table_ids_leave_features_absent(two_day: Run) -> None:
    fx, examples = two_day.fx, two_day.all_examples()
    expected_missed = {"users": ("user_id", MISSING_USER), "items": ("item_id", MISSING_ITEM),
                       "scenarios": ("scenario_id", MISSING_SCENARIO)}
    absent = {"users": {"gender", "age_bucket", "city", "is_new_user"},
              "items": {"category", "brand", "price_bucket"}, "scenarios": {"scenario_type", "theme"}}
    for table, (key, missing_id) in expected_missed.items():
        hit = [ex for ex in examples if ex[key] == [missing_id]]
        assert hit and two_day.counts["join_missed"][table] == len(hit)
        assert all(not absent[table] & ex.keys() for ex in hit)
        assert all(absent[table] <= ex.keys() for ex in examples if ex[key] != [missing_id])
    # Their lines are accepted, not quarantined: every one of them has its example.
    ids = {ex["impression_id"][0] for ex in examples}
    with_missing = [r for r in fx.rows if r.day in DAYS[1:] and {MISSING_USER, MISSING_ITEM, MISSING_SCENARIO}
                    & {r.fields["user_id"], r.fields["item_id"], r.fields["scenario_id"]}]
    assert with_missing and all(r.fields["impression_id"] in ids for r in with_missing)
    u1 = next(ex for ex in examples if ex["user_id"] == ["u1"])
    assert (u1["gender"], u1["age_bucket"], u1["is_new_user"]) == (["m"], ["1"], ["false"])  # first row wins
    assert all(isinstance(ex["position"][0], float) and len(ex["click"]) == 1 for ex in examples)


def test_one_day_window_multi_processing_evaluates_on_the_last_fifth(tmp_path: Any) -> None:
    root = str(tmp_path)
    fx = write_fixture(root, DAYS[1:], per_day=150, seed=11)
    run = ingest(fx, root, DAYS[2], 1, ("--direct_num_workers=2", "--direct_running_mode=multi_processing"))
    day_rows = [r for r in fx.rows if r.day == DAYS[2]]
    val_ids, eval_ids = _time_split_ids(day_rows)
    assert run.counts["window"] == [DAYS[2]] and run.counts["lookback"] == [DAYS[1]]
    assert {ex["impression_id"][0] for ex in run.examples["eval"]} == eval_ids
    assert {ex["impression_id"][0] for ex in run.examples["val"]} == val_ids
    assert len(eval_ids) == len(day_rows) // 5 and val_ids
    assert {ex["date"][0] for ex in run.all_examples()} == {DAYS[2]}
    rows = rows_by_impression(fx)
    for ex in run.all_examples():
        assert seq(ex) == expected_sequence(fx, rows[ex["impression_id"][0]], set(DAYS[1:]))


def test_generated_logs_ingest_exactly_and_validate_against_the_curated_schema(tmp_path: Any) -> None:
    data = generate(tmp_path / "gen", days=2, impressions_per_day=3000, corrupt_fraction=0.02, progress=False)
    examples_dir = str(tmp_path / "examples")
    counts = run_ingest(str(data.logs_dir), data.dates[-1], 2, str(data.feature_config), examples_dir,
                        str(tmp_path / "quarantine"))
    with open(data.truth_dir / "corruptions.json") as fh:
        assert counts["reasons"] == json.load(fh)
    assert counts["read"] == 6000 and counts["accepted"] == 6000 - counts["quarantined"]
    truth_ids = {}
    for day in data.dates:
        with open(data.truth_dir / "probabilities" / f"{day}.csv") as fh:
            truth_ids[day] = {line.split(",")[0] for line in list(fh)[1:]}
    examples = read_examples(examples_dir)
    ids = {split: {ex["impression_id"][0] for ex in exs} for split, exs in examples.items()}
    assert ids["train"] | ids["val"] | ids["eval"] == truth_ids[data.dates[0]] | truth_ids[data.dates[1]]
    assert ids["train"] | ids["val"] == truth_ids[data.dates[0]] and ids["eval"] == truth_ids[data.dates[1]]

    # Point in time on real traffic, where a slate's impressions share one ts: brute force.
    clicks = collections.defaultdict(list)
    for path in sorted(glob.glob(str(data.logs_dir / "*" / "impressions-*.jsonl"))):
        valid_ids = truth_ids[os.path.basename(os.path.dirname(path))]
        with open(path, "rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                try:
                    r = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(r, dict) and r.get("impression_id") in valid_ids and r["click"] == 1:
                    clicks[r["user_id"]].append((r["ts"], path, line_no, r["item_id"], r["scenario_id"]))
    length = load_feature_config(data.feature_config).sequence.length
    nonempty = 0
    for ex in [ex for exs in examples.values() for ex in exs]:
        before = sorted(c for c in clicks[ex["user_id"][0]] if c[0] < ex["ts"][0])[::-1][:length]
        assert list(zip(ex["seq_item_id"], ex["seq_scenario_id"])) == [(c[3], c[4]) for c in before]
        nonempty += bool(before)
    assert nonempty > 100

    schema = text_format.Parse(open(SCHEMA).read(), schema_pb2.Schema())
    stats = tfdv.generate_statistics_from_tfrecord(os.path.join(examples_dir, "Split-*", "*.gz"))
    anomalies = tfdv.validate_statistics(stats, schema, environment="TRAINING")
    assert not anomalies.anomaly_info, anomalies
    # Serving requests carry no label: the same data without `click` is valid in SERVING only.
    features = stats.datasets[0].features
    for i in reversed(range(len(features))):
        if features[i].path.step[0] in ("click", "date", "impression_id", "session_id"):
            del features[i]
    assert not tfdv.validate_statistics(stats, schema, environment="SERVING").anomaly_info
    assert "click" in tfdv.validate_statistics(stats, schema, environment="TRAINING").anomaly_info
