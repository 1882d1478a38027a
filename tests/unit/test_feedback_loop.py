"""The optional logging policy that ranks with a model of the earlier days: a feedback loop in
which what was shown most keeps being shown."""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import msrec  # noqa: F401
from msrec.data import truth
from msrec.data.generator import generate
from msrec.data.traffic import CANDIDATES_PER_SLOT

DAYS, PER_DAY, TOP = 3, 6000, 20
KWARGS = dict(days=DAYS, impressions_per_day=PER_DAY, users=1000, items=400, seed=5, progress=False)


def _day_items(logs: Path, date: str) -> pd.Series:
    lines = [json.loads(line) for shard in sorted((logs / date).glob("impressions-*.jsonl"))
             for line in shard.read_text().splitlines()]
    return pd.Series([r["item_id"] for r in lines])


class ExposureScorer:
    """Scores a candidate by how often the earlier days' logs showed it (a popularity model trained
    on its own exposure); declines on the first day, when there are no logs yet."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.calls: list[tuple[dt.date, int, tuple[str, ...]]] = []

    def __call__(self, date: dt.date, candidates: dict[str, np.ndarray]) -> np.ndarray | None:
        self.calls.append((date, len(candidates["item_id"]), tuple(sorted(candidates))))
        earlier = sorted(p.name for p in self.logs.iterdir() if p.is_dir() and p.name < date.isoformat())
        if not earlier:
            return None
        shown = Counter()
        for day in earlier:
            shown.update(_day_items(self.logs, day))
        return np.array([shown.get(i, 0) for i in candidates["item_id"]], dtype=float)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("loop")
    scorer = ExposureScorer(root / "loop" / "logs")
    return generate(root / "loop", scorer=scorer, **KWARGS), generate(root / "organic", **KWARGS), scorer


def test_scorer_is_called_once_a_day_with_the_candidates(runs):
    loop, _, scorer = runs
    assert [c[0].isoformat() for c in scorer.calls] == loop.dates
    assert all(n == CANDIDATES_PER_SLOT * PER_DAY for _, n, _ in scorer.calls)
    assert scorer.calls[0][2] == ("device", "hour", "item_id", "scenario_id", "user_id")
    assert truth.load_world(loop.out_dir)["feedback_loop"] is True


def test_over_exposed_items_stay_over_exposed(runs):
    """Day 1 is organic in both runs; afterwards the loop piles impressions on day 1's most shown
    items, and day 2's most shown keep their lead on day 3."""
    loop, organic, _ = runs
    share = {}
    for name, data in (("loop", loop), ("organic", organic)):
        days = [_day_items(data.logs_dir, d) for d in data.dates]
        top1 = set(days[0].value_counts().index[:TOP])
        top2 = set(days[1].value_counts().index[:TOP])
        share[name] = (days[0].isin(top1).mean(), days[1].isin(top1).mean(), days[2].isin(top2).mean())
    assert share["loop"][0] == pytest.approx(share["organic"][0], abs=0.02)
    assert share["loop"][1] > 1.5 * share["organic"][1], share
    assert share["loop"][2] > 1.5 * share["organic"][2] and share["loop"][2] >= 0.9 * share["loop"][1], share


def test_a_bad_scorer_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="one finite score per candidate"):
        generate(tmp_path / "bad", scorer=lambda date, cand: np.zeros(3), **{**KWARGS, "days": 1})
