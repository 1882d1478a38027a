"""Deliberately broken log lines, for exercising quarantine.

Each corrupted line replaces one impression (which then never reaches the truth files) and breaks
the raw-log contract (README, "Your own logs") in exactly one way, named by its reason.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from msrec.schemas.feature_config import REQUIRED_FIELDS

REASONS = ("bad_json", "undecodable_bytes", "not_an_object", "missing_field", "bad_type", "bad_click", "bad_ts")
YEAR_2200_MS = 7_258_118_400_000  # 2200-01-01T00:00:00Z: a timestamp no real log can carry
# Lines are built as str and written with errors="surrogateescape": these lone surrogates become
# the raw bytes 0xFF 0xFE, which are not valid UTF-8.
INVALID_UTF8 = "\udcff\udcfe"


def plan(rng: np.random.Generator, n_lines: int, fraction: float) -> tuple[np.ndarray, list[str]]:
    """Which lines to corrupt (sorted indices) and the reason for each; reasons are evenly spread."""
    n = int(round(fraction * n_lines))
    lines = np.sort(rng.choice(n_lines, n, replace=False))
    reasons = [REASONS[k] for k in rng.permutation(np.arange(n) % len(REASONS))]
    return lines, reasons


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def corrupt(line: str, reason: str, rng: np.random.Generator) -> str:
    """A broken version of a valid JSON log ``line`` (no trailing newline), broken as ``reason`` says."""
    record = json.loads(line)
    if reason == "bad_json":
        # any proper prefix of an object lacks its closing brace, so never parses
        return line[: int(rng.integers(1, len(line)))]
    if reason == "undecodable_bytes":
        uid = record["user_id"]
        return line.replace(f'"user_id":"{uid}"', f'"user_id":"{uid[:2]}{INVALID_UTF8}{uid[2:]}"', 1)
    if reason == "not_an_object":
        return _dumps(list(record.values()))
    if reason == "missing_field":
        del record[REQUIRED_FIELDS[int(rng.integers(len(REQUIRED_FIELDS)))]]
    elif reason == "bad_type":
        if rng.random() < 0.5:
            record["ts"] = "yesterday"
        else:
            record["click"] = "yes"
    elif reason == "bad_click":
        record["click"] = int(rng.choice([2, -1, 7]))
    elif reason == "bad_ts":
        record["ts"] = -record["ts"] if rng.random() < 0.5 else YEAR_2200_MS + record["ts"] % 86_400_000
    else:
        raise ValueError(f"unknown corruption reason {reason!r}; known: {REASONS}")
    return _dumps(record)
