"""Is the ingested day fit to train, evaluate and gate on? Checked on counts.json right after
ingestion, before anything expensive runs: an empty or tiny split would train for nothing and end
without an AUC, and a day with many malformed lines is an anomaly of its producer, not data."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from msrec.components.log_example_gen.splits import EVAL, SPLITS


@dataclasses.dataclass(frozen=True)
class DayLimits:
    max_quarantine_rate: float = 0.05  # share of the window's lines quarantined
    # A damaged (truncated, corrupt) file hides an unknown share of the day: re-deliver it, or allow it.
    max_damaged_files: int = 0
    min_train_rows: int = 1000
    min_eval_rows: int = 1000  # below this an AUC difference is mostly noise
    min_eval_clicks: int = 10  # AUC needs both classes, and a few of each
    min_eval_non_clicks: int = 10

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "DayLimits":
        return cls(**json.loads(text)) if text else cls()


def day_problems(counts: Mapping[str, Any], limits: DayLimits) -> list[str]:
    """One line per reason the day must not go on to training; empty when it may."""
    problems = []
    rate = counts["quarantine_rate"]
    if rate > limits.max_quarantine_rate:
        top = sorted(counts["reasons"].items(), key=lambda kv: -kv[1])[:3]
        problems.append(f"quarantine rate {rate:.1%} ({counts['quarantined']} of {counts['read']} lines: "
                        + ", ".join(f"{r} {n}" for r, n in top)
                        + f") is above the limit {limits.max_quarantine_rate:.1%} (--max-quarantine-rate)")
    damaged = counts["damaged_files"]
    if len(damaged) > limits.max_damaged_files:
        problems.append(f"{len(damaged)} damaged file(s), more than {limits.max_damaged_files} allowed "
                        "(--max-damaged-files): "
                        + "; ".join(f"{d['file']} ({d['reason']} after {d['lines_read']} lines)" for d in damaged))
    splits, clicks = counts["splits"], counts["clicks"]
    for split in SPLITS:
        if not splits[split]:
            problems.append(f"the {split} split is empty")
    if splits["train"] and splits["train"] < limits.min_train_rows:
        problems.append(f"the train split has {splits['train']} rows, fewer than {limits.min_train_rows} "
                        "(--min-train-rows)")
    n_eval, eval_clicks = splits[EVAL], clicks[EVAL]
    if n_eval:
        if n_eval < limits.min_eval_rows:
            problems.append(f"the eval split has {n_eval} rows, fewer than {limits.min_eval_rows} (--min-eval-rows)")
        if eval_clicks < limits.min_eval_clicks or n_eval - eval_clicks < limits.min_eval_non_clicks:
            problems.append(f"the eval split has {eval_clicks} clicks and {n_eval - eval_clicks} non-clicks, "
                            f"fewer than {limits.min_eval_clicks} and {limits.min_eval_non_clicks} needed to gate "
                            "(--min-eval-clicks)")
    return problems
