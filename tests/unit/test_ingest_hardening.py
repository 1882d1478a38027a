"""Ingestion on an operator's bad day: damaged gzip files, bad or compressed side tables, oversized
lines and fields, duplicate impressions, empty days and days with too many bad lines. Every line is
counted (read = accepted + quarantined + duplicates dropped) and every quarantined one has its reason."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import dataclasses
import datetime as dt
import glob
import gzip
import json
import os
import subprocess
import sys
import zlib
from typing import Any

import pytest

from support.ingest import Fixture, write_fixture
from msrec.components.anomaly_gate.day_checks import DayLimits, day_problems
from msrec.components.atomic_pusher.component import push_atomically
from msrec.components.log_example_gen.beam_ingest import run_ingest
from msrec.components.log_example_gen.limits import IngestLimits
from msrec.components.log_example_gen.reading import LineReader
from msrec.components.log_example_gen.records import ImpressionParser
from msrec.components.log_example_gen.splits import EVAL, SPLITS, TRAIN, VAL
from msrec.pipeline.scenario_registry import scenario_vocabulary
from msrec.schemas.feature_config import load_feature_config

DAYS = ["2026-11-02", "2026-11-03"]
LOOSE = DayLimits(max_quarantine_rate=1.0, max_damaged_files=9, min_train_rows=1, min_eval_rows=1, min_eval_clicks=1,
                  min_eval_non_clicks=1)


@dataclasses.dataclass
class Ingested:
    fx: Fixture
    counts: dict[str, Any]
    quarantine: list[dict[str, Any]]
    impression_ids: list[str]  # of every example written, all splits
    expect: dict[str, Any]  # what the test wrote, as the tests recompute it


def _ingest(fx: Fixture, root: str, date: str, window: int, limits: IngestLimits = IngestLimits(),
            expect: dict[str, Any] | None = None) -> Ingested:
    import tensorflow as tf

    examples, quarantine_dir = os.path.join(root, "examples"), os.path.join(root, "quarantine")
    counts = run_ingest(fx.logs, date, window, fx.config_path, examples, quarantine_dir, limits=limits)
    quarantine = [json.loads(line) for path in glob.glob(os.path.join(quarantine_dir, "quarantine-*.jsonl"))
                  for line in open(path)]
    files = glob.glob(os.path.join(examples, "Split-*", "*.gz"))
    ids = [tf.train.Example.FromString(r.numpy()).features.feature["impression_id"].bytes_list.value[0].decode()
           for r in tf.data.TFRecordDataset(files, compression_type="GZIP")] if files else []
    return Ingested(fx, counts, quarantine, ids, expect or {})


def _append(path: str, lines: list[bytes]) -> None:
    with open(path, "ab") as fh:
        fh.write(b"".join(line + b"\n" for line in lines))


def _complete_lines(data: bytes) -> int:
    """Oracle: newlines inflated from a gzip file's bytes up to its first damage."""
    inflater, out = zlib.decompressobj(16 + zlib.MAX_WBITS), []
    for k in range(len(data)):
        try:
            out.append(inflater.decompress(data[k:k + 1]))
        except zlib.error:
            break
    return b"".join(out).count(b"\n")


@pytest.fixture(scope="module")
def bad_day(tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    root = str(tmp_path_factory.mktemp("bad_day"))
    fx = write_fixture(root, DAYS, per_day=120)
    plain, gz_old, gz_new = (os.path.join(fx.logs, d, f) for d, f in [
        (DAYS[1], "impressions-00000.jsonl"), (DAYS[0], "impressions-00001.jsonl.gz"),
        (DAYS[1], "impressions-00001.jsonl.gz")])
    # 1. the newest day's gzip cut at 60%, the older day's with 64 bytes overwritten in its middle
    data = open(gz_new, "rb").read()
    open(gz_new, "wb").write(data[: len(data) * 3 // 5])
    data = bytearray(open(gz_old, "rb").read())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xa5" * 64
    open(gz_old, "wb").write(bytes(data))
    # 5. five exact repeats of valid lines; 7. a 1 MB field (line limit) and a 5 kB field (field limit)
    originals = [r for r in fx.rows if r.file == plain][:5]
    first_new = len(open(plain, "rb").read().split(b"\n"))  # line number of the first appended line
    big = {**originals[0].fields, "impression_id": "big"}
    _append(plain, [json.dumps(r.fields).encode() for r in originals]
            + [json.dumps({**big, "device": "x" * 1_000_000}).encode(),
               json.dumps({**big, "device": "y" * 5_000}).encode()])
    # 2. the scenarios side table gzip-compressed, with a bad row; the users one gzipped and cut at
    # 70%; an item row with a 10 kB field
    scenarios, users = (os.path.join(fx.logs, f"{t}.jsonl") for t in ("scenarios", "users"))
    with open(scenarios, "rb") as src, gzip.open(scenarios + ".gz", "wb") as dst:
        dst.write(src.read() + b'{"scenario_id": \n')
    data = gzip.compress(open(users, "rb").read())
    open(users + ".gz", "wb").write(data[: len(data) * 7 // 10])
    for path in (scenarios, users):
        os.remove(path)
    _append(os.path.join(fx.logs, "items.jsonl"), [json.dumps({"item_id": "i_big", "brand": "b" * 10_000}).encode()])
    expect = {"plain": plain, "gz_old": gz_old, "gz_new": gz_new, "first_new": first_new,
              "duplicates": [(plain, first_new + k) for k in range(5)],
              "too_large": [(plain, first_new + 5), (plain, first_new + 6)],
              "lines_read": {p: _complete_lines(open(p, "rb").read()) for p in (gz_new, gz_old, users + ".gz")}}
    return _ingest(fx, root, DAYS[1], 2, expect=expect)


def _reasons_at(run: Ingested) -> dict[tuple[str, int], str]:
    return {(q["file"], q["line_no"]): q["reason"] for q in run.quarantine}


def test_every_line_is_counted_on_a_bad_day(bad_day: Ingested) -> None:
    c = bad_day.counts
    assert c["read"] == c["accepted"] + c["quarantined"] + c["duplicates_dropped"]
    assert c["accepted"] == len(bad_day.impression_ids) == sum(c["splits"].values())
    assert c["quarantine_records"] == len(bad_day.quarantine)
    assert all(q["reason"] and q["detail"] for q in bad_day.quarantine)
    assert c["quarantine_rate"] == pytest.approx(c["quarantined"] / c["read"])


def test_damaged_gzip_files_are_read_to_the_damage_and_named(bad_day: Ingested) -> None:
    c, e = bad_day.counts, bad_day.expect
    assert c["reasons"]["truncated_file"] == 1 and c["reasons"]["corrupt_file"] == 1
    damaged = {d["file"]: d for d in c["damaged_files"]}
    users = os.path.join(bad_day.fx.logs, "users.jsonl.gz")
    assert set(damaged) == {e["gz_new"], e["gz_old"], users}
    assert damaged[users]["reason"] == "truncated_file" and damaged[users]["lines_read"] == e["lines_read"][users]
    new, old = damaged[e["gz_new"]], damaged[e["gz_old"]]
    assert new["reason"] == "truncated_file" and old["reason"] == "corrupt_file"
    assert new["lines_read"] == e["lines_read"][e["gz_new"]] > 10
    assert old["lines_read"] == e["lines_read"][e["gz_old"]] > 10
    size_old = os.path.getsize(e["gz_old"])
    assert 0 < old["bytes_unread"] < size_old and old["bytes_read"] + old["bytes_unread"] == size_old
    assert new["bytes_unread"] == 0 and new["bytes_read"] == os.path.getsize(e["gz_new"])
    assert c["bytes_unread"] == old["bytes_unread"]
    # the rest of each window file is one quarantine record, at the line after the last one read
    at = _reasons_at(bad_day)
    assert at[(e["gz_new"], new["lines_read"] + 1)] == "truncated_file"
    assert at[(e["gz_old"], old["lines_read"] + 1)] == "corrupt_file"
    # the day stops unless damaged files are allowed
    [problem] = day_problems(c, dataclasses.replace(LOOSE, max_damaged_files=0))
    assert problem.startswith("3 damaged file(s), more than 0 allowed (--max-damaged-files): ")
    assert e["gz_new"] in problem and users in problem
    assert f"{e['gz_old']} (corrupt_file after {old['lines_read']} lines)" in problem
    assert day_problems(c, dataclasses.replace(LOOSE, max_damaged_files=3)) == []


def test_gzip_read_to_its_end_including_concatenated_members(tmp_path: Any) -> None:
    path = str(tmp_path / "x.jsonl.gz")
    open(path, "wb").write(gzip.compress(b"a\nb\n") + gzip.compress(b"c\r\nd"))
    reader = LineReader(path, 100)
    assert [(l.line_no, l.raw) for l in reader] == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]
    assert reader.damage is None


def test_side_tables_compressed_or_with_bad_rows_are_quarantined_not_fatal(bad_day: Ingested,
                                                                           tmp_path: Any) -> None:
    side = bad_day.counts["side_tables"]
    assert side["scenarios"]["file"].endswith("scenarios.jsonl.gz")
    assert side["scenarios"]["reasons"] == {"bad_json": 1} and side["scenarios"]["rows"] == 4
    assert side["items"]["reasons"] == {"too_large": 1}
    assert side["items"]["rows"] == len(bad_day.fx.items)
    lines_read = bad_day.expect["lines_read"][side["users"]["file"]]
    assert side["users"]["reasons"] == {"truncated_file": 1} and 5 < side["users"]["rows"] == lines_read
    assert side["users"]["read"] == lines_read + 1  # the unread rest is one quarantined record
    config = load_feature_config(bad_day.fx.config_path)
    assert scenario_vocabulary(bad_day.fx.logs, str(tmp_path), config) == ["s0", "s1", "s2", "s3"]


def test_duplicates_are_counted_and_dropped(bad_day: Ingested) -> None:
    c, e = bad_day.counts, bad_day.expect
    assert c["duplicates"] == c["duplicates_dropped"] == 5
    at = _reasons_at(bad_day)
    assert [at[k] for k in e["duplicates"]] == ["duplicate"] * 5
    assert len(bad_day.impression_ids) == len(set(bad_day.impression_ids))


def test_oversized_lines_and_fields_are_quarantined_as_too_large(bad_day: Ingested) -> None:
    at = _reasons_at(bad_day)
    assert [at[k] for k in bad_day.expect["too_large"]] == ["too_large", "too_large"]
    assert bad_day.counts["reasons"]["too_large"] == 2
    assert "big" not in bad_day.impression_ids
    parser = ImpressionParser(load_feature_config(bad_day.fx.config_path), IngestLimits(max_line_bytes=100))
    # only a prefix of a long line is held: it is refused by its size, before any JSON parsing
    q = parser.parse(b'{"ts": 1, "user_', size=10_000, file="f", line_no=3, day=dt.date(2026, 11, 3),
                     in_window=True)
    assert q["reason"] == "too_large" and "10000 bytes" in q["detail"]


def test_a_day_with_too_many_bad_lines_is_an_anomaly(bad_day: Ingested) -> None:
    c = bad_day.counts
    assert c["quarantine_rate"] > 0.05
    problems = day_problems(c, DayLimits())
    assert any(p.startswith(f"quarantine rate {c['quarantine_rate']:.1%}") and "above the limit 5.0%" in p
               for p in problems)
    assert day_problems(c, dataclasses.replace(LOOSE, max_quarantine_rate=0.5)) == []


def test_keep_duplicates_by_a_chosen_key(tmp_path: Any) -> None:
    root = str(tmp_path)
    fx = write_fixture(root, DAYS[1:], per_day=40)
    plain = os.path.join(fx.logs, DAYS[1], "impressions-00000.jsonl")
    rows = [r for r in fx.rows if r.file == plain][:3]
    # same impression_id, another position: a duplicate by that key only
    _append(plain, [json.dumps({**r.fields, "position": 99}).encode() for r in rows])
    run = _ingest(fx, root, DAYS[1], 1, IngestLimits(dedup_key=("impression_id",), keep_duplicates=True))
    c = run.counts
    assert (c["duplicates"], c["duplicates_dropped"]) == (3, 0)
    assert c["read"] == c["accepted"] + c["quarantined"]
    assert sorted(i for i in run.impression_ids if run.impression_ids.count(i) == 2) == sorted(
        2 * [r.fields["impression_id"] for r in rows])


def test_an_empty_day_stops_before_training(tmp_path: Any) -> None:
    root = str(tmp_path)
    fx = write_fixture(root, DAYS, per_day=40)
    folder = os.path.join(fx.logs, DAYS[1])
    os.remove(os.path.join(folder, "impressions-00001.jsonl.gz"))
    open(os.path.join(folder, "impressions-00000.jsonl"), "wb").close()  # 0 bytes
    run = _ingest(fx, root, DAYS[1], 2)
    # the newest day is the eval split; the day before it is cut into train and val by time
    day_before = sum(r.day == DAYS[0] for r in fx.rows)
    assert run.counts["splits"] == {TRAIN: day_before - day_before // 5, VAL: day_before // 5, EVAL: 0}
    assert day_problems(run.counts, LOOSE) == ["the eval split is empty"]


def test_small_or_one_class_eval_split_is_refused() -> None:
    counts = {"quarantine_rate": 0.0, "quarantined": 0, "read": 3000, "reasons": {}, "damaged_files": [],
              "splits": {"train": 2000, "val": 500, "eval": 500}, "clicks": {"train": 50, "val": 9, "eval": 0}}
    assert day_problems(counts, DayLimits()) == [
        "the eval split has 500 rows, fewer than 1000 (--min-eval-rows)",
        "the eval split has 0 clicks and 500 non-clicks, fewer than 10 and 10 needed to gate (--min-eval-clicks)"]
    counts["splits"]["eval"], counts["clicks"]["eval"] = 1200, 40
    assert day_problems(counts, DayLimits()) == []


def test_a_push_cleans_staging_left_by_a_killed_push(tmp_path: Any) -> None:
    base, model = tmp_path / "serving", tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"model")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (base / f".staging-100-{dead}" / "variables").mkdir(parents=True)
    (base / f".staging-101-{os.getpid()}").mkdir()
    version, path = push_atomically(str(model), str(base))
    assert sorted(os.listdir(base)) == [str(version)]
    assert open(os.path.join(path, "saved_model.pb"), "rb").read() == b"model"


def _outputs(root: str) -> tuple[dict[str, list[bytes]], list[str]]:
    """Every split's examples and every quarantine entry, sorted (the order of writes may differ), the
    examples serialized with their features in name order (the encoder's order may differ)."""
    import tensorflow as tf

    canonical = lambda r: tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)  # noqa: E731
    splits = {s: sorted(canonical(r) for r in tf.data.TFRecordDataset(
        glob.glob(os.path.join(root, "examples", f"Split-{s}", "*.gz")), compression_type="GZIP")) for s in SPLITS}
    entries = sorted(line for path in glob.glob(os.path.join(root, "quarantine", "quarantine-*.jsonl"))
                     for line in open(path))
    return splits, entries


@pytest.mark.parametrize("limits", [IngestLimits(), IngestLimits(keep_duplicates=True),
                                    IngestLimits(dedup_key=("user_id", "item_id"))], ids=["all", "keep", "user-item"])
def test_deduplicating_in_the_users_groups_gives_what_a_shuffle_by_dedup_key_gives(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, limits: IngestLimits) -> None:
    """A key that covers user_id is deduplicated in the per-user grouping: the same examples (with
    their sequences and splits: a one-day window cuts by the ts of the kept copies), quarantine and
    counts as the shuffle by key that any other key needs."""
    fx = write_fixture(str(tmp_path / "fx"), DAYS, per_day=60)
    plain = os.path.join(fx.logs, DAYS[1], "impressions-00000.jsonl")
    newest = [r for r in fx.rows if r.file == plain]
    older_clicks = [r for r in fx.rows if r.day == DAYS[0] and r.fields["click"]]
    _append(plain, [json.dumps(r.fields).encode() for r in newest[:4] + older_clicks[:2]]  # exact repeats
            + [json.dumps({**r.fields, "ts": r.fields["ts"] + 1000, "impression_id": f"late{k}"}).encode()
               for k, r in enumerate(newest[4:7])])  # the same user and item a second later
    runs = []
    for covers in (True, False):
        monkeypatch.setattr(IngestLimits, "key_covers", lambda self, field, covers=covers: covers)
        run = _ingest(fx, str(tmp_path / f"covers-{covers}"), DAYS[1], 1, limits)
        runs.append((run.counts, _outputs(str(tmp_path / f"covers-{covers}"))))
    (by_user, (examples, quarantine)), shuffled = runs
    assert (by_user, (examples, quarantine)) == shuffled
    assert by_user["duplicates"] >= 6 and all(examples.values())
