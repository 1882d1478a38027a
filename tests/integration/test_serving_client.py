"""The Python client, candidates assembled from the logs, and ``msrec query``."""
import msrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import datetime as dt
import gzip
import json
import shutil

import numpy as np
import pytest

from msrec import cli
from msrec.components.log_example_gen.limits import IngestLimits
from msrec.serving.candidates import build_candidates, parse_context, parse_now
from msrec.serving.client import PredictClient, as_columns, coerce_inputs
from msrec.serving.server import start_server
from support.serving import FEATURE_CONFIG, build_toy_model, feature_config, in_process_ctr, push_version, \
    sample_inputs

MODEL = "toy"
NOW = "2026-11-02T12:00:00"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("query")
    export = build_toy_model(root / "export", bias=-1.0)
    push_version(root / "serving" / MODEL, 1, export)
    handle = start_server(model_name=MODEL, model_base_path=str(root / "serving" / MODEL), poll_seconds=0)
    yield {"target": handle.target, "export": export}
    handle.stop()


def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def _impression(ts, user, item, scenario, click, device, position=1):
    return {"ts": _ms(ts), "user_id": user, "item_id": item, "scenario_id": scenario, "click": click,
            "position": position, "hour": int(ts[11:13]), "device": device, "impression_id": f"{user}-{ts}"}


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    shutil.copy(FEATURE_CONFIG, logs / "feature_config.yaml")
    users = [{"user_id": "u1", "gender": "f", "age_bucket": 3, "city": "c7", "is_new_user": False},
             {"user_id": "u2", "gender": "m", "age_bucket": 1, "city": "c1", "is_new_user": True}]
    items = [{"item_id": i, "category": f"cat_{i}", "brand": f"brand_{i}", "price_bucket": n}
             for n, i in enumerate(["i1", "i2", "i3", "i10", "i11", "i12", "i13"])]
    scenarios = [{"scenario_id": "s1", "scenario_type": "feed", "theme": "none"},
                 {"scenario_id": "s2", "scenario_type": "search", "theme": "none"}]
    for name, rows in [("users", users), ("items", items), ("scenarios", scenarios)]:
        (logs / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    days = {
        "2026-09-20": [_impression("2026-09-20T10:00:00", "u1", "i13", "s1", 1, "web")],  # beyond the lookback
        "2026-11-01": [_impression("2026-11-01T10:00:00", "u1", "i10", "s1", 1, "ios"),
                       _impression("2026-11-01T10:00:01", "u1", "i2", "s1", 0, "ios", 2),
                       _impression("2026-11-01T11:00:00", "u2", "i12", "s2", 1, "web")],
        "2026-11-02": [_impression("2026-11-02T09:00:00", "u1", "i11", "s2", 1, "android"),
                       _impression("2026-11-02T13:00:00", "u1", "i12", "s1", 1, "ios")],  # after now
    }
    for day, rows in days.items():
        (logs / day).mkdir()
        lines = "".join(json.dumps(r) + "\n" for r in rows)
        if day == "2026-11-02":
            with gzip.open(logs / day / "impressions-00000.jsonl.gz", "wt") as fh:
                fh.write(lines + '{"user_id": "u1", oops\n')
        else:
            (logs / day / "impressions-00000.jsonl").write_text(lines)
    return logs


def test_candidates_from_the_logs_follow_the_ingestion_rules(logs):
    assembled = build_candidates(str(logs), "u1", "s2", ["i1", "i3", "i99"], now_ms=parse_now(NOW))
    assert assembled.history_length == 2
    first, second, unknown = assembled.rows
    length = feature_config().sequence.length
    pad = [""] * (length - 2)
    # last clicks strictly before now, most recent first, within the lookback; side columns joined
    assert first["seq_item_id"] == ["i11", "i10"] + pad
    assert first["seq_category"] == ["cat_i11", "cat_i10"] + pad
    assert first["seq_brand"] == ["brand_i11", "brand_i10"] + pad
    assert first["seq_scenario_id"] == ["s2", "s1"] + pad
    assert first["seq_scenario_type"] == ["search", "feed"] + pad
    assert first["seq_item_id"] == second["seq_item_id"] == unknown["seq_item_id"]
    # user and scenario columns as ingestion spells them (ints as decimals, booleans as true/false)
    assert (first["user_id"], first["gender"], first["age_bucket"], first["city"], first["is_new_user"]) == \
        ("u1", "f", "3", "c7", "false")
    assert (first["scenario_id"], first["scenario_type"], first["theme"]) == ("s2", "search", "none")
    assert (first["item_id"], first["category"], first["brand"], first["price_bucket"]) == \
        ("i1", "cat_i1", "brand_i1", "0")
    # context: rank slot, the hour of now, the user's latest device
    assert [r["position"] for r in assembled.rows] == [1.0, 2.0, 3.0]
    assert {r["hour"] for r in assembled.rows} == {"12"}
    assert {r["device"] for r in assembled.rows} == {"android"}
    assert (unknown["category"], unknown["brand"], unknown["price_bucket"]) == ("", "", "")
    assert "items not in items table (features empty): ['i99']" in assembled.notes
    assert "1 unreadable log lines of user u1 skipped" in assembled.notes
    assert "1 unreadable lines in items skipped" in assembled.notes


def test_duplicate_log_lines_count_once_in_the_history_as_in_ingestion(logs, tmp_path):
    """A re-delivered file repeats u1's click on i10; another line repeats it with a new position,
    a duplicate by impression_id only. Ingestion keeps the first of each (by its dedup key) unless
    told to keep duplicates, and so does the history behind a query."""
    copy = tmp_path / "logs"
    shutil.copytree(logs, copy)
    click = _impression("2026-11-01T10:00:00", "u1", "i10", "s1", 1, "ios")
    (copy / "2026-11-01" / "impressions-00001.jsonl").write_text(
        json.dumps(click) + "\n" + json.dumps({**click, "position": 7}) + "\n")
    pad = [""] * (feature_config().sequence.length - 3)

    def history(limits: IngestLimits) -> tuple[int, list[str]]:
        assembled = build_candidates(str(copy), "u1", "s2", ["i1"], now_ms=parse_now(NOW), limits=limits)
        return assembled.history_length, assembled.rows[0]["seq_item_id"]

    assert history(IngestLimits()) == (3, ["i11", "i10", "i10"] + pad)  # all fields: the moved one is new
    assert history(IngestLimits(dedup_key=("impression_id",))) == (2, ["i11", "i10", ""] + pad)
    kept = history(IngestLimits(keep_duplicates=True))
    assert kept[0] == 4 and kept[1][:4] == ["i11", "i10", "i10", "i10"]


def test_unknown_user_gets_empty_features_and_context_rules_apply(logs):
    assembled = build_candidates(str(logs), "u404", "s1", ["i1"], now_ms=parse_now(NOW),
                                 context=parse_context("position=4,device=last:tv"))
    (row,) = assembled.rows
    assert assembled.history_length == 0
    assert row["seq_item_id"] == [""] * feature_config().sequence.length
    assert (row["gender"], row["position"], row["device"]) == ("", 4.0, "tv")
    assert "user_id 'u404' is not in users: its features are empty" in assembled.notes
    with pytest.raises(ValueError, match=r"--context names \['colour'\]"):
        build_candidates(str(logs), "u1", "s1", ["i1"], context={"colour": "red"})


def test_candidate_dicts_become_signature_typed_inputs(served):
    with PredictClient(served["target"]) as client:
        specs = client.input_specs(MODEL)
    inputs, notes = coerce_inputs(
        as_columns([{"item_id": "i1", "position": 2, "hour": 7, "is_new_user": True, "seq_item_id": ["a", "b"],
                     "extra": 1},
                    {"item_id": "i2", "position": 3.5, "seq_item_id": []}]), specs)
    assert inputs["position"].dtype == np.float32 and inputs["position"].tolist() == [2.0, 3.5]
    assert inputs["hour"].tolist() == [b"7", b""]
    assert inputs["is_new_user"].tolist() == [b"true", b""]
    assert inputs["seq_item_id"].tolist() == [[b"a", b"b"], [b"", b""]]
    assert notes[0] == "not model inputs, ignored: ['extra']"
    assert notes[1].startswith("missing features sent as empty / 0 (unknown to the model): ['age_bucket'")


def _ranking(stdout: str) -> list[tuple[str, float]]:
    rows = [line.split() for line in stdout.splitlines()[2:]]
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    return [(r[1], float(r[2])) for r in rows]


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value]
    return value.decode() if isinstance(value, bytes) else float(value)


def test_query_with_a_request_file_prints_the_ranking(served, tmp_path, capsys):
    inputs = sample_inputs(6, seed=21)
    inputs["item_id"] = np.array([f"item{i}".encode() for i in range(6)], dtype=object)
    candidates = [{k: _jsonable(v[i]) for k, v in inputs.items()} for i in range(6)]
    request = tmp_path / "request.json"
    request.write_text(json.dumps(candidates))
    assert cli.main(["query", "--server", served["target"], "--model", MODEL, "--request", str(request)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"model {MODEL} version 1: 6 candidates from {request}")
    expected = in_process_ctr(served["export"], inputs)
    order = np.argsort(-expected)
    ranking = _ranking(out)
    assert [item for item, _ in ranking] == [f"item{i}" for i in order]
    np.testing.assert_allclose([ctr for _, ctr in ranking], expected[order], atol=1e-6)


def test_query_from_the_logs_ranks_the_items(served, logs, capsys):
    argv = ["query", "--server", served["target"], "--model", MODEL, "--logs", str(logs), "--user", "u1",
            "--scenario", "s2", "--items", "i1,i2,i3", "--now", NOW]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"model {MODEL} version 1: 3 candidates for user u1 in scenario s2 (2 past clicks)")
    ranking = _ranking(captured.out)
    rows = build_candidates(str(logs), "u1", "s2", ["i1", "i2", "i3"], now_ms=parse_now(NOW)).rows
    with PredictClient(served["target"]) as client:
        inputs, _ = coerce_inputs(as_columns(rows), client.input_specs(MODEL))
    expected = dict(zip(["i1", "i2", "i3"], in_process_ctr(served["export"], inputs)))
    assert sorted(expected, key=expected.get, reverse=True) == [item for item, _ in ranking]
    for item, ctr in ranking:
        assert ctr == pytest.approx(float(expected[item]), abs=1e-6)
    assert "note: 1 unreadable log lines of user u1 skipped" in captured.err


@pytest.mark.parametrize("argv_tail, message", [
    (["--model", "nope", "--request", "REQUEST"], "the server answered NOT_FOUND: model 'nope' is not served"),
    (["--model", MODEL, "--request", "MISSING"], "No such file or directory"),
    (["--model", MODEL, "--request", "NOT_JSON"], "bad.json is not JSON: Expecting property name"),
    (["--model", MODEL], "give --request FILE.json, or --logs DIR with --user, --scenario and --items"),
])
def test_query_errors_are_one_clear_line(served, tmp_path, capsys, argv_tail, message):
    (tmp_path / "request.json").write_text(json.dumps([{"item_id": "a"}]))
    (tmp_path / "bad.json").write_text("{nope")
    paths = {"REQUEST": str(tmp_path / "request.json"), "MISSING": str(tmp_path / "none.json"),
             "NOT_JSON": str(tmp_path / "bad.json")}
    argv = ["query", "--server", served["target"]] + [paths.get(a, a) for a in argv_tail]
    assert cli.main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
