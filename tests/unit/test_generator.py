"""Tests of `msrec generate`: layout, realism of the truth, interventions, determinism, corruption."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import msrec  # noqa: F401
from msrec import cli
from msrec.auc import auc
from msrec.bench.ingest import bench_generator
from msrec.data import clicks, truth
from msrec.data.card import knobs, world_card
from msrec.data.columns import IMPRESSION_FIELDS, ITEM_COLUMNS, SCENARIO_COLUMNS, USER_COLUMNS, \
    dataset_feature_config
from msrec.data.corrupt import REASONS
from msrec.data.generator import GenerateError, generate
from msrec.data.world import LOYAL_USER_FRACTION, MAX_POSITION, SARNET_CTRS_PCT, SARNET_SHARES_PCT, build_world
from msrec.schemas import default_feature_config
from msrec.schemas.feature_config import REQUIRED_FIELDS, load_feature_config

DAYS, PER_DAY = 2, 30_000
ID_FIELDS = ("user_id", "item_id", "scenario_id", "impression_id", "device")


def read_logs(logs_dir: Path) -> pd.DataFrame:
    frames = []
    for shard in sorted(logs_dir.glob("*/impressions-*.jsonl")):
        rows = [json.loads(line) for line in shard.read_text().splitlines()]
        frames.append(pd.DataFrame(rows).assign(date=shard.parent.name))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    return generate(tmp_path_factory.mktemp("gen") / "out", days=DAYS, impressions_per_day=PER_DAY, seed=0,
                    progress=False)


@pytest.fixture(scope="module")
def logs(data) -> pd.DataFrame:
    """Every impression, joined with its truth, side tables and intervention flag."""
    df = read_logs(data.logs_dir)
    t = pd.concat([truth.load_truth(data.out_dir, d) for d in data.dates], ignore_index=True)
    df = df.merge(t[["impression_id", "p_click"]], on="impression_id", how="left", validate="1:1")
    df = df.merge(pd.read_json(data.logs_dir / "users.jsonl", lines=True, dtype=False), on="user_id", how="left")
    df = df.merge(pd.read_json(data.logs_dir / "items.jsonl", lines=True, dtype=False), on="item_id", how="left")
    df = df.merge(pd.read_json(data.logs_dir / "scenarios.jsonl", lines=True, dtype=False), on="scenario_id",
                  how="left")
    forced = truth.load_interventions(data.out_dir)
    df["intervened"] = [k in forced for k in zip(df.date, df.item_id, df.scenario_id)]
    return df


@pytest.fixture(scope="module")
def world(data) -> dict:
    return truth.load_world(data.out_dir)


def test_layout_and_fields(data, logs):
    assert data.truth_dir.resolve() not in data.logs_dir.resolve().parents
    assert sorted(p.name for p in data.logs_dir.iterdir()) == sorted(
        data.dates + ["users.jsonl", "items.jsonl", "scenarios.jsonl", "feature_config.yaml"])
    assert data.dates == ["2026-11-01", "2026-11-02"]
    assert len(logs) == DAYS * PER_DAY
    for shard in data.logs_dir.glob("*/impressions-*.jsonl"):
        with shard.open() as fh:
            assert tuple(json.loads(fh.readline())) == IMPRESSION_FIELDS
    for name in ("ts", "click", "position", "hour"):
        assert logs[name].dtype == np.int64, name
    for name in ID_FIELDS:
        assert logs[name].map(type).eq(str).all(), name
    assert logs.impression_id.is_unique
    assert logs.click.isin([0, 1]).all()
    assert logs.position.between(1, MAX_POSITION).all()
    day_start = pd.to_datetime(logs.date).astype("int64") // 10**6
    assert ((logs.ts >= day_start) & (logs.ts < day_start + 86_400_000)).all()
    assert (logs.hour == (logs.ts - day_start) // 3_600_000).all()
    assert logs.user_id.str.fullmatch(r"u\d{6}").all() and logs.item_id.str.fullmatch(r"i\d{5}").all()
    assert logs.scenario_id.str.fullmatch(r"s\d{2}").all()
    # every impression has its truth; logs are in time order within a day
    assert logs.p_click.notna().all() and logs.p_click.between(0, 1).all()
    assert logs.groupby("date").ts.apply(lambda s: s.is_monotonic_increasing).all()


def test_side_tables(data, logs, world):
    for name, cols in (("users", USER_COLUMNS), ("items", ITEM_COLUMNS), ("scenarios", SCENARIO_COLUMNS)):
        table = pd.read_json(data.logs_dir / f"{name}.jsonl", lines=True, dtype=False)
        assert tuple(table.columns) == cols
        assert table[cols[0]].is_unique
    # a few ids in the logs are missing from the side tables, on purpose (~0.5%)
    for key, col in (("users", "gender"), ("items", "category")):
        missing = logs.loc[logs[col].isna(), key[:-1] + "_id"].nunique() / logs[key[:-1] + "_id"].nunique()
        assert 0 < missing < 0.02, (key, missing)
        assert world["missing_from_side_tables"][key] > 0
    assert logs.scenario_type.notna().all()


def test_feature_config_matches_schema(data):
    written = load_feature_config(data.feature_config)
    assert written == load_feature_config(default_feature_config())
    assert written == dataset_feature_config()
    columns = set(IMPRESSION_FIELDS) | set(USER_COLUMNS) | set(ITEM_COLUMNS) | set(SCENARIO_COLUMNS)
    assert {f.name for f in written.features} | set(written.passthrough) <= columns


def test_world_uses_sarnet_table1(world):
    scen = pd.DataFrame(world["scenarios"])
    assert np.allclose(scen.share * 100, SARNET_SHARES_PCT, atol=1e-6)
    assert np.allclose(scen.ctr * 100, SARNET_CTRS_PCT, atol=1e-6)
    assert set(scen.scenario_type) == {"feed", "search", "theme", "ad_slot", "cart", "detail"}
    assert (scen.loc[scen.scenario_type == "theme", "theme"] != "general").all()
    assert world["seed"] == 0 and world["num_users"] == 2000 and world["num_items"] == 500


def test_other_scenario_counts_span_the_configured_range(tmp_path):
    data = generate(tmp_path / "out", days=1, impressions_per_day=2000, scenarios=7, seed=3, progress=False)
    scen = pd.DataFrame(truth.load_world(data.out_dir)["scenarios"])
    assert len(scen) == 7 and scen.share.sum() == pytest.approx(1.0)
    assert scen.share.max() / scen.share.min() == pytest.approx(12.0 / 0.15, rel=1e-6)
    assert scen.ctr.min() == pytest.approx(0.012) and scen.ctr.max() == pytest.approx(0.094)


def test_scenario_shares(logs, world):
    """Impressions come in page views of one scenario, so the count's variance is page-level:
    Var(count_s) ~ sum over the scenario's pages of size^2 (pages arrive as a Poisson stream)."""
    share = pd.DataFrame(world["scenarios"]).set_index("scenario_id").share
    pages = logs.groupby(["date", "user_id", "ts", "scenario_id"]).size().rename("size").reset_index()
    by_scen = pages.groupby("scenario_id")["size"]
    count, sd = by_scen.sum(), np.sqrt(by_scen.apply(lambda s: (s ** 2).sum()))
    z = (count - share[count.index] * len(logs)) / sd
    assert set(count.index) == set(share.index)
    assert z.abs().max() < 4.0, z.round(2).to_dict()


def test_scenario_ctr_is_calibrated(logs, world):
    """Organic traffic (interventions excluded, as in calibration) has each scenario's base CTR.

    Two checks per scenario: the mean true p_click is the configured CTR within 4 standard errors
    (clustered by user, as one user's impressions share their traits) plus 3% for the calibration
    sample; the realised CTR is the mean p_click within 4 binomial standard errors.
    """
    ctr = pd.DataFrame(world["scenarios"]).set_index("scenario_id").ctr
    organic = logs[~logs.intervened]
    for s, g in organic.groupby("scenario_id"):
        mean_p = g.p_click.mean()
        resid = (g.p_click - mean_p).groupby(g.user_id).sum()
        se = np.sqrt((resid ** 2).sum()) / len(g)
        assert abs(mean_p - ctr[s]) < 4 * se + 0.03 * ctr[s], (s, mean_p, ctr[s], se)
        assert abs(g.click.mean() - mean_p) < 4 * np.sqrt(mean_p * (1 - mean_p) / len(g)), s
    overall = (ctr * pd.DataFrame(world["scenarios"]).set_index("scenario_id").share).sum()
    assert organic.click.mean() == pytest.approx(overall, rel=0.08)


scores_and_probabilities = st.integers(2, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 5).map(float), min_size=n, max_size=n),  # few values: many ties
    st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))


@given(scores_and_probabilities)
@settings(max_examples=200, deadline=None)
def test_the_expected_auc_is_the_auc_of_certain_clicks_and_complements_reversed_scores(sp):
    s, p = map(np.array, sp)
    labels = (p > 0.5).astype(float)
    assert truth.expected_auc(s, labels) == pytest.approx(auc(s, labels), nan_ok=True)
    forward, backward = truth.expected_auc(s, p), truth.expected_auc(-s, p)
    if not np.isnan(forward):
        assert forward + backward == pytest.approx(1.0)
        assert truth.expected_auc(np.exp(s), p) == pytest.approx(forward)  # ranks only


def test_the_expected_auc_is_the_mean_auc_over_click_draws():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.0, 0.3, 3_000)
    s = np.round(p + rng.normal(0.0, 0.1, p.size), 2)
    draws = [auc(s, rng.random(p.size) < p) for _ in range(400)]
    # the ratio of expectations and the mean of the ratios differ by far less than the draws' spread
    assert truth.expected_auc(s, p) == pytest.approx(np.mean(draws), abs=0.003)
    assert np.std(draws) > 0.005


def test_oracle_auc(data):
    df = truth.load_truth(data.out_dir, data.dates[0])
    assert list(df.columns) == list(truth.TRUTH_COLUMNS)
    overall = truth.oracle_auc(df)
    assert 0.70 < overall < 0.82
    per = truth.oracle_auc(df, by_scenario=True)
    assert sorted(per) == sorted(df.scenario_id.unique())
    informative = {s: a for s, a in per.items() if df[df.scenario_id == s].click.sum() >= 30}
    assert len(informative) >= 10 and min(informative.values()) > 0.6, informative
    with pytest.raises(FileNotFoundError, match="2031-01-01"):
        truth.load_truth(data.out_dir, dt.date(2031, 1, 1))


def test_interventions(data, logs, world):
    """Forced slots go to whoever is in the scenario, so the item's CTR there falls below both the
    scenario's average and the same item's CTR elsewhere (CTRs relative to the scenario-day)."""
    forced = truth.load_interventions(data.truth_dir)
    records = [json.loads(line) for line in (data.truth_dir / truth.INTERVENTIONS).read_text().splitlines()]
    assert len(records) == len(forced) > 0
    # promotion days alternate, so two days hold exactly one
    assert len(world["promotion_dates"]) == 1
    assert {r["date"] for r in records} == set(world["promotion_dates"])
    shown = logs.groupby(["date", "item_id", "scenario_id"]).size()
    for r in records:
        assert shown[(r["date"], r["item_id"], r["scenario_id"])] >= r["extra_impressions"] > 0

    organic = logs[~logs.intervened]
    baseline = organic.groupby(["date", "scenario_id"]).click.mean().rename("baseline")
    df = logs.join(baseline, on=["date", "scenario_id"])
    promoted = {item for _, item, _ in forced}
    pushed = df[df.intervened]
    elsewhere = df[~df.intervened & df.item_id.isin(promoted)]

    def lift(g: pd.DataFrame) -> tuple[float, float]:
        expected = g.baseline.sum()
        return g.click.sum() / expected, 1 / np.sqrt(expected)  # Poisson relative error

    lift_pushed, err_pushed = lift(pushed)
    lift_else, err_else = lift(elsewhere)
    assert lift_pushed < 1 - 2 * err_pushed, lift_pushed
    assert lift_else - lift_pushed > 2 * np.hypot(err_pushed * lift_pushed, err_else * lift_else), \
        (lift_pushed, lift_else)


def test_most_users_visit_several_scenarios(logs):
    """SAR-Net Table 2: 88.79% of users visit two or more scenarios. Loyal users are exactly 11.21%;
    an explorer seen in a single short journey can repeat a scenario, which takes up to ~2% off."""
    per_user = logs.groupby("user_id").scenario_id.nunique()
    share = (per_user >= 2).mean()
    se = np.sqrt(share * (1 - share) / len(per_user))
    assert -4 * se - 0.02 < share - (1 - LOYAL_USER_FRACTION) < 4 * se, (share, len(per_user))
    assert per_user.max() >= 6


def _chi2(rows: np.ndarray, cols: np.ndarray) -> float:
    """Pearson's chi-square statistic of the contingency table of two integer codes."""
    table = np.zeros((rows.max() + 1, cols.max() + 1))
    np.add.at(table, (rows, cols), 1)
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    expected = np.outer(table.sum(1), table.sum(0)) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def test_interest_shifts_with_scenario_type(logs):
    """The same users click different categories in different scenario types: the type x category
    table of their clicks is far from the tables that shuffling types within each user gives."""
    clicks = logs[(logs.click == 1) & logs.category.notna()]
    clicks = clicks[clicks.groupby("user_id").scenario_type.transform("nunique") >= 2].sort_values("user_id")
    assert len(clicks) > 500
    user = clicks.user_id.factorize()[0]
    stype = clicks.scenario_type.factorize()[0]
    category = clicks.category.factorize()[0]
    observed = _chi2(stype, category)
    rng = np.random.default_rng(0)
    # rows are grouped by user, so reordering by (user, random key) permutes types within users
    null = [_chi2(stype[np.lexsort((rng.random(len(user)), user))], category) for _ in range(50)]
    assert observed > 1.5 * max(null), (observed, max(null))


def test_implicit_patterns_within_scenario_types(logs):
    """gender x age moves p_click inside a scenario type (HierRec's implicit scenarios): the spread
    of cell means beats every shuffle of the users' profiles."""
    df = logs[logs.gender.notna()].copy()
    df["logit"] = np.log(df.p_click / (1 - df.p_click))
    users = df.drop_duplicates("user_id").set_index("user_id")[["gender", "age_bucket"]]

    def spread(profile: pd.DataFrame) -> float:
        cell = df[["user_id", "scenario_type", "logit"]].join(profile, on="user_id")
        means = cell.groupby(["scenario_type", "gender", "age_bucket"]).logit.agg(["mean", "size"])
        means = means[means["size"] >= 200]
        centred = means["mean"] - means.groupby(level=0)["mean"].transform("mean")
        return float((centred ** 2 * means["size"]).sum() / means["size"].sum())

    rng = np.random.default_rng(1)
    null = [spread(users.set_axis(rng.permutation(users.index))) for _ in range(10)]
    assert spread(users) > 2 * max(null), (spread(users), max(null))


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic(tmp_path):
    kwargs = dict(days=2, impressions_per_day=3000, corrupt_fraction=0.01, progress=False)
    first = _file_bytes(generate(tmp_path / "a", seed=7, **kwargs).out_dir)
    again = _file_bytes(generate(tmp_path / "b", seed=7, **kwargs).out_dir)
    other = _file_bytes(generate(tmp_path / "c", seed=8, **kwargs).out_dir)
    assert len(first) == 11 and first == again
    assert first.keys() == other.keys()
    assert first["logs/2026-11-01/impressions-00000.jsonl"] != other["logs/2026-11-01/impressions-00000.jsonl"]
    assert first["world.json"] != other["world.json"]


def _reject_reason(raw: bytes, day_start_ms: int) -> str | None:
    """An independent strict reader of the raw-log contract (README, "Your own logs"): why a line is not a valid record."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "undecodable_bytes"
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return "bad_json"
    if not isinstance(record, dict):
        return "not_an_object"
    if any(f not in record for f in REQUIRED_FIELDS):
        return "missing_field"
    ints = [record["ts"], record["click"]]
    if any(type(v) is not int for v in ints) or any(type(record[f]) is not str for f in REQUIRED_FIELDS[1:4]):
        return "bad_type"
    if record["click"] not in (0, 1):
        return "bad_click"
    if not day_start_ms <= record["ts"] < day_start_ms + 86_400_000:
        return "bad_ts"
    return None


def test_corruption(tmp_path):
    n = 5000
    data = generate(tmp_path / "out", days=2, impressions_per_day=n, corrupt_fraction=0.02, progress=False)
    counts = truth.load_corruptions(data.out_dir)
    assert list(counts) == list(REASONS)
    assert sum(counts.values()) == 2 * round(0.02 * n)
    assert min(counts.values()) >= 2 * (round(0.02 * n) // len(REASONS))  # reasons spread evenly
    seen = dict.fromkeys(REASONS, 0)
    for date in data.dates:
        day_start = int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
        raw_lines = (data.logs_dir / date / "impressions-00000.jsonl").read_bytes().split(b"\n")
        assert raw_lines[-1] == b"" and len(raw_lines) - 1 == n
        valid_ids = []
        for raw in raw_lines[:-1]:
            reason = _reject_reason(raw, day_start)
            if reason is None:
                valid_ids.append(json.loads(raw)["impression_id"])
            else:
                seen[reason] += 1
        # exactly the uncorrupted lines have truth, in log order
        assert truth.load_truth(data.out_dir, date).impression_id.tolist() == valid_ids
    assert seen == counts


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    with pytest.raises(GenerateError, match="days must be at least 1"):
        generate(tmp_path / "a", days=0, impressions_per_day=100, progress=False)
    with pytest.raises(GenerateError, match="corrupt fraction"):
        generate(tmp_path / "a", days=1, impressions_per_day=100, corrupt_fraction=1.5, progress=False)
    with pytest.raises(GenerateError, match="items must be at least 24"):
        generate(tmp_path / "a", days=1, impressions_per_day=100, items=5, progress=False)
    with pytest.raises(GenerateError, match="forced click lift must be a finite logit"):
        generate(tmp_path / "a", days=1, impressions_per_day=100, forced_click_lift=float("nan"), progress=False)
    taken = tmp_path / "taken"
    (taken / "logs").mkdir(parents=True)
    (taken / "logs" / "old.jsonl").write_text("{}\n")
    with pytest.raises(GenerateError, match="not empty"):
        generate(taken, days=1, impressions_per_day=100, progress=False)
    rc = cli.main(["generate", "--out", str(tmp_path / "b"), "--start", "2026-13-01", "--days", "1"])
    assert rc == 2 and "start must be a date YYYY-MM-DD" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_cli_and_bench(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli.main(["generate", "--out", str(out), "--days", "1", "--impressions-per-day", "1500",
                   "--scenarios", "5", "--users", "300", "--items", "100", "--start", "2027-02-28", "--seed", "4",
                   "--forced-click-lift", "0.5"])
    assert rc == 0 and "1 day(s)" in capsys.readouterr().out
    world = truth.load_world(out)
    assert (world["num_scenarios"], world["num_users"], world["num_items"]) == (5, 300, 100)
    assert world["forced_click_lift"] == 0.5
    assert len(truth.load_truth(out, "2027-02-28")) == 1500
    rows = bench_generator([1000], workdir=str(tmp_path))
    assert len(rows) == 1 and rows[0]["impressions"] == 1000
    assert rows[0]["seconds"] > 0 and rows[0]["records/s"] == pytest.approx(1000 / rows[0]["seconds"], rel=0.01)
    assert list(tmp_path.glob("msrec-bench-gen-*")) == []


def test_forced_impressions_are_flagged_in_truth(data, world):
    """Exactly the forced slots are flagged: per (date, item, scenario) as many as the intervention
    added, none on the other days or outside the intervened pairs."""
    records = [json.loads(line) for line in (data.truth_dir / truth.INTERVENTIONS).read_text().splitlines()]
    t = pd.concat([truth.load_truth(data.out_dir, d).assign(date=d) for d in data.dates], ignore_index=True)
    assert set(t.forced.unique()) == {0, 1}
    flagged = t[t.forced == 1].groupby(["date", "item_id", "scenario_id"]).size().to_dict()
    assert flagged == {(r["date"], r["item_id"], r["scenario_id"]): r["extra_impressions"] for r in records}
    assert set(t.loc[t.forced == 1, "date"]) == set(world["promotion_dates"])


def test_sessions(logs):
    """A session_id is one journey: one user on one device, pages in time order within minutes,
    often across several scenarios; ids are unique per day."""
    per = logs.groupby("session_id")
    assert (per.user_id.nunique() == 1).all() and (per.device.nunique() == 1).all()
    assert (per.date.nunique() == 1).all() and logs.session_id.str.fullmatch(r"\d{8}-j\d{7}").all()
    assert (per.scenario_id.nunique() >= 2).mean() > 0.5
    assert per.size().mean() > 10
    assert logs.session_id.nunique() < logs.groupby(["user_id", "date"]).ngroups * 3


def test_world_card_round_trips(data, world):
    """OUT/world.json sits beside logs/ and truth/ and is the card of the world the seed rebuilds."""
    assert (data.out_dir / "world.json").is_file() and not (data.logs_dir / "world.json").exists()
    rebuilt = build_world(0, 20, world["num_users"], world["num_items"])
    model = clicks.build_click_model(rebuilt, clicks.calibration_size(PER_DAY))
    card = world_card(rebuilt, model, data.dates, PER_DAY, world["promotion_dates"], feedback_loop=False,
                      corrupt_fraction=0.0)
    assert json.loads(json.dumps(card)) == world
    assert world["knobs"] == knobs() and world["knobs"]["click_model"]["price_slope"] == clicks.PRICE_SLOPE
    scen = pd.DataFrame(world["scenarios"])
    assert scen.price_reversed.sum() == max(1, round(0.2 * len(scen)))
    assert scen.price_reversed[scen.share.idxmin()]
    slopes = pd.DataFrame(list(scen.slopes))
    assert (np.sign(slopes.price) == np.where(scen.price_reversed, 1, -1)).all()
    assert set(world["population_slopes"]) == {"interest_by_new_user", "price_by_city_tier", "position_by_age"}
